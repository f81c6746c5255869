"""Production's backup host (group backup) against a managed PostgreSQL server.

backup-db's PostgreSQL stands in for RDS: backup-rds has no server of its own and dumps it over the
network as a login that is only a member of pg_read_all_data (what an RDS master user can grant),
with TLS and the server's certificate checked against a CA of its own. The run is the timer's own
unit; the copy reaches moto's S3 under the host's prefix, is verified by a restore into a
throwaway cluster on backup-rds and drilled there against the RTO. A CA that did not sign the
server's certificate makes the dump fail rather than send the password.
"""
from __future__ import annotations

import json
import shlex

import pytest

# The helpers and fixtures of the primary's suite: the same seeded database, program and playbooks.
from test_backup import (  # noqa: F401 - db, variables and seeded are fixtures used by name
    DAILY, PROGRAM, SEEDED, VERIFY, db, failure, journal, manifest_of, newest, playbook, psql, s3_objects, seeded,
    task_results, variables,
)

HOST = "backup-rds"
PREFIX = f"development/{HOST}/"
CONFIG = "/etc/chajipoa/backup.json"

pytestmark = pytest.mark.journal(DAILY)


@pytest.fixture(scope="module")
def rds_host(lab_host):
    return lab_host(HOST)


@pytest.fixture(scope="module")
def managed_backup(rds_host, seeded):
    """The run the timer would start on the backup host; the newest PostgreSQL backup it left."""
    run = rds_host.run(f"systemctl start {DAILY}")
    assert run.rc == 0, journal(rds_host, DAILY)
    return newest(rds_host, "postgresql/chajipoa")


def test_the_host_has_binaries_but_no_server_and_dumps_as_a_login_that_is_not_a_superuser(rds_host, db):
    settings = json.loads(rds_host.file(CONFIG).content_string)["postgresql"]
    assert settings["host"] == "backup-db" and settings["user"] == "chajipoa_backup"
    assert settings["sslmode"] == "verify-full" and rds_host.file(settings["sslrootcert"]).exists
    assert rds_host.file("/usr/lib/postgresql/15/bin/pg_dump").exists
    assert rds_host.check_output("pg_lsclusters --no-header") == ""
    assert psql(db, "SELECT rolsuper FROM pg_roles WHERE rolname = 'chajipoa_backup'", "postgres").stdout.strip() == "f"


def test_the_dump_holds_every_row_and_was_taken_on_the_backup_host(rds_host, managed_backup):
    manifest = manifest_of(rds_host, managed_backup)
    assert manifest["host"] == HOST
    assert {f"{t['schema']}.{t['name']}": t["rows"] for t in manifest["tables"]} == SEEDED
    assert managed_backup["verification"]["passed"]


def test_the_copy_reached_s3_under_the_hosts_prefix(db, managed_backup, variables):
    keys = s3_objects(db, variables["backup_s3_bucket"])
    name = managed_backup["name"]
    assert [key for key in keys if key.startswith(PREFIX) and name in key and key.endswith(".dump")], sorted(keys)


@pytest.mark.journal(VERIFY)
def test_thorough_verification_restores_on_the_backup_host(rds_host, managed_backup):
    run = rds_host.run(f"systemctl start {VERIFY}")
    assert run.rc == 0, journal(rds_host, VERIFY)
    verification = newest(rds_host, "postgresql/chajipoa")["verification"]
    assert verification["mode"] == "thorough" and verification["passed"], verification
    assert rds_host.run("find /var/lib/chajipoa-backup/scratch -mindepth 1 -maxdepth 1").stdout == ""


def test_restore_drill_on_the_backup_host_within_rto(rds_host, managed_backup):
    run = playbook("restore-drill.yml", "-e", f"backup_drill_host={HOST}")
    assert run.returncode == 0, failure(run)
    (report,) = task_results(run, "Print the measured time against the RTO")
    total = sum(t["rows"] for t in manifest_of(rds_host, managed_backup)["tables"])
    assert report["msg"].startswith(f"Restore drill on {HOST}:")
    assert f"{total} rows equal to the manifest" in report["msg"] and "within the objective" in report["msg"]


def test_a_server_certificate_the_ca_did_not_sign_is_refused(rds_host, managed_backup):
    """The same run with the system's public CAs in place of the one that signed the server's
    certificate, in directories of its own so that the host's state and metrics stay as they are."""
    config = json.loads(rds_host.file(CONFIG).content_string)
    config["postgresql"]["sslrootcert"] = "/etc/ssl/certs/ca-certificates.crt"
    scratch = "/var/tmp/chajipoa-wrong-ca"
    config.update(backup_dir=f"{scratch}/backups", state_dir=f"{scratch}/state", scratch_dir=f"{scratch}/scratch",
                  metrics_file=f"{scratch}/metrics.prom")
    config["s3"]["bucket"] = ""
    rds_host.check_output(f"install -d -o postgres -g postgres -m 0700 {scratch}")
    rds_host.check_output(f"printf %s {shlex.quote(json.dumps(config))} > {scratch}/backup.json && chown postgres {scratch}/backup.json")
    try:
        run = rds_host.run(f"runuser -u postgres -- {PROGRAM} --config {scratch}/backup.json --only postgresql run --reason manual")
        assert run.rc != 0
        assert "certificate verify failed" in run.stdout + run.stderr
        assert rds_host.run(f"find {scratch}/backups -name '*.dump'").stdout == ""
    finally:
        rds_host.run(f"rm -rf {scratch}")
