"""Paths shared by the unit and integration tests.

Ansible's collection loader is installed here, before any test imports the collection: the roles'
expressions call the collection's own filters (chajipoa.platform.peer_addresses), which an offline
Templar finds only through this loader, and once Python has imported ansible_collections as a plain
package, the loader can no longer take it over. Here, not deeper: pytest imports the conftest files
of tests/integration before those of tests/unit when it is given the whole tests directory.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader
from ansible.vars.manager import VariableManager

ROOT = Path(__file__).resolve().parents[1]
init_plugin_loader([str(ROOT / "collections")])
# The password of inventories/production's example vault (docs/secrets.md): example values only.
EXAMPLE_VAULT_PASSWORD_FILE = ROOT / "tests/inventories/example-vault-password"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def load_yaml(path: Path):
    with path.open() as handle:
        return yaml.safe_load(handle)


def development_lab(**overrides) -> tuple[dict, dict]:
    """The development inventory's groups and each host's variables (group_vars included, still
    untemplated), with `overrides` on every host."""
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(ROOT / "inventories" / "development")])
    manager = VariableManager(loader=loader, inventory=inventory)
    hostvars = {host.name: {**manager.get_vars(host=host), **overrides} for host in inventory.get_hosts()}
    return inventory.get_groups_dict(), hostvars


def role_options(role: str) -> dict:
    """The options of a role's main entry point, from its meta/argument_specs.yml."""
    return load_yaml(ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]


def run_playbook(playbook: str | Path, *inventories: Path | str, extra: list[str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """A run of one of the project's playbooks (its name under playbooks/) or of one a test wrote (an
    absolute path), from the project's directory and so with its ansible.cfg."""
    args = ["ansible-playbook", str(Path("playbooks", playbook))]
    for inventory in inventories:
        args += ["-i", str(inventory)]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_CACHE_PLUGIN="memory",
               ANSIBLE_VAULT_PASSWORD_FILE=str(EXAMPLE_VAULT_PASSWORD_FILE))
    return subprocess.run(args + (extra or []), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
