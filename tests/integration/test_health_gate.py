"""The health gate's probes and rounds against real servers on 127.0.0.1: an HTTP(S) health endpoint
(tests/healthserver.py), TCP ports, a PostgreSQL 15 cluster (tests/pgserver.py, fixture pg_server)
and a TLS-only Redis with an ACL user (tests/redisserver.py, fixture redis_server). A missing server
fails the tests rather than skipping them."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time

import pytest

from ansible_collections.chajipoa.platform.plugins.module_utils.health_checks import GateResult, build_checks, measure, run_gate
from ansible_collections.chajipoa.platform.plugins.module_utils.health_stats import Sample, Thresholds
from tests.conftest import ROOT
from tests.healthserver import HealthServer
from tests.ports import free_port
from tests.redisserver import make_tls_files


def gate(*specs: dict, consecutive: int = 3, interval: float = 0.1, deadline: float = 3.0, window: int = 10,
         fail_after: int = 0, thresholds: dict | None = None) -> GateResult:
    checks = build_checks(list(specs), Thresholds.from_dict(thresholds), window)
    return run_gate(checks, consecutive=consecutive, interval=interval, deadline=deadline, fail_after=fail_after)


def probe(spec: dict) -> Sample:
    [check] = build_checks([spec], Thresholds(), 1)
    return measure(check.probe, check.timeout)


@pytest.fixture
def server():
    with HealthServer() as running:
        yield running


def api(url: str, **options) -> dict:
    return {"name": "api", "kind": "http", "url": url, "expect_json": {"status": "healthy"}, **options}


# -- http -------------------------------------------------------------------------------------------
class TestHttp:
    def test_a_healthy_endpoint_passes_after_the_consecutive_rounds(self, server):
        result = gate(api(server.url(), expect_json={"status": "healthy", "checks.postgres.status": "up"}))
        assert result.passed and result.rounds == 3 and server.requests == 3
        # Rounds start 0.1 s apart: the verdict comes after the third, not at the deadline (3 s).
        # Upper bounds here and below are what a gate ignoring the limit would take, not a speed the
        # machine must reach: a loaded CI machine is slow, never that slow.
        assert result.reason == "passed" and 0.2 <= result.elapsed < 3.0
        [check] = result.checks
        assert check["errors"] == 0 and 0 < check["p50_ms"] <= check["p95_ms"] <= check["max_ms"]

    def test_a_flapping_endpoint_fails_at_the_deadline_naming_it(self, server):
        server.mode = "flapping"
        start = time.monotonic()
        result = gate(api(server.url()), deadline=2.0)
        assert time.monotonic() - start < 2.0 + 1.5
        assert not result.passed and result.reason == "deadline" and result.failing() == ["api"]
        [check] = result.checks
        assert check["count"] == result.rounds >= 6 and check["errors"] in (result.rounds // 2, (result.rounds + 1) // 2)
        assert check["last_error"].startswith('HTTP 503, expected 200: {"status":"unhealthy"')
        assert "api (GET http://127.0.0.1:" in result.message() and "error rate 50 % " in result.message()

    def test_a_slow_endpoint_fails_its_p95_and_passes_looser_thresholds(self, server):
        server.mode, server.delay = "slow", 0.25
        result = gate(api(server.url()), deadline=1.5)
        assert not result.passed and result.consecutive >= 3
        [failure] = result.checks[0]["failures"]
        assert failure.startswith("p95 ") and failure.endswith("ms above 200 ms")
        assert gate(api(server.url()), deadline=3, thresholds={"p95_ms": 1000, "p99_ms": 1000}).passed

    def test_a_down_endpoint_fails_with_connection_refused(self):
        result = gate(api(f"http://127.0.0.1:{free_port()}/api/health"), deadline=1.0)
        assert not result.passed and result.checks[0]["last_error"] == "connection refused"

    def test_fail_after_decides_before_the_deadline(self):
        start = time.monotonic()
        result = gate(api(f"http://127.0.0.1:{free_port()}/api/health"), deadline=30, fail_after=3)
        assert result.reason == "fail_after" and result.rounds == 3 and time.monotonic() - start < 30

    def test_a_hanging_endpoint_is_cut_off_at_the_deadline(self, server):
        server.mode, server.delay = "slow", 10
        start = time.monotonic()
        result = gate(api(server.url(), timeout=5.0), deadline=1.5)
        taken = time.monotonic() - start
        assert not result.passed and 1.4 < taken < 5.0
        assert result.checks[0]["last_error"] == "timed out after 1.5 s"

    def test_a_json_expectation_catches_a_degraded_dependency_behind_a_200(self, server):
        server.mode = "degraded"
        check = api(server.url(), expect_json={"status": "healthy", "checks.postgres.status": "up"})
        assert probe(check).error == "checks.postgres.status is 'down', expected 'up'"
        assert probe(api(server.url(), expect_json={"checks.mongodb.status": "up"})).error == (
            "checks.mongodb.status: no 'mongodb' at checks of the answer")

    def test_status_header_and_method_expectations(self, server):
        assert probe(api(server.url(), method="HEAD", expect_json=None, expect_headers={"X-App-Version": "1.4.2"})).ok
        assert probe(api(server.url(), expect_headers={"x-app-version": "1.5.0"})).error == (
            "header x-app-version is '1.4.2', expected '1.5.0'")
        assert probe(api(server.url(), expect_headers={"X-Cache": "hit"})).error == "header X-Cache missing, expected 'hit'"
        server.mode = "unhealthy"
        assert probe(api(server.url(), status=[200, 503], expect_json=None)).ok

    def test_the_request_carries_the_checks_headers(self, server):
        check = api(server.url(), headers={"Authorization": "Bearer probe-token", "X-Forwarded-Proto": "https"})
        assert probe(check).ok
        assert server.headers["Authorization"] == "Bearer probe-token" and server.headers["X-Forwarded-Proto"] == "https"

    def test_an_answer_that_is_not_json_fails_a_json_expectation(self, server):
        # HEAD has no body to parse.
        assert probe(api(server.url(), method="HEAD")).error == "the answer is not JSON: ''"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """Two throwaway CAs, each with a certificate for 127.0.0.1 and localhost: ((ca, cert, key), (ca, cert, key))."""
    return (make_tls_files(tmp_path_factory.mktemp("tls-ours"), stem="http"),
            make_tls_files(tmp_path_factory.mktemp("tls-other"), stem="http"))


class TestHttps:
    @pytest.fixture
    def https(self, tls_files):
        (_ca, cert, key), _other = tls_files
        with HealthServer(tls=(cert, key)) as running:
            yield running

    def test_verified_against_its_ca(self, https, tls_files):
        (ca, _cert, _key), _other = tls_files
        assert https.url().startswith("https://")
        assert gate(api(https.url(), ca_file=str(ca))).passed

    def test_refused_against_the_system_cas_and_another_ca(self, https, tls_files):
        _ours, (other_ca, _cert, _key) = tls_files
        for options in ({}, {"ca_file": str(other_ca)}):
            sample = probe(api(https.url(), **options))
            assert sample.error == "certificate verification failed: unable to get local issuer certificate", options

    def test_accepted_unverified_when_told(self, https):
        assert probe(api(https.url(), validate_certs=False)).ok


class TestHttpOverUnixSocket:
    """The edge's status server listens only on a unix socket (/run/chajipoa-edge/status.sock): the
    URL's host is then only the Host header."""

    @pytest.fixture
    def unix(self, tmp_path):
        with HealthServer(unix_socket=tmp_path / "status.sock") as running:
            yield running

    def test_a_healthy_endpoint_passes_and_the_url_host_is_the_host_header(self, unix):
        result = gate(api("http://edge.example:8080/api/health", unix_socket=str(unix.unix_socket)))
        assert result.passed and unix.requests == 3 and unix.host == "edge.example:8080"
        assert result.checks[0]["target"] == f"GET http://edge.example:8080/api/health via {unix.unix_socket}"

    def test_an_unhealthy_answer_fails_naming_the_status(self, unix):
        unix.mode = "unhealthy"
        sample = probe(api(unix.url(), unix_socket=str(unix.unix_socket)))
        assert sample.error.startswith('HTTP 503, expected 200: {"status":"unhealthy"')

    def test_a_missing_socket_is_named(self, tmp_path):
        missing = tmp_path / "absent.sock"
        assert probe(api("http://localhost/api/health", unix_socket=str(missing))).error == f"no socket at {missing}"

    def test_a_socket_nobody_accepts_on_is_refused(self, tmp_path):
        path = tmp_path / "stale.sock"
        # Bound, never listening: what a crashed server leaves behind.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
            stale.bind(str(path))
            assert probe(api("http://localhost/api/health", unix_socket=str(path))).error == "connection refused"

    def test_a_hanging_server_times_out(self, unix):
        unix.mode, unix.delay = "slow", 5
        sample = probe(api(unix.url(), unix_socket=str(unix.unix_socket), timeout=0.5))
        assert sample.error == "timed out after 0.5 s"

    def test_https_over_the_socket_verifies_the_url_host(self, tmp_path, tls_files):
        (ca, cert, key), _other = tls_files
        with HealthServer(tls=(cert, key), unix_socket=tmp_path / "tls.sock") as https:
            socket_path = str(https.unix_socket)
            assert gate(api("https://localhost/api/health", unix_socket=socket_path, ca_file=str(ca))).passed
            # The certificate holds 127.0.0.1 and localhost, not this name.
            error = probe(api("https://edge.example/api/health", unix_socket=socket_path, ca_file=str(ca))).error
            assert error.startswith("certificate verification failed: ") and "mismatch" in error


# -- tcp --------------------------------------------------------------------------------------------
def test_tcp_passes_on_a_listening_port_and_fails_on_a_closed_one(server):
    assert probe({"name": "t", "kind": "tcp", "host": "127.0.0.1", "port": server.port}).ok
    assert probe({"name": "t", "kind": "tcp", "host": "127.0.0.1", "port": free_port()}).error == "connection refused"


# -- postgres ---------------------------------------------------------------------------------------
CANARY_DB = "health_gate_canary"
MULTIPLE = "cannot insert multiple commands into a prepared statement"
# Every way a query could change data: the probe's transaction is read-only, so the ways out are a
# second statement after leaving it, or a statement that ends it from inside (a procedure, DO).
WRITES = [
    ("COMMIT; INSERT INTO canary VALUES (1)", MULTIPLE),
    ("ROLLBACK; INSERT INTO canary VALUES (1)", MULTIPLE),
    ("END; CREATE TABLE escaped ()", MULTIPLE),
    ("ABORT; CREATE TABLE escaped ()", MULTIPLE),
    ("SELECT 1; COMMIT; CREATE TABLE escaped (); SELECT 1", MULTIPLE),
    ("SET TRANSACTION READ WRITE; INSERT INTO canary VALUES (1); COMMIT", MULTIPLE),
    ("SET TRANSACTION READ WRITE", "transaction read-write mode must be set before any query"),
    ("DO $$BEGIN SET TRANSACTION READ WRITE; INSERT INTO canary VALUES (1); END$$",
     "transaction read-write mode must be set before any query"),
    ("COMMIT; SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE; INSERT INTO canary VALUES (1)", MULTIPLE),
    ("COMMIT; RESET default_transaction_read_only; INSERT INTO canary VALUES (1)", MULTIPLE),
    ("INSERT INTO canary VALUES (1)", "cannot execute INSERT in a read-only transaction"),
    ("CREATE TABLE escaped ()", "cannot execute CREATE TABLE in a read-only transaction"),
    # PostgreSQL names the statement, a SELECT, not the INSERT in it.
    ("WITH written AS (INSERT INTO canary VALUES (1) RETURNING n) SELECT n FROM written",
     "cannot execute SELECT in a read-only transaction"),
    ("SELECT canary_insert()", "cannot execute INSERT in a read-only transaction"),
    ("SELECT nextval('canary_seq')", "cannot execute nextval() in a read-only transaction"),
    ("CALL canary_commit_then_insert()", "invalid transaction termination"),
    ("DO $$BEGIN COMMIT; INSERT INTO canary VALUES (1); END$$", "invalid transaction termination"),
]


# Debian's python3 with Debian's python3-psycopg2 and no psycopg (lab/test-deps.sh), as on the hosts.
DEBIAN_PYTHON = "/usr/bin/python3"
PROBE_SCRIPT = """
import json, sys
from ansible_collections.chajipoa.platform.plugins.module_utils.health_checks import CheckUnusable, build_checks, measure
from ansible_collections.chajipoa.platform.plugins.module_utils.health_stats import Thresholds
spec, queries = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert build_checks([spec], Thresholds(), 1)[0].probe.driver.__name__ == "psycopg2"
results = {}
for query in queries:
    try:
        [check] = build_checks([{**spec, "query": query}], Thresholds(), 1)
    except CheckUnusable as error:
        results[query] = str(error)
    else:
        results[query] = measure(check.probe, 5).error
print(json.dumps(results))
"""


def probe_under_debian_python(spec: dict, queries: list[str]) -> dict:
    """Each query's probe error (None: passed) or refusal, as the module would see it on a host."""
    process = subprocess.run([DEBIAN_PYTHON, "-c", PROBE_SCRIPT, json.dumps(spec), json.dumps(queries)],
                             env=dict(os.environ, PYTHONPATH=str(ROOT / "collections")),
                             capture_output=True, text=True, timeout=120, check=False)
    assert process.returncode == 0, process.stderr
    return json.loads(process.stdout)


def canary_database(pg, pg_server):
    pg_server.drop_database(CANARY_DB)
    pg_server.create_database(CANARY_DB)
    pg_server.execute("""
        CREATE TABLE canary (n int);
        CREATE SEQUENCE canary_seq;
        CREATE FUNCTION canary_insert() RETURNS int VOLATILE LANGUAGE sql
            AS 'INSERT INTO canary VALUES (1) RETURNING n';
        CREATE PROCEDURE canary_commit_then_insert() LANGUAGE plpgsql
            AS $$BEGIN COMMIT; INSERT INTO canary VALUES (1); END$$;
    """, CANARY_DB)

    def unchanged():
        assert pg_server.execute("SELECT (SELECT count(*) FROM canary), to_regclass('escaped'), "
                                 "(SELECT is_called FROM canary_seq)", CANARY_DB) == [(0, None, False)]
    yield lambda **options: pg(database=CANARY_DB, **options), unchanged
    pg_server.drop_database(CANARY_DB)


class TestPostgres:
    @pytest.fixture
    def pg(self, pg_server):
        def spec(**options):
            return {"name": "pg", "kind": "postgres", "host": pg_server.host, "port": pg_server.port,
                    "user": pg_server.user, "password": pg_server.password, **options}
        return spec

    @pytest.fixture
    def canary(self, pg, pg_server):
        """A database of its own holding what a write would change: (spec of a check on it, a
        function asserting nothing changed)."""
        yield from canary_database(pg, pg_server)

    def test_a_primary_is_not_in_recovery(self, pg):
        assert gate(pg(query="SELECT pg_is_in_recovery()", expect=False)).passed
        assert probe(pg(query="SELECT pg_is_in_recovery()", expect=True)).error == (
            "'SELECT pg_is_in_recovery()' returned 'false', expected 'true'")

    def test_expected_numbers_and_rows(self, pg):
        assert probe(pg(query="SELECT count(*) FROM pg_database WHERE datname = 'postgres'", expect=1)).ok
        assert probe(pg(query="SELECT 1 WHERE false", expect=1)).error == "'SELECT 1 WHERE false' returned no row, expected '1'"

    def test_a_wrong_password_is_refused(self, pg):
        error = probe(pg(password="not-the-password")).error
        assert error.startswith("cannot connect: ") and "password authentication failed" in error

    def test_sslmode_require_fails_against_a_server_without_tls(self, pg):
        error = probe(pg(sslmode="require")).error
        assert error.startswith("cannot connect: ") and "server does not support SSL" in error

    @pytest.mark.parametrize(("query", "cause"), WRITES, ids=[query for query, _cause in WRITES])
    def test_no_query_can_write(self, canary, query, cause):
        spec, unchanged = canary
        error = probe(spec(query=query)).error
        unchanged()
        assert error == f"query failed: {cause}"

    def test_a_query_may_hold_a_semicolon_in_a_literal_and_end_with_one(self, pg):
        assert probe(pg(query="SELECT 'a;b';", expect="a;b")).ok

    def test_the_query_runs_read_only_and_a_command_without_rows_fails(self, pg):
        assert probe(pg(query="SHOW transaction_read_only", expect="on")).ok
        assert probe(pg(query="RESET default_transaction_read_only")).error == (
            "'RESET default_transaction_read_only' returns no rows: expected a query such as SELECT")

    def test_psycopg2_as_on_the_hosts_refuses_a_second_statement_and_cannot_write(self, canary):
        # psycopg2 has no extended query protocol: the probe itself must keep to one statement.
        spec, unchanged = canary
        results = probe_under_debian_python(spec(), [query for query, _cause in WRITES])
        for query, cause in WRITES:
            unchanged()
            if ";" in query:
                assert results[query].startswith(f"Cannot use checks[0] (pg).query {query!r}: psycopg2 "), query
            else:
                assert results[query] == f"query failed: {cause}", query
        # psycopg2 sends the query as it is; a trailing ';' ends the only statement.
        assert probe_under_debian_python(spec(expect=1), ["SELECT 1;"]) == {"SELECT 1;": None}
        assert probe_under_debian_python(spec(), ["RESET default_transaction_read_only"]) == {
            "RESET default_transaction_read_only":
                "'RESET default_transaction_read_only' returns no rows: expected a query such as SELECT"}

    def test_a_stuck_query_is_cut_off_by_the_statement_timeout(self, pg):
        start = time.monotonic()
        error = probe(pg(query="SELECT pg_sleep(10)", timeout=1.0)).error
        assert error == "query failed: canceling statement due to statement timeout"
        assert time.monotonic() - start < 10

    def test_a_stopped_port_fails(self, pg):
        error = probe(pg(port=free_port())).error
        assert error.startswith("cannot connect: ") and "Connection refused" in error


# -- redis ------------------------------------------------------------------------------------------
class TestRedis:
    @pytest.fixture
    def spec(self, redis_server):
        redis = redis_server

        def make(**options):
            return {"name": "redis", "kind": "redis", "host": redis.host, "port": redis.port, "user": redis.user,
                    "password": redis.password, "tls": True, "ca_file": str(redis.ca_file), **options}
        return make

    def test_ping_as_the_acl_user_over_verified_tls(self, spec):
        assert gate(spec()).passed

    def test_a_wrong_password_is_refused(self, spec):
        assert probe(spec(password="wrong")).error == "AUTH as chajipoa refused: WRONGPASS invalid username-password pair or user is disabled."

    def test_without_a_login_the_default_user_is_off(self, spec):
        assert probe(spec(user=None, password=None)).error == "PING answered 'NOAUTH Authentication required.', expected PONG"

    def test_the_certificate_must_verify(self, spec):
        # Redis sends its CA along: OpenSSL then names a self-signed certificate in the chain.
        assert probe(spec(ca_file=None)).error == "certificate verification failed: self-signed certificate in certificate chain"

    def test_plain_tcp_to_a_tls_port_fails(self, spec):
        assert not probe(spec(tls=False, ca_file=None)).ok

    def test_the_gate_waits_for_a_restarted_redis(self, spec, redis_server):
        redis = redis_server
        redis.kill()
        assert probe(spec()).error == "connection refused"
        threading.Timer(1.0, redis.start).start()
        result = gate(spec(), interval=0.2, deadline=15, window=5)
        assert result.passed and result.checks[0]["errors"] >= 3
        # Passing waited for the refusals to leave the window of five.
        assert result.rounds >= result.checks[0]["errors"] + 5


# -- mongodb ----------------------------------------------------------------------------------------
def test_mongodb_ping_fails_within_its_timeout_when_nothing_listens():
    start = time.monotonic()
    sample = probe({"name": "m", "kind": "mongodb", "port": free_port(), "timeout": 0.5})
    assert sample.error.startswith("ping failed: 127.0.0.1:") and "refused" in sample.error
    # The driver's own default would wait 30 s.
    assert time.monotonic() - start < 10
