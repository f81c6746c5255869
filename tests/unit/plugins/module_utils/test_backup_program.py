"""Unit tests of the backup program's parts that need no server: metrics text, S3 listing,
credentials file, and MongoDB backups through a stand-in mongodump.

The S3 listing test uses a stand-in paginator (a mock, named as such); the program's real S3
traffic, PostgreSQL and Redis backups are tested against real servers in
tests/integration/test_backups.py and molecule/backup.
"""
from __future__ import annotations

import json
import os

import pytest
import yaml

from ansible_collections.chajipoa.platform.plugins.module_utils import backup_program
from tests import mongo_archives


def test_metrics_are_node_exporter_textfile_gauges():
    text = backup_program.render_metrics({
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


def test_label_values_are_escaped():
    text = backup_program.render_metrics({"backups": {"x": {"kind": "postgresql", "database": 'we"ird\\db',
                                                            "last_run": 1}}, "verifications": {}})
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

    def get_paginator(self, _):
        return StandInPaginator(self.keys)


def test_s3_listing_pairs_files_with_manifests_and_reads_reasons_with_dashes():
    prefix = "prod/db1/postgresql/chajipoa/"
    keys = [prefix + name for name in (
        "chajipoa-20261123T020000Z-daily.dump", "chajipoa-20261123T020000Z-daily.manifest.json",
        "chajipoa-20261120T101500Z-pre-deploy.dump", "chajipoa-20261120T101500Z-pre-deploy.manifest.json",
        "chajipoa-20261119T020000Z-daily.dump",  # no manifest: an interrupted upload, not a backup
    )]
    config = backup_program.Config({"backup_dir": "/x", "s3": {"bucket": "b", "prefix": "prod/db1/"}})
    backups = sorted(backup_program.s3_backups(config, StandInClient(keys), "postgresql", "chajipoa"), key=lambda b: b["time"])
    assert [(b["name"], b["reason"], b["time"]) for b in backups] == [
        ("chajipoa-20261120T101500Z-pre-deploy", "pre-deploy", "2026-11-20T10:15:00+00:00"),
        ("chajipoa-20261123T020000Z-daily", "daily", "2026-11-23T02:00:00+00:00"),
    ]
    assert backups[0]["keys"] == [prefix + "chajipoa-20261120T101500Z-pre-deploy.dump",
                                  prefix + "chajipoa-20261120T101500Z-pre-deploy.manifest.json"]


def test_credentials_file_fills_only_what_the_environment_lacks(tmp_path, monkeypatch):
    path = tmp_path / "backup.env"
    path.write_text("# comment\nAWS_ACCESS_KEY_ID=from-file\nREDIS_PASSWORD=a=b\n\n")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.delenv("REDIS_PASSWORD", raising=False)
    backup_program.load_env_file(str(path))
    assert os.environ["AWS_ACCESS_KEY_ID"] == "from-env"
    assert os.environ["REDIS_PASSWORD"] == "a=b"
    backup_program.load_env_file(str(tmp_path / "absent"))


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
    config = backup_program.Config({"backup_dir": str(tmp_path / "backups"), "mongodb": MONGODB})
    return config, tools


def test_mongodb_uri_escapes_credentials_and_names_the_replica_set():
    uri = backup_program.mongodb_uri(MONGODB, "p@ss:w/rd")
    assert uri == ("mongodb://backup:p%40ss%3Aw%2Frd@10.0.3.11:27017,10.0.3.12:27017/"
                   "?authSource=admin&replicaSet=rs0&readPreference=secondaryPreferred")


def test_mongodb_backup_records_the_archives_collections_and_keeps_the_password_off_the_command_line(mongodb_config):
    config, tools = mongodb_config
    _, record = mongo_archives.stand_in_mongodump(tools, {"collections": {"chajipoa.rentals": 40, "chajipoa.stations": 6}})
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
    assert yaml.safe_load(called["options"])["uri"] == backup_program.mongodb_uri(MONGODB, "p@ss:w/rd\"'")
    directory = config.directory("mongodb", "mongodb-rs0")
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [manifest["file"], manifest["name"] + ".manifest.json", manifest["name"] + ".verify.json"])


@pytest.mark.parametrize("plan, message", [
    ({"exit": 1, "collections": {}}, "mongodump exited 1: Failed: can't create session"),
    ({"truncate": True, "collections": {"chajipoa.rentals": 400}}, "archive is incomplete"),
])
def test_failed_mongodb_dump_names_the_cause_and_keeps_earlier_backups(mongodb_config, plan, message):
    config, tools = mongodb_config
    plan_file, _ = mongo_archives.stand_in_mongodump(tools, {"collections": {"chajipoa.rentals": 3}})
    earlier, _ = backup_program.take_backup(config, "mongodb", "mongodb-rs0", "daily")
    plan_file.write_text(json.dumps(plan))
    with pytest.raises(backup_program.BackupFailed, match=message):
        backup_program.take_backup(config, "mongodb", "mongodb-rs0", "manual")
    backups = backup_program.local_backups(config.directory("mongodb", "mongodb-rs0"))
    assert [b["name"] for b in backups] == [earlier["name"]]
    assert not [p for p in config.directory("mongodb", "mongodb-rs0").iterdir() if p.name.startswith(".partial")]


def test_quick_check_names_a_collection_whose_count_differs_from_the_manifest(mongodb_config):
    config, tools = mongodb_config
    mongo_archives.stand_in_mongodump(tools, {"collections": {"chajipoa.rentals": 40, "chajipoa.stations": 6}})
    manifest, _ = backup_program.take_backup(config, "mongodb", "mongodb-rs0", "daily")
    manifest_path = config.directory("mongodb", "mongodb-rs0") / (manifest["name"] + ".manifest.json")
    changed = json.loads(manifest_path.read_text())
    changed["collections"] = [dict(c, documents=41) if c["name"] == "rentals" else c for c in changed["collections"]]
    changed["collections"].append({"database": "chajipoa", "name": "payments", "documents": 9, "bytes": 1})
    manifest_path.write_text(json.dumps(changed))
    report = backup_program.verify_one(config, manifest_path.with_name(manifest["file"]), "quick")
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
    manifest, _ = backup_program.take_backup(config, "mongodb", "mongodb-rs0", "daily")
    path = config.directory("mongodb", "mongodb-rs0") / manifest["file"]
    path.write_bytes(damage(path.read_bytes()))
    report = backup_program.verify_one(config, path, "quick")
    assert {entry["name"] for entry in report.failed} == failed
    assert "compressed archive is damaged" in report.failure_message()
