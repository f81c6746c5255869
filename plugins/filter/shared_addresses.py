# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
name: shared_addresses
short_description: The inventory hosts whose private_address another host has too
version_added: 0.8.0
author: ChajiPoa Infrastructure engineers
description:
  - Reads the C(private_address) of every host named in the input and gives one line for each host
    whose address another host has too, naming that other host. Hosts without the variable are
    left out (they are reached at their gathered default address, P(chajipoa.platform.peer_addresses#filter)).
  - A whole-inventory check, meant to run once (C(run_once)) rather than on every host against every
    other, which reads n times n variables.
positional: hostvars
options:
  _input:
    description: Inventory host names, normally C(groups['all']).
    type: list
    elements: str
    required: true
  hostvars:
    description: The play's C(hostvars).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Check that no two hosts share a private address
  ansible.builtin.assert:
    that: __shared | length == 0
    fail_msg: "{{ __shared }}"
    quiet: true
  vars:
    __shared: "{{ groups['all'] | chajipoa.platform.shared_addresses(hostvars) }}"
  run_once: true
"""

RETURN = r"""
_value:
  description: One line per host whose address is shared, empty when every address is its host's own.
  type: list
  elements: str
  sample:
    - "Cannot configure app1: private_address '10.20.2.11' is also db1's; each host needs its own"
    - "Cannot configure db1: private_address '10.20.2.11' is also app1's; each host needs its own"
"""

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.chajipoa.platform.plugins.plugin_utils.inventory_checks import getter, shared_addresses as _shared_addresses


def _address(variables: Mapping[str, Any]) -> Any:
    try:
        return getter(variables)("private_address")
    except KeyError:
        return None


def shared_addresses(hosts: Any, hostvars: Mapping) -> list[str]:
    if not isinstance(hosts, (list, tuple)) or not all(isinstance(host, str) for host in hosts):
        raise AnsibleFilterError(f"shared_addresses: the input must be a list of host names, got {hosts!r}")
    unknown = [host for host in hosts if host not in hostvars]
    if unknown:
        raise AnsibleFilterError(f"shared_addresses: not inventory hosts: {', '.join(unknown)}")
    return _shared_addresses({host: _address(hostvars[host]) for host in hosts})


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"shared_addresses": shared_addresses}
