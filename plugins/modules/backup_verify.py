#!/usr/bin/python
# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_verify
short_description: Prove that a backup restores, with the rows and the schema its manifest promises
description:
  - Verifies one backup file (C(pg_dump -Fc) archive, Redis RDB or C(mongodump) archive) against the
    JSON manifest the ChajiPoa backup program wrote beside it.
  - C(quick) mode checks that the file exists and is not empty, that its size and SHA-256 match the
    manifest, and, for PostgreSQL, that the archive's table of contents names the manifest's database
    and holds data for every table the manifest lists. Hashing runs in the module (about three times
    the speed of the C(sha256sum) program), beside C(pg_restore --list).
  - C(deep) mode (PostgreSQL custom-format dumps) reads the archive once, in the module, without a
    server or a restore, at about the speed of C(pg_restore -f /dev/null). The quick checks come from
    that read (no C(pg_restore) needed); then it fails when a data block does not decompress, when a
    table's COPY rows differ from the manifest's count, when a table's data hash differs from the one
    the backup recorded (skipped for manifests before format 4), when an object of the manifest's
    schema catalogue is missing from the archive's table of contents, or when a sequence's value in
    the archive is behind the manifest's or its columns' data. It lists the roles and extensions a
    restore target needs. gzip and uncompressed archives are read (all pg_dump 15 writes); lz4 and
    zstd fail naming the algorithm.
  - C(thorough) mode (PostgreSQL) also restores the archive into a throwaway PostgreSQL cluster of its
    own (under the configuration's C(scratch_dir); never the production server), as a non-superuser,
    removed afterwards also when a check fails, and fails when C(pg_restore) logged any error, when a
    table's row count differs from the manifest, when the restored schema differs from the catalogue
    the manifest recorded in the dump's snapshot, or when a sequence is behind the manifest's value.
  - The manifest's signature (HMAC under the environment's C(backup_manifest_key)) is checked; a
    mismatch fails the verification naming the backup, and so does an unsigned manifest (anyone who can
    write where backups are kept can make one) unless O(allow_unsigned) admits it.
  - While it works the module holds the backup program's per-host lock (C(<state_dir>/lock)), waiting
    at most C(lock_timeout) seconds, and first removes throwaway clusters that killed runs left behind.
  - Manifests of format 1 (no catalogue) are accepted; the schema check is then reported as skipped.
  - Written because no collection verifies backups; C(community.postgresql.postgresql_db) with
    C(state=restore) restores but checks nothing, and pg_verifybackup's own manual says verification
    cannot replace a test restore.
version_added: 0.2.0
author: ChajiPoa Infrastructure engineers (!UNKNOWN)
options:
  path:
    description: The backup file on the target host.
    type: path
    required: true
  manifest:
    description: Its manifest; by default C(<name>.manifest.json) beside the file.
    type: path
  mode:
    description: C(quick), C(deep) or C(thorough), see the description.
    type: str
    choices: [quick, deep, thorough]
    default: quick
  jobs:
    description: Parallel jobs of C(pg_restore) and connections counting rows in thorough mode.
    type: int
    default: 2
  keep_restored:
    description: Keep the throwaway cluster with the restored database (drills that hand it over for inspection).
    type: bool
    default: false
  ignore_kinds:
    description: Object kinds left out of the schema comparison (deep and thorough).
    type: list
    elements: str
    choices: [extension, schema, type, table, column, constraint, index, sequence, view, materialized view,
              function, trigger, large objects, row security, policy]
    default: []
  exclude_objects:
    description:
      - Shell-style patterns of object names left out of the schema and sequence checks (deep and thorough), as the report
        writes them, e.g. C(public.audit_*) or C(public.events.*).
    type: list
    elements: str
    default: []
  pg_bindir:
    description:
      - Directory of C(pg_restore) and, in thorough mode, of the server programs (C(initdb), C(pg_ctl)).
        By default the one of the dump's server version under C(/usr/lib/postgresql), else (quick mode)
        the first C(pg_restore) on C(PATH).
    type: path
  config:
    description:
      - The backup program's configuration. When it exists, its C(state_dir) (the lock), C(scratch_dir)
        (throwaway clusters), C(lock_timeout) and C(env_file) (the manifest key) are used; when it does
        not (a host without the backup role), no lock is taken and the scratch directory is a private
        temporary one.
    type: path
    default: /etc/chajipoa/backup.json
  manifest_key:
    description:
      - The environment's C(backup_manifest_key). By default C(CHAJIPOA_BACKUP_MANIFEST_KEY) from the
        configuration's env file, else from the module's environment; without a key the module fails.
    type: str
  allow_unsigned:
    description:
      - Verify a backup whose manifest carries no signature (one taken before manifests were signed),
        reporting the signature check as skipped. By default the configuration's C(allow_unsigned)
        (the backup role's C(backup_allow_unsigned)), else false.
    type: bool
  lock_timeout:
    description: Seconds to wait for the per-host lock; by default the configuration's C(lock_timeout) (3600).
    type: float
  timeout:
    description:
      - Seconds the verification may take once it holds the lock. Past them the restore is
        stopped, its throwaway cluster removed, and the module fails saying so. By default the
        configuration's C(verify.timeout_seconds) (the backup role's C(backup_verify_timeout_minutes),
        the verification units' own limit), else no limit.
    type: float
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: In check mode nothing is read or restored; the result lists the checks that would run.
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - PostgreSQL server binaries (C(initdb), C(pg_ctl)) on the target for thorough mode
  - pg_restore for PostgreSQL backups in quick and thorough mode (deep mode reads the archive itself),
    redis-check-rdb for Redis ones; MongoDB archives are read by
    the collection's own code (no MongoDB tools needed)
notes:
  - The report carries each check's status, message, timing and evidence; a failure message names
    every failed check and the objects concerned.
"""

EXAMPLES = r"""
- name: Verify last night's dump quickly
  chajipoa.platform.backup_verify:
    path: /var/backups/chajipoa/postgresql/chajipoa/chajipoa-20261123T020000Z-daily.dump

- name: Restore it into a throwaway cluster and compare rows, schema and sequences
  chajipoa.platform.backup_verify:
    path: /var/backups/chajipoa/postgresql/chajipoa/chajipoa-20261123T020000Z-daily.dump
    mode: thorough
    jobs: 4
    ignore_kinds: [large objects]
    exclude_objects: ["public.tmp_*"]
    lock_timeout: 600
  become: true
  become_user: postgres
  register: verification

- name: Count every row and check the schema from the archive, without a restore
  chajipoa.platform.backup_verify:
    path: /var/backups/chajipoa/postgresql/chajipoa/chajipoa-20261123T020000Z-daily.dump
    mode: deep
  become: true
  become_user: postgres
  register: deep_verification

- name: Show each table's rows and how long its data took to read
  ansible.builtin.debug:
    msg: "{{ deep_verification.report.checks | selectattr('name', 'equalto', 'row counts') | map(attribute='per_table') | first }}"

- name: Show how long each check took
  ansible.builtin.debug:
    msg: "{{ verification.report.checks | map(attribute='name') | zip(verification.report.checks | map(attribute='seconds')) }}"
"""

RETURN = r"""
report:
  description: The verification, check by check.
  returned: always
  type: dict
  contains:
    passed:
      description: Whether every check that ran passed.
      type: bool
    mode:
      description: quick, deep or thorough.
      type: str
    name:
      description: The backup's name from its manifest.
      type: str
      sample: chajipoa-20261123T020000Z-daily
    database:
      description: The database the manifest is for.
      type: str
    format_version:
      description: The manifest's format version.
      type: int
    restored_database:
      description: The database thorough mode restored into (removed with its cluster unless kept).
      type: str
    restored_cluster:
      description: With O(keep_restored), where the kept cluster answers (directory, socket_dir, port, database, user).
      type: dict
    seconds:
      description: Time the whole verification took.
      type: float
    checks:
      description:
        - One entry per check in the order run, with C(name), C(status) (passed, failed, skipped or, in
          check mode, planned), C(message), C(seconds) and evidence such as C(differences) or C(errors).
        - "Deep mode's evidence: C(data blocks) the compression, blocks, stored and decompressed bytes and the
          read's seconds; C(row counts) C(per_table) (table, rows, stored_bytes, data_bytes, seconds);
          C(table hashes) C(differing_tables); C(restore needs) C(roles) and C(extensions)."
      type: list
      elements: dict
      sample:
        - {name: sha256, status: passed, message: "", seconds: 1.02, sha256: "9f2c..."}
        - {name: row counts, status: passed, message: "", seconds: 0.01, tables: 1, rows: 20000,
           per_table: [{table: tz_power.rentals, rows: 20000, stored_bytes: 44028, data_bytes: 165842, seconds: 0.004}]}
        - {name: schema, status: failed, seconds: 0.08, message: "1 difference(s): index public.rentals_station_idx missing",
           differences: [{kind: index, name: public.rentals_station_idx, change: missing,
                          expected: "CREATE INDEX rentals_station_idx ON public.rentals USING btree (station_id)",
                          actual: null}]}
"""

import os
import shutil
import tempfile
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.chajipoa.platform.plugins.module_utils import backup_checks, backup_manifest
from ansible_collections.chajipoa.platform.plugins.module_utils.backup_config import (
    DEFAULT_CONFIG, MANIFEST_KEY_ENV, BackupFailed, Config, read_env_file)
from ansible_collections.chajipoa.platform.plugins.module_utils.backup_state import (
    DeadlinePassed, RunLock, deadline, remove_stale_scratch)

ARGUMENT_SPEC = dict(
    path=dict(type="path", required=True),
    manifest=dict(type="path"),
    mode=dict(type="str", choices=["quick", "deep", "thorough"], default="quick"),
    jobs=dict(type="int", default=2),
    keep_restored=dict(type="bool", default=False),
    ignore_kinds=dict(type="list", elements="str", default=[], choices=list(backup_checks.pg_catalogue.KINDS)),
    exclude_objects=dict(type="list", elements="str", default=[]),
    pg_bindir=dict(type="path"),
    config=dict(type="path", default=DEFAULT_CONFIG),
    manifest_key=dict(type="str", no_log=True),
    allow_unsigned=dict(type="bool"),
    lock_timeout=dict(type="float"),
    timeout=dict(type="float"),
)


def planned_report(path: Path, manifest_path: Path, mode: str) -> dict:
    """Check mode: which checks a real run would make, nothing read."""
    kind = next((kind for kind, suffix in backup_manifest.DUMP_SUFFIX.items() if path.suffix == suffix), "postgresql")
    checks = [{"name": name, "status": "planned", "message": "check mode: not run", "seconds": 0.0}
              for name in backup_checks.planned_checks(mode, kind)]
    return {"backup": str(path), "manifest": str(manifest_path), "mode": mode, "kind": kind, "passed": True,
            "checks": checks, "seconds": 0.0}


def manifest_key(params: dict, config: Config | None) -> str | None:
    """The option, else the program's env file, else the module's environment."""
    return (params["manifest_key"] or read_env_file(config.env_file if config else None).get(MANIFEST_KEY_ENV)
            or os.environ.get(MANIFEST_KEY_ENV))


def verify(report: backup_checks.Report, params: dict, scratch_dir: Path, trust: dict, restore_role: str) -> None:
    """trust: the manifest key and whether unsigned manifests are allowed."""
    if params["mode"] == "thorough":
        backup_checks.thorough(report, scratch_dir=str(scratch_dir), jobs=params["jobs"],
                               ignore_kinds=params["ignore_kinds"], exclude=params["exclude_objects"],
                               pg_bindir=params["pg_bindir"], **trust, keep_restored=params["keep_restored"],
                               restore_role=restore_role)
    elif params["mode"] == "deep":
        backup_checks.deep(report, **trust, ignore_kinds=params["ignore_kinds"], exclude=params["exclude_objects"])
    else:
        backup_checks.quick(report, pg_bindir=params["pg_bindir"], **trust)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    path = Path(params["path"])
    manifest_path = Path(params["manifest"]) if params["manifest"] else backup_manifest.manifest_path(path)
    if module.check_mode:
        module.exit_json(changed=False, report=planned_report(path, manifest_path, params["mode"]))
    try:
        config = Config.load(params["config"]) if os.path.exists(params["config"]) else None
    except (OSError, ValueError, KeyError) as error:
        module.fail_json(msg=f"Cannot read the backup program's configuration {params['config']}: {error}")
    key = manifest_key(params, config)
    if not key:
        module.fail_json(msg=f"Cannot verify backup {path}: no manifest key (set manifest_key, or {MANIFEST_KEY_ENV} in "
                             "the backup program's env file from the secret backup_manifest_key)")
    allow_unsigned = params["allow_unsigned"]
    if allow_unsigned is None:
        allow_unsigned = bool(config and config.allow_unsigned)
    trust = {"manifest_key": key, "allow_unsigned": allow_unsigned}
    report = backup_checks.Report(params["mode"], path, manifest_path)
    limit = params["timeout"] if params["timeout"] is not None else config.module_timeout if config else None
    what = f"the {params['mode']} verification of {path.name}"
    try:
        if config:
            timeout = config.lock_timeout if params["lock_timeout"] is None else params["lock_timeout"]
            with RunLock(config.lock_path, timeout, f"backup_verify module ({path})"), deadline(limit, what):
                remove_stale_scratch(config)
                verify(report, params, config.scratch_dir, trust,
                       config.verify.get("restore_role", backup_checks.DEFAULT_RESTORE_ROLE))
        else:
            scratch_dir = Path(tempfile.mkdtemp(prefix="chajipoa-scratch-"))
            try:
                with deadline(limit, what):
                    verify(report, params, scratch_dir, trust, backup_checks.DEFAULT_RESTORE_ROLE)
            finally:
                if not params["keep_restored"]:
                    shutil.rmtree(scratch_dir, ignore_errors=True)
    except DeadlinePassed as error:
        module.fail_json(msg=f"Cannot verify backup {path}: {error}", report=report.as_dict())
    except Exception as error:  # noqa: BLE001 - a lock, cluster or tool error is a failed verification, reported as such
        module.fail_json(msg=f"Cannot verify backup {path}: {error}" if not isinstance(error, BackupFailed) else str(error),
                         report=report.as_dict())
    result = report.as_dict()
    changed = bool(report.restored_cluster)
    if not report.passed:
        module.fail_json(msg=report.failure_message(), report=result, changed=changed)
    module.exit_json(changed=changed, report=result)


if __name__ == "__main__":
    main()
