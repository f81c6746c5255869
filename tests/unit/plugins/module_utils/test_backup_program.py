"""Unit tests of the backup program's parts that need no server: metrics text, S3 listing,
credentials file, the lock, and MongoDB backups through a stand-in mongodump (which also carries
the tests of failures that must show: no manifest key, unreadable state and verification records,
an unreadable manifest, a run killed or terminated mid-dump, pruning below the verified minimum).

The S3 listing test uses a stand-in paginator and the Redis TLS test a stand-in redis-cli (mocks,
named as such); the program's real S3 traffic, PostgreSQL and Redis backups are tested against real
servers in tests/integration/test_backups.py and molecule/backup.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ansible_collections.chajipoa.platform.plugins.module_utils import (
    backup_config, backup_manifest, backup_program, backup_sources, backup_state, backup_store, gfs_retention)
from tests import mongo_archives
from tests.conftest import ROOT
from tests.exposition import samples_by_name
from tests.unit.fake_clock import FakeClock

KEY = "unit-test-manifest-key"


def test_metrics_are_node_exporter_textfile_gauges():
    text = backup_state.render_metrics({
        "backups": {"postgresql/chajipoa": {"kind": "postgresql", "database": "chajipoa", "last_run": 20.0,
                                            "last_run_success": 0, "last_success": 10.0, "last_size_bytes": 5}},
        "verifications": {"postgresql/chajipoa/quick": {"kind": "postgresql", "database": "chajipoa", "mode": "quick",
                                                        "last_run": 20.0, "last_success": 1}},
    })
    lines = text.splitlines()
    assert 'chajipoa_backup_last_success_timestamp_seconds{kind="postgresql",database="chajipoa"} 10.0' in lines
    assert 'chajipoa_backup_last_run_success{kind="postgresql",database="chajipoa"} 0' in lines
    assert 'chajipoa_backup_verify_last_success{kind="postgresql",database="chajipoa",mode="quick"} 1' in lines
    assert "# TYPE chajipoa_backup_last_size_bytes gauge" in lines
    assert not any("last_duration" in line for line in lines), "families without samples are left out"
    assert text.endswith("\n")


def test_a_metrics_file_that_cannot_be_rewritten_in_place_is_removed(tmp_path):
    """/dev/full refuses every write with ENOSPC, as a full disk does: the stale success goes."""
    metrics = tmp_path / "chajipoa_backup.prom"
    metrics.symlink_to("/dev/full")
    backup_state.overwrite_metrics(metrics, "chajipoa_backup_last_run_success 0\n")
    assert not metrics.is_symlink() and not metrics.exists()


def test_a_metrics_file_is_rewritten_in_place(tmp_path):
    metrics = tmp_path / "chajipoa_backup.prom"
    metrics.write_text("chajipoa_backup_last_run_success 1\n" * 40)
    backup_state.overwrite_metrics(metrics, "chajipoa_backup_last_run_success 0\n")
    assert metrics.read_text() == "chajipoa_backup_last_run_success 0\n"


def test_label_values_are_escaped():
    entry = {"kind": "postgresql", "database": 'we"ird\\db', "last_run": 1}
    text = backup_state.render_metrics({"backups": {"x": entry}, "verifications": {}})
    assert 'database="we\\"ird\\\\db"' in text


class StandInPaginator:
    """Mock of boto3's list_objects_v2 paginator: one page of the given keys."""

    def __init__(self, keys):
        self.keys = keys

    def paginate(self, **_):
        return [{"Contents": [{"Key": key} for key in self.keys]}]


class StandInClient:
    def __init__(self, keys):
        self.keys = keys

    def get_paginator(self, _operation_name):
        return StandInPaginator(self.keys)


def test_s3_listing_pairs_files_with_manifests_and_reads_reasons_with_dashes():
    prefix = "prod/db1/postgresql/chajipoa/"
    keys = [prefix + name for name in (
        "chajipoa-20261123T020000Z-daily.dump", "chajipoa-20261123T020000Z-daily.manifest.json",
        "chajipoa-20261120T101500Z-pre-deploy.dump", "chajipoa-20261120T101500Z-pre-deploy.manifest.json",
        "chajipoa-20261119T020000Z-daily.dump",  # no manifest: an interrupted upload, not a backup
    )]
    config = backup_program.Config({"backup_dir": "/x", "s3": {"bucket": "b", "prefix": "prod/db1/"}})
    store = backup_store.S3Store(config, client=StandInClient(keys))
    backups = sorted(store.list("postgresql", "chajipoa"), key=lambda b: b["time"])
    assert [(b["name"], b["reason"], b["time"]) for b in backups] == [
        ("chajipoa-20261120T101500Z-pre-deploy", "pre-deploy", "2026-11-20T10:15:00Z"),
        ("chajipoa-20261123T020000Z-daily", "daily", "2026-11-23T02:00:00Z"),
    ]
    assert backups[0]["keys"] == [prefix + "chajipoa-20261120T101500Z-pre-deploy.dump",
                                  prefix + "chajipoa-20261120T101500Z-pre-deploy.manifest.json"]


def test_credentials_file_fills_only_what_the_environment_lacks(tmp_path, monkeypatch):
    path = tmp_path / "backup.env"
    path.write_text("# comment\nAWS_ACCESS_KEY_ID=from-file\nREDIS_PASSWORD=a=b\n\n")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.delenv("REDIS_PASSWORD", raising=False)
    backup_config.load_env_file(str(path))
    assert os.environ["AWS_ACCESS_KEY_ID"] == "from-env"
    assert os.environ["REDIS_PASSWORD"] == "a=b"
    backup_config.load_env_file(str(tmp_path / "absent"))


# --- MongoDB, through a stand-in mongodump (a mock, named as such: MongoDB's tools cannot be
# installed here); the archive it writes follows mongo-tools' format specification.

MONGODB = {"enabled": True, "name": "mongodb-rs0", "hosts": ["10.0.3.11:27017", "10.0.3.12:27017"],
           "replica_set": "rs0", "user": "backup"}


@pytest.fixture
def mongodb_config(tmp_path, monkeypatch):
    tools = tmp_path / "tools"
    tools.mkdir()
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MONGODB_PASSWORD", "p@ss:w/rd\"'")
    monkeypatch.setenv(backup_config.MANIFEST_KEY_ENV, KEY)
    config = backup_program.Config({"backup_dir": str(tmp_path / "backups"), "mongodb": MONGODB,
                                    "metrics_file": str(tmp_path / "metrics.prom")})
    return config, tools


def test_mongodb_uri_escapes_credentials_and_names_the_replica_set():
    uri = backup_sources.mongodb_uri(MONGODB, "p@ss:w/rd")
    assert uri == ("mongodb://backup:p%40ss%3Aw%2Frd@10.0.3.11:27017,10.0.3.12:27017/"
                   "?authSource=admin&replicaSet=rs0&readPreference=secondaryPreferred")


def test_mongodb_uri_over_tls_checks_the_server_against_the_ca_bundle():
    uri = backup_sources.mongodb_uri({**MONGODB, "tls": True, "cacert": "/etc/chajipoa/mongodb-ca.crt"}, "pw")
    assert uri.endswith("&tls=true&tlsCAFile=%2Fetc%2Fchajipoa%2Fmongodb-ca.crt&retryWrites=false")


def test_mongodb_backup_records_the_archives_collections_and_keeps_the_password_off_the_command_line(mongodb_config):
    config, tools = mongodb_config
    _plan_file, record = mongo_archives.stand_in_mongodump(tools, {"collections": {"chajipoa.rentals": 40, "chajipoa.stations": 6}})
    assert backup_program.targets(config) == [("mongodb", "mongodb-rs0")]
    manifest, report = backup_program.take_backup(config, "mongodb", "mongodb-rs0", "daily")
    assert report.passed, report.failure_message()
    assert report.status("collections in archive") == "passed"
    assert {(c["database"], c["name"]): c["documents"] for c in manifest["collections"]} == {
        ("", "oplog"): 2, ("chajipoa", "rentals"): 40, ("chajipoa", "stations"): 6}
    assert (manifest["server_version"], manifest["compressed"], manifest["file"]) == (
        "7.0.14", True, manifest["name"] + ".archive")
    called = json.loads(record.read_text())
    assert "--oplog" in called["argv"] and "--gzip" in called["argv"]
    assert not any("p@ss" in argument or "p%40ss" in argument for argument in called["argv"])
    assert called["options_mode"] == 0o600
    assert yaml.safe_load(called["options"])["uri"] == backup_sources.mongodb_uri(MONGODB, "p@ss:w/rd\"'")
    directory = config.directory("mongodb", "mongodb-rs0")
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [manifest["file"], manifest["name"] + ".manifest.json", manifest["name"] + ".verify.json"])


@pytest.mark.parametrize("plan, message", [
    ({"exit": 1, "collections": {}}, "mongodump exited 1: Failed: can't create session"),
    ({"truncate": True, "collections": {"chajipoa.rentals": 400}}, "archive is incomplete"),
])
def test_failed_mongodb_dump_names_the_cause_and_keeps_earlier_backups(mongodb_config, plan, message):
    config, tools = mongodb_config
    plan_file, _record = mongo_archives.stand_in_mongodump(tools, {"collections": {"chajipoa.rentals": 3}})
    earlier, _report = backup_program.take_backup(config, "mongodb", "mongodb-rs0", "daily")
    plan_file.write_text(json.dumps(plan))
    with pytest.raises(backup_program.BackupFailed, match=message):
        backup_program.take_backup(config, "mongodb", "mongodb-rs0", "manual")
    backups = backup_store.LocalStore(config).list("mongodb", "mongodb-rs0")
    assert [b["name"] for b in backups] == [earlier["name"]]
    assert not [p for p in config.directory("mongodb", "mongodb-rs0").iterdir() if p.name.startswith(".partial")]


def test_quick_check_names_a_collection_whose_count_differs_from_the_manifest(mongodb_config):
    config, tools = mongodb_config
    mongo_archives.stand_in_mongodump(tools, {"collections": {"chajipoa.rentals": 40, "chajipoa.stations": 6}})
    manifest, _report = backup_program.take_backup(config, "mongodb", "mongodb-rs0", "daily")
    manifest_path = config.directory("mongodb", "mongodb-rs0") / (manifest["name"] + ".manifest.json")
    changed = json.loads(manifest_path.read_text())
    changed["collections"] = [dict(c, documents=41) if c["name"] == "rentals" else c for c in changed["collections"]]
    changed["collections"].append({"database": "chajipoa", "name": "payments", "documents": 9, "bytes": 1})
    manifest_path.write_text(json.dumps(changed))
    report = backup_program.verify_one(config, manifest_path.with_name(manifest["file"]), "quick", KEY)
    failure = report.failure_message()
    assert report.status("collections in archive") == "failed"
    assert "chajipoa.payments" in failure and "chajipoa.rentals (40, 41)" in failure


@pytest.mark.parametrize("damage, failed", [
    (lambda data: data[: len(data) // 2], {"size", "sha256", "collections in archive"}),
    (lambda data: data[: len(data) // 2] + bytes(b ^ 0xFF for b in data[len(data) // 2:][:16]) + data[len(data) // 2 + 16:],
     {"sha256", "collections in archive"}),
], ids=["truncated", "bytes flipped in the middle"])
def test_quick_check_names_a_damaged_mongodb_archive(mongodb_config, damage, failed):
    config, tools = mongodb_config
    mongo_archives.stand_in_mongodump(tools, {"collections": {"chajipoa.rentals": 4000, "chajipoa.stations": 60}})
    manifest, _report = backup_program.take_backup(config, "mongodb", "mongodb-rs0", "daily")
    path = config.directory("mongodb", "mongodb-rs0") / manifest["file"]
    path.write_bytes(damage(path.read_bytes()))
    report = backup_program.verify_one(config, path, "quick", KEY)
    assert {entry["name"] for entry in report.failed} == failed
    assert "compressed archive is damaged" in report.failure_message()


# --- signing, failures that must show, leftovers, the lock, pruning -------------------------------

PROGRAM = ("import sys; from ansible_collections.chajipoa.platform.plugins.module_utils.backup_program import main; "
           "sys.exit(main())")
MONGO_DB = "mongodb-rs0"


def config_file(config: backup_program.Config) -> Path:
    path = config.backup_dir.parent / "backup.json"
    path.write_text(json.dumps(config.data))
    return path


def metrics(config: backup_program.Config) -> list[str]:
    return config.metrics_file.read_text().splitlines()


def run_success(config) -> str:
    return next(line for line in metrics(config) if line.startswith("chajipoa_backup_last_run_success{"))


def program(config: backup_program.Config, *args: str, path: Path) -> subprocess.Popen:
    """The program as the timer runs it: a process of its own, finding its tools in path first."""
    return subprocess.Popen([sys.executable, "-c", PROGRAM, "--config", str(config_file(config)), *args],
                            env=dict(os.environ, PYTHONPATH=str(ROOT / "collections"),
                                     PATH=f"{path}{os.pathsep}{os.environ['PATH']}"),
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_every_manifest_is_signed_with_the_environments_key(mongodb_config):
    config, tools = mongodb_config
    mongo_archives.stand_in_mongodump(tools, {"collections": {"chajipoa.rentals": 4}})
    manifest, _report = backup_program.take_backup(config, "mongodb", MONGO_DB, "daily")
    stored = backup_manifest.load(config.directory("mongodb", MONGO_DB) / (manifest["name"] + ".manifest.json"))
    assert backup_manifest.signature_status(stored, KEY) == "valid"
    with pytest.raises(backup_manifest.ManifestError, match=f"Cannot trust backup {manifest['name']}"):
        backup_manifest.signature_status(stored, "another environment's key")


def test_a_run_without_a_manifest_key_fails_by_name_and_the_metrics_say_so(mongodb_config, monkeypatch, capfd):
    config, tools = mongodb_config
    mongo_archives.stand_in_mongodump(tools, {"collections": {"chajipoa.rentals": 4}})
    monkeypatch.delenv(backup_config.MANIFEST_KEY_ENV)
    assert backup_program.main(["--config", str(config_file(config)), "run"]) == 1
    assert "CHAJIPOA_BACKUP_MANIFEST_KEY is set neither" in capfd.readouterr().err
    assert run_success(config) == f'chajipoa_backup_last_run_success{{kind="mongodb",database="{MONGO_DB}"}} 0'
    assert not list(config.directory("mongodb", MONGO_DB).glob("*.manifest.json"))
    # Never a success: the metrics still give BackupTooOld an age, from this first attempt.
    assert "chajipoa_backup_last_success_timestamp_seconds" not in samples(config)
    assert len(samples(config)["chajipoa_backup_first_attempt_timestamp_seconds"]) == 1


@pytest.mark.parametrize("content", ["", '{"backups": {'], ids=["empty", "torn"])
def test_unreadable_state_and_verification_records_are_reported_and_rebuilt(mongodb_config, capfd, content):
    config, tools = mongodb_config
    mongo_archives.stand_in_mongodump(tools, {"collections": {"chajipoa.rentals": 4}})
    argv = ["--config", str(config_file(config))]
    assert backup_program.main(argv + ["run"]) == 0
    state = config.state_dir / "state.json"
    record = next(config.directory("mongodb", MONGO_DB).glob("*.verify.json"))
    state.write_text(content)
    record.write_text(content)
    capfd.readouterr()
    assert backup_program.main(argv + ["list"]) == 0
    out, err = capfd.readouterr()
    assert [b["verification"] for b in json.loads(out)[f"mongodb/{MONGO_DB}"]] == [None]
    assert f"Cannot read verification record {record}" in err
    assert backup_program.main(argv + ["run", "--reason", "manual"]) == 0
    err = capfd.readouterr().err
    assert f"Cannot read state file {state}" in err and f"Cannot read verification record {record}" in err
    assert json.loads(state.read_text())["backups"][f"mongodb/{MONGO_DB}"]["last_run_success"] == 1
    # Pruned by the policy (one backup a day) like any other; unverified, it did not count as verified.
    assert not record.exists()
    assert backup_program.main(argv + ["verify"]) == 0


def test_verify_fails_for_a_backup_whose_manifest_cannot_be_read(mongodb_config, capfd):
    config, tools = mongodb_config
    mongo_archives.stand_in_mongodump(tools, {"collections": {"chajipoa.rentals": 4}})
    for reason in ("daily", "manual"):
        backup_program.take_backup(config, "mongodb", MONGO_DB, reason)
    newest = backup_store.LocalStore(config).list("mongodb", MONGO_DB)[0]
    Path(newest["manifest"]).write_text("")
    assert backup_program.main(["--config", str(config_file(config)), "verify", "--latest", "1"]) == 1
    assert f"{newest['name']} quick FAILED: Cannot verify backup" in capfd.readouterr().err
    assert (f'chajipoa_backup_verify_last_success{{kind="mongodb",database="{MONGO_DB}",mode="quick"}} 0'
            in metrics(config))


RUNNING = "chajipoa_backup_running_since_timestamp_seconds"
VERIFY_RUNNING = "chajipoa_backup_verify_running_since_timestamp_seconds"


def samples(config: backup_program.Config) -> dict[str, list[str]]:
    return samples_by_name(config.metrics_file.read_text())


@contextlib.contextmanager
def run_held_in_mongodump(config: backup_program.Config, tmp_path: Path) -> Iterator[subprocess.Popen]:
    """`run --reason manual` as a process of its own, held in a stand-in mongodump that hangs (a mock,
    named as such), as a stuck dump does; yielded once mongodump has started."""
    hanging = tmp_path / "hanging"
    hanging.mkdir()
    started = tmp_path / "mongodump.pid"
    (hanging / "mongodump").write_text(f"#!/bin/sh\necho $$ > {started}\nexec sleep 120\n")
    (hanging / "mongodump").chmod(0o755)
    run = program(config, "run", "--reason", "manual", path=hanging)
    try:
        deadline = time.monotonic() + 30
        while not (started.exists() and started.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield run
    finally:
        run.kill()
        run.communicate()
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(started.read_text()), signal.SIGKILL)


def test_a_run_killed_mid_dump_shows_as_failed_and_the_next_run_ends_it_and_removes_its_password_file(
        mongodb_config, tmp_path, capfd):
    config, tools = mongodb_config
    mongo_archives.stand_in_mongodump(tools, {"collections": {"chajipoa.rentals": 4}})
    argv = ["--config", str(config_file(config))]
    assert backup_program.main(argv + ["run"]) == 0
    assert RUNNING not in samples(config)
    with run_held_in_mongodump(config, tmp_path) as run:
        partial = config.directory("mongodb", MONGO_DB) / f".partial-{run.pid}"
        assert (partial / "mongodump.yaml").exists(), "the options file holds the password while mongodump runs"
        # Under way, the attempt says when it started: the monitoring tells a long run from a failed one.
        [running] = samples(config)[RUNNING]
        assert running.startswith(f'{RUNNING}{{kind="mongodb",database="{MONGO_DB}"}} ')
        run.send_signal(signal.SIGKILL)
        run.wait()
    assert run_success(config) == f'chajipoa_backup_last_run_success{{kind="mongodb",database="{MONGO_DB}"}} 0'
    # Nothing could record its end: it stays under way until a run holds the lock again.
    assert samples(config)[RUNNING] == [running]
    assert partial.exists()
    capfd.readouterr()
    # Any command that takes the lock knows that no attempt is still under way.
    assert backup_program.main(argv + ["verify"]) == 0
    assert (f"backup mongodb/{MONGO_DB}: recorded as failed, left under way by a run that did not finish"
            in capfd.readouterr().err)
    assert RUNNING not in samples(config)
    assert run_success(config).endswith(" 0")
    assert not partial.exists()
    assert backup_program.main(argv + ["run", "--reason", "weekly"]) == 0
    assert run_success(config).endswith(" 1")


def test_a_run_terminated_by_systemd_records_its_attempt_as_failed(mongodb_config, tmp_path):
    """systemd's TimeoutStartSec (or a stop) sends SIGTERM: the run ends through its clean-up and
    records the attempt under way as failed, so that BackupFailed reports it at once."""
    config, tools = mongodb_config
    mongo_archives.stand_in_mongodump(tools, {"collections": {"chajipoa.rentals": 4}})
    with run_held_in_mongodump(config, tmp_path) as run:
        partial = config.directory("mongodb", MONGO_DB) / f".partial-{run.pid}"
        assert RUNNING in samples(config)
        run.send_signal(signal.SIGTERM)
        _out, err = run.communicate(timeout=60)
    assert run.returncode == 1, err
    assert "chajipoa-backup run: FAILED: terminated by SIGTERM" in err
    assert run_success(config) == f'chajipoa_backup_last_run_success{{kind="mongodb",database="{MONGO_DB}"}} 0'
    assert RUNNING not in samples(config)
    assert not partial.exists()
    assert not json.loads((config.state_dir / "state.json").read_text())["backups"][f"mongodb/{MONGO_DB}"].get(
        "running_since")


def test_a_backup_is_running_until_it_ends_and_its_age_counts_from_its_first_attempt(mongodb_config, monkeypatch):
    config, _tools = mongodb_config
    clock = FakeClock()
    monkeypatch.setattr(backup_state.time, "time", clock)
    state = backup_state.State(config)
    labels = f'{{kind="mongodb",database="{MONGO_DB}"}}'
    first = f"chajipoa_backup_first_attempt_timestamp_seconds{labels} 1000.0"
    clock.now = 1000.0
    state.backup_started("mongodb", MONGO_DB)
    state.save()
    assert samples(config)[RUNNING] == [f"{RUNNING}{labels} 1000.0"]
    assert samples(config)["chajipoa_backup_first_attempt_timestamp_seconds"] == [first]
    clock.now = 1060.0
    state.backup("mongodb", MONGO_DB, False)
    state.save()
    failed = samples(config)
    assert RUNNING not in failed and "chajipoa_backup_last_success_timestamp_seconds" not in failed
    # Never succeeded: the first attempt is what BackupTooOld measures the age from, whatever fails later.
    clock.now = 5000.0
    state.backup("mongodb", MONGO_DB, False)
    state.save()
    assert samples(config)["chajipoa_backup_first_attempt_timestamp_seconds"] == [first]
    clock.now = 9000.0
    state.backup_started("mongodb", MONGO_DB)
    state.backup("mongodb", MONGO_DB, True, {"bytes": 5, "name": "x"})
    state.save()
    succeeded = samples(config)
    assert RUNNING not in succeeded
    assert succeeded["chajipoa_backup_last_success_timestamp_seconds"] == [
        f"chajipoa_backup_last_success_timestamp_seconds{labels} 9000.0"]
    assert succeeded["chajipoa_backup_first_attempt_timestamp_seconds"] == [first]


def test_a_verification_is_running_until_it_ends_even_when_there_is_nothing_to_verify(mongodb_config, capfd):
    config, tools = mongodb_config
    mongo_archives.stand_in_mongodump(tools, {"collections": {"chajipoa.rentals": 4}})
    argv = ["--config", str(config_file(config))]
    assert backup_program.main(argv + ["verify", "--mode", "deep"]) == 1
    failed = samples(config)
    assert VERIFY_RUNNING not in failed
    assert failed["chajipoa_backup_verify_last_success"] == [
        f'chajipoa_backup_verify_last_success{{kind="mongodb",database="{MONGO_DB}",mode="deep"}} 0']
    assert backup_program.main(argv + ["run"]) == 0
    assert backup_program.main(argv + ["verify", "--mode", "deep"]) == 0
    assert VERIFY_RUNNING not in samples(config)
    assert samples(config)["chajipoa_backup_verify_last_success"][0].endswith('mode="deep"} 1')


@pytest.mark.parametrize("minimum, kept", [(0, ["newest"]), (2, ["newest", "third", "fourth"]), (9, ["newest", "third", "fourth"])])
def test_pruning_keeps_the_verified_minimum_whatever_the_policy(mongodb_config, minimum, kept):
    config, tools = mongodb_config
    mongo_archives.stand_in_mongodump(tools, {"collections": {"chajipoa.rentals": 4}})
    names = {}
    # Taken within a second or two: at equal times the name (here the reason) orders them.
    for order, label in enumerate(("fourth", "third", "second", "newest")):
        manifest, _report = backup_program.take_backup(config, "mongodb", MONGO_DB, f"run{order}")
        names[label] = manifest["name"]
    directory = config.directory("mongodb", MONGO_DB)
    for label in ("newest", "second"):
        record = directory / (names[label] + ".verify.json")
        record.write_text(json.dumps(dict(json.loads(record.read_text()), passed=False)))
    store = backup_store.LocalStore(config)
    store.policy = {"daily_days": 0, "weekly_days": 0, "monthly_days": 0, "pre_deploy_keep": 0}
    backup_store.prune(store, "mongodb", MONGO_DB, minimum)
    assert sorted(b["name"] for b in store.list("mongodb", MONGO_DB)) == sorted(names[label] for label in kept)


def test_lock_timeout_names_the_holder_and_how_long_it_waited(tmp_path):
    lock = tmp_path / "lock"
    with backup_state.RunLock(lock, 1, "chajipoa-backup run --reason daily"):
        with pytest.raises(backup_state.LockTimeout) as raised:
            with backup_state.RunLock(lock, 0.3, "chajipoa-backup verify --mode thorough"):
                pytest.fail("the lock was taken twice")
    message = str(raised.value)
    assert message.startswith(f"Cannot start chajipoa-backup verify --mode thorough: another chajipoa-backup run "
                              f"(pid {os.getpid()}, started at 20")
    assert f"command 'chajipoa-backup run --reason daily') holds the lock {lock} since 20" in message
    assert message.endswith("; waited 0.3 s (lock_timeout 0.3 s)")


def test_a_run_that_cannot_get_the_lock_fails_with_the_metrics(mongodb_config, capfd):
    config, tools = mongodb_config
    mongo_archives.stand_in_mongodump(tools, {"collections": {"chajipoa.rentals": 4}})
    assert backup_program.main(["--config", str(config_file(config)), "run"]) == 0
    with backup_state.RunLock(config.lock_path, 1, "chajipoa-backup run --reason pre-deploy"):
        assert backup_program.main(["--config", str(config_file(config)), "--lock-timeout", "0.2", "run"]) == 1
    assert "Cannot start chajipoa-backup --config" in capfd.readouterr().err
    assert run_success(config).endswith(" 0")


# --- Redis over TLS, through a stand-in redis-cli (a mock, named as such: it records its arguments)

STAND_IN_REDIS_CLI = """#!{python}
import json, sys
with open({record!r}, "a") as handle:
    handle.write(json.dumps(sys.argv[1:]) + "\\n")
if "--rdb" in sys.argv:
    open(sys.argv[sys.argv.index("--rdb") + 1], "wb").write(b"REDIS0011")
else:
    print("redis_version:7.0.15")
"""


@pytest.mark.parametrize("tls, expected", [
    ({"tls": True, "cacert": "/etc/ssl/chajipoa/ca.crt"}, ["--tls", "--cacert", "/etc/ssl/chajipoa/ca.crt"]),
    ({"tls": False}, []),
], ids=["tls", "plain"])
def test_redis_snapshot_goes_over_tls_when_configured(tmp_path, monkeypatch, tls, expected):
    record = tmp_path / "argv.jsonl"
    (tmp_path / "redis-cli").write_text(STAND_IN_REDIS_CLI.format(python=sys.executable, record=str(record)))
    (tmp_path / "redis-cli").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    redis = {"enabled": True, "host": "10.0.2.11", "port": 6380, **tls}
    config = backup_program.Config({"backup_dir": str(tmp_path), "redis": redis})
    backup_sources.dump_redis(config, "redis-cache1", tmp_path / "snapshot.rdb")
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert [call[4:4 + len(expected)] for call in calls] == [expected, expected]
    assert all(("--tls" in call) == bool(expected) for call in calls)


def test_fetch_from_local_copies_refuses_a_manifest_whose_signature_does_not_match(mongodb_config, tmp_path, capfd):
    config, tools = mongodb_config
    mongo_archives.stand_in_mongodump(tools, {"collections": {"chajipoa.rentals": 4}})
    good, _good_report = backup_program.take_backup(config, "mongodb", MONGO_DB, "daily")
    altered, _altered_report = backup_program.take_backup(config, "mongodb", MONGO_DB, "manual")
    path = config.directory("mongodb", MONGO_DB) / (altered["name"] + ".manifest.json")
    path.write_text(json.dumps(dict(json.loads(path.read_text()), reason="daily")))
    destination = tmp_path / "fetched"
    argv = ["--config", str(config_file(config)), "fetch", "--from", "local", "--latest", "2", "--to", str(destination)]
    assert backup_program.main(argv) == 1
    out, err = capfd.readouterr()
    assert f"FAILED: Cannot fetch backup {altered['name']}: Cannot trust backup {altered['name']}" in err
    assert json.loads(out) == [str(destination / "mongodb" / MONGO_DB / good["file"])]
    assert sorted(p.name for p in (destination / "mongodb" / MONGO_DB).iterdir()) == sorted(
        [good["file"], good["name"] + ".manifest.json"])


class StandInStore:
    """A store's listing and deletions, for prune's decision alone."""

    def __init__(self, label: str, policy: dict, backups: list[dict]):
        self.label, self.policy, self.backups, self.deletes, self.deleted = label, policy, backups, True, []

    def list(self, kind, database):
        return self.backups

    def delete(self, kind, database, backup):
        self.deleted.append(backup["name"])


@pytest.mark.parametrize("tier, complete", [
    ("local", {"daily_days": 7, "weekly_days": 0, "monthly_days": 0, "pre_deploy_keep": 2}),
    ("s3", {"daily_days": 30, "weekly_days": 90, "monthly_days": 365, "pre_deploy_keep": 5}),
])
def test_pruning_completes_a_partial_policy_from_its_tiers_defaults(tier, complete):
    """A configuration with only daily_days: the other keys come from the tier's defaults (local:
    no weeklies or monthlies), not from the guide's S3 policy for every tier."""
    now = dt.datetime.now(dt.timezone.utc)
    backups = [{"name": f"db-{age}", "reason": "daily", "verification": {"passed": True},
                "time": backup_manifest.iso(now - dt.timedelta(days=age, minutes=1))} for age in range(400)]
    store = StandInStore(tier, {"daily_days": complete["daily_days"]}, backups)
    backup_store.prune(store, "postgresql", "db", 2)
    assert store.deleted == [backup["name"] for backup in gfs_retention.plan(backups, complete, now)["delete"]]
