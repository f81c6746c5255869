"""The postgres role on a primary and its hot standby; the standby is also the network client.

Every check goes through a real server: logins over TCP with TLS from the other host, rows
replicated, a second converge that changes one setting.
"""
from __future__ import annotations

import uuid

import pytest
from pglab import CA, UNIT, app_conninfo, converge, psql

pytestmark = pytest.mark.journal(UNIT)


def test_app_login_over_tls_creates_a_table(replica, primary_address, secrets):
    sql = (
        "CREATE TABLE IF NOT EXISTS molecule_probe (id text PRIMARY KEY);"
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid();"
    )
    result = psql(replica, sql, app_conninfo(primary_address), secrets["app"])
    assert result.rc == 0, result.stderr
    assert result.stdout.split() == ["CREATE", "TABLE", "t"]


@pytest.mark.parametrize(
    ("password", "sslmode", "refusal"),
    [
        (None, "verify-full", "no password supplied"),
        ("wrong-password", "verify-full", 'password authentication failed for user "chajipoa"'),
        ("app", "disable", "no encryption"),
    ],
    ids=["no-password", "wrong-password", "no-tls"],
)
def test_app_login_refused(replica, primary_address, secrets, password, sslmode, refusal):
    if password == "app":
        password = secrets["app"]
    result = psql(replica, "SELECT 1", app_conninfo(primary_address, sslmode), password)
    assert result.rc != 0
    assert refusal in result.stderr


def test_row_written_on_primary_is_read_on_replica(primary, replica):
    marker = uuid.uuid4().hex
    # The table (test_app_login_over_tls_creates_a_table) lives in the application's database.
    write = primary.run(
        f"sudo -u postgres psql -X -At -v ON_ERROR_STOP=1 -d chajipoa -c \"INSERT INTO molecule_probe VALUES ('{marker}')\""
    )
    assert write.rc == 0, write.stderr
    # Poll on the replica (every 0.1 s, at most 10 s): replication's own speed decides.
    poll = replica.run(
        "for i in $(seq 100); do "
        f"[ \"$(sudo -u postgres psql -X -At -d chajipoa -c \"SELECT count(*) FROM molecule_probe WHERE id = '{marker}'\")\" = 1 ] && exit 0; "
        "sleep 0.1; done; exit 1"
    )
    assert poll.rc == 0, "row not replicated within 10 s"


def test_replica_refuses_writes(replica):
    result = replica.run(
        "sudo -u postgres psql -X -At -v ON_ERROR_STOP=1 -d chajipoa -c \"INSERT INTO molecule_probe VALUES ('x')\""
    )
    assert result.rc != 0
    assert "cannot execute INSERT in a read-only transaction" in result.stderr
    assert psql(replica, "SELECT pg_is_in_recovery()").stdout.strip() == "t"


def test_replication_lag_readable_by_the_monitoring_login(primary, replica, primary_address, secrets):
    monitoring = f"host={{}} port=5432 dbname=postgres user=monitoring sslmode=verify-full sslrootcert={CA} connect_timeout=5"
    sql = "SELECT role, coalesce(standby, ''), state, lag_seconds >= 0, lag_bytes >= 0 FROM replication_lag"
    on_primary = psql(replica, sql, monitoring.format(primary_address), secrets["monitoring"])
    assert on_primary.rc == 0, on_primary.stderr
    assert on_primary.stdout.strip() == "primary|pg_replica|streaming|t|t"
    on_replica = psql(replica, sql, monitoring.format("localhost"), secrets["monitoring"])
    assert on_replica.rc == 0, on_replica.stderr
    assert on_replica.stdout.strip() == "standby||streaming|t|t"


def test_slot_per_standby(primary):
    assert psql(primary, "SELECT slot_name, slot_type, active FROM pg_replication_slots").stdout.strip() == "pg_replica|physical|t"


@pytest.mark.parametrize("name", ["pg-primary", "pg-replica"])
def test_settings_applied(lab_host, name):
    host = lab_host(name)
    memtotal_mb = int(host.file("/proc/meminfo").content_string.split()[1]) // 1024
    show = {
        setting: psql(host, f"SHOW {setting}").stdout.strip()
        for setting in (
            "shared_buffers", "maintenance_work_mem", "max_connections", "password_encryption", "ssl",
            "shared_preload_libraries", "log_min_duration_statement", "wal_level", "listen_addresses",
        )
    }
    assert show["shared_buffers"] == "256MB"  # the converge's override
    expected = min(memtotal_mb // 16, 2048)  # derived from the host's memory
    assert show["maintenance_work_mem"] in (f"{expected}MB", f"{expected // 1024}GB")
    assert show["max_connections"] == "100"
    assert show["password_encryption"] == "scram-sha-256"
    assert show["ssl"] == "on"
    assert show["shared_preload_libraries"] == "pg_stat_statements"
    assert show["log_min_duration_statement"] == "250ms"
    assert show["wal_level"] == "replica"
    assert show["listen_addresses"].startswith("localhost,")
    # Nothing waits for a restart: the restart-only settings were applied by one.
    assert psql(host, "SELECT count(*) FROM pg_settings WHERE pending_restart").stdout.strip() == "0"
    assert not host.file("/etc/postgresql/15/main/pg_hba.conf").contains(r"\btrust\b")


def test_pg_stat_statements_collects(primary):
    result = primary.run("sudo -u postgres psql -X -At -d chajipoa -c 'SELECT count(*) > 0 FROM pg_stat_statements'")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "t"


@pytest.mark.journal("postgresql-maintenance.service")
def test_weekly_optimisation_timer_and_service(primary):
    assert primary.service("postgresql-maintenance.timer").is_enabled
    assert primary.service("postgresql-maintenance.timer").is_running
    run = primary.run("systemctl start postgresql-maintenance.service")
    assert run.rc == 0, run.stderr
    assert primary.check_output("systemctl show postgresql-maintenance.service -p Result --value") == "success"


TAGS = ("--tags", "postgres_configure,postgres_service")


def test_reload_only_change_does_not_restart(primary, replica):
    started = {h: psql(h, "SELECT pg_postmaster_start_time()").stdout.strip() for h in (primary, replica)}
    changed = converge(*TAGS, "-e", "postgres_log_min_duration_statement=1234")
    try:
        assert changed.returncode == 0, changed.stdout[-3000:] + changed.stderr[-2000:]
        assert "RUNNING HANDLER [chajipoa.platform.postgres : Reload PostgreSQL]" in changed.stdout
        for h in (primary, replica):
            assert psql(h, "SHOW log_min_duration_statement").stdout.strip() == "1234ms"
            assert psql(h, "SELECT pg_postmaster_start_time()").stdout.strip() == started[h]
    finally:
        restored = converge(*TAGS)
    assert restored.returncode == 0, restored.stdout[-3000:] + restored.stderr[-2000:]
    for h in (primary, replica):
        assert psql(h, "SHOW log_min_duration_statement").stdout.strip() == "250ms"
        assert psql(h, "SELECT pg_postmaster_start_time()").stdout.strip() == started[h]
