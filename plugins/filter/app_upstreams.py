# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
name: app_upstreams
short_description: The servers an edge proxies the API to, one per app host on its live colour
version_added: 0.5.0
author: ChajiPoa Infrastructure engineers
description:
  - Gives, for each app host of the input, the address the edge reaches it at (by the same rule as
    M(chajipoa.platform.peer_addresses)) and the port of the colour that should take its traffic.
  - The colour is the one O(colours) names for the host (a deploy switching a batch, a rollback),
    else the host's C(app_live_colour) fact (the app role's C(live) entry point sets it, blue on a
    host that never had a live colour, and playbooks/tasks/live-colours.yml reads it on every app host).
  - Fails naming the host whose colour is neither given nor read, rather than guess one, which
    could send its traffic to a stopped colour or to the previous release.
  - The port is the host's C(app_ports[colour]); where the inventory leaves C(app_ports) unset, the
    app role's default (blue 3001, green 3002), which role defaults cannot show through hostvars.
  - Fails naming the host on a colour that is not blue or green, a port that is not 1-65535, or a
    host in O(colours) that is not in the input (a deploy would otherwise switch nothing, silently).
positional: hostvars, colours
options:
  _input:
    description: The app hosts, such as C(groups['app']).
    type: list
    elements: str
    required: true
  hostvars:
    description: The play's C(hostvars).
    type: dict
    required: true
  colours:
    description: Host name to colour, overriding the hosts' live colours.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: The edge proxies each app host's live colour
  ansible.builtin.include_role:
    name: chajipoa.platform.edge
  vars:
    edge_app_upstreams: "{{ groups['app'] | chajipoa.platform.app_upstreams(hostvars) }}"

- name: The servers once this batch is switched to its idle colour
  ansible.builtin.set_fact:
    deploy_upstreams: >-
      {{ groups['app'] | chajipoa.platform.app_upstreams(hostvars,
         dict(ansible_play_batch | zip(ansible_play_batch | map('extract', hostvars, 'app_idle_colour')))) }}
"""

RETURN = r"""
_value:
  description: One server per input host, in the input's order.
  type: list
  elements: dict
  sample: [{name: app1, address: 172.30.80.14, port: 3002}, {name: app2, address: 172.30.80.15, port: 3001}]
"""

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.chajipoa.platform.plugins.filter.peer_addresses import peer_addresses
from ansible_collections.chajipoa.platform.plugins.plugin_utils.inventory_checks import getter

COLOURS = ("blue", "green")
# The app role's default app_ports (roles/app/defaults/main.yml).
DEFAULT_PORTS = {"blue": 3001, "green": 3002}


def _variable(variables: Mapping, name: str, default: Any) -> Any:
    try:
        value = getter(variables)(name)
    except KeyError:
        return default
    return default if value is None else value


def app_upstreams(hosts: Any, hostvars: Mapping, colours: Mapping | None = None) -> list[dict[str, Any]]:
    colours = {} if colours is None else colours
    if not isinstance(colours, Mapping):
        raise AnsibleFilterError(f"app_upstreams: colours must map host names to colours, got {type(colours).__name__}")
    addresses = peer_addresses(hosts, hostvars)
    hosts = [hosts] if isinstance(hosts, str) else list(hosts)
    strangers = sorted(set(colours) - set(hosts))
    if strangers:
        raise AnsibleFilterError(f"Cannot switch {', '.join(map(str, strangers))}: not among the app hosts {', '.join(hosts)}")
    servers = []
    for host, address in zip(hosts, addresses):
        colour = colours.get(host) or _variable(hostvars[host], "app_live_colour", None)
        if colour is None:
            raise AnsibleFilterError(f"Cannot route to {host}: its live colour was not read (app_live_colour; "
                                     "the app role's entry point live, playbooks/tasks/live-colours.yml)")
        if colour not in COLOURS:
            raise AnsibleFilterError(f"Cannot route to {host}: colour {colour!r} is not one of {', '.join(COLOURS)}")
        ports = _variable(hostvars[host], "app_ports", DEFAULT_PORTS)
        port = ports.get(colour) if isinstance(ports, Mapping) else None
        try:
            port = int(port)
        except (TypeError, ValueError):
            port = 0
        if not 1 <= port <= 65535:
            raise AnsibleFilterError(f"Cannot route to {host}: app_ports has no port 1-65535 for {colour} ({ports!r})")
        servers.append({"name": host, "address": address, "port": port})
    return servers


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"app_upstreams": app_upstreams}
