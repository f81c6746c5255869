"""Shared by the testinfra suites of every molecule scenario.

A failing lab test is hard to read without the service's own account of what went wrong, so the
report of every failure carries the journal of the units the test names with
``@pytest.mark.journal("unit", ...)`` (on the test or the module), and of every unit systemd
reports as failed.
"""
from __future__ import annotations

import os

import pytest
import testinfra
from testinfra.host import Host

JOURNAL_LINES = 60


@pytest.fixture(scope="session")
def lab_host():
    """Returns a function that gives the testinfra host of a scenario instance by name."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return lambda name: testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}")


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
