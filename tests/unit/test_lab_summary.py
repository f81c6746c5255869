"""playbooks/lab-summary.yml's lookups, rendered with the development inventory's hosts (offline: no
container is asked): the ports the lab publishes for the edge and monitoring, the probe of each
printed address by its protocol, and the links it prints (the monitoring console page's)."""
from __future__ import annotations

from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from tests.conftest import ROOT, development_lab, load_yaml

SUMMARY_PLAY = load_yaml(ROOT / "playbooks" / "lab-summary.yml")[1]
SUMMARY_VARS = SUMMARY_PLAY["vars"]
PUBLISHED = SUMMARY_VARS["__lab_published"]
PRINTED = next(task for task in SUMMARY_PLAY["tasks"]
               if task["name"] == "Where the development platform answers")["ansible.builtin.debug"]["msg"]
CREDENTIALS = "/lab/credentials/"
CA = f"{CREDENTIALS}pki/ca.crt"
CONSOLE_PAGE = "chajipoa-overview.html"
# Stand-ins for the generated secrets, whose lookup would write files into the inventory.
PASSWORDS = {"postgres_monitoring_password": "pg-secret", "redis_monitoring_password": "redis-secret"}


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


def summary(template: str, live_colour: str = "blue", **overrides):
    """`template` rendered with the summary play's variables over the development lab, the app hosts
    serving `live_colour` (release 1.2.3)."""
    groups, hostvars = development_lab(**PASSWORDS, **overrides)
    for host in groups["app"]:
        hostvars[host]["app_live_colour"] = live_colour
        hostvars[host]["__lab_live_release"] = {"stat": {"lnk_source": "/opt/reference-api/releases/1.2.3"}}
    templar = Templar(loader=DataLoader(), variables={
        "groups": groups, "hostvars": hostvars, "__lab_credentials": CREDENTIALS, "__lab_ca": CA,
        **{name: trust_as_template(SUMMARY_VARS[name]) for name in ("__lab_published", "__lab_addresses")}})
    return templar.template(trust_as_template(template))


def addresses(live_colour: str = "blue", **overrides) -> dict[str, dict]:
    """The summary's addresses by name, the app hosts serving `live_colour`."""
    return {address["name"]: address for address in summary(SUMMARY_VARS["__lab_addresses"], live_colour, **overrides)}


def test_each_published_port_of_the_development_lab_is_probed_by_its_protocol():
    probes = {name: address["probe"] for name, address in addresses().items()}
    assert probes.pop("app1 127.0.0.1:13002 -> 3002") is None
    postgres = {"kind": "postgres", "user": "monitoring", "password": "pg-secret", "sslmode": "verify-full", "ca_file": CA, "query": "SELECT 1"}
    assert probes == {
        "db1 127.0.0.1:15432 -> 5432": {"name": "db1 127.0.0.1:15432 -> 5432", "port": 15432, **postgres},
        "db2 127.0.0.1:15433 -> 5432": {"name": "db2 127.0.0.1:15433 -> 5432", "port": 15433, **postgres},
        "cache1 127.0.0.1:16379 -> 6379": {"name": "cache1 127.0.0.1:16379 -> 6379", "kind": "redis", "port": 16379,
                                           "user": "monitoring", "password": "redis-secret", "tls": True, "ca_file": CA},
        "app1 127.0.0.1:13001 -> 3001": {"name": "app1 127.0.0.1:13001 -> 3001", "kind": "http",
                                         "url": "http://127.0.0.1:13001/api/health", "expect_json": {"status": "healthy"}},
        "edge1 127.0.0.1:18443 -> 443": {"name": "edge1 127.0.0.1:18443 -> 443", "kind": "http", "url": "https://127.0.0.1:18443/api/health",
                                         "ca_file": CA, "expect_json": {"status": "healthy"}},
        "edge1 127.0.0.1:18080 -> 80": {"name": "edge1 127.0.0.1:18080 -> 80", "kind": "http", "url": "http://127.0.0.1:18080/", "status": 301},
        "mon1 127.0.0.1:19090 -> 9090": {"name": "mon1 127.0.0.1:19090 -> 9090", "kind": "http", "url": "http://127.0.0.1:19090/-/ready"},
        "mon1 127.0.0.1:19093 -> 9093": {"name": "mon1 127.0.0.1:19093 -> 9093", "kind": "http", "url": "http://127.0.0.1:19093/-/ready"},
    }


def test_the_idle_colour_is_listed_and_not_probed():
    green_live = addresses(live_colour="green")
    assert green_live["app1 127.0.0.1:13001 -> 3001"]["probe"] is None
    assert green_live["app1 127.0.0.1:13001 -> 3001"]["idle_colour"] == "blue"
    assert green_live["app1 127.0.0.1:13002 -> 3002"]["probe"]["url"] == "http://127.0.0.1:13002/api/health"


def test_a_published_port_nothing_is_known_to_answer_on_has_no_probe_and_is_not_idle():
    # The playbook's assert names such an address rather than printing it unprobed.
    unknown = addresses(lab_ports=["12222:2222"])
    assert {name for name, address in unknown.items() if address["probe"] is None and not address["idle_colour"]} == {
        f"{host} 127.0.0.1:12222 -> 2222" for host in ("app1", "cache1", "db1", "db2", "edge1", "mon1")}


def test_the_summary_links_the_monitoring_console_page():
    assert (ROOT / "roles/monitoring/templates/etc/prometheus/consoles" / f"{CONSOLE_PAGE}.j2").is_file()
    lines = summary(PRINTED)
    assert (f"monitoring: http://127.0.0.1:19090/consoles/{CONSOLE_PAGE} (overview), http://127.0.0.1:19090/alerts (Prometheus)"
            in lines), lines
    assert "alerts: http://127.0.0.1:19093/ (Alertmanager)" in lines
