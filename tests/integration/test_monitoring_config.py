"""The monitoring host's configuration files, rendered for inventories of several shapes, as the tools
that read them check them: `promtool check config` on prometheus.yml with the rendered rules where
rule_files points (the whole check, not the role's --syntax-only at converge), `amtool check-config`
on alertmanager.yml and the blackbox exporter's own check on blackbox.yml. The lab converges one
shape; these are the others an operator's inventory may have: a second monitoring host, IPv6
addresses, managed servers, API targets and extra probe URLs, receivers, the CAs outside development."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import require_tools
from tests.unit.roles import monitoring

TOOLS = ("promtool", "amtool", "prometheus-blackbox-exporter")


def inventory(addresses: dict[str, str], groups: dict[str, list[str]]) -> dict:
    hostvars = {host: {"private_address": address,
                       "group_names": [group for group, members in groups.items() if host in members]}
                for host, address in addresses.items()}
    return {"groups": {"all": list(addresses), **groups}, "hostvars": hostvars}


SHAPES = {
    "one monitoring host, nothing else": inventory({"mon1": "10.0.0.5"}, {"monitoring": ["mon1"]}),
    "the development tiers": inventory(
        {"mon1": "10.0.0.5", "db1": "10.0.0.11", "db2": "10.0.0.12", "app1": "10.0.0.7", "edge1": "10.0.0.8"},
        {"monitoring": ["mon1"], "postgres": ["db1"], "postgres_replica": ["db2"], "redis": ["db1", "db2"],
         "app": ["app1"], "edge": ["edge1"], "backup_drill": ["mon1"]}),
    "two monitoring hosts over IPv6, managed servers, probes and receivers": {
        **inventory({"mon1": "fd00::5", "mon2": "10.0.0.6", "app1": "fd00::7", "edge1": "fd00::8"},
                    {"monitoring": ["mon1", "mon2"], "app": ["app1"], "edge": ["edge1"]}),
        "monitoring_managed_postgres": [{"name": "rds-primary", "address": "primary.rds.example", "port": 5432}],
        "monitoring_managed_redis": [{"name": "elasticache", "address": "master.cache.example", "port": 6379}],
        "monitoring_api_targets": [{"name": "app1", "address": "fd00::7", "port": 3001}],
        "monitoring_probe_urls_extra": ["https://status.example.co.tz/", "https://pay.example.co.tz/health"],
        "monitoring_email_to": ["ops@example.co.tz"], "monitoring_smtp_smarthost": "smtp.example.co.tz:587",
        "monitoring_smtp_from": "alerts@example.co.tz", "monitoring_slack_webhook_url": "https://hooks.example/T0/B0",
        "monitoring_sms_webhook_url": "https://sms.example/send",
    },
    # Outside development: the data tier's exporters verify with an internal CA, the probes with a CA
    # of their own, or (without one) the system's trust store, which a blackbox ca_file would replace.
    "outside development, a probe CA and a data tier's CA": {
        **inventory({"mon1": "10.0.0.5", "cache1": "10.0.0.9", "edge1": "10.0.0.8"},
                    {"monitoring": ["mon1"], "redis": ["cache1"], "edge": ["edge1"]}),
        "monitoring_tls_self_signed": False, "monitoring_tls_ca_file": "files/pki/ca.crt",
        "monitoring_probe_ca_file": "files/edge/chain.pem", "monitoring_slack_webhook_url": "https://hooks.example/T0/B0",
    },
    "outside development, a public edge certificate": {
        **inventory({"mon1": "10.0.0.5", "edge1": "10.0.0.8"}, {"monitoring": ["mon1"], "edge": ["edge1"]}),
        "monitoring_tls_self_signed": False, "monitoring_tls_ca_file": "files/pki/ca.crt",
        "monitoring_slack_webhook_url": "https://hooks.example/T0/B0",
    },
}


@pytest.fixture(scope="module", autouse=True)
def _tools():
    require_tools(*TOOLS, packages="Debian's prometheus, prometheus-alertmanager and prometheus-blackbox-exporter")


def check(*command: str | Path) -> str:
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.mark.parametrize("shape", SHAPES)
def test_every_monitoring_hosts_files_pass_their_tools_checks(tmp_path, shape):
    settings = SHAPES[shape]
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    rule_files = monitoring.write_rules(rules_dir, **settings)
    for host in settings["groups"]["monitoring"]:
        files = {"prometheus.yml": "etc/prometheus/prometheus.yml.j2", "alertmanager.yml": str(monitoring.ALERTMANAGER),
                 "blackbox.yml": "etc/prometheus/blackbox.yml.j2"}
        for name, template in files.items():
            (tmp_path / name).write_text(monitoring.render(Path(template), inventory_hostname=host,
                                                           _monitoring_rules_dir=str(rules_dir), **settings))
        checked = check("promtool", "check", "config", tmp_path / "prometheus.yml")
        assert all(f"Checking {path}" in checked for path in rule_files), checked
        check("amtool", "check-config", tmp_path / "alertmanager.yml")
        check("prometheus-blackbox-exporter", "--config.check", f"--config.file={tmp_path / 'blackbox.yml'}")
