"""Run one of the rendering plays beside this file against real inventories, with every catalogued
secret passed as a vault_ extra var, and return what its last task printed for each host. No host is
contacted: the plays render templates on the controller."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import EXAMPLE_VAULT_PASSWORD_FILE, ROOT, load_yaml

CATALOGUE = load_yaml(ROOT / "roles/validate_inventory/vars/main.yml")["_validate_inventory_secrets"]


def secret(name: str) -> str:
    """The test value of a catalogued secret: long enough for every minimum, and recognisable."""
    return f"test-{name}-0123456789abcdef0123456789abcdef"


def last_task_messages(play: Path, *inventories: str) -> dict[str, Any]:
    """Each host's msg of the play's last task, as ansible-playbook printed it."""
    args = ["ansible-playbook", str(play)]
    for inventory in inventories:
        args += ["-i", str(ROOT / "inventories" / inventory)]
    for entry in CATALOGUE:
        args += ["-e", f"vault_{entry['name']}={secret(entry['name'])}"]
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_CACHE_PLUGIN="memory",
               ANSIBLE_VAULT_PASSWORD_FILE=str(EXAMPLE_VAULT_PASSWORD_FILE))
    run = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    task = json.loads(run.stdout)["plays"][0]["tasks"][-1]
    return {host: result["msg"] for host, result in task["hosts"].items()}
