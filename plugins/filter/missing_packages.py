# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
name: missing_packages
short_description: The packages of a list that this run's read of the package database does not show installed
version_added: 0.7.0
author: ChajiPoa Infrastructure engineers
description:
  - Lets a role skip its M(ansible.builtin.apt) call when every package it needs is installed. An apt
    call that installs nothing still costs a module call (and apt's own start-up) on every run; the
    common role reads the installed packages once a run (C(dpkg-query --show), registered as
    C(common_installed_packages)) and every later role asks this filter.
  - The common role reads dpkg's database rather than calling M(ansible.builtin.package_facts), whose
    apt back end opens apt's whole cache (every package the sources offer) to find the installed
    ones, 0.9 s a host against dpkg-query's 13 ms on a lab host, paid on every run of every host.
  - Only what was read in this run counts. The input is the registered result, never a fact cache, which
    may be hours old. Without it (a role run without the common role, or a read that failed or was
    skipped) every package counts as missing, so the role calls apt as it would without the filter.
  - A package counts as installed when dpkg's status of it is installed (or installed with triggers
    pending); one half-installed, half-configured, unpacked or with only its configuration files left
    counts as missing, so apt gets to finish or reinstall it.
  - A package named with a version (C(name=1.2)), a wildcard or a path is always counted as missing;
    apt decides whether it is satisfied.
  - Packages installed later in the same run are not in the read, so a later role may call apt for
    them once more; that call installs nothing. The filter can make a role call apt needlessly, never
    skip a package that is missing.
positional: installed
options:
  _input:
    description: Package names, as given to M(ansible.builtin.apt).
    type: list
    elements: str
    required: true
  installed:
    description:
      - The registered result of C(dpkg-query --show --showformat '${db:Status-Abbrev} ${Package}\n')
        run in this run (an M(ansible.builtin.command) result), or nothing.
    type: dict
"""

EXAMPLES = r"""
- name: Installed packages
  ansible.builtin.command:
    argv: [dpkg-query, --show, --showformat, "${db:Status-Abbrev} ${Package}\\n"]
  register: common_installed_packages
  changed_when: false
  check_mode: false

- name: PostgreSQL packages
  ansible.builtin.apt:
    name: "{{ postgres_packages }}"
    state: present
  when: postgres_packages | chajipoa.platform.missing_packages(common_installed_packages | default(none)) | length > 0
"""

RETURN = r"""
_value:
  description: The names of the input not shown installed, in the input's order.
  type: list
  elements: str
  sample: [postgresql-15]
"""

import functools
import re
from typing import Any

from ansible.errors import AnsibleFilterError

PLAIN_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]*(:[a-z0-9]+)?$")
# The second letter of dpkg's abbreviated status: installed, or installed with triggers to run.
INSTALLED_STATES = frozenset("itW")


def installed_names(read: Any) -> frozenset[str] | None:
    if not read or read.get("skipped") or read.get("failed") or read.get("rc"):
        return None
    output = read.get("stdout")
    if not isinstance(output, str):
        raise AnsibleFilterError("missing_packages: the input of installed is not the result of dpkg-query --show")
    return _installed_in(str(output))


# Keyed by dpkg-query's output: a run asks about one read many times (each role, each condition that
# decides whether apt runs), and the read of a lab host lists some 500 packages.
@functools.lru_cache(maxsize=64)
def _installed_in(output: str) -> frozenset[str]:
    names = set()
    for line in output.splitlines():
        fields = line.split()
        if len(fields) != 2 or len(fields[0]) < 2:
            raise AnsibleFilterError(f"missing_packages: not a line of dpkg-query's status and package: {line!r}")
        if fields[0][1] in INSTALLED_STATES:
            names.add(fields[1])
    return frozenset(names)


def missing_packages(wanted: Any, installed: Any = None) -> list[str]:
    if isinstance(wanted, str) or not isinstance(wanted, list):
        raise AnsibleFilterError(f"missing_packages: the input must be a list of package names, got {wanted!r}")
    names = installed_names(installed)
    if names is None:
        return list(wanted)
    return [package for package in wanted if not (PLAIN_NAME.match(str(package)) and str(package).split(":", maxsplit=1)[0] in names)]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"missing_packages": missing_packages}
