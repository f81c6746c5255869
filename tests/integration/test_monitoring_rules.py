"""The monitoring role's rules and Alertmanager configuration, checked by Debian's own promtool and
amtool (lab/test-deps.sh installs them).

Every alert has a case below: series that put its quantity just past the threshold (instance
"over") and just short of it (instance "under"), and promtool's rule unit tests require the alert
for "over" alone once its `for` has passed, and for nobody one minute before. The thresholds and
`for` durations come from the rendered files, with the role's defaults and with every threshold
overridden, so a rule that ignores its variable fails here.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.unit.roles import monitoring

TOOLS = ("promtool", "amtool")
RUNBOOK = ROOT / "docs" / "monitoring.md"


@pytest.fixture(scope="module", autouse=True)
def _tools():
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: run lab/test-deps.sh as root (Debian's prometheus and "
                    "prometheus-alertmanager)", pytrace=False)


def run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(arg) for arg in args], capture_output=True, text=True, timeout=120, check=False)


# Every threshold moved off its default, so that a rule reading a constant instead of its variable fails.
OVERRIDES: dict[str, Any] = {
    "monitoring_alert_for": "3m",
    "monitoring_instance_down_for": "4m",
    "monitoring_api_latency_p95_ms": 300,
    "monitoring_api_latency_p99_ms": 700,
    "monitoring_api_error_rate_percent": 5,
    "monitoring_api_db_pool_percent": 75,
    "monitoring_api_memory_mib": 512,
    "monitoring_api_cpu_percent": 60,
    "monitoring_database_groups": ["db"],
    "monitoring_database_cpu_percent": 50,
    "monitoring_database_cpu_for": "15m",
    "monitoring_database_storage_percent": 70,
    "monitoring_database_connections_percent": 60,
    "monitoring_database_query_latency_ms": 50,
    "monitoring_disk_percent": 90,
    "monitoring_postgres_replication_lag_seconds": 120,
    "monitoring_redis_memory_percent": 75,
    "monitoring_pgbouncer_waiting_clients": 5,
    "monitoring_backup_max_age_hours": 30,
    "monitoring_backup_run_grace": "30m",
    "monitoring_backup_verify_max_age_days": 3,
    "monitoring_certificate_min_days": 30,
}
SETTINGS = {"defaults": {}, "overridden": OVERRIDES}


# --- One case per alert -------------------------------------------------------------------------
Series = list[tuple[str, str]]


@dataclass
class Case:
    """How to make an alert's quantity `q` (in its threshold's unit) appear for one instance.

    series(instance, q, variables) gives promtool input series; the quantity is `over` for the
    instance that must fire and `under` for the one that must not (each a function of the
    threshold). `quiet` adds series that must never fire (a host outside the tier, Redis without maxmemory).
    """
    threshold: str | None
    series: Callable[[str, float, dict], Series]
    over: Callable[[float], float] = lambda t: t * 1.02 + 0.001
    under: Callable[[float], float] = lambda t: t * 0.98
    # The minute the condition first holds for "over": a ratio of rates from the second sample; one
    # rate only once its 5-minute window is full (before, rate() extrapolates the counter's start
    # short and reads low), unless reading low errs to the alert's side (idle CPU).
    start: int = 0
    # The variable that sets the alert's `for` (the rendered rule's own is not trusted).
    hold: str = "monitoring_alert_for"
    quiet: Callable[[dict], Series] = lambda variables: []
    # The alert's labels are its first series' without these (aggregated away).
    drop: tuple[str, ...] = ("le",)


def counter(per_second: float) -> str:
    """A counter growing by per_second, sampled every minute (promtool's expanding notation)."""
    return f"0+{per_second * 60:g}x{{n}}"


def gauge(value: float) -> str:
    return f"{value:g}x{{n}}"


def node(instance: str, groups: str = ",app,") -> str:
    return f'job="node", instance="{instance}", groups="{groups}"'


def histogram(instance: str, quantile: float, seconds: float) -> Series:
    # Every observation in the first bucket (0, le]: the quantile interpolates to quantile * le.
    le = seconds / quantile
    labels = f'job="api", instance="{instance}", method="GET", route="/api/rentals", status_code="200"'
    return [(f'http_request_duration_seconds_bucket{{{labels}, le="{le:.9g}"}}', counter(10)),
            (f'http_request_duration_seconds_bucket{{{labels}, le="+Inf"}}', counter(10))]


def database_groups(variables: dict) -> str:
    return "," + variables["monitoring_database_groups"][0] + ","


BOOLEAN = {"over": lambda t: 1, "under": lambda t: 0}  # q=1 is the failing state
CASES: dict[str, Case] = {
    "InstanceDown": Case(
        None, hold="monitoring_instance_down_for",
        series=lambda i, q, v: [(f'up{{job="redis", instance="{i}"}}', gauge(1 - q))], **BOOLEAN),
    "DiskSpaceLow": Case(
        "monitoring_disk_percent",
        lambda i, q, v: [(f'node_filesystem_avail_bytes{{{node(i)}, mountpoint="/"}}', gauge(100 - q)),
                         (f'node_filesystem_size_bytes{{{node(i)}, mountpoint="/"}}', gauge(100))]),
    "ApiLatencyP95High": Case("monitoring_api_latency_p95_ms", lambda i, q, v: histogram(i, 0.95, q / 1000), start=1,
                              drop=("instance", "method", "route", "status_code", "le")),
    "ApiLatencyP99High": Case("monitoring_api_latency_p99_ms", lambda i, q, v: histogram(i, 0.99, q / 1000), start=1,
                              drop=("instance", "method", "route", "status_code", "le")),
    "ApiErrorRateHigh": Case(
        "monitoring_api_error_rate_percent",
        lambda i, q, v: [(f'http_request_duration_seconds_count{{job="api", instance="{i}", status_code="500"}}',
                          counter(q)),
                         (f'http_request_duration_seconds_count{{job="api", instance="{i}", status_code="200"}}',
                          counter(100 - q))],
        start=1, drop=("instance", "status_code")),
    "ApiDbPoolSaturated": Case(
        "monitoring_api_db_pool_percent",
        lambda i, q, v: [(f'chajipoa_db_pool_connections{{job="api", instance="{i}", state="total"}}', gauge(20)),
                         (f'chajipoa_db_pool_connections{{job="api", instance="{i}", state="idle"}}', gauge(20 - q / 5)),
                         (f'chajipoa_db_pool_max{{job="api", instance="{i}"}}', gauge(20))],
        drop=("state",)),
    "ApiMemoryHigh": Case(
        "monitoring_api_memory_mib",
        lambda i, q, v: [(f'process_resident_memory_bytes{{job="api", instance="{i}"}}', gauge(q * 1048576))]),
    "ApiCpuHigh": Case(
        "monitoring_api_cpu_percent",
        lambda i, q, v: [(f'process_cpu_seconds_total{{job="api", instance="{i}"}}', counter(q / 100))], start=5),
    "DatabaseCpuHigh": Case(
        "monitoring_database_cpu_percent",
        lambda i, q, v: [(f'node_cpu_seconds_total{{{node(i, database_groups(v))}, cpu="{cpu}", mode="idle"}}',
                          counter(1 - q / 100)) for cpu in (0, 1)],
        start=1, drop=("cpu", "mode"), hold="monitoring_database_cpu_for",
        # A busy host that is not a database host is not this alert's.
        quiet=lambda v: [(f'node_cpu_seconds_total{{{node("web1")}, cpu="0", mode="idle"}}', counter(0))]),
    "DatabaseStorageHigh": Case(
        "monitoring_database_storage_percent",
        lambda i, q, v: [(f'node_filesystem_avail_bytes{{{node(i, database_groups(v))}, mountpoint="/srv"}}',
                          gauge(100 - q)),
                         (f'node_filesystem_size_bytes{{{node(i, database_groups(v))}, mountpoint="/srv"}}', gauge(100))],
        # Kept under the generic disk threshold, so that only this alert is expected.
        over=lambda t: t + 0.5, under=lambda t: t - 0.5,
        quiet=lambda v: [(f'node_filesystem_avail_bytes{{{node("web1")}, mountpoint="/srv"}}', gauge(100 - 75)),
                         (f'node_filesystem_size_bytes{{{node("web1")}, mountpoint="/srv"}}', gauge(100))]),
    "PostgresDown": Case(
        None, hold="monitoring_instance_down_for",
        series=lambda i, q, v: [(f'pg_up{{job="postgres", instance="{i}"}}', gauge(1 - q))], **BOOLEAN),
    "PostgresConnectionsHigh": Case(
        "monitoring_database_connections_percent",
        lambda i, q, v: [(f'pg_stat_database_numbackends{{job="postgres", instance="{i}", datname="{db}"}}',
                          gauge(q * 2)) for db in ("chajipoa", "postgres")]
        + [(f'pg_settings_max_connections{{job="postgres", instance="{i}", server="{i}:5432"}}', gauge(400))],
        drop=("datname",)),
    "PostgresQueryLatencyHigh": Case(
        "monitoring_database_query_latency_ms",
        lambda i, q, v: [(f'chajipoa_pg_statements_calls{{job="postgres", instance="{i}", datname="chajipoa"}}',
                          counter(4)),
                         (f'chajipoa_pg_statements_exec_seconds{{job="postgres", instance="{i}", datname="chajipoa"}}',
                          counter(4 * q / 1000))],
        start=1),
    "PostgresReplicationLagHigh": Case(
        "monitoring_postgres_replication_lag_seconds",
        lambda i, q, v: [(f'chajipoa_pg_replication_lag_seconds{{job="postgres", instance="{i}"}}', gauge(q))]),
    "PostgresStandbyNotStreaming": Case(
        None, hold="monitoring_instance_down_for",
        series=lambda i, q, v: [(f'chajipoa_pg_replication_is_standby{{job="postgres", instance="{i}"}}', gauge(1)),
                                (f'chajipoa_pg_replication_streaming{{job="postgres", instance="{i}"}}', gauge(1 - q))],
        # A primary streams from nobody.
        quiet=lambda v: [('chajipoa_pg_replication_is_standby{job="postgres", instance="db1"}', gauge(0)),
                         ('chajipoa_pg_replication_streaming{job="postgres", instance="db1"}', gauge(0))],
        **BOOLEAN),
    "PgBouncerClientsWaiting": Case(
        "monitoring_pgbouncer_waiting_clients",
        lambda i, q, v: [(f'pgbouncer_pools_client_waiting_connections{{job="pgbouncer", instance="{i}", database="chajipoa", '
                          f'user="chajipoa"}}', gauge(q))],
        over=lambda t: t + 1, under=lambda t: t),
    "RedisDown": Case(
        None, hold="monitoring_instance_down_for",
        series=lambda i, q, v: [(f'redis_up{{job="redis", instance="{i}"}}', gauge(1 - q))], **BOOLEAN),
    "RedisMemoryHigh": Case(
        "monitoring_redis_memory_percent",
        lambda i, q, v: [(f'redis_memory_used_bytes{{job="redis", instance="{i}"}}', gauge(q * 1000)),
                         (f'redis_memory_max_bytes{{job="redis", instance="{i}"}}', gauge(100000))],
        # No maxmemory: nothing to be near.
        quiet=lambda v: [('redis_memory_used_bytes{job="redis", instance="cache9"}', gauge(10 ** 9)),
                         ('redis_memory_max_bytes{job="redis", instance="cache9"}', gauge(0))]),
    "RedisRdbSaveFailing": Case(
        None, lambda i, q, v: [(f'redis_rdb_last_bgsave_status{{job="redis", instance="{i}"}}', gauge(1 - q))],
        **BOOLEAN),
    # time() is 0 at the start of a promtool test: an age of q is a timestamp of -q.
    "BackupTooOld": Case(
        "monitoring_backup_max_age_hours",
        lambda i, q, v: [(f'chajipoa_backup_last_success_timestamp_seconds{{{node(i, ",postgres,")}, kind="postgres", '
                          f'database="chajipoa"}}', gauge(-q * 3600))]),
    "BackupFailed": Case(
        None, hold="monitoring_backup_run_grace",
        series=lambda i, q, v: [(f'chajipoa_backup_last_run_success{{{node(i, ",postgres,")}, kind="postgres", '
                                 f'database="chajipoa"}}', gauge(1 - q))],
        **BOOLEAN),
    "BackupVerificationFailed": Case(
        None, hold="monitoring_backup_run_grace",
        series=lambda i, q, v: [(f'chajipoa_backup_verify_last_success{{{node(i, ",postgres,")}, kind="postgres", '
                                 f'database="chajipoa", mode="thorough"}}', gauge(1 - q))],
        **BOOLEAN),
    "BackupVerificationTooOld": Case(
        "monitoring_backup_verify_max_age_days",
        # The newest mode counts: a stale quick verification beside a fresh thorough one is fine.
        lambda i, q, v: [(f'chajipoa_backup_verify_last_timestamp_seconds{{{node(i, ",postgres,")}, kind="postgres", '
                          f'database="chajipoa", mode="{mode}"}}', gauge(-age * 86400))
                         for mode, age in (("thorough", q), ("quick", q * 3))],
        drop=("mode",)),
    # The common role's debsums metric: any changed file is the failing state.
    "PackageFilesChanged": Case(
        None, lambda i, q, v: [(f'chajipoa_package_files_changed{{{node(i)}}}', gauge(q * 3))], **BOOLEAN),
    "ProbeFailed": Case(
        None, hold="monitoring_instance_down_for",
        series=lambda i, q, v: [(f'probe_success{{job="blackbox_http", instance="https://{i}/api/health"}}', gauge(1 - q))],
        **BOOLEAN),
    "CertificateExpiringSoon": Case(
        "monitoring_certificate_min_days",
        lambda i, q, v: [(f'probe_ssl_earliest_cert_expiry{{job="blackbox_http", instance="https://{i}/"}}',
                          gauge(q * 86400))],
        # Firing is the quantity under the threshold here (time left).
        over=lambda t: t * 0.98, under=lambda t: t * 1.02 + 0.01),
}


def minutes(duration: str) -> int:
    match = re.fullmatch(r"(\d+)([smhd])", duration)
    assert match, f"unexpected duration {duration}"
    value = int(match[1]) * {"s": 1 / 60, "m": 1, "h": 60, "d": 1440}[match[2]]
    assert value == int(value) >= 1, f"{duration}: the tests step by whole minutes"
    return int(value)


def unit_tests(settings: dict) -> list[dict]:
    """promtool tests for every alert: with its quantity over the threshold it fires after its `for`
    and not a minute before; under the threshold it does not fire at all. Over and under are tests
    of their own: the API's alerts aggregate every instance of the job."""
    variables = monitoring.variables(**settings)
    tests = []
    for name, rule in monitoring.alerts(**settings).items():
        case = CASES[name]
        assert rule["for"] == variables[case.hold], f"{name}: for is not {case.hold}"
        threshold = 0 if case.threshold is None else float(variables[case.threshold])
        fires_at = case.start + minutes(variables[case.hold]) + 1
        samples = fires_at + 5
        over = case.series("over", case.over(threshold), variables) + case.quiet(variables)
        expected = {key: value for key, value in _series_labels(over[0][0]).items() if key not in case.drop}
        expected.update({"alertname": name, "severity": rule["labels"]["severity"]})
        for which, series, evaluations in (
                ("over", over, [(fires_at - 2, []), (fires_at, [{"exp_labels": expected}])]),
                ("under", case.series("under", case.under(threshold), variables), [(fires_at, [])])):
            tests.append({
                "name": f"{name} {which} {threshold:g}",
                "interval": "1m",
                "input_series": [{"series": text, "values": values.format(n=samples)} for text, values in series],
                "alert_rule_test": [{"eval_time": f"{time}m", "alertname": name, "exp_alerts": alerts}
                                    for time, alerts in evaluations],
            })
    return tests


def _series_labels(series: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', series))


def without_annotations(path: Path) -> None:
    """promtool compares annotations too; they are Prometheus templates, checked by `check rules`
    and by test_alert_annotations, so the firing tests compare labels only."""
    document = yaml.safe_load(path.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


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
def test_every_alert_fires_over_its_threshold_only_after_its_for(tmp_path, setting):
    settings = SETTINGS[setting]
    paths = monitoring.write_rules(tmp_path, **settings)
    for path in paths:
        without_annotations(path)
    tests = unit_tests(settings)
    spec = tmp_path / "tests.yml"
    spec.write_text(yaml.safe_dump({"rule_files": [path.name for path in paths], "evaluation_interval": "1m",
                                    "tests": tests}, sort_keys=False))
    result = run("promtool", "test", "rules", spec)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(tests) == 2 * len(CASES)


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
