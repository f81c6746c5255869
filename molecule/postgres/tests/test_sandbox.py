"""PostgreSQL's own unit (Debian's, with the role's drop-in) and the weekly optimisation are
sandboxed within their exposure limits (plugins/module_utils/systemd_sandbox.py), as
`systemd-analyze security` measures them on the hosts; the server runs as postgres from the start."""
from __future__ import annotations

import pytest

from pglab import UNIT


@pytest.mark.parametrize(("name", "unit"), [("pg-primary", UNIT), ("pg-primary", "postgresql-maintenance.service"), ("pg-primary", "postgresql.service"),
                                           ("pg-replica", UNIT)])
def test_unit_within_its_exposure_limit(lab_host, sandbox_exposure, name, unit):
    exposure, limit = sandbox_exposure(lab_host(name), unit)
    assert exposure <= limit, f"{unit} on {name}: exposure {exposure}, limit {limit}"


@pytest.mark.parametrize("name", ["pg-primary", "pg-replica"])
def test_server_runs_as_postgres_without_capabilities(lab_host, name):
    host = lab_host(name)
    pid = host.check_output(f"systemctl show -p MainPID --value {UNIT}")
    assert host.check_output(f"ps -o user= -p {pid}") == "postgres"
    assert "CapEff:\t0000000000000000" in host.file(f"/proc/{pid}/status").content_string
