# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""The backup manifest: what the backup program promises about one backup file.

Stdlib only: the backup program on the database hosts imports this file as well as the
backup_verify module, so both read and write exactly one format.

Format versions (docs/backups.md):
  1  file, bytes, sha256, per-table row counts, server version, times, database, reason
  2  adds "catalogue", the schema catalogue of pg_catalogue.py taken in the dump's snapshot
  3  adds "sequence_values" (PostgreSQL): every sequence's next value, read before pg_dump started
  4  adds "data_sha256" to each table (PostgreSQL): the SHA-256 of the table's data block as the
     archive stores it, for deep verification
A reader accepts every version up to CURRENT_VERSION; what an older manifest lacks is reported
by the verifier as a skipped check, never guessed.

Signing: "signature" holds an HMAC-SHA256, under the environment's secret backup_manifest_key, of
the manifest's canonical JSON without that field. The manifest carries the dump's SHA-256, so a
valid signature vouches for the dump too: whoever can write to the bucket but lacks the key can
neither forge a backup nor swap a dump and its manifest.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import re
from pathlib import Path

FORMAT = "chajipoa-backup-manifest"
CURRENT_VERSION = 4
DUMP_SUFFIX = {"postgresql": ".dump", "redis": ".rdb", "mongodb": ".archive", "elasticache": ".snapshot"}
MANIFEST_SUFFIX = ".manifest.json"

_REQUIRED = {
    1: ("format", "format_version", "kind", "name", "database", "reason", "file", "bytes", "sha256",
        "started_at", "finished_at", "server_version"),
}
_REQUIRED[2] = _REQUIRED[3] = _REQUIRED[4] = _REQUIRED[1]
_REQUIRED_BY_KIND = {"postgresql": ("tables",), "mongodb": ("collections",), "elasticache": ("snapshot",)}
# What a kind's manifest holds from a format version on.
_REQUIRED_SINCE = {("postgresql", 3): ("sequence_values",)}
# From format 4 on a table's rows are its own (SELECT count(*) FROM ONLY), as pg_dump writes them
# in its data block; before, a parent's count included its inheritance children's rows.
OWN_ROWS_SINCE = 4
_NAME_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
# 4 MiB reads keep hashing near the speed of SHA-256 itself; hashlib releases the GIL on large
# buffers, so a hash can run in a thread beside a subprocess.
_HASH_CHUNK = 4 * 1024 * 1024


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file and what is wrong."""


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def backup_name(database: str, started_at: dt.datetime, reason: str) -> str:
    """<database>-<UTC time>-<reason>, safe as a file name and an S3 key, sorting by time per database."""
    stamp = started_at.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{_NAME_SAFE.sub('_', database)}-{stamp}-{_NAME_SAFE.sub('_', reason)}"


def manifest_path(backup_path: Path | str) -> Path:
    """The manifest beside a backup file: <name>.manifest.json for <name>.dump/.rdb/.archive."""
    path = Path(backup_path)
    return path.with_name(path.stem + MANIFEST_SUFFIX)


def sha256_file(path: Path | str) -> tuple[str, int]:
    """The file's SHA-256 (hex) and its size in bytes, read once."""
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(_HASH_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            count = handle.readinto(buffer)
            if not count:
                break
            digest.update(view[:count])
            size += count
    return digest.hexdigest(), size


def load(path: Path | str) -> dict:
    """Read and check a manifest; raises ManifestError naming the file and the problem."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ManifestError(f"Cannot read manifest {path}: it does not exist") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"Cannot read manifest {path}: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ManifestError(f"Cannot read manifest {path}: not a {FORMAT} document")
    version = manifest.get("format_version")
    if version not in _REQUIRED:
        raise ManifestError(
            f"Cannot read manifest {path}: format_version {version!r} is not one of {sorted(_REQUIRED)}")
    if manifest.get("kind") not in DUMP_SUFFIX:
        raise ManifestError(f"Cannot read manifest {path}: kind {manifest.get('kind')!r} is not one of {sorted(DUMP_SUFFIX)}")
    kind = manifest.get("kind")
    since = [key for (of_kind, first), keys in _REQUIRED_SINCE.items() if of_kind == kind and version >= first
             for key in keys]
    missing = [key for key in _REQUIRED[version] + _REQUIRED_BY_KIND.get(kind, ()) + tuple(since)
               if key not in manifest]
    if missing:
        raise ManifestError(f"Cannot read manifest {path}: missing {', '.join(missing)}")
    return manifest


def atomic_write(path: Path | str, text: str, mode: int | None = None) -> None:
    """Temporary file, fsync, rename, fsync of the directory: a reader (or the next run after a
    crash or a power cut) sees the old content or the whole new one, never an empty or torn file.
    A full disk raises OSError before the old file is touched."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with open(partial, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(partial, mode)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write(path: Path | str, manifest: dict) -> None:
    """Write atomically: a reader sees the old manifest or the whole new one, never a torn file."""
    atomic_write(path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


SIGNATURE_ALGORITHM = "hmac-sha256"


def _key_bytes(key: str | bytes) -> bytes:
    if not key:
        raise ValueError("Cannot sign or authenticate a manifest: the manifest key is empty")
    return key.encode() if isinstance(key, str) else key


def _signed_bytes(manifest: dict) -> bytes:
    unsigned = {name: value for name, value in manifest.items() if name != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(manifest: dict, key: str | bytes) -> dict:
    """A copy of the manifest carrying its signature."""
    digest = hmac.new(_key_bytes(key), _signed_bytes(manifest), hashlib.sha256).hexdigest()
    return {**manifest, "signature": {"algorithm": SIGNATURE_ALGORITHM, "value": digest}}


def signature_status(manifest: dict, key: str | bytes) -> str:
    """"valid" or "unsigned"; raises ManifestError, naming the backup, when the signature does not match."""
    signature = manifest.get("signature")
    if signature is None:
        return "unsigned"
    label = manifest.get("name", "?")
    if not isinstance(signature, dict) or signature.get("algorithm") != SIGNATURE_ALGORITHM:
        raise ManifestError(f"Cannot trust backup {label}: its manifest's signature is not {SIGNATURE_ALGORITHM}")
    expected = hmac.new(_key_bytes(key), _signed_bytes(manifest), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, str(signature.get("value", ""))):
        raise ManifestError(f"Cannot trust backup {label}: its manifest's HMAC does not match the environment's "
                            "backup_manifest_key (the manifest or its dump was altered, or signed with another key)")
    return "valid"


def authenticate(manifest: dict, key: str | bytes, allow_unsigned: bool, switch: str) -> str:
    """signature_status, with an unsigned manifest refused (ManifestError, naming the backup and the
    switch that admits it) unless allow_unsigned: without the key anyone who can write where backups
    are kept can make a dump and an unsigned manifest that matches it."""
    status = signature_status(manifest, key)
    if status == "unsigned" and not allow_unsigned:
        raise ManifestError(f"Cannot trust backup {manifest.get('name', '?')}: its manifest is unsigned, so nothing "
                            f"vouches for its dump; set {switch} only for backups taken before manifests were signed")
    return status


def table_key(schema: str, name: str) -> str:
    """How reports name a table: schema.name, as stored (unquoted)."""
    return f"{schema}.{name}"


def counts_own_rows(manifest: dict) -> bool:
    """Whether the manifest's row counts leave out inheritance children's rows (OWN_ROWS_SINCE)."""
    return int(manifest.get("format_version") or 0) >= OWN_ROWS_SINCE
