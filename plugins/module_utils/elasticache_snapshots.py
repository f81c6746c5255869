# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""ElastiCache snapshots as backups: a managed Redis gives no access to its replication stream or
its disk, so the backup program asks the service for a snapshot through its API instead of pulling
an RDB. The backup's file is the snapshot's descriptor (what was asked for and what the service
answered); the snapshot itself stays in ElastiCache until its backup is pruned from the host that
took it, and one whose backup was never stored is deleted (UNCLAIMED_SUFFIX). Used by the program's
dumper, its quick check, its local store and its clean-up of what failed and killed runs left.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

# JSON, named like the other kinds' files (<name><suffix>, the manifest <name>.manifest.json beside it).
DESCRIPTOR_SUFFIX = ".snapshot"
# A snapshot asked for but not (yet) recorded by a stored backup: written in the backup directory
# before the snapshot is asked for and removed once its backup is stored, so that a run that
# fails, or is killed, before then leaves a record from which it, or the next run, deletes the
# snapshot, rather than one in ElastiCache that nothing prunes.
UNCLAIMED_SUFFIX = ".snapshot-unclaimed"
# The descriptor's fields that must still match what the service says at every verification.
_IDENTITY = ("snapshot_name", "arn", "replication_group_id")


class SnapshotFailed(RuntimeError):
    """The service refused the snapshot, lost it, or did not finish it in time."""


def client(region: str, endpoint_url: str | None = None):
    """An ElastiCache client: the host's own credentials (its instance profile, or the program's
    env file), and the endpoint only where one stands in for AWS (tests)."""
    import boto3
    return boto3.client("elasticache", region_name=region, endpoint_url=endpoint_url or None)


def describe(elasticache, snapshot_name: str) -> dict | None:
    """The service's view of one snapshot, or None when it has none of that name."""
    try:
        found = elasticache.describe_snapshots(SnapshotName=snapshot_name)["Snapshots"]
    except elasticache.exceptions.SnapshotNotFoundFault:
        return None
    return found[0] if found else None


def descriptor(snapshot: dict, region: str, endpoint_url: str | None) -> dict:
    """What the backup records of a snapshot: where it is and what it holds."""
    return {
        "snapshot_name": snapshot["SnapshotName"], "arn": snapshot.get("ARN"),
        "replication_group_id": snapshot.get("ReplicationGroupId"), "status": snapshot.get("SnapshotStatus"),
        "engine": snapshot.get("Engine"), "engine_version": snapshot.get("EngineVersion"),
        "node_type": snapshot.get("CacheNodeType"), "kms_key_id": snapshot.get("KmsKeyId"),
        "node_snapshots": [{"cache_cluster_id": node.get("CacheClusterId"), "size": node.get("CacheSize"),
                            "created": str(node.get("SnapshotCreateTime") or "")}
                           for node in snapshot.get("NodeSnapshots") or []],
        "region": region, "endpoint_url": endpoint_url or "",
    }


def take(elasticache, replication_group_id: str, snapshot_name: str, timeout: float, poll: float = 5.0) -> dict:
    """Ask for a snapshot of the replication group and wait until the service calls it available."""
    elasticache.create_snapshot(ReplicationGroupId=replication_group_id, SnapshotName=snapshot_name)
    deadline = time.monotonic() + timeout
    while True:
        snapshot = describe(elasticache, snapshot_name)
        status = (snapshot or {}).get("SnapshotStatus")
        if status == "available":
            return snapshot
        if snapshot is None or status in ("failed", "deleting"):
            raise SnapshotFailed(f"ElastiCache snapshot {snapshot_name} of {replication_group_id} is "
                                 f"{status or 'gone'} instead of available")
        if time.monotonic() >= deadline:
            raise SnapshotFailed(f"ElastiCache snapshot {snapshot_name} of {replication_group_id} is still {status} "
                                 f"after {timeout:.0f} s")
        time.sleep(poll)


def check(recorded: dict) -> None:
    """Raise SnapshotFailed unless the snapshot the descriptor records is still there, available,
    and the same one (name, ARN, replication group)."""
    elasticache = client(recorded["region"], recorded.get("endpoint_url"))
    snapshot = describe(elasticache, recorded["snapshot_name"])
    if snapshot is None:
        raise SnapshotFailed(f"ElastiCache has no snapshot {recorded['snapshot_name']} any more")
    current = descriptor(snapshot, recorded["region"], recorded.get("endpoint_url"))
    if current["status"] != "available":
        raise SnapshotFailed(f"ElastiCache snapshot {recorded['snapshot_name']} is {current['status']}, not available")
    differing = [field for field in _IDENTITY if current[field] != recorded.get(field)]
    if differing:
        raise SnapshotFailed(f"ElastiCache snapshot {recorded['snapshot_name']} is not the one recorded: "
                             + ", ".join(f"{field} {current[field]!r} != {recorded.get(field)!r}" for field in differing))


def release(recorded: dict) -> None:
    """Delete the snapshot a pruned backup recorded; one already gone is fine."""
    elasticache = client(recorded["region"], recorded.get("endpoint_url"))
    try:
        elasticache.delete_snapshot(SnapshotName=recorded["snapshot_name"])
    except elasticache.exceptions.SnapshotNotFoundFault:
        pass


def unclaimed_path(directory: Path, snapshot_name: str) -> Path:
    return directory / (snapshot_name + UNCLAIMED_SUFFIX)


def release_unclaimed(directory: Path) -> tuple[list[str], list[str]]:
    """Delete the snapshots the unclaimed records in directory name, each record after its
    snapshot; returns the names deleted and, for each that could not be (AWS deletes no snapshot
    while it is being created), why, its record kept for the next run. The caller holds the lock."""
    deleted, failed = [], []
    for path in sorted(directory.glob(f"*{UNCLAIMED_SUFFIX}")):
        name = path.name[: -len(UNCLAIMED_SUFFIX)]
        try:
            release(json.loads(path.read_text(encoding="utf-8")))
        except Exception as error:  # noqa: BLE001 - the API's errors all keep the record for the next run
            failed.append(f"Cannot delete ElastiCache snapshot {name}, which no stored backup records "
                          f"(the next run tries again): {type(error).__name__}: {error}")
            continue
        path.unlink()
        deleted.append(name)
    return deleted, failed
