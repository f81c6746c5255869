"""Paths shared by the unit and integration tests."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def load_yaml(path: Path):
    with path.open() as handle:
        return yaml.safe_load(handle)


def role_options(role: str) -> dict:
    """The options of a role's main entry point, from its meta/argument_specs.yml."""
    return load_yaml(ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]


def run_playbook(playbook: str, *inventories: Path | str, extra: list[str] | None = None) -> subprocess.CompletedProcess:
    args = ["ansible-playbook", f"playbooks/{playbook}"]
    for inventory in inventories:
        args += ["-i", str(inventory)]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_CACHE_PLUGIN="memory")
    return subprocess.run(args + (extra or []), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
