# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
name: scram_verifier
short_description: A PostgreSQL SCRAM-SHA-256 password verifier, computed on the controller
version_added: 0.2.0
author: ChajiPoa Infrastructure engineers
description:
  - Turns a password into the verifier PostgreSQL keeps in C(pg_authid.rolpassword) for
    C(scram-sha-256) authentication (RFC 5802, RFC 7677), in PostgreSQL's form
    C(SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>) with salt and keys in base64.
  - PostgreSQL stores a verifier given to C(CREATE ROLE)/C(ALTER ROLE ... PASSWORD) as it is, so the
    password itself never travels in SQL and never reaches the server's log, C(pg_stat_statements) or
    C(pg_stat_activity). Clients log in with the password as before.
  - The salt is derived from the password and the role name instead of drawn at random, so the same
    password of the same role gives the same verifier on every run.
    C(community.postgresql.postgresql_user) compares a verifier it is given with the stored one as a
    string, so it changes the role only when the password changed.
  - The salt is PBKDF2-HMAC-SHA256 of the password over a fixed label and the role name, with the
    verifier's own iteration count. A single HMAC would do for determinism, but whoever reads the salt
    (anyone who can read C(pg_authid), or a backup of it) could then test guessed passwords against it
    at one HMAC each, bypassing the iterations that protect the keys.
  - The price of determinism is that a role name and password give the same verifier in every cluster,
    so a dictionary precomputed for one role name applies to all of its verifiers. Passwords that no
    dictionary holds (the secrets catalogue's are long and random) are not affected.
  - The password is prepared as PostgreSQL's own C(pg_saslprep) prepares it on the server and in libpq.
    An ASCII password is used as it is; any other is mapped and normalised (SASLprep, RFC 4013), and one
    SASLprep refuses is used as its raw UTF-8 bytes, as PostgreSQL does.
  - A value that already has the form of a SCRAM-SHA-256 verifier is returned unchanged, so an inventory
    may hold a verifier instead of a password.
  - Fails on an empty password, a password holding a NUL character or a lone surrogate (PostgreSQL can
    store neither), an empty role name, or an iteration count below 1.
positional: role
options:
  _input:
    description: The password (or a SCRAM-SHA-256 verifier, returned unchanged).
    type: str
    required: true
  role:
    description:
      - The name of the role (login) the password belongs to. Only the salt depends on it; PostgreSQL's
        verifier itself does not name the role.
    type: str
    required: true
  iterations:
    description:
      - PBKDF2 iteration count of the verifier (and of the salt's derivation).
      - 4096 is PostgreSQL's default (its C(scram_iterations) setting from version 16 on). Changing it
        changes every verifier, and so every role's stored password on the next run.
    type: int
    default: 4096
notes:
  - The result is as secret as a password hash; tasks that pass it on need C(no_log).
"""

EXAMPLES = r"""
- name: Application login, its password sent as a verifier only
  community.postgresql.postgresql_user:
    name: chajipoa
    password: "{{ vault_postgres_app_password | chajipoa.platform.scram_verifier('chajipoa') }}"
  no_log: true

- name: Further logins, with more iterations than PostgreSQL's default
  community.postgresql.postgresql_user:
    name: "{{ item.name }}"
    password: "{{ item.password | chajipoa.platform.scram_verifier(item.name, iterations=8192) }}"
  loop: "{{ analysts }}"
  loop_control:
    label: "{{ item.name }}"
  no_log: true
"""

RETURN = r"""
_value:
  description: The verifier, C(SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>).
  type: str
  sample: SCRAM-SHA-256$4096:MQiNyO/Zui0QFwsIBBPFbQ==$/Ppi4RB4plhSBdoJNZ653jL4vuL4RbrJZDtxMiIyLRY=:uhg/z3lLJn4Pfq4x3/p/mv3uEMZNFi5LmT0Alu1N374=
"""

import base64
import hashlib
import hmac
import re
import stringprep
import unicodedata
from typing import Any

from ansible.errors import AnsibleFilterError

# PostgreSQL's SCRAM_DEFAULT_SALT_LEN and default iteration count.
SALT_BYTES = 16
DEFAULT_ITERATIONS = 4096
SALT_LABEL = b"chajipoa.platform.scram_verifier salt\x00"
VERIFIER = re.compile(r"^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/]+=*)\$([A-Za-z0-9+/]+=*):([A-Za-z0-9+/]+=*)$")

# RFC 3454 tables SASLprep prohibits in its output (C.1.2 is mapped to a space before the check).
_PROHIBITED = (
    stringprep.in_table_c21_c22, stringprep.in_table_c3, stringprep.in_table_c4, stringprep.in_table_c5,
    stringprep.in_table_c6, stringprep.in_table_c7, stringprep.in_table_c8, stringprep.in_table_c9,
    stringprep.in_table_a1,
)


def saslprep(password: str) -> bytes:
    """The bytes PostgreSQL hashes for `password`: src/common/saslprep.c step by step, including its
    fallback to the raw bytes when SASLprep refuses the string and its checks on the mapped (not the
    normalised) characters."""
    raw = password.encode("utf-8")
    if password.isascii():
        return raw
    mapped = [" " if stringprep.in_table_c12(char) else char
              for char in password if stringprep.in_table_c12(char) or not stringprep.in_table_b1(char)]
    if not mapped or any(check(char) for char in mapped for check in _PROHIBITED):
        return raw
    if any(stringprep.in_table_d1(char) for char in mapped):
        if (any(stringprep.in_table_d2(char) for char in mapped)
                or not (stringprep.in_table_d1(mapped[0]) and stringprep.in_table_d1(mapped[-1]))):
            return raw
    return unicodedata.normalize("NFKC", "".join(mapped)).encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def build_verifier(prepared: bytes, salt: bytes, iterations: int) -> str:
    """RFC 5802 section 3: the stored and server keys of an already prepared password."""
    salted = hashlib.pbkdf2_hmac("sha256", prepared, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def derived_salt(prepared: bytes, role: str, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", prepared, SALT_LABEL + role.encode("utf-8"), iterations, SALT_BYTES)


def scram_verifier(password: Any, role: Any, iterations: Any = DEFAULT_ITERATIONS) -> str:
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError("scram_verifier: Cannot compute a verifier: the password must be a non-empty string")
    if not isinstance(role, str) or not role:
        raise AnsibleFilterError("scram_verifier: Cannot compute a verifier: the role name must be a non-empty string")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise AnsibleFilterError(f"scram_verifier: Cannot compute a verifier: iterations must be an integer >= 1, not {iterations!r}")
    if VERIFIER.match(password):
        return password
    if "\x00" in password:
        raise AnsibleFilterError(f"scram_verifier: Cannot compute a verifier for role {role}: the password holds a NUL character")
    try:
        prepared = saslprep(password)
    except UnicodeEncodeError as error:
        raise AnsibleFilterError(f"scram_verifier: Cannot compute a verifier for role {role}: the password is not "
                                 f"valid Unicode ({error.reason})") from error
    return build_verifier(prepared, derived_salt(prepared, role, iterations), iterations)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"scram_verifier": scram_verifier}
