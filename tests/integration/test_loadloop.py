"""The request loop (tests/loadloop.py) against real servers on 127.0.0.1 (tests/healthserver.py):
it must see every failure a deploy could cause, or its "zero failed requests" would prove nothing."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.healthserver import VERSION, HealthServer
from tests.loadloop import Report, RequestLoop
from tests.ports import free_port
from tests.redisserver import make_tls_files

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server():
    with HealthServer() as running:
        yield running


def run_for(loop: RequestLoop, requests: int) -> Report:
    """Run the loop until it has made `requests` requests (a condition, not a time)."""
    with loop:
        assert loop.wait_for(lambda report: report.requests >= requests, timeout=20)
    return loop.report


def test_a_healthy_server_gives_no_failure_and_keepalive_clients_reuse_their_connection(server):
    report = run_for(RequestLoop(server.url(), clients=4, keepalive=2), 200)
    assert report.failures == [] and report.retries == 0
    assert report.requests >= 200 and len(report.latencies_ms) == report.requests
    assert list(report.versions) == [VERSION] and report.versions[VERSION].count == report.requests
    assert len(report.changes) == 1 and report.first_after(VERSION, 0) == report.changes[0][0]
    # The two kept-alive clients used one connection each; the two others one per request.
    assert server.connections < report.requests * 0.75
    summary = report.summary()
    assert summary["failures"] == 0 and 0 < summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"]


def test_without_keepalive_every_request_has_its_own_connection(server):
    report = run_for(RequestLoop(server.url(), clients=2, keepalive=0), 50)
    assert server.connections == report.requests


def test_answers_outside_2xx_are_failures_with_their_body(server):
    server.mode = "flapping"
    report = run_for(RequestLoop(server.url(), clients=2), 40)
    assert len(report.failures) >= 15
    assert report.failures[0].error.startswith('HTTP 503: {"status":"unhealthy"')


def test_a_refused_connection_is_a_failure():
    report = run_for(RequestLoop(f"http://127.0.0.1:{free_port()}/api/health", clients=2, keepalive=1), 10)
    assert len(report.failures) == report.requests
    assert all(failure.error.startswith("ConnectionRefusedError") for failure in report.failures)


def test_a_slow_answer_past_the_timeout_is_a_failure(server):
    server.mode, server.delay = "slow", 2
    report = run_for(RequestLoop(server.url(), clients=2, timeout=0.3), 2)
    assert report.failures and all("timed out" in failure.error for failure in report.failures)


def test_a_kept_alive_connection_closed_while_idle_is_reopened_once_and_counted_apart(server):
    server.drop_kept_alive = True
    report = run_for(RequestLoop(server.url(), clients=2, keepalive=2), 40)
    assert report.failures == []
    # Every request after a client's first found its connection closed.
    assert report.retries >= report.requests - 2 - 2


def test_https_to_another_address_verifies_the_url_host(tmp_path):
    (tmp_path / "ours").mkdir()
    (tmp_path / "other").mkdir()
    (ca, cert, key) = make_tls_files(tmp_path / "ours", stem="http")
    (other_ca, _cert, _key) = make_tls_files(tmp_path / "other", stem="http")
    with HealthServer(tls=(cert, key)) as https:
        url = f"https://localhost:{https.port}/api/health"
        address = f"127.0.0.1:{https.port}"
        good = run_for(RequestLoop(url, clients=2, address=address, ca_file=str(ca)), 20)
        assert good.failures == [] and https.host == f"localhost:{https.port}"
        bad = run_for(RequestLoop(url, clients=1, address=address, ca_file=str(other_ca)), 3)
        assert bad.failures and "CERTIFICATE_VERIFY_FAILED" in bad.failures[0].error


def test_a_version_that_serves_again_is_seen_when_it_returns(server, monkeypatch):
    loop = RequestLoop(server.url(), clients=2).start()
    assert loop.wait_for(lambda report: report.requests >= 20, timeout=20)
    monkeypatch.setattr("tests.healthserver.VERSION", "2.0.0")
    assert loop.wait_for(lambda report: "2.0.0" in report.versions, timeout=20)
    returned = loop.now()
    monkeypatch.setattr("tests.healthserver.VERSION", VERSION)
    assert loop.wait_for(lambda report: (report.first_after(VERSION, returned) or 0) > 0, timeout=20)
    report = loop.stop()
    assert report.failures == [] and [version for _at, version in report.changes][:3] == [VERSION, "2.0.0", VERSION]
    assert report.first_after(VERSION, returned) >= returned > report.versions[VERSION].first


def test_the_command_line_prints_a_report_the_caller_reads_back(server):
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "loadloop.py"), server.url(), "--duration", "0.5",
                          "--clients", "2"], capture_output=True, text=True, check=True, timeout=30)
    report = Report.from_dict(json.loads(run.stdout))
    assert report.requests > 10 and report.failures == [] and VERSION in report.versions
