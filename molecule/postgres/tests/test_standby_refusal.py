"""A standby's data directory is replaced by a copy of the primary only when it holds nothing but
the package's fresh cluster, decided from the directory itself while its server is down: a
cluster of its own with a database, and a promoted ex-standby with a database written while
promoted, are both refused and kept. Moving the data away, as the message says, lets the next
converge make the standby anew.

These tests break the standby on purpose and leave it streaming again; they run last.
"""
from __future__ import annotations

import pytest
from pglab import DATA_DIR, UNIT, changed, converge, output, psql, wait_for

pytestmark = pytest.mark.journal(UNIT)

BIN = "/usr/lib/postgresql/15/bin"
REFUSAL = f"Cannot make pg-replica a standby of pg-primary: its data directory {DATA_DIR} does not hold the fresh, empty cluster"


def as_postgres(host, command: str):
    return host.run(f"sudo -u postgres {command}")


def streaming(host) -> bool:
    return wait_for(host, "sudo -u postgres psql -X -At -c 'SELECT status FROM pg_stat_wal_receiver' | grep -q streaming")


def test_other_cluster_with_a_database_is_kept(replica):
    assert replica.run(f"systemctl stop {UNIT} && mv {DATA_DIR} {DATA_DIR}.standby").rc == 0
    try:
        # A cluster of its own, run by hand with its own postgresql.conf, and stopped.
        for step in (f"{BIN}/initdb -D {DATA_DIR}", f"{BIN}/pg_ctl -D {DATA_DIR} -l /tmp/other.log -w start",
                     "psql -X -v ON_ERROR_STOP=1 -c 'CREATE DATABASE ledger'",
                     "psql -X -v ON_ERROR_STOP=1 -d ledger -c \"CREATE TABLE entry (v text); INSERT INTO entry VALUES ('kept')\"",
                     f"{BIN}/pg_ctl -D {DATA_DIR} -m fast -w stop"):
            result = as_postgres(replica, step)
            assert result.rc == 0, f"{step}: {result.stderr}"

        run = converge()
        assert run.returncode != 0
        assert REFUSAL in output(run), run.stdout[-4000:]
        assert "databases not made by initdb: base/" in output(run)

        assert as_postgres(replica, f"{BIN}/pg_ctl -D {DATA_DIR} -l /tmp/other.log -w start").rc == 0
        assert psql(replica, "SELECT v FROM entry", database="ledger").stdout.strip() == "kept"
        assert as_postgres(replica, f"{BIN}/pg_ctl -D {DATA_DIR} -m fast -w stop").rc == 0
    finally:
        replica.run(f"sudo -u postgres {BIN}/pg_ctl -D {DATA_DIR} -m immediate -w stop; "
                    f"rm -rf {DATA_DIR} && mv {DATA_DIR}.standby {DATA_DIR} && systemctl start {UNIT}")
    assert streaming(replica)


def test_promoted_standby_with_data_is_kept(replica):
    assert psql(replica, "SELECT pg_promote()").stdout.strip() == "t"
    assert wait_for(replica, "sudo -u postgres psql -X -At -c 'SELECT pg_is_in_recovery()' | grep -q f")
    assert psql(replica, "CREATE DATABASE written_while_promoted").rc == 0
    assert psql(replica, "CREATE TABLE payment (v text); INSERT INTO payment VALUES ('kept')",
                database="written_while_promoted").rc == 0
    assert replica.run(f"systemctl stop {UNIT}").rc == 0

    run = converge()
    assert run.returncode != 0
    assert REFUSAL in output(run), run.stdout[-4000:]
    assert "it was promoted (timeline 2)" in output(run)
    assert "databases not made by initdb: base/" in output(run)

    assert replica.run(f"systemctl start {UNIT}").rc == 0
    assert psql(replica, "SELECT v FROM payment", database="written_while_promoted").stdout.strip() == "kept"


def test_standby_made_anew_once_the_data_is_moved_away(primary, replica):
    # What the refusal tells the operator to do when nothing in the cluster is needed.
    assert replica.run(f"systemctl stop {UNIT} && mv {DATA_DIR} {DATA_DIR}.promoted").rc == 0
    try:
        run = converge()
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        assert psql(replica, "SELECT pg_is_in_recovery()").stdout.strip() == "t"
        assert streaming(replica)
        assert psql(replica, "SELECT count(*) FROM pg_database WHERE datname = 'written_while_promoted'").stdout.strip() == "0"
        assert replica.file(f"{DATA_DIR}.copy").exists is False
    finally:
        replica.run(f"rm -rf {DATA_DIR}.promoted")
    rerun = converge()
    assert rerun.returncode == 0
    assert changed(rerun) == {"pg-primary": 0, "pg-replica": 0}, rerun.stdout[-4000:]
