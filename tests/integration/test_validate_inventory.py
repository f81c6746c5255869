"""site.yml's validation play stops a bad inventory before any host is contacted.

The inventories made here point their hosts at lab containers or machines that do not exist: had a
play reached a host, the run would report it unreachable instead of failing validation. The corpus
of broken inventories is tests/inventories/faults.yml: a good base plus an overlay with one fault.
The corpus runs through playbooks/validate-inventory.yml, the plays site.yml, deploy.yml and
rollback.yml import first (at 60 % of the controller's work site.yml's parsing costs per case);
that site.yml stops before any host is tested by the cases run through it (run_site), under a
--limit too.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, load_yaml, run_playbook

CATALOGUE = load_yaml(ROOT / "roles/validate_inventory/vars/main.yml")
FAULTS = load_yaml(ROOT / "tests/inventories/faults.yml")
BASES = {"development": "inventories/development", "production": "inventories/production"}
# The files production's inventory names on the controller (certificates, keys, CA bundles), which the
# repository does not hold: the operator puts them beside the inventory (inventory_dir/files).
PRODUCTION_APP_HOSTS = list(load_yaml(ROOT / "inventories/production/hosts.yml")["all"]["children"]["app"]["hosts"])
PRODUCTION_FILES = ["rds-global-bundle.pem", "amazon-root-ca-1.pem", "edge/fullchain.pem", "edge/privkey.pem", "edge/chain.pem",
                    "pki/ca.crt", *(f"pki/{host}-pgbouncer.{suffix}" for host in PRODUCTION_APP_HOSTS for suffix in ("crt", "key"))]


@pytest.fixture(scope="module")
def production(tmp_path_factory) -> Path:
    """inventories/production as an operator has it once the files it names are beside it."""
    copy = tmp_path_factory.mktemp("base") / "production"
    shutil.copytree(ROOT / "inventories/production", copy, symlinks=True)
    for name in PRODUCTION_FILES:
        (copy / "files" / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / "files" / name).write_text("-----BEGIN CERTIFICATE-----\n")
    return copy


def make_inventory(tmp_path: Path, env_name: str, groups: dict, host_vars: dict | None = None, secrets: dict | None = None) -> Path:
    host_vars = {"ansible_connection": "community.docker.docker", "ansible_host": "chajipoa-no-such-container", **(host_vars or {})}
    children = {group: {"hosts": {host: host_vars for host in hosts}} for group, hosts in groups.items()}
    (tmp_path / "group_vars" / "all").mkdir(parents=True)
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": children}}))
    (tmp_path / "group_vars/all/main.yml").write_text(yaml.safe_dump({"env_name": env_name, **(secrets or {})}))
    return tmp_path


def all_secrets() -> dict:
    # Long enough for the longest minimum a secret has (the API's signing secrets: 32 characters).
    secrets = {entry["name"]: f"test-{entry['name']}-{'0' * 32}" for entry in CATALOGUE["_validate_inventory_secrets"]}
    return {**secrets, "mongodb_keyfile": "dGVzdC1tb25nb2RiLWtleWZpbGU="}


def vault_file(tmp_path: Path, overrides: dict | None = None) -> Path:
    """Every vault_ secret production maps, as an extra-vars file (outside any inventory)."""
    path = tmp_path / "vault-extra-vars.yml"
    values = {f"vault_{name}": value for name, value in all_secrets().items()}
    path.write_text(yaml.safe_dump({**values, **(overrides or {})}))
    return path


def run_site(*inventories: Path | str, extra: list[str] | None = None):
    """site.yml as an operator runs it, with a tag no task has: the validation play (tagged always)
    runs whole, and where it wrongly lets a case through, the later plays only gather facts instead
    of converging a development lab that happens to be up with a broken inventory (it did, once,
    with this checkout's development secrets)."""
    return run_playbook("site.yml", *inventories, extra=["--tags", "validation-test-only", *(extra or [])])


def write_overlay(directory: Path, case: dict) -> Path:
    hosts = dict(case.get("hosts") or {})
    if case.get("host_vars"):
        hosts["hosts"] = case["host_vars"]
    (directory / "group_vars/all").mkdir(parents=True)
    (directory / "hosts.yml").write_text(yaml.safe_dump({"all": hosts}))
    if case.get("group_vars"):
        (directory / "group_vars/all/fault.yml").write_text(yaml.safe_dump(case["group_vars"]))
    for name, text in (case.get("files") or {}).items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    return directory


def assert_stopped_in_validation(result: subprocess.CompletedProcess, *expected: str):
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    # One line (one host's failure) names them all: the variable, the host, the cause.
    assert any(all(text in line for text in expected) for line in output.splitlines()), f"no line with all of {expected}:\n{output}"
    assert "UNREACHABLE" not in output and "Gathering Facts" not in output, output
    assert "PLAY [Base system]" not in output, output
    # validate_argument_spec's own failure dumps the whole specification of the role.
    assert "argument_spec_data" not in output, output


def case_inputs(tmp_path: Path, production: Path, case: dict) -> tuple[list[Path | str], list[str]]:
    """A corpus case as ansible-playbook takes it: its inventories (base, its own, its overlay) and
    the extra arguments (production's vault)."""
    inventories: list[Path | str] = list(case.get("inventories") or [])
    extra = []
    if case["base"] != "none":
        inventories.insert(0, production if case["base"] == "production" else BASES[case["base"]])
    if case["base"] == "production":
        extra = ["-e", f"@{vault_file(tmp_path, case.get('vault'))}"]
    if any(key in case for key in ("host_vars", "hosts", "group_vars", "files")):
        inventories.append(write_overlay(tmp_path / "overlay", case))
    return inventories, extra


@pytest.mark.parametrize("case", FAULTS, ids=[case["id"] for case in FAULTS])
def test_broken_inventory_stopped_before_any_host(tmp_path, production, case):
    inventories, extra = case_inputs(tmp_path, production, case)
    assert_stopped_in_validation(run_playbook("validate-inventory.yml", *inventories, extra=extra), *case["expect"])


# An operator limits site.yml to the hosts they mean, none of which is the controller's localhost
# where the validation runs: the gate must stop the run all the same, on a fault of the hosts in
# the limit and on one of hosts outside it.
LIMITED = [("postgres-port-zero", "db1"), ("postgres-port-zero", "app"), ("ssh-port-above-range", "app1.prod.chajipoa.internal"),
           ("ssh-port-above-range", "monitoring")]


@pytest.mark.parametrize("case_id, limit", LIMITED, ids=[f"{case_id}-limit-{limit}" for case_id, limit in LIMITED])
def test_broken_inventory_stopped_under_a_limit(tmp_path, production, case_id, limit):
    [case] = [case for case in FAULTS if case["id"] == case_id]
    inventories, extra = case_inputs(tmp_path, production, case)
    assert_stopped_in_validation(run_site(*inventories, extra=[*extra, "--limit", limit]), *case["expect"])


def test_corpus_is_large_and_covers_both_bases():
    assert len(FAULTS) >= 25
    assert {case["base"] for case in FAULTS} >= {"development", "production"}
    assert len({case["id"] for case in FAULTS}) == len(FAULTS)


def test_development_inventory_passes():
    result = run_playbook("validate-inventory.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_with_every_secret_passes(tmp_path, production):
    result = run_playbook("validate-inventory.yml", production, extra=["-e", f"@{vault_file(tmp_path)}"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_tanzania_on_production_with_every_secret_passes(tmp_path, production):
    result = run_playbook("validate-inventory.yml", production, "inventories/tanzania", extra=["-e", f"@{vault_file(tmp_path)}"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_without_the_files_it_names_is_stopped_naming_each(tmp_path):
    """As the repository has it: no certificate, key or CA bundle beside the inventory. Each role's
    preflight would stop the deploy on its host, after the tiers before it had changed."""
    result = run_site("inventories/production", extra=["-e", f"@{vault_file(tmp_path)}"])
    for host, name in (("edge1", "edge_tls_cert_file"), ("app1", "pgbouncer_tls_key_file"), ("app2", "app_redis_ca_file"),
                       ("backup1", "backup_postgres_ca_file"), ("mon1", "monitoring_managed_postgres_ca_file")):
        assert_stopped_in_validation(result, f"{host}.prod.chajipoa.internal", name, "which is not a file on the controller")


def test_unknown_environment_named(tmp_path):
    inventory = make_inventory(tmp_path, "prod-uction", {"app": ["app1"]}, secrets=all_secrets())
    assert_stopped_in_validation(run_site(inventory), "env_name", "prod-uction")


def production_without_vault(tmp_path: Path) -> Path:
    """A copy of the production inventory as an operator has it before writing the vault."""
    copy = tmp_path / "production"
    shutil.copytree(ROOT / "inventories/production", copy, symlinks=True)
    (copy / "group_vars/all/vault.yml").unlink()
    return copy


def test_production_without_vault_names_each_missing_secret(tmp_path):
    result = run_site(production_without_vault(tmp_path))
    assert_stopped_in_validation(result, "app_jwt_secret", "postgres_app_password", "vault_")


def test_tanzania_overlay_without_vault_stops_too(tmp_path):
    result = run_site(production_without_vault(tmp_path), "inventories/tanzania")
    assert_stopped_in_validation(result, "postgres_monitoring_password")


def test_production_with_its_example_vault_is_stopped_naming_each_example_value():
    """The example vault opens (tests give its documented password), and its values never reach a server."""
    result = run_site("inventories/production", "inventories/tanzania")
    assert_stopped_in_validation(result, "backup1.prod.chajipoa.internal", "backup_postgres_password (secret) holds the example")
    assert_stopped_in_validation(result, "app1.prod.chajipoa.internal", "app_jwt_secret (secret) holds the example")
    # The Tanzanian market names AzamPay: its credentials are needed, and the example's are refused too.
    assert_stopped_in_validation(result, "app1.prod.chajipoa.internal", "app_payment_client_secret (secret) holds the example")


def test_empty_secret_counts_as_missing(tmp_path):
    inventory = make_inventory(tmp_path, "staging", {"redis": ["cache1"]}, secrets={**all_secrets(), "redis_app_password": ""})
    assert_stopped_in_validation(run_site(inventory), "redis_app_password")


def test_host_in_no_known_group_named(tmp_path):
    inventory = make_inventory(tmp_path, "development", {"webservers": ["stray1"]}, secrets=all_secrets())
    assert_stopped_in_validation(run_site(inventory), "stray1 is in no known group", "webservers")


@pytest.mark.parametrize(
    ("variable", "value"),
    [("common_ssh_port", "twenty-two"), ("common_admin_users", "amina"), ("common_firewall_enabled", "maybe")],
)
def test_wrong_type_for_a_role_input_named(tmp_path, variable, value):
    inventory = make_inventory(tmp_path, "development", {"app": ["app1"]}, host_vars={variable: value}, secrets=all_secrets())
    assert_stopped_in_validation(run_site(inventory), variable)
