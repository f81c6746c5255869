"""The backup role on a PostgreSQL primary that also runs Redis, with moto as S3 on loopback.

A seeded database is backed up by the timer's own unit, found locally and in S3 with the checksum
S3 itself checked, restored by the drill playbooks, and a failing run (S3 down) is shown to keep
every earlier backup and to report itself in the metrics. Tests depend on the backup the
`daily_backup` fixture takes; the failure test comes last because stopping moto loses its data.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
PROGRAM = "/usr/local/sbin/chajipoa-backup"
BACKUP_DIR = "/var/backups/chajipoa"
METRICS = "/var/lib/prometheus/node-exporter/chajipoa_backup.prom"
MOTO_PYTHON = "/opt/moto/bin/python"
REDIS_NAME = "redis-backup-db"
PREFIX = "development/backup-db/"
DAILY = "chajipoa-backup@daily.service"

pytestmark = pytest.mark.journal(DAILY, "moto.service", "redis-server.service")

# Every kind of object a dump can lose without pg_restore noticing: a serial, an FK, an index, a
# view, a trigger and its function, an extension's type, a name that needs quoting.
SEED = """
DROP SCHEMA IF EXISTS rental CASCADE;
DROP TABLE IF EXISTS public."Rental Notes";
CREATE EXTENSION IF NOT EXISTS citext;
CREATE SCHEMA rental;
CREATE TABLE rental.stations (id serial PRIMARY KEY, code citext NOT NULL UNIQUE, city text NOT NULL);
CREATE TABLE rental.rentals (
    id bigserial PRIMARY KEY,
    station_id integer NOT NULL REFERENCES rental.stations (id),
    started_at timestamptz NOT NULL,
    minutes integer NOT NULL CHECK (minutes >= 0),
    updated_at timestamptz
);
CREATE INDEX rentals_station_started_idx ON rental.rentals (station_id, started_at);
CREATE VIEW rental.busy_stations AS
    SELECT station_id, count(*) AS rentals FROM rental.rentals GROUP BY station_id;
CREATE FUNCTION rental.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
CREATE TRIGGER rentals_touch BEFORE INSERT OR UPDATE ON rental.rentals
    FOR EACH ROW EXECUTE FUNCTION rental.touch();
CREATE TABLE public."Rental Notes" ("Note Id" serial PRIMARY KEY, "Body" text NOT NULL);
INSERT INTO rental.stations (code, city)
    SELECT 'ST-' || g, (ARRAY['Dar es Salaam', 'Arusha', 'Lusaka'])[1 + g % 3] FROM generate_series(1, 250) g;
INSERT INTO rental.rentals (station_id, started_at, minutes)
    SELECT 1 + g % 250, now() - g * interval '1 minute', g % 180 FROM generate_series(1, 5000) g;
INSERT INTO public."Rental Notes" ("Body") SELECT 'note ' || g FROM generate_series(1, 1200) g;
"""
# Exact row counts of every table, in one statement.
COUNT_ALL = """
SELECT table_schema || '.' || table_name || '|'
       || (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', table_schema, table_name),
                                               false, true, '')))[1]::text
FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')
"""
SEEDED = {"rental.stations": 250, "rental.rentals": 5000, "public.Rental Notes": 1200}


def sh(host, command: str, user: str | None = None):
    return host.run(f"runuser -u {user} -- {command}" if user else command)


def psql(host, sql: str, database: str = "chajipoa"):
    return sh(host, f"psql -X -At -v ON_ERROR_STOP=1 -d {database} -c {shlex.quote(sql)}", user="postgres")


def program(host, *args: str):
    return sh(host, shlex.join([PROGRAM, *args]), user="postgres")


def newest(host, key: str) -> dict:
    listing = program(host, "list")
    assert listing.rc == 0, listing.stderr
    return json.loads(listing.stdout)[key][0]


def manifest_of(host, backup: dict) -> dict:
    return json.loads(host.file(backup["manifest"]).content_string)


def metrics(host) -> dict[tuple[str, frozenset], float]:
    """The textfile's samples by (metric, labels)."""
    samples = {}
    for line in host.file(METRICS).content_string.splitlines():
        match = re.fullmatch(r"(\w+)\{(.*)\} (\S+)", line)
        if match:
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2)))
            samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def sample(samples: dict, metric: str, kind: str, database: str, **extra: str) -> float:
    return samples[(metric, frozenset({("kind", kind), ("database", database), *extra.items()}))]


def s3(host, script: str, *args: str):
    """A boto3 script against moto, with the moto venv's boto3 (recent enough for ChecksumMode)."""
    prelude = (
        "import boto3, json, sys\n"
        "client = boto3.client('s3', endpoint_url='http://127.0.0.1:5000', region_name='af-south-1',"
        " aws_access_key_id='verifier', aws_secret_access_key='verifier')\n"
    )
    return host.run(shlex.join([MOTO_PYTHON, "-c", prelude + script, *args]))


def s3_objects(host, bucket: str) -> dict[str, dict]:
    """Every object of the bucket with what head_object says about it."""
    result = s3(host, """
heads = {}
for page in client.get_paginator('list_objects_v2').paginate(Bucket=sys.argv[1]):
    for item in page.get('Contents', []):
        head = client.head_object(Bucket=sys.argv[1], Key=item['Key'], ChecksumMode='ENABLED')
        heads[item['Key']] = {k: head.get(k) for k in ('ChecksumSHA256', 'ServerSideEncryption', 'StorageClass',
                                                       'ContentLength', 'Metadata')}
print(json.dumps(heads))
""", bucket)
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)


def create_bucket(host, bucket: str):
    return s3(host, "client.create_bucket(Bucket=sys.argv[1], CreateBucketConfiguration={'LocationConstraint': 'af-south-1'})",
              bucket)


def playbook(name: str, *extra: str) -> subprocess.CompletedProcess:
    """A playbook of the project run from the controller against this scenario's inventory."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(PROJECT / "collections"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_INJECT_FACT_VARS="false")
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", INVENTORY, f"playbooks/{name}", *extra],
        cwd=PROJECT, capture_output=True, text=True, check=False, env=env,
    )


def task_results(run: subprocess.CompletedProcess, task: str) -> list[dict]:
    """Each host's result of the named task in the json callback's output."""
    report = json.loads(run.stdout)
    return [result for play in report["plays"] for entry in play["tasks"] if entry["task"]["name"] == task
            for result in entry["hosts"].values()]


def journal(host, unit: str) -> str:
    return host.run(f"journalctl -u {unit} -n 30 --no-pager -o cat").stdout


def failure(run: subprocess.CompletedProcess) -> str:
    return run.stdout[-4000:] + run.stderr[-2000:]


@pytest.fixture(scope="module")
def db(lab_host):
    return lab_host("backup-db")


@pytest.fixture(scope="module")
def variables(db):
    return db.ansible.get_variables()


@pytest.fixture(scope="module")
def seeded(db, variables):
    result = psql(db, SEED)
    assert result.rc == 0, result.stderr
    # A key the RDB snapshot must carry.
    auth = f"REDISCLI_AUTH={shlex.quote(variables['redis_app_password'])}"
    assert db.run(f"{auth} redis-cli --no-auth-warning --user app SET backup:probe karibu").stdout.strip() == "OK"
    return SEEDED


@pytest.fixture(scope="module")
def daily_backup(db, seeded):
    """The run the timer would start, started the way the timer does; the newest backups it left."""
    run = db.run(f"systemctl start {DAILY}")
    # A fixture's failure is reported without the journal sections of molecule/conftest.py.
    assert run.rc == 0, journal(db, DAILY)
    return {"postgresql": newest(db, "postgresql/chajipoa"), "redis": newest(db, f"redis/{REDIS_NAME}")}


def test_timer_fires_daily_at_two_utc(db):
    timer = db.service("chajipoa-backup.timer")
    assert timer.is_enabled and timer.is_running
    assert db.check_output("systemctl show chajipoa-backup.timer -p Unit --value") == DAILY
    # TZ=UTC: systemctl prints the time in the caller's zone.
    elapse = db.check_output("TZ=UTC systemctl show chajipoa-backup.timer -p NextElapseUSecRealtime --value")
    when = dt.datetime.strptime(elapse, "%a %Y-%m-%d %H:%M:%S UTC").replace(tzinfo=dt.timezone.utc)
    assert (when.hour, when.minute, when.second) == (2, 0, 0)
    assert dt.timedelta(0) < when - dt.datetime.now(dt.timezone.utc) <= dt.timedelta(days=1)


def test_verification_timers(db):
    for timer, unit in (("chajipoa-backup-verify-weekly.timer", "chajipoa-backup-verify@7.service"),
                        ("chajipoa-backup-verify-daily.timer", "chajipoa-backup-verify@1.service")):
        assert db.service(timer).is_enabled and db.service(timer).is_running
        assert db.check_output(f"systemctl show {timer} -p Unit --value") == unit


def test_daily_run_leaves_dump_manifest_and_verification(db, daily_backup):
    backup = daily_backup["postgresql"]
    directory = f"{BACKUP_DIR}/postgresql/chajipoa/"
    assert backup["name"].startswith("chajipoa-") and backup["name"].endswith("-daily")
    for suffix in (".dump", ".manifest.json", ".verify.json"):
        assert db.file(directory + backup["name"] + suffix).is_file, suffix
    dump = db.file(directory + backup["name"] + ".dump")
    # UMask=0077 in the unit: the rows of the platform are readable by the backup user only.
    assert dump.user == "postgres" and dump.mode == 0o600 and dump.size > 0
    assert backup["verification"]["passed"] is True and backup["verification"]["mode"] == "quick"
    assert db.check_output(f"sha256sum {dump.path}").split()[0] == manifest_of(db, backup)["sha256"]


def test_manifest_counts_rows_and_catalogues_the_schema(db, daily_backup, seeded):
    manifest = manifest_of(db, daily_backup["postgresql"])
    counted = {f"{t['schema']}.{t['name']}": t["rows"] for t in manifest["tables"]}
    assert {name: counted.get(name) for name in seeded} == seeded
    # Every other table of the database is listed with its exact count too.
    live = psql(db, COUNT_ALL)
    assert live.rc == 0, live.stderr
    assert counted == {name: int(rows) for name, rows in (line.rsplit("|", 1) for line in live.stdout.splitlines())}
    objects = {(o["kind"], o["name"]) for o in manifest["catalogue"]["objects"]}
    assert {
        ("extension", "citext"),
        ("schema", "rental"),
        ("table", "rental.rentals"),
        ("table", 'public."Rental Notes"'),
        ("column", 'public."Rental Notes"."Note Id"'),
        ("column", "rental.stations.code"),
        ("constraint", "rental.rentals.rentals_station_id_fkey"),
        ("index", "rental.rentals_station_started_idx"),
        ("sequence", "rental.rentals_id_seq"),
        ("view", "rental.busy_stations"),
        ("function", "rental.touch()"),
        ("trigger", "rental.rentals.rentals_touch"),
    } <= objects
    assert manifest["server_version"].startswith("15.")
    assert manifest["reason"] == "daily" and manifest["format_version"] == 3


def test_redis_snapshot_taken(db, daily_backup):
    backup = daily_backup["redis"]
    assert backup["name"].startswith(f"{REDIS_NAME}-") and backup["name"].endswith("-daily")
    assert backup["file"] == f"{BACKUP_DIR}/redis/{REDIS_NAME}/{backup['name']}.rdb"
    rdb = db.file(backup["file"])
    assert rdb.is_file and rdb.size > 0
    assert backup["verification"]["passed"] is True
    assert db.run(f"redis-check-rdb {rdb.path}").stdout.count("RDB looks OK") == 1
    assert db.run(f"grep -c backup:probe {rdb.path}").stdout.strip() == "1"


def test_both_reached_s3_with_checksum_encryption_and_storage_class(db, daily_backup, variables):
    objects = s3_objects(db, variables["backup_s3_bucket"])
    for kind, folder in (("postgresql", "postgresql/chajipoa"), ("redis", f"redis/{REDIS_NAME}")):
        backup = daily_backup[kind]
        manifest = manifest_of(db, backup)
        key = f"{PREFIX}{folder}/{manifest['file']}"
        assert key in objects and f"{PREFIX}{folder}/{backup['name']}.manifest.json" in objects
        head = objects[key]
        assert head["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(manifest["sha256"])).decode()
        assert head["ServerSideEncryption"] == "AES256"
        assert head["StorageClass"] == "STANDARD_IA"
        assert head["ContentLength"] == manifest["bytes"]


def test_metrics_report_the_success(db, daily_backup):
    samples = metrics(db)
    for kind, database in (("postgresql", "chajipoa"), ("redis", REDIS_NAME)):
        assert sample(samples, "chajipoa_backup_last_run_success", kind, database) == 1
        last_success = sample(samples, "chajipoa_backup_last_success_timestamp_seconds", kind, database)
        assert abs(last_success - dt.datetime.now(dt.timezone.utc).timestamp()) < 600
        assert sample(samples, "chajipoa_backup_last_size_bytes", kind, database) == manifest_of(db, daily_backup[kind])["bytes"]
        assert sample(samples, "chajipoa_backup_verify_last_success", kind, database, mode="quick") == 1
    assert db.file(METRICS).mode == 0o644


@pytest.mark.journal("chajipoa-backup-verify@1.service")
def test_thorough_verification_passes(db, daily_backup):
    run = program(db, "verify", "--mode", "thorough", "--json")
    assert run.rc == 0, run.stderr
    reports = {r["kind"]: r for r in json.loads(run.stdout)}
    checks = {c["name"]: c["status"] for c in reports["postgresql"]["checks"]}
    assert {name: checks.get(name) for name in ("restore", "row counts", "schema", "sequences")} == dict.fromkeys(
        ("restore", "row counts", "schema", "sequences"), "passed")
    unit = db.run("systemctl start chajipoa-backup-verify@1.service")
    assert unit.rc == 0, journal(db, "chajipoa-backup-verify@1.service")
    assert sample(metrics(db), "chajipoa_backup_verify_last_success", "postgresql", "chajipoa", mode="thorough") == 1
    # Every throwaway database was dropped again.
    assert psql(db, "SELECT count(*) FROM pg_database WHERE datname LIKE 'chajipoa\\_verify%'", "postgres").stdout.strip() == "0"


@pytest.mark.parametrize("source", ["local", "s3"])
def test_restore_drill_within_rto(db, daily_backup, source):
    run = playbook("restore-drill.yml", "-e", f"restore_drill_source={source}")
    assert run.returncode == 0, failure(run)
    (report,) = task_results(run, "Print the measured time against the RTO")
    message = report["msg"]
    total = sum(t["rows"] for t in manifest_of(db, daily_backup["postgresql"])["tables"])
    assert f"{total} rows equal to the manifest" in message
    assert "within the objective" in message
    assert psql(db, "SELECT count(*) FROM pg_database WHERE datname LIKE 'drill\\_%'", "postgres").stdout.strip() == "0"


def test_pre_deploy_backup_and_verification_from_s3(db, daily_backup, variables):
    run = playbook("backup.yml", "-e", "backup_reason=pre-deploy")
    assert run.returncode == 0, failure(run)
    for key in ("postgresql/chajipoa", f"redis/{REDIS_NAME}"):
        assert newest(db, key)["name"].endswith("-pre-deploy"), key
    pre_deploy = newest(db, "postgresql/chajipoa")
    assert f"{PREFIX}postgresql/chajipoa/{pre_deploy['name']}.dump" in s3_objects(db, variables["backup_s3_bucket"])
    verify = playbook("verify-backups.yml", "-e", "verify_source=s3", "-e", "verify_mode=thorough")
    assert verify.returncode == 0, failure(verify)
    verified = task_results(verify, "Verify each backup (thorough)")[0]["results"]
    assert {Path(r["item"]).name for r in verified} >= {pre_deploy["name"] + ".dump"}
    assert all(r["report"]["passed"] for r in verified)
    # The copies fetched from S3 are gone again.
    assert db.run("ls -d /tmp/chajipoa-verify-* 2>/dev/null").stdout == ""


@pytest.mark.journal("moto.service")
def test_failed_run_keeps_earlier_backups_and_reports_failure(db, daily_backup, variables):
    listing = "find /var/backups/chajipoa -mindepth 1 -printf '%P\\n'"
    files_before = set(db.check_output(listing).split("\n"))
    success_before = metrics(db)
    db.check_output("systemctl stop moto.service")
    try:
        run = db.run(f"systemctl start {DAILY}")
        assert run.rc != 0
        assert db.check_output(f"systemctl show {DAILY} -p Result --value") == "exit-code"
        files_after = set(db.check_output(listing).split("\n"))
        samples = metrics(db)
    finally:
        db.check_output("systemctl start moto.service")
        db.check_output("timeout 60 sh -c 'until nc -z 127.0.0.1 5000; do sleep 0.2; done'")
        # moto keeps everything in memory: the bucket comes back empty, for whatever runs next.
        assert create_bucket(db, variables["backup_s3_bucket"]).rc == 0
    assert files_before <= files_after
    assert not [name for name in files_after if ".partial" in name]
    # What the failed run did leave is whole: each new file belongs to a backup with its manifest.
    new = files_after - files_before
    for name in new:
        stem = re.sub(r"\.(dump|rdb|manifest\.json|verify\.json)$", "", name)
        assert stem + ".manifest.json" in files_after, name
    assert "FAILED: Could not connect to the endpoint URL" in journal(db, DAILY)
    for kind, database in (("postgresql", "chajipoa"), ("redis", REDIS_NAME)):
        assert sample(samples, "chajipoa_backup_last_run_success", kind, database) == 0
        assert sample(samples, "chajipoa_backup_last_success_timestamp_seconds", kind, database) == sample(
            success_before, "chajipoa_backup_last_success_timestamp_seconds", kind, database)
