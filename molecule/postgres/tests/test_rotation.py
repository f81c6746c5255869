"""Passwords converge from the server's own state: the application's and the replication login's
passwords are rotated in the inventory and one converge applies them everywhere, the running
standby included; a rerun changes nothing. Neither the passwords nor their verifiers are left in
the server's statistics or log.

The module fixture rotates, checks and converges back to the inventory's passwords afterwards.
"""
from __future__ import annotations

import base64
import json
import uuid

import pytest
from pglab import UNIT, app_conninfo, changed, converge, psql, replication_conninfo, wait_for

pytestmark = pytest.mark.journal(UNIT)

# A colon and a backslash: .pgpass needs both escaped.
ROTATED = {"app": "app-Rotated-4", "replication": "repl:Rotated\\5"}
RECEIVER = "SELECT pid || ' ' || status FROM pg_stat_wal_receiver"
# Debian's clusters log here, not to the journal.
LOG = "/var/log/postgresql/postgresql-15-main.log"


@pytest.fixture(scope="module")
def rotation(tmp_path_factory, replica):
    receiver_before = psql(replica, RECEIVER).stdout.split()
    extra = tmp_path_factory.mktemp("rotation") / "rotated.json"
    extra.write_text(json.dumps({f"postgres_{name}_password": value for name, value in ROTATED.items()}))
    first = converge("-e", f"@{extra}")
    second = converge("-e", f"@{extra}")
    yield {"first": first, "second": second, "receiver_before": receiver_before}
    back = converge()
    assert back.returncode == 0, back.stdout[-3000:] + back.stderr[-2000:]


def test_rotation_converges(rotation):
    run = rotation["first"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert changed(run)["pg-primary"] > 0 and changed(run)["pg-replica"] > 0


def test_rerun_after_rotation_changes_nothing(rotation):
    run = rotation["second"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert changed(run) == {"pg-primary": 0, "pg-replica": 0}, run.stdout[-4000:]


def test_app_login_old_password_refused_new_accepted(rotation, replica, primary_address, secrets):
    old = psql(replica, "SELECT 1", app_conninfo(primary_address), secrets["app"])
    assert old.rc != 0 and 'password authentication failed for user "chajipoa"' in old.stderr
    new = psql(replica, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", app_conninfo(primary_address),
               ROTATED["app"])
    assert new.rc == 0, new.stderr
    assert new.stdout.strip() == "t"


def test_replication_login_old_password_refused_new_accepted(rotation, replica, primary_address, secrets):
    old = psql(replica, "IDENTIFY_SYSTEM", replication_conninfo(primary_address), secrets["replication"])
    assert old.rc != 0 and 'password authentication failed for user "replicator"' in old.stderr
    new = psql(replica, "IDENTIFY_SYSTEM", replication_conninfo(primary_address), ROTATED["replication"])
    assert new.rc == 0, new.stderr


def test_running_standby_reconnected_with_the_new_password(rotation, primary, replica):
    # A new walreceiver, streaming: the standby logged in again, with the new .pgpass, and did not
    # keep the session it had opened with the old password.
    before = rotation["receiver_before"]
    assert before[1] == "streaming"
    assert wait_for(replica, f"sudo -u postgres psql -X -At -c \"{RECEIVER}\" | grep -v '^{before[0]} ' | grep -q ' streaming$'"), \
        psql(replica, RECEIVER).stdout
    marker = uuid.uuid4().hex
    write = psql(primary, f"CREATE TABLE IF NOT EXISTS rotation_probe (id text); INSERT INTO rotation_probe VALUES ('{marker}')")
    assert write.rc == 0, write.stderr
    assert wait_for(replica, f"sudo -u postgres psql -X -At -c \"SELECT 1 FROM rotation_probe WHERE id = '{marker}'\" | grep -q 1")


def test_no_password_or_verifier_in_statistics_or_log(rotation, primary, secrets):
    # pg_stat_statements is readable by pg_monitor (the monitoring login); the log by operators.
    # pg_stat_statements keeps these probes' own texts with the constants replaced by $1.
    log = primary.run(f"journalctl -u {UNIT} --no-pager -o cat; cat {LOG}").stdout
    for secret in [*secrets.values(), *ROTATED.values(), "SCRAM-SHA-256$"]:
        # Spelt in base64, so a probe the server happens to log cannot leave the secret there.
        encoded = base64.b64encode(secret.encode()).decode()
        found = psql(primary, "SELECT count(*) FROM pg_stat_statements WHERE "
                              f"strpos(query, convert_from(decode('{encoded}', 'base64'), 'UTF8')) > 0",
                     database="chajipoa")
        assert found.rc == 0, found.stderr
        assert found.stdout.strip() == "0", f"{secret[:4]}... in pg_stat_statements"
        assert secret not in log, f"{secret[:4]}... in the server's log"
