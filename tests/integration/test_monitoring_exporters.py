"""Every metric name the monitoring rules and dashboards read is one Debian's exporters really export.

The exporters from Debian 12 (lab/test-deps.sh) run on loopback, on free ports, against real
servers: a throwaway PostgreSQL 15 with pg_stat_statements loaded and the role's custom queries, a
TLS Redis read by an ACL user with the redis role's monitoring rules, the node exporter reading the
textfile the backup program writes, PgBouncer 1.18. Each is scraped once and the rules' names are
looked up in what it served; the blackbox exporter probes a TLS server of the test's own (with the
role's blackbox.yml too: which CA each probe verifies it with outside development). Names no
exporter here can serve (MongoDB's among them) are listed in NOT_HERE with the reason.
"""
from __future__ import annotations

import http.server
import os
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from ansible_collections.chajipoa.platform.plugins.module_utils import backup_state
from ansible_collections.chajipoa.platform.plugins.module_utils.pg_scratch import as_server_user, give_to_server_user
from tests import dashboards
from tests.conftest import ROOT, load_yaml
from tests.exposition import samples_by_name
from tests.integration.test_monitoring_dashboards import api_contract_names
from tests.pgserver import PostgresServer
from tests.ports import free_port
from tests.redisserver import RedisServer, make_tls_files
from tests.unit.roles import monitoring

# The API's own metrics (apps/reference-api/src/metrics.js, prom-client) come from no Debian exporter:
# the API's metrics test (apps/reference-api/test/metrics.test.js, which tests/integration/
# test_reference_api.py runs against a real PostgreSQL and Redis) reads its real /metrics and
# requires the names of docs/monitoring.md's table "The API's metrics"; test_api_names_are_the_contracts
# below requires these names in that table. Running the API here as well would need its npm
# dependencies and both servers a second time for the same check.
API_NAMES = ("http_request_duration_seconds_bucket", "http_request_duration_seconds_count", "chajipoa_db_pool_connections",
             "chajipoa_db_pool_max", "process_resident_memory_bytes", "process_cpu_seconds_total")
NOT_HERE = {
    "up": "Prometheus's own series for every target",
    **dict.fromkeys(API_NAMES, "the API's own (prom-client): its metrics test reads them off its real /metrics (API_NAMES)"),
    "chajipoa_package_files_changed": ("the common role's debsums textfile (chajipoa-debsums-metric, which needs debsums "
                                       "over a whole host's packages): molecule common reads its names and values off a "
                                       "host; the node exporter serves a textfile as the backup one above"),
    **dict.fromkeys(
        ("mongodb_up", "mongodb_rs_members_health", "mongodb_rs_members_optimeDate", "mongodb_ss_connections"),
        "Percona's mongodb_exporter (a GitHub release) against a MongoDB server: neither can be fetched on these "
        "machines (docs/monitoring.md, \"MongoDB's exporter\": the names as its source builds them)"),
    **dict.fromkeys(("pgbouncer_pools_client_waiting_connections", "pgbouncer_up"),
                    "PyPI's prometheus-pgbouncer-exporter on the app hosts: molecule app's test_monitoring reads it from Prometheus"),
}
# Which exporter serves a name, by its prefix.
EXPORTERS = {"node": ("node_", "chajipoa_backup_"), "postgres": ("pg_", "chajipoa_pg_"), "redis": ("redis_",),
             "blackbox": ("probe_",)}
MONITORING_USER = "monitoring"
MONITORING_PASSWORD = "monitoring-test-password"


def names_read() -> set[str]:
    """What the rules read, and what the dashboards read beyond it."""
    return set(monitoring.exported_names_needed()) | dashboards.EXPORTER_NAMES


def needed(exporter: str) -> set[str]:
    return {name for name in names_read() if name.startswith(EXPORTERS[exporter])}


def test_every_name_is_checked_or_excused():
    names = names_read()
    covered = set().union(*(needed(exporter) for exporter in EXPORTERS))
    assert names - covered == set(NOT_HERE) & names
    assert set(NOT_HERE) <= names, "NOT_HERE excuses names no rule reads"


def test_api_names_are_the_contracts():
    """What the API's own metrics test holds its real /metrics to covers every API name a rule reads."""
    assert set(API_NAMES) <= api_contract_names((ROOT / "docs" / "monitoring.md").read_text())


def scrape(port: int, path: str = "/metrics") -> dict[str, list[str]]:
    """Metric name -> its sample lines."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=20) as response:
        return samples_by_name(response.read().decode())


@contextmanager
def exporter(args: list[str], port: int, env: dict | None = None, log: Path | None = None) -> Iterator[subprocess.Popen]:
    """An exporter process answering /metrics on 127.0.0.1:port; killed (and reaped) on exit."""
    binary = args[0]
    if shutil.which(binary) is None:
        pytest.fail(f"{binary} not found: run lab/test-deps.sh as root", pytrace=False)
    with (log or Path(os.devnull)).open("w") as output:
        process = subprocess.Popen(args, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).close()
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{binary} did not serve /metrics (exit {process.poll()}): "
                                         f"{log.read_text() if log else ''}") from None
                time.sleep(0.1)
        yield process
    finally:
        process.kill()
        process.wait()


# --- node exporter with the backup program's textfile -------------------------------------------
def test_node_exporter_and_backup_textfile(tmp_path):
    # Attempts under way, so that every family the rules read is there (a running one exists only then).
    state = {
        "backups": {"postgres/chajipoa": {"kind": "postgres", "database": "chajipoa", "last_run": 1.7e9,
                                          "last_run_success": 0, "last_success": 1.7e9, "last_size_bytes": 1024,
                                          "last_duration_seconds": 2.5, "last_name": "x", "running_since": 1.7e9,
                                          "first_attempt": 1.6e9}},
        "verifications": {"postgres/chajipoa/thorough": {"kind": "postgres", "database": "chajipoa", "mode": "thorough",
                                                         "last_run": 1.7e9, "last_success": 0, "running_since": 1.7e9}},
    }
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    (textfiles / "chajipoa_backup.prom").write_text(backup_state.render_metrics(state))
    port = free_port()
    with exporter(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{port}",
                   f"--collector.textfile.directory={textfiles}"], port, log=tmp_path / "log"):
        served = scrape(port)
    assert served["node_textfile_scrape_error"] == ["node_textfile_scrape_error 0"]
    assert needed("node") - set(served) == set()


def test_node_exporter_reports_a_partial_textfile(tmp_path):
    """A backup textfile cut off mid-line, as a writer that did not rename a finished file leaves
    it: the node exporter drops the file and says so in node_textfile_scrape_error, which
    NodeTextfileScrapeError reads."""
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    whole = backup_state.render_metrics({"backups": {"postgres/chajipoa": {
        "kind": "postgres", "database": "chajipoa", "last_run": 1.7e9, "last_run_success": 1, "last_success": 1.7e9}},
        "verifications": {}})
    (textfiles / "chajipoa_backup.prom").write_text(whole[:whole.rindex("{") + 5])
    port = free_port()
    with exporter(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{port}",
                   f"--collector.textfile.directory={textfiles}"], port, log=tmp_path / "log"):
        served = scrape(port)
    assert served["node_textfile_scrape_error"] == ["node_textfile_scrape_error 1"]
    assert not any(name.startswith("chajipoa_backup_") for name in served)


# --- postgres_exporter with the role's custom queries --------------------------------------------
class StatementsServer(PostgresServer):
    """The test server with pg_stat_statements loaded, as the postgres role loads it."""

    def _write_settings(self) -> None:
        super()._write_settings()
        with (self.datadir / "postgresql.auto.conf").open("a") as settings:
            settings.write("shared_preload_libraries = 'pg_stat_statements'\n")


def monitored_server(server: StatementsServer) -> Iterator[StatementsServer]:
    """`server` started, with the application's database, pg_stat_statements and the pg_monitor login
    as the postgres role makes them; stopped when the caller's fixture ends."""
    server.start()
    try:
        server.create_database("chajipoa")
        server.execute("CREATE EXTENSION pg_stat_statements", "chajipoa")
        server.execute(f"CREATE ROLE {MONITORING_USER} LOGIN PASSWORD '{MONITORING_PASSWORD}' IN ROLE pg_monitor")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def statements_server() -> Iterator[PostgresServer]:
    for server in monitored_server(StatementsServer()):
        for _repeat in range(3):
            server.execute("SELECT count(*) FROM pg_class", "chajipoa")
        yield server


def test_postgres_exporter_with_custom_queries(tmp_path, statements_server):
    queries = tmp_path / "queries.yaml"
    queries.write_text(monitoring.render(monitoring.POSTGRES_QUERIES))
    port = free_port()
    dsn = (f"postgresql://{MONITORING_USER}:{MONITORING_PASSWORD}@127.0.0.1:{statements_server.port}/chajipoa"
           "?sslmode=disable")
    with exporter(["prometheus-postgres-exporter", f"--web.listen-address=127.0.0.1:{port}",
                   f"--extend.query-path={queries}"], port, env={"DATA_SOURCE_NAME": dsn}, log=tmp_path / "log"):
        served = scrape(port)
    assert [line.split()[-1] for line in served["pg_up"]] == ["1"]
    # A custom query that fails shows here, not as a missing name.
    assert [line.split()[-1] for line in served["pg_exporter_last_scrape_error"]] == ["0"], (tmp_path / "log").read_text()
    # The primary's view of its standbys has no rows without one: test_primary_view_of_a_streaming_standby.
    assert needed("postgres") - set(served) == PRIMARY_VIEW
    # On a primary: not a standby, no lag; the statements of the database the test ran.
    assert [line.split()[-1] for line in served["chajipoa_pg_replication_is_standby"]] == ["0"]
    assert any('datname="chajipoa"' in line for line in served["chajipoa_pg_statements_calls"])


# The names of the primary's view of its standbys (query chajipoa_pg_standby).
PRIMARY_VIEW = {"chajipoa_pg_standby_lag_seconds"}


class StandbyServer(StatementsServer):
    """A streaming standby of `primary`, cloned with pg_basebackup instead of initdb; it connects
    with application_name `name`, as the postgres role's standbys with their slot names."""

    def __init__(self, primary: PostgresServer, name: str = "db2"):
        super().__init__()
        self.primary = primary
        self.name = name
        # The clone's logins are the primary's.
        self.password = primary.password

    def _initdb(self) -> None:
        self._run(self.bindir / "pg_basebackup", "-D", self.datadir, "-X", "stream", "--checkpoint=fast", "--no-sync",
                  "-d", self.primary.conninfo())

    def _write_settings(self) -> None:
        super()._write_settings()
        with (self.datadir / "postgresql.auto.conf").open("a") as settings:
            quoted = f"{self.primary.conninfo()} application_name={self.name}".replace("'", "''")
            settings.write(f"primary_conninfo = '{quoted}'\n")
        (self.datadir / "standby.signal").touch()

    def wait_for_receiver(self, streaming: bool, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        query = "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'"
        while (self.execute(query)[0][0] == 1) != streaming:
            assert time.monotonic() < deadline, f"the standby's WAL receiver is {'not ' * streaming}streaming"
            time.sleep(0.1)


def served_by(server: PostgresServer, tmp_path: Path) -> dict[str, list[str]]:
    """What the exporter with the role's queries serves for `server`, which it must scrape without
    an error (every custom query succeeds: PostgresExporterScrapeError stays quiet)."""
    queries = tmp_path / "queries.yaml"
    queries.write_text(monitoring.render(monitoring.POSTGRES_QUERIES))
    port = free_port()
    dsn = f"postgresql://{MONITORING_USER}:{MONITORING_PASSWORD}@127.0.0.1:{server.port}/chajipoa?sslmode=disable"
    with exporter(["prometheus-postgres-exporter", f"--web.listen-address=127.0.0.1:{port}",
                   f"--extend.query-path={queries}"], port, env={"DATA_SOURCE_NAME": dsn}, log=tmp_path / "log"):
        served = scrape(port)
    assert [line.split()[-1] for line in served["pg_exporter_last_scrape_error"]] == ["0"], (tmp_path / "log").read_text()
    return served


def replication(server: PostgresServer, tmp_path: Path) -> dict[str, str]:
    """The replication metrics the exporter serves for `server`, name -> value."""
    served = served_by(server, tmp_path)
    assert not PRIMARY_VIEW & set(served), "a standby serves the primary's view"
    return {name: served[name][0].split()[-1] for name in served if name.startswith("chajipoa_pg_replication_")}


def standby_view(primary: PostgresServer, tmp_path: Path) -> dict[str, dict[str, float]]:
    """The primary's view of its standbys: application_name -> {metric: value}."""
    served = served_by(primary, tmp_path)
    views: dict[str, dict[str, float]] = {}
    for name in ("chajipoa_pg_standby_lag_seconds", "chajipoa_pg_standby_lag_bytes"):
        for line in served.get(name, []):
            [standby] = re.findall(r'standby="([^"]*)"', line)
            views.setdefault(standby, {})[name] = float(line.split()[-1])
    return views


def test_primary_view_of_a_streaming_standby(tmp_path, statements_server):
    """The primary's exporter (the role's queries, no scrape error) sees its streaming standby by
    application_name; with the standby's replay paused and WAL written on the primary, the primary's
    view counts the WAL behind in bytes: the view PostgresReplicationLagHigh now also takes, read
    from the primary's positions rather than the standby's."""
    with StandbyServer(statements_server, name="db2") as standby:
        standby.wait_for_receiver(streaming=True)
        deadline = time.monotonic() + 30
        while not (views := standby_view(statements_server, tmp_path)).get("db2", {}).keys() >= (
                PRIMARY_VIEW | {"chajipoa_pg_standby_lag_bytes"}):
            assert time.monotonic() < deadline, f"the primary's exporter does not see db2: {views}"
            time.sleep(0.5)
        assert needed("postgres") & PRIMARY_VIEW <= views["db2"].keys()
        assert set(views) == {"db2"} and views["db2"]["chajipoa_pg_standby_lag_seconds"] >= 0
        standby.execute("SELECT pg_wal_replay_pause()")
        statements_server.execute("CREATE TABLE lagging AS SELECT generate_series(1, 10000) AS n", "chajipoa")
        deadline = time.monotonic() + 30
        while (behind := standby_view(statements_server, tmp_path)["db2"]["chajipoa_pg_standby_lag_bytes"]) <= 0:
            assert time.monotonic() < deadline, "the primary's view counts no WAL behind a paused standby"
            time.sleep(0.5)
        assert behind > 0
        standby.execute("SELECT pg_wal_replay_resume()")
        statements_server.execute("DROP TABLE lagging", "chajipoa")


def test_standby_replication_metrics(tmp_path, statements_server):
    """On a real standby: streaming, then (its primary out of reach) not, which PostgresStandbyNotStreaming reads."""
    with StandbyServer(statements_server) as standby:
        standby.wait_for_receiver(streaming=True)
        metrics = replication(standby, tmp_path)
        assert (metrics["chajipoa_pg_replication_is_standby"], metrics["chajipoa_pg_replication_streaming"]) == ("1", "1")
        assert float(metrics["chajipoa_pg_replication_lag_seconds"]) >= 0
        standby.execute(f"ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port={free_port()}'")
        standby.execute("SELECT pg_reload_conf()")
        standby.wait_for_receiver(streaming=False)
        metrics = replication(standby, tmp_path)
        assert (metrics["chajipoa_pg_replication_is_standby"], metrics["chajipoa_pg_replication_streaming"]) == ("1", "0")


# --- redis_exporter as the redis role's monitoring ACL user --------------------------------------
def test_redis_exporter_as_the_monitoring_user(tmp_path):
    rules = load_yaml(ROOT / "roles/redis/defaults/main.yml")["redis_monitoring_acl_rules"].split()
    with RedisServer() as redis:
        redis.command("ACL", "SETUSER", MONITORING_USER, "reset", "on", f">{MONITORING_PASSWORD}", *rules)
        port = free_port()
        with exporter(["prometheus-redis-exporter", f"-web.listen-address=127.0.0.1:{port}",
                       f"-redis.addr=rediss://127.0.0.1:{redis.port}", f"-redis.user={MONITORING_USER}",
                       f"-tls-ca-cert-file={redis.ca_file}"], port, env={"REDIS_PASSWORD": MONITORING_PASSWORD},
                      log=tmp_path / "log"):
            served = scrape(port)
    assert served["redis_up"] == ["redis_up 1"], (tmp_path / "log").read_text()
    # Every command the exporter sends is one the ACL user may run: RedisExporterScrapeError stays quiet.
    assert served["redis_exporter_last_scrape_error"] == ['redis_exporter_last_scrape_error{err=""} 0'], served
    assert needed("redis") - set(served) == set()


# --- blackbox exporter probing a TLS server --------------------------------------------------------
@contextmanager
def https_server(directory: Path) -> Iterator[tuple[int, Path]]:
    """An HTTPS server on loopback answering 200 to everything: its port and its CA file."""
    ca_file, cert, key = make_tls_files(directory, "web")

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # pylint: disable=invalid-name  # http.server's name for it
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Ok)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], ca_file
    finally:
        server.shutdown()
        server.server_close()


def test_blackbox_exporter_probe_of_a_tls_server(tmp_path):
    with https_server(tmp_path) as (web_port, ca_file):
        config = tmp_path / "blackbox.yml"
        config.write_text(f"modules:\n  http_2xx:\n    prober: http\n    http:\n      tls_config:\n        ca_file: {ca_file}\n")
        port = free_port()
        with exporter(["prometheus-blackbox-exporter", f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"],
                      port, log=tmp_path / "log"):
            served = scrape(port, f"/probe?module=http_2xx&target=https://127.0.0.1:{web_port}/")
    assert served["probe_success"] == ["probe_success 1"], served
    assert needed("blackbox") - set(served) == set()
    # The test certificate is valid for two days: CertificateExpiringSoon would fire, as it should.
    expiry = float(served["probe_ssl_earliest_cert_expiry"][0].split()[-1])
    assert 1 < (expiry - time.time()) / 86400 <= 2


# The edge (the HTTPS server above, its own CA) and the data tier (another CA): outside development,
# each probe module of the role's blackbox.yml, with the CAs where the role installs them. The
# system's trust store is Go's SSL_CERT_FILE: the edge's CA stands for a public one (Let's Encrypt).
PROBE_CASES = {
    "a public edge certificate, the data tier's CA set": ("", "edge", 1),
    "the same, the system's store not trusting the edge (the probes do verify)": ("", "data", 0),
    "a probe CA, the system's store not trusting the edge": ("files/edge/ca.crt", "data", 1),
}


@pytest.mark.parametrize("case", PROBE_CASES)
def test_the_roles_probes_verify_the_edge_with_the_probe_ca_not_the_data_tiers(tmp_path, case):
    probe_ca_file, system_store, expected = PROBE_CASES[case]
    tls_dir, data_dir, edge_dir = tmp_path / "tls", tmp_path / "data", tmp_path / "edge"
    for directory in (tls_dir, data_dir, edge_dir):
        directory.mkdir()
    data_ca = make_tls_files(data_dir)[0]
    with https_server(edge_dir) as (web_port, edge_ca):
        shutil.copy(data_ca, tls_dir / "ca.crt")
        shutil.copy(edge_ca, tls_dir / "probe-ca.crt")
        config = tmp_path / "blackbox.yml"
        config.write_text(monitoring.render(
            Path("etc/prometheus/blackbox.yml.j2"), inventory_hostname="mon1", _monitoring_tls_dir=str(tls_dir),
            groups={"all": ["mon1", "edge1"], "monitoring": ["mon1"], "edge": ["edge1"]},
            hostvars={"mon1": {"private_address": "127.0.0.2"}, "edge1": {"private_address": "127.0.0.1", "edge_server_name": "localhost"}},
            monitoring_tls_self_signed=False, monitoring_tls_ca_file="files/pki/ca.crt", monitoring_probe_ca_file=probe_ca_file))
        port = free_port()
        with exporter(["prometheus-blackbox-exporter", f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"],
                      port, env={"SSL_CERT_FILE": str({"edge": edge_ca, "data": data_ca}[system_store])}, log=tmp_path / "log"):
            for module in ("edge_edge1", "http_2xx"):
                served = scrape(port, f"/probe?module={module}&target=https://127.0.0.1:{web_port}/")
                assert served["probe_success"] == [f"probe_success {expected}"], module


# --- PgBouncer ----------------------------------------------------------------------------------
@pytest.fixture
def server_user_dir() -> Iterator[Path]:
    """A directory the PostgreSQL servers' user owns (pytest's tmp_path is root's only)."""
    directory = Path(tempfile.mkdtemp(prefix="chajipoa-pgbouncer-", dir="/tmp"))
    give_to_server_user(directory)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_debian_pgbouncer_exporter_dies_on_pgbouncer_1_18(server_user_dir, statements_server):
    """PgBouncer serves what PgBouncerClientsWaiting needs (SHOW POOLS' cl_waiting), but Debian 12's
    exporter 1.7 reads SHOW STATS' total_requests, gone since PgBouncer 1.8, and dies at start. When
    this test fails, Debian's exporter works: consider it again in place of PyPI's (roles/monitoring)."""
    if shutil.which("pgbouncer") is None:
        pytest.fail("pgbouncer not found: run lab/test-deps.sh as root", pytrace=False)
    directory = server_user_dir
    bouncer_port = free_port()
    (directory / "userlist.txt").write_text(f'"{MONITORING_USER}" "{MONITORING_PASSWORD}"\n')
    (directory / "pgbouncer.ini").write_text(
        f"[databases]\nchajipoa = host=127.0.0.1 port={statements_server.port} dbname=chajipoa\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {bouncer_port}\nunix_socket_dir =\n"
        f"auth_type = scram-sha-256\nauth_file = {directory}/userlist.txt\nstats_users = {MONITORING_USER}\n"
        f"logfile = {directory}/pgbouncer.log\n")
    for path in directory.iterdir():
        give_to_server_user(path)
    # PgBouncer refuses to run as root; the PostgreSQL servers' user will do.
    bouncer = subprocess.Popen(as_server_user(["pgbouncer", str(directory / "pgbouncer.ini")]),
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        conninfo = (f"host=127.0.0.1 port={bouncer_port} dbname=pgbouncer user={MONITORING_USER} "
                    f"password={MONITORING_PASSWORD}")
        deadline = time.monotonic() + 20
        while True:
            try:
                with psycopg.connect(conninfo, autocommit=True, prepare_threshold=None) as conn:
                    columns = [column.name for column in conn.execute("SHOW POOLS").description]
                    stats = [column.name for column in conn.execute("SHOW STATS").description]
                break
            except psycopg.OperationalError:
                if bouncer.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert "cl_waiting" in columns and "total_requests" not in stats
        result = subprocess.run(
            ["prometheus-pgbouncer-exporter", "--host", "127.0.0.1", "--port", str(free_port()), "--pgbouncer-host",
             "127.0.0.1", "--pgbouncer-port", str(bouncer_port), "--pgbouncer-user", MONITORING_USER],
            env={**os.environ, "PGPASSWORD": MONITORING_PASSWORD}, capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode != 0 and "KeyError: 'total_requests'" in result.stderr, result.stderr
    finally:
        # runuser waits for PgBouncer: the session started for both goes.
        os.killpg(bouncer.pid, signal.SIGKILL)
        bouncer.wait()
