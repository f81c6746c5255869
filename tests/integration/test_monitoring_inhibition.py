"""The role's alertmanager.yml in a real Alertmanager 0.25 (Debian's prometheus-alertmanager): its
inhibitions as Alertmanager applies them, and its grouping as the receivers see it.

Alertmanager runs on a free loopback port with the rendered configuration, a group_wait of a second,
clustering off, and its Slack-style and SMS webhooks pointed at an HTTP server of this test on
loopback. The test posts alerts as Prometheus would:
- db1 is down: InstanceDown for its node and postgres targets; RedisDown on db1 and on db2;
- db2's /srv is past both the database storage and the disk thresholds, its / past the disk one;
- db3's postgres target is down (its node target up), with its statement latency and its / disk
  high; db4's statement latency is high.
Alertmanager must mark db1's RedisDown (InstanceDown of db1's node target), db2's /srv
DiskSpaceLow (DatabaseStorageHigh of the same filesystem) and db3's PostgresQueryLatencyHigh
(InstanceDown of db3's postgres target: the rule for any other job, which nothing else here
exercises) suppressed, inhibited by exactly those alerts, and leave the rest active; the webhooks get the active ones only, one notification per
alert name and instance: the SMS gateway the critical ones, the team's channel all of them.
"""
from __future__ import annotations

import http.server
import json
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.integration.test_monitoring_exporters import exporter
from tests.ports import free_port
from tests.unit.roles import monitoring


def alert(alertname: str, instance: str, job: str, severity: str, **labels: str) -> dict[str, str]:
    return {"alertname": alertname, "instance": instance, "job": job, "severity": severity, **labels}


ALERTS = {
    "db1 node down": alert("InstanceDown", "db1", "node", "critical"),
    "db1 postgres down": alert("InstanceDown", "db1", "postgres", "critical"),
    "db1 redis down": alert("RedisDown", "db1", "redis", "critical"),
    "db2 redis down": alert("RedisDown", "db2", "redis", "critical"),
    "db2 /srv storage": alert("DatabaseStorageHigh", "db2", "node", "warning", mountpoint="/srv"),
    "db2 /srv disk": alert("DiskSpaceLow", "db2", "node", "warning", mountpoint="/srv"),
    "db2 / disk": alert("DiskSpaceLow", "db2", "node", "warning", mountpoint="/"),
    # db3's postgres exporter is down, its node exporter up: only the second inhibition applies.
    "db3 postgres down": alert("InstanceDown", "db3", "postgres", "critical"),
    "db3 postgres latency": alert("PostgresQueryLatencyHigh", "db3", "postgres", "warning", datname="chajipoa"),
    "db3 / disk": alert("DiskSpaceLow", "db3", "node", "warning", mountpoint="/"),
    "db4 postgres latency": alert("PostgresQueryLatencyHigh", "db4", "postgres", "warning", datname="chajipoa"),
    # PgBouncer down under its own exporter down (app1) is that job's inhibition; alone (app2), it pages.
    "app1 pgbouncer exporter down": alert("InstanceDown", "app1", "pgbouncer", "critical"),
    "app1 pgbouncer down": alert("PgBouncerDown", "app1", "pgbouncer", "critical"),
    "app2 pgbouncer down": alert("PgBouncerDown", "app2", "pgbouncer", "critical"),
}
# Each suppressed alert and the one alert that inhibits it; the others stay active (db3's disk: another
# job on that host; db4's latency: the same job on another host).
INHIBITED_BY = {"db1 redis down": "db1 node down", "db2 /srv disk": "db2 /srv storage",
                "db3 postgres latency": "db3 postgres down", "app1 pgbouncer down": "app1 pgbouncer exporter down"}
ACTIVE = [name for name in ALERTS if name not in INHIBITED_BY]


class Webhooks:
    """An HTTP server on 127.0.0.1 keeping the JSON body of every POST, by path."""

    def __init__(self) -> None:
        self.posts: dict[str, list] = {}
        self.arrived = threading.Condition()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # pylint: disable=invalid-name  # http.server's name for it
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with owner.arrived:
                    owner.posts.setdefault(self.path, []).append(body)
                    owner.arrived.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait(self, path: str, count: int, timeout: float = 60) -> list:
        """The bodies posted to `path`, once there are `count` of them."""
        with self.arrived:
            arrived = self.arrived.wait_for(lambda: len(self.posts.get(path, [])) >= count, timeout)
            assert arrived, f"{path}: {len(self.posts.get(path, []))} of {count} notifications after {timeout:.0f} s: {self.posts}"
            return list(self.posts[path])


@contextmanager
def webhooks() -> Iterator[Webhooks]:
    hooks = Webhooks()
    thread = threading.Thread(target=hooks.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hooks
    finally:
        hooks.server.shutdown()
        hooks.server.server_close()


def api(url: str, path: str, body: list | None = None):
    request = urllib.request.Request(f"{url}/api/v2/{path}", data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = response.read()
    return json.loads(answer) if answer else None


@pytest.fixture(scope="module")
def posted(tmp_path_factory) -> Iterator[tuple[str, Webhooks]]:
    """Alertmanager's URL, once ALERTS are posted to it, and the webhooks it notifies."""
    directory = tmp_path_factory.mktemp("alertmanager")
    with webhooks() as hooks:
        config = directory / "alertmanager.yml"
        config.write_text(monitoring.render(monitoring.ALERTMANAGER, monitoring_slack_webhook_url=f"{hooks.url}/slack",
                                            monitoring_sms_webhook_url=f"{hooks.url}/sms",
                                            monitoring_alertmanager_group_wait="1s"))
        port = free_port()
        # An empty cluster address turns clustering off: nothing listens beyond 127.0.0.1.
        with exporter(["prometheus-alertmanager", f"--config.file={config}", f"--storage.path={directory / 'data'}",
                       f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                      port, log=directory / "alertmanager.log"):
            url = f"http://127.0.0.1:{port}"
            api(url, "alerts", [{"labels": labels} for labels in ALERTS.values()])
            yield url, hooks


def listed(url: str) -> dict[str, dict]:
    """Alertmanager's view of each of ALERTS, by name."""
    by_labels = {json.dumps(found["labels"], sort_keys=True): found for found in api(url, "alerts")}
    return {name: by_labels.get(json.dumps(labels, sort_keys=True)) for name, labels in ALERTS.items()}


def test_inhibited_alerts_are_suppressed_by_their_source_alone(posted):
    url, _hooks = posted
    # Alertmanager's inhibitor learns of the sources from the alerts' feed, after the POST answers.
    deadline = time.monotonic() + 30
    while any(found is None or found["status"]["state"] != "suppressed"
              for name, found in listed(url).items() if name in INHIBITED_BY):
        assert time.monotonic() < deadline, f"not suppressed after 30 s: {listed(url)}"
        time.sleep(0.2)
    alerts = listed(url)
    for name, found in alerts.items():
        source = INHIBITED_BY.get(name)
        expected = {"state": "suppressed" if source else "active", "silencedBy": [],
                    "inhibitedBy": [alerts[source]["fingerprint"]] if source else []}
        assert found["status"] == expected, name


def test_receivers_get_the_active_alerts_grouped_by_name_and_instance(posted):
    _url, hooks = posted
    groups: dict[tuple[str, str], list[str]] = {}
    for name in ACTIVE:
        groups.setdefault((ALERTS[name]["alertname"], ALERTS[name]["instance"]), []).append(name)
    # The SMS gateway: Alertmanager's webhook JSON, the critical alerts only.
    critical = {group: names for group, names in groups.items() if ALERTS[names[0]]["severity"] == "critical"}
    posts = hooks.wait("/sms", len(critical))
    sms = {(post["groupLabels"]["alertname"], post["groupLabels"]["instance"]):
           [name for name, labels in ALERTS.items() for sent in post["alerts"] if sent["labels"] == labels]
           for post in posts}
    assert len(posts) == len(sms) and sms == critical, posts
    # The team's Slack channel: every group, its alert count in the default title
    # ("[FIRING:2] InstanceDown db1 (critical)").
    titles = [post["attachments"][0]["title"] for post in hooks.wait("/slack", len(groups))]
    matches = [re.match(r"\[FIRING:(\d+)\] (\S+) (\S+) ", title) for title in titles]
    counts = {(match[2], match[3]): int(match[1]) for match in matches if match}
    assert len(titles) == len(counts) and counts == {group: len(names) for group, names in groups.items()}, titles
