"""Every role documents and validates exactly the variables it offers (house style 3)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT, load_yaml, role_options

ROLES = sorted(path.parent.parent.name for path in ROOT.glob("roles/*/meta/argument_specs.yml"))


def _specs(role: str) -> dict:
    """The role's entry points, from its meta/argument_specs.yml."""
    return load_yaml(ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]


def _variables(role: str, kind: str = "defaults") -> dict:
    path = ROOT / "roles" / role / kind / "main.yml"
    return (load_yaml(path) or {}) if path.exists() else {}


def test_every_role_has_an_argument_spec():
    roles = sorted(path.name for path in (ROOT / "roles").iterdir() if path.is_dir())
    assert roles == ROLES


SECRETS = {entry["name"] for entry in load_yaml(ROOT / "roles/validate_inventory/vars/main.yml")["_validate_inventory_secrets"]}


@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_spec_name_the_same_variables(role):
    options = role_options(role)
    defaults = set(_variables(role))
    assert defaults <= set(options), "defaults the spec does not describe"
    # Only required inputs and secrets (never defaulted; preflight decides when each is needed) lack a default.
    undefaulted = {name for name in set(options) - defaults if not options[name].get("required")}
    assert undefaulted <= SECRETS, f"options without a default: {sorted(undefaulted - SECRETS)}"


@pytest.mark.parametrize("role", ROLES)
def test_required_options_and_secrets_have_no_default(role):
    required = {name for name, spec in role_options(role).items() if spec.get("required")}
    assert not (required | SECRETS) & set(_variables(role))


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

    for entry_point in _specs(role).values():
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


WORD = re.compile(r"\b[a-z_][a-z0-9_]*\b")
ENTRY_POINTS = [(role, entry) for role in ROLES for entry in _specs(role) if entry != "main"]


def _reachable(role: str, entry: str) -> list[Path]:
    """The task files an entry point runs (static imports and includes) and the templates they render."""
    directory = ROOT / "roles" / role
    pending, seen = [directory / "tasks" / f"{entry}.yml"], []
    while pending:
        path = pending.pop()
        if path in seen or not path.exists():
            continue
        seen.append(path)
        content = path.read_text()
        pending += [directory / "tasks" / name for name in re.findall(r"(?:import|include)_tasks:\s*(\S+\.yml)", content)]
        pending += [directory / "templates" / name for name in re.findall(r"src:\s*\"?([\w./-]+\.j2)", content)]
    return seen


@pytest.mark.parametrize(("role", "entry"), ENTRY_POINTS)
def test_every_entry_point_validates_the_inputs_it_reads(role, entry):
    """An input read through any entry point (directly or through the role's vars) is in that entry point's
    spec, so a wrong type or a misspelt choice stops `tasks_from: <entry>` as it stops main."""
    assert (ROOT / "roles" / role / "tasks" / f"{entry}.yml").exists(), f"entry point {entry} has no tasks/{entry}.yml"
    specs = _specs(role)
    inputs = set(_variables(role)).union(*(spec.get("options") or {} for spec in specs.values()))
    role_vars = _variables(role, "vars")
    paths = _reachable(role, entry)
    # A role variable that a task sets in its own vars reads that value there, not the role's (the
    # common role's firewall entry point writes its caller's rules file alone, not SSH's too).
    shadowed = {name for path in paths if path.suffix == ".yml" for task in load_yaml(path) or [] for name in task.get("vars") or {}}
    pending, read = WORD.findall("\n".join(path.read_text() for path in paths)), set()
    while pending:
        name = pending.pop()
        if name not in read:
            read.add(name)
            pending += [] if name in shadowed else WORD.findall(str(role_vars.get(name, "")))
    assert sorted((read & inputs) - set(specs[entry].get("options") or {})) == []
