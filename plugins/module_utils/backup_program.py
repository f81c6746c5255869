# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""The backup program the backup role installs as /usr/local/sbin/chajipoa-backup.

It lives in module_utils because it shares the manifest, the checks and the retention policy with
the backup_verify module and the gfs_retention filter: one copy of each rule, whether a playbook or
the nightly timer applies it. Plain Python on the database host: psycopg 3 and boto3 from Debian.

run      one backup per PostgreSQL database (pg_dump -Fc; row counts and the schema catalogue read
         in the dump's own snapshot), the Redis RDB snapshot and the MongoDB replica set's
         mongodump archive (--oplog: one point in time) where configured; each verified in
         quick mode, uploaded to S3, then local and S3 copies pruned by the retention policy. A
         failed step removes only its own partial files and the run exits non-zero, before pruning.
verify   quick or thorough verification of the newest local backups (the thorough timer).
list     the local backups with their last verification.
fetch    download the newest backups and manifests from S3 into a directory.
Every run rewrites the node_exporter textfile with the last success and verification results.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

from ansible_collections.chajipoa.platform.plugins.module_utils import (
    backup_checks, backup_manifest, mongo_archive, pg_catalogue, pg_scratch)
from ansible_collections.chajipoa.platform.plugins.module_utils.gfs_retention import plan as retention_plan

DEFAULT_CONFIG = "/etc/chajipoa/backup.json"
VERIFY_SUFFIX = ".verify.json"
# S3 refuses a single PUT above 5 GiB; bigger files go up in parts, each part's SHA-256 checked by S3.
SINGLE_PUT_LIMIT = 5 * 1024 ** 3
_TABLES = """
    SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
      AND c.oid NOT IN (SELECT objid FROM pg_catalog.pg_depend WHERE deptype = 'e' AND classid = 'pg_catalog.pg_class'::regclass)
    ORDER BY 1, 2"""


# backup_manifest.backup_name(): <database>-<YYYYmmddTHHMMSSZ>-<reason>; reasons may hold dashes.
_NAME = re.compile(r"^(?P<database>.+?)-(?P<stamp>\d{8}T\d{6}Z)-(?P<reason>.+)$")


class BackupFailed(RuntimeError):
    """A step of a backup failed; the message names the step, the backup and the cause."""


def load_env_file(path: str | None) -> None:
    """KEY=VALUE lines (S3 and Redis credentials) into the environment; what is already set wins."""
    if not path or not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                os.environ.setdefault(key.strip(), value)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- configuration and local layout -------------------------------------------------------------

class Config:
    """/etc/chajipoa/backup.json, rendered by the backup role from its variables."""

    def __init__(self, data: dict):
        self.data = data
        self.host = data.get("host") or os.uname().nodename
        self.backup_dir = Path(data["backup_dir"])
        self.state_dir = Path(data.get("state_dir") or self.backup_dir / ".state")
        self.metrics_file = Path(data["metrics_file"]) if data.get("metrics_file") else None
        self.postgresql = data.get("postgresql") or {}
        self.redis = data.get("redis") or {}
        self.mongodb = data.get("mongodb") or {}
        self.s3 = data.get("s3") or {}
        self.retention = data.get("retention") or {}
        self.verify = data.get("verify") or {}

    @classmethod
    def load(cls, path: str) -> Config:
        with open(path, encoding="utf-8") as handle:
            return cls(json.load(handle))

    def directory(self, kind: str, database: str) -> Path:
        return self.backup_dir / kind / database

    def pg_target(self) -> backup_checks.Target:
        pg = self.postgresql
        return backup_checks.Target(host=pg.get("host", ""), port=int(pg.get("port", 5432)), user=pg.get("user", "postgres"),
                                    password=os.environ.get("PGPASSWORD"), maintenance_db=pg.get("maintenance_db", "postgres"))


def _newest_first(backups: list[dict]) -> list[dict]:
    return sorted(backups, key=lambda b: (b["time"], b["name"]), reverse=True)


def local_backups(directory: Path) -> list[dict]:
    """Complete backups in a directory, newest first: a manifest exists only once its file is in place."""
    backups = []
    for path in directory.glob(f"*{backup_manifest.MANIFEST_SUFFIX}"):
        try:
            manifest = backup_manifest.load(path)
        except backup_manifest.ManifestError as error:
            log(f"ignoring {path}: {error}")
            continue
        verification = path.with_name(manifest["name"] + VERIFY_SUFFIX)
        backups.append({"name": manifest["name"], "time": manifest["started_at"], "reason": manifest["reason"],
                        "manifest": str(path), "file": str(path.with_name(manifest["file"])),
                        "verification": json.loads(verification.read_text()) if verification.exists() else None})
    return _newest_first(backups)


def record_verification(report: backup_checks.Report) -> None:
    summary = {key: value for key, value in report.as_dict().items() if key != "checks"}
    summary["checked_at"] = backup_manifest.iso(backup_manifest.utc_now())
    summary["failed"] = [f"{entry['name']}: {entry['message']}" for entry in report.failed]
    target = report.manifest_path.with_name(report.manifest["name"] + VERIFY_SUFFIX)
    target.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")


# --- state and metrics --------------------------------------------------------------------------

class State:
    """What the monitoring textfile reports, kept across runs: the last success survives a failure."""

    def __init__(self, config: Config):
        self.config = config
        self.path = config.state_dir / "state.json"
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {"backups": {}, "verifications": {}}

    def backup(self, kind: str, database: str, ok: bool, manifest: dict | None = None, seconds: float = 0.0):
        entry = self.data["backups"].setdefault(f"{kind}/{database}", {"kind": kind, "database": database})
        entry.update(last_run=time.time(), last_run_success=int(ok), last_duration_seconds=round(seconds, 3))
        if ok and manifest:
            entry.update(last_success=time.time(), last_size_bytes=manifest["bytes"], last_name=manifest["name"])

    def verification(self, report: backup_checks.Report):
        manifest = report.manifest
        key = f"{manifest.get('kind')}/{manifest.get('database')}/{report.mode}"
        self.data["verifications"][key] = {
            "kind": manifest.get("kind"), "database": manifest.get("database"), "mode": report.mode,
            "last_run": time.time(), "last_success": int(report.passed), "name": manifest.get("name")}

    def save(self):
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.path, json.dumps(self.data, indent=1, sort_keys=True) + "\n")
        if self.config.metrics_file:
            self.config.metrics_file.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(self.config.metrics_file, render_metrics(self.data))


def _atomic_write(path: Path, text: str) -> None:
    # node_exporter may read the file at any moment: it must never see half of it.
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.chmod(partial, 0o644)
    os.replace(partial, path)


_METRICS = (
    ("chajipoa_backup_last_success_timestamp_seconds", "backups", "last_success",
     "Unix time of the last backup that was taken, verified and uploaded."),
    ("chajipoa_backup_last_run_timestamp_seconds", "backups", "last_run", "Unix time of the last backup attempt."),
    ("chajipoa_backup_last_run_success", "backups", "last_run_success", "1 if the last backup attempt succeeded."),
    ("chajipoa_backup_last_size_bytes", "backups", "last_size_bytes", "Size of the last successful backup file."),
    ("chajipoa_backup_last_duration_seconds", "backups", "last_duration_seconds", "Duration of the last backup attempt."),
    ("chajipoa_backup_verify_last_timestamp_seconds", "verifications", "last_run", "Unix time of the last verification."),
    ("chajipoa_backup_verify_last_success", "verifications", "last_success", "1 if the last verification passed."),
)


def render_metrics(data: dict) -> str:
    """node_exporter textfile format, one gauge family per fact."""
    lines = []
    for metric, section, field, help_text in _METRICS:
        samples = [entry for _, entry in sorted(data[section].items()) if field in entry]
        if not samples:
            continue
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
        for entry in samples:
            labels = {"kind": entry["kind"], "database": entry["database"]}
            if "mode" in entry:
                labels["mode"] = entry["mode"]
            rendered = ",".join(f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                                for k, v in labels.items())
            lines.append(f"{metric}{{{rendered}}} {entry[field]}")
    return "\n".join(lines) + "\n"


# --- taking backups -----------------------------------------------------------------------------

def _dump_postgresql(config: Config, database: str, path: Path) -> dict:
    """pg_dump -Fc into path; returns the manifest's PostgreSQL part, read in the dump's snapshot."""
    target = config.pg_target()
    timings = {}
    # Autocommit, so that the explicit BEGIN opens the transaction itself with its isolation level.
    with target.connect(database, autocommit=True) as connection:
        connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot = connection.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()[0]
        version, version_num = connection.execute(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int").fetchone()
        pg_dump = backup_checks.pg_tool("pg_dump", config.postgresql.get("bindir"), version_num)
        command = [pg_dump, "--format=custom", f"--compress={int(config.postgresql.get('compress', 6))}",
                   f"--snapshot={snapshot}", f"--file={path}", f"--dbname={target.conninfo(database)}"]
        # Before pg_dump reads anything: sequences only move forward, so the dump holds at least these.
        with connection.cursor() as cursor:
            sequence_values = pg_catalogue.read_sequence_values(cursor)
        dump_started = time.perf_counter()
        # pg_dump works in the exported snapshot while this transaction, which must stay open until
        # pg_dump has imported it, counts rows and reads the catalogue in the very same snapshot.
        with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=target.env()) as dump:
            with connection.cursor() as cursor:
                counted = time.perf_counter()
                cursor.execute(_TABLES)
                tables = [{"schema": schema, "name": name} for schema, name in cursor.fetchall()]
                for table in tables:
                    cursor.execute(f"SELECT count(*) FROM {backup_checks.qualified(table)}")
                    table["rows"] = cursor.fetchone()[0]
                timings["row_counts"] = round(time.perf_counter() - counted, 3)
                catalogued = time.perf_counter()
                catalogue = pg_catalogue.read(cursor)
                timings["catalogue"] = round(time.perf_counter() - catalogued, 3)
            _, errors = dump.communicate()
        timings["pg_dump"] = round(time.perf_counter() - dump_started, 3)
        connection.execute("ROLLBACK")
    if dump.returncode != 0:
        raise BackupFailed(f"Cannot dump database {database}: pg_dump exited {dump.returncode}: {errors.strip()}")
    return {"server_version": version, "server_version_num": version_num, "tables": tables, "catalogue": catalogue,
            "sequence_values": sequence_values, "timings": timings}


def _dump_redis(config: Config, database: str, path: Path) -> dict:
    """A fresh RDB snapshot into path; returns the manifest's Redis part."""
    redis = config.redis
    base = ["redis-cli", "-h", redis.get("host", "127.0.0.1"), "-p", str(redis.get("port", 6379))]
    if redis.get("user"):
        base += ["--user", redis["user"]]
    # REDISCLI_AUTH keeps the password off the command line, where ps would show it.
    env = dict(os.environ)
    if os.environ.get("REDIS_PASSWORD"):
        env["REDISCLI_AUTH"] = os.environ["REDIS_PASSWORD"]
    info = subprocess.run(base + ["INFO", "server"], capture_output=True, text=True, env=env, check=False)
    version = next((line.split(":", 1)[1].strip() for line in info.stdout.splitlines()
                    if line.startswith("redis_version:")), None)
    if info.returncode != 0 or not version:
        raise BackupFailed(f"Cannot reach Redis {database}: {(info.stderr or info.stdout).strip()}")
    # --rdb asks the server for a fresh snapshot over the replication protocol: consistent, and no
    # access to the Redis host's disk needed.
    result = subprocess.run(base + ["--rdb", str(path)], capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise BackupFailed(f"Cannot snapshot Redis {database}: {(result.stderr or result.stdout).strip()}")
    return {"server_version": version, "timings": {}}


def mongodb_uri(mongodb: dict, password: str | None) -> str:
    """The connection string mongodump reads from its options file, credentials escaped."""
    credentials = ""
    if mongodb.get("user"):
        credentials = urllib.parse.quote(mongodb["user"], safe="")
        if password:
            credentials += ":" + urllib.parse.quote(password, safe="")
        credentials += "@"
    options = {"authSource": mongodb.get("auth_database", "admin"), "replicaSet": mongodb.get("replica_set"),
               # A secondary when there is one: the dump's reads stay off the primary.
               "readPreference": "secondaryPreferred"}
    query = urllib.parse.urlencode({key: value for key, value in options.items() if value})
    return f"mongodb://{credentials}{','.join(mongodb.get('hosts') or ['127.0.0.1:27017'])}/?{query}"


def _dump_mongodb(config: Config, database: str, path: Path) -> dict:
    """mongodump --archive --gzip of the whole replica set into path; returns the manifest's MongoDB part.

    The collections and their document counts are read back from the archive itself: MongoDB has no
    snapshot to export, so what mongodump wrote is the record (with --oplog, as of its end).
    """
    mongodb = config.mongodb
    # mongodump's options file keeps the password off the command line, where ps would show it;
    # created 0600 beside the partial archive, removed once mongodump has read it (and in any case
    # with the partial directory).
    options = path.with_name("mongodump.yaml")
    with os.fdopen(os.open(options, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        # A JSON string is a YAML double-quoted scalar: any character of the password is safe.
        handle.write(f"uri: {json.dumps(mongodb_uri(mongodb, os.environ.get('MONGODB_PASSWORD')))}\n")
    command = ["mongodump", f"--config={options}", f"--archive={path}", "--gzip"]
    if mongodb.get("oplog", True):
        command.append("--oplog")
    dumped = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    timings = {"mongodump": round(time.perf_counter() - dumped, 3)}
    options.unlink()
    if result.returncode != 0:
        # mongodump logs progress on stderr: its last lines hold the cause.
        cause = " | ".join(result.stderr.strip().splitlines()[-3:])
        raise BackupFailed(f"Cannot dump MongoDB {database}: mongodump exited {result.returncode}: {cause}")
    read_started = time.perf_counter()
    try:
        contents = mongo_archive.read(path)
    except mongo_archive.ArchiveError as error:
        raise BackupFailed(f"Cannot dump MongoDB {database}: mongodump's archive is incomplete: {error}") from error
    timings["archive"] = round(time.perf_counter() - read_started, 3)
    # mongorestore needs --gzip for a compressed archive: the manifest says which this is.
    return {"server_version": contents["server_version"], "tool_version": contents["tool_version"],
            "compressed": contents["compressed"], "collections": contents["collections"], "timings": timings}


_DUMPERS = {"postgresql": _dump_postgresql, "redis": _dump_redis, "mongodb": _dump_mongodb}


def take_backup(config: Config, kind: str, database: str, reason: str) -> tuple[dict, backup_checks.Report]:
    """Dump, write the manifest, verify quickly, then move both into place; partial files never stay."""
    directory = config.directory(kind, database)
    started = backup_manifest.utc_now()
    name = backup_manifest.backup_name(database, started, reason)
    filename = name + backup_manifest.DUMP_SUFFIX[kind]
    final_manifest = backup_manifest.manifest_path(directory / filename)
    if final_manifest.exists():
        # Names have one-second resolution; a second backup with the same reason in the same
        # second must not replace the first.
        raise BackupFailed(f"Cannot keep backup {name}: one of that name exists already")
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f".partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        details = _DUMPERS[kind](config, database, partial / filename)
        hashed = time.perf_counter()
        sha256, size = backup_manifest.sha256_file(partial / filename)
        details["timings"]["sha256"] = round(time.perf_counter() - hashed, 3)
        manifest = {
            "format": backup_manifest.FORMAT, "format_version": backup_manifest.CURRENT_VERSION, "kind": kind,
            "name": name, "database": database, "reason": reason, "host": config.host,
            "started_at": backup_manifest.iso(started), "finished_at": backup_manifest.iso(backup_manifest.utc_now()),
            "file": filename, "bytes": size, "sha256": sha256, **details,
        }
        backup_manifest.write(backup_manifest.manifest_path(partial / filename), manifest)
        report = backup_checks.quick(backup_checks.Report(
            "quick", partial / filename, backup_manifest.manifest_path(partial / filename)),
            pg_bindir=config.postgresql.get("bindir"))
        if not report.passed:
            raise BackupFailed(report.failure_message())
        # The file first, the manifest last: a manifest in the directory means a complete backup.
        os.replace(partial / filename, directory / filename)
        os.replace(report.manifest_path, final_manifest)
        report.backup_path, report.manifest_path = directory / filename, final_manifest
        record_verification(report)
        return manifest, report
    finally:
        shutil.rmtree(partial, ignore_errors=True)


# --- S3 -----------------------------------------------------------------------------------------

def s3_client(config: Config):
    import boto3
    s3 = config.s3
    return boto3.client("s3", endpoint_url=s3.get("endpoint_url") or None, region_name=s3.get("region") or None)


def s3_prefix(config: Config, kind: str, database: str) -> str:
    return f"{config.s3.get('prefix', '')}{kind}/{database}/"


def upload(config: Config, client, kind: str, database: str, manifest: dict) -> list[str]:
    """Upload the file, then its manifest, each with a SHA-256 that S3 checks before it stores the object."""
    s3 = config.s3
    directory = config.directory(kind, database)
    extra = {"StorageClass": s3.get("storage_class", "STANDARD"), "ServerSideEncryption": s3.get("sse", "AES256")}
    if s3.get("kms_key_id"):
        extra["SSEKMSKeyId"] = s3["kms_key_id"]
    keys = []
    manifest_name = manifest["name"] + backup_manifest.MANIFEST_SUFFIX
    for filename, sha256 in ((manifest["file"], manifest["sha256"]), (manifest_name, None)):
        path = directory / filename
        key = s3_prefix(config, kind, database) + filename
        if sha256 is None:
            sha256, _ = backup_manifest.sha256_file(path)
        checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
        if path.stat().st_size < SINGLE_PUT_LIMIT:
            # The hash the manifest already holds: S3 refuses the object (BadDigest) unless the bytes
            # it received hash to it, so the upload needs no second read of the file.
            with open(path, "rb") as body:
                client.put_object(Bucket=s3["bucket"], Key=key, Body=body, ChecksumAlgorithm="SHA256",
                                  ChecksumSHA256=checksum, Metadata={"sha256": sha256}, **extra)
            stored = client.head_object(Bucket=s3["bucket"], Key=key, ChecksumMode="ENABLED").get("ChecksumSHA256")
            if stored != checksum:
                raise BackupFailed(f"Cannot upload {filename}: S3 stored SHA-256 {stored}, the file has {checksum}")
        else:
            client.upload_file(str(path), s3["bucket"], key,
                               ExtraArgs=dict(extra, ChecksumAlgorithm="SHA256", Metadata={"sha256": sha256}))
        keys.append(key)
    return keys


def upload_missing(config: Config, client, kind: str, database: str) -> list[str]:
    """Upload every local backup S3 lacks, oldest first: the new one, and any a failed run left behind."""
    remote = {backup["name"] for backup in s3_backups(config, client, kind, database)}
    uploaded = []
    for backup in reversed(local_backups(config.directory(kind, database))):
        if backup["name"] not in remote:
            upload(config, client, kind, database, backup_manifest.load(backup["manifest"]))
            uploaded.append(backup["name"])
    return uploaded


def s3_backups(config: Config, client, kind: str, database: str) -> list[dict]:
    """Backups in S3 with their keys, newest first: a manifest key marks a complete one."""
    paginator = client.get_paginator("list_objects_v2")
    prefix = s3_prefix(config, kind, database)
    objects = {}
    for page in paginator.paginate(Bucket=config.s3["bucket"], Prefix=prefix):
        for item in page.get("Contents", []):
            objects[item["Key"][len(prefix):]] = item
    backups = []
    for filename in objects:
        if not filename.endswith(backup_manifest.MANIFEST_SUFFIX):
            continue
        name = filename[: -len(backup_manifest.MANIFEST_SUFFIX)]
        parsed = _NAME.match(name)
        if not parsed:
            continue
        stamp, reason = parsed.group("stamp", "reason")
        data_files = [f for f in objects if f.startswith(name + ".") and f != filename and not f.endswith(VERIFY_SUFFIX)]
        backups.append({"name": name, "reason": reason, "keys": [prefix + f for f in data_files] + [prefix + filename],
                        "time": dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc).isoformat()})
    return _newest_first(backups)


# --- retention ----------------------------------------------------------------------------------

def prune_local(config: Config, kind: str, database: str) -> list[str]:
    backups = local_backups(config.directory(kind, database))
    deleted = []
    for backup in retention_plan(backups, config.retention.get("local", {}))["delete"]:
        # The manifest first: without it the file no longer counts as a backup, so a crash in
        # between leaves an orphan file, never a manifest promising a missing file.
        for path in (backup["manifest"], str(Path(backup["manifest"]).with_name(backup["name"] + VERIFY_SUFFIX)),
                     backup["file"]):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        deleted.append(backup["name"])
    return deleted


def prune_s3(config: Config, client, kind: str, database: str) -> list[str]:
    deleted = []
    for backup in retention_plan(s3_backups(config, client, kind, database), config.retention.get("s3", {}))["delete"]:
        for key in reversed(backup["keys"]):
            client.delete_object(Bucket=config.s3["bucket"], Key=key)
        deleted.append(backup["name"])
    return deleted


# --- commands -----------------------------------------------------------------------------------

def targets(config: Config, only: str | None = None) -> list[tuple[str, str]]:
    found = [("postgresql", database) for database in config.postgresql.get("databases", [])]
    if config.redis.get("enabled"):
        found.append(("redis", config.redis.get("name") or f"redis-{config.redis.get('host', 'localhost')}"))
    if config.mongodb.get("enabled"):
        found.append(("mongodb", config.mongodb.get("name") or f"mongodb-{config.mongodb.get('replica_set', 'rs0')}"))
    return [(kind, database) for kind, database in found if only in (None, kind)]


def command_run(config: Config, args) -> int:
    state = State(config)
    client = s3_client(config) if config.s3.get("bucket") else None
    failures = 0
    for kind, database in targets(config, args.only):
        started = time.perf_counter()
        try:
            manifest, report = take_backup(config, kind, database, args.reason)
            state.verification(report)
            log(f"{kind} {database}: {manifest['name']} ({manifest['bytes']} bytes) taken and verified")
            if client:
                for name in upload_missing(config, client, kind, database):
                    log(f"{kind} {database}: uploaded {name} to s3://{config.s3['bucket']}")
            state.backup(kind, database, True, manifest, time.perf_counter() - started)
            # Pruning only after this backup is safely in place (and in S3): a failed run deletes nothing.
            for name in prune_local(config, kind, database):
                log(f"{kind} {database}: pruned local {name}")
            if client:
                for name in prune_s3(config, client, kind, database):
                    log(f"{kind} {database}: pruned s3 {name}")
        except Exception as error:  # noqa: BLE001 - every failure must reach the metrics and the exit code
            failures += 1
            state.backup(kind, database, False, seconds=time.perf_counter() - started)
            log(f"{kind} {database}: FAILED: {error}")
        finally:
            state.save()
    return 1 if failures else 0


def scratch_dir(config: Config) -> Path:
    return Path(config.data.get("scratch_dir") or config.state_dir / "scratch")


def verify_one(config: Config, backup_path: Path, mode: str) -> backup_checks.Report:
    report = backup_checks.Report(mode, backup_path, backup_manifest.manifest_path(backup_path))
    verify = config.verify
    if mode == "thorough":
        return backup_checks.thorough(report, scratch_dir=scratch_dir(config),
                                      jobs=int(verify.get("jobs", 2)), ignore_kinds=verify.get("ignore_kinds", []),
                                      exclude=verify.get("exclude", []), pg_bindir=config.postgresql.get("bindir"),
                                      restore_role=verify.get("restore_role", backup_checks.DEFAULT_RESTORE_ROLE))
    return backup_checks.quick(report, pg_bindir=config.postgresql.get("bindir"))


def command_verify(config: Config, args) -> int:
    state = State(config)
    reports = []
    for kind, database in targets(config, args.only):
        for backup in local_backups(config.directory(kind, database))[: args.latest]:
            report = verify_one(config, Path(backup["file"]), args.mode)
            record_verification(report)
            state.verification(report)
            state.save()
            reports.append(report.as_dict())
            log(f"{kind} {database}: {backup['name']} {args.mode} "
                + ("passed" if report.passed else "FAILED: " + report.failure_message()))
    if args.json:
        print(json.dumps(reports, indent=1))
    return 0 if all(r["passed"] for r in reports) else 1


def command_list(config: Config, args) -> int:
    listing = {f"{kind}/{database}": local_backups(config.directory(kind, database))[: args.latest]
               for kind, database in targets(config, args.only)}
    print(json.dumps(listing, indent=1))
    return 0


def command_fetch(config: Config, args) -> int:
    """Download the newest backups from S3 with their manifests; prints the backup files' paths."""
    client = s3_client(config)
    destination = Path(args.to)
    fetched = []
    for kind, database in targets(config, args.only):
        for backup in s3_backups(config, client, kind, database)[: args.latest]:
            directory = destination / kind / database
            directory.mkdir(parents=True, exist_ok=True)
            for key in backup["keys"]:
                path = directory / key.rsplit("/", 1)[1]
                client.download_file(config.s3["bucket"], key, str(path))
                if not key.endswith(backup_manifest.MANIFEST_SUFFIX):
                    fetched.append(str(path))
    print(json.dumps(fetched, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chajipoa-backup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--only", choices=tuple(_DUMPERS), help="one kind of backup only")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="take, verify, upload and prune backups")
    run.add_argument("--reason", default="daily", help="daily, weekly, monthly, manual, pre-deploy, ...")
    verify = commands.add_parser("verify", help="verify the newest local backups")
    verify.add_argument("--mode", choices=("quick", "thorough"), default="quick")
    verify.add_argument("--latest", type=int, default=1, help="how many of the newest backups per database")
    verify.add_argument("--json", action="store_true", help="print the reports as JSON")
    listing = commands.add_parser("list", help="the local backups and their last verification, as JSON")
    listing.add_argument("--latest", type=int, default=None, help="only the newest N per database")
    fetch = commands.add_parser("fetch", help="download the newest backups from S3")
    fetch.add_argument("--latest", type=int, default=1)
    fetch.add_argument("--to", required=True)
    args = parser.parse_args(argv)
    config = Config.load(args.config)
    load_env_file(config.data.get("env_file"))
    config.state_dir.mkdir(parents=True, exist_ok=True)
    handler = {"run": command_run, "verify": command_verify, "list": command_list, "fetch": command_fetch}[args.command]
    # One run at a time per host: the timer and an on-demand backup.yml wait for each other.
    with open(config.state_dir / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # A killed verification's cluster holds a full copy of the data: it goes before anything else runs.
        for directory in pg_scratch.cleanup_stale(scratch_dir(config)):
            log(f"removed the scratch cluster of a run that is gone: {directory}")
        return handler(config, args)
