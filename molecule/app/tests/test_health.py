"""playbooks/health.yml (the seed's health-check.sh) on the whole stack of this scenario: it passes
while everything serves, and with PostgreSQL stopped it fails by its deadline naming the check, on
the database host and, through the API's own health answer, on the application host."""
from __future__ import annotations

import json
import os

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

RUNNER = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
GATE = "Gate on the services of this host"
DEADLINE = 20

pytestmark = pytest.mark.journal("postgresql@15-main.service", "pgbouncer.service")


def gate_results(run) -> dict[str, dict]:
    """Each host's result of the gate task, from the json callback's report."""
    report = json.loads(run.stdout)
    return {host: result for play in report["plays"] for task in play["tasks"] if task["task"]["name"] == GATE
            for host, result in task["hosts"].items()}


@pytest.fixture(scope="module")
def db(lab_host):
    return lab_host(RUNNER.get_hosts("postgres")[0])


def test_health_passes_on_the_running_stack(run_playbook):
    run = run_playbook("playbooks/health.yml", "-e", "health_deadline=60")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    results = gate_results(run)
    assert set(results) == set(RUNNER.get_hosts("postgres") + RUNNER.get_hosts("redis") + RUNNER.get_hosts("app")
                               + RUNNER.get_hosts("edge") + RUNNER.get_hosts("monitoring"))
    checked = {check["name"].split(" (")[0] for result in results.values() for check in result["checks"]}
    assert checked == {"postgres primary", "redis", "app reference-api", "pgbouncer", "edge /api/health", "prometheus",
                       "alertmanager"}
    assert all(result["passed"] for result in results.values())


def test_health_fails_by_its_deadline_naming_postgres_when_it_is_stopped(db, run_playbook):
    db.check_output("systemctl stop postgresql@15-main")
    try:
        run = run_playbook("playbooks/health.yml", "-e", f"health_deadline={DEADLINE}")
    finally:
        db.check_output("systemctl start postgresql@15-main")
    assert run.returncode != 0
    results = gate_results(run)
    database, application = RUNNER.get_hosts("postgres")[0], RUNNER.get_hosts("app")[0]
    assert not results[database]["passed"] and "postgres primary" in results[database]["msg"]
    # The API answers 503 and says which of its dependencies is down.
    assert not results[application]["passed"] and "app reference-api" in results[application]["msg"]
    assert '"postgres":{"status":"down"' in results[application]["msg"]
    # Through the edge too: the live path answers 503 while PostgreSQL is down.
    edge = RUNNER.get_hosts("edge")[0]
    assert not results[edge]["passed"] and "edge /api/health" in results[edge]["msg"]
    # Redis on the same host was not affected and is not named.
    assert "redis" not in results[database]["failing"]
    for result in results.values():
        if not result["passed"]:
            assert result["elapsed"] <= DEADLINE + 1
    # Everything serves again: the gate passes, so later tests find the stack as they expect.
    again = run_playbook("playbooks/health.yml", "-e", "health_deadline=60")
    assert again.returncode == 0, again.stdout[-4000:]
