"""`site.yml --check` on hosts no run has converged yet: an operator's first look at what the
platform would do to new machines (AWX's "Check" job type does the same). Every role of the
development platform runs in it: the base system, PostgreSQL primary and standby, Redis, backups,
PgBouncer, the app, the edge and monitoring. The run must pass, report changes on every host, and
leave the hosts as they were.

The lab is the development inventory copied with names, network and addresses of this test's own
(no ports published), so a running development lab is left alone, and without its credentials
directory, as on a clone where `make dev` never ran. Needs the Docker engine and the lab image
(`make integration` provides both).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_playbook

PREFIX = "chajipoa-checkmode"
SUBNET = "172.30.83."
# A package and the paths that only a real run puts on each host.
UNTOUCHED = {
    "db1": ("postgresql-15", ["/etc/postgresql"]),
    "db2": ("postgresql-15", []),
    "cache1": ("redis-server", ["/etc/redis"]),
    "app1": ("pgbouncer", ["/opt/reference-api"]),
    "edge1": ("nginx", []),
    "mon1": ("prometheus", ["/etc/prometheus/rules"]),
}


def own_copy(directory: Path) -> Path:
    """inventories/development under this test's names, its credentials left behind."""
    copy = directory / "development"
    shutil.copytree(ROOT / "inventories" / "development", copy, ignore=shutil.ignore_patterns("credentials"))
    for path in copy.rglob("*.yml"):
        text = path.read_text().replace("chajipoa-dev", PREFIX).replace("172.30.80.", SUBNET)
        path.write_text(re.sub(r"^\s*lab_ports: .*\n", "", text, flags=re.MULTILINE))
    return copy


@pytest.fixture(scope="module")
def new_hosts(tmp_path_factory):
    inventory = own_copy(tmp_path_factory.mktemp("check-mode"))
    created = run_playbook("lab.yml", inventory)
    assert created.returncode == 0, created.stdout[-3000:] + created.stderr[-2000:]
    yield inventory
    run_playbook("lab.yml", inventory, extra=["-e", "lab_state=absent"])


def on_host(host: str, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", f"{PREFIX}-{host}", "sh", "-c", command], capture_output=True, text=True, check=False)


def test_site_check_on_new_hosts_passes_reports_changes_and_changes_nothing(new_hosts):
    checked = run_playbook("site.yml", new_hosts, extra=["--check"], timeout=900)
    assert checked.returncode == 0, checked.stdout[-6000:] + checked.stderr[-2000:]
    recap = dict(re.findall(r"^(\w+)\s+: ok=\d+\s+changed=(\d+)", checked.stdout, re.MULTILINE))
    assert set(UNTOUCHED) <= set(recap), recap
    assert all(int(recap[host]) > 0 for host in UNTOUCHED), recap
    for host, (package, paths) in UNTOUCHED.items():
        probes = [f"dpkg-query -W -f '${{Status}}' {package} | grep -q 'install ok installed'", *(f"test -e {path}" for path in paths)]
        for probe in probes:
            assert on_host(host, probe).returncode != 0, f"{host}: {probe} after a check run"
