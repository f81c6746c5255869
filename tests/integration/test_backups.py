"""The backup program and the verifier against a real PostgreSQL 15 and a local S3 (moto).

Each fault of the corpus is made the way it happens in life (a dump cut short, a flipped byte, a
dump taken without an object the source has) and must be caught by the check that names it, with
no false alarm on good backups.
"""
from __future__ import annotations

import base64
import datetime as dt
import getpass
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.ports import free_port
from ansible_collections.chajipoa.platform.plugins.module_utils import (backup_checks, backup_config, backup_manifest,
                                                                        backup_program, backup_state, backup_store,
                                                                        pg_scratch)

MANIFEST_KEY = "integration-test-manifest-key"


@pytest.fixture
def make_config(tmp_path, pg_server, monkeypatch):
    """A backup program configuration for databases on pg_server, backups under tmp_path."""
    monkeypatch.setenv("PGPASSWORD", pg_server.password)
    monkeypatch.setenv(backup_config.MANIFEST_KEY_ENV, MANIFEST_KEY)

    def make(*databases: str, **sections) -> backup_program.Config:
        data = {"host": "test", "backup_dir": str(tmp_path / "backups"), "metrics_file": str(tmp_path / "metrics.prom"),
                "postgresql": {"databases": list(databases), "host": pg_server.host, "port": pg_server.port,
                               "user": pg_server.user, "bindir": str(pg_server.bindir)},
                "retention": {"local": {}, "s3": {}}, "verify": {"jobs": 2}}
        data.update(sections)
        return backup_program.Config(data)

    return make


@pytest.fixture
def scratch_dir():
    """Where thorough verification makes its throwaway clusters: under /tmp, short enough for a
    socket path and reachable by the postgres user the cluster runs as; must be empty afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="chajipoa-scratch-", dir="/tmp"))
    yield directory
    left = list(directory.iterdir())
    for path in left:
        pg_scratch.remove_cluster(path)
    directory.rmdir()
    assert not left, f"verification left {left} behind"


@pytest.fixture
def fault_db(pg_server, rental_db):
    """A copy of the rental database that a test may damage."""
    name = "rental_fault"
    pg_server.drop_database(name)
    pg_server.execute(f"CREATE DATABASE {name} TEMPLATE rental")
    yield name
    pg_server.drop_database(name)


def backup(config: backup_program.Config, reason: str = "daily") -> tuple[dict, Path]:
    """A backup of the configuration's first database; it passed its quick verification."""
    database = config.postgresql["databases"][0]
    manifest, report = backup_program.take_backup(config, "postgresql", database, reason)
    assert report.passed, report.failure_message()
    return manifest, report.backup_path


def verify(path: Path, mode: str, scratch_dir=None, manifest: Path | None = None, **options) -> backup_checks.Report:
    report = backup_checks.Report(mode, path, manifest or backup_manifest.manifest_path(path))
    if mode == "thorough":
        return backup_checks.thorough(report, scratch_dir=scratch_dir, **options)
    if mode == "deep":
        return backup_checks.deep(report, **options)
    return backup_checks.quick(report, **options)


def check(report: backup_checks.Report, name: str) -> dict:
    return next(entry for entry in report.checks if entry["name"] == name)


def truncate_half(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def flip_middle_byte(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.seek(path.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))


def failed(report: backup_checks.Report) -> list[str]:
    return [entry["name"] for entry in report.failed]


def damaged_copy(tmp_path: Path, path: Path, name: str = "damaged") -> tuple[Path, Path]:
    """A copy of a backup and its manifest, to damage one of them."""
    copy = tmp_path / f"{name}.dump"
    shutil.copy(path, copy)
    manifest = backup_manifest.load(backup_manifest.manifest_path(path))
    manifest["file"] = copy.name
    backup_manifest.write(backup_manifest.manifest_path(copy), manifest)
    return copy, backup_manifest.manifest_path(copy)


def pair_with_manifest(dump: Path, manifest: dict) -> Path:
    """Give a dump a manifest taken from another backup, re-hashed so that the quick checks pass:
    what a backup tool writes when it describes the source rather than what its dump holds."""
    manifest = dict(manifest, file=dump.name)
    manifest["sha256"], manifest["bytes"] = backup_manifest.sha256_file(dump)
    backup_manifest.write(backup_manifest.manifest_path(dump), manifest)
    return dump


def pg_dump(pg_server, database: str, path: Path, *options: str) -> Path:
    subprocess.run([str(pg_server.bindir / "pg_dump"), "--format=custom", f"--file={path}", *options,
                    f"--dbname={pg_server.conninfo(database)}"], env=pg_server.env(), check=True)
    return path


# --- the backup and its manifest ------------------------------------------------------------------

def test_manifest_describes_the_dump_in_its_own_snapshot(make_config, rental_db):
    manifest, path = backup(make_config("rental"))
    assert (manifest["sha256"], manifest["bytes"]) == backup_manifest.sha256_file(path)
    assert {backup_manifest.table_key(t["schema"], t["name"]): t["rows"] for t in manifest["tables"]} == rental_db["tables"]
    assert manifest["database"] == "rental" and manifest["reason"] == "daily"
    assert manifest["server_version_num"] // 10000 == 15
    assert manifest["started_at"] <= manifest["finished_at"]
    names = {(o["kind"], o["name"]) for o in manifest["catalogue"]["objects"]}
    assert ("table", '"Zemo Ops"."Vehicle Photos"') in names
    assert ("column", '"Zemo Ops"."Vehicle Photos"."Plate No"') in names or any(
        kind == "column" and name.endswith('"Plate No"') for kind, name in names)
    assert {"extension", "view", "materialized view", "function", "trigger", "index", "constraint",
            "sequence", "type"} <= {kind for kind, _name in names}


def test_backup_leaves_only_complete_files(make_config, rental_db):
    config = make_config("rental")
    manifest, path = backup(config)
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == sorted([manifest["file"], manifest["name"] + ".manifest.json", manifest["name"] + ".verify.json"])


def test_failed_backup_keeps_earlier_backups_and_exits_non_zero(make_config, rental_db, tmp_path):
    config = make_config("rental", "no_such_database")
    config.data["state_dir"] = str(tmp_path / "state")
    config = backup_program.Config(config.data)
    config_file = tmp_path / "backup.json"
    config_file.write_text(json.dumps(config.data))
    assert backup_program.main(["--config", str(config_file), "--only", "postgresql", "run"]) == 1
    good = list((tmp_path / "backups/postgresql/rental").glob("*.manifest.json"))
    assert len(good) == 1
    assert not list((tmp_path / "backups/postgresql/no_such_database").iterdir())
    # Another reason: a second daily backup within the same second would rightly be refused.
    assert backup_program.main(["--config", str(config_file), "--only", "postgresql", "run", "--reason", "manual"]) == 1
    assert len(list((tmp_path / "backups/postgresql/rental").glob("*.manifest.json"))) >= 1
    metrics = (tmp_path / "metrics.prom").read_text()
    assert 'chajipoa_backup_last_run_success{kind="postgresql",database="no_such_database"} 0' in metrics
    assert 'chajipoa_backup_last_run_success{kind="postgresql",database="rental"} 1' in metrics
    assert 'chajipoa_backup_last_success_timestamp_seconds{kind="postgresql",database="rental"}' in metrics
    assert 'database="no_such_database"} ' not in metrics.split("chajipoa_backup_last_success_timestamp_seconds")[1].split("# HELP")[0]


def test_upload_to_s3_is_encrypted_and_checksummed_by_s3(make_config, rental_db, moto_s3, s3_bucket, aws_env):
    config = make_config("rental", s3={"bucket": s3_bucket, "prefix": "test/db1/", "endpoint_url": moto_s3.endpoint_url,
                                       "region": moto_s3.region, "storage_class": "STANDARD_IA", "sse": "AES256"})
    manifest, path = backup(config)
    keys = backup_store.S3Store(config).put("postgresql", "rental", manifest, path.parent)
    s3 = moto_s3.client()
    head = s3.head_object(Bucket=s3_bucket, Key=keys[0], ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(manifest["sha256"])).decode()
    assert head["ServerSideEncryption"] == "AES256"
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["ContentLength"] == manifest["bytes"]
    assert keys == [f"test/db1/postgresql/rental/{manifest['file']}", f"test/db1/postgresql/rental/{manifest['name']}.manifest.json"]


def test_a_run_uploads_what_an_earlier_run_could_not(make_config, rental_db, moto_s3, s3_bucket, aws_env, tmp_path):
    s3 = {"bucket": s3_bucket, "prefix": "p/", "endpoint_url": moto_s3.endpoint_url, "region": moto_s3.region}
    local_only, _local_path = backup(make_config("rental"), reason="pre-deploy")
    config = make_config("rental", s3=s3)
    config_file = tmp_path / "backup.json"
    config_file.write_text(json.dumps(config.data))
    assert backup_program.main(["--config", str(config_file), "--only", "postgresql", "run"]) == 0
    listed = moto_s3.client().list_objects_v2(Bucket=s3_bucket)["Contents"]
    names = sorted({item["Key"].rsplit("/", 1)[1].split(".")[0] for item in listed})
    assert len(names) == 2 and local_only["name"] in names


def test_fetch_brings_back_what_was_uploaded(make_config, rental_db, moto_s3, s3_bucket, aws_env, tmp_path, capsys):
    config = make_config("rental", s3={"bucket": s3_bucket, "endpoint_url": moto_s3.endpoint_url, "region": moto_s3.region})
    manifest, path = backup(config)
    backup_store.S3Store(config).put("postgresql", "rental", manifest, path.parent)
    config_file = tmp_path / "backup.json"
    config_file.write_text(json.dumps(config.data))
    assert backup_program.main(["--config", str(config_file), "fetch", "--to", str(tmp_path / "fetched")]) == 0
    fetched = [Path(p) for p in json.loads(capsys.readouterr().out)]
    assert [p.name for p in fetched] == [path.name]
    assert verify(fetched[0], "quick").passed


# --- quick mode: the fault corpus ---------------------------------------------------------------

@pytest.fixture(scope="module")
def good_backup(tmp_path_factory, pg_server, rental_db):
    directory = tmp_path_factory.mktemp("good")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PGPASSWORD", pg_server.password)
        patch.setenv(backup_config.MANIFEST_KEY_ENV, MANIFEST_KEY)
        config = backup_program.Config({"backup_dir": str(directory), "postgresql": {
            "databases": ["rental"], "host": pg_server.host, "port": pg_server.port, "user": pg_server.user}})
        manifest, report = backup_program.take_backup(config, "postgresql", "rental", "daily")
    assert report.passed
    return report.backup_path


def test_good_backup_passes_quick_mode_repeatedly(good_backup):
    for _attempt in range(3):
        report = verify(good_backup, "quick")
        assert report.passed, report.failure_message()
        assert [c["name"] for c in report.checks] == list(backup_checks.QUICK_CHECKS["postgresql"])


def test_truncated_dump_fails_the_size_check(good_backup, tmp_path):
    path, _manifest_path = damaged_copy(tmp_path, good_backup)
    truncate_half(path)
    report = verify(path, "quick")
    assert failed(report)[0] == "size"
    assert "truncated" in report.failure_message()


def test_flipped_bytes_fail_the_checksum_only(good_backup, tmp_path):
    path, _manifest_path = damaged_copy(tmp_path, good_backup)
    flip_middle_byte(path)
    report = verify(path, "quick")
    assert failed(report) == ["sha256"]
    assert "SHA-256" in report.failure_message()


def test_empty_file_fails_the_file_check(good_backup, tmp_path):
    path, _manifest_path = damaged_copy(tmp_path, good_backup)
    path.write_bytes(b"")
    report = verify(path, "quick")
    assert failed(report) == ["file"]
    assert "is empty" in report.failure_message()


def test_missing_file_fails_the_file_check(good_backup, tmp_path):
    path, _manifest_path = damaged_copy(tmp_path, good_backup)
    path.unlink()
    assert failed(verify(path, "quick")) == ["file"]


def test_manifest_checksum_mismatch_fails_the_checksum(good_backup, tmp_path):
    path, manifest_path = damaged_copy(tmp_path, good_backup)
    manifest = backup_manifest.load(manifest_path)
    manifest["sha256"] = manifest["sha256"][::-1]
    backup_manifest.write(manifest_path, manifest)
    assert failed(verify(path, "quick")) == ["sha256"]


def test_manifest_for_another_database_fails_the_database_check(good_backup, tmp_path):
    path, manifest_path = damaged_copy(tmp_path, good_backup)
    manifest = backup_manifest.load(manifest_path)
    manifest["database"] = "zemo_production"
    backup_manifest.write(manifest_path, manifest)
    report = verify(path, "quick")
    assert failed(report) == ["database"]
    assert "'rental'" in report.failure_message() and "'zemo_production'" in report.failure_message()


def test_table_missing_from_the_dump_fails_the_archive_check(good_backup, pg_server, rental_db, tmp_path):
    dump = pg_dump(pg_server, "rental", tmp_path / "without_payments.dump", "--exclude-table=tz_power.payments")
    pair_with_manifest(dump, backup_manifest.load(backup_manifest.manifest_path(good_backup)))
    report = verify(dump, "quick")
    assert failed(report) == ["tables in archive"]
    assert "tz_power.payments" in report.failure_message()


def test_unreadable_manifest_is_named(good_backup, tmp_path):
    path, manifest_path = damaged_copy(tmp_path, good_backup)
    manifest_path.write_text("{not json")
    report = verify(path, "quick")
    assert failed(report) == ["manifest"]
    assert str(manifest_path) in report.failure_message()


# --- thorough mode --------------------------------------------------------------------------------

def test_good_backup_passes_thorough_mode_repeatedly(good_backup, scratch_dir):
    for _attempt in range(2):
        report = verify(good_backup, "thorough", scratch_dir)
        assert report.passed, report.failure_message()
        statuses = {c["name"]: c["status"] for c in report.checks}
        assert all(statuses[name] == "passed" for name in backup_checks.THOROUGH_CHECKS), statuses
        assert next(c for c in report.checks if c["name"] == "schema")["digest_equal"]


def test_row_count_mismatch_fails_the_count_check(good_backup, scratch_dir, tmp_path):
    path, manifest_path = damaged_copy(tmp_path, good_backup)
    manifest = backup_manifest.load(manifest_path)
    table = next(t for t in manifest["tables"] if t["name"] == "rentals")
    table["rows"] += 1
    backup_manifest.write(manifest_path, manifest)
    report = verify(path, "thorough", scratch_dir)
    assert failed(report) == ["row counts"]
    assert f"tz_power.rentals has {table['rows'] - 1} rows, the manifest {table['rows']}" in report.failure_message()


def test_restore_error_fails_with_the_first_errors(good_backup, scratch_dir, tmp_path):
    """A dump damaged before its manifest was written: the checksum agrees, the restore must not."""
    path, _manifest_path = damaged_copy(tmp_path, good_backup)
    data = bytearray(path.read_bytes())
    for offset in range(len(data) // 2, len(data) // 2 + 64):
        data[offset] ^= 0x5A
    path.write_bytes(bytes(data))
    pair_with_manifest(path, backup_manifest.load(backup_manifest.manifest_path(good_backup)))
    report = verify(path, "thorough", scratch_dir)
    assert failed(report)[0] == "restore"
    restore = next(c for c in report.checks if c["name"] == "restore")
    assert restore["errors"] and restore["errors"][0].startswith("pg_restore: error:")
    assert "pg_restore: error:" in report.failure_message()


@pytest.mark.parametrize("damage, kind, name", [
    ("DROP INDEX tz_power.rentals_customer_started", "index", "tz_power.rentals_customer_started"),
    ("ALTER TABLE tz_power.payments DROP CONSTRAINT payments_rental_id_fkey", "constraint",
     "tz_power.payments.payments_rental_id_fkey"),
    ("DROP FUNCTION tz_power.rental_fee_tzs(integer)", "function", "tz_power.rental_fee_tzs("),
], ids=["index", "foreign-key", "function"])
def test_dump_without_an_object_fails_the_schema_check(make_config, fault_db, pg_server, scratch_dir, tmp_path,
                                                       damage, kind, name):
    manifest, _backup_path = backup(make_config(fault_db))
    pg_server.execute(damage, dbname=fault_db)
    dump = pair_with_manifest(pg_dump(pg_server, fault_db, tmp_path / f"{fault_db}.dump"), manifest)
    report = verify(dump, "thorough", scratch_dir)
    assert failed(report) == ["schema"]
    schema = next(c for c in report.checks if c["name"] == "schema")
    missing = [d for d in schema["differences"] if d["change"] == "missing"]
    assert [d["kind"] for d in missing] == [kind]
    assert missing[0]["name"].startswith(name) and missing[0]["expected"] and missing[0]["actual"] is None
    assert missing[0]["name"] in report.failure_message()


def test_sequence_reset_below_the_data_fails_the_sequence_check(make_config, fault_db, pg_server, scratch_dir, tmp_path):
    manifest, _backup_path = backup(make_config(fault_db))
    pg_server.execute("SELECT setval('tz_power.rentals_id_seq', 1)", dbname=fault_db)
    dump = pair_with_manifest(pg_dump(pg_server, fault_db, tmp_path / f"{fault_db}.dump"), manifest)
    report = verify(dump, "thorough", scratch_dir)
    assert failed(report) == ["sequences"]
    assert "tz_power.rentals_id_seq" in report.failure_message()


def test_changed_definition_is_reported_with_both_versions(make_config, fault_db, pg_server, scratch_dir, tmp_path):
    manifest, _backup_path = backup(make_config(fault_db))
    view = pg_server.execute("SELECT pg_get_viewdef('tz_power.station_utilisation')", dbname=fault_db)[0][0]
    pg_server.execute(f"CREATE OR REPLACE VIEW tz_power.station_utilisation AS {view.rstrip().rstrip(';')} LIMIT 1",
                      dbname=fault_db)
    dump = pair_with_manifest(pg_dump(pg_server, fault_db, tmp_path / f"{fault_db}.dump"), manifest)
    report = verify(dump, "thorough", scratch_dir)
    schema = next(c for c in report.checks if c["name"] == "schema")
    assert [(d["kind"], d["name"], d["change"]) for d in schema["differences"]] == [
        ("view", "tz_power.station_utilisation", "changed")]
    assert "LIMIT 1" in schema["differences"][0]["actual"]
    assert "LIMIT 1" not in schema["differences"][0]["expected"]


def test_ignored_kinds_and_excluded_names_are_left_out(make_config, fault_db, pg_server, scratch_dir, tmp_path):
    manifest, _backup_path = backup(make_config(fault_db))
    pg_server.execute("DROP INDEX tz_power.rentals_customer_started", dbname=fault_db)
    dump = pair_with_manifest(pg_dump(pg_server, fault_db, tmp_path / f"{fault_db}.dump"), manifest)
    assert verify(dump, "thorough", scratch_dir, ignore_kinds=["index"]).passed
    assert verify(dump, "thorough", scratch_dir, exclude=["tz_power.rentals_*"]).passed


def test_old_format_manifest_is_accepted_with_the_schema_check_skipped(good_backup, scratch_dir, tmp_path):
    path, manifest_path = damaged_copy(tmp_path, good_backup)
    manifest = backup_manifest.load(manifest_path)
    del manifest["catalogue"]
    manifest["format_version"] = 1
    backup_manifest.write(manifest_path, manifest)
    report = verify(path, "thorough", scratch_dir)
    assert report.passed, report.failure_message()
    schema = next(c for c in report.checks if c["name"] == "schema")
    assert schema["status"] == "skipped" and "format 1" in schema["message"]
    assert next(c for c in report.checks if c["name"] == "sequences")["status"] == "passed"


def test_a_kept_restore_answers_on_its_socket_until_removed(good_backup, scratch_dir):
    report = verify(good_backup, "thorough", scratch_dir, keep_restored=True)
    kept = report.restored_cluster
    try:
        assert report.passed, report.failure_message()
        assert kept["directory"].startswith(str(scratch_dir)) and kept["user"] == backup_checks.DEFAULT_RESTORE_ROLE
        import psycopg
        with psycopg.connect(host=kept["socket_dir"], port=kept["port"], user=kept["user"],
                             dbname=kept["database"]) as connection:
            assert connection.execute("SELECT count(*) FROM tz_power.rentals").fetchone()[0] > 0
    finally:
        pg_scratch.remove_cluster(kept["directory"])
    assert not Path(kept["directory"]).exists()


# --- the module, as a playbook runs it ------------------------------------------------------------

def run_module(params: dict, *options: str, module: str = "backup_verify") -> dict:
    """One of the collection's modules as a playbook task runs it, on this machine."""
    env = dict(os.environ, ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_NOCOLOR="1")
    # As on the hosts: no password in the environment (make_config sets the test server's).
    env.pop("PGPASSWORD", None)
    result = subprocess.run(["ansible", "localhost", "-m", f"chajipoa.platform.{module}", "-a", json.dumps(params),
                             "-e", f"ansible_python_interpreter={sys.executable}", *options],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    return json.loads(result.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_module_plans_in_check_mode_then_verifies_and_reruns_unchanged(good_backup):
    # No configuration: the module restores in a private temporary scratch directory of its own.
    params = {"path": str(good_backup), "mode": "thorough", "manifest_key": MANIFEST_KEY,
              "config": "/nonexistent/backup.json"}
    planned = run_module(params, "--check")
    assert not planned.get("failed") and not planned["changed"]
    assert {c["status"] for c in planned["report"]["checks"]} == {"planned"}
    for _attempt in range(2):
        result = run_module(params)
        assert not result.get("failed"), result.get("msg")
        assert not result["changed"] and result["report"]["passed"]
        assert [c["name"] for c in result["report"]["checks"]][-4:] == list(backup_checks.THOROUGH_CHECKS)
    assert MANIFEST_KEY not in json.dumps(result)


def test_module_failure_names_the_check(good_backup, tmp_path):
    path, _manifest_path = damaged_copy(tmp_path, good_backup)
    path.write_bytes(b"")
    result = run_module({"path": str(path), "manifest_key": MANIFEST_KEY})
    assert result["failed"] and "file:" in result["msg"] and "is empty" in result["msg"]


def test_module_takes_the_programs_lock_and_key(good_backup, tmp_path):
    state_dir, env_file = tmp_path / "state", tmp_path / "backup.env"
    env_file.write_text(f"{backup_config.MANIFEST_KEY_ENV}={MANIFEST_KEY}\n")
    config = tmp_path / "backup.json"
    config.write_text(json.dumps({"backup_dir": str(tmp_path / "backups"), "state_dir": str(state_dir),
                                  "env_file": str(env_file), "lock_timeout": 3600}))
    params = {"path": str(good_backup), "config": str(config), "lock_timeout": 0.5}
    with backup_state.RunLock(state_dir / "lock", 1, "chajipoa-backup run --reason daily"):
        held = run_module(params)
    assert held["failed"]
    assert held["msg"].startswith(f"Cannot start backup_verify module ({good_backup}): another chajipoa-backup run (pid ")
    assert "command 'chajipoa-backup run --reason daily')" in held["msg"] and "; waited 0.5 s (lock_timeout 0.5 s)" in held["msg"]
    result = run_module(params)
    assert not result.get("failed"), result.get("msg")
    assert json.loads((state_dir / "lock").read_text())["command"] == f"backup_verify module ({good_backup})"


@pytest.mark.parametrize("option, configured, trusted", [
    (None, False, False), (None, True, True), (True, False, True), (False, True, False)])
def test_module_trusts_an_unsigned_manifest_only_where_allowed(good_backup, tmp_path, option, configured, trusted):
    path, manifest_path = damaged_copy(tmp_path, good_backup, "unsigned")
    backup_manifest.write(manifest_path, {k: v for k, v in backup_manifest.load(manifest_path).items() if k != "signature"})
    config = tmp_path / "backup.json"
    config.write_text(json.dumps({"backup_dir": str(tmp_path / "backups"), "state_dir": str(tmp_path / "state"),
                                  "allow_unsigned": configured}))
    params = {"path": str(path), "config": str(config), "manifest_key": MANIFEST_KEY}
    result = run_module(params if option is None else {**params, "allow_unsigned": option})
    signature = next(c for c in result["report"]["checks"] if c["name"] == "signature")
    if trusted:
        assert not result.get("failed") and signature["status"] == "skipped", result.get("msg")
    else:
        assert result["failed"] and signature["status"] == "failed"
        assert "its manifest is unsigned, so nothing vouches for its dump" in result["msg"]


# --- failures always show: the program as the timer runs it ---------------------------------------

PROGRAM = ("import sys; from ansible_collections.chajipoa.platform.plugins.module_utils.backup_program import main; "
           "sys.exit(main())")


def write_config(config: backup_program.Config, tmp_path: Path) -> Path:
    path = tmp_path / "backup.json"
    path.write_text(json.dumps(config.data))
    return path


def start_program(config_file: Path, *args: str, **options) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PROGRAM, "--config", str(config_file), *args],
                            env=dict(os.environ, PYTHONPATH=str(ROOT / "collections")), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options)


def run_program(config_file: Path, *args: str) -> subprocess.CompletedProcess:
    process = start_program(config_file, *args)
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def gauge(metrics_file: Path, metric: str, database: str = "rental", mode: str | None = None) -> str | None:
    labels = f'kind="postgresql",database="{database}"' + (f',mode="{mode}"' if mode else "")
    return next((line.rsplit(" ", 1)[1] for line in metrics_file.read_text().splitlines()
                 if line.startswith(f"{metric}{{{labels}}} ")), None)


RUNNING = "chajipoa_backup_running_since_timestamp_seconds"
VERIFY_RUNNING = "chajipoa_backup_verify_running_since_timestamp_seconds"


def hanging_tool(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A directory holding a stand-in of a PostgreSQL program that hangs (a mock, named as such), as
    a stuck one does, and the file it writes its pid into once started."""
    hanging, started = tmp_path / "hanging", tmp_path / f"{name}.pid"
    hanging.mkdir()
    (hanging / name).write_text(f"#!/bin/sh\necho $$ > {started}\nexec sleep 120\n")
    (hanging / name).chmod(0o755)
    return hanging, started


def wait_for_start(started: Path) -> None:
    deadline = time.monotonic() + 30
    while not (started.exists() and started.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_run_against_an_unreachable_server_fails_in_the_metrics_without_a_traceback(make_config, rental_db, tmp_path):
    config = make_config("rental")
    config_file = write_config(config, tmp_path)
    assert run_program(config_file, "run").returncode == 0
    assert gauge(tmp_path / "metrics.prom", RUNNING) is None
    config.data["postgresql"]["port"] = free_port()
    result = run_program(write_config(config, tmp_path), "run", "--reason", "manual")
    assert result.returncode == 1
    assert "postgresql rental: FAILED: " in result.stderr and "Traceback" not in result.stderr
    assert gauge(tmp_path / "metrics.prom", "chajipoa_backup_last_run_success") == "0"
    # Ended, if badly: BackupFailed's, not a run under way.
    assert gauge(tmp_path / "metrics.prom", RUNNING) is None


def test_a_backup_stopped_by_its_time_limit_records_its_end_as_failed(make_config, rental_db, pg_server, tmp_path):
    """systemd's TimeoutStartSec sends SIGTERM to every process of the unit (pg_dump too): the run
    ends through its clean-up, the attempt recorded as failed rather than left under way."""
    config = make_config("rental")
    assert run_program(write_config(config, tmp_path), "run").returncode == 0
    hanging, started = hanging_tool(tmp_path, "pg_dump")
    config.data["postgresql"]["bindir"] = str(hanging)
    # A session of its own, as the unit's control group: the signal goes to all of it.
    run = start_program(write_config(config, tmp_path), "run", "--reason", "manual", start_new_session=True)
    try:
        wait_for_start(started)
        assert gauge(tmp_path / "metrics.prom", RUNNING) is not None, "under way, the attempt says since when"
        os.killpg(run.pid, signal.SIGTERM)
        _out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.communicate()
    assert run.returncode == 1 and "chajipoa-backup run: FAILED: terminated by SIGTERM" in err, err
    assert "Traceback" not in err
    assert gauge(tmp_path / "metrics.prom", "chajipoa_backup_last_run_success") == "0"
    assert gauge(tmp_path / "metrics.prom", RUNNING) is None
    assert not running(int(started.read_text()))
    assert not [path for path in (tmp_path / "backups").rglob("*") if ".partial" in path.name]


def test_a_verification_that_cannot_run_fails_in_the_metrics_without_a_traceback(make_config, rental_db, tmp_path):
    """On main: thorough mode could not reach its server and ended in a traceback, metrics unchanged."""
    config = make_config("rental")
    assert run_program(write_config(config, tmp_path), "run").returncode == 0
    assert run_program(write_config(config, tmp_path), "verify").returncode == 0
    assert gauge(tmp_path / "metrics.prom", "chajipoa_backup_verify_last_success", mode="quick") == "1"
    # Neither a server nor a scratch directory to restore into.
    config.data["postgresql"]["port"] = free_port()
    (tmp_path / "not-a-directory").write_text("")
    config.data["scratch_dir"] = str(tmp_path / "not-a-directory")
    result = run_program(write_config(config, tmp_path), "verify", "--mode", "thorough")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "thorough FAILED: Cannot verify backup rental-" in result.stderr
    assert gauge(tmp_path / "metrics.prom", "chajipoa_backup_verify_last_success", mode="thorough") == "0"


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (mounting needs root, as the tests run here)."""
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True,
                             check=False)
    if mounted.returncode != 0:
        pytest.fail(f"Cannot mount a small tmpfs for the full-disk test (needs root): {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path) -> None:
    with open(disk / "filler", "wb") as filler:
        with pytest.raises(OSError, match="No space left"):
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()


@pytest.mark.parametrize("from_the_start, after_the_first_run", [
    ((), ("state_dir",)),
    ((), ("state_dir", "backup_dir")),
    # A host with one disk: the metrics file on it too, so its last word was "success" until rewritten.
    (("state_dir", "metrics_file"), ()),
], ids=["state", "state-and-backups", "state-and-metrics"])
def test_a_full_disk_fails_the_run_in_the_metrics(make_config, rental_db, tmp_path, small_disk, from_the_start,
                                                  after_the_first_run):
    on_the_disk = {"state_dir": small_disk / "state", "backup_dir": small_disk / "backups",
                   "metrics_file": small_disk / "metrics.prom"}
    config = make_config("rental", **{key: str(on_the_disk[key]) for key in from_the_start})
    metrics = config.metrics_file
    assert run_program(write_config(config, tmp_path), "run").returncode == 0
    assert gauge(metrics, "chajipoa_backup_last_run_success") == "1"
    fill(small_disk)
    for key in after_the_first_run:
        config.data[key] = str(on_the_disk[key])
    result = run_program(write_config(config, tmp_path), "run", "--reason", "manual")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "No space left on device" in result.stderr
    assert gauge(metrics, "chajipoa_backup_last_run_success") == "0"


def test_a_run_drops_the_databases_that_killed_restores_left_and_nothing_else(make_config, rental_db, pg_server,
                                                                              tmp_path):
    """backup_restore stages a restore in <database>_restoring_<8 hex digits> and renames it into place
    at the end; killed before, it leaves a full copy of the data behind (the restore holds the lock
    the run waits for, so under the lock no restore is under way)."""
    stale, kept = "rental_restoring_deadbeef", ["rental_restoring_notes", "rental_restoring_deadbeef_x"]
    for name in [stale, *kept]:
        pg_server.create_database(name)
    try:
        result = run_program(write_config(make_config("rental"), tmp_path), "run")
        assert result.returncode == 0, result.stderr
        assert f"dropped database {stale}, left by a restore that did not finish" in result.stderr
        names = {name for (name,) in pg_server.execute("SELECT datname FROM pg_database")}
        assert stale not in names and set(kept) <= names
    finally:
        for name in [stale, *kept]:
            pg_server.execute(f'DROP DATABASE IF EXISTS "{name}"')


def running(pid: int) -> bool:
    """Whether a process runs (a zombie no longer does: it waits for whoever reaps orphans here)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def as_postgres(*args: str | Path) -> list[str]:
    # initdb and pg_ctl refuse to run as root.
    return (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + [str(arg) for arg in args]


def start_stale_cluster(directory: Path, bindir: Path) -> int:
    """What a thorough verification killed mid-restore leaves in scratch_dir: its own cluster, still
    running (pg_scratch's layout: <pid>-<8 hex>/data, owner.pid naming the dead run). Returns the
    postmaster's pid."""
    directory.mkdir()
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
    pid = directory.name.split("-")[0]
    (directory / "owner.pid").write_text(f"{pid} 0\n")
    subprocess.run(as_postgres(bindir / "initdb", "-D", directory / "data", "-U", "postgres", "--auth=trust"),
                   check=True, capture_output=True)
    subprocess.run(as_postgres(bindir / "pg_ctl", "-D", directory / "data", "-l", directory / "server.log", "-w",
                               "-o", f"-c listen_addresses='' -k {directory}", "start"), check=True, capture_output=True)
    return int((directory / "data/postmaster.pid").read_text().split()[0])


def test_a_verification_killed_mid_way_shows_as_failed_and_the_next_one_removes_its_cluster(make_config, rental_db,
                                                                                            pg_server, tmp_path):
    config = make_config("rental")
    # Reachable by the postgres user, which the throwaway cluster runs as.
    scratch = Path(tempfile.mkdtemp(prefix="chajipoa-scratch-test-", dir="/tmp"))
    scratch.chmod(0o755)
    config.data["scratch_dir"] = str(scratch)
    assert run_program(write_config(config, tmp_path), "run").returncode == 0
    assert run_program(write_config(config, tmp_path), "verify").returncode == 0
    # The verification is killed in pg_restore.
    hanging, started = hanging_tool(tmp_path, "pg_restore")
    config.data["postgresql"]["bindir"] = str(hanging)
    verify = start_program(write_config(config, tmp_path), "verify")
    stale = scratch / f"{verify.pid}-0badc0de"
    try:
        wait_for_start(started)
        under_way = gauge(tmp_path / "metrics.prom", VERIFY_RUNNING, mode="quick")
        assert under_way is not None, "under way, the verification says since when"
        postmaster = start_stale_cluster(stale, pg_server.bindir)
        verify.send_signal(signal.SIGKILL)
        verify.wait()
        os.kill(int(started.read_text()), signal.SIGKILL)
        assert gauge(tmp_path / "metrics.prom", "chajipoa_backup_verify_last_success", mode="quick") == "0"
        # SIGKILL leaves it no chance to record its end: until the next run, it reads as under way.
        assert gauge(tmp_path / "metrics.prom", VERIFY_RUNNING, mode="quick") == under_way
        config.data["postgresql"]["bindir"] = str(pg_server.bindir)
        result = run_program(write_config(config, tmp_path), "verify")
        assert result.returncode == 0, result.stderr
        assert f"removed {stale}, left by a run that did not finish" in result.stderr
        assert ("verification postgresql/rental/quick: recorded as failed, left under way by a run that did not finish"
                in result.stderr)
        assert list(scratch.iterdir()) == [] and not running(postmaster)
        assert gauge(tmp_path / "metrics.prom", "chajipoa_backup_verify_last_success", mode="quick") == "1"
        assert gauge(tmp_path / "metrics.prom", VERIFY_RUNNING, mode="quick") is None
    finally:
        if (stale / "data").exists():
            subprocess.run(as_postgres(pg_server.bindir / "pg_ctl", "-D", stale / "data", "-m", "immediate", "stop"),
                           capture_output=True, check=False)
        shutil.rmtree(scratch, ignore_errors=True)


# --- S3: signatures, the verified minimum, Object Lock ---------------------------------------------

def s3_section(moto_s3, bucket: str, **extra) -> dict:
    return {"bucket": bucket, "prefix": "p/", "endpoint_url": moto_s3.endpoint_url, "region": moto_s3.region, **extra}


@pytest.mark.parametrize("change", ["tampered", "signature removed"])
def test_fetch_refuses_a_manifest_and_dump_pair_of_someone_elses_making(make_config, rental_db, moto_s3, s3_bucket,
                                                                        aws_env, tmp_path, change):
    config = make_config("rental", s3=s3_section(moto_s3, s3_bucket))
    assert run_program(write_config(config, tmp_path), "run").returncode == 0
    s3 = moto_s3.client()
    keys = sorted(item["Key"] for item in s3.list_objects_v2(Bucket=s3_bucket)["Contents"])
    dump_key, manifest_key = keys
    manifest = json.loads(s3.get_object(Bucket=s3_bucket, Key=manifest_key)["Body"].read())
    if change == "tampered":
        # Whoever can write to the bucket swaps in a dump of their own with a manifest that matches it.
        dump = b"PGDMP another database's dump"
        manifest.update(sha256=hashlib.sha256(dump).hexdigest(), bytes=len(dump))
        s3.put_object(Bucket=s3_bucket, Key=dump_key, Body=dump)
    else:
        del manifest["signature"]
    s3.put_object(Bucket=s3_bucket, Key=manifest_key, Body=json.dumps(manifest).encode())
    result = run_program(write_config(config, tmp_path), "fetch", "--to", str(tmp_path / "fetched"))
    assert result.returncode == 1
    assert f"FAILED: Cannot fetch backup {manifest['name']}: Cannot trust backup {manifest['name']}" in result.stderr
    assert json.loads(result.stdout) == [] and list((tmp_path / "fetched/postgresql/rental").iterdir()) == []


@pytest.mark.parametrize("allowed_by", ["option", "configuration"])
def test_fetch_takes_an_unsigned_backup_where_the_operator_allows_it(make_config, rental_db, moto_s3, s3_bucket,
                                                                     aws_env, tmp_path, allowed_by):
    """Backups taken before manifests were signed stay fetchable, by a switch that says so."""
    config = make_config("rental", s3=s3_section(moto_s3, s3_bucket), allow_unsigned=allowed_by == "configuration")
    assert run_program(write_config(config, tmp_path), "run").returncode == 0
    s3 = moto_s3.client()
    manifest_key = sorted(item["Key"] for item in s3.list_objects_v2(Bucket=s3_bucket)["Contents"])[1]
    manifest = json.loads(s3.get_object(Bucket=s3_bucket, Key=manifest_key)["Body"].read())
    del manifest["signature"]
    s3.put_object(Bucket=s3_bucket, Key=manifest_key, Body=json.dumps(manifest).encode())
    option = ["--allow-unsigned"] if allowed_by == "option" else []
    result = run_program(write_config(config, tmp_path), "fetch", "--to", str(tmp_path / "fetched"), *option)
    assert result.returncode == 0, result.stderr
    assert f"backup {manifest['name']} has an unsigned manifest, allowed" in result.stderr
    assert len(list((tmp_path / "fetched/postgresql/rental").iterdir())) == 2


def drill_host_config(config, tmp_path: Path, scratch_dir: Path) -> Path:
    """The configuration of a drill host for the same databases and bucket: nothing of its own on
    disk, no server of its own (backup_drill_only)."""
    data = {**config.data, "backup_dir": str(tmp_path / "drill/backups"), "state_dir": str(tmp_path / "drill/state"),
            "scratch_dir": str(scratch_dir), "metrics_file": str(tmp_path / "drill/metrics.prom"),
            "drill_only": True}
    path = tmp_path / "drill.json"
    path.write_text(json.dumps(data))
    return path


def test_a_drill_host_verifies_the_copies_in_s3_thoroughly_and_keeps_none(make_config, rental_db, moto_s3, s3_bucket,
                                                                          aws_env, tmp_path, scratch_dir):
    """The weekly thorough verification where a drill host exists: the newest copies are fetched one
    at a time, restored in a throwaway cluster there and removed; the metrics are the drill host's."""
    config = make_config("rental", s3=s3_section(moto_s3, s3_bucket))
    # Two reasons: names have one-second resolution.
    for reason in ("daily", "manual"):
        assert run_program(write_config(config, tmp_path), "run", "--reason", reason).returncode == 0
    drill = drill_host_config(config, tmp_path, scratch_dir)
    result = run_program(drill, "verify", "--mode", "thorough", "--latest", "2", "--from", "s3", "--json")
    assert result.returncode == 0, result.stderr
    reports = json.loads(result.stdout)
    assert len(reports) == 2 and all(report["passed"] and report["mode"] == "thorough" for report in reports)
    assert "Cannot look for databases" not in result.stderr
    metrics = tmp_path / "drill/metrics.prom"
    assert gauge(metrics, "chajipoa_backup_verify_last_success", mode="thorough") == "1"
    assert [path for path in (tmp_path / "drill/backups").rglob("*") if path.is_file()] == []
    assert list(scratch_dir.iterdir()) == []


@pytest.mark.parametrize("fault", ["tampered", "bucket unreachable"])
def test_a_drill_hosts_verification_of_s3_copies_fails_in_its_metrics(make_config, rental_db, moto_s3, s3_bucket,
                                                                      aws_env, tmp_path, scratch_dir, fault):
    config = make_config("rental", s3=s3_section(moto_s3, s3_bucket))
    assert run_program(write_config(config, tmp_path), "run").returncode == 0
    drill = drill_host_config(config, tmp_path, scratch_dir)
    assert run_program(drill, "verify", "--mode", "thorough", "--from", "s3").returncode == 0
    s3 = moto_s3.client()
    if fault == "tampered":
        manifest_key = sorted(item["Key"] for item in s3.list_objects_v2(Bucket=s3_bucket)["Contents"])[1]
        manifest = json.loads(s3.get_object(Bucket=s3_bucket, Key=manifest_key)["Body"].read())
        manifest["tables"][0]["rows"] += 1
        s3.put_object(Bucket=s3_bucket, Key=manifest_key, Body=json.dumps(manifest).encode())
        expected = f"{manifest['name']} thorough FAILED"
    else:
        data = json.loads(drill.read_text())
        data["s3"]["endpoint_url"] = f"http://127.0.0.1:{free_port()}"
        drill.write_text(json.dumps(data))
        expected = "FAILED: Cannot verify the backups of rental in s3://"
    result = run_program(drill, "verify", "--mode", "thorough", "--from", "s3")
    assert result.returncode == 1 and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert gauge(tmp_path / "drill/metrics.prom", "chajipoa_backup_verify_last_success", mode="thorough") == "0"
    assert not list((tmp_path / "drill").rglob("*.dump"))


NOTHING = {"daily_days": 0, "weekly_days": 0, "monthly_days": 0, "pre_deploy_keep": 0}


@pytest.mark.parametrize("minimum, kept", [(0, [2]), (2, [2, 1, 0])])
def test_s3_pruning_keeps_the_verified_minimum(make_config, rental_db, moto_s3, s3_bucket, aws_env, tmp_path,
                                               minimum, kept):
    config = make_config("rental", s3=s3_section(moto_s3, s3_bucket))
    store, local = backup_store.S3Store(config), backup_store.LocalStore(config)
    names = []
    for number in range(3):
        manifest, path = backup(config, reason=f"run{number}")
        store.put("postgresql", "rental", manifest, path.parent)
        names.append(manifest["name"])
    # The newest failed a later (thorough) verification; the policy itself keeps only the newest.
    record = config.directory("postgresql", "rental") / (names[2] + ".verify.json")
    record.write_text(json.dumps(dict(json.loads(record.read_text()), passed=False)))
    store.policy = NOTHING
    backup_store.prune(store, "postgresql", "rental", minimum,
                       backup_program.s3_verified(local.list("postgresql", "rental")))
    assert sorted(b["name"] for b in store.list("postgresql", "rental")) == sorted(names[i] for i in kept)


def locked_bucket(moto_s3, default_retention_days: int | None) -> str:
    """A bucket with Object Lock, with the backup role's default retention (COMPLIANCE) or none."""
    s3 = moto_s3.client()
    bucket = f"chajipoa-locked-{os.getpid()}-{time.monotonic_ns()}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": moto_s3.region},
                     ObjectLockEnabledForBucket=True)
    if default_retention_days:
        s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": default_retention_days}}})
    return bucket


def test_with_object_lock_a_bucket_without_default_retention_gets_no_copy(make_config, rental_db, moto_s3, aws_env,
                                                                          tmp_path):
    """The program sends no retention of its own (the host may not: s3:PutObjectRetention is denied):
    a bucket whose default would not lock the copies is refused, by name, before anything goes there."""
    bucket = locked_bucket(moto_s3, default_retention_days=None)
    config = make_config("rental", s3=s3_section(moto_s3, bucket, object_lock=True))
    result = run_program(write_config(config, tmp_path), "run")
    assert result.returncode == 1
    assert f"Cannot upload to s3://{bucket}: object_lock is set, but the bucket has no default retention" in result.stderr
    assert moto_s3.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_with_object_lock_nothing_is_deleted_and_every_object_is_locked(make_config, rental_db, moto_s3, aws_env,
                                                                        tmp_path):
    s3 = moto_s3.client()
    bucket = locked_bucket(moto_s3, default_retention_days=1)
    config = make_config("rental", s3=s3_section(moto_s3, bucket, object_lock=True),
                         retention={"local": NOTHING, "s3": NOTHING, "verified_minimum": 0})
    for reason in ("daily", "manual"):
        result = run_program(write_config(config, tmp_path), "run", "--reason", reason)
        assert result.returncode == 0, result.stderr
    assert f"s3://{bucket} has Object Lock" in result.stderr and "pruned s3" not in result.stderr
    assert "pruned local" in result.stderr
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(keys) == 4
    for key in keys:
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] > dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=23)


def refuse_upload(directory: Path, name: str, fault: str) -> str:
    """Make a local backup one that must not go off-site, the way each fault happens; returns the cause
    the refusal names."""
    manifest = directory / (name + ".manifest.json")
    if fault == "failed verification":
        record = directory / (name + ".verify.json")
        record.write_text(json.dumps(dict(json.loads(record.read_text()), passed=False,
                                          failed=["restore: pg_restore logged errors"])))
        return "its last verification failed: restore: pg_restore logged errors"
    if fault == "altered manifest":
        manifest.write_text(json.dumps(dict(json.loads(manifest.read_text()), host="elsewhere")))
        return f"Cannot trust backup {name}"
    if fault == "unsigned manifest":
        manifest.write_text(json.dumps({k: v for k, v in json.loads(manifest.read_text()).items() if k != "signature"}))
        return f"Cannot trust backup {name}"
    manifest.write_text(manifest.read_text()[:40])
    return "Cannot read"


REFUSALS = ["failed verification", "altered manifest", "unsigned manifest", "unreadable manifest"]


@pytest.mark.parametrize("fault", REFUSALS)
def test_a_backup_that_must_not_go_off_site_is_refused_but_does_not_stop_pruning(make_config, rental_db, moto_s3,
                                                                                 s3_bucket, aws_env, tmp_path, fault,
                                                                                 monkeypatch):
    """The refused backup is never uploaded and the run says so by name and fails; the new backup
    still counts as taken, and retention still prunes, the refused backup included once the policy
    no longer keeps it, so that one bad backup cannot stop pruning night after night."""
    yesterday = backup_manifest.utc_now() - dt.timedelta(days=1)
    with monkeypatch.context() as patch:
        patch.setattr(backup_manifest, "utc_now", lambda: yesterday)
        refused, _path = backup(make_config("rental"), reason="pre-deploy")
    directory = tmp_path / "backups/postgresql/rental"
    cause = refuse_upload(directory, refused["name"], fault)
    config = make_config("rental", s3=s3_section(moto_s3, s3_bucket),
                         retention={"local": NOTHING, "s3": {}, "verified_minimum": 1})
    result = run_program(write_config(config, tmp_path), "run")
    assert result.returncode == 1
    assert f"Cannot upload 1 backup(s) to s3://{s3_bucket}: {refused['name']} ({cause}" in result.stderr
    uploaded = {item["Key"].rsplit("/", 1)[1].split(".")[0] for item in
                moto_s3.client().list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert len(uploaded) == 1 and refused["name"] not in uploaded
    assert gauge(tmp_path / "metrics.prom", "chajipoa_backup_last_run_success") == "0"
    assert float(gauge(tmp_path / "metrics.prom", "chajipoa_backup_last_success_timestamp_seconds")) > time.time() - 300
    assert f"pruned local {refused['name']}" in result.stderr
    assert [path.name.split(".")[0] for path in directory.glob("*.manifest.json")] == list(uploaded)
    result = run_program(write_config(config, tmp_path), "run", "--reason", "manual")
    assert result.returncode == 0, result.stderr


VERIFY_ENTRY_POINT = """
- name: The backup role's verify entry point (playbooks/verify-backups.yml), on this machine
  hosts: localhost
  gather_facts: false
  module_defaults:
    chajipoa.platform.backup_info: {config: "{{ config }}"}
    chajipoa.platform.backup_verify: {config: "{{ config }}"}
  tasks:
    - name: Verify the newest backups
      ansible.builtin.include_role:
        name: chajipoa.platform.backup
        tasks_from: verify
"""


def run_entry_point(play: str, config_file: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    """A play that includes one of the backup role's entry points, run on this machine."""
    playbook = tmp_path / "entry-point.yml"
    playbook.write_text(play)
    # The role works as backup_user: here the test's own user, through su, which root needs no password for.
    return subprocess.run(["ansible-playbook", str(playbook), "-e", f"config={config_file}", "-e", f"backup_user={getpass.getuser()}",
                           "-e", "ansible_become_method=su", "-e", f"backup_manifest_key={MANIFEST_KEY}",
                           "-e", f"ansible_python_interpreter={sys.executable}", *extra],
                          cwd=ROOT, env=dict(os.environ, ANSIBLE_NOCOLOR="1"), capture_output=True, text=True, timeout=300,
                          check=False)


def test_verification_of_a_database_without_backups_fails_naming_it(make_config, rental_db, pg_server, tmp_path):
    """verify-backups.yml on a host whose backups of one database stopped (or were removed): nothing
    to verify is a failure, not a pass. The other database's backup verifies."""
    pg_server.create_database("rental_unbacked")
    try:
        config = make_config(rental_db["database"], "rental_unbacked")
        backup(config)
        result = run_entry_point(VERIFY_ENTRY_POINT, write_config(config, tmp_path), tmp_path)
        output = result.stdout + result.stderr
        assert result.returncode != 0, output
        assert "no backup of postgresql/rental_unbacked on the host" in output, output
        assert f"no backup of postgresql/{rental_db['database']} on" not in output, output
        assert f"{rental_db['database']}-" in output and "passed" in output, output
    finally:
        pg_server.drop_database("rental_unbacked")
