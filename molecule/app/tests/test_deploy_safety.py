"""What must never move production by accident, on this scenario's two app hosts behind the edge,
after test_deploy.py: a deploy run again (all of it, or after one limited to a host) leaves the hosts
that serve the release alone and their rollback colour warm; the edge, converged on its own
(--limit, --tags) or switched by a deploy limited to one app host, keeps every app host on the colour
it is live on; a converge keeps the release each live colour runs; an install that fails before the
idle colour changed leaves it serving the previous release and the release unmarked.

The tests run in order, each starting from the state the one before left (live colours differ from
blue on purpose: blue is what a guessed colour would be)."""
from __future__ import annotations

import json

import pytest
# test_deploy.py's helpers; importing it puts the project's shared test helpers on the import path.
# hosts is test_deploy's fixture (every app host's testinfra connection), found here by name.
# sentry is its Sentry stand-in, a new one for this module.
from test_deploy import APP, APPS, EDGE, SENTRY_TOKEN, SKIP_VALIDATION, colours_of, failures, hosts, live, release_of, sentry  # noqa: F401
from test_edge import SOCKET

from tests.releases import make_release

PORTS = {"blue": 3001, "green": 3002}

pytestmark = pytest.mark.journal(f"{APP}@blue.service", f"{APP}@green.service", "nginx.service")


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    directory = tmp_path_factory.mktemp("safety")
    return {"first": make_release(directory, "1.3.0"), "second": make_release(directory, "1.3.1"),
            # npm ci fails as on a registry outage: before the idle colour's link or environment changes.
            "install": make_release(directory, "1.3.2", postinstall="echo 'npm ERR! network ETIMEDOUT' >&2; exit 1")}


@pytest.fixture(scope="module")
def deploy(run_playbook, sentry):
    sentry_vars = {"deploy_sentry_token": SENTRY_TOKEN, "deploy_sentry_url": sentry.url, "deploy_sentry_org": "chajipoa",
                   "deploy_sentry_projects": ["api"]}

    def run(source, *extra: str):
        return run_playbook("playbooks/deploy.yml", *SKIP_VALIDATION, "-e", json.dumps({"app_source": str(source), **sentry_vars}),
                            "-e", "deploy_backup=false", *extra)
    return run


@pytest.fixture(scope="module")
def upstream(lab_host, lab_address):
    """The servers the edge proxies to (its status socket), and those it should: each app host's
    address and the port of the colour its live file names."""
    edge = lab_host(EDGE)

    def servers() -> tuple[set[str], set[str]]:
        proxied = set(json.loads(edge.check_output(f"curl -sS --max-time 5 --unix-socket {SOCKET} http://localhost/upstream"))
                      ["servers"].split())
        expected = {f"{lab_address(lab_host(name))}:{PORTS[live(lab_host(name))]}" for name in APPS}
        return proxied, expected
    return servers


def marks(host) -> str:
    return host.check_output(f"cd /opt/{APP}/releases && ls -d */.chajipoa-failed 2>/dev/null || true")


def releases_on(host) -> set[str]:
    return set(host.check_output(f"ls /opt/{APP}/releases").split())


@pytest.fixture(scope="module")
def first_deployed(hosts, deploy, releases):
    """The first release deployed on every host: each is live on green (test_deploy.py ended on
    blue), its previous release warm on blue."""
    assert {live(host) for host in hosts.values()} == {"blue"}
    run = deploy(releases["first"])
    assert run.returncode == 0, failures(run) or run.stdout[-3000:]
    assert {live(host) for host in hosts.values()} == {"green"}


@pytest.mark.parametrize("selection", [("--limit", EDGE), ("--tags", "edge_configure")], ids=["limit-edge", "tags-edge_configure"])
def test_the_edge_converged_alone_keeps_each_app_host_on_its_live_colour(first_deployed, run_playbook, upstream, selection):
    run = run_playbook("playbooks/edge.yml", *selection)
    assert run.returncode == 0, failures(run) or run.stdout[-3000:]
    proxied, expected = upstream()
    assert proxied == expected


def test_a_deploy_run_again_leaves_the_hosts_serving_the_release_and_their_rollback_colour_alone(
        first_deployed, hosts, deploy, releases, sentry):
    before = {name: colours_of(host) for name, host in hosts.items()}
    failed_before = {name: marks(host) for name, host in hosts.items()}
    calls = len(sentry.calls)
    again = deploy(releases["first"])
    assert again.returncode == 0, failures(again) or again.stdout[-3000:]
    # Links, environments, units and their processes as they were: the idle colour still holds the
    # release before (the rollback target), and no release was marked failed.
    assert {name: colours_of(host) for name, host in hosts.items()} == before
    assert {name: marks(host) for name, host in hosts.items()} == failed_before
    for name, host in hosts.items():
        assert f"{name} serves release {release_of(host, live(host))} already" in again.stdout
    # Nothing was deployed, so Sentry is told of no release and no deploy.
    assert sentry.calls[calls:] == []


def test_a_deploy_limited_to_one_host_keeps_the_others_on_their_live_colour_and_its_rerun_finishes_the_rest(
        first_deployed, hosts, deploy, releases, upstream, sentry):
    done, rest = APPS[-1], APPS[0]
    serving = {name: (live(host), release_of(host, live(host))) for name, host in hosts.items()}
    limited = deploy(releases["second"], "--limit", done)
    assert limited.returncode == 0, failures(limited) or limited.stdout[-3000:]
    assert (live(hosts[rest]), release_of(hosts[rest], live(hosts[rest]))) == serving[rest]
    assert live(hosts[done]) != serving[done][0]
    proxied, expected = upstream()
    assert proxied == expected
    # The run again, without the limit: the host done is left alone (its previous release warm on
    # the other colour), the rest is deployed.
    done_colours = colours_of(hosts[done])
    calls = len(sentry.calls)
    rest_run = deploy(releases["second"])
    assert rest_run.returncode == 0, failures(rest_run) or rest_run.stdout[-3000:]
    assert colours_of(hosts[done]) == done_colours
    assert release_of(hosts[done], serving[done][0]) == serving[done][1]
    assert release_of(hosts[rest], live(hosts[rest])) == release_of(hosts[done], live(hosts[done]))
    proxied, expected = upstream()
    assert proxied == expected
    # The rest was deployed by the rerun: Sentry records that deploy.
    assert [call.path.rsplit("/", 2)[-2] for call in sentry.calls[calls:]] == ["releases", "deploys"]


def test_a_converge_keeps_the_release_each_live_colour_runs(hosts, run_playbook):
    before = {name: colours_of(host) for name, host in hosts.items()}
    kept = {name: releases_on(host) for name, host in hosts.items()}
    # The scenario's converge: app_source is the role's default, the bundled reference API.
    run = run_playbook("molecule/app/converge.yml")
    assert run.returncode == 0, failures(run) or run.stdout[-3000:]
    assert {name: colours_of(host) for name, host in hosts.items()} == before
    assert {name: releases_on(host) for name, host in hosts.items()} == kept


def test_an_install_that_fails_before_the_colour_changed_leaves_it_warm_and_the_release_unmarked(
        hosts, deploy, releases, run_playbook):
    before = {name: colours_of(host) for name, host in hosts.items()}
    run = deploy(releases["install"])
    assert run.returncode != 0
    [message] = [text for text in failures(run) if text.startswith("Cannot deploy release")]
    [first] = [name for name in APPS if f" on {name}: " in message]
    idle = "green" if live(hosts[first]) == "blue" else "blue"
    assert f"it failed before the {idle} colour changed" in message and "Dependencies of the release" in message
    assert "the release is not marked" in message
    # Every colour as it was, the first host's idle one still running the previous release.
    assert {name: colours_of(host) for name, host in hosts.items()} == before
    assert before[first][idle][2] == "active"
    assert not [path for host in hosts.values() for path in marks(host).split() if path.startswith("1.3.2-")]
    # A rollback is still there to take (check mode: every refusal is made, nothing switched).
    rollback = run_playbook("playbooks/rollback.yml", *SKIP_VALIDATION, "--check")
    assert rollback.returncode == 0, failures(rollback) or rollback.stdout[-3000:]
