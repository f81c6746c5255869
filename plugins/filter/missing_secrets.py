# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
name: missing_secrets
short_description: The secrets a host needs that are missing, blank or not strings
version_added: 0.2.0
author: ChajiPoa Infrastructure engineers
description:
  - Checks a list of secrets, or the secrets catalogue of C(roles/validate_inventory/vars/main.yml),
    against a host's variables, and returns the names of those that are unusable. Only names are
    returned, never values, so the result may be printed.
  - A secret is unusable when it is absent, when its template cannot be rendered (such as
    C({{ vault_x }}) with no C(vault_x) in the vault), when it is null, when it is not a string (a
    mapping, a list, a number or a boolean) and when it is blank (empty or whitespace only).
positional: variables, groups
options:
  _input:
    description:
      - The secrets to check, in the order the result keeps. Each item is a secret's name, or a dict
        with C(name) and C(groups) (as in the catalogue), which is checked only when the host is in
        one of these groups.
      - A dict may also carry C(needed_if), a list of variable paths such as
        C(app_market.payment_gateway); the first whose variable the host defines decides, and the
        secret is checked only when the value there is set, not blank and not the boolean false (a
        provider's credentials, where the inventory names the provider; a role's secret, where its
        switch is on). Where the host defines none of the paths, the dict's C(default) decides (a
        boolean, false when absent, standing for the role's default of its switch). A variable there that cannot
        be rendered keeps the secret checked. A name may have several dicts (other groups, other
        conditions); any one that applies makes it checked.
    type: list
    elements: raw
    required: true
  variables:
    description: The host's variables, normally C(hostvars[inventory_hostname]).
    type: dict
    required: true
  groups:
    description:
      - The host's groups (C(group_names)). Catalogue entries with C(groups) are checked only when
        one of them is here. Omitted, every entry is checked.
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: Check the secrets this host needs (by its groups)
  ansible.builtin.assert:
    that: __missing | length == 0
    fail_msg: "Cannot configure {{ inventory_hostname }}: secrets missing, blank or not strings: {{ __missing | join(', ') }}"
    quiet: true
  vars:
    __missing: "{{ _validate_inventory_secrets | chajipoa.platform.missing_secrets(hostvars[inventory_hostname], group_names) }}"

- name: Check a role's own list
  ansible.builtin.assert:
    that: (['redis_app_password', 'redis_admin_password'] | chajipoa.platform.missing_secrets(hostvars[inventory_hostname])) == []
"""

RETURN = r"""
_value:
  description: The names of the unusable secrets, in input order; empty when all are usable.
  type: list
  elements: str
  sample: [postgres_app_password, app_jwt_secret]
"""

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.chajipoa.platform.plugins.plugin_utils.inventory_checks import RuleError, getter, missing_secrets as _missing


def missing_secrets(secrets: Any, variables: Mapping, groups: Any = None) -> list[str]:
    if not isinstance(secrets, (list, tuple)):
        raise AnsibleFilterError(f"missing_secrets: the input must be a list of secrets, got {type(secrets).__name__}")
    if not isinstance(variables, Mapping):
        raise AnsibleFilterError(f"missing_secrets: variables must be a host's variables, got {type(variables).__name__}")
    if groups is not None and (not isinstance(groups, (list, tuple)) or not all(isinstance(group, str) for group in groups)):
        raise AnsibleFilterError(f"missing_secrets: groups must be a list of group names, got {type(groups).__name__}")
    try:
        return _missing(secrets, getter(variables), groups, variables.__contains__)
    except RuleError as error:
        raise AnsibleFilterError(f"missing_secrets: {error}") from error


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"missing_secrets": missing_secrets}
