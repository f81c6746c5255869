"""playbooks/deploy.yml and rollback.yml on this scenario's two app hosts behind the edge, while one
request loop (tests/loadloop.py: several clients, kept-alive and new connections, https verified
against the development CA) runs from the controller through the edge for the whole module: a new
release from a git tag (with a migration of its own), a rollback, three broken releases and one
whose migration fails. Not one request may fail. Sentry's calls go to a local stand-in
(tests/sentry_standin.py) that records them.

The tests run in order, each starting from the state the one before left. deploy.yml runs with
--skip-tags validate_inventory: this scenario's inventory holds what its roles need, not a whole
platform's secret catalogue (the validation play has tests of its own)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

# The project's shared test helpers (tests/*.py), which testinfra's import path does not reach.
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.loadloop import RequestLoop  # noqa: E402
from tests.releases import git_repository, make_release, migration_name  # noqa: E402
from tests.sentry_standin import SentryStandin  # noqa: E402

RUNNER = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
APPS = RUNNER.get_hosts("app")
EDGE = RUNNER.get_hosts("edge")[0]
PRIMARY = RUNNER.get_hosts("postgres")[0]
APP = "reference-api"
CA = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "pki" / "ca.crt"
SKIP_VALIDATION = ("--skip-tags", "validate_inventory")
SENTRY_TOKEN = "sntrys_molecule-standin-token"
# The guide's gate, shorter where a broken release would otherwise run it to its deadline.
SLOW_DEADLINE = 15
# What the release whose migration fails asks for (its migration, tests/releases.py).
MISSING_TABLE = "no_table_of_release_1_1_4"
# The git release: its tag, and where each app host finds its repository (a bare copy on the host).
GIT_VERSION, GIT_TAG = "1.2.0", "v1.2.0"
GIT_REPO = "/srv/reference-api.git"

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
    made = {name: make_release(directory, version, fault) for name, version, fault in (
        ("crash", "1.1.1", "crash"), ("unhealthy", "1.1.2", "unhealthy"), ("slow", "1.1.3", "slow"))}
    made["migration"] = make_release(directory, "1.1.4", migration=f"SELECT * FROM {MISSING_TABLE}")
    return made


@pytest.fixture(scope="module")
def git_repo(tmp_path_factory) -> str:
    """The URL of a repository on each app host whose tag GIT_TAG holds a release with a migration of
    its own. docker cp: git is not on the hosts before the role installs it for a git source."""
    directory = tmp_path_factory.mktemp("git")
    release = make_release(directory, GIT_VERSION, migration="CREATE TABLE release_probe (id int)")
    bare = git_repository(release, directory, GIT_TAG)
    for host in APPS:
        subprocess.run(["docker", "cp", f"{bare}/.", f"{host}:{GIT_REPO}"], check=True, capture_output=True, text=True)
    return f"file://{GIT_REPO}"


@pytest.fixture(scope="module")
def deploy(run_playbook, sentry):
    sentry_vars = json.dumps({"deploy_sentry_token": SENTRY_TOKEN, "deploy_sentry_url": sentry.url,
                              "deploy_sentry_org": "chajipoa", "deploy_sentry_projects": ["api"]})

    def run(*extra: str, **source: Path | str):
        """source: app_source=..., or app_git_repo=... and app_git_version=..."""
        # No backup program runs in this scenario: deploy_backup=false saves the play that says so.
        source_vars = json.dumps({name: str(value) for name, value in source.items()})
        return run_playbook("playbooks/deploy.yml", *SKIP_VALIDATION, "-e", source_vars, "-e", sentry_vars,
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


def colours_of(host) -> dict[str, tuple[str, str, str, str]]:
    """Each colour's release (its link), the release its environment file names (APP_VERSION, what
    the colour reports once it starts), its unit's state and main process (0 when stopped), in one
    command."""
    lines = host.check_output(
        "for colour in blue green; do "
        f"echo $colour $(basename $(readlink /opt/{APP}/$colour)) "
        f"$(sed -n 's/^APP_VERSION=\"\\(.*\\)\"$/\\1/p' /etc/chajipoa/apps/{APP}/$colour.env) "
        f"$(systemctl is-active {APP}@$colour) $(systemctl show -P MainPID {APP}@$colour); done").splitlines()
    return {colour: tuple(rest) for colour, *rest in (line.split() for line in lines)}


def started_at(host, colour: str) -> float:
    """When the colour's running process started (systemd's record), as a Unix time."""
    shown = host.check_output(f"systemctl show --timestamp=us+utc -P ExecMainStartTimestamp {APP}@{colour}")
    return datetime.strptime(shown, "%a %Y-%m-%d %H:%M:%S.%f UTC").replace(tzinfo=timezone.utc).timestamp()


def test_a_new_release_from_a_git_tag_is_deployed_without_losing_a_request(hosts, loop, deploy, git_repo, sentry):
    before = {name: (live(host), release_of(host, live(host))) for name, host in hosts.items()}
    run = deploy(app_git_repo=git_repo, app_git_version=GIT_TAG)
    assert run.returncode == 0, failures(run) or run.stdout[-3000:]
    after_deploy = loop.now()
    new = {name: release_of(host, other(before[name][0])) for name, host in hosts.items()}
    [version] = set(new.values())
    assert version == GIT_TAG
    for name, host in hosts.items():
        assert live(host) == other(before[name][0])
        # The old colour keeps running, warm for a rollback.
        assert active(host, before[name][0]) and release_of(host, before[name][0]) == before[name][1]
    assert served_since(loop, after_deploy) == {version}
    assert loop.report.failures == [], loop.report.failures[:5]
    assert [(call.path, call.status, call.body) for call in sentry.calls] == [
        ("/api/0/organizations/chajipoa/releases/", 201, {"version": version, "projects": ["api"]}),
        (f"/api/0/organizations/chajipoa/releases/{version}/deploys/", 201, {"environment": "development", "name": version})]


def test_the_git_release_is_the_tag_migrated_before_it_started_and_unchanged_when_installed_again(hosts, lab_host, git_repo,
                                                                                                   run_playbook):
    applied = float(lab_host(PRIMARY).check_output(
        "runuser -u postgres -- psql -d chajipoa -tAc "
        f"\"SELECT extract(epoch FROM applied_at) FROM schema_migrations WHERE name = '{migration_name(GIT_VERSION)}'\""))
    release = f"/opt/{APP}/releases/{GIT_TAG}"
    colours = {name: live(host) for name, host in hosts.items()}
    for name, host in hosts.items():
        commits = host.check_output(f"git -C {GIT_REPO} rev-parse {GIT_TAG}^{{commit}}; git -C {release} rev-parse HEAD").split()
        assert len(commits) == 2 and commits[0] == commits[1], commits
        assert host.file(f"{release}/.chajipoa-migrated").exists
        # The schema the release brings was in before the colour's process started.
        assert applied < started_at(host, colours[name])
    # Every host is live on the same colour (a deploy moves each off the colour it was live on, and
    # they all began on blue): one run installs the release there again, and changes nothing.
    [colour] = set(colours.values())
    again = run_playbook("molecule/app/release.yml", "-e", f"app_release_colour={colour}", "-e", f"app_git_repo={git_repo}",
                         "-e", f"app_git_version={GIT_TAG}")
    assert again.returncode == 0, failures(again) or again.stdout[-3000:]
    assert {host: stats["changed"] for host, stats in json.loads(again.stdout)["stats"].items()} == dict.fromkeys(
        RUNNER.get_hosts("all"), 0)


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
    run = deploy(*extra, app_source=releases[fault])
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


def test_refused_releases_never_crowd_out_the_good_ones(hosts):
    # Three refusals on the first batch's host, each marking a newer directory failed: app_releases_kept
    # (2) still keeps two releases that installed and passed, and no refused one no colour runs.
    # The first batch is the first app host in the inventory's order, every time (a loaded CI run
    # once began one of them on the other host, which the old group_by allowed).
    marked = []
    for name, host in hosts.items():
        listing = host.check_output(f"cd /opt/{APP}/releases && for release in *; do "
                                    "test -e $release/.chajipoa-failed && echo failed $release || echo good $release; done")
        releases = [line.split() for line in listing.splitlines()]
        refused = {release for state, release in releases if state == "failed"}
        assert refused <= {release_of(host, colour) for colour in ("blue", "green")}, listing
        if refused:
            marked.append(name)
            assert len([release for state, release in releases if state == "good"]) >= 2, listing
    assert marked == RUNNER.inventory["app"]["hosts"][:1]


def test_a_failed_release_is_refused_again_and_rollback_will_not_return_to_it(hosts, deploy, releases, run_playbook):
    # The newest failed release: older ones were pruned with their marks (app_releases_kept 2).
    again = deploy(app_source=releases["slow"])
    assert again.returncode != 0
    assert any("a deploy marked it failed" in text and "deploy_retry_failed=true" in text for text in failures(again))
    rollback = run_playbook("playbooks/rollback.yml", *SKIP_VALIDATION)
    assert rollback.returncode != 0
    messages = [text for text in failures(rollback) if text.startswith("Cannot roll back")]
    assert any("was marked failed by a deploy" in text for text in messages), messages


def test_a_release_whose_migration_fails_is_neither_linked_nor_started(hosts, loop, deploy, releases):
    before = {name: colours_of(host) for name, host in hosts.items()}
    serving = {name: live(host) for name, host in hosts.items()}
    run = deploy(app_source=releases["migration"])
    assert run.returncode != 0
    [message] = [text for text in failures(run) if text.startswith("Cannot deploy release")]
    # The first batch (one host) got the release's code; its migration stopped the run there.
    [(name, refused)] = [(name, path.rsplit("/", 1)[1]) for name, host in hosts.items()
                         for path in host.check_output(f"ls -d /opt/{APP}/releases/1.1.4-* || true").split()]
    first = hosts[name]
    idle = other(serving[name])
    assert refused in message and f"it failed before the {idle} colour changed" in message
    assert f"Cannot migrate release {refused} of {APP} on {name}: `npm run migrate` exited 1" in message
    assert migration_name("1.1.4") in message and MISSING_TABLE in message
    # Nothing of the release served: it is not marked failed (deployed again once fixed, no retry flag).
    assert not first.file(f"/opt/{APP}/releases/{refused}/.chajipoa-failed").exists
    assert not first.file(f"/opt/{APP}/releases/{refused}/.chajipoa-migrated").exists
    # No colour links to it, names it in its environment, was stopped or restarted (the same process
    # runs, or none where a refusal before had stopped it): each is as it was.
    assert {host_name: colours_of(host) for host_name, host in hosts.items()} == before
    assert all(release == named for colours in before.values() for release, named, *_unit in colours.values()), before
    assert served_since(loop, loop.now()) == {colours[serving[host_name]][0] for host_name, colours in before.items()}
    assert loop.report.failures == [], loop.report.failures[:5]
