# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
name: inventory_faults
short_description: Everything wrong with one host's inventory, before the host is contacted
version_added: 0.2.0
author: ChajiPoa Infrastructure engineers
description:
  - The validation play's checks (C(roles/validate_inventory)), applied to one host on the
    controller. Each fault is one line that starts with C(Cannot configure <host>) and names the
    variable; secret values are never printed.
  - Checked for every variable with a role's prefix (C(common_), C(postgres_), ... taken from the
    roles that have an argument specification), every catalogued secret and every variable in
    O(rules.formats); a newline or other control character anywhere inside the value (strings,
    keys and items, recursively); the format O(rules.formats) gives the variable (ports, counts,
    addresses and networks, identifiers by pattern, pg_hba entries, Redis ACL rules; a string where
    the format has C(items) or C(fields), C(keys), C(values) is refused, not skipped); a
    prefixed variable that no role and no secret knows (with the closest known name).
  - The values of the roles the host receives (by O(rules.group_roles)) against those roles' argument
    specifications, reporting only the errors; a string where a specification (or suboption) has type
    C(list) or C(dict) is refused, which the specification's own check would split and accept.
  - A secret the host needs that begins or ends with whitespace (except the O(rules.multiline) ones).
  - Topology (one host in group C(postgres), standbys need it, C(redis_replica_of) names a primary
    of group C(redis), MongoDB members 1, 3, 5 or 7), C(private_address) shared with another host,
    administrators without SSH keys or a root SSH login the C(common) role would lock out, S3 settings
    of the backup role that only work together (a KMS key needs V(aws:kms), an access key id needs
    its secret), a backup host's unit time limits (C(backup_run_timeout_minutes),
    C(backup_verify_timeout_minutes)) longer than a monitoring host's C(monitoring_backup_run_max_minutes),
    the AWS backup bucket's Object Lock and expiry days (C(aws_platform_backup_object_lock_days),
    C(aws_platform_backup_expire_days)) that do not fit a backup host's C(backup_retention_s3) (a lock
    shorter than its shortest period, or longer where the host prunes S3 itself, an expiry shorter
    than its longest); the roles' plain defaults stand in for what the inventory leaves out.
  - Where a role of the host does not sign its own certificate (a switch of O(rules.tls_files) false
    in the inventory, or unset outside development), that switch's file variables must be non-empty.
  - Each variable of O(rules.controller_files) that a role of the host takes and the inventory sets
    non-empty must name a file that exists on the controller.
  - On the hosts of each entry of O(rules.required_in_groups), at least one of its variables must be set and
    non-empty, in every environment.
  - Outside development (C(env_name)), at least one variable of each entry of
    O(rules.required_outside_development) must be set and non-empty, and every C(vault.yml) under
    the inventories' C(group_vars) and C(host_vars) must be encrypted (read raw, as Ansible's own
    lookups would decrypt it).
  - A variable whose value cannot be known yet (a template over facts, an unset C(vault_) variable)
    is left to the roles' preflights and to P(chajipoa.platform.missing_secrets#filter).
positional: hostvars, groups, rules, roles_dir, inventory_sources
options:
  _input:
    description: The host, normally C(inventory_hostname).
    type: str
    required: true
  hostvars:
    description: The play's C(hostvars).
    type: dict
    required: true
  groups:
    description: The play's C(groups).
    type: dict
    required: true
  rules:
    description: The rules, C(_validate_inventory_rules) of the role's vars.
    type: dict
    required: true
    suboptions:
      environments:
        description: The values C(env_name) may take.
        type: list
        elements: str
      secrets:
        description: The secrets catalogue, as for P(chajipoa.platform.missing_secrets#filter).
        type: list
        elements: raw
      group_roles:
        description: For each known group, the roles its hosts receive.
        type: dict
      formats:
        description:
          - Variable name to format. A format is the name of a built-in check (V(port), V(count),
            V(positive), V(milliseconds_or_off), V(address), V(source), V(host), V(optional_host), V(host_port),
            V(listen_address), V(redis_bind), V(mongodb_key), V(redis_acl_rules), V(hba_entry)) or of
            a pattern, or a dict with C(items) (the format of each list item), C(fields) (field name
            to format, for a dict), C(keys) (the format of each key of a dict) and C(values) (the
            format of each value of a dict).
        type: dict
      patterns:
        description: Named regular expressions (C(pattern), matched whole) with the words C(means) for messages.
        type: dict
      hba_methods:
        description: The pg_hba methods allowed on C(local) and on C(network) lines.
        type: dict
      multiline:
        description: Variables written whole to a file of their own, which may hold newlines.
        type: list
        elements: str
      required_outside_development:
        description:
          - What must be set outside development, each entry C(any_of) (variables, one of which must be
            non-empty), C(means) (what they give, for the message) and optionally C(groups) (the hosts
            concerned; without it, the hosts of the roles whose main entry point takes the variables).
        type: list
        elements: dict
      required_in_groups:
        description:
          - What the hosts of some groups must set in every environment, each entry C(any_of) and C(means) as
            above, C(groups) (the hosts concerned) and optionally C(except_groups) (hosts of these are not).
        type: list
        elements: dict
      tls_files:
        description:
          - A role's C(<role>_tls_self_signed) switch to the controller files the role then copies (certificate,
            key, CA), required on the hosts of that role when the switch is false; unset, the switch is true
            in development only, as the roles' defaults have it.
        type: dict
      controller_files:
        description: Variables naming files a role copies from the controller (certificates, keys, CA bundles).
        type: list
        elements: str
  roles_dir:
    description: The directory of the roles whose argument specifications and prefixes apply.
    type: path
    required: true
  inventory_sources:
    description: The inventory sources, normally C(ansible_inventory_sources); their vault files are checked.
    type: list
    elements: path
    default: []
"""

EXAMPLES = r"""
- name: Check the inventory's values
  ansible.builtin.assert:
    that: __faults | length == 0
    fail_msg: "{{ __faults }}"
    quiet: true
  vars:
    __faults: >-
      {{ inventory_hostname | chajipoa.platform.inventory_faults(hostvars, groups, _validate_inventory_rules,
                                                                 role_path ~ '/..', ansible_inventory_sources) }}
"""

RETURN = r"""
_value:
  description: One line per fault, empty when the host's inventory is sound.
  type: list
  elements: str
  sample:
    - "Cannot configure db1: postgres_port (0) is out of range for a port (1 to 65535)"
    - "Cannot configure db1: postgres_max_conections is no role's input and no secret; did you mean postgres_max_connections?"
"""

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.chajipoa.platform.plugins.plugin_utils.inventory_checks import (
    HostCheck,
    RuleError,
    Rules,
    getter,
    plaintext_vaults,
    role_defaults,
    role_specs,
)


def inventory_faults(host: Any, hostvars: Mapping, groups: Mapping, rules: Mapping, roles_dir: str,
                     inventory_sources: Any = ()) -> list[str]:
    if not isinstance(host, str) or host not in hostvars:
        raise AnsibleFilterError(f"inventory_faults: {host!r} is not an inventory host")
    if not isinstance(groups, Mapping):
        raise AnsibleFilterError(f"inventory_faults: groups must be the play's groups, got {type(groups).__name__}")
    if not isinstance(inventory_sources, (list, tuple)):
        raise AnsibleFilterError("inventory_faults: inventory_sources must be a list of paths")
    try:
        checked = Rules(rules)
        specs = role_specs(str(roles_dir))
        variables = hostvars[host]
        return HostCheck(
            host,
            getter(variables),
            list(variables),
            {name: list(members) for name, members in groups.items()},
            lambda other, name: getter(hostvars[other])(name),
            checked,
            specs,
            rules.get("secrets") or [],
            rules.get("group_roles") or {},
            plaintext_vaults(str(source) for source in inventory_sources),
            role_defaults(str(roles_dir)),
        ).run()
    except RuleError as error:
        raise AnsibleFilterError(f"inventory_faults: {error}") from error


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"inventory_faults": inventory_faults}
