"""Every unit this scenario's hosts run from the platform is sandboxed within its exposure limit
(plugins/module_utils/systemd_sandbox.py), as `systemd-analyze security` measures it on the host.
That the services still work under their sandboxes is what the scenario's other tests prove."""
from __future__ import annotations

import os

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

RUNNER = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
APP = "reference-api"
# The units each group brings, and the entry each is limited by when its name differs.
UNITS = {
    "postgres": ["postgresql@15-main.service", "postgresql-maintenance.service"],
    "redis": ["redis-server.service"],
    "app": [f"{APP}@blue.service", f"{APP}@green.service", "pgbouncer.service"],
    "edge": ["nginx.service"],
    "monitoring": ["prometheus.service", "prometheus-alertmanager.service", "prometheus-blackbox-exporter.service"],
}
ENTRIES = {f"{APP}@blue.service": "app@.service", f"{APP}@green.service": "app@.service"}
CASES = sorted({(host, unit) for group, units in UNITS.items() for host in RUNNER.get_hosts(group) for unit in units})


@pytest.mark.parametrize(("name", "unit"), CASES)
def test_unit_within_its_exposure_limit(lab_host, sandbox_exposure, name, unit):
    exposure, limit = sandbox_exposure(lab_host(name), unit, ENTRIES.get(unit))
    assert exposure <= limit, f"{unit} on {name}: exposure {exposure}, limit {limit}"


@pytest.mark.parametrize("name", sorted(RUNNER.get_hosts("all")))
def test_every_exporter_within_its_exposure_limit(lab_host, sandbox_exposure, name):
    host = lab_host(name)
    exporters = host.check_output("systemctl list-units --plain --no-legend --no-pager 'prometheus-*exporter*.service'").split()
    exporters = [word for word in exporters if word.endswith(".service")]
    assert exporters, f"no exporter runs on {name}"
    for unit in exporters:
        assert host.service(unit).is_running, f"{unit} on {name} is not running"
        exposure, limit = sandbox_exposure(host, unit)
        assert exposure <= limit, f"{unit} on {name}: exposure {exposure}, limit {limit}"
