# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
name: firewall_rules
short_description: Check and normalise the inbound openings of the common role's firewall entry point
version_added: 0.2.0
author: ChajiPoa Infrastructure engineers
description:
  - Checks a list of inbound openings (the C(common_firewall_inbound) format) on the controller, before
    anything is written to a host, and returns them in the form the rules template renders.
  - A source nft cannot parse (V(10.20.0.0/33), a typo'd address, a host name) makes a host fail to load
    its whole firewall at the next boot; a quote or a newline in a name would inject rules. Both are
    refused here, whichever role computed the list.
  - Fails with one message naming the variable, the service, every rule at fault and the bad value, on a
    name or service name outside V(^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$), a port that is not an integer
    from 1 to 65535 (booleans included), no port, a protocol other than V(tcp) or V(udp), an unknown
    key, or a source that is not an IPv4 or IPv6 address or network in CIDR form (a network with host
    bits set is refused, naming the network meant).
positional: service
options:
  _input:
    description:
      - The openings, each a dict with C(name), C(ports) (integers, or strings of digits as templated
        values arrive), optional C(proto) (default V(tcp)) and optional C(sources) (default any).
    type: list
    elements: dict
    required: true
  service:
    description: The service whose rules file the openings go to (C(common_firewall_service)).
    type: str
    required: true
  variable:
    description: The variable named in messages, for lists built from another one (V(common_ssh_sources)).
    type: str
    default: common_firewall_inbound
"""

EXAMPLES = r"""
- name: Checked openings, ready for the rules template
  ansible.builtin.set_fact:
    openings: "{{ common_firewall_inbound | chajipoa.platform.firewall_rules(common_firewall_service) }}"
"""

RETURN = r"""
_value:
  description:
    - One dict per opening, in input order, with C(name), C(proto), C(ports) (sorted, unique integers),
      C(ipv4) and C(ipv6) (the sources of each family, duplicates and overlaps merged, a single host
      without its prefix length). Both source lists empty means from anywhere.
  type: list
  elements: dict
  sample:
    - {name: postgresql, proto: tcp, ports: [5432], ipv4: [10.20.1.0/24, 10.20.2.7], ipv6: []}
"""

import ipaddress
import re
from typing import Any

from ansible.errors import AnsibleFilterError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = "letters, digits, '_', '.' and '-', a letter or digit first, at most 64"
KEYS = ("name", "ports", "proto", "sources")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _port(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    return value if isinstance(value, int) and 1 <= value <= 65535 else None


def _network(value: Any) -> tuple[Network | None, str]:
    """The network a source names, else None and why not."""
    if not isinstance(value, str) or not value.isascii() or not value.isprintable() or "%" in value:
        return None, "is not an IPv4 or IPv6 address or network"
    try:
        return ipaddress.ip_network(value, strict=True), ""
    except ValueError as error:
        if "host bits set" not in str(error):
            return None, "is not an IPv4 or IPv6 address or network"
    return None, f"has host bits set (the network is {ipaddress.ip_network(value, strict=False)})"


def _source(network: Network) -> str:
    return str(network.network_address if network.prefixlen == network.max_prefixlen else network)


def _rule(rule: Any, variable: str, index: int, problems: list[str]) -> dict:
    where = f"{variable}[{index}]"
    if not isinstance(rule, dict):
        problems.append(f"{where} is not a dict with name and ports")
        return {}
    name = rule.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        problems.append(f"{where}: name {name!r} is not a rule name ({NAME_RULE})")
    else:
        where = f"{variable} rule {name!r}"
    problems.extend(f"{where}: unknown key {key!r} (known: {', '.join(KEYS)})" for key in rule if key not in KEYS)
    ports = rule.get("ports")
    if not isinstance(ports, list) or not ports:
        problems.append(f"{where}: ports must be a non-empty list of integers 1-65535, got {ports!r}")
        ports = []
    checked = [_port(port) for port in ports]
    problems.extend(f"{where}: port {port!r} is not an integer 1-65535" for port, good in zip(ports, checked) if good is None)
    proto = rule.get("proto", "tcp")
    if proto not in ("tcp", "udp"):
        problems.append(f"{where}: proto {proto!r} is neither tcp nor udp")
    sources = rule.get("sources", [])
    if sources is None or isinstance(sources, str) or not isinstance(sources, list):
        problems.append(f"{where}: sources must be a list of addresses or networks, got {sources!r}")
        sources = []
    networks = []
    for source in sources:
        network, why = _network(source)
        if network is None:
            problems.append(f"{where}: sources entry {source!r} {why}")
        else:
            networks.append(network)
    return {
        "name": name,
        "proto": proto,
        "ports": sorted({port for port in checked if port is not None}),
        "ipv4": [_source(n) for n in ipaddress.collapse_addresses(n for n in networks if n.version == 4)],
        "ipv6": [_source(n) for n in ipaddress.collapse_addresses(n for n in networks if n.version == 6)],
    }


def firewall_rules(rules: Any, service: Any, variable: str = "common_firewall_inbound") -> list[dict]:
    problems: list[str] = []
    if not isinstance(service, str) or not NAME.fullmatch(service):
        problems.append(f"common_firewall_service {service!r} is not a service name ({NAME_RULE})")
    if not isinstance(rules, list):
        problems.append(f"{variable} must be a list of openings, got {rules!r}")
        rules = []
    checked = [_rule(rule, variable, index, problems) for index, rule in enumerate(rules)]
    if problems:
        raise AnsibleFilterError(f"Cannot open inbound ports for service {service!r}: " + "; ".join(problems))
    return checked


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"firewall_rules": firewall_rules}
