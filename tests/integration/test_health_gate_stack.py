"""The health gate against the platform's own services on loopback: the reference API (node, over a
real PostgreSQL and a TLS Redis) losing and regaining Redis, and PostgreSQL verified with
sslmode=verify-full against its CA, as health.yml probes the hosts. The app's copy, its environment
and the TLS PostgreSQL are the reference API tests' own fixtures."""
from __future__ import annotations

import socket
import subprocess
import time

import pytest

from ansible_collections.chajipoa.platform.plugins.module_utils.health_checks import build_checks, measure, run_gate
from ansible_collections.chajipoa.platform.plugins.module_utils.health_stats import Thresholds
from tests.ports import free_port
# Fixtures (app_copy, api_database, tls_postgres) and helpers of the reference API's tests.
from tests.integration.test_reference_api import (  # noqa: F401  pylint: disable=unused-import
    _node_env,
    _require,
    api_database,
    app_copy,
    tls_postgres,
)
from tests.redisserver import make_tls_files

VERSION = "1.0.0-gate"


@pytest.fixture
def reference_api(app_copy, api_database, redis_server):  # noqa: F811 (the fixtures imported above)
    """The reference API listening on a free loopback port: (its /api/health URL, the Redis it uses)."""
    port = free_port()
    # A dependency that does not answer within 0.5 s is reported down: a stopped Redis shows at once.
    env = {**_node_env(), "DATABASE_URL": api_database, **redis_server.env(), "PORT": str(port), "HOST": "127.0.0.1",
           "APP_VERSION": VERSION, "HEALTH_TIMEOUT_MS": "500"}
    process = subprocess.Popen([_require("node"), "src/server.js"], cwd=app_copy, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the reference API did not listen on {port}: {process.communicate()[1]}", pytrace=False)
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/api/health", redis_server
    process.terminate()
    process.wait(timeout=30)


def api_check(url: str) -> dict:
    return {"name": "api", "kind": "http", "url": url,
            "expect_json": {"status": "healthy", "version": VERSION, "checks.postgres.status": "up",
                            "checks.redis.status": "up"}}


def gate(spec: dict, **settings):
    options = {"consecutive": 3, "interval": 0.2, "deadline": 10.0, "window": 3, **settings}
    checks = build_checks([spec], Thresholds(), options.pop("window"))
    return run_gate(checks, **options)


def test_the_gate_follows_the_reference_api_through_a_redis_outage(reference_api):
    url, redis = reference_api
    assert gate(api_check(url)).passed
    redis.kill()
    result = gate(api_check(url), deadline=5.0, fail_after=3)
    assert result.reason == "fail_after" and result.failing() == ["api"]
    last_error = result.checks[0]["last_error"]
    assert last_error.startswith('HTTP 503, expected 200: {"status":"unhealthy"'), last_error
    assert '"redis":{"status":"down"' in last_error
    redis.start()
    back = gate(api_check(url), deadline=20.0)
    assert back.passed, back.message()


def test_postgres_verify_full_against_its_ca(tls_postgres, tmp_path):
    server, ca_file = tls_postgres
    other_ca = make_tls_files(tmp_path, stem="other")[0]

    def spec(host: str, ca) -> dict:
        return {"name": "pg", "kind": "postgres", "host": host, "port": server.port, "user": server.user,
                "password": server.password, "sslmode": "verify-full", "ca_file": str(ca),
                # Only a TLS session answers true: proof the probe did not fall back to plain TCP.
                "query": "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", "expect": True}

    for host in ("127.0.0.1", "localhost"):
        [check] = build_checks([spec(host, ca_file)], Thresholds(), 1)
        sample = measure(check.probe, check.timeout)
        assert sample.ok, sample.error
    [check] = build_checks([spec("127.0.0.1", other_ca)], Thresholds(), 1)
    error = measure(check.probe, check.timeout).error
    assert error.startswith("cannot connect: ") and "certificate verify failed" in error, error
