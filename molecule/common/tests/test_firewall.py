"""The firewall on a lab host: faulty input never reaches it, a ruleset nft refuses changes nothing,
the table in the kernel is the one the files describe (a failed reload does not hide behind green
runs), and it is what the host loads at boot."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
SCENARIO = Path(__file__).resolve().parent.parent
TOOL = "/usr/local/sbin/chajipoa-firewall"

pytestmark = pytest.mark.journal("nftables.service")


def play(playbook: str, *args: str, **extra) -> subprocess.CompletedProcess:
    """ansible-playbook on this scenario's inventory; `extra` goes in as JSON extra vars."""
    command = ["ansible-playbook", "-i", INVENTORY, str(SCENARIO / playbook), *args]
    if extra:
        command += ["-e", json.dumps(extra)]
    return subprocess.run(command, capture_output=True, text=True, check=False, env=os.environ)


def output(run: subprocess.CompletedProcess) -> str:
    """The end of a run's report, for an assertion's message."""
    return run.stdout[-4000:] + run.stderr[-4000:]


def said(run: subprocess.CompletedProcess) -> str:
    """All a run printed: Ansible reports a failed task on stderr."""
    return run.stdout + run.stderr


def state(host) -> tuple[str, str]:
    """What the host would load (every file's digest) and what its kernel runs: its rules and sets,
    not the sets' elements (-t), which the SSH rate meter adds and expires by itself."""
    files = host.check_output("sha256sum /etc/nftables.conf /etc/nftables.d/*")
    return files, host.check_output("nft -t list table inet chajipoa")


def openings(host) -> set[tuple[str, str]]:
    """(port, rule name) of every accept rule in the services chain of the running table."""
    chain = host.check_output("nft list chain inet chajipoa services")
    return set(re.findall(r'dport (\S+) accept comment "([^"]*)"', chain))


# One of each kind; tests/unit/plugins/filter/test_firewall_rules.py goes through the whole class.
FAULTS = {
    "source beyond its prefix length": ({"sources": ["10.20.0.0/33"]}, ["10.20.0.0/33", "sources"]),
    "typo'd address": ({"sources": ["10.20.0.300"]}, ["10.20.0.300", "sources"]),
    "host name as source": ({"sources": ["db1.chajipoa.internal"]}, ["db1.chajipoa.internal", "sources"]),
    "port beyond 65535": ({"ports": [65536]}, ["65536", "1-65535"]),
    "quote in name": ({"name": 'probe" accept comment "all'}, ["probe", "is not a rule name"]),
}


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
def test_faulty_rule_refused_before_anything_is_written(server, fault):
    change, expected = FAULTS[fault]
    rule = {"name": "probe-bad", "ports": [8083], "sources": ["10.20.0.0/24"]} | change
    before = state(server)
    run = play("firewall_entry.yml", common_firewall_service="faulty", common_firewall_inbound=[rule])
    assert run.returncode != 0, output(run)
    assert "common_firewall_inbound" in said(run)
    for word in expected:
        assert word in said(run), output(run)
    assert state(server) == before


@pytest.mark.parametrize("service", ["../nftables", "a b"])
def test_faulty_service_name_refused(server, service):
    before = state(server)
    run = play("firewall_entry.yml", common_firewall_service=service,
               common_firewall_inbound=[{"name": "probe", "ports": [8083]}])
    assert run.returncode != 0, output(run)
    assert "common_firewall_service" in said(run), output(run)
    assert state(server) == before


def test_ruleset_nft_refuses_is_not_installed_and_fails_every_run(server):
    """A hand-made file nft refuses (here a typo) makes any candidate fail the whole-ruleset check."""
    server.check_output("printf 'add rule inet chajipoa services tcp dport 9999 acept comment \"by-hand\"\\n'"
                        " > /etc/nftables.d/by-hand.nft")
    try:
        before = state(server)
        for _ in range(2):  # the next run tries again, and is not green either
            run = play("firewall_entry.yml", common_firewall_service="extra",
                       common_firewall_inbound=[{"name": "extra", "ports": [8083]}])
            assert run.returncode != 0, output(run)
            assert "/etc/nftables.d/by-hand.nft" in said(run), output(run)
            assert "by-hand" in said(run)
            assert state(server) == before
    finally:
        server.check_output("rm -f /etc/nftables.d/by-hand.nft")
    run = play("firewall_entry.yml", common_firewall_service="extra",
               common_firewall_inbound=[{"name": "extra", "ports": [8083]}])
    assert run.returncode == 0, output(run)
    assert ("8083", "extra") in openings(server)
    run = play("firewall_entry.yml", common_firewall_service="extra", common_firewall_inbound=[])
    assert run.returncode == 0, output(run)
    assert ("8083", "extra") not in openings(server)
    assert not server.file("/etc/nftables.d/extra.nft").exists


def test_checker_names_the_rule_nft_refuses(server):
    server.check_output("printf 'add rule inet chajipoa services tcp dport 8083 accept comment \"fine\"\\n"
                        "add rule inet chajipoa services tcp dport 8084 acept comment \"typo\"\\n' > /tmp/candidate.nft")
    run = server.run(f"{TOOL} check /etc/nftables.d/extra.nft /tmp/candidate.nft")
    assert run.rc != 0
    assert "Cannot install /etc/nftables.d/extra.nft" in said(run) + run.stderr
    assert "rule 'typo'" in said(run) + run.stderr
    assert "rule 'fine'" not in said(run) + run.stderr
    server.check_output("sed -i 's/acept/accept/' /tmp/candidate.nft")
    assert server.run(f"{TOOL} check /etc/nftables.d/extra.nft /tmp/candidate.nft").rc == 0


def test_files_the_kernel_never_loaded_are_loaded_by_the_next_run(server):
    """A file installed whose reload never ran (a failed or interrupted play): the next run loads it."""
    server.check_output("printf 'add rule inet chajipoa services tcp dport 8085 accept comment \"late\"\\n'"
                        " > /etc/nftables.d/late.nft")
    try:
        assert ("8085", "late") not in openings(server)
        run = play("converge.yml", "--tags", "common_firewall", "--limit", "common-a")
        assert run.returncode == 0, output(run)
        assert ("8085", "late") in openings(server)
    finally:
        server.check_output("rm -f /etc/nftables.d/late.nft")
    run = play("converge.yml", "--tags", "common_firewall", "--limit", "common-a")
    assert run.returncode == 0, output(run)
    assert ("8085", "late") not in openings(server)
    assert server.run(f"{TOOL} status").stdout.strip() == "current"


def test_unloadable_file_fails_the_next_run(server):
    """A file the host cannot load must not hide behind green runs: it would fail at the next boot."""
    server.check_output("printf 'add rule inet chajipoa services ip saddr { 10.20.0.0/33 } accept\\n'"
                        " > /etc/nftables.d/broken.nft")
    try:
        before = state(server)[1]
        run = play("converge.yml", "--tags", "common_firewall", "--limit", "common-a")
        assert run.returncode != 0, output(run)
        assert "broken.nft" in said(run), output(run)
        assert state(server)[1] == before
    finally:
        server.check_output("rm -f /etc/nftables.d/broken.nft")
    run = play("converge.yml", "--tags", "common_firewall", "--limit", "common-a")
    assert run.returncode == 0, output(run)


def test_forwarding_left_alone_unless_the_host_opts_in(client):
    assert "hook forward" not in client.check_output("nft list table inet chajipoa")
    run = play("converge.yml", "--tags", "common_firewall", "--limit", "common-b",
               common_firewall_filter_forward=True)
    assert run.returncode == 0, output(run)
    assert "type filter hook forward priority filter; policy drop;" in client.check_output("nft list table inet chajipoa")
    run = play("converge.yml", "--tags", "common_firewall", "--limit", "common-b")
    assert run.returncode == 0, output(run)
    assert "hook forward" not in client.check_output("nft list table inet chajipoa")


@pytest.mark.journal("nftables.service", "ssh.service", "probe-listener@8081.service")
def test_table_loaded_at_boot_with_the_expected_ports_only(server, client):
    subprocess.run(["docker", "restart", "common-a"], check=True, capture_output=True)
    # The scenario's own wait for systemd (molecule/shared/prepare.yml): running or degraded.
    booted = play("../shared/prepare.yml", "--limit", "common-a")
    assert booted.returncode == 0, output(booted)
    assert server.service("nftables").is_running
    assert openings(server) == {("22", "ssh"), ("8081", "probe")}
    table = server.check_output("nft list table inet chajipoa")
    assert "type filter hook input priority filter; policy drop;" in table
    assert server.run(f"{TOOL} status").stdout.strip() == "current"
    # The listeners start at boot too (prepare.yml): only the opened ports answer another host.
    for port in (8081, 8082):
        assert server.run(f"nc -z -w 3 127.0.0.1 {port}").rc == 0
    assert client.run("nc -z -w 3 common-a 22").rc == 0
    assert client.run("nc -z -w 3 common-a 8081").rc == 0
    assert client.run("nc -z -w 3 common-a 8082").rc != 0
