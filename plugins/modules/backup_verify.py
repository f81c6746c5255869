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
  - C(thorough) mode (PostgreSQL) also restores the archive into a throwaway PostgreSQL cluster of its
    own (initdb under O(scratch_dir), Unix socket only, removed afterwards, also when a check fails),
    never into a production server, as the role O(restore_role), which is no superuser and owns the
    scratch database, so that code in the dump runs with that role's rights only. It fails when
    C(pg_restore) logged any error, when a table's row count differs from the manifest, when the
    restored schema differs from the catalogue the manifest recorded in the dump's snapshot (every
    relation, column, index, constraint, sequence, function, trigger, view, extension, policy and row
    security flag, reported as missing, extra or changed with both definitions), or when a sequence is
    behind the value the manifest recorded or behind the data of a column it gives values to.
  - Manifests of format 1 (no catalogue) are accepted; the schema check is then reported as skipped.
  - Written because no collection verifies backups; C(community.postgresql.postgresql_db) with
    C(state=restore) restores but checks nothing, and pg_verifybackup's own manual says verification
    cannot replace a test restore.
version_added: 0.2.0
author: ChajiPoa Infrastructure engineers
options:
  path:
    description: The backup file on the target host.
    type: path
    required: true
  manifest:
    description: Its manifest; by default C(<name>.manifest.json) beside the file.
    type: path
  mode:
    description: C(quick) or C(thorough), see the description.
    type: str
    choices: [quick, thorough]
    default: quick
  jobs:
    description: Parallel jobs of C(pg_restore) and connections counting rows in thorough mode.
    type: int
    default: 2
  scratch_dir:
    description:
      - Directory for the throwaway clusters of thorough mode, one private subdirectory per run.
      - Run as root, the cluster runs as the OS user C(postgres), which must be able to enter this path.
    type: path
    default: /var/lib/chajipoa-backup/scratch
  restore_role:
    description: The role, no superuser, that restores and owns the scratch database.
    type: str
    default: chajipoa_restore
  keep_restored:
    description:
      - Keep the scratch cluster running (drills that hand it over for inspection); C(report.restored_cluster)
        says where. The next run of the backup program removes it.
    type: bool
    default: false
  ignore_kinds:
    description: Object kinds left out of the schema comparison.
    type: list
    elements: str
    choices: [extension, schema, type, table, column, constraint, index, sequence, view, materialized view,
              function, trigger, large objects]
    default: []
  exclude_objects:
    description:
      - Shell-style patterns of object names left out of the schema and sequence checks, as the report
        writes them, e.g. C(public.audit_*) or C(public.events.*).
    type: list
    elements: str
    default: []
  pg_bindir:
    description:
      - Directory of C(pg_restore) and, in thorough mode, of the server programs. By default the one of
        the dump's server version under C(/usr/lib/postgresql), else (quick mode) the first on C(PATH).
    type: path
attributes:
  check_mode:
    support: full
    details: In check mode nothing is read or restored; the result lists the checks that would run.
  diff_mode:
    support: none
requirements:
  - psycopg 3 on the target for thorough mode (Debian package python3-psycopg)
  - for thorough mode the server package of the dump's major version (C(initdb), C(pg_ctl) under
    C(/usr/lib/postgresql/<major>/bin)) or O(pg_bindir)
  - pg_restore for PostgreSQL backups, redis-check-rdb for Redis ones; MongoDB archives are read by
    the collection's own code (no MongoDB tools needed)
notes:
  - The report carries each check's status, message, timing and evidence; a failure message names
    every failed check and the objects concerned.
"""

EXAMPLES = r"""
- name: Verify last night's dump quickly
  chajipoa.platform.backup_verify:
    path: /var/backups/chajipoa/postgresql/chajipoa/chajipoa-20261123T020000Z-daily.dump

- name: Restore it into a throwaway database and compare rows, schema and sequences
  chajipoa.platform.backup_verify:
    path: /var/backups/chajipoa/postgresql/chajipoa/chajipoa-20261123T020000Z-daily.dump
    mode: thorough
    jobs: 4
    ignore_kinds: [large objects]
    exclude_objects: ["public.tmp_*"]
  become: true
  become_user: postgres
  register: verification

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
      description: quick or thorough.
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
      description: The database thorough mode restored into, in the scratch cluster.
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
      type: list
      elements: dict
      sample:
        - {name: sha256, status: passed, message: "", seconds: 1.02, sha256: "9f2c..."}
        - {name: schema, status: failed, seconds: 0.08, message: "1 difference(s): index public.rentals_station_idx missing",
           differences: [{kind: index, name: public.rentals_station_idx, change: missing,
                          expected: "CREATE INDEX rentals_station_idx ON public.rentals USING btree (station_id)",
                          actual: null}]}
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.chajipoa.platform.plugins.module_utils import backup_checks, backup_manifest

ARGUMENT_SPEC = dict(
    path=dict(type="path", required=True),
    manifest=dict(type="path"),
    mode=dict(type="str", choices=["quick", "thorough"], default="quick"),
    jobs=dict(type="int", default=2),
    scratch_dir=dict(type="path", default="/var/lib/chajipoa-backup/scratch"),
    restore_role=dict(type="str", default=backup_checks.DEFAULT_RESTORE_ROLE),
    keep_restored=dict(type="bool", default=False),
    ignore_kinds=dict(type="list", elements="str", default=[], choices=list(backup_checks.pg_catalogue.KINDS)),
    exclude_objects=dict(type="list", elements="str", default=[]),
    pg_bindir=dict(type="path"),
)


def planned_report(path: Path, manifest_path: Path, mode: str) -> dict:
    """Check mode: which checks a real run would make, nothing read."""
    kind = next((kind for kind, suffix in backup_manifest.DUMP_SUFFIX.items() if path.suffix == suffix), "postgresql")
    checks = [{"name": name, "status": "planned", "message": "check mode: not run", "seconds": 0.0}
              for name in backup_checks.planned_checks(mode, kind)]
    return {"backup": str(path), "manifest": str(manifest_path), "mode": mode, "kind": kind, "passed": True,
            "checks": checks, "seconds": 0.0}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    path = Path(params["path"])
    manifest_path = Path(params["manifest"]) if params["manifest"] else backup_manifest.manifest_path(path)
    if module.check_mode:
        module.exit_json(changed=False, report=planned_report(path, manifest_path, params["mode"]))
    report = backup_checks.Report(params["mode"], path, manifest_path)
    if params["mode"] == "thorough":
        try:
            import psycopg  # noqa: F401 - only thorough mode connects
        except ImportError:
            module.fail_json(msg=missing_required_lib("psycopg (python3-psycopg)"))
        try:
            backup_checks.thorough(report, scratch_dir=params["scratch_dir"], jobs=params["jobs"],
                                   keep_restored=params["keep_restored"], ignore_kinds=params["ignore_kinds"],
                                   exclude=params["exclude_objects"], pg_bindir=params["pg_bindir"],
                                   restore_role=params["restore_role"])
        except Exception as error:  # noqa: BLE001 - a server or tool error is a failed verification, reported as such
            module.fail_json(msg=f"Cannot verify backup {path}: {error}", report=report.as_dict())
    else:
        backup_checks.quick(report, pg_bindir=params["pg_bindir"])
    result = report.as_dict()
    changed = bool(report.restored_cluster)
    if not report.passed:
        module.fail_json(msg=report.failure_message(), report=result, changed=changed)
    module.exit_json(changed=changed, report=result)


if __name__ == "__main__":
    main()
