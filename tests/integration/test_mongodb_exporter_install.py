"""How the monitoring role installs MongoDB's exporter (Percona's release, docs/monitoring.md "MongoDB's
exporter") on a host of group mongodb, run for real on a lab container through the role's
`exporters` entry point: check mode on a fresh host passes without asking the network and changes
nothing; a tarball whose checksum is not the one the role holds is refused before anything is
unpacked; a release that cannot be fetched fails the run naming its URL; a release whose checksum
matches is unpacked into its directory and started by the role's unit, with the data tier's CA
(monitoring_tls_ca_file) and without the probes' (a monitoring host's), and a second run changes
nothing.

The release served here is a STAND-IN of the test's own, shaped like Percona's tarball: its
"mongodb_exporter" is a shell script that waits, doing nothing. It shows the role's
installation, unit, sandbox and settings reaching the process, never the exporter's behaviour:
neither Percona's release nor a MongoDB server can be fetched on these machines (molecule mongodb
tests those where they can). Needs the Docker engine and the lab image (`make integration`).
"""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests import lab_container
from tests.conftest import ROOT
from tests.lab_container import docker
from tests.redisserver import make_tls_files

CONTAINER = "chajipoa-mongodb-exporter-test-1"
HOST = "mongo-exporter-1"
# Characters systemd's settings-file quoting must carry through: a space, a double quote, a dollar,
# a backslash.
PASSWORD = 'exporter test "pass" $1 \\ end'
PLAYBOOK = [{"hosts": "all", "gather_facts": True, "gather_subset": ["min", "network"],
             "tasks": [{"name": "The exporters", "ansible.builtin.import_role": {"name": "chajipoa.platform.monitoring",
                                                                                 "tasks_from": "exporters"}}]}]
RELEASES = "/opt/prometheus-mongodb-exporter"


@pytest.fixture(scope="module")
def lab_host() -> Iterator[str]:
    lab_container.start(CONTAINER)
    try:
        # The package lists a host has once it has run apt: check mode reads them, never fetches them.
        updated = docker("exec", CONTAINER, "apt-get", "update", "-qq")
        assert updated.returncode == 0, updated.stderr
        yield docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", CONTAINER).stdout.strip()
    finally:
        lab_container.remove(CONTAINER)


@pytest.fixture(autouse=True)
def fresh(lab_host) -> None:
    """Each test starts from a host without the exporter (the packages it shares stay)."""
    on_host("systemctl", "disable", "--now", "prometheus-mongodb-exporter.service")
    on_host("rm", "-rf", RELEASES, "/etc/default/prometheus-mongodb-exporter",
            "/etc/systemd/system/prometheus-mongodb-exporter.service")
    on_host("systemctl", "daemon-reload")


def run(tmp_path: Path, address: str, *options: str, **variables) -> subprocess.CompletedProcess:
    """The exporters' entry point on the container as a host of group mongodb (no monitoring host, so
    no firewall opening: the firewall hook, which needs the common role, is left out)."""
    inventory = {"all": {"children": {"mongodb": {"hosts": {HOST: {
        "ansible_host": CONTAINER, "ansible_connection": "community.docker.docker",
        "ansible_python_interpreter": "/usr/bin/python3", "private_address": address,
        "mongodb_monitoring_password": PASSWORD, "monitoring_tls_self_signed": False, **variables}}}}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(yaml.safe_dump(PLAYBOOK))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_CACHE_PLUGIN="memory")
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"),
                           "--skip-tags", "monitoring_firewall", *options, str(tmp_path / "play.yml")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)


def on_host(*command: str) -> subprocess.CompletedProcess:
    return docker("exec", CONTAINER, *command)


def nothing_installed() -> None:
    assert on_host("sh", "-c", f"ls {RELEASES}/*/mongodb_exporter").returncode != 0
    assert on_host("sh", "-c", f"ls {RELEASES}/*.tar.gz").returncode != 0
    # The failed run's restart handler still ran (force_handlers): the unit's condition kept it from
    # starting a binary that is not there.
    assert on_host("systemctl", "is-active", "prometheus-mongodb-exporter.service").stdout.strip() in ("inactive", "unknown")


@pytest.fixture
def release_server(lab_host) -> Iterator[tuple[str, bytes]]:
    """The stand-in release (see above), served on this machine's address on the container's network
    (its default gateway): its URL and its bytes."""
    tarball = io.BytesIO()
    with tarfile.open(fileobj=tarball, mode="w:gz") as archive:
        # The shell stays the unit's main process, so its command line is the unit's.
        content = b"#!/bin/sh\nwhile :; do sleep 3600; done\n"
        member = tarfile.TarInfo("mongodb_exporter-0.53.0.linux-amd64/mongodb_exporter")
        member.size, member.mode = len(content), 0o755
        archive.addfile(member, io.BytesIO(content))
    body = tarball.getvalue()

    class Release(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the name http.server calls
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    # The container's own view: a bridge network's IPAM configuration may leave its gateway out (a
    # new machine's docker.io 20.10 does), and a server bound to "" would answer on every address.
    gateway = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.Gateway}}{{end}}", CONTAINER).stdout.strip()
    assert gateway, f"{CONTAINER} has no gateway on its network"
    server = http.server.ThreadingHTTPServer((gateway, 0), Release)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{gateway}:{server.server_address[1]}/mongodb_exporter-0.53.0.linux-amd64.tar.gz", body
    finally:
        server.shutdown()
        server.server_close()


def test_check_mode_on_a_fresh_host_passes_without_the_network_and_changes_nothing(lab_host, tmp_path):
    # A URL nothing answers: check mode must not ask it.
    result = run(tmp_path, lab_host, "--check", monitoring_mongodb_exporter_url="http://127.0.0.1:9/unreachable.tar.gz")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    nothing_installed()
    assert on_host("test", "-e", "/etc/default/prometheus-mongodb-exporter").returncode != 0


def test_a_tarball_with_another_checksum_is_refused_before_anything_is_unpacked(lab_host, tmp_path, release_server):
    url, body = release_server
    expected = hashlib.sha256(body + b"tampered").hexdigest()
    result = run(tmp_path, lab_host, monitoring_mongodb_exporter_url=url,
                 monitoring_mongodb_exporter_checksums={"amd64": f"sha256:{expected}", "arm64": f"sha256:{expected}"})
    assert result.returncode != 0
    failed = next(line for line in result.stdout.splitlines() if line.startswith("fatal:"))
    assert "checksum" in failed.lower() and expected in failed, failed
    assert "TASK [chajipoa.platform.monitoring : Fetch MongoDB's exporter 0.53.0]" in result.stdout
    nothing_installed()
    # Check mode after the failure still passes: the release is pending, its unit is not asked about.
    again = run(tmp_path, lab_host, "--check", monitoring_mongodb_exporter_url=url)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]


def test_a_release_that_cannot_be_fetched_fails_naming_its_url(lab_host, tmp_path):
    url = "http://127.0.0.1:9/mongodb_exporter-0.53.0.linux-amd64.tar.gz"
    result = run(tmp_path, lab_host, monitoring_mongodb_exporter_url=url)
    assert result.returncode != 0
    failed = next(line for line in result.stdout.splitlines() if line.startswith("fatal:"))
    assert url in failed or json.dumps(url)[1:-1] in failed, failed
    nothing_installed()


def test_a_release_with_its_checksum_is_unpacked_and_run_by_the_roles_unit_then_left_alone(lab_host, tmp_path, release_server):
    url, body = release_server
    checksum = f"sha256:{hashlib.sha256(body).hexdigest()}"
    # The data tier's CA on the controller; the probes' is the monitoring hosts' alone.
    (tmp_path / "pki").mkdir()
    data_ca = make_tls_files(tmp_path / "pki", "mongodb")[0]
    variables = {"monitoring_mongodb_exporter_url": url,
                 "monitoring_mongodb_exporter_checksums": {"amd64": checksum, "arm64": checksum},
                 "monitoring_tls_ca_file": str(data_ca), "monitoring_probe_ca_file": str(data_ca)}
    first = run(tmp_path, lab_host, **variables)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    binary = f"{RELEASES}/mongodb_exporter-0.53.0.linux-amd64/mongodb_exporter"
    assert on_host("test", "-x", binary).returncode == 0
    assert on_host("sh", "-c", f"ls {RELEASES}/*.tar.gz").returncode != 0, "the tarball is left behind"
    assert on_host("systemctl", "is-active", "prometheus-mongodb-exporter.service").stdout.strip() == "active"
    assert on_host("systemctl", "is-enabled", "prometheus-mongodb-exporter.service").stdout.strip() == "enabled"
    pid = on_host("systemctl", "show", "-p", "MainPID", "--value", "prometheus-mongodb-exporter.service").stdout.strip()
    # The process the unit started: the release's binary, as prometheus, with the settings' arguments
    # and environment exactly as written (the password's quoting survives systemd's parser).
    status = dict(line.split(":", 1) for line in on_host("cat", f"/proc/{pid}/status").stdout.splitlines())
    assert on_host("id", "-un", status["Uid"].split()[0]).stdout.strip() == "prometheus"
    environment = dict(item.split("=", 1) for item in on_host("cat", f"/proc/{pid}/environ").stdout.split("\0") if item)
    assert environment["MONGODB_PASSWORD"] == PASSWORD
    assert environment["MONGODB_USER"] == "monitoring"
    assert environment["MONGODB_URI"] == f"mongodb://{lab_host}:27017/admin?tls=true&tlsCAFile=/etc/prometheus/tls/ca.crt"
    assert on_host("cat", "/etc/prometheus/tls/ca.crt").stdout == data_ca.read_text()
    assert on_host("test", "-e", "/etc/prometheus/tls/probe-ca.crt").returncode != 0
    command = on_host("cat", f"/proc/{pid}/cmdline").stdout.split("\0")[1:-1]
    assert command == [binary, f"--web.listen-address={lab_host}:9216", "--mongodb.direct-connect",
                       "--collector.diagnosticdata", "--collector.replicasetstatus"], command
    second = run(tmp_path, lab_host, **variables)
    assert second.returncode == 0 and f"{HOST} " in second.stdout
    recap = next(line for line in second.stdout.splitlines() if line.startswith(HOST))
    assert "changed=0" in recap, second.stdout[-4000:]
