"""The inventories agree with the secrets catalogue and with the groups the platform knows."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_VAULT_PASSWORD_FILE, ROOT, load_yaml

CATALOGUE = load_yaml(ROOT / "roles/validate_inventory/vars/main.yml")
# A secret has an entry per condition under which it is needed: its name once, where it first appears.
SECRETS = list(dict.fromkeys(entry["name"] for entry in CATALOGUE["_validate_inventory_secrets"]))
# A provider's credentials (needed_if) only where the inventory names the provider: development names
# none. What a role's switch needs while it is on by default (default: true) development runs too.
UNCONDITIONAL = list(dict.fromkeys(entry["name"] for entry in CATALOGUE["_validate_inventory_secrets"]
                                   if "needed_if" not in entry or entry.get("default")))
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


@pytest.mark.parametrize("inventory", ["staging", "production"])
def test_inventory_maps_every_catalogued_secret(inventory):
    mapped = load_yaml(ROOT / "inventories" / inventory / "group_vars/all/secrets.yml")
    assert list(mapped) == SECRETS


def test_development_generates_every_unconditional_secret():
    mapped = load_yaml(ROOT / "inventories/development/group_vars/all/secrets.yml")
    assert SECRETS != UNCONDITIONAL and list(mapped) == UNCONDITIONAL


@pytest.mark.parametrize("inventory", ["staging", "production"])
def test_non_development_secrets_come_from_the_vault(inventory):
    mapped = load_yaml(ROOT / "inventories" / inventory / "group_vars/all/secrets.yml")
    assert all(value == f"{{{{ vault_{name} }}}}" for name, value in mapped.items())


def test_development_secrets_are_generated_outside_git():
    mapped = load_yaml(ROOT / "inventories/development/group_vars/all/secrets.yml")
    for name, value in mapped.items():
        assert value.startswith(f"{{{{ lookup('chajipoa.platform.generated_secret', inventory_dir ~ '/credentials/{name}.txt'"), value
    assert "inventories/*/credentials/" in (ROOT / ".gitignore").read_text()


def test_overlay_names_its_base_and_bases_name_none():
    overlay = load_yaml(ROOT / "inventories/tanzania/group_vars/all/overlay.yml")
    assert overlay == {"inventory_overlay_of": "production", "inventory_layer": "tanzania"}
    # The base names itself too, so that given after the overlay it shows in the layer that won.
    assert load_yaml(ROOT / "inventories/production/group_vars/all/environment.yml")["inventory_layer"] == "production"
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


def overlay_inventory() -> dict:
    """ansible-inventory's view of production with the Tanzania overlay on top, the example vault opened."""
    listing = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", "inventories/production", "-i", "inventories/tanzania",
         "--vault-password-file", str(EXAMPLE_VAULT_PASSWORD_FILE), "--list", "--export"],
        cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(listing.stdout)


def test_the_tanzania_overlay_merges_over_production_and_leaves_the_rest_intact():
    merged = overlay_inventory()["all"]["vars"]
    production = load_yaml(ROOT / "inventories/production/group_vars/all/common.yml")
    # The overlay's market, region and domain...
    assert merged["common_timezone"] == "Africa/Dar_es_Salaam" != production["common_timezone"]
    assert merged["platform_public_domain"] == "chajipoa.co.tz"
    assert merged["platform_market"]["currency"] == "TZS"
    # ...over production's values, which it does not name and which stay as production has them.
    assert merged["common_ntp_servers"] == production["common_ntp_servers"]
    assert merged["env_name"] == "production" and merged["inventory_overlay_of"] == "production"
    assert merged["aws_endpoints"] == load_yaml(ROOT / "inventories/production/group_vars/all/aws_endpoints.yml")["aws_endpoints"]


def overlay_variables() -> dict:
    """Every variable the Tanzania overlay's group_vars/all files set, by name."""
    found = {}
    for path in sorted((ROOT / "inventories/tanzania/group_vars/all").glob("*.yml")):
        found.update(load_yaml(path) or {})
    return found


def test_the_tanzania_overlay_owns_the_region_and_its_zones_together():
    """The preflight refuses zones outside the region, so a region overlaid without its zones would
    make production's zones follow it. Production has the same region today, so comparing the merged
    value with af-south-1 would pass without the overlay: the overlay's own files must set both."""
    overlay = overlay_variables()
    assert {"aws_platform_region", "aws_platform_availability_zones"} <= set(overlay)
    zones = overlay["aws_platform_availability_zones"]
    assert len(zones) >= 2 and all(re.fullmatch(re.escape(overlay["aws_platform_region"]) + "[a-z]", zone) for zone in zones)
    production = load_yaml(ROOT / "inventories/production/group_vars/all/aws.yml")
    # One zone per subnet, as production's networks are laid out.
    assert len(zones) == len(production["aws_platform_private_subnet_cidrs"]) == len(production["aws_platform_public_subnet_cidrs"])


def test_every_variable_the_tanzania_overlay_sets_wins_over_production():
    merged = overlay_inventory()["all"]["vars"]
    overlay = overlay_variables()
    assert {name: merged[name] for name in overlay} == overlay


def test_the_example_vault_is_encrypted_and_holds_every_vault_name_the_inventory_uses():
    vault = ROOT / "inventories/production/group_vars/all/vault.yml"
    assert vault.read_text().startswith("$ANSIBLE_VAULT;1.1;AES256")
    merged = overlay_inventory()["all"]["vars"]
    used = set()
    for path in (ROOT / "inventories/production/group_vars").glob("**/*.yml"):
        if path != vault:
            used |= set(re.findall(r"\bvault_[a-z0-9_]+", path.read_text()))
    assert used and used <= {name for name in merged if name.startswith("vault_")}
