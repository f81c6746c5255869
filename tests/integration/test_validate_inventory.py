"""site.yml's validation play stops a bad inventory before any host is contacted.

The inventories made here point their hosts at lab containers that do not exist: had a play
reached a host, the run would report it unreachable instead of failing validation.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run_playbook

CATALOGUE = yaml.safe_load((ROOT / "roles/validate_inventory/vars/main.yml").read_text())


def make_inventory(tmp_path: Path, env_name: str, groups: dict, host_vars: dict | None = None, secrets: dict | None = None) -> Path:
    host_vars = {"ansible_connection": "community.docker.docker", "ansible_host": "chajipoa-no-such-container", **(host_vars or {})}
    children = {group: {"hosts": {host: host_vars for host in hosts}} for group, hosts in groups.items()}
    (tmp_path / "group_vars" / "all").mkdir(parents=True)
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": children}}))
    (tmp_path / "group_vars/all/main.yml").write_text(yaml.safe_dump({"env_name": env_name, **(secrets or {})}))
    return tmp_path


def all_secrets() -> dict:
    return {entry["name"]: f"test-{entry['name']}" for entry in CATALOGUE["_validate_inventory_secrets"]}


def assert_stopped_in_validation(result: subprocess.CompletedProcess, *expected: str):
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for text in expected:
        assert text in output, output
    assert "UNREACHABLE" not in output and "Gathering Facts" not in output, output
    assert "PLAY [Base system]" not in output, output


def test_development_inventory_passes():
    result = run_playbook("validate-inventory.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_unknown_environment_named(tmp_path):
    inventory = make_inventory(tmp_path, "prod-uction", {"app": ["app1"]}, secrets=all_secrets())
    assert_stopped_in_validation(run_playbook("site.yml", inventory), "env_name", "prod-uction")


def test_production_without_vault_names_each_missing_secret():
    result = run_playbook("site.yml", "inventories/production")
    assert_stopped_in_validation(result, "app_jwt_secret", "postgres_app_password", "vault_")


def test_tanzania_overlay_without_vault_stops_too():
    result = run_playbook("site.yml", "inventories/production", "inventories/tanzania")
    assert_stopped_in_validation(result, "postgres_monitoring_password")


def test_production_with_every_secret_passes(tmp_path):
    vault = tmp_path / "vault.yml"
    vault.write_text(yaml.safe_dump({f"vault_{name}": value for name, value in all_secrets().items()}))
    result = run_playbook("validate-inventory.yml", "inventories/production", extra=["-e", f"@{vault}"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_empty_secret_counts_as_missing(tmp_path):
    inventory = make_inventory(tmp_path, "staging", {"redis": ["cache1"]}, secrets={**all_secrets(), "redis_app_password": ""})
    assert_stopped_in_validation(run_playbook("site.yml", inventory), "redis_app_password")


def test_host_in_no_known_group_named(tmp_path):
    inventory = make_inventory(tmp_path, "development", {"webservers": ["stray1"]}, secrets=all_secrets())
    assert_stopped_in_validation(run_playbook("site.yml", inventory), "stray1 is in no known group", "webservers")


@pytest.mark.parametrize(
    ("variable", "value"),
    [("common_ssh_port", "twenty-two"), ("common_admin_users", "amina"), ("common_firewall_enabled", "maybe")],
)
def test_wrong_type_for_a_role_input_named(tmp_path, variable, value):
    inventory = make_inventory(tmp_path, "development", {"app": ["app1"]}, host_vars={variable: value}, secrets=all_secrets())
    assert_stopped_in_validation(run_playbook("site.yml", inventory), variable)
