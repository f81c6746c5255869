# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""Where backups are kept: the local directory and S3, behind one interface (list, put, fetch,
delete), so that listing, uploading and pruning are written once for both.

A backup is a dump file plus its manifest; the manifest is stored last and removed first, so a
manifest always means a complete backup. Local backups also carry their last verification record
(<name>.verify.json).
"""
from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from ansible_collections.chajipoa.platform.plugins.module_utils import backup_checks, backup_manifest, elasticache_snapshots
from ansible_collections.chajipoa.platform.plugins.module_utils.backup_config import BackupFailed, Config, log
from ansible_collections.chajipoa.platform.plugins.module_utils.gfs_retention import plan as retention_plan

VERIFY_SUFFIX = ".verify.json"
PARTIAL_PREFIX = ".partial-"
# S3 refuses a single PUT above 5 GiB; bigger files go up in parts, each part's SHA-256 checked by S3.
SINGLE_PUT_LIMIT = 5 * 1024 ** 3
# backup_manifest.backup_name(): <database>-<YYYYmmddTHHMMSSZ>-<reason>; reasons may hold dashes.
_NAME = re.compile(r"^(?P<database>.+?)-(?P<stamp>\d{8}T\d{6}Z)-(?P<reason>.+)$")


def parse_name(name: str) -> dict | None:
    """The time (ISO 8601, UTC, ...Z) and reason a backup's name carries, or None for a foreign name."""
    parsed = _NAME.match(name)
    if not parsed:
        return None
    stamp = dt.datetime.strptime(parsed.group("stamp"), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    # Written as manifests write started_at, so that listings sort by time whatever the source.
    return {"time": backup_manifest.iso(stamp), "reason": parsed.group("reason")}


def newest_first(backups: list[dict]) -> list[dict]:
    return sorted(backups, key=lambda b: (b["time"], b["name"]), reverse=True)


def read_verification(path: Path) -> dict | None:
    """A backup's last verification record; an unreadable one (empty after a crash, say) is
    reported and counts as no verification, and the next verification writes it anew."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text)
        if not isinstance(record, dict) or not isinstance(record.get("passed"), bool):
            raise ValueError("not a verification record")
    except ValueError as error:
        log(f"Cannot read verification record {path}: {error}; the backup counts as not verified until verified again")
        return None
    return record


def record_verification(report: backup_checks.Report) -> None:
    summary = {key: value for key, value in report.as_dict().items() if key != "checks"}
    summary["checked_at"] = backup_manifest.iso(backup_manifest.utc_now())
    summary["failed"] = [f"{entry['name']}: {entry['message']}" for entry in report.failed]
    target = report.manifest_path.with_name(report.manifest_path.name.removesuffix(backup_manifest.MANIFEST_SUFFIX)
                                            + VERIFY_SUFFIX)
    backup_manifest.atomic_write(target, json.dumps(summary, indent=1, sort_keys=True) + "\n")


def passed_verification(backup: dict) -> bool:
    return bool((backup.get("verification") or {}).get("passed"))


class LocalStore:
    """<backup_dir>/<kind>/<database>/: where backups are made, verified and kept for fast restores."""

    label = "local"

    def __init__(self, config: Config):
        self.config = config
        self.policy = config.retention.get("local", {})
        self.deletes = True

    def location(self, kind: str, database: str) -> str:
        """Where a database's backups are, for messages."""
        return str(self.config.directory(kind, database))

    def list(self, kind: str, database: str) -> list[dict]:
        """Every backup, newest first, readable or not: one whose manifest cannot be read is listed
        with "error" (its time and reason from its name), so that nothing skips it unnoticed."""
        directory = self.config.directory(kind, database)
        backups = []
        for path in directory.glob(f"*{backup_manifest.MANIFEST_SUFFIX}"):
            name = path.name[: -len(backup_manifest.MANIFEST_SUFFIX)]
            named = parse_name(name)
            if not named:
                log(f"ignoring {path}: not a backup program's name")
                continue
            backup = {"name": name, **named, "manifest": str(path),
                      "file": str(path.with_name(name + backup_manifest.DUMP_SUFFIX[kind])),
                      "verification": read_verification(path.with_name(name + VERIFY_SUFFIX)), "error": None}
            try:
                manifest = backup_manifest.load(path)
                backup.update(time=manifest["started_at"], file=str(path.with_name(manifest["file"])))
            except backup_manifest.ManifestError as error:
                backup["error"] = str(error)
            backups.append(backup)
        return newest_first(backups)

    def put(self, kind: str, database: str, manifest: dict, source: Path) -> None:
        """Move a new backup's file, then its manifest, from source (on the same file system) into place."""
        directory = self.config.directory(kind, database)
        manifest_name = manifest["name"] + backup_manifest.MANIFEST_SUFFIX
        if (directory / manifest_name).exists():
            # Names have one-second resolution; a second backup with the same reason in the same
            # second must not replace the first.
            raise BackupFailed(f"Cannot keep backup {manifest['name']}: one of that name exists already")
        for filename in (manifest["file"], manifest_name):
            os.replace(source / filename, directory / filename)

    def fetch(self, kind: str, database: str, backup: dict, destination: Path) -> list[Path]:
        """Copies of the file and the manifest in destination, the file first."""
        copies = []
        for path in (Path(backup["file"]), Path(backup["manifest"])):
            copies.append(Path(shutil.copy2(path, destination / path.name)))
        return copies

    def delete(self, kind: str, database: str, backup: dict) -> None:
        # What the backup holds outside its files goes first: should that fail, the backup stays
        # listed and the next prune tries again, instead of leaving a snapshot nothing records.
        if kind == "elasticache" and not backup["error"]:
            elasticache_snapshots.release(backup_manifest.load(backup["manifest"])["snapshot"])
        # The manifest first: without it the file no longer counts as a backup, so a crash in
        # between leaves an orphan file, never a manifest promising a missing file.
        for path in (backup["manifest"], str(Path(backup["manifest"]).with_name(backup["name"] + VERIFY_SUFFIX)),
                     backup["file"]):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def partial_directory(self, kind: str, database: str) -> Path:
        return self.config.directory(kind, database) / f"{PARTIAL_PREFIX}{os.getpid()}"

    def remove_leftovers(self) -> list[Path]:
        """Partial directories and half-written files of dead runs; the caller holds the lock, so no
        live run owns any. A partial MongoDB directory may hold mongodump's options file with its
        password."""
        removed = []
        for directory in self.config.backup_dir.glob("*/*"):
            for path in directory.glob(f"{PARTIAL_PREFIX}*"):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            # backup_manifest.atomic_write's temporary files (.<name>.partial-<pid>).
            for path in directory.glob(".*.partial-*"):
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed


class S3Store:
    """The off-site copies: <prefix><kind>/<database>/<file> in the configured bucket.

    With "object_lock" the bucket has S3 Object Lock: every object is stored under the bucket's
    default retention and the program deletes nothing (the bucket's lifecycle rule expires the
    copies), so the host's own credentials cannot destroy them."""

    label = "s3"

    def __init__(self, config: Config, client=None):
        import boto3

        s3 = config.s3
        self.config = config
        self.bucket = s3["bucket"]
        self.client = client or boto3.client("s3", endpoint_url=s3.get("endpoint_url") or None,
                                             region_name=s3.get("region") or None)
        self.policy = config.retention.get("s3", {})
        self.object_lock = bool(s3.get("object_lock"))
        self.lock_checked = False
        self.deletes = not self.object_lock

    def prefix(self, kind: str, database: str) -> str:
        return f"{self.config.s3.get('prefix', '')}{kind}/{database}/"

    def location(self, kind: str, database: str) -> str:
        """Where a database's copies are, for messages."""
        return f"s3://{self.bucket}/{self.prefix(kind, database)}"

    def list(self, kind: str, database: str) -> list[dict]:
        """Backups in S3 with their keys, newest first: a manifest key marks a complete one."""
        prefix = self.prefix(kind, database)
        objects = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            objects += [item["Key"][len(prefix):] for item in page.get("Contents", [])]
        backups = []
        for filename in objects:
            if not filename.endswith(backup_manifest.MANIFEST_SUFFIX):
                continue
            name = filename[: -len(backup_manifest.MANIFEST_SUFFIX)]
            named = parse_name(name)
            if not named:
                continue
            data_files = [f for f in objects if f.startswith(name + ".") and f != filename and not f.endswith(VERIFY_SUFFIX)]
            backups.append({"name": name, **named, "keys": [prefix + f for f in data_files] + [prefix + filename]})
        return newest_first(backups)

    def check_lock(self) -> None:
        """With object_lock, each copy is locked by the bucket's default retention as S3 stores it. The
        program sends no retention of its own: that takes s3:PutObjectRetention, a right the host's
        policy denies (with it the host could also stretch the retention of every copy). A bucket
        without a default retention would keep the copies unlocked: no upload goes there."""
        if not self.object_lock or self.lock_checked:
            return
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            settings = self.client.get_object_lock_configuration(Bucket=self.bucket)["ObjectLockConfiguration"]
        except (BotoCoreError, ClientError) as error:
            raise BackupFailed(f"Cannot read the Object Lock settings of s3://{self.bucket}: {error}") from error
        retention = (settings.get("Rule") or {}).get("DefaultRetention") or {}
        if settings.get("ObjectLockEnabled") != "Enabled" or not retention.get("Mode"):
            raise BackupFailed(
                f"Cannot upload to s3://{self.bucket}: object_lock is set, but the bucket has no default retention, "
                "so the copies would not be locked; apply the object_lock settings the backup role writes to "
                "/etc/chajipoa/backup-s3-bucket.json (docs/backups.md)")
        self.lock_checked = True

    def put(self, kind: str, database: str, manifest: dict, source: Path) -> list[str]:
        """Upload the file, then its manifest, each with a SHA-256 that S3 checks before it stores the object."""
        s3 = self.config.s3
        self.check_lock()
        extra = {"StorageClass": s3.get("storage_class", "STANDARD"), "ServerSideEncryption": s3.get("sse", "AES256")}
        if s3.get("kms_key_id"):
            extra["SSEKMSKeyId"] = s3["kms_key_id"]
        keys = []
        for filename, sha256 in ((manifest["file"], manifest["sha256"]),
                                 (manifest["name"] + backup_manifest.MANIFEST_SUFFIX, None)):
            path = source / filename
            key = self.prefix(kind, database) + filename
            if sha256 is None:
                sha256, _size = backup_manifest.sha256_file(path)
            checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
            if path.stat().st_size < SINGLE_PUT_LIMIT:
                # The hash the manifest already holds: S3 refuses the object (BadDigest) unless the bytes
                # it received hash to it, so the upload needs no second read of the file.
                with open(path, "rb") as body:
                    self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ChecksumAlgorithm="SHA256",
                                           ChecksumSHA256=checksum, Metadata={"sha256": sha256}, **extra)
                stored = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED").get("ChecksumSHA256")
                if stored != checksum:
                    raise BackupFailed(f"Cannot upload {filename}: S3 stored SHA-256 {stored}, the file has {checksum}")
            else:
                self.client.upload_file(str(path), self.bucket, key,
                                        ExtraArgs=dict(extra, ChecksumAlgorithm="SHA256", Metadata={"sha256": sha256}))
            keys.append(key)
        return keys

    def fetch(self, kind: str, database: str, backup: dict, destination: Path) -> list[Path]:
        """Download the file and the manifest into destination, the file first."""
        paths = []
        for key in backup["keys"]:
            path = destination / key.rsplit("/", 1)[1]
            self.client.download_file(self.bucket, key, str(path))
            paths.append(path)
        return paths

    def delete(self, kind: str, database: str, backup: dict) -> None:
        if not self.deletes:
            raise BackupFailed(f"Cannot delete backup {backup['name']} from S3: the bucket has Object Lock; "
                               "its lifecycle rule expires the copies")
        # The manifest first, as locally.
        for key in reversed(backup["keys"]):
            self.client.delete_object(Bucket=self.bucket, Key=key)


def prune(store: LocalStore | S3Store, kind: str, database: str, verified_minimum: int,
          verified: Callable[[dict], bool] = passed_verification) -> list[str]:
    """Delete what the store's retention policy does not keep, but never below verified_minimum
    backups that passed verification: the newest verified ones the policy would delete are kept."""
    if not store.deletes:
        return []
    decision = retention_plan(store.list(kind, database), store.policy, tier=store.label)
    missing = verified_minimum - sum(1 for backup in decision["keep"] if verified(backup))
    deleted = []
    for backup in decision["delete"]:
        if missing > 0 and verified(backup):
            missing -= 1
            log(f"{kind} {database}: keeping {store.label} {backup['name']} beyond the retention policy: "
                f"fewer than {verified_minimum} verified backups would remain")
            continue
        store.delete(kind, database, backup)
        deleted.append(backup["name"])
    return deleted
