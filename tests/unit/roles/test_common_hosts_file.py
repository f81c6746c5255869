"""/etc/hosts lists every inventory host on every host: the addresses are read once per play, not by
each host's template (which made a run read n times n hosts' variables)."""
from __future__ import annotations

from collections.abc import Mapping

import yaml

from tests.unit.roles import rendering

CONFIGURE = rendering.ROLES / "common" / "tasks" / "configure.yml"
HOSTS = [f"node{number:02d}.example.org" for number in range(1, 41)]


class CountingHostVars(Mapping):
    """Each host's variables as hostvars hands them out, counting how often each host is asked for."""

    def __init__(self, variables: dict[str, dict]):
        self.variables = variables
        self.asked = dict.fromkeys(variables, 0)

    def __getitem__(self, host):
        self.asked[host] += 1
        return self.variables[host]

    def __iter__(self):
        return iter(self.variables)

    def __len__(self):
        return len(self.variables)


def addresses_expression() -> str:
    tasks = yaml.safe_load(CONFIGURE.read_text())
    [task] = [task for task in tasks if "__common_inventory_addresses" in task.get("ansible.builtin.set_fact", {})]
    assert task["run_once"] is True
    return task["ansible.builtin.set_fact"]["__common_inventory_addresses"]


def test_the_address_table_reads_each_host_once():
    # Every fifth host has no private_address: it is left out, as the hosts file always did.
    variables = {host: ({} if number % 5 == 0 else {"private_address": f"10.0.0.{number}"})
                 for number, host in enumerate(HOSTS, start=1)}
    hostvars = CountingHostVars(variables)
    table = rendering.render("common", addresses_expression(), {"groups": {"all": list(reversed(HOSTS))}, "hostvars": hostvars})
    assert table == [[f"10.0.0.{number}", host.split(".")[0]] for number, host in enumerate(HOSTS, start=1) if number % 5]
    assert set(hostvars.asked.values()) == {1}


def test_the_hosts_file_reads_no_other_host():
    """Rendered without hostvars at all: a template that looked any host up would fail here."""
    table = [["10.0.0.1", "node01"], ["10.0.0.2", "node02"]]
    variables = {**rendering.role_variables("common"), "__common_inventory_addresses": table, "private_address": "10.0.0.1",
                 "inventory_hostname": "node01", "common_domain": "example.org", "common_hosts_extra": [{"address": "10.9.9.9", "names": ["vault"]}]}
    lines = rendering.render("common", "etc/hosts.j2", variables).splitlines()
    assert lines[-3:] == ["10.0.0.1\tnode01.example.org node01", "10.0.0.2\tnode02.example.org node02", "10.9.9.9\tvault"]
    # A host without a private_address of its own lists itself at the address it is reached at.
    del variables["private_address"]
    variables.update(__common_inventory_addresses=table[1:], common_private_address="10.0.0.7", common_hostname="node01")
    assert "10.0.0.7\tnode01.example.org node01" in rendering.render("common", "etc/hosts.j2", variables).splitlines()
