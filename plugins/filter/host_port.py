# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
name: host_port
short_description: A host as it is written before a port, IPv6 addresses in brackets
version_added: 0.5.0
author: ChajiPoa Infrastructure engineers
description:
  - Writes an address or host name the way nginx, Prometheus, Alertmanager and URLs take it in
    C(host:port) and listen directives, by one rule for every role. An IPv6 address goes in brackets
    (C([fd00::13])), an IPv4 address or a DNS name stays as it is.
  - With O(port), C(host:port).
  - Fails on an input with a colon that is not an IPv6 address (C(host:port) given where a host is
    expected, or one already in brackets), on an empty input and on a port that is not 1-65535, so
    that a malformed target never reaches a configuration file.
positional: port
options:
  _input:
    description: An IPv4 or IPv6 address or a DNS name.
    type: str
    required: true
  port:
    description: The port to append; without it, the host part alone.
    type: int
"""

EXAMPLES = r"""
- name: Alertmanager's peers, host:port each
  ansible.builtin.debug:
    msg: "{{ groups['monitoring'] | chajipoa.platform.peer_addresses(hostvars) | map('chajipoa.platform.host_port', 9094) | list }}"

- name: nginx's listen addresses (fd00::13 becomes [fd00::13])
  ansible.builtin.set_fact:
    edge_listen_hosts: "{{ ['0.0.0.0', '::'] | map('chajipoa.platform.host_port') | list }}"
"""

RETURN = r"""
_value:
  description: The host, in brackets when it is an IPv6 address, followed by C(:port) when O(port) is given.
  type: str
  sample: "[fd00::13]:9100"
"""

import ipaddress
from typing import Any

from ansible.errors import AnsibleFilterError


def host_port(host: Any, port: Any = None) -> str:
    if not isinstance(host, str) or not host:
        raise AnsibleFilterError(f"host_port: the input must be an address or a host name, got {host!r}")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise AnsibleFilterError(f"Cannot write {host!r} as a host: it holds a colon but is not an IPv6 address") from None
        host = f"[{host}]"
    if port is None:
        return host
    if isinstance(port, bool) or not str(port).isdigit() or not 1 <= int(port) <= 65535:
        raise AnsibleFilterError(f"Cannot write {host}:{port}: the port is not a number 1-65535")
    return f"{host}:{int(port)}"


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"host_port": host_port}
