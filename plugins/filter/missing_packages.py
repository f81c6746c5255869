# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
name: missing_packages
short_description: The packages of a list that this run's package facts do not show installed
version_added: 0.7.0
author: ChajiPoa Infrastructure engineers
description:
  - Lets a role skip its M(ansible.builtin.apt) call when every package it needs is installed. An apt
    call that installs nothing still costs a module call (and apt's own start-up) on every run; the
    common role reads the installed packages once a run (M(ansible.builtin.package_facts), registered
    as C(common_installed_packages)) and every later role asks this filter.
  - Only facts read in this run count. The input is the registered result, never the fact cache, which
    may be hours old. Without it (a role run without the common role, or in a check run where the read
    was skipped) every package counts as missing, so the role calls apt as it would without the filter.
  - A package named with a version (C(name=1.2)), a wildcard or a path is always counted as missing;
    apt decides whether it is satisfied.
  - Packages installed later in the same run are not in the facts, so a later role may call apt for
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
    description: The result of M(ansible.builtin.package_facts) registered in this run, or nothing.
    type: dict
"""

EXAMPLES = r"""
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

import re
from typing import Any

from ansible.errors import AnsibleFilterError

PLAIN_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]*(:[a-z0-9]+)?$")


def installed_names(facts_result: Any) -> set[str] | None:
    if not facts_result or facts_result.get("skipped") or facts_result.get("failed"):
        return None
    packages = facts_result.get("ansible_facts", {}).get("packages")
    if not isinstance(packages, dict):
        raise AnsibleFilterError("missing_packages: the input of installed is not a package_facts result")
    return {name for name, versions in packages.items() if versions}


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
