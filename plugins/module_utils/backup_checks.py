# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""Verification of one backup against its manifest: quick and thorough checks, and their report.

Used by the backup_verify module and by the backup program on the database hosts (which verifies
every backup in quick mode right after taking it and runs the thorough timer), so a backup is
judged the same way wherever it is checked. No Ansible imports: the hosts run it as plain Python.

quick     the file exists and is not empty, its size and SHA-256 match the manifest, the archive's
          table of contents names the manifest's database and has data for every table it lists
          (PostgreSQL), the RDB file is well formed (Redis), the archive is complete and holds the
          manifest's collections with their document counts (MongoDB).
          With a manifest key, the manifest's signature is checked too: a mismatch fails, and so
          does an unsigned manifest (anyone who can write where backups are kept can make one),
          unless allow_unsigned admits those taken before manifests were signed.
deep      (PostgreSQL) quick, computed from one read of the archive by pg_archive.py, then every
          data block decompressed, each table's COPY rows counted against the manifest, each
          table's data hash compared with the one recorded at backup time, the schema catalogue's
          objects found in the archive's table of contents, every sequence's value (SEQUENCE SET)
          at least the manifest's and ahead of the data, and the roles and extensions a restore
          target needs listed. No server, no restore.
thorough  quick, then a restore into a throwaway cluster of its own (pg_scratch.py; always removed,
          also on failure) as a role that is no superuser, that must log no error; per-table row
          counts equal to the manifest's, the restored schema catalogue equal to the manifest's,
          every sequence at least at the value the manifest recorded and ahead of the data of the
          columns that draw from it.
A check that raises anything fails with the error in the report: an unexpected error is a failed
verification, never a passed check or a traceback instead of a report.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from ansible_collections.chajipoa.platform.plugins.module_utils import (backup_manifest, elasticache_snapshots, mongo_archive,
                                                                        pg_archive, pg_catalogue, pg_scratch)

_FILE_CHECKS = ("manifest", "signature", "file", "size", "sha256")
# What each kind's quick mode checks of the contents, after the file checks.
_CONTENT_CHECKS = {
    "postgresql": ("database", "tables in archive"),
    "redis": ("rdb structure",),
    "mongodb": ("collections in archive",),
    "elasticache": ("snapshot",),
}
QUICK_CHECKS = {kind: _FILE_CHECKS + checks for kind, checks in _CONTENT_CHECKS.items()}
THOROUGH_CHECKS = ("restore", "row counts", "schema", "sequences")
DEEP_CHECKS = ("data blocks", "row counts", "table hashes", "schema", "sequences", "restore needs")
# How many restore errors a report carries; the first ones name the cause, the rest repeat it.
MAX_RESTORE_ERRORS = 5
DEFAULT_RESTORE_ROLE = "chajipoa_restore"
_TOC_DBNAME = re.compile(r"^;\s+dbname:\s(.*)$", re.MULTILINE)
# A table of contents line: "<id>; <catalog oid> <oid> <description> <schema> <name> <owner>".
_TOC_LINE = re.compile(r"^\d+; \d+ \d+ (?P<rest>.*)$")
# pg_dump writes a policy as CREATE POLICY <name> ON <table> [AS ...] [FOR ...] [TO <roles>] [USING ...]
# [WITH CHECK ...]; the roles are identifiers as quote_ident() writes them, separated by ", ".
_IDENTIFIER = r'(?:"(?:[^"]|"")*"|[^\s,"]+)'
_POLICY_ROLES = re.compile(rf"^CREATE POLICY .* TO ({_IDENTIFIER}(?:, {_IDENTIFIER})*)(?: USING \(| WITH CHECK \(|;)",
                           re.MULTILINE)


class CheckFailed(Exception):
    """A check's negative result; the message says what is wrong, details carry the evidence."""

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.details = details


class CheckSkipped(Exception):
    """A check that could not be made; the message says why."""


class Report:
    """Each check with its status (passed, failed, skipped), message, timing and evidence."""

    def __init__(self, mode: str, backup_path: Path, manifest_path: Path):
        self.mode = mode
        self.backup_path = backup_path
        self.manifest_path = manifest_path
        self.manifest: dict = {}
        self.checks: list[dict] = []
        self.restored_database: str | None = None
        # Where a kept restore can be reached: the scratch cluster's directory, socket, port, role.
        self.restored_cluster: dict | None = None
        self.started = time.perf_counter()

    @contextlib.contextmanager
    def check(self, name: str):
        entry = {"name": name, "status": "passed", "message": ""}
        start = time.perf_counter()
        try:
            yield entry
        except CheckFailed as failure:
            entry.update(failure.details, status="failed", message=str(failure))
        except CheckSkipped as skipped:
            entry.update(status="skipped", message=str(skipped))
        except Exception as error:  # noqa: BLE001 - an unexpected error fails its check, with the error
            entry.update(status="failed", message=f"unexpected error: {type(error).__name__}: {error}",
                         error=type(error).__name__)
        finally:
            entry["seconds"] = round(time.perf_counter() - start, 4)
            self.checks.append(entry)

    def skip(self, names, reason: str) -> None:
        for name in names:
            self.checks.append({"name": name, "status": "skipped", "message": reason, "seconds": 0.0})

    @property
    def failed(self) -> list[dict]:
        return [entry for entry in self.checks if entry["status"] == "failed"]

    @property
    def passed(self) -> bool:
        return not self.failed

    def status(self, name: str) -> str | None:
        return next((entry["status"] for entry in self.checks if entry["name"] == name), None)

    def failure_message(self) -> str:
        label = self.manifest.get("name") or self.backup_path.name
        return f"Cannot verify backup {label}: " + "; ".join(f"{e['name']}: {e['message']}" for e in self.failed)

    def as_dict(self) -> dict:
        return {
            "backup": str(self.backup_path), "manifest": str(self.manifest_path), "mode": self.mode,
            "name": self.manifest.get("name"), "kind": self.manifest.get("kind"),
            "database": self.manifest.get("database"), "format_version": self.manifest.get("format_version"),
            "restored_database": self.restored_database, "restored_cluster": self.restored_cluster,
            "passed": self.passed, "seconds": round(time.perf_counter() - self.started, 3),
            "checks": self.checks,
        }


def planned_checks(mode: str, kind: str = "postgresql") -> list[str]:
    """What a verification of this mode would check, for check mode."""
    checks = list(QUICK_CHECKS[kind])
    if kind == "postgresql":
        checks += {"quick": (), "deep": DEEP_CHECKS, "thorough": THOROUGH_CHECKS}[mode]
    return checks


def pg_tool(name: str, bindir: str | None = None, server_version_num: int | None = None) -> str:
    """The path of a PostgreSQL client program, preferring the version of the server involved."""
    candidates = [Path(bindir) / name] if bindir else []
    if server_version_num:
        candidates.append(Path(f"/usr/lib/postgresql/{server_version_num // 10000}/bin") / name)
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"Cannot find {name}: install the PostgreSQL client or set pg_bindir")
    return found


# --- quick -------------------------------------------------------------------------------------

def _read_toc(path: Path, pg_restore: str) -> str:
    result = subprocess.run([pg_restore, "--list", str(path)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise CheckFailed(f"pg_restore cannot read the archive's table of contents: {result.stderr.strip()}")
    return result.stdout


def _check_database(report: Report, archived: str | None) -> None:
    with report.check("database") as entry:
        entry["archive_database"] = archived
        if archived != report.manifest["database"]:
            raise CheckFailed(f"the archive holds database {archived!r}, the manifest is for "
                              f"{report.manifest['database']!r}")


def _check_tables(report: Report, archive: pg_archive.Archive) -> None:
    """Every table of the manifest has a TABLE DATA entry of its own, by exact schema and name as the
    archive's table of contents stores them: `rentals` is never found in the data of `rentals archive`."""
    with report.check("tables in archive") as entry:
        if not archive.toc_complete:
            raise CheckFailed(f"cannot read the archive's table of contents: {archive.error}")
        tables = report.manifest["tables"]
        archived = {(data.namespace, data.tag) for data in archive.table_data()}
        missing = [backup_manifest.table_key(t["schema"], t["name"]) for t in tables
                   if (t["schema"], t["name"]) not in archived]
        entry["tables"] = len(tables)
        if missing:
            raise CheckFailed(f"{len(missing)} table(s) of the manifest have no data in the archive: "
                              f"{', '.join(missing)}", missing_tables=missing)


def _check_rdb(report: Report) -> None:
    with report.check("rdb structure"):
        checker = shutil.which("redis-check-rdb")
        if not checker:
            raise CheckSkipped("redis-check-rdb is not installed")
        result = subprocess.run([checker, str(report.backup_path)], capture_output=True, text=True, check=False)
        if result.returncode != 0 or "RDB looks OK" not in result.stdout:
            raise CheckFailed(f"redis-check-rdb rejects the file: {result.stdout.strip().splitlines()[-1:]}")


def _check_snapshot(report: Report) -> None:
    """The descriptor is the one the manifest signed (sha256 above); the snapshot it names must
    still be in ElastiCache, available, and the same one."""
    with report.check("snapshot") as entry:
        recorded = json.loads(report.backup_path.read_text(encoding="utf-8"))
        entry["snapshot"] = recorded.get("snapshot_name")
        if recorded != report.manifest["snapshot"]:
            raise CheckFailed("the snapshot descriptor differs from the manifest's")
        try:
            elasticache_snapshots.check(recorded)
        except elasticache_snapshots.SnapshotFailed as error:
            raise CheckFailed(str(error)) from error


def _read_archive(path: Path) -> dict:
    try:
        return mongo_archive.read(path)
    except mongo_archive.ArchiveError as error:
        raise CheckFailed(str(error)) from error


def _check_collections(report: Report, contents: dict) -> None:
    with report.check("collections in archive") as entry:
        archived = {backup_manifest.table_key(c["database"], c["name"]): c["documents"] for c in contents["collections"]}
        expected = {backup_manifest.table_key(c["database"], c["name"]): c["documents"]
                    for c in report.manifest["collections"]}
        entry["collections"] = len(expected)
        missing = sorted(set(expected) - set(archived))
        differing = {key: {"expected": count, "actual": archived[key]} for key, count in sorted(expected.items())
                     if key in archived and archived[key] != count}
        problems = [f"{len(missing)} collection(s) of the manifest are not in the archive: {', '.join(missing)}"] if missing else []
        if differing:
            problems.append(f"{len(differing)} collection(s) hold other document counts than the manifest's: "
                            + ", ".join(f"{key} ({d['actual']}, {d['expected']})" for key, d in differing.items()))
        if problems:
            raise CheckFailed("; ".join(problems), missing_collections=missing, differences=differing)


def _check_signature(report: Report, manifest_key: str | bytes | None, allow_unsigned: bool) -> None:
    with report.check("signature") as entry:
        if not manifest_key:
            raise CheckSkipped("no manifest key given")
        try:
            status = backup_manifest.authenticate(report.manifest, manifest_key, allow_unsigned, "backup_allow_unsigned")
        except backup_manifest.ManifestError as error:
            raise CheckFailed(str(error)) from error
        entry["signature"] = status
        if status == "unsigned":
            raise CheckSkipped(f"the manifest of backup {report.manifest['name']} is unsigned: allowed for backups "
                               "taken before manifests were signed, its HMAC cannot be checked")


def quick(report: Report, *, pg_bindir: str | None = None, manifest_key: str | bytes | None = None,
          allow_unsigned: bool = False, archive: pg_archive.Archive | None = None) -> Report:
    """Run the quick checks into report; later checks are skipped when an earlier one makes them moot.

    archive: a PostgreSQL backup's archive already read by pg_archive.read (the backup program's
    own pass over the new dump): its hash and table of contents are used instead of a second read.
    """
    _quick(report, pg_bindir, manifest_key, allow_unsigned, None if archive is None else lambda: archive)
    return report


def _quick(report: Report, pg_bindir: str | None, manifest_key, allow_unsigned: bool,
           read_archive) -> pg_archive.Archive | None:
    """The quick checks; with read_archive (a PostgreSQL backup read by pg_archive in one pass)
    the hash and the table of contents come from that pass. Returns the archive so read."""
    with report.check("manifest") as entry:
        try:
            report.manifest = backup_manifest.load(report.manifest_path)
        except backup_manifest.ManifestError as error:
            raise CheckFailed(str(error)) from error
        entry["format_version"] = report.manifest["format_version"]
    if report.failed:
        report.skip(QUICK_CHECKS["postgresql"][1:], "the manifest cannot be read")
        return None
    manifest, path = report.manifest, report.backup_path
    kind = manifest["kind"]
    _check_signature(report, manifest_key, allow_unsigned)

    with report.check("file") as entry:
        if not path.is_file():
            raise CheckFailed(f"{path} does not exist")
        entry["bytes"] = size = path.stat().st_size
        if size == 0:
            raise CheckFailed(f"{path} is empty")
    if report.status("file") == "failed":
        report.skip(QUICK_CHECKS[kind][QUICK_CHECKS[kind].index("file") + 1:], "there is no file to check")
        return None

    with report.check("size") as entry:
        entry["bytes"] = size
        if size != manifest["bytes"]:
            raise CheckFailed(f"the file has {size} bytes, the manifest says {manifest['bytes']}: "
                              "it was truncated or replaced")

    archive = None
    if kind == "postgresql" and read_archive is not None:
        archive = contents = read_archive()
        read_seconds, actual = 0.0, archive.sha256
        read_error = (None if archive.toc_complete
                      else CheckFailed(f"cannot read the archive's table of contents: {archive.error}"))
    else:
        contents, read_error, read_seconds, actual = _hashed_beside(report, pg_bindir)
    with report.check("sha256") as entry:
        entry["sha256"] = actual
        if actual != manifest["sha256"]:
            raise CheckFailed(f"the file's SHA-256 {actual} differs from the manifest's {manifest['sha256']}: "
                              "the file is corrupt or the manifest belongs to another file")

    if kind == "redis":
        _check_rdb(report)
        return None
    if kind == "elasticache":
        _check_snapshot(report)
        return None
    content_checks = _CONTENT_CHECKS[kind]
    if read_error:
        with report.check(content_checks[0]):
            raise read_error
        report.skip(content_checks[1:], "the archive's contents cannot be read")
        return archive
    if archive is not None:
        _check_database(report, archive.dbname)
        _check_tables(report, archive)
    elif kind == "postgresql":
        match = _TOC_DBNAME.search(contents)
        _check_database(report, match.group(1) if match else None)
        _check_tables(report, pg_archive.read_toc(report.backup_path))
    else:
        _check_collections(report, contents)
    # The reading ran beside the hashing; its time is shared by the checks that used it.
    for entry in report.checks[-len(content_checks):]:
        entry["seconds"] = round(entry["seconds"] + read_seconds / len(content_checks), 4)
    return archive


def _hashed_beside(report: Report, pg_bindir: str | None):
    """Hashing is the long part of a quick check; the archive's contents are read beside it
    (pg_restore --list in a subprocess, or the MongoDB archive walked while hashlib and zlib
    release the GIL). Returns the contents, the error reading them, the seconds that took, and
    the file's SHA-256."""
    manifest, path, kind = report.manifest, report.backup_path, report.manifest["kind"]
    readers = {"postgresql": lambda: _read_toc(path, pg_tool("pg_restore", pg_bindir, manifest.get("server_version_num"))),
               "mongodb": lambda: _read_archive(path)}
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        hashing = pool.submit(backup_manifest.sha256_file, path)
        read_started = time.perf_counter()
        contents, read_error = None, None
        if kind in readers:
            try:
                contents = readers[kind]()
            except Exception as failure:  # noqa: BLE001 - reported by the first content check below
                read_error = failure
        read_seconds = time.perf_counter() - read_started
        return contents, read_error, read_seconds, hashing.result()[0]


def _skipped_beyond_quick(report: Report, checks, what: str) -> bool:
    """Skips a mode's own checks, saying why, when the quick ones failed or the kind has none."""
    if report.failed:
        report.skip(checks, "the quick checks failed")
        return True
    if report.manifest["kind"] != "postgresql":
        report.skip(checks, f"a {report.manifest['kind']} backup has no {what}")
        return True
    return False


# --- thorough ----------------------------------------------------------------------------------

class Target:
    """A PostgreSQL server reached with libpq parameters: the server the backup program dumps from.

    Verification never connects to it: thorough mode restores into a scratch cluster of its own.
    """

    def __init__(self, host: str = "", port: int = 5432, user: str = "postgres", password: str | None = None,
                 maintenance_db: str = "postgres", sslmode: str | None = None, sslrootcert: str | None = None):
        self.params = {"host": host or None, "port": port, "user": user, "sslmode": sslmode,
                       "sslrootcert": sslrootcert}
        self.password = password
        self.maintenance_db = maintenance_db

    def conninfo(self, dbname: str) -> str:
        from psycopg.conninfo import make_conninfo
        return make_conninfo(dbname=dbname, **{k: v for k, v in self.params.items() if v is not None})

    def env(self) -> dict:
        env = dict(os.environ)
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    def connect(self, dbname: str, autocommit: bool = True):
        import psycopg
        return psycopg.connect(self.conninfo(dbname), password=self.password, autocommit=autocommit)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified(table: dict) -> str:
    """A manifest table entry ({"schema", "name", ...}) as SQL: "schema"."name"."""
    return f"{quote_ident(table['schema'])}.{quote_ident(table['name'])}"


def _unquote(identifier: str) -> str:
    return identifier[1:-1].replace('""', '"') if identifier.startswith('"') else identifier


def _pg_restore(pg_restore: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([pg_restore, *args], capture_output=True, text=True, check=False)


def _restore_errors(stderr: str) -> list[str]:
    """Each error pg_restore logged, with the lines after it that name the object and the code that
    ran: the statement ("Command was:") and the context (a function called by a constraint, say)."""
    errors = []
    for line in stderr.splitlines():
        if line.startswith("pg_restore: error:"):
            errors.append(line)
        elif errors and line.startswith(("CONTEXT:", "DETAIL:", "Command was:", "PL/pgSQL", "SQL ")):
            errors[-1] += " | " + line.strip()
    return errors


def _extensions(manifest: dict) -> list[tuple[str, str, str]]:
    """(name, version, schema) of each extension the manifest's catalogue lists, unquoted."""
    found = []
    for entry in (manifest.get("catalogue") or {}).get("objects", []):
        if entry["kind"] == "extension":
            match = re.fullmatch(rf"version (.*) schema ({_IDENTIFIER})", entry["definition"])
            found.append((_unquote(entry["name"]), match.group(1), _unquote(match.group(2))))
    return found


def _prepare(cluster: pg_scratch.ScratchCluster, pg_restore: str, report: Report, database: str, role: str,
             toc: str) -> Path:
    """Make the scratch database ready for the restore role; returns the list of entries it restores.

    The cluster's superuser runs only SQL of this program and extension scripts installed on this
    host, never text from the archive: it creates the restore role (no superuser; BYPASSRLS so that
    counting sees every row, not the rows a policy shows), the database the role owns, the roles
    policies name (without login or rights), and the manifest's extensions, in the schemas the
    archive creates, which the restore role creates first. The archive's own extension entries are
    left out of the restore.
    """
    lines = toc.splitlines()
    work = Path(cluster.directory)

    def entries(*descriptions: str) -> list[str]:
        return [line for line in lines if (m := _TOC_LINE.match(line)) and m.group("rest").startswith(descriptions)]

    policies = work / "policies.list"
    policies.write_text("\n".join(entries("POLICY ")) + "\n")
    sql = _pg_restore(pg_restore, "--use-list", str(policies), "--file=-", str(report.backup_path)).stdout
    roles = {_unquote(name) for listed in _POLICY_ROLES.findall(sql)
             for name in re.findall(_IDENTIFIER, listed)}
    with cluster.connect("postgres") as admin:
        admin.execute(f"CREATE ROLE {quote_ident(role)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                      "BYPASSRLS")
        existing = {name for (name,) in admin.execute("SELECT rolname FROM pg_catalog.pg_roles")}
        for name in sorted(roles - existing):
            admin.execute(f"CREATE ROLE {quote_ident(name)} NOLOGIN")
        # template0: whatever an operator added to template1 would show up as extra objects.
        admin.execute(f"CREATE DATABASE {quote_ident(database)} OWNER {quote_ident(role)} TEMPLATE template0")
    schemas = work / "schemas.list"
    schemas.write_text("\n".join(entries("SCHEMA ")) + "\n")
    _run_restore(pg_restore, cluster.conninfo(database, role), "--use-list", str(schemas), str(report.backup_path))
    extensions = _extensions(report.manifest)
    import psycopg
    with cluster.connect(database) as superuser:
        for name, version, schema in extensions:
            try:
                superuser.execute(f"CREATE EXTENSION IF NOT EXISTS {quote_ident(name)} WITH SCHEMA "
                                  f"{quote_ident(schema)} VERSION {_literal(version)} CASCADE")
            except psycopg.Error as error:
                raise CheckFailed(f"cannot create extension {name} {version} in schema {schema} of the scratch "
                                  f"cluster (is its package installed where verification runs?): {error}") from error
    created = {extension[0] for extension in extensions}
    restore = work / "restore.list"
    restore.write_text("\n".join(
        line for line in lines
        if not ((m := _TOC_LINE.match(line)) and (m.group("rest").startswith("SCHEMA ") or any(
            m.group("rest") in (f"EXTENSION - {name} ", f"COMMENT - EXTENSION {name} ") for name in created))))
        + "\n")
    return restore


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class _RestoreError(Exception):
    def __init__(self, returncode: int, errors: list[str], stderr: str):
        super().__init__(f"pg_restore logged errors (exit {returncode}): "
                         + (" || ".join(errors[:MAX_RESTORE_ERRORS]) or stderr.strip()[-500:]))
        self.errors = errors


def _run_restore(pg_restore: str, conninfo: str, *args: str) -> None:
    # Without --exit-on-error pg_restore carries on and lists every error; each one fails the check.
    # --no-owner/--no-privileges: the restore role owns everything and no production role is needed.
    # Publications, subscriptions, security labels and tablespaces belong to the production cluster.
    result = _pg_restore(pg_restore, "--no-owner", "--no-privileges", "--no-publications", "--no-subscriptions",
                         "--no-security-labels", "--no-tablespaces", f"--dbname={conninfo}", *args)
    errors = _restore_errors(result.stderr)
    if result.returncode != 0 or errors:
        raise _RestoreError(result.returncode, errors, result.stderr)


def _restore(report: Report, scratch_dir, pg_bindir: str | None, database: str, role: str,
             jobs: int) -> pg_scratch.ScratchCluster | None:
    """The restore check: a scratch cluster of the dump's major version, the database, the restore."""
    cluster = None
    try:
        with report.check("restore") as entry:
            entry.update(database=database, role=role)
            cluster = pg_scratch.ScratchCluster(
                scratch_dir, pg_scratch.server_bindir(report.manifest["server_version_num"] // 10000, pg_bindir))
            started = time.perf_counter()
            cluster.start()
            entry.update(cluster=cluster.socket_dir, cluster_start_seconds=round(time.perf_counter() - started, 3))
            pg_restore = str(cluster.bindir / "pg_restore")
            toc = _pg_restore(pg_restore, "--list", str(report.backup_path)).stdout
            try:
                restore_list = _prepare(cluster, pg_restore, report, database, role, toc)
                _run_restore(pg_restore, cluster.conninfo(database, role), f"--jobs={jobs}", "--use-list",
                             str(restore_list), str(report.backup_path))
            except _RestoreError as error:
                entry["errors"] = error.errors[: MAX_RESTORE_ERRORS * 2]
                raise CheckFailed(str(error)) from error
    except BaseException:
        # What passes through the check (a module's timeout, an interrupt) never returns the
        # cluster to the caller that would remove it: it goes here.
        if cluster is not None:
            cluster.remove()
        raise
    return cluster


def _count(cluster: pg_scratch.ScratchCluster, database: str, role: str, table: dict, only: str) -> int:
    with cluster.connect(database, role) as connection:
        return connection.execute(f"SELECT count(*) FROM {only}{qualified(table)}").fetchone()[0]


def _check_counts(report: Report, cluster: pg_scratch.ScratchCluster, database: str, role: str, jobs: int) -> None:
    with report.check("row counts") as entry:
        tables = report.manifest["tables"]
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            only = "ONLY " if backup_manifest.counts_own_rows(report.manifest) else ""
            counts = list(pool.map(lambda table: _count(cluster, database, role, table, only), tables))
        _compare_counts(entry, tables, counts)


def _compare_counts(entry: dict, tables: list[dict], counts: list[int]) -> None:
    """Each manifest table's count against the one found (restored, or read from the archive)."""
    differences = [{"table": backup_manifest.table_key(t["schema"], t["name"]), "expected": t["rows"],
                    "actual": actual} for t, actual in zip(tables, counts) if actual != t["rows"]]
    entry["tables"] = len(tables)
    entry["rows"] = sum(counts)
    if differences:
        entry["differences"] = differences
        listed = ", ".join(f"{d['table']} has {d['actual']} rows, the manifest {d['expected']}" for d in differences)
        raise CheckFailed(f"{len(differences)} table(s) differ: {listed}")


def _check_schema(report: Report, cluster: pg_scratch.ScratchCluster, database: str, role: str,
                  ignore_kinds, exclude) -> None:
    with report.check("schema") as entry:
        expected = _catalogue(report)
        with cluster.connect(database, role, autocommit=False) as connection, connection.cursor() as cursor:
            restored = pg_catalogue.read_objects(cursor)
        differences = pg_catalogue.compare(expected, restored, ignore_kinds, exclude)
        entry["objects"] = len(expected["objects"])
        entry["digest_equal"] = expected["digest"] == restored["digest"]
        _schema_verdict(entry, differences)


def _schema_verdict(entry: dict, differences: list[dict]) -> None:
    if differences:
        entry["differences"] = differences
        raise CheckFailed(f"{len(differences)} difference(s): " + ", ".join(pg_catalogue.describe(d) for d in differences))


def _check_sequences(report: Report, cluster: pg_scratch.ScratchCluster, database: str, role: str,
                     ignore_kinds, exclude) -> None:
    with report.check("sequences") as entry:
        with cluster.connect(database, role, autocommit=False) as connection, connection.cursor() as cursor:
            values = pg_catalogue.read_sequence_values(cursor)
            behind_data = pg_catalogue.sequence_problems(pg_catalogue.read_sequences(cursor))
        _compare_sequences(report, entry, values, behind_data, ignore_kinds, exclude)


def _compare_sequences(report: Report, entry: dict, values: list[dict], behind_data: list[dict], ignore_kinds,
                       exclude) -> None:
    """Sequences (values: name and next value, as restored or as the archive sets them) behind the
    manifest's recorded values, and those behind_data already found behind their columns' data."""
    recorded = report.manifest.get("sequence_values")
    if recorded is None:
        entry["note"] = (f"manifest format {report.manifest['format_version']} records no sequence values: "
                         "only the data drawn from sequences is compared")
    problems = [p for p in pg_catalogue.sequence_value_problems(recorded or [], values) + behind_data
                if not pg_catalogue.excluded(p, ignore_kinds, exclude)]
    entry["sequences"] = len(values)
    if problems:
        entry["differences"] = problems
        raise CheckFailed(f"{len(problems)} sequence(s) behind: "
                          + ", ".join(f"{p['name']} ({p['actual']}; {p['expected']})" for p in problems))


def thorough(report: Report, *, scratch_dir, jobs: int = 2, ignore_kinds=(), exclude=(), pg_bindir: str | None = None,
             manifest_key: str | bytes | None = None, allow_unsigned: bool = False, keep_restored: bool = False,
             restore_role: str = DEFAULT_RESTORE_ROLE) -> Report:
    """Quick checks, then restore into a scratch cluster, count and compare.

    The cluster (pg_scratch.py, under scratch_dir) runs the server programs of the dump's major
    version (pg_bindir overrides where they are) and is removed at the end, also on failure. With
    keep_restored it keeps running for a drill to inspect, and report.restored_cluster says where;
    the first run of the program after this process has ended removes it (cleanup_stale).
    """
    quick(report, pg_bindir=pg_bindir, manifest_key=manifest_key, allow_unsigned=allow_unsigned)
    if _skipped_beyond_quick(report, THOROUGH_CHECKS, "restore check"):
        return report
    database = report.manifest["database"]
    report.restored_database = database
    cluster = None
    try:
        cluster = _restore(report, scratch_dir, pg_bindir, database, restore_role, jobs)
        if report.failed:
            report.skip(THOROUGH_CHECKS[1:], "the restore failed")
            return report
        _check_counts(report, cluster, database, restore_role, jobs)
        _check_schema(report, cluster, database, restore_role, ignore_kinds, exclude)
        _check_sequences(report, cluster, database, restore_role, ignore_kinds, exclude)
        if keep_restored:
            report.restored_cluster = {"directory": str(cluster.directory), "socket_dir": cluster.socket_dir,
                                       "port": pg_scratch.PORT, "database": database, "user": restore_role}
    finally:
        if cluster is not None and report.restored_cluster is None:
            cluster.remove()
    return report


# --- deep --------------------------------------------------------------------------------------

# pg_dump sets each sequence with one statement: SELECT pg_catalog.setval('<name>', <value>, <is_called>);
_SETVAL = re.compile(r"SELECT pg_catalog\.setval\('((?:[^']|'')*)', (-?\d+), (true|false)\);")
_INCREMENT = re.compile(r" increment (-?\d+) ")
# A grantee in GRANT ... TO <role>[, <role>] [WITH GRANT OPTION]; as pg_dump writes ACL entries.
_GRANTEES = re.compile(rf"^GRANT .* TO ({_IDENTIFIER}(?:, {_IDENTIFIER})*)(?: WITH GRANT OPTION)?;", re.MULTILINE)


def _catalogue(report: Report) -> dict:
    catalogue = report.manifest.get("catalogue")
    if not catalogue:
        raise CheckSkipped(f"manifest format {report.manifest['format_version']} has no schema catalogue")
    return catalogue


def _check_data_blocks(report: Report, archive: pg_archive.Archive, seconds: float) -> None:
    with report.check("data blocks") as entry:
        blocks = list(archive.blocks.values())
        entry.update(compression=archive.compression, blocks=len(blocks), archive_version=".".join(map(str, archive.version)),
                     stored_bytes=sum(b.stored_bytes for b in blocks), data_bytes=sum(b.data_bytes for b in blocks),
                     read_seconds=round(seconds, 4))
        if archive.unsupported:
            raise CheckFailed(archive.unsupported)
        problems = [block.error for block in blocks if block.error]
        unread = [e.label for e in archive.entries if e.desc in ("TABLE DATA", "BLOBS") and e.dump_id not in archive.blocks]
        if archive.error:
            problems.append(archive.error)
        if unread:
            problems.append(f"no data block for {', '.join(unread)}")
        if problems:
            raise CheckFailed(f"the archive's data cannot all be read: {'; '.join(problems)}")
    # The one read (hash, table of contents, blocks) ran before the checks; its time is this check's.
    report.checks[-1]["seconds"] = round(report.checks[-1]["seconds"] + seconds, 4)


def _check_stream_counts(report: Report, archive: pg_archive.Archive) -> None:
    with report.check("row counts") as entry:
        tables, blocks = report.manifest["tables"], archive.table_blocks()
        found = [blocks[(t["schema"], t["name"])] for t in tables]
        entry["per_table"] = [{"table": backup_manifest.table_key(t["schema"], t["name"]), "rows": b.rows,
                               "stored_bytes": b.stored_bytes, "data_bytes": b.data_bytes, "seconds": b.seconds}
                              for t, b in zip(tables, found)]
        counts = [block.rows for block in found]
        if not backup_manifest.counts_own_rows(report.manifest):
            counts = _with_children(archive, tables)
        _compare_counts(entry, tables, counts)


_INHERITS = re.compile(r"\bINHERITS \((.*)\);\s*$", re.S)
_QUALIFIED = re.compile(r'("(?:[^"]|"")+"|[^".,\s]+)\.("(?:[^"]|"")+"|[^".,\s]+)')


def _with_children(archive: pg_archive.Archive, tables: list[dict]) -> list[int]:
    """Each table's rows with those of its inheritance descendants, as manifests before format 4
    counted them; the parents come from the CREATE TABLE ... INHERITS (...) of the TOC."""
    rows = {key: block.rows for key, block in archive.table_blocks().items() if block}
    children: dict[tuple, list[tuple]] = {}
    for entry in archive.entries:
        match = _INHERITS.search(entry.defn) if entry.desc == "TABLE" else None
        for schema, name in _QUALIFIED.findall(match.group(1)) if match else ():
            children.setdefault((_unquote(schema), _unquote(name)), []).append((entry.namespace, entry.tag))

    def total(table: tuple, seen: frozenset) -> int:
        return rows.get(table, 0) + sum(total(child, seen | {child}) for child in children.get(table, ()) if child not in seen)

    return [total(key, frozenset({key})) for key in ((t["schema"], t["name"]) for t in tables)]


def _check_table_hashes(report: Report, archive: pg_archive.Archive) -> None:
    with report.check("table hashes") as entry:
        tables, blocks = report.manifest["tables"], archive.table_blocks()
        recorded = [t for t in tables if "data_sha256" in t]
        if not recorded:
            raise CheckSkipped(f"manifest format {report.manifest['format_version']} records no per-table data hashes "
                               "(taken before deep verification): the file's SHA-256 covers the data")
        differing = [backup_manifest.table_key(t["schema"], t["name"]) for t in recorded
                     if blocks[(t["schema"], t["name"])].sha256 != t["data_sha256"]]
        entry["tables"] = len(recorded)
        if differing:
            entry["differing_tables"] = differing
            raise CheckFailed(f"{len(differing)} table(s) hold other data than the manifest recorded: {', '.join(differing)}")


def _check_toc_schema(report: Report, archive: pg_archive.Archive, ignore_kinds, exclude) -> None:
    with report.check("schema") as entry:
        expected = _catalogue(report)
        entry["objects"] = len(expected["objects"])
        entry["compared"] = "presence in the archive's table of contents"
        _schema_verdict(entry, pg_catalogue.missing_from_toc(expected, archive.entries, ignore_kinds, exclude))


def _check_toc_sequences(report: Report, archive: pg_archive.Archive, ignore_kinds, exclude) -> None:
    """The values the archive sets (SEQUENCE SET) against the manifest's, and against the data the
    manifest's catalogue recorded for the columns each sequence gives values to (the data in this
    archive, when its counts and hashes hold)."""
    with report.check("sequences") as entry:
        catalogue = report.manifest.get("catalogue") or {}
        recorded = {s["name"]: s for s in report.manifest.get("sequence_values") or []}
        increments = {o["name"]: int(m.group(1)) for o in catalogue.get("objects", [])
                      if o["kind"] == "sequence" and (m := _INCREMENT.search(o["definition"] + " "))}
        increments.update({name: s["increment"] for name, s in recorded.items()})
        if not increments:
            raise CheckSkipped(f"manifest format {report.manifest['format_version']} records neither sequence values "
                               "nor a catalogue to compare the archive's sequences with")
        archived = {}
        for toc_entry in archive.entries:
            if toc_entry.desc == "SEQUENCE SET" and (match := _SETVAL.search(toc_entry.defn)):
                archived[match.group(1).replace("''", "'")] = (int(match.group(2)), match.group(3) == "true")
        values, sequences = [], []
        for name, (last_value, is_called) in sorted(archived.items()):
            increment = increments.get(name, 1)
            values.append({"name": name, "next_value": last_value + increment if is_called else last_value})
            columns = next((s.get("columns", []) for s in catalogue.get("sequences", []) if s["name"] == name), [])
            sequences.append({"name": name, "last_value": last_value, "is_called": is_called, "increment": increment,
                              "columns": columns})
        _compare_sequences(report, entry, values, pg_catalogue.sequence_problems(sequences), ignore_kinds, exclude)


def _check_restore_needs(report: Report, archive: pg_archive.Archive) -> None:
    """What a restore target must have for this archive to restore with its owners and grants:
    the roles it names (owners, grantees, policies' roles) and the extensions it creates."""
    with report.check("restore needs") as entry:
        roles = {e.owner for e in archive.entries if e.owner}
        for toc_entry in archive.entries:
            policies = _POLICY_ROLES.findall(toc_entry.defn) if toc_entry.desc == "POLICY" else []
            for listed in _GRANTEES.findall(toc_entry.defn) + policies:
                roles |= {_unquote(name) for name in re.findall(_IDENTIFIER, listed)}
        roles -= {"PUBLIC", "public"}
        versions = {name: version for name, version, _schema in _extensions(report.manifest)}
        extensions = sorted(e.tag for e in archive.entries if e.desc == "EXTENSION")
        entry["roles"] = sorted(roles)
        entry["extensions"] = [{"name": name, "version": versions.get(name)} for name in extensions]
        entry["message"] = (f"a restore target needs the role(s) {', '.join(sorted(roles)) or 'none'} and the "
                            f"extension(s) {', '.join(extensions) or 'none'}")


def deep(report: Report, *, manifest_key: str | bytes | None = None, allow_unsigned: bool = False, ignore_kinds=(),
         exclude=()) -> Report:
    """Quick checks and the deep ones from one read of a PostgreSQL custom-format archive
    (pg_archive.read); no server, nothing restored. Other kinds get their quick checks."""
    timing = {}

    def read_once() -> pg_archive.Archive:
        started = time.perf_counter()
        archive = pg_archive.read(report.backup_path)
        timing["read"] = time.perf_counter() - started
        return archive

    archive = _quick(report, None, manifest_key, allow_unsigned, read_once)
    if _skipped_beyond_quick(report, DEEP_CHECKS, "deep checks beyond its quick ones"):
        return report
    _check_data_blocks(report, archive, timing["read"])
    if report.failed:
        report.skip(("row counts", "table hashes"), "the archive's data cannot all be read")
    else:
        _check_stream_counts(report, archive)
        _check_table_hashes(report, archive)
    _check_toc_schema(report, archive, ignore_kinds, exclude)
    _check_toc_sequences(report, archive, ignore_kinds, exclude)
    _check_restore_needs(report, archive)
    return report
