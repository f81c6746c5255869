"""The monitoring role's rules and Alertmanager configuration, checked by Debian's own promtool and
amtool (lab/test-deps.sh installs them).

Every alert has a case below: series that put its quantity exactly at its threshold (instance "at")
and one step of the series past it (instance "past"). promtool's rule unit tests require the alert
for "past" once its `for` has passed and not a minute before, and never for "at". The thresholds and
`for` durations come from the rendered files, with the role's defaults and with every threshold
overridden, so a rule that ignores its variable fails here. Copies of the rules with one alert's
comparison made inclusive, or its threshold moved one unit either way, must fail that alert's
tests: cases a little way off the threshold would pass such a rule.
"""
from __future__ import annotations

import copy
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.chajipoa.platform.plugins.module_utils import backup_config, backup_state
from tests.conftest import ROOT
from tests.exposition import samples_by_name
from tests.integration.conftest import require_tools
from tests.unit.roles import monitoring

TOOLS = ("promtool", "amtool")
RUNBOOK = ROOT / "docs" / "monitoring.md"


@pytest.fixture(scope="module", autouse=True)
def _tools():
    require_tools(*TOOLS, packages="Debian's prometheus and prometheus-alertmanager")


def run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(arg) for arg in args], capture_output=True, text=True, timeout=120, check=False)


# Every threshold moved off its default, so that a rule reading a constant instead of its variable fails.
# Each lands exactly in float64 through its rule's arithmetic, as the defaults do (see the cases).
OVERRIDES: dict[str, Any] = {
    "monitoring_alert_for": "3m",
    "monitoring_instance_down_for": "4m",
    "monitoring_api_latency_p95_ms": 300,
    "monitoring_api_latency_p99_ms": 700,
    "monitoring_api_error_rate_percent": 5,
    "monitoring_api_db_pool_percent": 75,
    "monitoring_api_memory_mb": 512,
    # Not 60: rate() reads 180 CPU seconds in 5 minutes as 0.6000000000000001 cores, 60.00000000000001
    # percent, so the case would sit over its threshold rather than at it.
    "monitoring_api_cpu_percent": 70,
    "monitoring_host_cpu_percent": 60,
    "monitoring_database_groups": ["db"],
    "monitoring_database_cpu_percent": 50,
    "monitoring_database_cpu_for": "15m",
    "monitoring_database_storage_percent": 70,
    "monitoring_database_connections_percent": 60,
    "monitoring_database_query_latency_ms": 50,
    "monitoring_disk_percent": 90,
    "monitoring_postgres_replication_lag_seconds": 120,
    "monitoring_mongodb_replication_lag_seconds": 90,
    "monitoring_redis_memory_percent": 75,
    "monitoring_pgbouncer_waiting_clients": 5,
    "monitoring_backup_max_age_hours": 30,
    "monitoring_backup_run_max_minutes": 400,
    "monitoring_backup_verify_max_age_days": 3,
    "monitoring_backup_groups": ["dumps"],
    "monitoring_backup_absent_for": "3h",
    "monitoring_certificate_min_days": 30,
}
SETTINGS = {"defaults": {}, "overridden": OVERRIDES}


# --- One case per alert -------------------------------------------------------------------------
# "Exactly at the threshold" is about what Prometheus computes in float64, so the series are chosen
# for it:
# - rate() over a full 5-minute window is the increase times fl(1/300) (extrapolatedRate in
#   Prometheus 2.42), a hair over 1/300: an increase of 300 r reads as r for the rates below
#   (100 requests a second, t percent of a core), though not for every r (500 a second reads high).
# - A percentage is a ratio times 100; the ratios are t/100 (100 GiB, a pool of 200, 100 MiB of
#   maxmemory), which come back to t for the thresholds tested here.
# - Ages and days left move with promtool's clock (time() is the evaluation time in seconds), so
#   they are t to the second at every evaluation.
# A case that missed its threshold would not pass unseen: reading over it fires the "at" test, and
# reading under it lets the inclusive mutant (>=) pass, which test_a_mutated_threshold_fails_its_tests
# refuses.
Series = list[tuple[str, str]]
MIB, GIB = 2 ** 20, 2 ** 30
MB = 10 ** 6
# One step of a quantity in seconds: about a microsecond (the resolution of prom-client's and
# pg_stat_statements' timings), exact in binary.
MICROSECOND = 2 ** -20
# From this minute on every 5-minute rate() window is full; before, rate() extrapolates no further
# back than the counter's start and reads low.
FULL_WINDOW = 5


@dataclass
class Case:
    """How to put an alert's quantity at its threshold t, or one step past it, for one instance.

    series(instance, t, steps, variables) gives promtool input series with the quantity `steps`
    smallest steps of the series past t, on the firing side: 0 is exactly t, 1 the least the series
    can say beyond it. The threshold is the variable the rule reads, the number the rule itself
    holds, or None for a state rule (`== 0`), whose t is 0: 0 steps is healthy, 1 failing. `quiet`
    adds series that must never fire (a host outside the tier, Redis without maxmemory).
    """
    threshold: str | int | None
    series: Callable[[str, Any, int, dict], Series]
    # The minute the condition first holds for "past": a ratio of rates from the second sample; one
    # rate only once its window is full, unless reading low errs to the alert's side (idle CPU).
    start: int = 0
    # The variable that sets the alert's `for` (the rendered rule's own is not trusted).
    hold: str = "monitoring_alert_for"
    quiet: Callable[[Any, dict], Series] = lambda t, variables: []
    # The alert's labels are its first series' without these (aggregated away).
    drop: tuple[str, ...] = ("le",)


def threshold(case: Case, variables: dict) -> Any:
    """The case's threshold as its rule reads it (None for a state rule)."""
    return variables[case.threshold] if isinstance(case.threshold, str) else case.threshold


def counter(per_minute: float) -> str:
    """A counter from 0 growing by per_minute each minute (promtool's expanding notation; repr keeps
    every bit of a float)."""
    return f"0+{per_minute!r}x{{n}}"


def gauge(value: float) -> str:
    return f"{value!r}x{{n}}"


def clock(offset: float) -> str:
    """A timestamp `offset` seconds from the evaluation time at every minute (time() is 0 at the start
    of a promtool test)."""
    return f"{offset!r}+60x{{n}}"


def node(instance: str, groups: str = ",app,") -> str:
    return f'job="node", instance="{instance}", groups="{groups}"'


def filesystem(instance: str, groups: str, mountpoint: str, t: float, steps: int) -> Series:
    # 100 GiB, t percent of it used; one byte more is a step.
    labels = f'{node(instance, groups)}, mountpoint="{mountpoint}"'
    return [(f"node_filesystem_avail_bytes{{{labels}}}", gauge((100 - t) * GIB - steps)),
            (f"node_filesystem_size_bytes{{{labels}}}", gauge(100 * GIB))]


def histogram(instance: str, quantile: float, milliseconds: float, steps: int) -> Series:
    # 100 requests a second, the quantile's share of them in the bucket up to the threshold and the
    # rest above it: the quantile's rank (0.95 x 100) is that bucket's count, so histogram_quantile
    # answers the bucket's bound itself rather than interpolating. A step moves the bound.
    le = milliseconds / 1000 + steps * MICROSECOND
    labels = f'job="api", instance="{instance}", method="GET", route="/api/rentals", status_code="200"'
    return [(f'http_request_duration_seconds_bucket{{{labels}, le="{le!r}"}}', counter(60 * round(quantile * 100))),
            (f'http_request_duration_seconds_bucket{{{labels}, le="+Inf"}}', counter(6000))]


def database_groups(variables: dict) -> str:
    return "," + variables["monitoring_database_groups"][0] + ","


def backup_groups(variables: dict) -> str:
    return "," + variables["monitoring_backup_groups"][0] + ","


def mongodb_view(instance: str, state: int = 1) -> str:
    """The labels of one member's exporter (Percona's mongodb_exporter beside each member): on every
    series the replica set's name and the member's own state (1 primary, 2 secondary)."""
    return f'job="mongodb", instance="{instance}", rs_nm="rs0", rs_state="{state}"'


def backup_attempt(instance: str, success: int, running: float | None = None, mode: str | None = None) -> Series:
    """The backup program's gauges of a backup's last attempt (with `mode`, of its verification):
    whether it succeeded and, for one under way for `running` seconds, since when."""
    labels = f'{node(instance, ",postgres,")}, kind="postgres", database="chajipoa"'
    family, outcome = "chajipoa_backup", "last_run_success"
    if mode is not None:
        labels += f', mode="{mode}"'
        family, outcome = "chajipoa_backup_verify", "last_success"
    return [(f"{family}_{outcome}{{{labels}}}", gauge(success))] + (
        [(f"{family}_running_since_timestamp_seconds{{{labels}}}", clock(-running))] if running is not None else [])


def replication_views(standby: str, own: float, primarys: float) -> Series:
    """A standby's lag by its own view (its exporter) and by its primary's (the primary's exporter,
    label standby = the standby's application_name, here its instance)."""
    return [(f'chajipoa_pg_replication_lag_seconds{{job="postgres", instance="{standby}"}}', gauge(own)),
            (f'chajipoa_pg_standby_lag_seconds{{job="postgres", instance="{standby}-primary", standby="{standby}"}}',
             gauge(primarys))]


# A replica set's last operation, as optimeDate (milliseconds since the epoch).
OPTIME = 1.7e12
API_AGGREGATED = ("instance", "method", "route", "status_code", "le")
CASES: dict[str, Case] = {
    "InstanceDown": Case(None, lambda i, t, s, v: [(f'up{{job="redis", instance="{i}"}}', gauge(1 - s))],
                         hold="monitoring_instance_down_for"),
    "DiskSpaceLow": Case("monitoring_disk_percent", lambda i, t, s, v: filesystem(i, ",app,", "/", t, s)),
    "ApiLatencyP95High": Case("monitoring_api_latency_p95_ms", lambda i, t, s, v: histogram(i, 0.95, t, s), start=1,
                              drop=API_AGGREGATED),
    "ApiLatencyP99High": Case("monitoring_api_latency_p99_ms", lambda i, t, s, v: histogram(i, 0.99, t, s), start=1,
                              drop=API_AGGREGATED),
    # 100 requests a second, t of them failing; one more failing request a minute is a step.
    "ApiErrorRateHigh": Case(
        "monitoring_api_error_rate_percent",
        lambda i, t, s, v: [(f'http_request_duration_seconds_count{{job="api", instance="{i}", status_code="500"}}',
                             counter(60 * t + s)),
                            (f'http_request_duration_seconds_count{{job="api", instance="{i}", status_code="200"}}',
                             counter(6000 - 60 * t - s))],
        start=1, drop=("instance", "status_code")),
    # A pool of 200: t percent is 2t connections in use, one more is a step.
    "ApiDbPoolSaturated": Case(
        "monitoring_api_db_pool_percent",
        lambda i, t, s, v: [(f'chajipoa_db_pool_connections{{job="api", instance="{i}", state="total"}}', gauge(200)),
                            (f'chajipoa_db_pool_connections{{job="api", instance="{i}", state="idle"}}',
                             gauge(200 - 2 * t - s)),
                            (f'chajipoa_db_pool_max{{job="api", instance="{i}"}}', gauge(200))],
        drop=("state",)),
    "ApiMemoryHigh": Case(
        "monitoring_api_memory_mb",
        lambda i, t, s, v: [(f'process_resident_memory_bytes{{job="api", instance="{i}"}}', gauge(t * MB + s))]),
    # t percent of a core is 60 t / 100 CPU seconds a minute.
    "ApiCpuHigh": Case(
        "monitoring_api_cpu_percent",
        lambda i, t, s, v: [(f'process_cpu_seconds_total{{job="api", instance="{i}"}}',
                             counter(60 * t / 100 + s * MICROSECOND))],
        start=FULL_WINDOW),
    "HostCpuHigh": Case(
        "monitoring_host_cpu_percent",
        lambda i, t, s, v: [(f'node_cpu_seconds_total{{{node(i)}, cpu="{cpu}", mode="idle"}}',
                             counter(60 - 60 * t / 100 - s * MICROSECOND)) for cpu in (0, 1)],
        start=1, drop=("cpu", "mode"),
        # A busy database host is DatabaseCpuHigh's, at its own threshold and hold.
        quiet=lambda t, v: [(f'node_cpu_seconds_total{{{node("db9", database_groups(v))}, cpu="0", mode="idle"}}',
                             counter(0))]),
    "DatabaseCpuHigh": Case(
        "monitoring_database_cpu_percent",
        lambda i, t, s, v: [(f'node_cpu_seconds_total{{{node(i, database_groups(v))}, cpu="{cpu}", mode="idle"}}',
                             counter(60 - 60 * t / 100 - s * MICROSECOND)) for cpu in (0, 1)],
        start=1, drop=("cpu", "mode"), hold="monitoring_database_cpu_for",
        # A busy host that is not a database host is not this alert's.
        quiet=lambda t, v: [(f'node_cpu_seconds_total{{{node("web1")}, cpu="0", mode="idle"}}', counter(0))]),
    "DatabaseStorageHigh": Case(
        "monitoring_database_storage_percent",
        lambda i, t, s, v: filesystem(i, database_groups(v), "/srv", t, s),
        quiet=lambda t, v: filesystem("web1", ",app,", "/srv", t, 1)),
    "PostgresDown": Case(None, lambda i, t, s, v: [(f'pg_up{{job="postgres", instance="{i}"}}', gauge(1 - s))],
                         hold="monitoring_instance_down_for"),
    # max_connections 200, t percent in use over two databases; one more backend is a step.
    "PostgresConnectionsHigh": Case(
        "monitoring_database_connections_percent",
        lambda i, t, s, v: [(f'pg_stat_database_numbackends{{job="postgres", instance="{i}", datname="{db}"}}',
                             gauge(t + extra)) for db, extra in (("chajipoa", 0), ("postgres", s))]
        + [(f'pg_settings_max_connections{{job="postgres", instance="{i}", server="{i}:5432"}}', gauge(200))],
        drop=("datname",)),
    # 100 statements a second taking t ms each: 6 t seconds of execution a minute.
    "PostgresQueryLatencyHigh": Case(
        "monitoring_database_query_latency_ms",
        lambda i, t, s, v: [(f'chajipoa_pg_statements_calls{{job="postgres", instance="{i}", datname="chajipoa"}}',
                             counter(6000)),
                            (f'chajipoa_pg_statements_exec_seconds{{job="postgres", instance="{i}", datname="chajipoa"}}',
                             counter(6 * t + s * MICROSECOND))],
        start=1),
    # A standby current by its own view (it replayed all it received) that its primary sees t seconds
    # behind; test_replication_lag_is_the_larger_view also has the views the other way round.
    "PostgresReplicationLagHigh": Case(
        "monitoring_postgres_replication_lag_seconds", lambda i, t, s, v: replication_views(i, 0, t + s * MICROSECOND)),
    "PostgresStandbyNotStreaming": Case(
        None,
        lambda i, t, s, v: [(f'chajipoa_pg_replication_is_standby{{job="postgres", instance="{i}"}}', gauge(1)),
                            (f'chajipoa_pg_replication_streaming{{job="postgres", instance="{i}"}}', gauge(1 - s))],
        hold="monitoring_instance_down_for",
        # A primary streams from nobody.
        quiet=lambda t, v: [('chajipoa_pg_replication_is_standby{job="postgres", instance="db1"}', gauge(0)),
                            ('chajipoa_pg_replication_streaming{job="postgres", instance="db1"}', gauge(0))]),
    # The exporter reached PostgreSQL but a query failed; PostgreSQL down (quiet) is PostgresDown's.
    "PostgresExporterScrapeError": Case(
        None, lambda i, t, s, v: [(f'pg_exporter_last_scrape_error{{job="postgres", instance="{i}"}}', gauge(s)),
                                  (f'pg_up{{job="postgres", instance="{i}"}}', gauge(1))],
        quiet=lambda t, v: [('pg_exporter_last_scrape_error{job="postgres", instance="db9"}', gauge(1)),
                            ('pg_up{job="postgres", instance="db9"}', gauge(0))]),
    "PgBouncerClientsWaiting": Case(
        "monitoring_pgbouncer_waiting_clients",
        lambda i, t, s, v: [(f'pgbouncer_pools_client_waiting_connections{{job="pgbouncer", instance="{i}", '
                             f'database="chajipoa", user="chajipoa"}}', gauge(t + s))]),
    # PgBouncer's exporter answers (its own target is up) but cannot reach PgBouncer.
    "PgBouncerDown": Case(None, lambda i, t, s, v: [(f'pgbouncer_up{{job="pgbouncer", instance="{i}"}}', gauge(1 - s))],
                          hold="monitoring_instance_down_for"),
    "RedisDown": Case(None, lambda i, t, s, v: [(f'redis_up{{job="redis", instance="{i}"}}', gauge(1 - s))],
                      hold="monitoring_instance_down_for"),
    # 100 MiB of maxmemory, t MiB used; one byte more is a step.
    "RedisMemoryHigh": Case(
        "monitoring_redis_memory_percent",
        lambda i, t, s, v: [(f'redis_memory_used_bytes{{job="redis", instance="{i}"}}', gauge(t * MIB + s)),
                            (f'redis_memory_max_bytes{{job="redis", instance="{i}"}}', gauge(100 * MIB))],
        # No maxmemory: nothing to be near.
        quiet=lambda t, v: [('redis_memory_used_bytes{job="redis", instance="cache9"}', gauge(10 ** 9)),
                            ('redis_memory_max_bytes{job="redis", instance="cache9"}', gauge(0))]),
    "RedisRdbSaveFailing": Case(
        None, lambda i, t, s, v: [(f'redis_rdb_last_bgsave_status{{job="redis", instance="{i}"}}', gauge(1 - s))]),
    # The error's text is a label of its own; Redis unreachable (quiet) is RedisDown's.
    "RedisExporterScrapeError": Case(
        None, lambda i, t, s, v: [(f'redis_exporter_last_scrape_error{{job="redis", instance="{i}", '
                                   f'err="{"NOPERM this user has no permissions to run the info command" * s}"}}',
                                   gauge(s)),
                                  (f'redis_up{{job="redis", instance="{i}"}}', gauge(1))],
        drop=("err",),
        quiet=lambda t, v: [('redis_exporter_last_scrape_error{job="redis", instance="cache9", err="dial tcp: refused"}',
                             gauge(1)),
                            ('redis_up{job="redis", instance="cache9"}', gauge(0))]),
    "MongoDBDown": Case(None, lambda i, t, s, v: [(f'mongodb_up{{job="mongodb", instance="{i}"}}', gauge(1 - s))],
                        hold="monitoring_instance_down_for"),
    # Two members' views of member 2: unhealthy in either is unhealthy, and one alert for both views.
    "MongoDBMemberUnhealthy": Case(
        None,
        lambda i, t, s, v: [(f'mongodb_rs_members_health{{{mongodb_view(i)}, member_idx="{i}-2:27017"}}', gauge(1 - s)),
                            (f'mongodb_rs_members_health{{{mongodb_view(i + "-3", 2)}, member_idx="{i}-2:27017"}}', gauge(1))],
        hold="monitoring_instance_down_for", drop=("instance", "rs_state")),
    # Member 2 t seconds behind the primary in one view, 5 s more in a staler one (the least counts);
    # optimeDate is in milliseconds, one more is a step.
    "MongoDBReplicationLagHigh": Case(
        "monitoring_mongodb_replication_lag_seconds",
        lambda i, t, s, v: [series for view, state, stale in ((i, 1, 0), (i + "-3", 2, 5000)) for series in (
            (f'mongodb_rs_members_optimeDate{{{mongodb_view(view, state)}, member_idx="{i}-2:27017"}}',
             gauge(OPTIME - t * 1000 - s - stale)),
            (f'mongodb_rs_members_optimeDate{{{mongodb_view(view, state)}, member_idx="{i}-1:27017"}}', gauge(OPTIME)))],
        drop=("instance", "rs_state")),
    # 200 connections in all: t percent open is 2t, one more is a step.
    "MongoDBConnectionsHigh": Case(
        "monitoring_database_connections_percent",
        lambda i, t, s, v: [(f'mongodb_ss_connections{{{mongodb_view(i)}, conn_type="current"}}', gauge(2 * t + s)),
                            (f'mongodb_ss_connections{{{mongodb_view(i)}, conn_type="available"}}', gauge(200 - 2 * t - s)),
                            (f'mongodb_ss_connections{{{mongodb_view(i)}, conn_type="totalCreated"}}', gauge(10 ** 6))],
        drop=("conn_type",)),
    # A backup t hours old at every evaluation; a second older is a step.
    # The first attempt, far older, counts only where there is no success (test_backups_that_never_succeeded_...).
    "BackupTooOld": Case(
        "monitoring_backup_max_age_hours",
        lambda i, t, s, v: [(f'chajipoa_backup_{gauge_name}{{{node(i, ",postgres,")}, kind="postgres", database="chajipoa"}}',
                             clock(-age)) for gauge_name, age in (("last_success_timestamp_seconds", t * 3600 + s),
                                                                  ("first_attempt_timestamp_seconds", 3 * t * 3600))]),
    # A finished attempt that failed fires after the ordinary `for`; one under way does not, however
    # long it has been running (quiet: as long as a run may take, far beyond the 2 h these alerts
    # once waited), which BackupRunTooLong watches.
    "BackupFailed": Case(
        None, lambda i, t, s, v: backup_attempt(i, 1 - s),
        quiet=lambda t, v: backup_attempt("db9", 0, running=v["monitoring_backup_run_max_minutes"] * 60)),
    "BackupVerificationFailed": Case(
        None, lambda i, t, s, v: backup_attempt(i, 1 - s, mode="thorough"),
        quiet=lambda t, v: backup_attempt("db9", 0, running=v["monitoring_backup_run_max_minutes"] * 60,
                                          mode="thorough")),
    # An attempt under way for t minutes at every evaluation; a second longer is a step.
    "BackupRunTooLong": Case(
        "monitoring_backup_run_max_minutes", lambda i, t, s, v: backup_attempt(i, 0, running=t * 60 + s)),
    "BackupVerificationRunTooLong": Case(
        "monitoring_backup_run_max_minutes",
        lambda i, t, s, v: backup_attempt(i, 0, running=t * 60 + s, mode="thorough")),
    "BackupVerificationTooOld": Case(
        "monitoring_backup_verify_max_age_days",
        # The newest mode counts: a stale quick verification beside a fresh thorough one is fine.
        lambda i, t, s, v: [(f'chajipoa_backup_verify_last_timestamp_seconds{{{node(i, ",postgres,")}, kind="postgres", '
                             f'database="chajipoa", mode="{mode}"}}', clock(-age))
                            for mode, age in (("thorough", t * 86400 + s), ("quick", 3 * t * 86400))],
        drop=("mode",)),
    # A host of the backup groups whose node exporter serves no backup metric at all: its backups never
    # ran (timer missing, program never installed). Healthy, it has them; a host outside the groups
    # (quiet) has none and is fine.
    "BackupMetricsAbsent": Case(
        None,
        lambda i, t, s, v: [(f'up{{{node(i, backup_groups(v))}}}', gauge(1))] + (
            [] if s else [(f'chajipoa_backup_first_attempt_timestamp_seconds{{{node(i, backup_groups(v))}, kind="postgres", '
                           f'database="chajipoa"}}', gauge(0))]),
        hold="monitoring_backup_absent_for",
        quiet=lambda t, v: [(f'up{{{node("web1")}}}', gauge(1))]),
    # A textfile the node exporter cannot read or parse (the backup program's, debsums').
    "NodeTextfileScrapeError": Case(None, lambda i, t, s, v: [(f'node_textfile_scrape_error{{{node(i)}}}', gauge(s))]),
    # The common role's debsums metric: any changed file is past it.
    "PackageFilesChanged": Case(
        0, lambda i, t, s, v: [(f'chajipoa_package_files_changed{{{node(i)}}}', gauge(t + s))]),
    "ProbeFailed": Case(
        None, lambda i, t, s, v: [(f'probe_success{{job="blackbox_http", instance="https://{i}/api/health"}}', gauge(1 - s))],
        hold="monitoring_instance_down_for"),
    # Firing is time left under the threshold here: a certificate a second closer to expiry is a step.
    "CertificateExpiringSoon": Case(
        "monitoring_certificate_min_days",
        lambda i, t, s, v: [(f'probe_ssl_earliest_cert_expiry{{job="blackbox_http", instance="https://{i}/"}}',
                             clock(t * 86400 - s))]),
}
THRESHOLD_ALERTS = [name for name, case in CASES.items() if case.threshold is not None]


def minutes(duration: str) -> int:
    match = re.fullmatch(r"(\d+)([smhd])", duration)
    assert match, f"unexpected duration {duration}"
    value = int(match[1]) * {"s": 1 / 60, "m": 1, "h": 60, "d": 1440}[match[2]]
    assert value == int(value) >= 1, f"{duration}: the tests step by whole minutes"
    return int(value)


def unit_tests(settings: dict) -> list[dict]:
    """promtool tests for every alert: a step past its threshold it fires after its `for` and not a
    minute before; at its threshold it does not fire, even once every rate window has been full for
    its `for`. Each is a test of its own: the API's alerts aggregate every instance of the job."""
    variables = monitoring.variables(**settings)
    tests = []
    for name, rule in monitoring.alerts(**settings).items():
        case = CASES[name]
        assert rule["for"] == variables[case.hold], f"{name}: for is not {case.hold}"
        t = threshold(case, variables) or 0
        hold = minutes(variables[case.hold])
        fires_at, settled = case.start + hold + 1, FULL_WINDOW + hold + 1
        past = case.series("past", t, 1, variables) + case.quiet(t, variables)
        expected = {key: value for key, value in _series_labels(past[0][0]).items() if key not in case.drop}
        expected.update({"alertname": name, "severity": rule["labels"]["severity"]})
        for which, series, evaluations in (
                ("past", past, [(fires_at - 2, []), (fires_at, [{"exp_labels": expected}])]),
                ("at", case.series("at", t, 0, variables), [(settled, [])])):
            tests.append({
                "name": f"{name} {which} {t}",
                "interval": "1m",
                "input_series": [{"series": text, "values": values.format(n=settled)} for text, values in series],
                "alert_rule_test": [{"eval_time": f"{time}m", "alertname": name, "exp_alerts": alerts}
                                    for time, alerts in evaluations],
            })
    return tests


def _series_labels(series: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', series))


# --- Mutants ------------------------------------------------------------------------------------
MUTATIONS = ("inclusive", "raised", "lowered")


@dataclass
class Mutant:
    """An alert whose comparison with its threshold t is made inclusive (> to >=, < to <=), or whose
    threshold is moved one unit up or down."""
    alert: str
    t: Any
    mutation: str

    def apply(self, expr: str) -> str:
        comparisons = list(re.finditer(rf"([<>])\s*{re.escape(str(self.t))}(?![\w.])", expr))
        assert len(comparisons) == 1, f"{self.alert}: not one comparison with {self.t} in {expr}"
        [match] = comparisons
        operator, value = {"inclusive": (match[1] + "=", self.t), "raised": (match[1], self.t + 1),
                           "lowered": (match[1], self.t - 1)}[self.mutation]
        return f"{expr[:match.start()]}{operator} {value}{expr[match.end():]}"


def promtool_rules(settings: dict) -> dict[str, dict]:
    """The rendered rule files by name, as the unit tests read them.

    Without annotations: promtool compares them too, and they are Prometheus templates, checked by
    `check rules` and by test_alert_annotations, so the firing tests compare labels only."""
    documents = {template.name.removesuffix(".j2"): yaml.safe_load(monitoring.render(template, **settings))
                 for template in monitoring.RULE_TEMPLATES}
    for document in documents.values():
        for group in document["groups"]:
            for rule in group["rules"]:
                rule.pop("annotations", None)
    return documents


def write_documents(directory: Path, documents: dict[str, dict], mutant: Mutant | None = None) -> list[Path]:
    """`documents` written into `directory`, `mutant` applied."""
    paths = []
    for name, document in documents.items():
        if mutant:
            document = copy.deepcopy(document)
            for group in document["groups"]:
                for rule in group["rules"]:
                    if rule.get("alert") == mutant.alert:
                        rule["expr"] = mutant.apply(rule["expr"])
        paths.append(directory / name)
        paths[-1].write_text(yaml.safe_dump(document, sort_keys=False))
    return paths


def promtool_spec(directory: Path, rule_files: list[Path], tests: list[dict]) -> Path:
    spec = directory / "tests.yml"
    spec.write_text(yaml.safe_dump({"rule_files": [path.name for path in rule_files], "evaluation_interval": "1m",
                                    "tests": tests}, sort_keys=False))
    return spec


def promtool_reports(specs: list[Path]) -> dict[Path, str]:
    """promtool's report on each test file, from one run over them all (a process each would cost
    more than the tests)."""
    # promtool names each file on stdout and its failures on stderr, unbuffered: one pipe keeps them in order.
    result = subprocess.run(["promtool", "test", "rules", *map(str, specs)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=300, check=False)
    reports = dict(re.findall(r"^Unit Testing: +(\S+)\n(.*?)(?=^Unit Testing: |\Z)", result.stdout, re.M | re.S))
    assert set(reports) == set(map(str, specs)), result.stdout
    return {spec: reports[str(spec)] for spec in specs}


def mutant_reports(directory: Path, tests_for: Callable[[dict], list[dict]]) -> dict[tuple[str, str, str], str]:
    """(setting, alert, mutation) -> promtool's report on the alert's tests from `tests_for(settings)`
    against the rules with that alert mutated, for every threshold alert and mutation."""
    specs = {}
    for setting, settings in SETTINGS.items():
        variables, tests, documents = monitoring.variables(**settings), tests_for(settings), promtool_rules(settings)
        for alert in THRESHOLD_ALERTS:
            own = [test for test in tests if test["alert_rule_test"][0]["alertname"] == alert]
            for mutation in MUTATIONS:
                here = directory / setting / alert / mutation
                here.mkdir(parents=True)
                rule_files = write_documents(here, documents, Mutant(alert, threshold(CASES[alert], variables), mutation))
                specs[setting, alert, mutation] = promtool_spec(here, rule_files, own)
    reports = promtool_reports(list(specs.values()))
    return {key: reports[spec] for key, spec in specs.items()}


# --- Tests --------------------------------------------------------------------------------------
@pytest.mark.parametrize("setting", SETTINGS)
def test_promtool_accepts_the_rules(tmp_path, setting):
    paths = monitoring.write_rules(tmp_path, **SETTINGS[setting])
    result = run("promtool", "check", "rules", *paths)
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(path.read_text().startswith("#\n# Ansible managed\n#\n") for path in paths)


def test_every_alert_has_a_case():
    assert set(monitoring.alerts()) == set(CASES)


@pytest.mark.parametrize("setting", SETTINGS)
def test_every_alert_fires_past_its_threshold_only_after_its_for(tmp_path, setting):
    settings = SETTINGS[setting]
    tests = unit_tests(settings)
    result = run("promtool", "test", "rules", promtool_spec(tmp_path, write_documents(tmp_path, promtool_rules(settings)), tests))
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(tests) == 2 * len(CASES)


@pytest.fixture(scope="module")
def mutants(tmp_path_factory) -> dict[tuple[str, str, str], str]:
    return mutant_reports(tmp_path_factory.mktemp("mutants"), unit_tests)


@pytest.mark.parametrize("mutation", MUTATIONS)
@pytest.mark.parametrize("alert", THRESHOLD_ALERTS)
def test_a_mutated_threshold_fails_its_tests(mutants, alert, mutation):
    for setting in SETTINGS:
        report = mutants[setting, alert, mutation]
        assert "FAILED" in report and f"name: {alert} " in report, f"{setting}: the {mutation} mutant passes:\n{report}"


@pytest.mark.parametrize("setting", SETTINGS)
def test_backups_that_never_succeeded_are_too_old_after_the_max_age_from_their_first_attempt(tmp_path, monkeypatch,
                                                                                             setting):
    """The backup program's own metrics for a database whose every attempt has failed, the first at
    promtool's time 0: BackupFailed fires after its `for`, and BackupTooOld once the first attempt is
    more than monitoring_backup_max_age_hours old (its `for` later), not a minute before."""
    settings = SETTINGS[setting]
    variables = monitoring.variables(**settings)
    with monkeypatch.context() as patched:
        patched.setattr(backup_state.time, "time", lambda: 0.0)
        state = backup_state.State(backup_config.Config({"backup_dir": str(tmp_path / "backups")}))
        for _attempt in range(3):
            state.backup_started("postgresql", "chajipoa")
            state.backup("postgresql", "chajipoa", False)
    hold = minutes(variables["monitoring_alert_for"])
    too_old = variables["monitoring_backup_max_age_hours"] * 60 + 1 + hold
    # Stored as the node exporter serves the file: with its target's labels.
    target = 'job="node", instance="db1", groups=",postgres,", '
    series = [{"series": sample.replace("{", "{" + target, 1), "values": f"{value}x{too_old}"}
              for lines in samples_by_name(backup_state.render_metrics(state.data)).values()
              for sample, value in (line.rsplit(" ", 1) for line in lines)]
    assert not [entry for entry in series if entry["series"].startswith("chajipoa_backup_last_success_")]
    labels = {"job": "node", "instance": "db1", "groups": ",postgres,", "kind": "postgresql", "database": "chajipoa"}
    firing = [{"exp_labels": {**labels, "severity": "critical"}}]
    tests = [{"name": f"never succeeded ({setting})", "interval": "1m", "input_series": series, "alert_rule_test": [
        {"eval_time": f"{hold - 1}m", "alertname": "BackupFailed", "exp_alerts": []},
        {"eval_time": f"{hold}m", "alertname": "BackupFailed", "exp_alerts": firing},
        {"eval_time": f"{too_old - 1}m", "alertname": "BackupTooOld", "exp_alerts": []},
        {"eval_time": f"{too_old}m", "alertname": "BackupTooOld", "exp_alerts": firing},
    ]}]
    result = run("promtool", "test", "rules", promtool_spec(tmp_path, write_documents(tmp_path, promtool_rules(settings)), tests))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("setting", SETTINGS)
def test_backups_never_verified_are_too_old_after_the_max_age_from_their_first_attempt(tmp_path, setting):
    """A database with no verification recorded at all (no chajipoa_backup_verify_* series) counts from
    its first backup attempt, as BackupTooOld does: one first tried a second more than
    monitoring_backup_verify_max_age_days ago fires after the `for`, one tried exactly then never."""
    settings = SETTINGS[setting]
    variables = monitoring.variables(**settings)
    days, hold = variables["monitoring_backup_verify_max_age_days"], minutes(variables["monitoring_alert_for"])
    labels = {"job": "node", "instance": "", "groups": ",postgres,", "kind": "postgres", "database": "chajipoa"}
    tests = []
    for instance, age, expected in (("past", days * 86400 + 1, True), ("at", days * 86400, False)):
        own = {**labels, "instance": instance}
        series = ",".join(f'{key}="{value}"' for key, value in own.items())
        tests.append({"name": f"never verified {instance} ({setting})", "interval": "1m", "input_series": [
            {"series": f"chajipoa_backup_first_attempt_timestamp_seconds{{{series}}}", "values": clock(-age).format(n=hold + 2)},
            {"series": f"chajipoa_backup_last_success_timestamp_seconds{{{series}}}", "values": clock(0).format(n=hold + 2)}],
            "alert_rule_test": [
                {"eval_time": f"{hold - 1}m", "alertname": "BackupVerificationTooOld", "exp_alerts": []},
                {"eval_time": f"{hold + 1}m", "alertname": "BackupVerificationTooOld",
                 "exp_alerts": [{"exp_labels": {**own, "severity": "warning"}}] if expected else []}]})
    result = run("promtool", "test", "rules", promtool_spec(tmp_path, write_documents(tmp_path, promtool_rules(settings)), tests))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("setting", SETTINGS)
def test_replication_lag_is_the_larger_view(tmp_path, setting):
    """PostgresReplicationLagHigh by the standby's own view past the threshold while its primary sees
    it current (the case in CASES has it the other way round), and by both views at the threshold,
    the primary's as the standby's instance under another name: neither view alone decides."""
    settings = SETTINGS[setting]
    variables = monitoring.variables(**settings)
    t = variables["monitoring_postgres_replication_lag_seconds"]
    hold = minutes(variables["monitoring_alert_for"])
    firing = [{"exp_labels": {"job": "postgres", "instance": "own", "severity": "warning"}}]
    tests = [{"name": name, "interval": "1m",
              "input_series": [{"series": text, "values": values.format(n=hold + 2)} for text, values in series],
              "alert_rule_test": [{"eval_time": f"{hold - 1}m", "alertname": "PostgresReplicationLagHigh", "exp_alerts": []},
                                  {"eval_time": f"{hold + 1}m", "alertname": "PostgresReplicationLagHigh",
                                   "exp_alerts": expected}]}
             for name, series, expected in (
                 (f"own view past ({setting})", replication_views("own", t + MICROSECOND, 0), firing),
                 (f"both at ({setting})", replication_views("both", t, t), []))]
    result = run("promtool", "test", "rules", promtool_spec(tmp_path, write_documents(tmp_path, promtool_rules(settings)), tests))
    assert result.returncode == 0, result.stdout + result.stderr


def test_thresholds_reach_the_expressions():
    """Every threshold variable changes the rendered rules (the firing tests prove the value is used right)."""
    defaults = monitoring.rules()
    for variable, value in OVERRIDES.items():
        assert monitoring.rules(**{variable: value}) != defaults, f"{variable} changes no rule"


def test_database_tier_is_a_group_label_regex():
    rule = monitoring.alerts(monitoring_database_groups=["postgres", "postgres_replica"])["DatabaseCpuHigh"]
    assert 'groups=~".*,(postgres|postgres_replica),.*"' in rule["expr"]


def test_alert_annotations():
    headings = {line[4:].strip().lower() for line in RUNBOOK.read_text().splitlines() if line.startswith("### ")}
    for name, rule in monitoring.alerts().items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["runbook"] == f"docs/monitoring.md#{name.lower()}", name
        assert name.lower() in headings, f"docs/monitoring.md has no runbook heading for {name}"


# --- Alertmanager -------------------------------------------------------------------------------
RECEIVERS: dict[str, dict[str, Any]] = {
    "none": {},
    "email": {"monitoring_email_to": ["ops@chajipoa.example", "dba@chajipoa.example"],
              "monitoring_smtp_smarthost": "smtp.chajipoa.example:587", "monitoring_smtp_from": "alerts@chajipoa.example",
              "monitoring_smtp_auth_username": "alerts", "monitoring_smtp_password": "s3cret: with 'quotes' # and \"more\""},
    "slack": {"monitoring_slack_webhook_url": "https://hooks.slack.example/services/T0/B0/abc"},
    "sms": {"monitoring_sms_webhook_url": "https://sms.example/alert?token=a&b=c"},
}
RECEIVERS["all"] = {**RECEIVERS["email"], **RECEIVERS["slack"], **RECEIVERS["sms"]}
# What each configuration delivers a warning and a critical alert to.
ROUTES = {
    "none": ("null", "null"),
    "email": ("team", "team"),
    "slack": ("team", "team"),
    "sms": ("null", "oncall-sms,null"),
    "all": ("team", "oncall-sms,team"),
}


def alertmanager_config(tmp_path: Path, receivers: str) -> Path:
    path = tmp_path / "alertmanager.yml"
    path.write_text(monitoring.render(monitoring.ALERTMANAGER, **RECEIVERS[receivers]))
    return path


@pytest.mark.parametrize("receivers", RECEIVERS)
def test_amtool_accepts_the_configuration(tmp_path, receivers):
    result = run("amtool", "check-config", alertmanager_config(tmp_path, receivers))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("receivers", RECEIVERS)
def test_routes(tmp_path, receivers):
    path = alertmanager_config(tmp_path, receivers)
    for severity, expected in zip(("warning", "critical"), ROUTES[receivers]):
        result = run("amtool", "config", "routes", "test", f"--config.file={path}", "alertname=RedisDown",
                     f"severity={severity}")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == expected, severity


def test_inventory_strings_arrive_unchanged(tmp_path):
    config = yaml.safe_load(alertmanager_config(tmp_path, "all").read_text())
    assert config["global"]["smtp_auth_password"] == RECEIVERS["email"]["monitoring_smtp_password"]
    team = next(receiver for receiver in config["receivers"] if receiver["name"] == "team")
    assert team["email_configs"][0]["to"] == "ops@chajipoa.example, dba@chajipoa.example"
    assert team["slack_configs"][0]["api_url"] == RECEIVERS["slack"]["monitoring_slack_webhook_url"]
    sms = next(receiver for receiver in config["receivers"] if receiver["name"] == "oncall-sms")
    assert sms["webhook_configs"][0]["url"] == RECEIVERS["sms"]["monitoring_sms_webhook_url"]


def test_grouping_intervals_and_inhibitions(tmp_path):
    path = tmp_path / "alertmanager.yml"
    path.write_text(monitoring.render(monitoring.ALERTMANAGER, monitoring_alertmanager_repeat_interval="6h",
                                      monitoring_alertmanager_critical_repeat_interval="20m",
                                      monitoring_alertmanager_group_wait="10s"))
    config = yaml.safe_load(path.read_text())
    route = config["route"]
    assert route["group_by"] == ["alertname", "instance"]
    assert (route["group_wait"], route["repeat_interval"]) == ("10s", "6h")
    assert [child["repeat_interval"] for child in route["routes"]] == ["20m"]
    # An instance whose node exporter is down silences the host's other alerts, not other hosts'.
    inhibit = config["inhibit_rules"][0]
    assert inhibit["source_matchers"] == ['alertname="InstanceDown"', 'job="node"'] and inhibit["equal"] == ["instance"]
