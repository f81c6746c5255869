"""Shared by the testinfra suites of every molecule scenario.

A failing lab test is hard to read without the service's own account of what went wrong, so the
report of every failure carries the journal of the units the test names with
``@pytest.mark.journal("unit", ...)`` (on the test or the module), and of every unit systemd
reports as failed.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra
from testinfra.host import Host

JOURNAL_LINES = 60


@pytest.fixture(scope="session")
def lab_host():
    """Returns a function that gives the testinfra host of a scenario instance by name."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return lambda name: testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}")


@pytest.fixture(scope="session")
def lab_address():
    """Returns a function that gives a lab host's (a testinfra host's) IPv4 address on the scenario's
    network, its eth0: where the other instances reach it."""
    return lambda host: host.check_output("ip -4 -o addr show eth0").split()[3].split("/")[0]


@pytest.fixture(scope="session")
def run_playbook():
    """Returns a function that runs one of the project's playbooks (a path relative to the project,
    or absolute) on this scenario's inventory and returns the completed process, whose stdout is the
    ansible.posix.json callback's report (parse it with json.loads)."""
    project = Path(__file__).resolve().parents[1]
    # No other callback prints beside the JSON report (the scenarios' ansible.cfg enables profile_tasks):
    # the enabled list names the stdout callback alone, which Ansible loads once (an empty list is an error).
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(project / "collections"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_CALLBACKS_ENABLED="ansible.posix.json", ANSIBLE_INJECT_FACT_VARS="false", ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")

    def run(playbook: str | Path, *args: str) -> subprocess.CompletedProcess:
        command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", os.environ["MOLECULE_INVENTORY_FILE"],
                   str(project / playbook), *args]
        return subprocess.run(command, cwd=project, capture_output=True, text=True, check=False, env=env)
    return run


def _units_for(item: pytest.Item, host) -> list[str]:
    named = [unit for marker in item.iter_markers("journal") for unit in marker.args]
    failed = host.run("systemctl list-units --failed --plain --no-legend --no-pager").stdout.split()
    return list(dict.fromkeys(named + [word for word in failed if "." in word]))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    # Every lab host the test used: the parametrized `host`, or fixtures such as `client`/`server`.
    hosts = {id(value): value for value in getattr(item, "funcargs", {}).values() if isinstance(value, Host)}
    for host in hosts.values():
        for unit in _units_for(item, host):
            journal = host.run(f"journalctl -u {unit} -n {JOURNAL_LINES} --no-pager -o short-precise")
            report.sections.append((f"journal of {unit} on {host.backend.hostname}", journal.stdout or journal.stderr))


def _sandbox_limits():
    """plugins/module_utils/systemd_sandbox.py, the one place the units' exposure limits are kept."""
    project = Path(__file__).resolve().parents[1]
    if str(project / "collections") not in sys.path:
        sys.path.insert(0, str(project / "collections"))
    from ansible_collections.chajipoa.platform.plugins.module_utils import systemd_sandbox  # noqa: E402 (the project's own path first)
    return systemd_sandbox


@pytest.fixture(scope="session")
def sandbox_exposure():
    """Returns a function that gives a unit's exposure on a host as `systemd-analyze security` reports it,
    and the unit's limit from plugins/module_utils/systemd_sandbox.py. `entry` names the unit's entry there
    when the unit's name differs from it (an app's colours are the entry app@.service)."""
    sandbox = _sandbox_limits()

    def measure(host, unit: str, entry: str | None = None) -> tuple[float, float]:
        output = host.check_output(f"systemd-analyze security --no-pager {unit}")
        found = [line for line in output.splitlines() if "Overall exposure level" in line]
        assert found, f"systemd-analyze security printed no exposure for {unit}:\n{output}"
        return float(found[-1].split(":")[1].split()[0]), sandbox.limit(entry or unit)
    return measure
