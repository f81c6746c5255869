"""playbooks/deploy.yml and rollback.yml on this scenario's two app hosts behind the edge, while one
request loop (tests/loadloop.py: several clients, kept-alive and new connections, https verified
against the development CA) runs from the controller through the edge for the whole module: a new
release, a rollback, three broken releases. Not one request may fail. Sentry's calls go to a local
stand-in (tests/sentry_standin.py) that records them.

The tests run in order, each starting from the state the one before left. deploy.yml runs with
--skip-tags validate_inventory: this scenario's inventory holds what its roles need, not a whole
platform's secret catalogue (the validation play has tests of its own)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

# The project's shared test helpers (tests/*.py), which testinfra's import path does not reach.
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.loadloop import RequestLoop  # noqa: E402
from tests.releases import make_release  # noqa: E402
from tests.sentry_standin import SentryStandin  # noqa: E402

RUNNER = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
APPS = RUNNER.get_hosts("app")
EDGE = RUNNER.get_hosts("edge")[0]
APP = "reference-api"
CA = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "pki" / "ca.crt"
SKIP_VALIDATION = ("--skip-tags", "validate_inventory")
SENTRY_TOKEN = "sntrys_molecule-standin-token"
# The guide's gate, shorter where a broken release would otherwise run it to its deadline.
SLOW_DEADLINE = 15

pytestmark = pytest.mark.journal(f"{APP}@blue.service", f"{APP}@green.service", "nginx.service")


@pytest.fixture(scope="module")
def hosts(lab_host):
    return {name: lab_host(name) for name in APPS}


@pytest.fixture(scope="module")
def loop(lab_host, lab_address):
    """The request loop through the edge, for the whole module."""
    address = lab_address(lab_host(EDGE))
    domain = RUNNER.get_variables(EDGE)["platform_domain"]
    # Paced (50 ms between a client's requests, about 100 a second in all): dense enough that a gap
    # in service is hit, light enough to leave the two cores to the deploys.
    running = RequestLoop(f"https://{domain}/api/version", clients=6, address=f"{address}:443", ca_file=str(CA),
                          pause=0.05).start()
    assert running.wait_for(lambda report: report.versions, timeout=30), running.report.failures[:5]
    yield running
    report = running.stop()
    print(f"request loop: {report.requests} requests, {report.retries} reconnects, {len(report.failures)} failed")


@pytest.fixture(scope="module")
def sentry():
    with SentryStandin(token=SENTRY_TOKEN) as running:
        yield running


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    directory = tmp_path_factory.mktemp("releases")
    return {name: make_release(directory, version, fault) for name, version, fault in (
        ("new", "1.1.0", None), ("crash", "1.1.1", "crash"), ("unhealthy", "1.1.2", "unhealthy"), ("slow", "1.1.3", "slow"))}


@pytest.fixture(scope="module")
def deploy(run_playbook, sentry):
    sentry_vars = json.dumps({"deploy_sentry_token": SENTRY_TOKEN, "deploy_sentry_url": sentry.url,
                              "deploy_sentry_org": "chajipoa", "deploy_sentry_projects": ["api"]})

    def run(source: Path, *extra: str):
        # No backup program runs in this scenario: deploy_backup=false saves the play that says so.
        return run_playbook("playbooks/deploy.yml", *SKIP_VALIDATION, "-e", f"app_source={source}", "-e", sentry_vars,
                            "-e", "deploy_backup=false", *extra)
    return run


def failures(run) -> list[str]:
    """The messages of every failed task result in a run's JSON report."""
    report = json.loads(run.stdout)
    return [result.get("msg", "") for play in report["plays"] for task in play["tasks"]
            for result in task["hosts"].values() if result.get("failed")]


def live(host) -> str:
    return host.file(f"/etc/chajipoa/apps/{APP}/live").content_string.strip()


def release_of(host, colour: str) -> str:
    return host.file(f"/opt/{APP}/{colour}").linked_to.rsplit("/", 1)[1]


def active(host, colour: str) -> bool:
    return host.run(f"systemctl is-active --quiet {APP}@{colour}").rc == 0


def served_since(loop: RequestLoop, since: float) -> set[str]:
    """Versions the edge answered with after `since`, once the loop has made 100 more requests."""
    count = loop.report.requests
    assert loop.wait_for(lambda report: report.requests >= count + 100, timeout=30)
    current = loop.report.changes[-1][1]
    return {version for at, version in loop.report.changes if at >= since} | {current}


def other(colour: str) -> str:
    return "green" if colour == "blue" else "blue"


def test_a_new_release_is_deployed_without_losing_a_request(hosts, loop, deploy, releases, sentry):
    before = {name: (live(host), release_of(host, live(host))) for name, host in hosts.items()}
    run = deploy(releases["new"])
    assert run.returncode == 0, failures(run) or run.stdout[-3000:]
    after_deploy = loop.now()
    new = {name: release_of(host, other(before[name][0])) for name, host in hosts.items()}
    [version] = set(new.values())
    assert version.startswith("1.1.0-")
    for name, host in hosts.items():
        assert live(host) == other(before[name][0])
        # The old colour keeps running, warm for a rollback.
        assert active(host, before[name][0]) and release_of(host, before[name][0]) == before[name][1]
    assert served_since(loop, after_deploy) == {version}
    assert loop.report.failures == [], loop.report.failures[:5]
    assert [(call.path, call.status, call.body) for call in sentry.calls] == [
        ("/api/0/organizations/chajipoa/releases/", 201, {"version": version, "projects": ["api"]}),
        (f"/api/0/organizations/chajipoa/releases/{version}/deploys/", 201, {"environment": "development", "name": version})]


def test_rollback_returns_to_the_previous_release_without_losing_a_request(hosts, loop, run_playbook):
    before = {name: (live(host), release_of(host, other(live(host)))) for name, host in hosts.items()}
    run = run_playbook("playbooks/rollback.yml", *SKIP_VALIDATION)
    assert run.returncode == 0, failures(run) or run.stdout[-3000:]
    after = loop.now()
    for name, host in hosts.items():
        assert live(host) == other(before[name][0]) and active(host, before[name][0])
    assert served_since(loop, after) == {release for _live, release in before.values()}
    assert loop.report.failures == [], loop.report.failures[:5]


@pytest.mark.parametrize("fault, extra, named", [
    ("crash", (), "last error: connection refused"),
    ("unhealthy", (), 'last error: HTTP 500, expected 200: {"status":"unhealthy"'),
    ("slow", ("-e", f"deploy_gate_deadline={SLOW_DEADLINE}"), "ms above 200 ms"),
])
def test_a_broken_release_is_never_switched_in(hosts, loop, deploy, releases, sentry, fault, extra, named):
    serving = {name: (live(host), release_of(host, live(host))) for name, host in hosts.items()}
    calls = len(sentry.calls)
    run = deploy(releases[fault], *extra)
    assert run.returncode != 0
    [message] = [text for text in failures(run) if text.startswith("Cannot deploy release")]
    assert "was refused before any traffic reached it" in message and f"app {APP} (" in message and named in message
    # The first batch (one host) got the release on its idle colour; the run ended there.
    version = releases[fault].name.split("-")[2] + "-"
    [(first, idle)] = [(host, other(serving[name][0])) for name, host in hosts.items()
                       if release_of(host, other(serving[name][0])).startswith(version)]
    refused = release_of(first, idle)
    assert refused in message
    reason = first.file(f"/opt/{APP}/releases/{refused}/.chajipoa-failed").content_string
    assert reason.startswith(f"refused on the {idle} colour before the switch: Cannot pass the health gate")
    assert not active(first, idle)
    # Nothing moved: every host serves what it served, through the edge, without a lost request.
    assert {name: (live(host), release_of(host, live(host))) for name, host in hosts.items()} == serving
    assert served_since(loop, loop.now()) == {release for _live, release in serving.values()}
    assert loop.report.failures == [], loop.report.failures[:5]
    # Sentry heard of the release (created before its install), never of a deploy of it.
    assert [call.path.rsplit("/", 2)[-2] for call in sentry.calls[calls:]] == ["releases"]


def test_a_failed_release_is_refused_again_and_rollback_will_not_return_to_it(hosts, deploy, releases, run_playbook):
    # The newest failed release: older ones were pruned with their marks (app_releases_kept 2).
    again = deploy(releases["slow"])
    assert again.returncode != 0
    assert any("a deploy marked it failed" in text and "deploy_retry_failed=true" in text for text in failures(again))
    rollback = run_playbook("playbooks/rollback.yml", *SKIP_VALIDATION)
    assert rollback.returncode != 0
    messages = [text for text in failures(rollback) if text.startswith("Cannot roll back")]
    assert any("was marked failed by a deploy" in text for text in messages), messages
