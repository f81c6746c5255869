"""playbooks/lab.yml on a one-host lab of its own: created, unchanged on a rerun, then removed.

Needs the Docker engine and the lab image (`make lab-image`; `make integration` provides both). The host,
network and subnet names are this test's own, so a running development lab is left alone.
"""
from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from tests.conftest import run_playbook

NETWORK = "chajipoa-lifecycle-test"
CONTAINER = "chajipoa-lifecycle-probe1"


def docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    path = tmp_path_factory.mktemp("lab-inventory")
    (path / "group_vars" / "all").mkdir(parents=True)
    hosts = {"all": {"children": {"redis": {"hosts": {"probe1": {
        "ansible_host": CONTAINER, "private_address": "172.30.81.11", "lab_ports": ["26379:6379"],
    }}}}}}
    (path / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (path / "group_vars/all/lab.yml").write_text(yaml.safe_dump({
        "env_name": "development", "ansible_connection": "community.docker.docker", "ansible_user": "root",
        "lab_image": "chajipoa-lab:bookworm", "lab_network": NETWORK, "lab_subnet": "172.30.81.0/24",
    }))
    yield path
    run_playbook("lab.yml", path, extra=["-e", "lab_state=absent"])


def test_lab_created_idempotent_and_removed(inventory):
    created = run_playbook("lab.yml", inventory)
    assert created.returncode == 0, created.stdout + created.stderr

    details = json.loads(docker("inspect", CONTAINER).stdout)[0]
    assert details["State"]["Running"]
    assert details["Config"]["Hostname"] == "probe1"
    assert details["NetworkSettings"]["Networks"][NETWORK]["IPAMConfig"]["IPv4Address"] == "172.30.81.11"
    assert details["HostConfig"]["PortBindings"] == {"6379/tcp": [{"HostIp": "127.0.0.1", "HostPort": "26379"}]}
    assert docker("exec", CONTAINER, "systemctl", "is-system-running").stdout.strip() in ("running", "degraded")
    assert docker("exec", CONTAINER, "cat", "/proc/1/comm").stdout.strip() == "systemd"

    again = run_playbook("lab.yml", inventory)
    assert again.returncode == 0 and set(re.findall(r"changed=(\d+)", again.stdout)) == {"0"}, again.stdout

    removed = run_playbook("lab.yml", inventory, extra=["-e", "lab_state=absent"])
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert docker("inspect", CONTAINER).returncode != 0
    assert docker("network", "inspect", NETWORK).returncode != 0
