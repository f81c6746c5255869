# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
name: peer_addresses
short_description: The addresses other hosts reach a list of inventory hosts at
version_added: 0.2.0
author: ChajiPoa Infrastructure engineers
description:
  - Gives, for each host named in the input, the address its peers use, by one rule for every role
    of the collection; the host's C(private_address) when the inventory sets it, else the address of
    its default IPv4 route in its gathered facts (C(ansible_facts['default_ipv4']['address'])).
  - A host with neither is not dropped; the filter fails naming every such host, so a firewall rule
    or a replica set is never built from a partial list.
  - Fails too on a name that is not an inventory host and on a C(private_address) that is not an
    IPv4 or IPv6 address.
positional: hostvars
options:
  _input:
    description:
      - Inventory host names, such as C(groups['redis']), or one host name.
    type: list
    elements: str
    required: true
  hostvars:
    description: The play's C(hostvars).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Allow PostgreSQL's clients through the firewall
  ansible.builtin.set_fact:
    postgres_sources: "{{ groups['app'] | chajipoa.platform.peer_addresses(hostvars) | unique }}"

- name: The primary's address, for a replica's configuration
  ansible.builtin.debug:
    msg: "{{ (redis_replica_of | chajipoa.platform.peer_addresses(hostvars)) | first }}"
"""

RETURN = r"""
_value:
  description: One address per input host, in the input's order (duplicates kept, so the list can be zipped with the input).
  type: list
  elements: str
  sample: [172.30.80.11, 172.30.80.12]
"""

import ipaddress
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.chajipoa.platform.plugins.plugin_utils.inventory_checks import getter


def _fact_address(variables: Mapping) -> str | None:
    try:
        facts = getter(variables)("ansible_facts")
    except KeyError:
        return None
    address = (facts.get("default_ipv4") or {}).get("address") if isinstance(facts, Mapping) else None
    return str(address) if address else None


def peer_addresses(hosts: Any, hostvars: Mapping) -> list[str]:
    if isinstance(hosts, str):
        hosts = [hosts]
    if not isinstance(hosts, (list, tuple)) or not all(isinstance(host, str) for host in hosts):
        raise AnsibleFilterError(f"peer_addresses: the input must be a list of host names, got {type(hosts).__name__}")
    if not isinstance(hostvars, Mapping):
        raise AnsibleFilterError(f"peer_addresses: hostvars must be the play's hostvars, got {type(hostvars).__name__}")
    addresses, unknown = [], []
    for host in hosts:
        if host not in hostvars:
            raise AnsibleFilterError(f"Cannot find the address of {host}: it is not an inventory host")
        try:
            address = str(getter(hostvars[host])("private_address") or "") or None
        except KeyError:
            address = None
        if address is None:
            address = _fact_address(hostvars[host])
        elif not _is_address(address):
            raise AnsibleFilterError(f"Cannot use the address of {host}: private_address {address!r} is not an IPv4 or IPv6 address")
        if address is None:
            unknown.append(host)
        addresses.append(address)
    if unknown:
        raise AnsibleFilterError(
            f"Cannot find the address of {', '.join(unknown)}: set private_address in the inventory or gather "
            "facts (ansible_facts['default_ipv4']) for these hosts in the same run"
        )
    return addresses


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"peer_addresses": peer_addresses}
