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
    assert {name for name, _ in _groups(hosts)} <= KNOWN_GROUPS


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
