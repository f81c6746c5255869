"""Every role documents and validates exactly the variables it offers (house style 3)."""
from __future__ import annotations

import pytest

from tests.conftest import ROOT, load_yaml, role_options

ROLES = sorted(path.parent.parent.name for path in ROOT.glob("roles/*/meta/argument_specs.yml"))


def _defaults(role: str) -> dict:
    path = ROOT / "roles" / role / "defaults" / "main.yml"
    return (load_yaml(path) or {}) if path.exists() else {}


def test_every_role_has_an_argument_spec():
    roles = sorted(path.name for path in (ROOT / "roles").iterdir() if path.is_dir())
    assert roles == ROLES


SECRETS = {entry["name"] for entry in load_yaml(ROOT / "roles/validate_inventory/vars/main.yml")["_validate_inventory_secrets"]}


@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_spec_name_the_same_variables(role):
    options = role_options(role)
    defaults = set(_defaults(role))
    assert defaults <= set(options), "defaults the spec does not describe"
    # Only required inputs and secrets (never defaulted; preflight decides when each is needed) lack a default.
    undefaulted = {name for name in set(options) - defaults if not options[name].get("required")}
    assert undefaulted <= SECRETS, f"options without a default: {sorted(undefaulted - SECRETS)}"


@pytest.mark.parametrize("role", ROLES)
def test_required_options_and_secrets_have_no_default(role):
    required = {name for name, spec in role_options(role).items() if spec.get("required")}
    assert not (required | SECRETS) & set(_defaults(role))


@pytest.mark.parametrize("role", ROLES)
def test_catalogued_secrets_are_no_log(role):
    options = role_options(role)
    assert all(options[name].get("no_log") is True for name in SECRETS & set(options))


@pytest.mark.parametrize("role", ROLES)
def test_every_option_has_a_type_and_description(role):
    def walk(options: dict, prefix: str = ""):
        for name, spec in options.items():
            assert spec.get("type"), f"{prefix}{name} has no type"
            assert spec.get("description"), f"{prefix}{name} has no description"
            walk(spec.get("options") or {}, f"{prefix}{name}.")

    for entry_point in load_yaml(ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"].values():
        walk(entry_point.get("options") or {})


@pytest.mark.parametrize("role", ROLES)
def test_variables_carry_the_role_prefix(role):
    # validate_inventory checks inventory-wide variables (env_name), which by design have no prefix.
    if role == "validate_inventory":
        pytest.skip("checks inventory-wide variables")
    # A catalogued secret keeps one name on every role that needs it (the backup role pulls Redis
    # snapshots with redis_replication_password), so the vault holds each secret once.
    assert all(name.startswith(f"{role}_") or name in SECRETS for name in role_options(role))


@pytest.mark.parametrize("role", ROLES)
def test_every_default_commented(role):
    """House style 4: every default sits under a comment, its own or its block's (no blank line between)."""
    path = ROOT / "roles" / role / "defaults" / "main.yml"
    if not path.exists():
        pytest.skip("no defaults")
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines):
        if not line or line.startswith((" ", "#", "-")):
            continue
        above = number - 1
        while above > 0 and lines[above] and not lines[above].startswith("#"):
            above -= 1
        assert lines[above].startswith("#"), f"{path.relative_to(ROOT)}: {line.split(':')[0]} has no comment"
