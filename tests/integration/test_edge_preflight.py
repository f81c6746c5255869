"""The edge role's preflight, run for real on the controller (where it runs in every play): it
refuses a rate-limited route outside the API, which the edge would proxy to the app servers and so
publish whatever the API serves there (its /metrics, for Prometheus alone), before any change."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT


def preflight(tmp_path: Path, routes: list[str]) -> subprocess.CompletedProcess:
    playbook = tmp_path / "edge-preflight.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "The edge's preflight", "hosts": "localhost", "connection": "local",
        "gather_facts": True, "gather_subset": ["min"],
        "vars": {"edge_app_upstreams": [{"name": "app1", "address": "10.20.1.11", "port": 3001}],
                 "edge_rate_limited_routes": routes},
        "tasks": [{"name": "Preflight", "ansible.builtin.import_role": {"name": "chajipoa.platform.edge", "tasks_from": "preflight"}}],
    }]))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_CACHE_PLUGIN="memory")
    return subprocess.run(["ansible-playbook", "-i", "localhost,", str(playbook)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("routes", [["/api/auth/login", "/api/auth/register", "/api/payments"], ["/api/"], []])
def test_routes_of_the_api_pass(tmp_path, routes):
    result = preflight(tmp_path, routes)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("routes", "refused"),
    [
        (["/api/auth/login", "/metrics"], "/metrics"),
        (["/"], "/"),
        (["/apix/payments"], "/apix/payments"),
        (["/api/../metrics"], "/api/../metrics"),
        (["/api/payments", "/api/./x/.."], "/api/./x/.."),
    ],
    ids=["metrics", "everything", "api-prefix-lookalike", "dot-dot-segment", "dot-segments"],
)
def test_a_route_outside_the_api_is_refused_naming_the_variable_and_the_route(tmp_path, routes, refused):
    result = preflight(tmp_path, routes)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Check the rate-limited routes" in output
    line = next(line for line in output.splitlines() if "edge_rate_limited_routes" in line)
    assert line.rstrip().rstrip('"').endswith(f"refused: {refused}"), line
