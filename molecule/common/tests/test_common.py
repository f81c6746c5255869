"""The common role on two lab hosts: b is the client that probes a."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

SCENARIO = Path(__file__).resolve().parent.parent
SSH = "ssh -i /root/.ssh/id_ed25519 -o BatchMode=yes -o StrictHostKeyChecking=no -o ConnectTimeout=5"


def test_host_name_and_hosts_file(host, lab_address):
    name = host.backend.hostname
    assert host.check_output("hostname") == name
    address = lab_address(host)
    assert host.check_output(f"getent hosts {name}.molecule.chajipoa.lan").split()[:3] == [
        address, f"{name}.molecule.chajipoa.lan", name,
    ]


@pytest.mark.parametrize("renamed", ["kernel", "file", "both"])
def test_a_host_renamed_by_hand_gets_its_name_back(server, run_playbook, renamed):
    """The next run puts back the kernel's name and /etc/hostname, whichever was changed by hand, and
    the run after it changes nothing. Docker bind-mounts /etc/hostname, which systemd-hostnamed
    cannot replace (EBUSY), as on any host whose /etc/hostname is a mount."""
    name = server.check_output("cat /etc/hostname")
    if renamed in ("kernel", "both"):
        server.run_expect([0], "hostname renamed-by-hand")
    if renamed in ("file", "both"):
        server.run_expect([0], "echo renamed-by-hand > /etc/hostname")
    runs = [run_playbook(SCENARIO / "converge.yml", "--limit", "common-a", "--tags", "common_identity") for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert server.check_output("cat /proc/sys/kernel/hostname") == name
    assert server.check_output("cat /etc/hostname") == name
    changed = [task["task"]["name"] for play in json.loads(runs[1].stdout)["plays"] for task in play["tasks"]
               if task["hosts"].get("common-a", {}).get("changed")]
    assert changed == []


def test_a_limited_run_lists_hosts_outside_the_limit(server, run_playbook, tmp_path):
    """The hosts file lists every inventory host that has a private_address, read once per play: a run
    limited to one host still reads the others' (here one in an extra inventory, never contacted)."""
    extra = tmp_path / "extra.yml"
    extra.write_text("all:\n  hosts:\n    common-extra:\n      private_address: 192.0.2.10\n")
    name = "common-extra.molecule.chajipoa.lan"
    try:
        run = run_playbook(SCENARIO / "converge.yml", "-i", str(extra), "--limit", "common-a", "--tags", "common_identity")
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
        assert server.check_output(f"getent hosts {name}").split() == ["192.0.2.10", name, "common-extra"]
    finally:
        restored = run_playbook(SCENARIO / "converge.yml", "--limit", "common-a", "--tags", "common_identity")
    assert restored.returncode == 0, restored.stdout[-4000:] + restored.stderr[-4000:]
    assert server.run(f"getent hosts {name}").rc == 2


def test_time_zone_and_locales(host):
    assert host.file("/etc/localtime").linked_to.endswith("/Africa/Dar_es_Salaam")
    assert host.check_output("date +%Z") == "EAT"
    locales = host.check_output("locale -a").split()
    assert "en_US.utf8" in locales and "sw_TZ.utf8" in locales
    assert host.file("/etc/default/locale").contains("^LANG=en_US.UTF-8$")


@pytest.mark.parametrize("package", ["chrony", "nftables", "openssh-server", "unattended-upgrades", "jq", "curl"])
def test_packages(host, package):
    assert host.package(package).is_installed


def test_apt_sources_include_security(host):
    sources = host.file("/etc/apt/sources.list.d/debian.sources")
    assert sources.contains("bookworm-security")
    # No source twice (apt warns about each repeat): the old list holds comments only.
    old_list = host.file("/etc/apt/sources.list").content_string
    assert [line for line in old_list.splitlines() if line.strip() and not line.lstrip().startswith("#")] == []
    # A real refresh against the managed sources must succeed with the firewall in place.
    assert host.run("apt-get update -qq").rc == 0


def test_chrony_configured_and_enabled(host):
    assert host.file("/etc/chrony/chrony.conf").contains("^pool 0.debian.pool.ntp.org iburst$")
    chrony = host.service("chrony")
    assert chrony.is_enabled
    # Containers share the host's clock: the unit's own condition keeps it from starting here.
    condition = host.check_output("systemctl show chrony -p ConditionResult --value")
    assert chrony.is_running or condition == "no"


def test_sshd_policy(host):
    effective = dict(line.split(" ", 1) for line in host.check_output("sshd -T").splitlines())
    assert effective["permitrootlogin"] == "no"
    assert effective["passwordauthentication"] == "no"
    assert effective["kbdinteractiveauthentication"] == "no"
    assert effective["authenticationmethods"] == "publickey"
    for forwarding in ("allowtcpforwarding", "allowagentforwarding", "x11forwarding", "allowstreamlocalforwarding"):
        assert effective[forwarding] == "no", forwarding
    # sshd -T prints one allowgroups line per group.
    allowed = {line.split(" ", 1)[1] for line in host.check_output("sshd -T").splitlines() if line.startswith("allowgroups ")}
    assert allowed == {"chajipoa-admin", "chajipoa-automation"}


@pytest.mark.journal("ssh.service")
def test_administrator_logs_in_with_key_and_uses_sudo(client):
    result = client.run(f"{SSH} amina@common-a 'id -un; sudo -n id -un'")
    assert result.rc == 0, result.stderr
    assert result.stdout.split() == ["amina", "root"]


@pytest.mark.journal("ssh.service")
def test_root_login_refused_even_with_authorized_key(client, server):
    assert server.file("/root/.ssh/authorized_keys").exists
    result = client.run(f"{SSH} root@common-a true")
    assert result.rc == 255
    assert "Permission denied" in result.stderr


@pytest.mark.journal("ssh.service")
def test_login_refused_outside_the_allowed_groups(client, server):
    # Both accounts hold an authorized key; only the group decides.
    assert server.file("/home/outsider/.ssh/authorized_keys").exists
    refused = client.run(f"{SSH} outsider@common-a true")
    assert refused.rc == 255
    assert "Permission denied" in refused.stderr
    admitted = client.run(f"{SSH} robot@common-a id -un")
    assert admitted.rc == 0, admitted.stderr
    assert admitted.stdout.strip() == "robot"


@pytest.mark.journal("ssh.service")
def test_port_forwarding_refused(client):
    result = client.run(f"{SSH} -o ExitOnForwardFailure=yes -R 18081:127.0.0.1:8081 amina@common-a true")
    assert result.rc == 255
    assert "forwarding failed" in result.stderr


def test_password_login_not_offered(client):
    result = client.run(f"{SSH} -o PubkeyAuthentication=no -o PreferredAuthentications=password,keyboard-interactive amina@common-a true")
    assert result.rc == 255
    assert "Permission denied (publickey)" in result.stderr


def test_absent_administrator_removed(server):
    assert not server.user("former").exists
    assert server.group("chajipoa-admin").exists
    assert "chajipoa-admin" in server.user("amina").groups


@pytest.mark.journal("nftables.service")
def test_firewall_default_deny(server):
    assert server.service("nftables").is_enabled
    assert server.service("nftables").is_running
    ruleset = server.check_output("nft list table inet chajipoa")
    assert "policy drop" in ruleset
    assert 'tcp dport 8081 accept comment "probe"' in ruleset


@pytest.mark.journal("nftables.service", "probe-listener@8081.service", "probe-listener@8082.service")
def test_only_opened_ports_reachable_from_another_host(client, server):
    # Both listeners answer locally, so a failure from b can only be the firewall.
    for port in (8081, 8082):
        assert server.run(f"nc -z -w 3 127.0.0.1 {port}").rc == 0
    assert client.run("nc -z -w 3 common-a 22").rc == 0
    assert client.run("nc -z -w 3 common-a 8081").rc == 0
    assert client.run("nc -z -w 3 common-a 8082").rc != 0


def test_docker_dns_survives_the_firewall(server):
    # The role manages only its own table, so Docker's embedded DNS rules still work.
    assert server.run("getent hosts common-b").rc == 0


def test_kernel_settings_file(host):
    settings = host.file("/etc/sysctl.d/60-chajipoa.conf")
    assert settings.contains("^net.ipv4.tcp_syncookies = 1$")
    assert settings.contains("^kernel.kptr_restrict = 2$")


def test_unattended_upgrades_take_security_only(host):
    dry_run = host.run("unattended-upgrade --dry-run --debug")
    assert dry_run.rc == 0, dry_run.stderr
    allowed = [line for line in (dry_run.stdout + dry_run.stderr).splitlines() if "Allowed origins are" in line]
    assert allowed and "codename=bookworm-security" in allowed[0]
    assert "codename=bookworm," not in allowed[0]
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        assert host.service(timer).is_enabled


def test_the_daily_apt_run_leaves_nothing_for_the_next_run(server, run_playbook):
    """unattended-upgrades (run by apt-daily.service) creates an empty /etc/apt/sources.list where there
    is none: while the role removed that file, it came back every day and every scheduled run of the
    site reported a change."""
    # Without its stamps the service does its whole work now, as on its first run of a day.
    server.run_expect([0], "rm -f /var/lib/apt/periodic/*")
    server.run_expect([0], "systemctl start apt-daily.service")
    run = run_playbook(SCENARIO / "converge.yml", "--limit", "common-a", "--tags", "common_install")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    report = json.loads(run.stdout)
    changed = [task["task"]["name"] for play in report["plays"] for task in play["tasks"]
               if task["hosts"].get("common-a", {}).get("changed")]
    assert changed == []
