"""The backup role on a PostgreSQL primary that also runs Redis, with moto as S3 on loopback.

A seeded database is backed up by the timer's own unit, found locally and in S3 with the checksum
S3 itself checked and under Object Lock, restored by the drill playbooks and, as the application's
login, by the restore runbook; every operational playbook runs under --check without changing
anything; and a failing run (S3 down) is shown to keep every earlier backup and to report itself in
the metrics. Tests depend on the backup the `daily_backup` fixture takes; the failure test comes
last because stopping moto loses its data.
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
import tempfile
import time
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
VERIFY = "chajipoa-backup-verify@1.service"
BUCKET_SETTINGS = "/etc/chajipoa/backup-s3-bucket.json"
IAM_POLICY = "/etc/chajipoa/backup-s3-iam-policy.json"
APP_USER = "chajipoa"

# The collection's own manifest code signs test copies the way the program does.
sys.path.insert(0, str(PROJECT / "collections"))
from ansible_collections.chajipoa.platform.plugins.module_utils import backup_manifest  # noqa: E402

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


def running_attempts(samples: dict) -> list[tuple[str, frozenset]]:
    """The backups and verifications the metrics say are under way."""
    return [key for key in samples if key[0].endswith("_running_since_timestamp_seconds")]


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
    """The bucket as the role's rendered settings describe it (versioning, Object Lock, lifecycle)."""
    return host.run(shlex.join([MOTO_PYTHON, "/opt/moto/create-bucket.py", bucket, "af-south-1", BUCKET_SETTINGS]))


def playbook(name: str | Path, *extra: str) -> subprocess.CompletedProcess:
    """A playbook of the project (or a path) run from the controller against this scenario's inventory."""
    # No other callback prints beside the JSON report (the scenarios' ansible.cfg enables profile_tasks):
    # the enabled list names the stdout callback alone, which Ansible loads once (an empty list is an error).
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(PROJECT / "collections"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_CALLBACKS_ENABLED="ansible.posix.json", ANSIBLE_INJECT_FACT_VARS="false")
    path = name if isinstance(name, Path) else f"playbooks/{name}"
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", INVENTORY, str(path), *extra],
        cwd=PROJECT, capture_output=True, text=True, check=False, env=env,
    )


def changed(run: subprocess.CompletedProcess) -> int:
    return sum(stats["changed"] for stats in json.loads(run.stdout)["stats"].values())


def messages(run: subprocess.CompletedProcess) -> str:
    """Every result message of the run, failed or not."""
    report = json.loads(run.stdout)
    return "\n".join(str(result.get("msg", "")) for play in report["plays"] for entry in play["tasks"]
                     for result in entry["hosts"].values())


def databases(host) -> set[str]:
    return set(psql(host, "SELECT datname FROM pg_database", "postgres").stdout.split())


def backup_files(host) -> set[str]:
    return set(host.check_output("find /var/backups/chajipoa -mindepth 1 -printf '%P\\n'").split("\n"))


def task_results(run: subprocess.CompletedProcess, task: str) -> list[dict]:
    """Each host's result of the named task in the json callback's output (a role's tasks carry its name first)."""
    report = json.loads(run.stdout)
    return [result for play in report["plays"] for entry in play["tasks"]
            if entry["task"]["name"].split(" : ", 1)[-1] == task for result in entry["hosts"].values()]


def journal(host, unit: str) -> str:
    return host.run(f"journalctl -u {unit} -n 30 --no-pager -o cat").stdout


def failure(run: subprocess.CompletedProcess) -> str:
    return run.stdout[-4000:] + run.stderr[-2000:]


@pytest.fixture(scope="module")
def db(lab_host):
    return lab_host("backup-db")


@pytest.fixture(scope="module")
def drill(lab_host):
    return lab_host("backup-drill")


@pytest.fixture(scope="module")
def variables(db):
    return db.ansible.get_variables()


@pytest.fixture(scope="module")
def seeded(db, variables):
    result = psql(db, SEED)
    assert result.rc == 0, result.stderr
    # A key the RDB snapshot must carry, written over TLS with the CA the backup role installed for
    # its own RDB pull (Redis has no plain TCP port).
    auth = f"REDISCLI_AUTH={shlex.quote(variables['redis_app_password'])}"
    command = "redis-cli --tls --cacert /etc/chajipoa/redis-ca.crt -h 127.0.0.1 --no-auth-warning --user app"
    assert db.run(f"{auth} {command} SET backup:probe karibu").stdout.strip() == "OK"
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


def test_units_have_start_timeouts_and_verification_needs_no_server(db):
    # A hung pg_dump or restore is killed and reported, instead of holding the lock for ever.
    assert db.check_output(f"systemctl show {DAILY} -p TimeoutStartUSec --value") == "6h"
    assert db.check_output(f"systemctl show {VERIFY} -p TimeoutStartUSec --value") == "12h"
    assert "postgresql.service" not in db.check_output(f"systemctl show {VERIFY} -p After --value")
    for unit in (DAILY, VERIFY):
        assert db.check_output(f"systemctl show {unit} -p ProtectSystem --value") == "strict"
        assert "/var/lib/chajipoa-backup/scratch" in db.check_output(f"systemctl show {unit} -p ReadWritePaths --value")
    scratch = db.file("/var/lib/chajipoa-backup/scratch")
    assert scratch.is_directory and scratch.user == "postgres" and scratch.mode == 0o700


def test_program_gets_the_manifest_key_and_the_new_settings(db, variables):
    env = db.file("/etc/chajipoa/backup.env")
    assert (env.user, env.group, env.mode) == ("root", "postgres", 0o640)
    assert f"CHAJIPOA_BACKUP_MANIFEST_KEY={variables['backup_manifest_key']}" in env.content_string.splitlines()
    config = json.loads(db.file("/etc/chajipoa/backup.json").content_string)
    assert (config["scratch_dir"], config["lock_timeout"]) == ("/var/lib/chajipoa-backup/scratch", 3600)
    assert config["retention"]["verified_minimum"] == 2
    assert config["s3"]["object_lock"] is True
    assert config["verify"]["restore_role"] == "chajipoa_restore"


def test_host_policy_grants_no_delete_under_object_lock(db, variables):
    statements = json.loads(db.file(IAM_POLICY).content_string)["Statement"]
    allowed = {action for s in statements if s["Effect"] == "Allow" for action in s["Action"]}
    denied = {action for s in statements if s["Effect"] == "Deny" for action in s["Action"]}
    # Reading the bucket's lock settings, to refuse a bucket whose default retention would not lock the copies.
    assert allowed == {"s3:ListBucket", "s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload",
                       "s3:GetBucketObjectLockConfiguration"}
    assert {"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention",
            "s3:PutObjectRetention", "s3:PutBucketObjectLockConfiguration", "s3:PutLifecycleConfiguration"} <= denied
    # The bucket in moto is the one the rendered settings describe.
    settings = json.loads(db.file(BUCKET_SETTINGS).content_string)
    result = s3(db, """
print(json.dumps({'lock': client.get_object_lock_configuration(Bucket=sys.argv[1])['ObjectLockConfiguration'],
                  'versioning': client.get_bucket_versioning(Bucket=sys.argv[1]).get('Status')}))
""", variables["backup_s3_bucket"])
    assert result.rc == 0, result.stderr
    bucket = json.loads(result.stdout)
    assert settings["object_lock"] == {
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}}}
    # moto answers with "Years": 0 beside the days.
    retention = bucket["lock"]["Rule"]["DefaultRetention"]
    assert (bucket["lock"]["ObjectLockEnabled"], retention["Mode"], retention["Days"]) == ("Enabled", "COMPLIANCE", 1)
    assert bucket["versioning"] == "Enabled"
    # The S3 policy's longest period (monthly, 365 days) expires copies, no longer the program.
    (rule,) = settings["lifecycle"]["Rules"]
    assert rule["Expiration"] == {"Days": 365} and rule["Filter"] == {"Prefix": PREFIX}


def test_verification_timers(db, drill):
    """The scenario has a drill host: the weekly thorough verification runs there, from S3, and the
    primary keeps the daily one (and the quick one of every run)."""
    daily = "chajipoa-backup-verify-daily.timer"
    assert db.service(daily).is_enabled and db.service(daily).is_running
    assert db.check_output(f"systemctl show {daily} -p Unit --value") == "chajipoa-backup-verify-daily.service"
    weekly = "chajipoa-backup-verify-weekly.timer"
    assert not db.service(weekly).is_enabled and not db.service(weekly).is_running
    assert drill.service(weekly).is_enabled and drill.service(weekly).is_running
    assert drill.check_output(f"systemctl show {weekly} -p Unit --value") == "chajipoa-backup-verify@7.service"
    assert "--from s3" in drill.check_output("systemctl cat chajipoa-backup-verify@7.service")
    # A drill host takes no backups.
    assert not drill.file("/etc/systemd/system/chajipoa-backup.timer").exists


# The daily backup puts the copy in S3 first.
@pytest.mark.usefixtures("daily_backup")
def test_the_drill_host_verifies_the_primarys_copies_from_s3_and_keeps_none(drill):
    unit = drill.run("systemctl start chajipoa-backup-verify@1.service")
    assert unit.rc == 0, journal(drill, "chajipoa-backup-verify@1.service")
    assert re.search(r"postgresql chajipoa: chajipoa-\S+ thorough passed", journal(drill, "chajipoa-backup-verify@1.service"))
    assert sample(metrics(drill), "chajipoa_backup_verify_last_success", "postgresql", "chajipoa", mode="thorough") == 1
    assert drill.run(f"find {BACKUP_DIR} -type f | grep .").rc != 0, "copies left on the drill host"


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
    assert manifest["reason"] == "daily" and manifest["format_version"] == 4
    # Deep verification's per-table hashes, from the program's one read of the new dump.
    assert all(len(t["data_sha256"]) == 64 for t in manifest["tables"])


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


def test_object_lock_refuses_to_delete_an_uploaded_version(db, daily_backup, variables):
    """moto 5 enforces Object Lock retention on versioned deletes (not IAM policies: see the policy test)."""
    key = f"{PREFIX}postgresql/chajipoa/{manifest_of(db, daily_backup['postgresql'])['file']}"
    result = s3(db, """
from botocore.exceptions import ClientError
host = boto3.client('s3', endpoint_url='http://127.0.0.1:5000', region_name='af-south-1',
                    aws_access_key_id='molecule-access-key', aws_secret_access_key='molecule-secret-key')
bucket, key = sys.argv[1:3]
(version,) = [v for v in client.list_object_versions(Bucket=bucket, Prefix=key)['Versions'] if v['Key'] == key]
head = client.head_object(Bucket=bucket, Key=key, VersionId=version['VersionId'])
try:
    host.delete_object(Bucket=bucket, Key=key, VersionId=version['VersionId'])
    refused = None
except ClientError as error:
    refused = error.response['Error']['Code']
# A delete without a version only hides the object behind a marker; the locked version stays.
marker = host.delete_object(Bucket=bucket, Key=key)['VersionId']
left = [v['VersionId'] for v in client.list_object_versions(Bucket=bucket, Prefix=key)['Versions'] if v['Key'] == key]
client.delete_object(Bucket=bucket, Key=key, VersionId=marker)
print(json.dumps({'refused': refused, 'mode': head.get('ObjectLockMode'), 'until': head['ObjectLockRetainUntilDate'].isoformat(),
                  'left': left == [version['VersionId']],
                  'restored': client.head_object(Bucket=bucket, Key=key)['VersionId'] == version['VersionId']}))
""", variables["backup_s3_bucket"], key)
    assert result.rc == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["refused"] == "AccessDenied"
    assert outcome["mode"] == "COMPLIANCE"
    # The bucket's default retention (backup_s3_object_lock_days, a day here): the program sends none
    # of its own, which would take s3:PutObjectRetention, a right the host's policy denies.
    until = dt.datetime.fromisoformat(outcome["until"])
    assert dt.timedelta(hours=23) < until - dt.datetime.now(dt.timezone.utc) <= dt.timedelta(days=1, minutes=30)
    assert outcome["left"] and outcome["restored"]


def test_metrics_report_the_success(db, daily_backup):
    samples = metrics(db)
    for kind, database in (("postgresql", "chajipoa"), ("redis", REDIS_NAME)):
        assert sample(samples, "chajipoa_backup_last_run_success", kind, database) == 1
        last_success = sample(samples, "chajipoa_backup_last_success_timestamp_seconds", kind, database)
        assert abs(last_success - dt.datetime.now(dt.timezone.utc).timestamp()) < 600
        assert sample(samples, "chajipoa_backup_last_size_bytes", kind, database) == manifest_of(db, daily_backup[kind])["bytes"]
        assert sample(samples, "chajipoa_backup_verify_last_success", kind, database, mode="quick") == 1
    assert running_attempts(samples) == []
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
    assert not [name for name in databases(db) if name.startswith("chajipoa_verify")]


def test_daily_verification_unit_passes(db, daily_backup):
    unit = db.run("systemctl start chajipoa-backup-verify-daily.service")
    assert unit.rc == 0, journal(db, "chajipoa-backup-verify-daily.service")


# The units ran above, sandboxed; each within its exposure limit (plugins/module_utils/systemd_sandbox.py).
@pytest.mark.parametrize("unit", [DAILY, VERIFY, "chajipoa-backup-verify-daily.service", "postgresql@15-main.service",
                                  "postgresql-maintenance.service", "redis-server.service"])
def test_unit_within_its_exposure_limit(db, sandbox_exposure, unit):
    exposure, limit = sandbox_exposure(db, unit)
    assert exposure <= limit, f"{unit}: exposure {exposure}, limit {limit}"


# With a host in group backup_drill the drill runs there by default, from S3; on the primary it
# drills the local copies (or S3's when asked).
@pytest.mark.parametrize("extra, where", [
    (("-e", "backup_drill_host=backup-db"), "backup-db"),
    (("-e", "backup_drill_host=backup-db", "-e", "restore_drill_source=s3"), "backup-db"),
    ((), "backup-drill"),
])
def test_restore_drill_within_rto(db, drill, daily_backup, extra, where):
    run = playbook("restore-drill.yml", *extra)
    assert run.returncode == 0, failure(run)
    (report,) = task_results(run, "Print the measured time against the RTO")
    message = report["msg"]
    assert message.startswith(f"Restore drill on {where}:")
    total = sum(t["rows"] for t in manifest_of(db, daily_backup["postgresql"])["tables"])
    assert f"{total} rows equal to the manifest" in message
    assert "within the objective" in message
    assert not [name for name in databases(db) if name.startswith("chajipoa_verify")]
    # The throwaway cluster is gone from whichever host ran it.
    for host in (db, drill):
        assert host.run("find /var/lib/chajipoa-backup/scratch -mindepth 1 -maxdepth 1").stdout == ""


def test_a_manifest_put_in_s3_without_the_key_stops_the_drill(db, drill, daily_backup, variables):
    """Whoever can write to the bucket but has no manifest key can put up an unsigned manifest (and a
    dump to match it): the drill host's fetch refuses it by name, unless the operator allows unsigned
    manifests (backups from before manifests were signed)."""
    manifest = manifest_of(db, daily_backup["postgresql"])
    key = f"{PREFIX}postgresql/chajipoa/{manifest['name']}.manifest.json"
    put = """
bucket, key, body = sys.argv[1:4]
client.put_object(Bucket=bucket, Key=key, Body=body.encode())
"""
    unsigned = {name: value for name, value in manifest.items() if name != "signature"}
    assert s3(db, put, variables["backup_s3_bucket"], key, json.dumps(unsigned)).rc == 0
    try:
        refused = playbook("restore-drill.yml")
        assert refused.returncode != 0
        assert f"Cannot fetch backup {manifest['name']}: Cannot trust backup {manifest['name']}: its manifest is " \
               "unsigned" in refused.stdout
        allowed = playbook("restore-drill.yml", "-e", "backup_allow_unsigned=true")
        assert allowed.returncode == 0, failure(allowed)
    finally:
        # Object Lock keeps the unsigned version; the signed one goes back on top of it.
        assert s3(db, put, variables["backup_s3_bucket"], key, json.dumps(manifest)).rc == 0


def test_drill_host_takes_no_backups_and_runs_no_cluster(drill):
    # Its one timer is the weekly verification of the primary's copies in S3.
    timers = drill.run("systemctl list-timers --all --no-legend 'chajipoa-backup*'").stdout.strip().splitlines()
    assert [line.split()[-2:] for line in timers] == [["chajipoa-backup-verify-weekly.timer", "chajipoa-backup-verify@7.service"]]
    assert not drill.file("/etc/systemd/system/chajipoa-backup@.service").exists
    # No backup of its own, and no copy left of those its weekly verification fetched.
    assert drill.run("find /var/backups/chajipoa -type f").stdout == ""
    # The server's binaries for the throwaway clusters, without a cluster of their own.
    assert drill.file("/usr/lib/postgresql/15/bin/initdb").exists
    assert drill.check_output("pg_lsclusters --no-header") == ""


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


# backup.yml reports the unit it would start on each backup host (backup-db and backup-rds) and
# restore.yml the restore it would make; the read-only playbooks report no change at all.
@pytest.mark.parametrize("name, extra, would_change", [
    ("backup.yml", (), 2),
    ("verify-backups.yml", ("-e", "verify_mode=thorough"), 0),
    ("verify-backups.yml", ("-e", "verify_source=s3"), 0),
    ("restore-drill.yml", (), 0),
    ("restore-drill.yml", ("-e", "backup_drill_host=backup-db"), 0),
    ("restore.yml", ("-e", "restore_replace=true", "-e", "restore_allow_unsigned=true"), 1),
])
def test_operational_playbooks_run_under_check_without_changing_anything(db, daily_backup, name, extra, would_change):
    files, names = backup_files(db), databases(db)
    run = playbook(name, "--check", *extra)
    assert run.returncode == 0, failure(run)
    assert changed(run) == would_change
    assert (backup_files(db), databases(db)) == (files, names)
    assert db.run("ls -d /tmp/chajipoa-fetch-* 2>/dev/null").stdout == ""


def preflight(tmp_path, overrides: dict) -> subprocess.CompletedProcess:
    """The role's own preflight (its tag only: nothing else runs) with these variables."""
    play = tmp_path / "preflight.yml"
    play.write_text("- hosts: backup-db\n  gather_facts: false\n  roles: [chajipoa.platform.backup]\n")
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps(overrides))
    return playbook(play, "--tags", "backup_preflight", "-e", f"@{extra}")


@pytest.mark.parametrize("overrides, refused", [
    ({"env_name": "production", "backup_s3_bucket": ""}, True),
    ({"env_name": "staging", "backup_s3_bucket": "", "backup_offsite_opt_out_reason": " "}, True),
    ({"env_name": "production", "backup_s3_bucket": "", "backup_offsite_opt_out_reason": "DR site replica only"}, False),
    ({"env_name": "production", "backup_s3_bucket": "chajipoa-production-backups"}, False),
    ({"env_name": "development", "backup_s3_bucket": ""}, False),
])
def test_backups_outside_development_need_an_offsite_copy(db, tmp_path, overrides, refused):
    """Refused before any change; outside development the Redis CA comes from the inventory."""
    run = preflight(tmp_path, {"backup_redis_ca_file": "files/redis-ca.crt", **overrides})
    assert (run.returncode != 0) == refused, failure(run)
    if refused:
        assert ("Cannot configure backups on backup-db: env_name " + overrides["env_name"]) in messages(run)
        assert "set backup_s3_bucket, or backup_offsite_opt_out_reason" in messages(run)


def test_tls_pull_outside_development_needs_the_redis_ca_from_the_inventory(db, tmp_path):
    run = preflight(tmp_path, {"env_name": "production", "backup_s3_bucket": "chajipoa-production-backups"})
    assert run.returncode != 0, failure(run)
    assert "backup_redis_ca_file must name the controller's copy of the CA certificate" in messages(run)


def restore_module(*args: str, check: bool = False, **options) -> subprocess.CompletedProcess:
    """backup_restore run on the host as the backup user, from a one-task playbook."""
    with tempfile.TemporaryDirectory() as directory:
        play = Path(directory) / "restore.yml"
        play.write_text(json.dumps([{"hosts": "backup-db", "gather_facts": False, "tasks": [{
            "name": "Restore", "become": True, "become_user": "postgres",
            "chajipoa.platform.backup_restore": {"owner": APP_USER, "owner_password": "{{ postgres_app_password }}",
                                                 "manifest_key": "{{ backup_manifest_key }}", **options}}]}]))
        return playbook(play, *args, *(["--check"] if check else []))


@pytest.fixture(scope="module")
def copies(db, daily_backup, variables):
    """The newest dump in a directory of its own with three manifests: signed with the environment's key,
    signed and then altered (a row count), and unsigned."""
    backup = daily_backup["postgresql"]
    manifest = {k: v for k, v in manifest_of(db, backup).items() if k != "signature"}
    signed = backup_manifest.sign(manifest, variables["backup_manifest_key"])
    tampered = json.loads(json.dumps(signed))
    tampered["tables"][0]["rows"] += 1
    directory = "/var/tmp/restore-copies"
    db.check_output(f"install -d -o postgres -m 0700 {directory}")
    paths = {}
    for label, content in (("signed", signed), ("tampered", tampered), ("unsigned", manifest)):
        paths[label] = f"{directory}/{label}.dump"
        db.check_output(f"install -o postgres -m 0600 {backup['file']} {paths[label]}")
        encoded = base64.b64encode(json.dumps(content).encode()).decode()
        db.check_output(f"echo {encoded} | base64 -d > {directory}/{label}.manifest.json")
    return paths


def test_restore_refuses_a_manifest_not_signed_with_the_environments_key(db, copies):
    names = databases(db)
    tampered = restore_module(path=copies["tampered"], database="chajipoa_restore_test")
    assert tampered.returncode != 0
    assert "its manifest's HMAC does not match the environment's backup_manifest_key" in messages(tampered)
    unsigned = restore_module(path=copies["unsigned"], database="chajipoa_restore_test")
    assert unsigned.returncode != 0 and "its manifest is unsigned" in messages(unsigned)
    # The signed copy passes authentication and verification; --check restores nothing.
    signed = restore_module(path=copies["signed"], database="chajipoa_restore_test", check=True)
    assert signed.returncode == 0, failure(signed)
    assert databases(db) == names


def test_restore_refuses_a_superuser_owner(db, copies):
    run = restore_module(path=copies["signed"], database="chajipoa_restore_test", owner="postgres")
    assert run.returncode != 0 and "owner postgres is a superuser" in messages(run)


def app_sql(host, variables, sql: str):
    """As the application: its login over TCP with its password, the way the API connects."""
    password = shlex.quote(variables["postgres_app_password"])
    return host.run(f"PGPASSWORD={password} psql -X -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -U {APP_USER} -d chajipoa "
                    f"-c {shlex.quote(sql)}")


OWNERS = """
SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('rental', 'public') AND c.relkind IN ('r', 'S', 'v', 'i')
  AND c.oid NOT IN (SELECT objid FROM pg_depend WHERE deptype = 'e')
"""


def test_restore_runbook_restores_as_the_application_which_then_reads_and_writes(db, daily_backup, seeded, variables):
    before, expected = databases(db), newest(db, "postgresql/chajipoa")
    assert expected["verification"]["passed"]
    # Manifests taken before signing existed are unsigned: the runbook names the switch for them.
    unsigned_ok = ("-e", "restore_allow_unsigned=true")
    refused = playbook("restore.yml", *unsigned_ok)
    assert refused.returncode != 0
    assert "the database exists; set replace (backup_restore_replace=true)" in messages(refused)
    assert databases(db) == before

    run = playbook("restore.yml", "-e", "restore_replace=true", *unsigned_ok)
    assert run.returncode == 0, failure(run)
    (report,) = task_results(run, "Restore as the owner and swap it in (chajipoa)")
    restored = report["restore"]
    assert restored["name"] == expected["name"]
    assert [s["name"] for s in restored["steps"]][-4:] == ["restore", "row counts", "owners", "write"]
    # The old database was renamed aside, not dropped.
    aside = restored["replaced_database"]
    assert aside.startswith("chajipoa_before_") and databases(db) == before | {aside}
    assert psql(db, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'chajipoa'", "postgres").stdout.strip() == APP_USER
    assert psql(db, OWNERS).stdout.split() == [APP_USER]
    counted = app_sql(db, variables, COUNT_ALL)
    assert counted.rc == 0, counted.stderr
    rows = dict(line.rsplit("|", 1) for line in counted.stdout.splitlines())
    assert {name: int(rows[name]) for name in seeded} == seeded
    # The application writes through its sequence, FK and trigger, and deletes again.
    written = app_sql(db, variables, """
WITH station AS (INSERT INTO rental.stations (code, city) VALUES ('ST-RESTORED', 'Dodoma') RETURNING id),
     rental AS (INSERT INTO rental.rentals (station_id, started_at, minutes) SELECT id, now(), 5 FROM station
                RETURNING id, updated_at IS NOT NULL AS touched)
SELECT touched FROM rental""")
    assert written.rc == 0 and written.stdout.strip() == "t", written.stderr
    removed = app_sql(db, variables, "DELETE FROM rental.rentals WHERE station_id = (SELECT id FROM rental.stations "
                                     "WHERE code = 'ST-RESTORED'); DELETE FROM rental.stations WHERE code = 'ST-RESTORED'")
    assert removed.rc == 0, removed.stderr


@pytest.fixture(scope="module")
def failed_run(db, daily_backup, variables) -> dict:
    """A daily run that fails for real (S3 down): what the backup directory and the metrics held
    before and after it."""
    listing = "find /var/backups/chajipoa -mindepth 1 -printf '%P\\n'"
    before = {"files": set(db.check_output(listing).split("\n")), "samples": metrics(db)}
    db.check_output("systemctl stop moto.service")
    try:
        run = db.run(f"systemctl start {DAILY}")
        after = {"rc": run.rc, "result": db.check_output(f"systemctl show {DAILY} -p Result --value"),
                 "files": set(db.check_output(listing).split("\n")), "samples": metrics(db)}
    finally:
        db.check_output("systemctl start moto.service")
        db.check_output("timeout 60 sh -c 'until nc -z 127.0.0.1 5000; do sleep 0.2; done'")
        # moto keeps everything in memory: the bucket comes back empty, for whatever runs next.
        created = create_bucket(db, variables["backup_s3_bucket"])
        assert created.rc == 0, created.stderr
    return {"before": before, "after": after}


@pytest.mark.journal("moto.service")
def test_failed_run_keeps_earlier_backups_and_reports_failure(db, failed_run):
    before, after = failed_run["before"], failed_run["after"]
    assert after["rc"] != 0 and after["result"] == "exit-code"
    assert before["files"] <= after["files"]
    assert not [name for name in after["files"] if ".partial" in name]
    # What the failed run did leave is whole: each new file belongs to a backup with its manifest.
    for name in after["files"] - before["files"]:
        stem = re.sub(r"\.(dump|rdb|manifest\.json|verify\.json)$", "", name)
        assert stem + ".manifest.json" in after["files"], name
    assert "FAILED: Could not connect to the endpoint URL" in journal(db, DAILY)
    for kind, database in (("postgresql", "chajipoa"), ("redis", REDIS_NAME)):
        assert sample(after["samples"], "chajipoa_backup_last_run_success", kind, database) == 0
        assert sample(after["samples"], "chajipoa_backup_last_success_timestamp_seconds", kind, database) == sample(
            before["samples"], "chajipoa_backup_last_success_timestamp_seconds", kind, database)
    # Ended, if badly: BackupFailed judges it (after monitoring_alert_for), not BackupRunTooLong.
    assert running_attempts(after["samples"]) == []


def firing_backup_alerts(drill, address: str) -> set[tuple[str, str, str]]:
    """(alertname, kind, database) of the Backup* alerts firing on the monitoring host's Alertmanager
    (the drill host, at `address`)."""
    alerts = json.loads(drill.check_output(f"curl -sf --max-time 5 http://{address}:9093/api/v2/alerts"))
    return {(a["labels"]["alertname"], a["labels"].get("kind", ""), a["labels"].get("database", ""))
            for a in alerts if a["labels"]["alertname"].startswith("Backup") and a["status"]["state"] == "active"}


def wait_for_alerts(drill, address: str, present: bool, expected: set, deadline: float = 180) -> None:
    end = time.monotonic() + deadline
    while (expected <= firing_backup_alerts(drill, address)) != present and time.monotonic() < end:
        time.sleep(2)
    assert (expected <= firing_backup_alerts(drill, address)) == present, firing_backup_alerts(drill, address)


@pytest.mark.journal("prometheus.service", "prometheus-alertmanager.service")
def test_the_failed_run_raises_backup_failed_and_a_good_run_resolves_it(db, drill, failed_run, lab_address):
    """The monitoring host (the drill host here) scrapes the database host's node exporter, which
    reads the backup program's metrics: the failed run's BackupFailed reaches Alertmanager, and the
    next good run clears it."""
    expected = {("BackupFailed", "postgresql", "chajipoa"), ("BackupFailed", "redis", REDIS_NAME)}
    address = lab_address(drill)
    wait_for_alerts(drill, address, True, expected)
    run = db.run(f"systemctl start {DAILY}")
    assert run.rc == 0, journal(db, DAILY)
    wait_for_alerts(drill, address, False, expected)
