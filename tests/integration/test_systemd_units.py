"""chajipoa.platform.systemd_units against the real systemd of a lab container (chajipoa-lab:bookworm),
through ansible-playbook and the community.docker.docker connection, so the module runs as in a role:
two units enabled and started in one call, then unchanged, then only the stopped one restarted;
check mode; a missing and a masked unit refused before anything changes; a template's instance.

The units are written into the container (the image has no cron or ssh), where packages put theirs
(/lib/systemd/system), so that they can be masked. Needs the Docker engine and
the lab image (`make integration`).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests import lab_container
from tests.lab_container import docker
from tests.conftest import ROOT

CONTAINER = "chajipoa-units-test-1"
UNIT = """[Unit]
Description=systemd_units test unit %s
[Service]
ExecStart=/bin/sleep infinity
[Install]
WantedBy=multi-user.target
"""
UNITS = ("chajipoa-a.service", "chajipoa-b.service", "demo@.service")
INSTANCE = "demo@one.service"


def systemctl(*args: str) -> str:
    return docker("exec", CONTAINER, "systemctl", *args).stdout.strip()


@pytest.fixture(scope="module")
def lab_host():
    lab_container.start(CONTAINER)
    try:
        for unit in UNITS:
            written = subprocess.run(["docker", "exec", "-i", CONTAINER, "tee", f"/lib/systemd/system/{unit}"],
                                     input=UNIT % unit, capture_output=True, text=True, check=False)
            assert written.returncode == 0, written.stderr
        assert docker("exec", CONTAINER, "systemctl", "daemon-reload").returncode == 0
        yield CONTAINER
    finally:
        lab_container.remove(CONTAINER)


@pytest.fixture
def host(lab_host, tmp_path):
    """The container with the test units stopped and disabled (and unmasked); a function that runs
    the module there with the given options (check=True: in check mode) and returns the task's result."""
    names = ["chajipoa-a.service", "chajipoa-b.service", INSTANCE]
    docker("exec", lab_host, "systemctl", "unmask", *names)
    docker("exec", lab_host, "systemctl", "disable", "--now", *names)

    def call(options: dict, check: bool = False) -> dict:
        playbook = tmp_path / f"play-{len(list(tmp_path.iterdir()))}.yml"
        playbook.write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "tasks": [
            {"name": "units", "chajipoa.platform.systemd_units": options, "check_mode": check}]}]))
        env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
                   ANSIBLE_NOCOLOR="1", ANSIBLE_CACHE_PLUGIN="memory")
        done = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", f"{lab_host},",
                               "-c", "community.docker.docker", "-e", "ansible_python_interpreter=/usr/bin/python3",
                               str(playbook)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False)
        try:
            output = json.loads(done.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"ansible-playbook gave no JSON (rc {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return output["plays"][0]["tasks"][0]["hosts"][lab_host]

    return call


def wanted(*names: str) -> dict:
    return {"units": [{"name": name, "enabled": True, "state": "started"} for name in names]}


def unit_states(*names: str) -> list[tuple[str, str]]:
    return [(systemctl("is-enabled", name), systemctl("is-active", name)) for name in names]


def test_two_units_enabled_and_started_in_one_call_then_unchanged(host):
    first = host({"daemon_reload": True, **wanted("chajipoa-a", "chajipoa-b.service")})
    assert first["changed"] is True, first
    assert first["units"] == [
        {"name": "chajipoa-a.service", "enabled": True, "active": True, "changed": True, "actions": ["enable", "start"]},
        {"name": "chajipoa-b.service", "enabled": True, "active": True, "changed": True, "actions": ["enable", "start"]},
    ]
    assert unit_states("chajipoa-a.service", "chajipoa-b.service") == [("enabled", "active")] * 2

    second = host(wanted("chajipoa-a", "chajipoa-b.service"))
    assert second["changed"] is False, second
    assert [u["actions"] for u in second["units"]] == [[], []]

    systemctl("stop", "chajipoa-b.service")
    third = host(wanted("chajipoa-a", "chajipoa-b.service"))
    assert third["changed"] is True
    assert [(u["name"], u["changed"], u["actions"]) for u in third["units"]] == [
        ("chajipoa-a.service", False, []), ("chajipoa-b.service", True, ["start"])]
    assert unit_states("chajipoa-b.service") == [("enabled", "active")]


def test_stopped_and_disabled_in_one_call(host):
    host(wanted("chajipoa-a", "chajipoa-b"))
    result = host({"units": [{"name": "chajipoa-a", "enabled": False, "state": "stopped"}, {"name": "chajipoa-b"}]})
    assert result["units"] == [
        {"name": "chajipoa-a.service", "enabled": False, "active": False, "changed": True, "actions": ["disable", "stop"]},
        {"name": "chajipoa-b.service", "enabled": None, "active": True, "changed": False, "actions": []},
    ]
    assert unit_states("chajipoa-a.service", "chajipoa-b.service") == [("disabled", "inactive"), ("enabled", "active")]


def test_check_mode_predicts_and_changes_nothing(host):
    result = host({"daemon_reload": True, **wanted("chajipoa-a", "chajipoa-b")}, check=True)
    assert result["changed"] is True
    assert [(u["enabled"], u["active"], u["actions"]) for u in result["units"]] == [(True, True, ["enable", "start"])] * 2
    assert unit_states("chajipoa-a.service", "chajipoa-b.service") == [("disabled", "inactive")] * 2


def test_an_unknown_unit_fails_naming_it_before_anything_changes(host):
    result = host(wanted("chajipoa-a", "chajipoa-nosuch"))
    assert result.get("failed") is True, result
    assert "chajipoa-nosuch.service" in result["msg"]
    assert result["changed"] is False
    assert unit_states("chajipoa-a.service") == [("disabled", "inactive")]


def test_a_masked_unit_is_not_started(host):
    assert docker("exec", CONTAINER, "systemctl", "mask", "chajipoa-b.service").returncode == 0
    result = host(wanted("chajipoa-a", "chajipoa-b"))
    assert result.get("failed") is True, result
    assert "chajipoa-b.service" in result["msg"] and "Masked" in result["msg"]
    assert unit_states("chajipoa-a.service") == [("disabled", "inactive")]
    # Stopping or disabling it is fine, and there is nothing to do.
    assert host({"units": [{"name": "chajipoa-b", "enabled": False, "state": "stopped"}]})["changed"] is False


def test_a_template_instance_is_enabled_and_started_then_unchanged(host):
    first = host(wanted(INSTANCE))
    assert first["units"] == [{"name": INSTANCE, "enabled": True, "active": True, "changed": True,
                               "actions": ["enable", "start"]}]
    assert unit_states(INSTANCE) == [("enabled", "active")]
    second = host(wanted("demo@one"))
    assert second["changed"] is False, second
    assert second["units"] == [{"name": INSTANCE, "enabled": True, "active": True, "changed": False, "actions": []}]
