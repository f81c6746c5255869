"""MongoDB's exporter as the monitoring role wires it on a host of group mongodb: Percona's release
for the host's architecture, a unit of the role's own, its settings, its scrape target and its
firewall opening (rendered offline: neither MongoDB nor the release can be fetched on these
machines, docs/monitoring.md "MongoDB's exporter")."""
from __future__ import annotations

import re

import pytest
import yaml

from tests.unit.roles import rendering

GROUPS = {"all": ["mon1", "mongo1", "mongo2"], "monitoring": ["mon1"], "mongodb": ["mongo1", "mongo2"]}
HOSTVARS = {"mon1": {"private_address": "10.0.0.5", "group_names": ["monitoring"]},
            "mongo1": {"private_address": "10.0.0.21", "group_names": ["mongodb"]},
            "mongo2": {"private_address": "10.0.0.22", "group_names": ["mongodb"]}}
FACTS = {"architecture": "x86_64"}


def render(template: str, host: str = "mongo1", **overrides):
    variables = {**rendering.role_variables("monitoring"), "groups": GROUPS, "hostvars": HOSTVARS, "inventory_hostname": host,
                 "ansible_facts": FACTS, "monitoring_mongodb_password": "p w\"$1", **overrides}
    return rendering.render("monitoring", template, variables)


def settings(**overrides) -> dict[str, str]:
    text = render("etc/default/prometheus-mongodb-exporter.j2", **overrides)
    return {key: yaml.safe_load(value) for key, value in re.findall(r"^([A-Z_]+)=(.*)$", text, re.M)}


def test_a_mongodb_host_runs_the_node_and_mongodb_exporters():
    assert render("{{ _monitoring_host_exporters }}") == ["node", "mongodb"]
    assert render("{{ _monitoring_host_exporters }}", host="mon1") == ["node"]


def test_each_member_is_a_target_of_job_mongodb():
    config = yaml.safe_load(render("etc/prometheus/prometheus.yml.j2", host="mon1"))
    [job] = [job for job in config["scrape_configs"] if job["job_name"] == "mongodb"]
    assert [(group["targets"], group["labels"]["instance"]) for group in job["static_configs"]] == [
        (["10.0.0.21:9216"], "mongo1"), (["10.0.0.22:9216"], "mongo2")]


def test_its_port_is_open_to_the_monitoring_hosts_only():
    openings = render("{{ _monitoring_exporter_openings }}")
    assert {"name": "exporter-mongodb", "ports": [9216], "sources": ["10.0.0.5"]} in openings


def test_the_settings_reach_its_own_member_over_tls_with_the_password_off_the_command_line():
    values = settings()
    assert values["MONGODB_URI"] == "mongodb://10.0.0.21:27017/admin?tls=true&tlsCAFile=/etc/prometheus/tls/ca.crt"
    assert (values["MONGODB_USER"], values["MONGODB_PASSWORD"]) == ("monitoring", "p w\"$1")
    assert values["ARGS"].split() == ["--web.listen-address=10.0.0.21:9216", "--mongodb.direct-connect",
                                      "--collector.diagnosticdata", "--collector.replicasetstatus"]


def test_the_settings_follow_the_mongodb_roles_variables():
    values = settings(monitoring_mongodb_tls=False, monitoring_mongodb_port=27018, monitoring_mongodb_user="watcher")
    assert values["MONGODB_URI"] == "mongodb://10.0.0.21:27018/admin"
    assert values["MONGODB_USER"] == "watcher"
    # Outside development, without a CA file: the system's trust store (no tlsCAFile).
    values = settings(monitoring_tls_self_signed=False)
    assert values["MONGODB_URI"] == "mongodb://10.0.0.21:27017/admin?tls=true"


def test_its_files_are_the_settings_and_a_sandboxed_unit_of_the_roles_own():
    files = {item["dest"]: item for item in render("{{ _monitoring_exporter_files }}")}
    assert files["/etc/default/prometheus-mongodb-exporter"] | {"template": None} == {
        "dest": "/etc/default/prometheus-mongodb-exporter", "template": None, "owner": "root", "group": "root", "mode": "0600",
        "diff": False}
    assert "/etc/systemd/system/prometheus-mongodb-exporter.service" in files
    assert not any("prometheus-mongodb-exporter.service.d" in dest for dest in files)
    unit = render("etc/systemd/system/prometheus-mongodb-exporter.service.j2")
    assert ("ExecStart=/opt/prometheus-mongodb-exporter/mongodb_exporter-0.53.0.linux-amd64/mongodb_exporter $ARGS"
            in unit.splitlines())
    assert "User=prometheus" in unit.splitlines()
    # No restart loop while the release is missing (a failed fetch still runs the restart handler).
    assert "ConditionPathExists=/opt/prometheus-mongodb-exporter/mongodb_exporter-0.53.0.linux-amd64/mongodb_exporter" in unit.splitlines()
    assert "NoNewPrivileges=yes" in unit.splitlines()


@pytest.mark.parametrize(("architecture", "go"), [("x86_64", "amd64"), ("aarch64", "arm64")])
def test_the_release_and_its_checksum_are_the_hosts_architectures(architecture, go):
    facts = {"ansible_facts": {"architecture": architecture}}
    assert render("{{ monitoring_mongodb_exporter_url }}", **facts) == (
        f"https://github.com/percona/mongodb_exporter/releases/download/v0.53.0/mongodb_exporter-0.53.0.linux-{go}.tar.gz")
    assert render("{{ monitoring_mongodb_exporter_checksums[_monitoring_go_architecture] }}", **facts).startswith("sha256:")
    assert render("{{ monitoring_mongodb_exporter_checksums[_monitoring_go_architecture] }}", **facts) != render(
        "{{ monitoring_mongodb_exporter_checksums[_monitoring_go_architecture] }}",
        ansible_facts={"architecture": "aarch64" if architecture == "x86_64" else "x86_64"})
