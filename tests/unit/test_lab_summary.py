"""playbooks/lab-summary.yml's one lookup of the ports the lab publishes, rendered with the
development inventory's hosts (offline: no container is asked)."""
from __future__ import annotations

from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from tests.conftest import ROOT, load_yaml

PUBLISHED = load_yaml(ROOT / "playbooks" / "lab-summary.yml")[1]["vars"]["__lab_published"]


def published(groups: dict, hostvars: dict) -> dict:
    templar = Templar(loader=DataLoader(), variables={"groups": groups, "hostvars": hostvars})
    return templar.template(trust_as_template(PUBLISHED))


def test_the_development_labs_ports_for_the_edge_prometheus_and_alertmanager():
    inventory = InventoryManager(loader=DataLoader(), sources=[str(ROOT / "inventories" / "development")])
    hostvars = {host.name: host.get_vars() for host in inventory.get_hosts()}
    assert published(inventory.get_groups_dict(), hostvars) == {
        "edge": ["18443"], "prometheus": ["19090"], "alertmanager": ["19093"],
    }


def test_each_service_reads_its_own_container_port_on_its_own_groups_hosts():
    groups = {"edge": ["edge1", "edge2"], "monitoring": ["mon1"]}
    hostvars = {"edge1": {"lab_ports": ["18443:443", "18080:80"]}, "edge2": {"lab_ports": ["28443:443", "19090:9090"]},
                "mon1": {"lab_ports": ["19093:9093", "19091:9090", "1443:443"]}}
    assert published(groups, hostvars) == {"edge": ["18443", "28443"], "prometheus": ["19091"], "alertmanager": ["19093"]}


def test_a_lab_without_monitoring_hosts_lists_none():
    assert published({"edge": ["edge1"]}, {"edge1": {"lab_ports": ["18443:443"]}}) == {"edge": ["18443"], "prometheus": [], "alertmanager": []}
