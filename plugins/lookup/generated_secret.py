# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
name: generated_secret
short_description: A secret made on first use into a file on the controller, read from it afterwards, without locks
version_added: 0.7.0
author: ChajiPoa Infrastructure engineers (!UNKNOWN)
description:
  - Returns, for each path, the secret in that file on the controller. Where the file does not exist,
    makes a random secret of O(length) characters of O(alphabet), writes it there (the file C(0600), a
    new directory C(0700)) and returns it; later lookups read it. Delete the file to rotate the secret.
  - Made for inventories that need no vault, such as the development inventory, whose secrets are
    made on a run's first use and kept beside it. A file written by C(ansible.builtin.password)
    without C(encrypt) reads the same, so credentials made before keep their values.
  - Why not C(ansible.builtin.password), which does the same. It takes a lock file on every lookup,
    to read as well as to write, and a lookup that finds another's lock sleeps a second (then two,
    then fails that it "cannot get the lock in 7 seconds"). A variable that holds a lookup is looked
    up again each time a task templates it, in whichever worker runs the task (the development
    inventory's secrets 750 times in a run of the base system on 30 hosts, from as many workers as
    run at once), with two to five one-second waits a run.
  - Here a lookup never waits. A reader reads. A secret is written under a temporary name in the
    same directory and linked to its path, which fails where another process linked first; every
    process then returns the one linked, so concurrent first uses agree on one secret.
options:
  _terms:
    description: Paths of the secrets' files on the controller (relative ones from the playbook's directory).
    type: list
    elements: path
    required: true
  length:
    description: Characters of a secret made here; a secret read from its file is returned as it is.
    type: int
    default: 32
  alphabet:
    description:
      - The characters of a secret made here. C(alphanumeric) is ASCII letters and digits, safe in
        URLs, connection strings and configuration files; C(hex) is lower-case hexadecimal digits,
        for keys read as hexadecimal.
    type: str
    choices: [alphanumeric, hex]
    default: alphanumeric
notes:
  - Runs on the controller, in check mode too (it is the inventory's secret, not a host's state).
  - The secret is the file's first line, without its line ending.
seealso:
  - plugin: ansible.builtin.password
    plugin_type: lookup
"""

EXAMPLES = r"""
# inventories/development/group_vars/all/secrets.yml
postgres_app_password: >-
  {{ lookup('chajipoa.platform.generated_secret', inventory_dir ~ '/credentials/postgres_app_password.txt') }}

# A key of 64 hexadecimal digits
backup_manifest_key: >-
  {{ lookup('chajipoa.platform.generated_secret', inventory_dir ~ '/credentials/backup_manifest_key.txt', length=64, alphabet='hex') }}
"""

RETURN = r"""
_raw:
  description: The secret of each path, in the order given.
  type: list
  elements: str
"""

import os
import secrets
import string
import tempfile

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

ALPHABETS = {"alphanumeric": string.ascii_letters + string.digits, "hex": "0123456789abcdef"}


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        length = self.get_option("length")
        if length < 1:
            raise AnsibleLookupError(f"length must be at least 1, got {length}")
        alphabet = ALPHABETS[self.get_option("alphabet")]
        return [secret(self._loader.path_dwim(term), length, alphabet) for term in terms]


def secret(path: str, length: int, alphabet: str) -> str:
    """The secret in the file at path, made there first where there is none."""
    try:
        return read(path)
    except FileNotFoundError:
        pass
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    made = "".join(secrets.choice(alphabet) for _position in range(length))
    # mkstemp makes the file 0600 in the secret's own directory, so that a link puts it in place whole.
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(made + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            # Another process made it first: its secret is the one.
            return read(path)
    finally:
        os.unlink(temporary)
    return made


def read(path: str) -> str:
    with open(path, encoding="utf-8") as file:
        return file.readline().rstrip("\r\n")
