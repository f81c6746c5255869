"""The managed servers (RDS, ElastiCache, DocumentDB) in the monitoring role's scrape configuration: each is a
target of its kind's job on the monitoring host's loopback, with its name as instance, beside the
inventory hosts' exporters; and the production inventory lists what aws_endpoints records."""
from __future__ import annotations

import json
import os
import subprocess

import yaml

from tests.conftest import EXAMPLE_VAULT_PASSWORD_FILE, ROOT
from tests.unit.roles import rendering

GROUPS = {"all": ["mon1", "db1"], "monitoring": ["mon1"], "postgres": ["db1"]}
HOSTVARS = {"mon1": {"private_address": "10.0.0.5", "group_names": ["monitoring"]},
            "db1": {"private_address": "10.0.0.11", "group_names": ["postgres"]}}
MANAGED = {
    "monitoring_managed_postgres": [{"name": "rds-primary", "address": "primary.rds.example", "port": 5432},
                                    {"name": "rds-replica-1", "address": "replica.rds.example", "port": 5432}],
    "monitoring_managed_redis": [{"name": "elasticache", "address": "master.cache.example", "port": 6379}],
    "monitoring_managed_mongodb": [{"name": "documentdb", "address": "cluster.docdb.example", "port": 27017}],
}


def render(template: str, **overrides):
    variables = {**rendering.role_variables("monitoring"), "groups": GROUPS, "hostvars": HOSTVARS,
                 "inventory_hostname": "mon1", **overrides}
    return rendering.render("monitoring", template, variables)


def scrape_targets(**overrides) -> dict[str, list[tuple[str, str]]]:
    config = yaml.safe_load(render("etc/prometheus/prometheus.yml.j2", **overrides))
    return {job["job_name"]: [(group["targets"][0], group["labels"]["instance"]) for group in job.get("static_configs", [])]
            for job in config["scrape_configs"]}


def test_managed_servers_join_their_jobs_on_loopback_with_their_names():
    jobs = scrape_targets(**MANAGED)
    assert jobs["postgres"] == [("10.0.0.11:9187", "db1"), ("127.0.0.1:9287", "rds-primary"),
                                ("127.0.0.1:9288", "rds-replica-1")]
    assert jobs["redis"] == [("127.0.0.1:9221", "elasticache")]
    assert jobs["mongodb"] == [("127.0.0.1:9316", "documentdb")]
    assert render("{{ _monitoring_managed_units }}", **MANAGED) == [
        "prometheus-postgres-exporter@rds-primary.service", "prometheus-postgres-exporter@rds-replica-1.service",
        "prometheus-redis-exporter@elasticache.service", "prometheus-mongodb-exporter@documentdb.service"]


def test_without_managed_servers_the_jobs_are_the_inventorys_alone():
    jobs = scrape_targets()
    assert jobs["postgres"] == [("10.0.0.11:9187", "db1")]
    assert "redis" not in jobs and "mongodb" not in jobs


def test_the_settings_name_the_server_and_verify_it():
    server = {"kind": "postgres", "name": "rds-primary", "address": "primary.rds.example", "port": 5432, "listen_port": 9287}
    text = render("etc/default/prometheus-postgres-exporter-managed.j2", item=server, monitoring_postgres_password="p/w@1",
                  monitoring_managed_postgres_ca_file="files/rds-global-bundle.pem")
    assert ('DATA_SOURCE_NAME="postgresql://monitoring:p%2Fw%401@primary.rds.example:5432/chajipoa'
            '?sslmode=verify-full&sslrootcert=/etc/prometheus/tls/managed-postgres-ca.crt"') in text
    assert '--web.listen-address=127.0.0.1:9287 ' in text


def test_production_monitors_the_endpoints_aws_production_recorded():
    env = dict(os.environ, ANSIBLE_VAULT_PASSWORD_FILE=str(EXAMPLE_VAULT_PASSWORD_FILE), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    run = subprocess.run(["ansible", "-i", "inventories/production", "mon1.prod.chajipoa.internal", "-m", "ansible.builtin.debug",
                          "-a", "msg={{ {'postgres': monitoring_managed_postgres, 'redis': monitoring_managed_redis,"
                          " 'mongodb': monitoring_managed_mongodb} | to_json }}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=120)
    managed = json.loads(json.loads(run.stdout.split("=>", 1)[1])["msg"])
    endpoints = yaml.safe_load((ROOT / "inventories/production/group_vars/all/aws_endpoints.yml").read_text())["aws_endpoints"]
    assert managed["postgres"] == [
        {"name": "rds-primary", **endpoints["postgres"]},
        *({"name": f"rds-replica-{index}", **reader} for index, reader in enumerate(endpoints["postgres_readers"], 1))]
    assert managed["redis"] == [{"name": "elasticache", "address": endpoints["redis"]["address"],
                                 "port": endpoints["redis"]["port"]}]
    assert managed["mongodb"] == [{"name": "documentdb", "address": endpoints["documentdb"]["address"],
                                   "port": endpoints["documentdb"]["port"]}]


def test_a_documentdb_cluster_is_read_by_perconas_exporter_over_verified_tls():
    server = {"kind": "mongodb", "name": "documentdb", "address": "cluster.docdb.example", "port": 27017, "listen_port": 9316}
    text = render("etc/default/prometheus-mongodb-exporter-managed.j2", item=server, monitoring_mongodb_password="p w",
                  monitoring_managed_mongodb_ca_file="files/rds-global-bundle.pem")
    assert ('MONGODB_URI="mongodb://cluster.docdb.example:27017/admin?tls=true'
            '&tlsCAFile=/etc/prometheus/tls/managed-mongodb-ca.crt"') in text.splitlines()
    assert 'MONGODB_PASSWORD="p w"' in text.splitlines()
    assert '--web.listen-address=127.0.0.1:9316 ' in text
    unit = render("etc/systemd/system/prometheus-managed-exporter@.service.j2", item="mongodb",
                  ansible_facts={"architecture": "x86_64"})
    assert ("ExecStart=/opt/prometheus-mongodb-exporter/mongodb_exporter-0.53.0.linux-amd64/mongodb_exporter $ARGS"
            in unit.splitlines())
    assert "EnvironmentFile=/etc/default/prometheus-mongodb-exporter@%i" in unit.splitlines()
