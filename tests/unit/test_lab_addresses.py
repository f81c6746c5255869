"""Every port the development lab publishes on 127.0.0.1 is opened, by the firewall rules its host's
roles write, to the lab network's gateway: Docker's proxy connects to the container from that
address, so a service whose rules leave it out accepts a newcomer's connection on the machine and
then hangs (Redis on 127.0.0.1:16379 did, and the app's colour ports).

Offline: each role's firewall openings (its include of the common role's `firewall` entry point)
evaluated with the development inventory's variables, as the role evaluates them on the host.
`make dev` then probes every printed address for real (playbooks/lab-summary.yml).
"""
from __future__ import annotations

import ipaddress
from functools import cache
from typing import Any

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from tests.conftest import ROOT, development_lab

LOADER = DataLoader()
# The roles playbooks/site.yml gives each group's hosts that open inbound ports.
GROUP_ROLES = {
    "postgres": ["postgres"], "postgres_replica": ["postgres"], "redis": ["redis"], "mongodb": ["mongodb"],
    "app": ["pgbouncer", "app"], "edge": ["edge"], "monitoring": ["monitoring"],
}


@cache
def role_files(role: str) -> tuple[dict, dict, list[Any]]:
    """The role's defaults, its vars, and the common_firewall_inbound of each of its firewall openings."""
    def load(path):
        return LOADER.load_from_file(str(path), trusted_as_template=True) if path.exists() else None
    openings = []
    for path in sorted((ROOT / "roles" / role / "tasks").glob("*.yml")):
        for task in load(path) or []:
            include = task.get("ansible.builtin.include_role") or {}
            if include.get("name") == "chajipoa.platform.common" and include.get("tasks_from") == "firewall":
                openings.append(task["vars"]["common_firewall_inbound"])
    return load(ROOT / "roles" / role / "defaults" / "main.yml") or {}, load(ROOT / "roles" / role / "vars" / "main.yml") or {}, openings


def firewall_rules(host: str, groups: dict, hostvars: dict) -> list[dict]:
    rules = []
    for role in {role for group in hostvars[host]["group_names"] for role in GROUP_ROLES.get(group, [])}:
        defaults, role_vars, openings = role_files(role)
        # Precedence as on the host: defaults < inventory < the role's vars.
        variables = {**defaults, **hostvars[host], **role_vars, "groups": groups, "hostvars": hostvars, "inventory_hostname": host}
        templar = Templar(loader=LOADER, variables=variables)
        for opening in openings:
            rules += templar.template(opening)
    return rules


def unreachable_addresses(groups: dict, hostvars: dict) -> list[str]:
    """The published ports no firewall rule of their host opens to the lab network's gateway."""
    gateway = next(ipaddress.ip_network(hostvars[next(iter(hostvars))]["lab_subnet"]).hosts())
    problems = []
    for host, variables in sorted(hostvars.items()):
        for mapping in variables.get("lab_ports", []):
            port = int(mapping.split(":")[1])
            rules = [rule for rule in firewall_rules(host, groups, hostvars) if port in rule["ports"]]
            # A rule without sources opens the port to anywhere.
            if not any(not rule["sources"] or any(gateway in ipaddress.ip_network(source, strict=False) for source in rule["sources"])
                       for rule in rules):
                problems.append(f"{host} 127.0.0.1:{mapping.replace(':', ' -> ')} (rules for it: {rules or 'none'})")
    return problems


def test_every_published_port_admits_the_lab_gateway():
    assert unreachable_addresses(*development_lab()) == []


def test_every_group_that_publishes_ports_has_its_roles_listed():
    groups, hostvars = development_lab()
    publishing = {group for host, variables in hostvars.items() if variables.get("lab_ports") for group in variables["group_names"]}
    assert publishing <= set(GROUP_ROLES), f"add the roles of {publishing - set(GROUP_ROLES)} to GROUP_ROLES"


@pytest.mark.parametrize(("overrides", "hosts"), [
    ({"postgres_client_sources_extra": []}, {"db1", "db2"}),
    ({"redis_firewall_sources_extra": []}, {"cache1"}),
    ({"app_firewall_sources_extra": []}, {"app1"}),
    ({"monitoring_ui_sources": []}, {"mon1"}),
    ({"edge_firewall_sources": ["10.9.9.0/24"]}, {"edge1"}),
])
def test_a_service_that_leaves_the_gateway_out_is_named(overrides, hosts):
    problems = unreachable_addresses(*development_lab(**overrides))
    assert {problem.split()[0] for problem in problems} == hosts, problems
