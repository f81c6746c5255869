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
thorough  quick, then a restore into a throwaway database (always dropped, also on failure) that
          must log no error, per-table row counts equal to the manifest's, the restored schema
          catalogue equal to the manifest's, and every owned sequence ahead of its column's data.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path

from ansible_collections.chajipoa.platform.plugins.module_utils import backup_manifest, mongo_archive, pg_catalogue

_FILE_CHECKS = ("manifest", "file", "size", "sha256")
# What each kind's quick mode checks of the contents, after the file checks.
_CONTENT_CHECKS = {
    "postgresql": ("database", "tables in archive"),
    "redis": ("rdb structure",),
    "mongodb": ("collections in archive",),
}
QUICK_CHECKS = {kind: _FILE_CHECKS + checks for kind, checks in _CONTENT_CHECKS.items()}
THOROUGH_CHECKS = ("restore", "row counts", "schema", "sequences")
# How many restore errors a report carries; the first ones name the cause, the rest repeat it.
MAX_RESTORE_ERRORS = 5
_TOC_DBNAME = re.compile(r"^;\s+dbname:\s(.*)$", re.MULTILINE)
_TOC_TABLE_DATA = re.compile(r"^\d+; \d+ \d+ TABLE DATA (.*)$", re.MULTILINE)


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
            "restored_database": self.restored_database, "passed": self.passed, "seconds": round(time.perf_counter() - self.started, 3),
            "checks": self.checks,
        }


def planned_checks(mode: str, kind: str = "postgresql") -> list[str]:
    """What a verification of this mode would check, for check mode."""
    checks = list(QUICK_CHECKS[kind])
    if mode == "thorough" and kind == "postgresql":
        checks += THOROUGH_CHECKS
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


def _check_database(report: Report, toc: str) -> None:
    with report.check("database") as entry:
        match = _TOC_DBNAME.search(toc)
        archived = match.group(1) if match else None
        entry["archive_database"] = archived
        if archived != report.manifest["database"]:
            raise CheckFailed(f"the archive holds database {archived!r}, the manifest is for "
                              f"{report.manifest['database']!r}")


def _check_tables(report: Report, toc: str) -> None:
    with report.check("tables in archive") as entry:
        # An entry reads "<schema> <table> <owner>"; names may hold spaces, so match each expected
        # table as a prefix rather than splitting the line.
        entries = _TOC_TABLE_DATA.findall(toc)
        missing = [backup_manifest.table_key(t["schema"], t["name"]) for t in report.manifest["tables"]
                   if not any(e.startswith(f"{t['schema']} {t['name']} ") for e in entries)]
        entry["tables"] = len(report.manifest["tables"])
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


def quick(report: Report, *, pg_bindir: str | None = None, manifest_key: str | None = None) -> Report:
    """Run the quick checks into report; later checks are skipped when an earlier one makes them moot."""
    with report.check("manifest") as entry:
        try:
            report.manifest = backup_manifest.load(report.manifest_path)
        except backup_manifest.ManifestError as error:
            raise CheckFailed(str(error)) from error
        entry["format_version"] = report.manifest["format_version"]
    if report.failed:
        report.skip(QUICK_CHECKS["postgresql"][1:], "the manifest cannot be read")
        return report
    manifest, path = report.manifest, report.backup_path
    kind = manifest["kind"]

    with report.check("file") as entry:
        if not path.is_file():
            raise CheckFailed(f"{path} does not exist")
        entry["bytes"] = size = path.stat().st_size
        if size == 0:
            raise CheckFailed(f"{path} is empty")
    if report.failed:
        report.skip(QUICK_CHECKS[kind][2:], "there is no file to check")
        return report

    with report.check("size") as entry:
        entry["bytes"] = size
        if size != manifest["bytes"]:
            raise CheckFailed(f"the file has {size} bytes, the manifest says {manifest['bytes']}: "
                              "it was truncated or replaced")

    # Hashing is the long part of a quick check; the archive's contents are read beside it
    # (pg_restore --list in a subprocess, or the MongoDB archive walked while hashlib and zlib
    # release the GIL).
    readers = {"postgresql": lambda: _read_toc(path, pg_tool("pg_restore", pg_bindir, manifest.get("server_version_num"))),
               "mongodb": lambda: _read_archive(path)}
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        hashing = pool.submit(backup_manifest.sha256_file, path)
        read_started = time.perf_counter()
        contents, read_error = None, None
        if kind in readers:
            try:
                contents = readers[kind]()
            except CheckFailed as failure:
                read_error = failure
        read_seconds = time.perf_counter() - read_started
        with report.check("sha256") as entry:
            actual, _ = hashing.result()
            entry["sha256"] = actual
            if actual != manifest["sha256"]:
                raise CheckFailed(f"the file's SHA-256 {actual} differs from the manifest's {manifest['sha256']}: "
                                  "the file is corrupt or the manifest belongs to another file")

    if kind == "redis":
        _check_rdb(report)
        return report
    content_checks = _CONTENT_CHECKS[kind]
    if read_error:
        with report.check(content_checks[0]):
            raise read_error
        report.skip(content_checks[1:], "the archive's contents cannot be read")
        return report
    if kind == "postgresql":
        _check_database(report, contents)
        _check_tables(report, contents)
    else:
        _check_collections(report, contents)
    # The reading ran beside the hashing; its time is shared by the checks that used it.
    for entry in report.checks[-len(content_checks):]:
        entry["seconds"] = round(entry["seconds"] + read_seconds / len(content_checks), 4)
    return report


# --- thorough ----------------------------------------------------------------------------------

class Target:
    """Where thorough mode restores: a PostgreSQL server reached with libpq parameters."""

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


def scratch_name(prefix: str, database: str) -> str:
    """A fresh database name no run shares: prefix_database_random, within PostgreSQL's 63 bytes."""
    suffix = secrets.token_hex(4)
    return f"{prefix}_{database}"[: 63 - len(suffix) - 1] + f"_{suffix}"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified(table: dict) -> str:
    """A manifest table entry ({"schema", "name", ...}) as SQL: "schema"."name"."""
    return f"{quote_ident(table['schema'])}.{quote_ident(table['name'])}"


def _restore(report: Report, target: Target, database: str, jobs: int, pg_bindir: str | None) -> None:
    pg_restore = pg_tool("pg_restore", pg_bindir, report.manifest.get("server_version_num"))
    with report.check("restore") as entry:
        entry["database"] = database
        # --no-owner/--no-privileges: a drill host need not have the production roles. Without
        # --exit-on-error pg_restore carries on and lists every error, and each one fails the check.
        command = [pg_restore, "--no-owner", "--no-privileges", f"--jobs={jobs}",
                   f"--dbname={target.conninfo(database)}", str(report.backup_path)]
        result = subprocess.run(command, capture_output=True, text=True, env=target.env(), check=False)
        errors = [line for line in result.stderr.splitlines() if line.startswith("pg_restore: error:")
                  or line.startswith("Command was:")]
        entry["errors"] = errors[: MAX_RESTORE_ERRORS * 2]
        if result.returncode != 0 or errors:
            first = [line for line in errors if line.startswith("pg_restore: error:")][:MAX_RESTORE_ERRORS]
            raise CheckFailed(f"pg_restore logged errors (exit {result.returncode}): "
                              + (" | ".join(first) or result.stderr.strip()[-500:]))


def _count(target: Target, database: str, table: dict) -> int:
    with target.connect(database) as connection:
        return connection.execute(f"SELECT count(*) FROM {qualified(table)}").fetchone()[0]


def _check_counts(report: Report, target: Target, database: str, jobs: int) -> None:
    with report.check("row counts") as entry:
        tables = report.manifest["tables"]
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            counts = list(pool.map(lambda table: _count(target, database, table), tables))
        differences = [{"table": backup_manifest.table_key(t["schema"], t["name"]), "expected": t["rows"],
                        "actual": actual} for t, actual in zip(tables, counts) if actual != t["rows"]]
        entry["tables"] = len(tables)
        entry["rows"] = sum(counts)
        if differences:
            entry["differences"] = differences
            listed = ", ".join(f"{d['table']} has {d['actual']} rows, the manifest {d['expected']}" for d in differences)
            raise CheckFailed(f"{len(differences)} table(s) differ: {listed}")


def _check_schema_and_sequences(report: Report, target: Target, database: str, ignore_kinds, exclude) -> None:
    with target.connect(database, autocommit=False) as connection, connection.cursor() as cursor:
        expected = report.manifest.get("catalogue")
        with report.check("schema") as entry:
            if not expected:
                raise CheckSkipped(f"manifest format {report.manifest['format_version']} has no schema catalogue")
            restored = pg_catalogue.read_objects(cursor)
            differences = pg_catalogue.compare(expected, restored, ignore_kinds, exclude)
            entry["objects"] = len(expected["objects"])
            entry["digest_equal"] = expected["digest"] == restored["digest"]
            if differences:
                entry["differences"] = differences
                raise CheckFailed(f"{len(differences)} difference(s): "
                                  + ", ".join(pg_catalogue.describe(d) for d in differences))
        with report.check("sequences") as entry:
            sequences = pg_catalogue.read_sequences(cursor)
            problems = [p for p in pg_catalogue.sequence_problems(sequences)
                        if not pg_catalogue.excluded(p, ignore_kinds, exclude)]
            entry["sequences"] = len(sequences)
            if problems:
                entry["differences"] = problems
                raise CheckFailed(f"{len(problems)} sequence(s) behind their column's data: "
                                  + ", ".join(f"{p['name']} ({p['actual']}, {p['expected']})" for p in problems))
        connection.rollback()


def thorough(report: Report, target: Target, *, jobs: int = 2, scratch_prefix: str = "chajipoa_verify",
             restore_database: str | None = None, keep_restored: bool = False, ignore_kinds=(), exclude=(),
             pg_bindir: str | None = None) -> Report:
    """Quick checks, then restore, count and compare; the scratch database is dropped unless kept."""
    quick(report, pg_bindir=pg_bindir)
    if report.failed:
        report.skip(THOROUGH_CHECKS, "the quick checks failed")
        return report
    if report.manifest["kind"] != "postgresql":
        report.skip(THOROUGH_CHECKS, f"a {report.manifest['kind']} backup has no restore check")
        return report
    database = restore_database or scratch_name(scratch_prefix, report.manifest["database"])
    report.restored_database = database
    with target.connect(target.maintenance_db) as admin:
        # template0: whatever an operator added to template1 would show up as extra objects.
        admin.execute(f"CREATE DATABASE {quote_ident(database)} TEMPLATE template0")
        try:
            _restore(report, target, database, jobs, pg_bindir)
            if report.failed:
                report.skip(THOROUGH_CHECKS[1:], "the restore failed")
            else:
                _check_counts(report, target, database, jobs)
                _check_schema_and_sequences(report, target, database, ignore_kinds, exclude)
        finally:
            if not keep_restored:
                admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(database)} WITH (FORCE)")
    return report
