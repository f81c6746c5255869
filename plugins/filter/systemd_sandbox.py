# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
name: systemd_sandbox
short_description: The sandboxing directives of one of the platform's service units
version_added: 0.6.0
author: ChajiPoa Infrastructure engineers
description:
  - Writes the C([Service]) directives that sandbox a unit the platform ships or configures, from the
    one list of them in C(plugins/module_utils/systemd_sandbox.py), which holds the directives every
    unit gets, where the unit departs from them, and the exposure C(systemd-analyze security) may
    report for it.
  - The limit, and the reason for every directive the unit goes without and for a limit above 4.0,
    come first as comments, so that they stand beside the unit on the host.
  - O(directives) (a role's paths and its C(<role>_systemd_sandbox_directives)) is merged last. A
    value replaces the directive's, a list writes one line per item, V(null) leaves it out.
  - With O(enabled) false, a comment saying so and no directive.
  - Fails on a unit without an entry (a new unit must be given one), a directive name that is not one
    and a value with a line break or a control character.
positional: directives, enabled
options:
  _input:
    description: The unit's name as its file is named (a template unit as C(name@.service)).
    type: str
    required: true
  directives:
    description: Directives merged over the unit's own, by name.
    type: dict
    default: {}
  enabled:
    description: Whether to sandbox the unit at all (the role's C(<role>_systemd_sandbox)).
    type: bool
    default: true
"""

EXAMPLES = r"""
# In a unit template, under [Service]:
# {{ 'app@.service' | chajipoa.platform.systemd_sandbox({'ReadWritePaths': app_read_write_paths}
#      | combine(app_systemd_sandbox_directives), app_systemd_sandbox) }}
"""

RETURN = r"""
_value:
  description: Comment lines, then one C(Directive=value) line each, ending in a newline.
  type: str
"""

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.chajipoa.platform.plugins.module_utils import systemd_sandbox as sandbox


def systemd_sandbox(unit: Any, directives: Any = None, enabled: Any = True) -> str:
    if not isinstance(unit, str) or not unit:
        raise AnsibleFilterError(f"systemd_sandbox: the input must be a unit name, got {unit!r}")
    if directives is not None and not isinstance(directives, dict):
        raise AnsibleFilterError(f"Cannot sandbox {unit}: directives must be a dict, got {type(directives).__name__}")
    if not isinstance(enabled, bool):
        raise AnsibleFilterError(f"Cannot sandbox {unit}: enabled must be true or false, got {enabled!r}")
    try:
        if not enabled:
            sandbox.entry(unit)
            return "# Sandbox off (the role's <role>_systemd_sandbox is false).\n"
        return sandbox.render(unit, directives)
    except sandbox.SandboxError as error:
        raise AnsibleFilterError(str(error)) from None


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"systemd_sandbox": systemd_sandbox}
