#!/usr/bin/python
# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_info
short_description: List the backups on a host, newest first, with their verification and signature
description:
  - Lists the complete backups (a manifest beside its file) under the backup program's directory, or
    under a directory of copies C(chajipoa-backup fetch) downloaded, grouped as C(<kind>/<database>),
    newest first, with the result of each one's last verification.
  - With O(manifest_key), says of each whether its manifest's HMAC is valid, missing (unsigned) or
    does not match.
  - Holds the backup program's per-host lock (shared) while it reads, so it never sees a run's
    half-done pruning. Reads only; the same in check mode.
version_added: 0.3.0
author: ChajiPoa Infrastructure engineers (!UNKNOWN)
options:
  config:
    description: The program's configuration; its C(backup_dir) and C(state_dir) (the lock) are used.
    type: path
    default: /etc/chajipoa/backup.json
  backup_dir:
    description: List this directory (laid out C(<kind>/<database>/)) instead of the configured one.
    type: path
  kind:
    description: Only backups of this kind.
    type: str
    choices: [postgresql, redis, mongodb, elasticache]
  database:
    description: Only backups of this database (or Redis or MongoDB name).
    type: str
  name:
    description: Only the backup of this name.
    type: str
  verified_only:
    description: Only backups whose last verification passed.
    type: bool
    default: false
  latest:
    description: Only the newest N of each database (after the other filters).
    type: int
  manifest_key:
    description: The environment's backup_manifest_key; each backup then carries C(signature).
    type: str
  lock_timeout:
    description: Seconds to wait for a running backup's lock; by default the configuration's C(lock_timeout).
    type: int
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads only, so check mode lists exactly what a normal run lists.
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: The newest verified backup of the application's database
  chajipoa.platform.backup_info:
    kind: postgresql
    database: chajipoa
    verified_only: true
    latest: 1
    manifest_key: "{{ backup_manifest_key }}"
  become: true
  become_user: postgres
  register: found
"""

RETURN = r"""
backups:
  description: Per C(<kind>/<database>), the backups newest first.
  returned: always
  type: dict
  sample:
    postgresql/chajipoa:
      - {name: chajipoa-20261123T020000Z-daily, time: "2026-11-23T02:00:00Z", reason: daily,
         file: /var/backups/chajipoa/postgresql/chajipoa/chajipoa-20261123T020000Z-daily.dump,
         manifest: /var/backups/chajipoa/postgresql/chajipoa/chajipoa-20261123T020000Z-daily.manifest.json,
         verification: {mode: quick, passed: true, checked_at: "2026-11-23T02:01:10Z"},
         signature: valid, signature_message: ""}
missing:
  description:
    - Each C(<kind>/<database>) the configuration backs up (of O(kind) and O(database), where given) that
      the listing has no backup of, after the filters (O(verified_only) too). Empty when O(name) is given.
    - A verification or a drill that finds one of these has nothing to check, which is a failure, not a pass.
  returned: always
  type: list
  elements: str
  sample: [postgresql/reports]
files:
  description: The backup files of every listed backup, newest first within each database.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.chajipoa.platform.plugins.module_utils import backup_manifest
from ansible_collections.chajipoa.platform.plugins.module_utils.backup_config import DEFAULT_CONFIG, Config, targets
from ansible_collections.chajipoa.platform.plugins.module_utils.backup_state import LockTimeout, RunLock
from ansible_collections.chajipoa.platform.plugins.module_utils.backup_store import LocalStore

ARGUMENT_SPEC = dict(
    config=dict(type="path", default=DEFAULT_CONFIG),
    backup_dir=dict(type="path"),
    kind=dict(type="str", choices=list(backup_manifest.DUMP_SUFFIX)),
    database=dict(type="str"),
    name=dict(type="str"),
    verified_only=dict(type="bool", default=False),
    latest=dict(type="int"),
    manifest_key=dict(type="str", no_log=True),
    lock_timeout=dict(type="int"),
)


def signature(manifest_path: str, key: str) -> tuple[str, str]:
    try:
        return backup_manifest.signature_status(backup_manifest.load(manifest_path), key), ""
    except backup_manifest.ManifestError as error:
        return "mismatch", str(error)


def listing(config: Config, params: dict) -> dict[str, list[dict]]:
    found = {}
    store = LocalStore(config)
    for directory in sorted(path for path in config.backup_dir.glob("*/*") if path.is_dir()):
        kind, database = directory.parent.name, directory.name
        if kind not in backup_manifest.DUMP_SUFFIX or params["kind"] not in (None, kind) \
                or params["database"] not in (None, database):
            continue
        backups = [b for b in store.list(kind, database) if params["name"] in (None, b["name"])
                   and (not params["verified_only"] or (b["verification"] or {}).get("passed") is True)]
        for backup in backups[: params["latest"]]:
            if params["manifest_key"]:
                backup["signature"], backup["signature_message"] = signature(backup["manifest"], params["manifest_key"])
            found.setdefault(f"{kind}/{database}", []).append(backup)
    return found


def missing(config: Config, params: dict, found: dict[str, list[dict]]) -> list[str]:
    if params["name"]:
        return []
    return [f"{kind}/{database}" for kind, database in targets(config, params["kind"])
            if params["database"] in (None, database) and f"{kind}/{database}" not in found]


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    try:
        config = Config.load(params["config"])
        if params["backup_dir"]:
            config = Config({**config.data, "backup_dir": params["backup_dir"]})
        timeout = params["lock_timeout"] if params["lock_timeout"] is not None else config.lock_timeout
        # The program's lock: a listing never sees a run's half-done pruning.
        with RunLock(config.lock_path, timeout, "backup_info module"):
            backups = listing(config, params)
            absent = missing(config, params, backups)
    except (ValueError, KeyError, OSError, LockTimeout) as error:
        module.fail_json(msg=f"Cannot list backups: {error}")
    module.exit_json(changed=False, backups=backups, missing=absent,
                     files=[backup["file"] for entries in backups.values() for backup in entries])


if __name__ == "__main__":
    main()
