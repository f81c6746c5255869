# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""The backup program's configuration: /etc/chajipoa/backup.json, rendered by the backup role, and
the secrets of its env file. Shared by the program's parts and the backup_verify module, so both
find the state directory, the lock, the scratch directory and the manifest key in the same place.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ansible_collections.chajipoa.platform.plugins.module_utils import backup_checks

DEFAULT_CONFIG = "/etc/chajipoa/backup.json"
DEFAULT_LOCK_TIMEOUT = 3600
DEFAULT_VERIFIED_MINIMUM = 2
MANIFEST_KEY_ENV = "CHAJIPOA_BACKUP_MANIFEST_KEY"
KINDS = ("postgresql", "redis", "mongodb", "elasticache")


class BackupFailed(RuntimeError):
    """A step of a backup failed; the message names the step, the backup and the cause."""


def log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def read_env_file(path: str | Path | None) -> dict[str, str]:
    """KEY=VALUE lines (S3, Redis and MongoDB credentials, the manifest key); comments skipped."""
    if not path or not os.path.exists(path):
        return {}
    values = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                values[key.strip()] = value
    return values


def load_env_file(path: str | Path | None) -> None:
    """The env file's values into the environment; what is already set wins."""
    for key, value in read_env_file(path).items():
        os.environ.setdefault(key, value)


class Config:
    """/etc/chajipoa/backup.json; absent keys mean the defaults of docs/backups.md."""

    def __init__(self, data: dict):
        self.data = data
        self.host = data.get("host") or os.uname().nodename
        self.backup_dir = Path(data["backup_dir"])
        self.state_dir = Path(data.get("state_dir") or self.backup_dir / ".state")
        self.scratch_dir = Path(data.get("scratch_dir") or self.state_dir / "scratch")
        self.lock_timeout = float(data.get("lock_timeout", DEFAULT_LOCK_TIMEOUT))
        self.env_file = data.get("env_file")
        self.metrics_file = Path(data["metrics_file"]) if data.get("metrics_file") else None
        self.postgresql = data.get("postgresql") or {}
        self.redis = data.get("redis") or {}
        self.mongodb = data.get("mongodb") or {}
        self.elasticache = data.get("elasticache") or {}
        self.s3 = data.get("s3") or {}
        self.retention = data.get("retention") or {}
        self.verify = data.get("verify") or {}
        # Manifests without a signature, trusted only where the operator says so (backup_allow_unsigned).
        self.allow_unsigned = bool(data.get("allow_unsigned", False))
        # A drill host (backup_drill_only): no server of its own, no backups of its own; it verifies
        # and drills copies fetched from S3.
        self.drill_only = bool(data.get("drill_only", False))

    @classmethod
    def load(cls, path: str | Path) -> Config:
        with open(path, encoding="utf-8") as handle:
            return cls(json.load(handle))

    @property
    def lock_path(self) -> Path:
        return self.state_dir / "lock"

    @property
    def module_timeout(self) -> float | None:
        """Seconds the backup_verify and backup_restore modules may run (the verification units'
        TimeoutStartSec), or None for no limit."""
        value = self.verify.get("timeout_seconds")
        return float(value) if value else None

    @property
    def verified_minimum(self) -> int:
        return int(self.retention.get("verified_minimum", DEFAULT_VERIFIED_MINIMUM))

    def directory(self, kind: str, database: str) -> Path:
        return self.backup_dir / kind / database

    def manifest_key(self, action: str) -> str:
        """The key that signs and authenticates manifests; a missing one fails the action by name."""
        key = os.environ.get(MANIFEST_KEY_ENV)
        if not key:
            raise BackupFailed(
                f"Cannot {action}: {MANIFEST_KEY_ENV} is set neither in {self.env_file or 'the env file'} nor in the "
                "environment (the backup role writes it from the secret backup_manifest_key; manifests are signed "
                "and authenticated with it)")
        return key

    def pg_target(self) -> backup_checks.Target:
        pg = self.postgresql
        # A server elsewhere (RDS, another host) is reached over TLS with the certificate checked;
        # the local one over its socket, where libpq ignores both settings.
        return backup_checks.Target(host=pg.get("host", ""), port=int(pg.get("port", 5432)), user=pg.get("user", "postgres"),
                                    password=os.environ.get("PGPASSWORD"), maintenance_db=pg.get("maintenance_db", "postgres"),
                                    sslmode=pg.get("sslmode") or None, sslrootcert=pg.get("sslrootcert") or None)


def targets(config: Config, only: str | None = None) -> list[tuple[str, str]]:
    """(kind, database) of every backup this host takes, optionally of one kind only."""
    found = [("postgresql", database) for database in config.postgresql.get("databases", [])]
    if config.redis.get("enabled"):
        found.append(("redis", config.redis.get("name") or f"redis-{config.redis.get('host', 'localhost')}"))
    if config.mongodb.get("enabled"):
        found.append(("mongodb", config.mongodb.get("name") or f"mongodb-{config.mongodb.get('replica_set', 'rs0')}"))
    if config.elasticache.get("enabled"):
        found.append(("elasticache", config.elasticache.get("name")
                      or f"elasticache-{config.elasticache.get('replication_group_id')}"))
    return [(kind, database) for kind, database in found if only in (None, kind)]
