# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""The sources the backup program dumps: PostgreSQL databases, the Redis RDB snapshot and the
MongoDB replica set. Each dumper writes one file and returns its part of the manifest; a failure
raises BackupFailed naming the database and the cause.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
from pathlib import Path

from ansible_collections.chajipoa.platform.plugins.module_utils import (backup_checks, backup_manifest, elasticache_snapshots,
                                                                        mongo_archive, pg_catalogue)
from ansible_collections.chajipoa.platform.plugins.module_utils.backup_config import BackupFailed, Config

_TABLES = """
    SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
      AND c.oid NOT IN (SELECT objid FROM pg_catalog.pg_depend WHERE deptype = 'e' AND classid = 'pg_catalog.pg_class'::regclass)
    ORDER BY 1, 2"""


def dump_postgresql(config: Config, database: str, path: Path) -> dict:
    """pg_dump -Fc into path; returns the manifest's PostgreSQL part, read in the dump's snapshot."""
    target = config.pg_target()
    timings = {}
    # Autocommit, so that the explicit BEGIN opens the transaction itself with its isolation level.
    env = target.env()
    with target.connect(database, autocommit=True) as connection:
        # The dump's COPYs and the row counts are no application's statements: pg_stat_statements
        # leaves them out, or they raise the mean latency PostgresQueryLatencyHigh watches every
        # night. A superuser (the backup on the primary itself) sets that for its own sessions; a
        # login that is no superuser may not, and has it from ALTER ROLE instead (the postgres
        # role's postgres_untracked_logins, docs/aws.md on RDS).
        if connection.info.parameter_status("is_superuser") == "on":
            connection.execute("SET pg_stat_statements.track = none")
            env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} -c pg_stat_statements.track=none".strip()
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
        with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env) as dump:
            with connection.cursor() as cursor:
                counted = time.perf_counter()
                cursor.execute(_TABLES)
                tables = [{"schema": schema, "name": name} for schema, name in cursor.fetchall()]
                # Each table's own rows, as pg_dump writes them: a parent's children have their own.
                for table in tables:
                    cursor.execute(f"SELECT count(*) FROM ONLY {backup_checks.qualified(table)}")
                    table["rows"] = cursor.fetchone()[0]
                timings["row_counts"] = round(time.perf_counter() - counted, 3)
                catalogued = time.perf_counter()
                catalogue = pg_catalogue.read(cursor)
                timings["catalogue"] = round(time.perf_counter() - catalogued, 3)
            _output, errors = dump.communicate()
        timings["pg_dump"] = round(time.perf_counter() - dump_started, 3)
        connection.execute("ROLLBACK")
    if dump.returncode != 0:
        raise BackupFailed(f"Cannot dump database {database}: pg_dump exited {dump.returncode}: {errors.strip()}")
    return {"server_version": version, "server_version_num": version_num, "tables": tables, "catalogue": catalogue,
            "sequence_values": sequence_values, "timings": timings}


def dump_redis(config: Config, database: str, path: Path) -> dict:
    """A fresh RDB snapshot into path; returns the manifest's Redis part."""
    redis = config.redis
    base = ["redis-cli", "-h", redis.get("host", "127.0.0.1"), "-p", str(redis.get("port", 6379))]
    if redis.get("user"):
        base += ["--user", redis["user"]]
    if redis.get("tls"):
        # The replication password and every key cross the network: the server's certificate is
        # checked, against the CA the config names or else the system's.
        base += ["--tls"] + (["--cacert", redis["cacert"]] if redis.get("cacert") else [])
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
    if mongodb.get("tls"):
        # DocumentDB (and a self-hosted server requiring TLS): the server's certificate checked
        # against the CA bundle; DocumentDB has no retryable writes, which a dump never needs.
        options.update({"tls": "true", "tlsCAFile": mongodb.get("cacert"), "retryWrites": "false"})
    query = urllib.parse.urlencode({key: value for key, value in options.items() if value})
    return f"mongodb://{credentials}{','.join(mongodb.get('hosts') or ['127.0.0.1:27017'])}/?{query}"


def dump_mongodb(config: Config, database: str, path: Path) -> dict:
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


def snapshot_elasticache(config: Config, database: str, path: Path) -> dict:
    """A snapshot of the ElastiCache replication group, taken by the service and named as the
    backup; its descriptor into path. Returns the manifest's ElastiCache part."""
    settings = config.elasticache
    group = settings["replication_group_id"]
    name = path.name[: -len(elasticache_snapshots.DESCRIPTOR_SUFFIX)]
    started = time.perf_counter()
    # take_backup removes the record once the backup is stored, and deletes the snapshot otherwise.
    backup_manifest.atomic_write(
        elasticache_snapshots.unclaimed_path(config.directory("elasticache", database), name),
        json.dumps({"snapshot_name": name, "region": settings["region"], "endpoint_url": settings.get("endpoint_url") or ""}))
    try:
        elasticache = elasticache_snapshots.client(settings["region"], settings.get("endpoint_url"))
        snapshot = elasticache_snapshots.take(elasticache, group, name, float(settings.get("timeout_seconds", 3600)),
                                              float(settings.get("poll_seconds", 5)))
    except Exception as error:  # noqa: BLE001 - the API's errors (credentials, throttling, refusal) all fail this backup
        raise BackupFailed(f"Cannot snapshot ElastiCache {group} ({database}): {type(error).__name__}: {error}") from error
    recorded = elasticache_snapshots.descriptor(snapshot, settings["region"], settings.get("endpoint_url"))
    path.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return {"server_version": recorded["engine_version"] or "", "snapshot": recorded,
            "timings": {"snapshot": round(time.perf_counter() - started, 3)}}


DUMPERS = {"postgresql": dump_postgresql, "redis": dump_redis, "mongodb": dump_mongodb, "elasticache": snapshot_elasticache}
