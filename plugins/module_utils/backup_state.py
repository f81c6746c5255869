# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""What runs of the backup program leave on the host: the state and metrics files, the per-host
lock, and the leftovers of runs that were killed.

Failures must always show: an attempt is recorded as failed before it starts and as succeeded only
when it has, so a run killed at any point leaves metrics that say it failed; while it is under way it
also records when it started, which it clears when it ends either way, so that the monitoring tells
a long run from a failed one and a run that never ended (killed without a chance to record it) from
both; the first attempt is kept, so that a database never backed up successfully has an age too;
the metrics are written even when the state file cannot be (a full disk); an unreadable state
file is reported and started anew, never a crash.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import secrets
import signal
import time
from pathlib import Path

from ansible_collections.chajipoa.platform.plugins.module_utils import backup_checks, backup_manifest, pg_scratch
from ansible_collections.chajipoa.platform.plugins.module_utils.backup_config import BackupFailed, Config, log

# Each section's field that says whether the last attempt succeeded.
_OUTCOME = {"backups": "last_run_success", "verifications": "last_success"}
_SECTIONS = tuple(_OUTCOME)
# When this process started, for the lock's holder record (the module is imported at start).
_PROCESS_STARTED = backup_manifest.iso(backup_manifest.utc_now())


class StateNotSaved(BackupFailed):
    """The state or the metrics file could not be written; the message names which and why."""


class LockTimeout(BackupFailed):
    """Another run held the lock for longer than the timeout; the message names it."""


class State:
    """What the monitoring textfile reports, kept across runs: the last success survives a failure."""

    def __init__(self, config: Config):
        self.config = config
        self.path = config.state_dir / "state.json"
        self.rebuilt = False
        self.data = self._load()
        # The entries this process recorded: the ones a state that cannot be saved turns into failures.
        self._attempts: set[tuple[str, str]] = set()

    def _load(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not all(isinstance(data.get(section), dict) for section in _SECTIONS):
                raise ValueError("not a state document")
        except FileNotFoundError:
            return {section: {} for section in _SECTIONS}
        except (OSError, ValueError) as error:
            log(f"Cannot read state file {self.path}: {error}; starting it anew from the backups on disk")
            self.rebuilt = True
            return {section: {} for section in _SECTIONS}
        return data

    def _entry(self, section: str, key: str, **labels) -> dict:
        self._attempts.add((section, key))
        entry = self.data[section].setdefault(key, {})
        entry.update(labels)
        return entry

    def _backup(self, kind: str, database: str) -> dict:
        entry = self._entry("backups", f"{kind}/{database}", kind=kind, database=database)
        # Until its first success, a database's backup is as old as its first attempt: one whose
        # backups have failed from the start alerts like one whose last success is old.
        entry.setdefault("first_attempt", time.time())
        return entry

    def _verification(self, kind: str, database: str, mode: str) -> dict:
        return self._entry("verifications", f"{kind}/{database}/{mode}", kind=kind, database=database, mode=mode)

    def backup_started(self, kind: str, database: str) -> None:
        """Until it succeeds, an attempt counts as failed: a run killed mid-way says so."""
        _start(self._backup(kind, database), "backups")

    def backup(self, kind: str, database: str, ok: bool, manifest: dict | None = None, seconds: float = 0.0) -> None:
        entry = _end(self._backup(kind, database), "backups", ok)
        entry["last_duration_seconds"] = round(seconds, 3)
        if ok and manifest:
            entry.update(last_success=time.time(), last_size_bytes=manifest["bytes"], last_name=manifest["name"])

    def restore_success(self, kind: str, database: str, manifest: dict) -> None:
        """A rebuilt state's last success, from the newest verified backup on disk."""
        finished = dt.datetime.fromisoformat(manifest["finished_at"]).timestamp()
        self.data["backups"].setdefault(f"{kind}/{database}", {"kind": kind, "database": database}).update(
            last_success=finished, last_size_bytes=manifest["bytes"], last_name=manifest["name"])

    def verification_started(self, kind: str, database: str, mode: str) -> None:
        _start(self._verification(kind, database, mode), "verifications")

    def verification(self, kind: str, database: str, report: backup_checks.Report) -> None:
        _end(self._verification(kind, database, report.mode), "verifications", report.passed)["name"] = (
            report.manifest.get("name") or report.backup_path.name)

    def verification_failed(self, kind: str, database: str, mode: str) -> None:
        """A verification that could not run: no backup to verify, a copy that could not be fetched."""
        _end(self._verification(kind, database, mode), "verifications", False)

    def end_unfinished(self) -> list[str]:
        """End every attempt still recorded as under way, as the failure it was recorded as at its
        start; returns them by name. Called holding the lock, where no other run can have one under
        way: at the start of a run, those of a run that was killed; at the end, this run's own that
        were cut short (SIGTERM, a crash)."""
        ended = []
        for section in _SECTIONS:
            for key, entry in sorted(self.data[section].items()):
                if entry.pop("running_since", None) is not None:
                    ended.append(f"{section.removesuffix('s')} {key}")
        return ended

    def save(self) -> None:
        """The state file, then the metrics, each whatever became of the other."""
        problems = []
        try:
            self.config.state_dir.mkdir(parents=True, exist_ok=True)
            backup_manifest.atomic_write(self.path, json.dumps(self.data, indent=1, sort_keys=True) + "\n")
        except OSError as error:
            problems.append(f"Cannot save the state file {self.path}: {error}")
            # What cannot be remembered did not happen: this process's attempts count as failed.
            for section, key in self._attempts:
                self.data[section][key][_OUTCOME[section]] = 0
        if self.config.metrics_file:
            metrics = render_metrics(self.data)
            try:
                self.config.metrics_file.parent.mkdir(parents=True, exist_ok=True)
                # node_exporter reads it as another user.
                backup_manifest.atomic_write(self.config.metrics_file, metrics, mode=0o644)
            except OSError as error:
                problems.append(f"Cannot write the metrics file {self.config.metrics_file}: {error}")
                overwrite_metrics(self.config.metrics_file, metrics)
        if problems:
            raise StateNotSaved("; ".join(problems))


def _start(entry: dict, section: str) -> None:
    now = time.time()
    entry.update({"last_run": now, _OUTCOME[section]: 0, "running_since": now})


def _end(entry: dict, section: str, ok: bool) -> dict:
    entry.pop("running_since", None)
    entry.update({"last_run": time.time(), _OUTCOME[section]: int(ok)})
    return entry


def overwrite_metrics(path: Path, text: str) -> None:
    """The metrics file rewritten in place, where a new copy could not be written (a full disk):
    truncating it first frees its blocks for the new content, which is about as long. Left as it
    was, the file would go on saying the last run succeeded. A scrape in between may find it
    partial, which node_exporter reports as a textfile scrape error; a file that cannot be
    rewritten either is removed, so that no stale success is served."""
    try:
        with open(path, "r+", encoding="utf-8") as handle:
            handle.truncate(0)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except FileNotFoundError:
        pass
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink()


_METRICS = (
    ("chajipoa_backup_last_success_timestamp_seconds", "backups", "last_success",
     "Unix time of the last backup that was taken, verified and uploaded."),
    ("chajipoa_backup_last_run_timestamp_seconds", "backups", "last_run", "Unix time of the last backup attempt."),
    ("chajipoa_backup_last_run_success", "backups", "last_run_success",
     "1 if the last backup attempt succeeded (0 while one is running)."),
    ("chajipoa_backup_running_since_timestamp_seconds", "backups", "running_since",
     "Unix time the backup attempt under way started; present only while one is."),
    ("chajipoa_backup_first_attempt_timestamp_seconds", "backups", "first_attempt",
     "Unix time of the first backup attempt recorded, the age of a backup that never succeeded."),
    ("chajipoa_backup_last_size_bytes", "backups", "last_size_bytes", "Size of the last successful backup file."),
    ("chajipoa_backup_last_duration_seconds", "backups", "last_duration_seconds", "Duration of the last backup attempt."),
    ("chajipoa_backup_verify_last_timestamp_seconds", "verifications", "last_run", "Unix time of the last verification."),
    ("chajipoa_backup_verify_last_success", "verifications", "last_success",
     "1 if the last verification passed (0 while one is running)."),
    ("chajipoa_backup_verify_running_since_timestamp_seconds", "verifications", "running_since",
     "Unix time the verification under way started; present only while one is."),
)


def render_metrics(data: dict) -> str:
    """node_exporter textfile format, one gauge family per fact."""
    lines = []
    for metric, section, field, help_text in _METRICS:
        samples = [entry for _key, entry in sorted(data[section].items()) if field in entry]
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


class DeadlinePassed(BaseException):
    """A module's time ran out. Not an Exception, so that no check's own error handling takes it for
    that check's failure and carries on: it ends the run, through every finally (a throwaway
    cluster stopped and removed, a staging database dropped, the lock released)."""


@contextlib.contextmanager
def deadline(seconds: float | None, what: str):
    """Raise DeadlinePassed in the main thread after `seconds` (none or 0: no limit). A running
    subprocess.run is killed as the exception passes through it."""
    if not seconds:
        yield
        return

    def expire(_signum, _frame):
        raise DeadlinePassed(f"{what} did not finish within {seconds:g} s (timeout)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Terminated(BaseException):
    """SIGTERM: systemd's TimeoutStartSec ran out, or the unit was stopped. Not an Exception, for the
    reason DeadlinePassed is not: it ends the run through every finally, the attempt under way
    recorded as failed."""


@contextlib.contextmanager
def terminated_by_sigterm():
    """Raise Terminated in the main thread on SIGTERM, instead of dying where the signal finds the
    run (systemd's SIGKILL follows only after TimeoutStopSec)."""
    def terminate(signum, _frame):
        # Once: a second signal must not cut short the recording of the first.
        signal.signal(signum, signal.SIG_IGN)
        raise Terminated(f"terminated by {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class RunLock:
    """The per-host lock (<state_dir>/lock) of the program, the backup_verify module and the
    playbooks: one run at a time, each waiting at most timeout seconds. The holder writes its pid,
    command and times into the file, so that a run that gives up can say who holds it."""

    def __init__(self, path: Path, timeout: float, command: str):
        self.path = path
        self.timeout = max(0.0, timeout)
        self.command = command
        self.fd: int | None = None

    def _holder(self, fd: int) -> str:
        try:
            holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        except ValueError:
            holder = {}
        return (f"pid {holder.get('pid', '?')}, started at {holder.get('started_at', '?')}, command "
                f"{holder.get('command', '?')!r}) holds the lock {self.path} since {holder.get('locked_at', '?')}")

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:
            # Created by another user: the lock works on a read-only descriptor, only the holder
            # record is not written.
            fd = os.open(self.path, os.O_RDONLY)
        started, delay = time.monotonic(), 0.05
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                if waited >= self.timeout:
                    holder = self._holder(fd)
                    os.close(fd)
                    raise LockTimeout(f"Cannot start {self.command}: another chajipoa-backup run ({holder}; "
                                      f"waited {waited:.1f} s (lock_timeout {self.timeout:g} s)") from None
                # The holder's release is not signalled to waiters; polling with a growing interval
                # (at most 1 s) costs nothing beside a backup.
                time.sleep(min(delay, self.timeout - waited))
                delay = min(delay * 2, 1.0)
        # Written in place, not through atomic_write: the lock is this very file (inode), and a
        # reader of a half-written record only loses the holder's details.
        record = json.dumps({"pid": os.getpid(), "command": self.command, "started_at": _PROCESS_STARTED,
                             "locked_at": backup_manifest.iso(backup_manifest.utc_now())}).encode()
        # A read-only descriptor or a full disk: the lock holds all the same.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
        self.fd = fd
        return self

    def __exit__(self, *_) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def remove_state_leftovers(config: Config) -> list[Path]:
    """atomic_write's temporary files of dead runs beside the state and the metrics."""
    removed = list(config.state_dir.glob(".*.partial-*"))
    if config.metrics_file:
        removed += config.metrics_file.parent.glob(f".{config.metrics_file.name}.partial-*")
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def restore_staging_name(database: str) -> str:
    """Where backup_restore restores before it renames the database into place."""
    return f"{database[:40]}_restoring_{secrets.token_hex(4)}"


def drop_staged_restores(admin, database: str | None = None) -> list[str]:
    """Drop the staging databases (restore_staging_name) of restores of `database`, or of any, that
    never finished: a full copy of the data each. Restores hold the lock, so the caller, holding it,
    knows that none is under way. admin: a psycopg connection with autocommit, as a superuser."""
    from psycopg import sql  # pylint: disable=import-outside-toplevel  # hosts without PostgreSQL never get here

    staged = re.compile((re.escape(database[:40]) if database is not None else ".*") + "_restoring_[0-9a-f]{8}")
    names = [name for (name,) in admin.execute("SELECT datname FROM pg_catalog.pg_database").fetchall()
             if staged.fullmatch(name)]
    for name in names:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    return names


def remove_stale_scratch(config: Config) -> list[Path]:
    """The throwaway clusters of verifications that are gone (pg_scratch.cleanup_stale: a cluster
    still running is stopped, its directory removed; entries not in pg_scratch's layout are left)."""
    scratch = config.scratch_dir
    if not scratch.is_dir():
        return []
    resolved = scratch.resolve()
    if (scratch / "PG_VERSION").exists() or any(
            path.resolve() == resolved or path.resolve().is_relative_to(resolved)
            for path in (config.backup_dir, config.state_dir)):
        raise BackupFailed(f"Cannot clean scratch_dir {scratch}: it must be a directory of its own, not a data "
                           "directory and not holding the backups or the state")
    return [Path(directory) for directory in pg_scratch.cleanup_stale(scratch)]
