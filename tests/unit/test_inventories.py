"""The inventories agree with the secrets catalogue and with the groups the platform knows."""
from __future__ import annotations

import pytest

from tests.conftest import ROOT, load_yaml

CATALOGUE = load_yaml(ROOT / "roles/validate_inventory/vars/main.yml")
SECRETS = [entry["name"] for entry in CATALOGUE["_validate_inventory_secrets"]]
KNOWN_GROUPS = set(CATALOGUE["_validate_inventory_group_roles"])
INVENTORIES = ["development", "staging", "production", "tanzania"]


def _groups(node: dict):
    for name, group in (node.get("children") or {}).items():
        yield name, group or {}
        yield from _groups(group or {})


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_inventory_has_hosts_file(inventory):
    assert (ROOT / "inventories" / inventory / "hosts.yml").is_file()


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_inventory_uses_only_known_groups(inventory):
    hosts = load_yaml(ROOT / "inventories" / inventory / "hosts.yml")["all"]
    assert {name for name, _group in _groups(hosts)} <= KNOWN_GROUPS


@pytest.mark.parametrize("inventory", ["development", "staging", "production"])
def test_inventory_maps_every_catalogued_secret(inventory):
    mapped = load_yaml(ROOT / "inventories" / inventory / "group_vars/all/secrets.yml")
    assert list(mapped) == SECRETS


@pytest.mark.parametrize("inventory", ["staging", "production"])
def test_non_development_secrets_come_from_the_vault(inventory):
    mapped = load_yaml(ROOT / "inventories" / inventory / "group_vars/all/secrets.yml")
    assert all(value == f"{{{{ vault_{name} }}}}" for name, value in mapped.items())


def test_development_secrets_are_generated_outside_git():
    mapped = load_yaml(ROOT / "inventories/development/group_vars/all/secrets.yml")
    for name, value in mapped.items():
        assert f"/credentials/{name}.txt " in value and "ansible.builtin.password" in value
    assert "inventories/*/credentials/" in (ROOT / ".gitignore").read_text()


def test_overlay_names_its_base_and_bases_name_none():
    overlay = load_yaml(ROOT / "inventories/tanzania/group_vars/all/overlay.yml")
    assert overlay == {"inventory_overlay_of": "production"}
    assert (ROOT / "inventories" / overlay["inventory_overlay_of"] / "hosts.yml").is_file()
    for base in ["development", "staging", "production"]:
        for path in (ROOT / "inventories" / base / "group_vars").glob("**/*.yml"):
            assert "inventory_overlay_of" not in (load_yaml(path) or {}), path


def test_validation_formats_name_only_variables_that_exist():
    # A typo in the format table would silently check nothing.
    known = {name for path in ROOT.glob("roles/*/meta/argument_specs.yml")
             for entry in load_yaml(path)["argument_specs"].values() for name in entry.get("options") or {}}
    formats = CATALOGUE["_validate_inventory_rules"]["formats"]
    inventory_wide = {"private_address", "platform_domain", "platform_market"}
    assert set(formats) - known - set(SECRETS) - inventory_wide == set()
    assert set(CATALOGUE["_validate_inventory_rules"]["multiline"]) <= set(SECRETS)
