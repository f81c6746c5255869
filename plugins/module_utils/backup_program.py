# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""The backup program the backup role installs as /usr/local/sbin/chajipoa-backup.

It lives in module_utils because it shares the manifest, the checks and the retention policy with
the backup_verify module and the gfs_retention filter: one copy of each rule, whether a playbook or
the nightly timer applies it. Plain Python on the database host: psycopg 3 and boto3 from Debian.
Its parts: backup_config (configuration, env file), backup_sources (the dumps), backup_store (local
and S3 copies, pruning), backup_state (state, metrics, lock, leftovers of killed runs); this file
is the command line.

run      one backup per PostgreSQL database (pg_dump -Fc; row counts and the schema catalogue read
         in the dump's own snapshot), the Redis RDB snapshot and the MongoDB replica set's
         mongodump archive (--oplog: one point in time) where configured; each manifest signed with
         the environment's key (CHAJIPOA_BACKUP_MANIFEST_KEY), each backup verified in quick mode,
         uploaded to S3, then local and S3 copies pruned by the retention policy, never below
         retention.verified_minimum verified backups. A failed step removes only its own partial
         files and the run exits non-zero, before pruning; an older backup refused for upload (it
         must never go off-site) fails the run only after pruning, which removes it in its turn.
verify   quick, deep or thorough verification of the newest local backups (the timers), or with
         --from s3 of the newest copies in S3, fetched one at a time (a drill host's weekly
         verification); a backup that cannot be verified (an unreadable manifest, a verification
         that cannot run, a copy that cannot be fetched) fails.
list     the local backups with their last verification (and "error" when a manifest is unreadable).
fetch    download the newest backups and manifests from S3 (or copy local ones) into a directory,
         refusing any whose manifest's signature does not match.
Every command holds the per-host lock (waiting at most lock_timeout seconds); run and verify first
remove what killed runs left behind. Every run rewrites the node_exporter textfile; an attempt
counts as failed until it has succeeded, so no failure, crash or kill leaves metrics saying success.
SIGTERM (systemd's TimeoutStartSec) ends a run through its clean-up, the attempt under way recorded
as failed; one that could not record its end (SIGKILL, power loss) the next run records so.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ansible_collections.chajipoa.platform.plugins.module_utils import backup_checks, backup_manifest, elasticache_snapshots, pg_archive
from ansible_collections.chajipoa.platform.plugins.module_utils.backup_config import (
    DEFAULT_CONFIG, KINDS, BackupFailed, Config, load_env_file, log, targets)
from ansible_collections.chajipoa.platform.plugins.module_utils.backup_sources import DUMPERS
from ansible_collections.chajipoa.platform.plugins.module_utils.backup_state import (
    RunLock, State, StateNotSaved, Terminated, drop_staged_restores, remove_stale_scratch, remove_state_leftovers,
    terminated_by_sigterm)
from ansible_collections.chajipoa.platform.plugins.module_utils.backup_store import (
    LocalStore, S3Store, passed_verification, prune, record_verification)


# --- taking and verifying one backup ------------------------------------------------------------

def _print_json(value) -> None:
    """The command's result on stdout, for playbooks and operators; messages go to stderr."""
    sys.stdout.write(json.dumps(value, indent=1) + "\n")


def take_backup(config: Config, kind: str, database: str, reason: str) -> tuple[dict, backup_checks.Report]:
    """Dump, write the signed manifest, verify quickly, then move both into place; partial files never stay."""
    key = config.manifest_key(f"sign the manifest of the {kind} backup of {database}")
    local = LocalStore(config)
    directory = config.directory(kind, database)
    started = backup_manifest.utc_now()
    name = backup_manifest.backup_name(database, started, reason)
    filename = name + backup_manifest.DUMP_SUFFIX[kind]
    if backup_manifest.manifest_path(directory / filename).exists():
        # Names have one-second resolution; a second backup with the same reason in the same
        # second must not replace the first.
        raise BackupFailed(f"Cannot keep backup {name}: one of that name exists already")
    directory.mkdir(parents=True, exist_ok=True)
    partial = local.partial_directory(kind, database)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        details = DUMPERS[kind](config, database, partial / filename)
        hashed = time.perf_counter()
        archive = None
        if kind == "postgresql":
            archive = read_dump(name, partial / filename, details["tables"])
            sha256, size = archive.sha256, archive.bytes
        else:
            sha256, size = backup_manifest.sha256_file(partial / filename)
        details["timings"]["sha256"] = round(time.perf_counter() - hashed, 3)
        manifest = backup_manifest.sign({
            "format": backup_manifest.FORMAT, "format_version": backup_manifest.CURRENT_VERSION, "kind": kind,
            "name": name, "database": database, "reason": reason, "host": config.host,
            "started_at": backup_manifest.iso(started), "finished_at": backup_manifest.iso(backup_manifest.utc_now()),
            "file": filename, "bytes": size, "sha256": sha256, **details,
        }, key)
        backup_manifest.write(backup_manifest.manifest_path(partial / filename), manifest)
        report = backup_checks.quick(backup_checks.Report(
            "quick", partial / filename, backup_manifest.manifest_path(partial / filename)),
            pg_bindir=config.postgresql.get("bindir"), manifest_key=key, archive=archive)
        if not report.passed:
            raise BackupFailed(report.failure_message())
        local.put(kind, database, manifest, partial)
        if kind == "elasticache":
            # The stored backup records the snapshot now; its pruning deletes it.
            elasticache_snapshots.unclaimed_path(directory, name).unlink()
        report.backup_path, report.manifest_path = directory / filename, backup_manifest.manifest_path(directory / filename)
        record_verification(report)
        return manifest, report
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        if kind == "elasticache":
            release_unclaimed(kind, database, directory)


def release_unclaimed(kind: str, database: str, directory: Path) -> None:
    """Delete the snapshots asked for that no stored backup records (this run's, or a killed run's)."""
    deleted, failed = elasticache_snapshots.release_unclaimed(directory)
    for name in deleted:
        log(f"{kind} {database}: deleted ElastiCache snapshot {name}, which no stored backup records")
    for message in failed:
        log(f"{kind} {database}: {message}")


def read_dump(name: str, path: Path, tables: list[dict]) -> pg_archive.Archive:
    """The new dump read once (pg_archive): the file's SHA-256 and, into the manifest's tables,
    each table's data hash for deep verification. pg_dump must have written every table with the
    rows counted in its snapshot; a dump that did not is no backup."""
    archive = pg_archive.read(path)
    if archive.error or archive.unsupported:
        raise BackupFailed(f"Cannot keep backup {name}: its archive cannot be read: {archive.error or archive.unsupported}")
    blocks = archive.table_blocks()
    differing = []
    for table in tables:
        block = blocks.get((table["schema"], table["name"]))
        if block is None or block.error or block.rows != table["rows"]:
            differing.append(f"{backup_manifest.table_key(table['schema'], table['name'])} "
                             f"({block.error if block and block.error else (block.rows if block else 'no data')}; "
                             f"{table['rows']} in the snapshot)")
        else:
            table["data_sha256"] = block.sha256
    if differing:
        raise BackupFailed(f"Cannot keep backup {name}: pg_dump wrote other rows than its snapshot holds: {', '.join(differing)}")
    return archive


def verify_one(config: Config, backup_path: Path, mode: str, manifest_key: str) -> backup_checks.Report:
    """One verification; one that cannot even run (no scratch cluster, say) is a failed one, in the report."""
    report = backup_checks.Report(mode, backup_path, backup_manifest.manifest_path(backup_path))
    verify = config.verify
    pg_bindir = config.postgresql.get("bindir")
    trust = {"manifest_key": manifest_key, "allow_unsigned": config.allow_unsigned}
    try:
        if mode == "thorough":
            return backup_checks.thorough(report, scratch_dir=str(config.scratch_dir), jobs=int(verify.get("jobs", 2)),
                                          ignore_kinds=verify.get("ignore_kinds", []), exclude=verify.get("exclude", []),
                                          pg_bindir=pg_bindir, **trust,
                                          restore_role=verify.get("restore_role", backup_checks.DEFAULT_RESTORE_ROLE))
        if mode == "deep":
            return backup_checks.deep(report, **trust, ignore_kinds=verify.get("ignore_kinds", []),
                                      exclude=verify.get("exclude", []))
        return backup_checks.quick(report, pg_bindir=pg_bindir, **trust)
    except Exception as error:  # noqa: BLE001 - any error is this backup's failed verification, never a traceback
        with report.check("verification"):
            raise backup_checks.CheckFailed(f"Cannot run the {mode} verification: {type(error).__name__}: {error}") from error
        return report


# --- the store steps of a run -------------------------------------------------------------------

def upload_missing(local: LocalStore, s3: S3Store, kind: str, database: str, manifest_key: str,
                   allow_unsigned: bool) -> tuple[list[str], list[str]]:
    """Upload every local backup S3 lacks, oldest first: the new one, and any a failed run left
    behind. Returns the uploaded names and the refusals: a backup that must not go off-site
    (unreadable, failed its verification, a manifest whose signature does not match or, unless
    allowed, is missing), named with its cause, is never uploaded."""
    remote = {backup["name"] for backup in s3.list(kind, database)}
    uploaded, refused = [], []
    for backup in reversed(local.list(kind, database)):
        if backup["name"] in remote:
            continue
        try:
            if backup["error"]:
                raise BackupFailed(backup["error"])
            if backup["verification"] and not backup["verification"]["passed"]:
                raise BackupFailed("its last verification failed: " + "; ".join(backup["verification"].get("failed", [])))
            manifest = backup_manifest.load(backup["manifest"])
            backup_manifest.authenticate(manifest, manifest_key, allow_unsigned, "backup_allow_unsigned")
        except (BackupFailed, backup_manifest.ManifestError) as error:
            refused.append(f"{backup['name']} ({error})")
            continue
        s3.put(kind, database, manifest, Path(backup["manifest"]).parent)
        uploaded.append(backup["name"])
    return uploaded, refused


def s3_verified(local_backups: list[dict]) -> Callable[[dict], bool]:
    """Whether an S3 copy passed verification: by its local copy's last verification while that
    exists, else by the quick verification every backup passed before it was uploaded."""
    local = {backup["name"]: backup for backup in local_backups}
    return lambda backup: passed_verification(local[backup["name"]]) if backup["name"] in local else True


def rebuild_state(config: Config, state: State, local: LocalStore) -> None:
    """A state file that could not be read: the last successes come back from the verified backups on disk."""
    for kind, database in targets(config):
        newest = next((b for b in local.list(kind, database) if not b["error"] and passed_verification(b)), None)
        if newest:
            state.restore_success(kind, database, backup_manifest.load(newest["manifest"]))


def save(state: State) -> bool:
    try:
        state.save()
    except StateNotSaved as error:
        log(f"FAILED: {error}")
        return False
    return True


def end_unfinished(state: State, why: str) -> None:
    ended = state.end_unfinished()
    for attempt in ended:
        log(f"{attempt}: recorded as failed, {why}")
    if ended:
        save(state)


@contextlib.contextmanager
def recording(config: Config) -> Iterator[State]:
    """The state of a run or verification, which holds the lock: no other run has an attempt under
    way, so one recorded as under way was left by a run that was killed, and one of this run's still
    under way when it ends was cut short (Terminated, a crash). Both are recorded as failed, so that
    the monitoring reports them as BackupFailed rather than waiting for BackupRunTooLong."""
    state = State(config)
    end_unfinished(state, "left under way by a run that did not finish")
    try:
        yield state
    finally:
        end_unfinished(state, "cut short")


def remove_leftovers(config: Config) -> None:
    """What runs killed mid-way left: partial backups (a MongoDB one may hold a password file),
    half-written files, throwaway clusters, the staging databases of restores and ElastiCache
    snapshots no stored backup records. The caller holds the lock."""
    for path in LocalStore(config).remove_leftovers() + remove_state_leftovers(config) + remove_stale_scratch(config):
        log(f"removed {path}, left by a run that did not finish")
    for directory in config.backup_dir.glob("elasticache/*"):
        release_unclaimed("elasticache", directory.name, directory)
    # A drill host has no server of its own for backup_restore to have staged a restore in.
    if config.postgresql.get("databases") and not config.drill_only:
        target = config.pg_target()
        try:
            with target.connect(target.maintenance_db) as admin:
                for name in drop_staged_restores(admin):
                    log(f"dropped database {name}, left by a restore that did not finish")
        except Exception as error:  # noqa: BLE001 - cleaning up never stops a run; its own steps say why the server fails
            log(f"Cannot look for databases left by restores that did not finish: {error}")


# --- commands -----------------------------------------------------------------------------------

def command_run(config: Config, args) -> int:
    key = config.manifest_key("take backups")
    with recording(config) as state:
        local = LocalStore(config)
        if state.rebuilt:
            rebuild_state(config, state, local)
        s3 = S3Store(config) if config.s3.get("bucket") else None
        failures = 0
        for kind, database in targets(config, args.only):
            started = time.perf_counter()
            state.backup_started(kind, database)
            try:
                state.save()
                manifest, report = take_backup(config, kind, database, args.reason)
                state.verification(kind, database, report)
                log(f"{kind} {database}: {manifest['name']} ({manifest['bytes']} bytes) taken and verified")
                refused = []
                if s3:
                    uploaded, refused = upload_missing(local, s3, kind, database, key, config.allow_unsigned)
                    for name in uploaded:
                        log(f"{kind} {database}: uploaded {name} to s3://{s3.bucket}")
                state.backup(kind, database, True, manifest, time.perf_counter() - started)
                # Pruning only after this backup is safely in place (and in S3): a failed run deletes nothing.
                # A refused older backup does not stop it: it can never be uploaded, so it would stop
                # pruning every night until the disk filled. The policy prunes it like any other.
                for name in prune(local, kind, database, config.verified_minimum):
                    log(f"{kind} {database}: pruned local {name}")
                if s3:
                    for name in prune(s3, kind, database, config.verified_minimum, s3_verified(local.list(kind, database))):
                        log(f"{kind} {database}: pruned s3 {name}")
                if refused:
                    # The new backup is taken and off-site (its last success stands), but the run fails
                    # (BackupFailed) while a backup the policy keeps cannot go off-site.
                    raise BackupFailed(f"Cannot upload {len(refused)} backup(s) to s3://{s3.bucket}: {'; '.join(refused)}")
                state.save()
            except Exception as error:  # noqa: BLE001 - every failure must reach the metrics and the exit code
                failures += 1
                state.backup(kind, database, False, seconds=time.perf_counter() - started)
                log(f"{kind} {database}: FAILED: {error}")
                save(state)
    if s3 and not s3.deletes:
        log(f"s3://{s3.bucket} has Object Lock: its copies are not pruned by this program but expire by the bucket's lifecycle rule")
    return 1 if failures else 0


@contextlib.contextmanager
def copy_to_verify(store, local: LocalStore, kind: str, database: str, backup: dict) -> Iterator[Path]:
    """The backup file to verify: a local one where it is, a copy from S3 fetched into this run's
    partial directory and removed afterwards (after a kill, by the next run's leftovers clean-up),
    so that a drill host holds one copy at a time."""
    if store is local:
        yield Path(backup["file"])
        return
    directory = local.partial_directory(kind, database)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    try:
        yield store.fetch(kind, database, backup, directory)[0]
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def command_verify(config: Config, args) -> int:
    key = config.manifest_key("verify backups")
    with recording(config) as state:
        local = LocalStore(config)
        if state.rebuilt:
            rebuild_state(config, state, local)
        store = S3Store(config) if args.source == "s3" else local
        reports, failures = [], 0
        for kind, database in targets(config, args.only):
            try:
                backups = store.list(kind, database)[: args.latest]
            except Exception as error:  # noqa: BLE001 - S3 unreachable: this database's verification fails, by name
                backups, cause = [], f"{type(error).__name__}: {error}"
            else:
                cause = "there is none"
            if not backups:
                state.verification_failed(kind, database, args.mode)
                save(state)
                failures += 1
                log(f"{kind} {database}: FAILED: Cannot verify the backups of {database} in "
                    f"{store.location(kind, database)}: {cause}")
                continue
            for backup in backups:
                state.verification_started(kind, database, args.mode)
                save(state)
                try:
                    with copy_to_verify(store, local, kind, database, backup) as path:
                        report = verify_one(config, path, args.mode, key)
                except Exception as error:  # noqa: BLE001 - the copy could not be fetched: this backup fails, by name
                    failures += 1
                    state.verification_failed(kind, database, args.mode)
                    save(state)
                    log(f"{kind} {database}: FAILED: Cannot fetch backup {backup['name']} from "
                        f"{store.location(kind, database)}: {error}")
                    continue
                if store is local:
                    try:
                        record_verification(report)
                    except OSError as error:
                        failures += 1
                        log(f"{kind} {database}: FAILED: Cannot record the verification of {backup['name']}: {error}")
                state.verification(kind, database, report)
                if not save(state) or not report.passed:
                    failures += 1
                reports.append(report.as_dict())
                log(f"{kind} {database}: {backup['name']} {args.mode} "
                    + ("passed" if report.passed else "FAILED: " + report.failure_message()))
    if args.json:
        _print_json(reports)
    return 1 if failures else 0


def command_list(config: Config, args) -> int:
    local = LocalStore(config)
    listing = {f"{kind}/{database}": local.list(kind, database)[: args.latest]
               for kind, database in targets(config, args.only)}
    for backups in listing.values():
        for backup in backups:
            if backup["error"]:
                log(f"backup {backup['name']} is unusable: {backup['error']}")
    _print_json(listing)
    return 0


def command_fetch(config: Config, args) -> int:
    """Download (or copy) the newest backups with their manifests; prints the backup files' paths.
    A backup whose manifest's signature does not match, or is missing and not allowed (the
    configuration's allow_unsigned or --allow-unsigned), is refused and its files removed."""
    key = config.manifest_key("fetch backups")
    store = S3Store(config) if args.source == "s3" else LocalStore(config)
    fetched, failures = [], 0
    for kind, database in targets(config, args.only):
        backups = store.list(kind, database)[: args.latest]
        if not backups:
            failures += 1
            log(f"{kind} {database}: FAILED: Cannot fetch a backup of {database}: there is none in {store.label}")
        directory = Path(args.to) / kind / database
        directory.mkdir(parents=True, exist_ok=True)
        for backup in backups:
            paths = []
            try:
                paths = store.fetch(kind, database, backup, directory)
                status = backup_manifest.authenticate(backup_manifest.load(paths[-1]), key,
                                                      config.allow_unsigned or args.allow_unsigned, "--allow-unsigned")
            except Exception as error:  # noqa: BLE001 - S3, disk or manifest: this backup is not fetched, by name
                failures += 1
                for path in paths:
                    path.unlink(missing_ok=True)
                log(f"{kind} {database}: FAILED: Cannot fetch backup {backup['name']}: {error}")
                continue
            if status == "unsigned":
                log(f"{kind} {database}: backup {backup['name']} has an unsigned manifest, allowed (taken before "
                    "manifests were signed): it cannot be authenticated")
            fetched += [str(path) for path in paths[:-1]]
    _print_json(fetched)
    return 1 if failures else 0


_HANDLERS = {"run": command_run, "verify": command_verify, "list": command_list, "fetch": command_fetch}


def record_failure(config: Config, args) -> None:
    """A run or verification that failed before or outside its targets' own steps: metrics say so."""
    if args.command not in ("run", "verify"):
        return
    state = State(config)
    for kind, database in targets(config, args.only):
        if args.command == "run":
            state.backup(kind, database, False)
        else:
            state.verification_failed(kind, database, args.mode)
    save(state)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chajipoa-backup", description=__doc__.partition("\n\n")[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--only", choices=KINDS, help="one kind of backup only")
    parser.add_argument("--lock-timeout", type=float, help="seconds to wait for another run's lock (default: "
                                                           "the configuration's lock_timeout, else 3600)")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="take, verify, upload and prune backups")
    run.add_argument("--reason", default="daily", help="daily, weekly, monthly, manual, pre-deploy, ...")
    verify = commands.add_parser("verify", help="verify the newest local backups (or S3 copies)")
    verify.add_argument("--mode", choices=("quick", "deep", "thorough"), default="quick")
    verify.add_argument("--from", dest="source", choices=("local", "s3"), default="local",
                        help="the local backups (default) or copies fetched from S3 one at a time and removed "
                             "afterwards (a drill host's weekly verification)")
    verify.add_argument("--latest", type=int, default=1, help="how many of the newest backups per database")
    verify.add_argument("--json", action="store_true", help="print the reports as JSON")
    listing = commands.add_parser("list", help="the local backups and their last verification, as JSON")
    listing.add_argument("--latest", type=int, default=None, help="only the newest N per database")
    fetch = commands.add_parser("fetch", help="download the newest backups from S3")
    fetch.add_argument("--latest", type=int, default=1)
    fetch.add_argument("--to", required=True)
    fetch.add_argument("--from", dest="source", choices=("s3", "local"), default="s3",
                       help="S3 (default) or the local copies")
    fetch.add_argument("--allow-unsigned", action="store_true",
                       help="also fetch backups whose manifests are unsigned (taken before manifests were signed)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    try:
        config = Config.load(args.config)
    except (OSError, ValueError, KeyError) as error:
        log(f"Cannot read the configuration {args.config}: {error}")
        return 1
    timeout = config.lock_timeout if args.lock_timeout is None else args.lock_timeout
    try:
        load_env_file(config.env_file)
        # One run at a time per host: the timers, an on-demand backup.yml and the backup_verify
        # module wait for each other, each at most timeout seconds.
        with terminated_by_sigterm(), RunLock(config.lock_path, timeout, shlex.join(["chajipoa-backup", *argv])):
            if args.command in ("run", "verify"):
                remove_leftovers(config)
            return _HANDLERS[args.command](config, args)
    except Terminated as error:
        # recording() has recorded the attempt under way as failed; none had started before the lock.
        log(f"chajipoa-backup {args.command}: FAILED: {error}")
        return 1
    except Exception as error:  # noqa: BLE001 - no traceback leaves without the metrics saying it failed
        log(f"chajipoa-backup {args.command}: FAILED: {error}")
        record_failure(config, args)
        return 1
