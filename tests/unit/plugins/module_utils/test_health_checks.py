"""Unit tests of health_checks without servers: value comparison, JSON paths, RESP, option checks,
and the rounds driven by scripted probes (mocks) on a fake clock. Real servers: tests/integration/test_health_gate.py."""
from __future__ import annotations

import io
import socket
import ssl
import sys
from decimal import Decimal

import pytest

from ansible_collections.chajipoa.platform.plugins.module_utils import health_checks
from ansible_collections.chajipoa.platform.plugins.module_utils.health_checks import (
    Check,
    CheckFailed,
    CheckUnusable,
    build_checks,
    describe_error,
    json_path,
    resp_command,
    resp_line,
    run_gate,
    same_value,
)
from ansible_collections.chajipoa.platform.plugins.module_utils.health_stats import Thresholds, Window
from tests.unit.fake_clock import FakeClock


@pytest.mark.parametrize(
    ("actual", "expected", "same"),
    [
        ("up", "up", True),
        ("up", "down", False),
        (False, False, True),
        (False, "false", True),
        (True, "false", False),
        (True, 1, False),
        (1, 1.0, True),
        (Decimal("7"), 7, True),
        (200, "200", True),
        (None, None, True),
        (None, "null", True),
        ({"a": 1}, {"a": 1}, True),
    ],
)
def test_same_value(actual, expected, same):
    assert same_value(actual, expected) is same


DOCUMENT = {"status": "healthy", "checks": {"postgres": {"status": "up", "latency_ms": 3}}, "items": [{"id": 7}]}


@pytest.mark.parametrize(
    ("path", "value"),
    [("status", "healthy"), ("checks.postgres.status", "up"), ("checks.postgres.latency_ms", 3), ("items.0.id", 7)],
)
def test_json_path_finds(path, value):
    assert json_path(DOCUMENT, path) == value


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("checks.redis.status", "checks.redis.status: no 'redis' at checks of the answer"),
        ("items.1.id", "items.1.id: no '1' at items of the answer"),
        ("state", "state: no 'state' at the top level of the answer"),
        ("status.code", "status.code: no 'code' at status of the answer"),
    ],
)
def test_json_path_names_what_is_missing(path, message):
    with pytest.raises(CheckFailed) as caught:
        json_path(DOCUMENT, path)
    assert str(caught.value) == message


def test_resp_command_is_an_array_of_bulk_strings():
    assert resp_command("AUTH", "monitoring", "pässword") == b"*3\r\n$4\r\nAUTH\r\n$10\r\nmonitoring\r\n$9\r\np\xc3\xa4ssword\r\n"


def test_resp_line_reads_a_reply_or_fails_on_a_closed_connection():
    stream = io.BytesIO(b"+OK\r\n-WRONGPASS invalid username-password pair\r\n+PON")
    assert resp_line(stream) == "+OK"
    assert resp_line(stream) == "-WRONGPASS invalid username-password pair"
    with pytest.raises(CheckFailed, match="Redis closed the connection without an answer"):
        resp_line(stream)


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (CheckFailed("HTTP 503, expected 200"), "HTTP 503, expected 200"),
        (socket.timeout("timed out"), "timed out after 2.5 s"),
        (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
        (OSError(113, "No route to host"), "OSError: [Errno 113] No route to host"),
        (ValueError("line one\nline two"), "ValueError: line one"),
    ],
)
def test_describe_error(error, text):
    assert describe_error(error, 2.5) == text


def test_describe_certificate_error():
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    error.verify_message = "unable to get local issuer certificate"
    assert describe_error(error, 1) == "certificate verification failed: unable to get local issuer certificate"


class TestBuildChecks:
    def build(self, *specs):
        return build_checks(list(specs), Thresholds(), 10)

    def test_kind_defaults_apply(self):
        [http, pg, redis] = self.build({"name": "api", "kind": "http", "url": "http://127.0.0.1:3001/api/health"},
                                       {"name": "pg", "kind": "postgres", "user": "monitoring"},
                                       {"name": "redis", "kind": "redis"})
        assert (http.probe.method, http.probe.status, http.probe.context, http.timeout) == ("GET", [200], None, 5.0)
        assert http.target == "GET http://127.0.0.1:3001/api/health"
        assert (pg.probe.host, pg.probe.port, pg.probe.database, pg.probe.sslmode, pg.probe.query) == (
            "127.0.0.1", 5432, "postgres", "prefer", "SELECT 1")
        assert pg.target == "postgres monitoring@127.0.0.1:5432/postgres"
        assert redis.target == "redis://127.0.0.1:6379"

    def test_https_verifies_by_default_and_not_when_told(self):
        [verified, unverified] = self.build({"name": "a", "kind": "http", "url": "https://127.0.0.1/"},
                                            {"name": "b", "kind": "http", "url": "https://127.0.0.1/", "validate_certs": False})
        assert verified.probe.context.verify_mode == ssl.CERT_REQUIRED and verified.probe.context.check_hostname
        assert unverified.probe.context.verify_mode == ssl.CERT_NONE

    def test_per_check_thresholds_override_the_gates(self):
        [check] = build_checks([{"name": "db", "kind": "tcp", "host": "h", "port": 1, "thresholds": {"p95_ms": 50}}],
                               Thresholds(p99_ms=300), 5)
        assert check.thresholds.as_dict() == {"p95_ms": 50.0, "p99_ms": 300.0, "error_percent": 0.1}
        assert check.window.samples.maxlen == 5

    @pytest.mark.parametrize(
        ("specs", "message"),
        [
            ([], "Cannot run the health gate: checks is empty"),
            ([{"kind": "tcp", "host": "h", "port": 1}], "Cannot use checks[0]: it has no name"),
            ([{"name": "x", "kind": "tcp", "host": "h", "port": 1}, {"name": "x", "kind": "tcp", "host": "h", "port": 2}],
             "Cannot use checks[1] (x): another check is named 'x' already"),
            ([{"name": "x", "kind": "icmp"}], "Cannot use checks[0] (x): kind 'icmp' is not one of http, tcp, postgres, redis, mongodb"),
            ([{"name": "x", "kind": "tcp", "host": "h", "port": 1, "url": "http://h/"}],
             "Cannot use checks[0] (x): option(s) url do not apply to kind tcp (its options: host, port)"),
            ([{"name": "x", "kind": "tcp", "host": "h"}], "Cannot use checks[0] (x): kind tcp needs port"),
            ([{"name": "x", "kind": "http"}], "Cannot use checks[0] (x): kind http needs url"),
            ([{"name": "x", "kind": "http", "url": "ftp://h/"}],
             "Cannot use checks[0] (x).url 'ftp://h/': expected http:// or https:// and a host"),
            ([{"name": "x", "kind": "http", "url": "http://h/", "method": "POST"}],
             "Cannot use checks[0] (x).method POST: only GET and HEAD are read-only"),
            ([{"name": "x", "kind": "http", "url": "http://h/", "expect_json": {"checks..status": "up"}}],
             "Cannot use checks[0] (x).expect_json path 'checks..status'"),
            ([{"name": "x", "kind": "http", "url": "http://h/", "unix_socket": "run/status.sock"}],
             "Cannot use checks[0] (x).unix_socket 'run/status.sock': expected an absolute path"),
            ([{"name": "x", "kind": "tcp", "host": "h", "port": 1, "unix_socket": "/run/s.sock"}],
             "Cannot use checks[0] (x): option(s) unix_socket do not apply to kind tcp"),
            ([{"name": "x", "kind": "http", "url": "https://h/", "ca_file": "/nonexistent/ca.crt"}],
             "Cannot use checks[0] (x).ca_file /nonexistent/ca.crt: "),
            ([{"name": "x", "kind": "postgres", "sslmode": "verify"}], "Cannot use checks[0] (x).sslmode 'verify'"),
            ([{"name": "x", "kind": "redis", "user": "monitoring"}],
             "Cannot use checks[0] (x).user monitoring: a Redis ACL user needs its password"),
            ([{"name": "x", "kind": "tcp", "host": "h", "port": 1, "timeout": 0}],
             "Cannot use checks[0] (x).timeout 0: expected seconds above 0"),
            ([{"name": "x", "kind": "tcp", "host": "h", "port": 1, "thresholds": {"p90_ms": 1}}],
             "Cannot use checks[0] (x).thresholds: unknown key(s) 'p90_ms'"),
        ],
    )
    def test_unusable_checks_are_named(self, specs, message):
        with pytest.raises(CheckUnusable) as caught:
            build_checks(specs, Thresholds(), 10)
        assert str(caught.value).startswith(message)

    @pytest.mark.parametrize(
        ("spec", "message"),
        [
            ({"kind": "redis", "ca_file": "/etc/redis/ca.crt"},
             "ca_file only applies over TLS, and tls is false; set tls: true or remove ca_file"),
            ({"kind": "redis", "validate_certs": False, "tls": False},
             "validate_certs only applies over TLS, and tls is false; set tls: true or remove validate_certs"),
            ({"kind": "redis", "validate_certs": True, "ca_file": "/etc/redis/ca.crt", "password": "secret"},
             "validate_certs and ca_file only apply over TLS, and tls is false; set tls: true or remove validate_certs and ca_file"),
            ({"kind": "mongodb", "ca_file": "/etc/mongodb/ca.crt"},
             "ca_file only applies over TLS, and tls is false; set tls: true or remove ca_file"),
            ({"kind": "http", "url": "http://h/api/health", "ca_file": "/nonexistent/ca.crt"},
             "ca_file only applies over TLS, and url http://h/api/health is not https://; use https:// or remove ca_file"),
            ({"kind": "http", "url": "http://localhost/", "unix_socket": "/run/s.sock", "validate_certs": False},
             "validate_certs only applies over TLS, and url http://localhost/ is not https://; use https:// or remove validate_certs"),
            ({"kind": "postgres", "sslmode": "disable", "ca_file": "/etc/postgresql/ca.crt"},
             "ca_file only applies over TLS, and sslmode is disable; choose another sslmode or remove ca_file"),
        ],
    )
    def test_tls_options_without_tls_are_refused(self, spec, message):
        # Ignored, they would leave a check that reads as verified talking in plain text (Redis's
        # AUTH with the password included).
        with pytest.raises(CheckUnusable) as caught:
            self.build({"name": "x", **spec})
        assert str(caught.value) == f"Cannot use checks[0] (x): {message}"

    def test_tls_options_unset_as_the_module_passes_them_are_not_refused(self):
        # The module gives every option of a check, None when not set.
        unset = dict.fromkeys(set().union(*health_checks.KIND_OPTIONS.values()))
        [redis, http] = self.build({**unset, "name": "r", "kind": "redis"},
                                   {**unset, "name": "h", "kind": "http", "url": "http://h/"})
        assert redis.probe.context is None and http.probe.context is None

    def test_mongodb_without_pymongo_says_so(self, monkeypatch):
        monkeypatch.setitem(sys.modules, "pymongo", None)
        with pytest.raises(CheckUnusable, match="^Cannot probe mongodb: pymongo is not installed"):
            self.build({"name": "m", "kind": "mongodb"})

    def test_postgres_takes_psycopg2_when_psycopg_is_missing(self, monkeypatch):
        stand_in = type(sys)("psycopg2")  # a mock module: only its identity is checked
        monkeypatch.setitem(sys.modules, "psycopg", None)
        monkeypatch.setitem(sys.modules, "psycopg2", stand_in)
        [check] = self.build({"name": "pg", "kind": "postgres"})
        assert check.probe.driver is stand_in

    @pytest.mark.parametrize("query", ["COMMIT; CREATE TABLE t ()", "SELECT ';'", "SELECT 1;;", "SELECT 1; -- done"])
    def test_postgres_under_psycopg2_refuses_a_semicolon_that_could_start_a_second_statement(self, monkeypatch, query):
        monkeypatch.setitem(sys.modules, "psycopg", None)
        monkeypatch.setitem(sys.modules, "psycopg2", type(sys)("psycopg2"))
        with pytest.raises(CheckUnusable) as caught:
            self.build({"name": "pg", "kind": "postgres", "query": query})
        assert str(caught.value).startswith(f"Cannot use checks[0] (pg).query {query!r}: psycopg2 sends it as text, ")

    def test_postgres_under_psycopg2_takes_a_trailing_semicolon(self, monkeypatch):
        monkeypatch.setitem(sys.modules, "psycopg", None)
        monkeypatch.setitem(sys.modules, "psycopg2", type(sys)("psycopg2"))
        [check] = self.build({"name": "pg", "kind": "postgres", "query": "SELECT 1 ;\n"})
        assert check.probe.query == "SELECT 1 ;\n"

    def test_postgres_without_a_driver_says_so(self, monkeypatch):
        monkeypatch.setitem(sys.modules, "psycopg", None)
        monkeypatch.setitem(sys.modules, "psycopg2", None)
        with pytest.raises(CheckUnusable, match="^Cannot probe postgres: neither psycopg nor psycopg2 is installed"):
            self.build({"name": "pg", "kind": "postgres"})


# -- rounds, with scripted probes (mocks) on a fake clock -------------------------------------------
class ScriptedProbe:
    """A mock probe: each call takes the next (latency_ms, ok) of its script on the fake clock (the
    last one repeats) and records the timeout it was given."""

    def __init__(self, clock: FakeClock, script: list[tuple[float, bool]]) -> None:
        self.clock, self.script, self.calls, self.timeouts = clock, script, 0, []

    def __call__(self, timeout: float) -> None:
        latency_ms, ok = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        self.timeouts.append(timeout)
        self.clock.now += min(latency_ms / 1000, timeout)
        if not ok:
            raise CheckFailed(f"failure {self.calls}")


def gate(clock, scripts: dict[str, list[tuple[float, bool]]], window: int = 10, timeout: float = 5.0, **settings):
    checks = [Check(name=name, kind="http", probe=ScriptedProbe(clock, script), timeout=timeout,
                    thresholds=Thresholds(), window=Window(window)) for name, script in scripts.items()]
    options = {"consecutive": 3, "interval": 1.0, "deadline": 30.0, **settings}
    return checks, run_gate(checks, clock=clock, sleep=clock.sleep, **options)


FAST, DOWN, SLOW = (10, True), (1, False), (300, True)


def test_a_healthy_target_passes_after_the_consecutive_rounds():
    clock = FakeClock()
    result = gate(clock, {"api": [FAST], "db": [FAST]})[1]
    assert (result.passed, result.reason, result.rounds, result.consecutive) == (True, "passed", 3, 3)
    # Rounds start at 0, 1 and 2 s; the third ends after its two probes.
    assert result.elapsed == pytest.approx(2.02)
    assert result.failing() == []
    assert result.message() == "2 check(s) passed 3 consecutive round(s) within their thresholds (3 round(s), 2.0 s)"


def test_a_flapping_target_fails_at_the_deadline_naming_it():
    clock = FakeClock()
    result = gate(clock, {"api": [FAST, DOWN] * 50, "db": [FAST]}, deadline=10)[1]
    assert (result.passed, result.reason, result.rounds) == (False, "deadline", 10)
    assert result.failing() == ["api"]
    api, db = result.checks
    assert (api["count"], api["errors"], api["window_errors"], api["error_percent"]) == (10, 5, 5, 50.0)
    assert api["last_error"] == "failure 10" and not api["last_ok"]
    assert db["passed"] and db["errors"] == 0
    assert result.message() == ("Cannot pass the health gate within 10 s (10 round(s), 9.0 s): api (http): "
                                "error rate 50 % (5 of 10) above 0.1 %; last error: failure 10")


def test_a_slow_target_passes_every_probe_but_fails_its_percentiles():
    clock = FakeClock()
    result = gate(clock, {"api": [SLOW]}, deadline=5)[1]
    assert not result.passed and result.consecutive == 5
    assert result.checks[0]["failures"] == ["p95 300.0 ms above 200 ms"]
    assert result.checks[0]["p50_ms"] == result.checks[0]["p99_ms"] == 300.0
    assert "api (http): p95 300.0 ms above 200 ms" in result.message()


def test_an_error_keeps_the_gate_shut_until_it_leaves_the_window():
    clock = FakeClock()
    # Down for the first two rounds, healthy after: three clean rounds are not enough while the
    # errors are among the last five probes.
    result = gate(clock, {"api": [DOWN, DOWN, FAST]}, window=5)[1]
    assert result.passed and result.rounds == 7 and result.consecutive == 5
    assert result.checks[0]["count"] == 7 and result.checks[0]["errors"] == 2 and result.checks[0]["window_errors"] == 0


def test_fail_after_stops_before_the_deadline():
    clock = FakeClock()
    result = gate(clock, {"api": [DOWN]}, fail_after=4, deadline=60)[1]
    assert (result.passed, result.reason, result.rounds) == (False, "fail_after", 4)
    assert result.message().startswith("Cannot pass the health gate after 4 failing rounds in a row (4 round(s), 3.0 s): api")


def test_a_round_that_overruns_the_interval_is_followed_at_once_and_no_round_starts_after_the_deadline():
    clock = FakeClock()
    # Probes time out at 2 s, twice the interval.
    checks, result = gate(clock, {"api": [(10_000, False)]}, timeout=2.0, deadline=7)
    assert result.rounds == 4  # rounds start at 0, 2, 4 and 6 s; the next would start at 8 s
    assert result.elapsed == pytest.approx(7.0)
    # The last probe is given only what is left before the deadline ...
    assert checks[0].probe.timeouts == [2.0, 2.0, 2.0, pytest.approx(1.0)]
    # ... and, cut short by it, is not counted.
    assert result.checks[0]["count"] == 3


def test_a_slow_check_cut_short_by_the_deadline_is_not_made_a_failing_one():
    clock = FakeClock()
    # 300 ms probes, 0.5 s apart, deadline 1.2 s: the third round's probe gets 0.2 s and times out.
    slow = [(300, True), (300, True), (300, False)]
    result = gate(clock, {"api": slow}, interval=0.5, deadline=1.2)[1]
    assert result.reason == "deadline" and result.rounds == 3
    assert result.checks[0]["count"] == 2 and result.checks[0]["errors"] == 0
    assert result.checks[0]["failures"] == ["p95 300.0 ms above 200 ms"]


def test_a_check_with_no_sample_yet_keeps_the_one_the_deadline_cut_short():
    clock = FakeClock()
    result = gate(clock, {"api": [(10_000, False)]}, timeout=5.0, deadline=1.0)[1]
    assert result.rounds == 1 and result.checks[0]["count"] == 1 and result.checks[0]["last_error"] == "failure 1"


def test_no_probe_is_given_less_than_the_minimum_timeout():
    clock = FakeClock()
    checks = gate(clock, {"slow": [(10_000, True)], "next": [FAST]}, timeout=10.0, deadline=1.0, interval=0.5)[0]
    assert checks[1].probe.timeouts == [health_checks.MIN_TIMEOUT]


def test_passing_needs_every_window_within_thresholds_even_after_enough_rounds():
    clock = FakeClock()
    # Not enough consecutive rounds before the deadline; no check is at fault by itself.
    result = gate(clock, {"api": [FAST]}, consecutive=5, deadline=3)[1]
    assert not result.passed and result.failing() == []
    assert result.message().endswith("only 3 of 5 consecutive rounds passed")


def test_the_last_error_explains_an_error_rate_after_the_check_recovered():
    clock = FakeClock()
    result = gate(clock, {"api": [DOWN, FAST]}, deadline=3)[1]
    assert not result.passed and result.checks[0]["last_ok"]
    assert result.message().endswith("api (http): error rate 33.3 % (1 of 3) above 0.1 %; last error: failure 1")
