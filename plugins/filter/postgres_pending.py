# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
name: postgres_pending
short_description: The logins, databases or extensions whose state on the server differs from the inventory's
version_added: 0.7.0
author: ChajiPoa Infrastructure engineers
description:
  - The postgres role asks the server once (one query of the shared catalogues, one per database for
    its extensions) and loops M(community.postgresql.postgresql_user), M(community.postgresql.postgresql_db)
    and M(community.postgresql.postgresql_ext) over what these filters return, so a run with nothing to
    change makes no call of them. Each module still decides and applies the change itself; the filters
    only leave out what is certainly in its wanted state.
  - C(postgres_roles_pending) keeps a login that is missing (or present while it should be absent),
    whose SCRAM verifier (see P(chajipoa.platform.scram_verifier#filter), deterministic for a password
    and role) differs from the stored one, or whose listed C(role_attr_flags) differ from the server's.
    Flags not listed are left alone by M(community.postgresql.postgresql_user), and so here.
  - C(postgres_databases_pending) keeps a database that is missing (or present while it should be
    absent), or whose owner, encoding or locale differs (the module refuses the last two, which is the
    point, since the run then says so).
  - C(postgres_extensions_pending) keeps an extension that is missing (or installed while it should be
    absent) in its database; a database the probe did not read (check mode before it exists) counts as
    having none.
positional: state
options:
  _input:
    description: The role's list of logins, databases or extensions, as the modules' loops take them.
    type: list
    elements: dict
    required: true
  state:
    description:
      - For logins, the probe's C(roles) (name to C(password) and the flags C(superuser), C(createrole),
        C(createdb), C(inherit), C(login), C(replication), C(bypassrls)); for databases its C(databases)
        (name to C(owner), C(encoding), C(collate), C(ctype)); for extensions a mapping of database to
        what its probe read, whose C(extensions) lists the installed extensions' names.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Logins
  community.postgresql.postgresql_user:
    name: "{{ item.name }}"
  loop: "{{ _postgres_users | chajipoa.platform.postgres_roles_pending(__postgres_server.roles) }}"
  no_log: true
"""

RETURN = r"""
_value:
  description: The entries of the input that need the module, in the input's order.
  type: list
  elements: dict
"""

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.chajipoa.platform.plugins.filter.scram_verifier import scram_verifier

FLAGS = {"SUPERUSER": "superuser", "CREATEROLE": "createrole", "CREATEDB": "createdb", "INHERIT": "inherit",
         "LOGIN": "login", "REPLICATION": "replication", "BYPASSRLS": "bypassrls"}


def wanted_flags(flags: str) -> dict[str, bool]:
    wanted = {}
    for flag in (part.strip().upper() for part in flags.split(",") if part.strip()):
        value = not flag.startswith("NO")
        name = flag[2:] if flag.startswith("NO") and flag[2:] in FLAGS else flag
        if name not in FLAGS:
            raise AnsibleFilterError(f"postgres_roles_pending: unknown role attribute {flag!r}")
        wanted[FLAGS[name]] = value
    return wanted


def checked(entries: Any, state: Any, name: str) -> None:
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise AnsibleFilterError(f"{name}: the input must be a list of dictionaries")
    if not isinstance(state, dict):
        raise AnsibleFilterError(f"{name}: the state must be a dictionary (the probe's answer), got {state!r}")


def absent(entry: dict) -> bool:
    return entry.get("state", "present") == "absent"


def role_pending(user: dict, roles: dict) -> bool:
    current = roles.get(user["name"])
    if current is None or absent(user):
        return (current is None) != absent(user)
    if "password" in user and user["password"] is not None:
        if scram_verifier(user["password"], user["name"]) != current.get("password"):
            return True
    wanted = wanted_flags(user.get("role_attr_flags") or "LOGIN")
    return any(current.get(flag) != value for flag, value in wanted.items())


def postgres_roles_pending(users: Any, roles: Any) -> list[dict]:
    checked(users, roles, "postgres_roles_pending")
    return [user for user in users if role_pending(user, roles)]


def database_pending(database: dict, databases: dict) -> bool:
    current = databases.get(database["name"])
    if current is None or absent(database):
        return (current is None) != absent(database)
    wanted = {"owner": database.get("owner", "postgres"), "encoding": database.get("encoding", "UTF8"),
              "collate": database.get("lc_collate", "C.UTF-8"), "ctype": database.get("lc_ctype", "C.UTF-8")}
    return any(current.get(key) != value for key, value in wanted.items())


def postgres_databases_pending(databases: Any, state: Any) -> list[dict]:
    checked(databases, state, "postgres_databases_pending")
    return [database for database in databases if database_pending(database, state)]


def postgres_extensions_pending(extensions: Any, state: Any) -> list[dict]:
    checked(extensions, state, "postgres_extensions_pending")
    return [extension for extension in extensions
            if (extension["name"] in (state.get(extension["db"]) or {}).get("extensions", [])) == absent(extension)]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"postgres_roles_pending": postgres_roles_pending, "postgres_databases_pending": postgres_databases_pending,
                "postgres_extensions_pending": postgres_extensions_pending}
