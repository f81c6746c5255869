"""ElastiCache backups through the service's API, against moto's ElastiCache (the moto_s3 server
serves every AWS API moto has).

The program asks for a snapshot of a real (moto) replication group, records it, uploads the record
with its manifest to S3, checks at every verification that the service still holds that very
snapshot, and deletes the snapshot when retention prunes its backup or the backup is not stored.
moto answers create, describe and delete of snapshots as ElastiCache does; it makes a snapshot
available at once, so the status of a snapshot in progress or failed is stood in for (reported_as).
"""
from __future__ import annotations

import json
import uuid

import pytest

from ansible_collections.chajipoa.platform.plugins.module_utils import (backup_config, backup_manifest, backup_program,
                                                                        backup_store, elasticache_snapshots)

MANIFEST_KEY = "integration-test-manifest-key"
ZERO = {"daily_days": 0, "weekly_days": 0, "monthly_days": 0, "pre_deploy_keep": 0}


@pytest.fixture
def elasticache(moto_s3, aws_env):
    import boto3
    return boto3.client("elasticache", endpoint_url=moto_s3.endpoint_url, region_name=moto_s3.region)


@pytest.fixture
def replication_group(elasticache) -> str:
    group = f"chajipoa-{uuid.uuid4().hex[:8]}"
    elasticache.create_replication_group(ReplicationGroupId=group, ReplicationGroupDescription="backup test",
                                         Engine="redis", EngineVersion="7.1", CacheNodeType="cache.t4g.small",
                                         NumCacheClusters=2, TransitEncryptionEnabled=True, AtRestEncryptionEnabled=True)
    yield group
    for snapshot in elasticache.describe_snapshots(ReplicationGroupId=group)["Snapshots"]:
        elasticache.delete_snapshot(SnapshotName=snapshot["SnapshotName"])
    elasticache.delete_replication_group(ReplicationGroupId=group)


@pytest.fixture
def config_file(tmp_path, moto_s3, s3_bucket, replication_group, monkeypatch):
    """The program's configuration for that group alone (no PostgreSQL), with S3 and a one-backup local retention."""
    monkeypatch.setenv(backup_config.MANIFEST_KEY_ENV, MANIFEST_KEY)

    def write(group: str = replication_group, timeout: float = 30) -> str:
        data = {"host": "backup1", "backup_dir": str(tmp_path / "backups"), "metrics_file": str(tmp_path / "metrics.prom"),
                "postgresql": {"databases": []},
                "elasticache": {"enabled": True, "name": "elasticache-cache", "replication_group_id": group,
                                "region": moto_s3.region, "endpoint_url": moto_s3.endpoint_url, "timeout_seconds": timeout,
                                "poll_seconds": 0.05},
                "s3": {"bucket": s3_bucket, "prefix": "production/backup1/", "endpoint_url": moto_s3.endpoint_url,
                       "region": moto_s3.region},
                "retention": {"local": ZERO, "s3": {}, "verified_minimum": 1}}
        path = tmp_path / f"backup-{group}.json"
        path.write_text(json.dumps(data))
        return str(path)
    return write


def run(config_file: str, *args: str) -> int:
    return backup_program.main(["--config", config_file, *args])


def backups(config_file: str) -> list[dict]:
    local = backup_store.LocalStore(backup_program.Config.load(config_file))
    return local.list("elasticache", "elasticache-cache")


def snapshots(elasticache, group: str) -> dict[str, dict]:
    return {s["SnapshotName"]: s for s in elasticache.describe_snapshots(ReplicationGroupId=group)["Snapshots"]}


def metric(tmp_path, name: str) -> str:
    labels = 'kind="elasticache",database="elasticache-cache"'
    return next(line.rsplit(" ", 1)[1] for line in (tmp_path / "metrics.prom").read_text().splitlines()
                if line.startswith(f"{name}{{{labels}}} "))


def test_a_run_snapshots_the_group_records_it_and_sends_the_record_off_site(
        config_file, elasticache, replication_group, moto_s3, s3_bucket, tmp_path):
    assert run(config_file(), "run") == 0
    (backup,) = backups(config_file())
    manifest = backup_manifest.load(backup["manifest"])
    assert manifest["kind"] == "elasticache" and manifest["snapshot"]["snapshot_name"] == backup["name"]
    held = snapshots(elasticache, replication_group)[backup["name"]]
    assert held["SnapshotStatus"] == "available" and held["ARN"] == manifest["snapshot"]["arn"]
    assert manifest["snapshot"]["engine_version"] == "7.1" and manifest["server_version"] == "7.1"
    assert backup["verification"]["passed"]
    keys = [item["Key"] for item in moto_s3.client().list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert {key.rsplit("/", 1)[1] for key in keys} == {backup["name"] + ".snapshot", backup["name"] + ".manifest.json"}
    assert metric(tmp_path, "chajipoa_backup_last_run_success") == "1"


def test_a_snapshot_deleted_behind_the_programs_back_fails_verification(config_file, elasticache, replication_group, capsys):
    assert run(config_file(), "run") == 0
    (backup,) = backups(config_file())
    elasticache.delete_snapshot(SnapshotName=backup["name"])
    capsys.readouterr()
    assert run(config_file(), "verify", "--json") == 1
    (report,) = json.loads(capsys.readouterr().out)
    (failure,) = [check for check in report["checks"] if check["status"] == "failed"]
    assert failure["name"] == "snapshot" and f"has no snapshot {backup['name']}" in failure["message"]


def test_a_tampered_record_fails_before_the_service_is_asked(config_file, replication_group, capsys):
    assert run(config_file(), "run") == 0
    (backup,) = backups(config_file())
    record = json.loads(open(backup["file"], encoding="utf-8").read())
    record["snapshot_name"] = "someone-elses-snapshot"
    with open(backup["file"], "w", encoding="utf-8") as handle:
        json.dump(record, handle)
    capsys.readouterr()
    assert run(config_file(), "verify", "--json") == 1
    (report,) = json.loads(capsys.readouterr().out)
    failed = {check["name"]: check["message"] for check in report["checks"] if check["status"] == "failed"}
    assert list(failed) == ["size", "sha256", "snapshot"], failed
    assert failed["snapshot"] == "the snapshot descriptor differs from the manifest's"


def test_pruning_a_backup_deletes_its_snapshot_and_keeps_the_newest(config_file, elasticache, replication_group):
    assert run(config_file(), "run", "--reason", "daily") == 0
    assert run(config_file(), "run", "--reason", "manual") == 0
    (kept,) = backups(config_file())
    assert kept["name"].endswith("-manual")
    assert list(snapshots(elasticache, replication_group)) == [kept["name"]]


def test_a_group_that_does_not_exist_fails_the_backup_by_name(config_file, tmp_path, capsys):
    assert run(config_file("no-such-group"), "run") == 1
    assert "Cannot snapshot ElastiCache no-such-group" in capsys.readouterr().err
    assert metric(tmp_path, "chajipoa_backup_last_run_success") == "0"
    assert backups(config_file("no-such-group")) == []


def reported_as(status: str):
    """describe() as the service answers while a snapshot is in progress or after it failed: moto
    makes every snapshot available at once, so the status is stood in for; the snapshot is moto's."""
    describe = elasticache_snapshots.describe

    def stand_in(elasticache, snapshot_name):
        snapshot = describe(elasticache, snapshot_name)
        return snapshot and dict(snapshot, SnapshotStatus=status)
    return stand_in


def disk_full(*_args):
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("fault, patch, message", [
    ("still creating at the timeout", ("describe", reported_as("creating")), "is still creating after 0 s"),
    ("failed in the service", ("describe", reported_as("failed")), "is failed instead of available"),
    ("not stored: a full disk", ("put", disk_full), "No space left on device"),
])
def test_a_snapshot_whose_backup_is_not_stored_is_deleted(config_file, elasticache, replication_group, tmp_path,
                                                          monkeypatch, capsys, fault, patch, message):
    """A snapshot the run asked for but could not keep as a backup is deleted by that run: left
    behind, it would stay in ElastiCache (and on the bill) recorded by nothing that prunes."""
    target, stand_in = patch
    if target == "describe":
        monkeypatch.setattr(elasticache_snapshots, "describe", stand_in)
    else:
        monkeypatch.setattr(backup_store.LocalStore, "put", stand_in)
    assert run(config_file(timeout=0.2), "run") == 1
    assert message in capsys.readouterr().err
    assert backups(config_file()) == []
    assert snapshots(elasticache, replication_group) == {}
    assert list((tmp_path / "backups").rglob(f"*{elasticache_snapshots.UNCLAIMED_SUFFIX}")) == []


def test_a_snapshot_a_killed_run_left_unclaimed_is_deleted_by_the_next_run(config_file, elasticache, replication_group,
                                                                           tmp_path, monkeypatch, capsys):
    """Killed while it waited (SIGKILL, power loss) or refused the deletion (AWS deletes no snapshot
    while it is being created): the record of the unclaimed snapshot stays, and the next run deletes it."""
    def refused(_recorded):
        raise elasticache_snapshots.SnapshotFailed("InvalidSnapshotState: snapshot is being created")
    with monkeypatch.context() as patch:
        patch.setattr(elasticache_snapshots, "describe", reported_as("creating"))
        patch.setattr(elasticache_snapshots, "release", refused)
        assert run(config_file(timeout=0.2), "run") == 1
    (left,) = snapshots(elasticache, replication_group)
    assert f"Cannot delete ElastiCache snapshot {left}" in capsys.readouterr().err
    assert run(config_file(), "run", "--reason", "manual") == 0
    assert f"deleted ElastiCache snapshot {left}, which no stored backup records" in capsys.readouterr().err
    (kept,) = backups(config_file())
    assert list(snapshots(elasticache, replication_group)) == [kept["name"]]
    assert list((tmp_path / "backups").rglob(f"*{elasticache_snapshots.UNCLAIMED_SUFFIX}")) == []
