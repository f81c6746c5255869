#!/usr/bin/python
# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_restore
short_description: Restore a PostgreSQL backup into the live server, owned by and restored as the application's login
description:
  - Authenticates the backup's manifest (HMAC under the environment's backup_manifest_key), verifies
    the file quickly (size, SHA-256, table of contents), then restores it into a new database owned
    by O(owner), with C(pg_restore --no-owner) connecting as O(owner) itself. Functions, defaults,
    triggers and index expressions in the dump therefore run with that login's rights, never a
    superuser's; a superuser O(owner) is refused. The superuser only creates the database and the
    extensions the manifest lists (from the server's own extension files, not from the dump).
  - Afterwards, as O(owner), every table of the manifest must hold the manifest's row count, every
    table and function must be owned by O(owner), and O(owner) must be able to write (a row-exclusive
    lock on every table and a temporary table, rolled back).
  - Only then is the new database swapped in. An existing database of that name is replaced only with
    O(replace), and is renamed aside (C(<database>_before_<time>)), never dropped. A failed restore
    drops its own new database and leaves the live one untouched; a killed one's is dropped by the next.
  - Holds the backup program's per-host lock while it works.
version_added: 0.3.0
author: ChajiPoa Infrastructure engineers (!UNKNOWN)
options:
  path:
    description: The backup file (C(pg_dump -Fc) archive) on the target host.
    type: path
    required: true
  manifest:
    description: Its manifest; by default C(<name>.manifest.json) beside the file.
    type: path
  database:
    description: Database to restore; by default the manifest's.
    type: str
  owner:
    description: Login that owns the restored database and everything in it, and as which C(pg_restore) runs. Not a superuser.
    type: str
    required: true
  owner_password:
    description: Its password.
    type: str
    required: true
  owner_host:
    description: Address O(owner) connects to with its password (C(pg_hba.conf) must allow it there).
    type: str
    default: 127.0.0.1
  port:
    description: The server's port.
    type: int
    default: 5432
  ssl_mode:
    description:
      - libpq C(sslmode) of O(owner)'s connection, which carries its password.
      - By default C(verify-full) when O(owner_host) is not a loopback address, because the password
        then crosses a network (the server's certificate must name that host and be signed by
        O(ca_cert)); C(prefer) over loopback.
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  ca_cert:
    description: CA certificate that signed the server's certificate, for C(verify-ca) and C(verify-full).
    type: path
  replace:
    description: Replace an existing database of that name, renaming it aside.
    type: bool
    default: false
  manifest_key:
    description: The environment's backup_manifest_key; a manifest whose HMAC does not match is refused.
    type: str
    required: true
  allow_unsigned:
    description: Restore a backup whose manifest carries no signature (taken before manifests were signed).
    type: bool
    default: false
  jobs:
    description: Parallel jobs of C(pg_restore).
    type: int
    default: 2
  config:
    description: The backup program's configuration; its C(state_dir) holds the lock.
    type: path
    default: /etc/chajipoa/backup.json
  lock_timeout:
    description: Seconds to wait for a running backup's lock; by default the configuration's C(lock_timeout).
    type: int
  timeout:
    description:
      - Seconds the restore may take once it holds the lock. Past them the restore is stopped and
        its new database dropped (the live one is untouched), and the module fails saying so. By
        default the configuration's C(verify.timeout_seconds) (the backup role's
        C(backup_verify_timeout_minutes), the verification units' own limit), else no limit.
    type: float
  login_user:
    description: Superuser reached over the local Unix socket (peer authentication) that creates, renames and drops databases.
    type: str
    default: postgres
  login_unix_socket:
    description:
      - Directory of the server's Unix socket that O(login_user) connects through; by default libpq's
        (C(/var/run/postgresql) on Debian).
    type: path
  maintenance_db:
    description: Database the superuser connects to.
    type: str
    default: postgres
  pg_bindir:
    description: Directory of C(pg_restore); by default the one of the dump's server version.
    type: path
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: In check mode the manifest is authenticated, the file verified and the target checked; nothing is restored.
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - psycopg 3 on the target (Debian package python3-psycopg)
"""

EXAMPLES = r"""
- name: Restore last night's backup as the application's login, keeping the damaged database aside
  chajipoa.platform.backup_restore:
    path: /var/backups/chajipoa/postgresql/chajipoa/chajipoa-20261123T020000Z-daily.dump
    owner: chajipoa
    owner_password: "{{ postgres_app_password }}"
    manifest_key: "{{ backup_manifest_key }}"
    replace: true
  become: true
  become_user: postgres
"""

RETURN = r"""
restore:
  description: What was restored where, and each step with its status, message and time.
  returned: always
  type: dict
  contains:
    name:
      description: The backup's name.
      type: str
    database:
      description: The database restored.
      type: str
    owner:
      description: Its owner.
      type: str
    signature:
      description: C(valid) or C(unsigned).
      type: str
    replaced_database:
      description: The name the replaced database now has; null when none existed (or in check mode).
      type: str
    seconds:
      description: Time of the whole restore.
      type: float
    steps:
      description: The quick verification's checks, then C(restore), C(row counts), C(owners) and C(write).
      type: list
      elements: dict
"""

import datetime as dt
import ipaddress
import re
import subprocess
import tempfile
import time
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.chajipoa.platform.plugins.module_utils import backup_checks, backup_manifest
from ansible_collections.chajipoa.platform.plugins.module_utils.backup_config import DEFAULT_CONFIG, Config
from ansible_collections.chajipoa.platform.plugins.module_utils.backup_state import (
    DeadlinePassed, LockTimeout, RunLock, deadline, drop_staged_restores, restore_staging_name)

try:
    import psycopg
    from psycopg import sql
except ImportError:
    psycopg = None

ARGUMENT_SPEC = dict(
    path=dict(type="path", required=True),
    manifest=dict(type="path"),
    database=dict(type="str"),
    owner=dict(type="str", required=True),
    owner_password=dict(type="str", required=True, no_log=True),
    owner_host=dict(type="str", default="127.0.0.1"),
    port=dict(type="int", default=5432),
    ssl_mode=dict(type="str", choices=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]),
    ca_cert=dict(type="path"),
    replace=dict(type="bool", default=False),
    manifest_key=dict(type="str", required=True, no_log=True),
    allow_unsigned=dict(type="bool", default=False),
    jobs=dict(type="int", default=2),
    config=dict(type="path", default=DEFAULT_CONFIG),
    lock_timeout=dict(type="int"),
    timeout=dict(type="float"),
    login_user=dict(type="str", default="postgres"),
    login_unix_socket=dict(type="path"),
    maintenance_db=dict(type="str", default="postgres"),
    pg_bindir=dict(type="path"),
)
_EXTENSION = re.compile(r"^version (?P<version>\S+) schema (?P<schema>.+)$")
_TOC_ENTRY = re.compile(r"^\d+; \d+ \d+ (.*)$")
# Relations and functions of the restored database not owned by the login it was restored as.
_FOREIGN_OWNED = """
    SELECT format('%s %I.%I', CASE WHEN c.relkind IN ('r', 'p') THEN 'table' ELSE 'relation' END, n.nspname, c.relname)
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND c.relowner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
      AND c.oid NOT IN (SELECT objid FROM pg_catalog.pg_depend WHERE deptype = 'e' AND classid = 'pg_catalog.pg_class'::regclass)
    UNION ALL
    SELECT format('function %I.%I', n.nspname, p.proname)
    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    WHERE p.proowner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user) AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND p.oid NOT IN (SELECT objid FROM pg_catalog.pg_depend WHERE deptype = 'e' AND classid = 'pg_catalog.pg_proc'::regclass)
    ORDER BY 1"""


class RestoreFailed(Exception):
    """A step refused or failed; the message names the backup, the database and the cause."""


class Restore:
    """One restore: the steps, their timings, and the databases it created (dropped on failure)."""

    def __init__(self, params: dict, check_mode: bool):
        self.params = params
        self.check_mode = check_mode
        self.path = Path(params["path"])
        self.manifest_path = Path(params["manifest"]) if params["manifest"] else backup_manifest.manifest_path(self.path)
        self.manifest: dict = {}
        self.database = params["database"]
        self.steps: list[dict] = []
        self.started = time.perf_counter()
        self.result = {"replaced_database": None}
        self.admin_target = backup_checks.Target(host=params["login_unix_socket"] or "", port=params["port"],
                                                 user=params["login_user"], maintenance_db=params["maintenance_db"])
        self.owner_target = backup_checks.Target(host=params["owner_host"], port=params["port"], user=params["owner"],
                                                 password=params["owner_password"],
                                                 sslmode=ssl_mode(params["owner_host"], params["ssl_mode"]),
                                                 sslrootcert=params["ca_cert"])

    def fail(self, cause: str) -> RestoreFailed:
        label = self.manifest.get("name") or self.path.name
        target = f" into database {self.database}" if self.database else ""
        return RestoreFailed(f"Cannot restore backup {label}{target}: {cause}")

    def step(self, name: str, started: float, message: str = "", **evidence) -> None:
        self.steps.append({"name": name, "status": "passed", "message": message,
                           "seconds": round(time.perf_counter() - started, 3), **evidence})

    # --- before anything changes -----------------------------------------------------------------

    def authenticate_and_verify(self) -> None:
        # The signature first: nothing of an unauthenticated backup is read beyond its manifest.
        try:
            self.manifest = backup_manifest.load(self.manifest_path)
            status = backup_manifest.authenticate(self.manifest, self.params["manifest_key"], self.params["allow_unsigned"],
                                                  "allow_unsigned (backup_restore_allow_unsigned)")
        except backup_manifest.ManifestError as error:
            raise self.fail(str(error)) from error
        self.result["signature"] = status
        self.database = self.database or self.manifest["database"]
        if self.manifest["kind"] != "postgresql":
            raise self.fail(f"it is a {self.manifest['kind']} backup; docs/backups.md says how to restore those")
        report = backup_checks.quick(backup_checks.Report("quick", self.path, self.manifest_path),
                                     pg_bindir=self.params["pg_bindir"], manifest_key=self.params["manifest_key"],
                                     allow_unsigned=self.params["allow_unsigned"])
        self.steps += report.checks
        if not report.passed:
            raise self.fail(report.failure_message())
        if report.manifest != self.manifest:
            raise self.fail("its manifest changed while it was being verified")

    def check_target(self, admin) -> dict | None:
        """The live database's settings when it exists; refuses a superuser owner and an unasked replace."""
        role = admin.execute("SELECT rolsuper, rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = %s",
                             (self.params["owner"],)).fetchone()
        if role is None or not role[1]:
            raise self.fail(f"owner {self.params['owner']} is not a login of this server")
        if role[0]:
            raise self.fail(f"owner {self.params['owner']} is a superuser: the dump's code would run with a "
                            "superuser's rights; name the application's login")
        existing = admin.execute(
            "SELECT pg_catalog.pg_encoding_to_char(encoding), datcollate, datctype FROM pg_catalog.pg_database"
            " WHERE datname = %s", (self.database,)).fetchone()
        if existing and not self.params["replace"]:
            raise self.fail("the database exists; set replace (backup_restore_replace=true) to rename it aside "
                            "and restore in its place")
        return existing

    # --- restoring -------------------------------------------------------------------------------

    def create(self, admin, staging: str, existing: tuple | None) -> None:
        encoding, collate, ctype = existing or ("UTF8", "C.UTF-8", "C.UTF-8")
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
            sql.Identifier(staging), sql.Identifier(self.params["owner"]), sql.Literal(encoding), sql.Literal(collate),
            sql.Literal(ctype)))

    def create_extensions(self, staging: str) -> list[str]:
        """As the superuser, the manifest's extensions from the server's own files (untrusted ones need it)."""
        created = []
        with self.admin_target.connect(staging) as connection:
            for entry in (self.manifest.get("catalogue") or {}).get("objects", []):
                match = _EXTENSION.match(entry["definition"]) if entry["kind"] == "extension" else None
                if not match:
                    continue
                name, schema = _unquote(entry["name"]), _unquote(match.group("schema"))
                if connection.execute("SELECT to_regnamespace(%s) IS NULL", (sql.Identifier(schema).as_string(connection),)).fetchone()[0]:
                    continue
                connection.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {} VERSION {}").format(
                    sql.Identifier(name), sql.Identifier(schema), sql.Literal(match.group("version"))))
                created.append(name)
        return created

    def pg_restore(self, staging: str, extensions: list[str], workdir: Path) -> None:
        tool = backup_checks.pg_tool("pg_restore", self.params["pg_bindir"], self.manifest.get("server_version_num"))
        listing = subprocess.run([tool, "--list", str(self.path)], capture_output=True, text=True, check=True).stdout
        use_list = workdir / "restore.list"
        use_list.write_text(restore_list(listing, extensions))
        command = [tool, "--no-owner", f"--jobs={self.params['jobs']}", f"--use-list={use_list}",
                   f"--dbname={self.owner_target.conninfo(staging)}", str(self.path)]
        result = subprocess.run(command, capture_output=True, text=True, env=self.owner_target.env(), check=False)
        errors = [line for line in result.stderr.splitlines() if line.startswith("pg_restore: error:")]
        if result.returncode != 0 or errors:
            raise self.fail(f"pg_restore as {self.params['owner']} logged errors (exit {result.returncode}): "
                            + (" | ".join(errors[:5]) or result.stderr.strip()[-500:]))

    def check_as_owner(self, staging: str) -> None:
        """Reads, ownership and writes, as the application will meet them."""
        tables = self.manifest["tables"]
        with self.owner_target.connect(staging, autocommit=False) as connection:
            started = time.perf_counter()
            counts = {backup_manifest.table_key(t["schema"], t["name"]): (
                t["rows"], connection.execute(f"SELECT count(*) FROM {backup_checks.qualified(t)}").fetchone()[0])
                for t in tables}
            differing = [f"{name} has {actual} rows, the manifest {expected}"
                         for name, (expected, actual) in counts.items() if expected != actual]
            if differing:
                raise self.fail(f"read as {self.params['owner']}: " + ", ".join(differing))
            self.step("row counts", started, tables=len(tables), rows=sum(actual for _expected, actual in counts.values()))

            started = time.perf_counter()
            foreign = [row[0] for row in connection.execute(_FOREIGN_OWNED).fetchall()]
            if foreign:
                raise self.fail(f"not owned by {self.params['owner']}: {', '.join(foreign[:10])}")
            self.step("owners", started)

            # A row-exclusive lock needs the right to insert, update or delete: every table proves
            # it is writable without a row being written; the temporary table proves a real write.
            started = time.perf_counter()
            for table in tables:
                connection.execute(f"LOCK TABLE {backup_checks.qualified(table)} IN ROW EXCLUSIVE MODE NOWAIT")
            connection.execute("CREATE TEMPORARY TABLE chajipoa_restore_probe (written integer) ON COMMIT DROP")
            connection.execute("INSERT INTO chajipoa_restore_probe VALUES (1)")
            if connection.execute("SELECT count(*) FROM chajipoa_restore_probe").fetchone()[0] != 1:
                raise self.fail(f"{self.params['owner']} cannot read back what it wrote")
            connection.rollback()
            self.step("write", started, tables=len(tables))

    def swap(self, admin, staging: str, existing: tuple | None) -> None:
        live = sql.Identifier(self.database)
        restored_into_place = sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(staging), live)
        if not existing:
            admin.execute(restored_into_place)
            return
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        aside = f"{self.database[:40]}_before_{stamp}"
        # No new sessions while the old database is renamed; those it had are ended. Something
        # ending them cannot take away (a prepared transaction, a session slow to exit) makes the
        # rename fail: then the old database takes connections again, as it did before.
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(live))
        try:
            admin.execute("SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity"
                          " WHERE datname = %s AND pid <> pg_catalog.pg_backend_pid()", (self.database,))
            # One transaction: the name is never without a database, and a failure renames nothing.
            with admin.transaction():
                admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(live, sql.Identifier(aside)))
                admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(aside)))
                admin.execute(restored_into_place)
        except BaseException:
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(live))
            raise
        self.result["replaced_database"] = aside

    def run(self) -> dict:
        self.authenticate_and_verify()
        with self.admin_target.connect(self.admin_target.maintenance_db) as admin:
            existing = self.check_target(admin)
            if not self.check_mode:
                drop_staged_restores(admin, self.database)
                staging = restore_staging_name(self.database)
                self.create(admin, staging, existing)
                try:
                    started = time.perf_counter()
                    extensions = self.create_extensions(staging)
                    with tempfile.TemporaryDirectory(prefix="chajipoa-restore-") as workdir:
                        self.pg_restore(staging, extensions, Path(workdir))
                    self.step("restore", started, extensions=extensions)
                    self.check_as_owner(staging)
                    self.swap(admin, staging, existing)
                except BaseException:
                    # The swap renames all or nothing: a staged copy still under its name was not swapped in.
                    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(staging)))
                    raise
        return {**self.result, "name": self.manifest["name"], "database": self.database, "owner": self.params["owner"],
                "seconds": round(time.perf_counter() - self.started, 3), "steps": self.steps}


def ssl_mode(host: str, requested: str | None) -> str:
    """The sslmode of the owner's connection: verify-full wherever its password would cross a network."""
    if requested:
        return requested
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host in ("localhost", "") or host.startswith("/")
    return "prefer" if loopback else "verify-full"


def restore_list(listing: str, extensions: list[str]) -> str:
    """pg_restore --list output without the entries of extensions that exist already.

    They were created by the superuser, so the owner's pg_restore would fail on their comments
    (only an extension's owner may set one); their CREATE EXTENSION IF NOT EXISTS would do nothing.
    An entry reads "<id>; <catalog oid> <oid> <type> <schema> <name> <owner>"; an extension has
    schema "-" and no owner, so an entry is matched on the text between the oids and the end.
    """
    skipped = {f"EXTENSION - {name}" for name in extensions} | {f"COMMENT - EXTENSION {name}" for name in extensions}
    kept = [line for line in listing.splitlines()
            if not (entry := _TOC_ENTRY.match(line)) or entry.group(1).strip() not in skipped]
    return "\n".join(kept) + "\n"


def _unquote(identifier: str) -> str:
    """quote_ident's output back to the name: "Zemo Ops" -> Zemo Ops."""
    if identifier.startswith('"') and identifier.endswith('"'):
        return identifier[1:-1].replace('""', '"')
    return identifier


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    if psycopg is None:
        module.fail_json(msg=missing_required_lib("psycopg (python3-psycopg)"))
    restore = Restore(params, module.check_mode)
    try:
        config = Config.load(params["config"])
        timeout = params["lock_timeout"] if params["lock_timeout"] is not None else config.lock_timeout
        limit = params["timeout"] if params["timeout"] is not None else config.module_timeout
        with RunLock(config.lock_path, timeout, f"backup_restore module ({params['path']})"), \
                deadline(limit, f"the restore of {Path(params['path']).name}"):
            result = restore.run()
    except DeadlinePassed as error:
        module.fail_json(msg=str(restore.fail(str(error))), restore={"steps": restore.steps, "database": restore.database})
    except RestoreFailed as error:
        module.fail_json(msg=str(error), restore={"steps": restore.steps, "database": restore.database})
    except (ValueError, KeyError, OSError, subprocess.SubprocessError, LockTimeout, psycopg.Error) as error:
        module.fail_json(msg=str(restore.fail(str(error).strip())), restore={"steps": restore.steps,
                                                                             "database": restore.database})
    module.exit_json(changed=True, restore=result)


if __name__ == "__main__":
    main()
