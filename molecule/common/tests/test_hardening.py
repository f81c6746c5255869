"""The host baseline (CIS Debian 12, Mozilla's OpenSSH guidelines) observed on the lab hosts: what sshd
offers and refuses over a real connection, what the kernel, PAM, auditd, journald and the package
check do. Where a container cannot do what a host does (its kernel is the host's, it lacks
CAP_AUDIT_CONTROL, and common-b lacks CAP_SYS_PACCT), the test asserts what the role wrote and that
the unit skipped itself by its condition, and says so."""
from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import pytest

SCENARIO = Path(__file__).resolve().parent.parent
SSH = "ssh -i /root/.ssh/id_ed25519 -o BatchMode=yes -o StrictHostKeyChecking=no -o ConnectTimeout=5"
CAP_AUDIT_CONTROL, CAP_SYS_PACCT = 30, 20
BLOCKED = ["cramfs", "freevxfs", "hfs", "hfsplus", "jffs2", "udf", "dccp", "sctp", "rds", "tipc", "usb-storage", "firewire-core"]


def capable(host, bit: int) -> bool:
    """Whether systemd (PID 1) holds the capability in its bounding set, as ConditionCapability= asks."""
    bounding = int(host.check_output("awk '/^CapBnd/ {print $2}' /proc/1/status"), 16)
    return bool(bounding >> bit & 1)


def sshd_settings(host) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in host.check_output("sshd -T").splitlines())


def task_results(run, host: str, name: str) -> list[dict]:
    report = json.loads(run.stdout)
    return [task["hosts"][host] for play in report["plays"] for task in play["tasks"]
            if task["task"]["name"].split(" : ")[-1] == name and host in task["hosts"]]


@pytest.fixture
def fresh_meter(server):
    """The SSH rate meter emptied, so that the SSH logins of earlier tests do not count against this one."""
    server.check_output("nft flush set inet chajipoa ssh_meter4")
    yield


# --- Security updates ---------------------------------------------------------------------------------
def pending_security(host) -> list[str]:
    simulated = host.check_output("apt-get -s -o Debug::NoLocking=1 dist-upgrade")
    return [line for line in simulated.splitlines() if line.startswith("Inst ") and "Debian-Security:" in line]


def test_no_security_update_pending_after_converge(host):
    # The index knows the security archive (the test would pass vacuously otherwise).
    policy = host.check_output("apt-cache policy")
    assert "bookworm-security" in policy
    assert pending_security(host) == []
    assert host.package("needrestart").is_installed


def _downgradable(host) -> tuple[str, str, str]:
    """A package whose security version is installed and whose version in the main archive is older."""
    for package in ("libexpat1", "zlib1g", "libpcre2-8-0", "xz-utils"):
        rows = [line.split("|") for line in host.check_output(f"apt-cache madison {package}").splitlines()]
        security = [row[1].strip() for row in rows if "security" in row[2]]
        other = [row[1].strip() for row in rows if "security" not in row[2]]
        installed = host.package(package).version
        if security and other and installed == security[0] and other[-1] != installed:
            return package, other[-1], installed
    pytest.fail("no package of the list has a security update over the main archive's version: pick another")


@pytest.mark.journal("apt-daily.service")
def test_security_updates_on_demand_check_mode_then_apply(server, run_playbook):
    """A security update made pending again (the package downgraded to the main archive's version):
    --check reports it and changes nothing, the tag applies exactly it, a rerun changes nothing."""
    package, old, new = _downgradable(server)
    server.check_output(f"DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --allow-downgrades {package}={old}")
    assert server.package(package).version == old
    tagged = (SCENARIO / "converge.yml", "--limit", "common-a", "--tags", "common_security_updates")

    checked = run_playbook(*tagged, "--check")
    assert checked.returncode == 0, checked.stdout[-4000:] + checked.stderr[-4000:]
    [result] = task_results(checked, "common-a", "Pending security updates")
    report = json.loads(result["stdout"])
    assert report["check"] is True
    assert {"name": package, "from": old, "to": new} in report["upgraded"]
    assert server.package(package).version == old

    applied = run_playbook(*tagged)
    assert applied.returncode == 0, applied.stdout[-4000:] + applied.stderr[-4000:]
    [result] = task_results(applied, "common-a", "Pending security updates")
    assert result["changed"] is True
    report = json.loads(result["stdout"])
    assert {"name": package, "from": old, "to": new} in report["upgraded"]
    assert report["reboot"] in ("not needed", "not allowed")
    assert isinstance(report["services"], list)
    assert server.package(package).version == new
    assert pending_security(server) == []

    again = run_playbook(*tagged)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    [result] = task_results(again, "common-a", "Pending security updates")
    assert result["changed"] is False
    assert json.loads(result["stdout"])["upgraded"] == []


# --- SSH ------------------------------------------------------------------------------------------------
MODERN = {
    "kexalgorithms": {"sntrup761x25519-sha512@openssh.com", "curve25519-sha256", "curve25519-sha256@libssh.org",
                      "ecdh-sha2-nistp521", "ecdh-sha2-nistp384", "ecdh-sha2-nistp256", "diffie-hellman-group-exchange-sha256"},
    "ciphers": {"chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes128-gcm@openssh.com",
                "aes256-ctr", "aes192-ctr", "aes128-ctr"},
    "macs": {"hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com", "umac-128-etm@openssh.com"},
}
QUERY = {"kexalgorithms": "kex", "ciphers": "cipher", "macs": "mac"}


def test_sshd_offers_modern_algorithms_only(host):
    effective = sshd_settings(host)
    for setting, expected in MODERN.items():
        offered = set(effective[setting].split(","))
        assert offered == expected, setting
        # Each one is an algorithm this OpenSSH knows.
        assert offered <= set(host.check_output(f"ssh -Q {QUERY[setting]}").split()), setting


def test_sshd_limits_and_banner(host):
    effective = sshd_settings(host)
    assert effective["maxauthtries"] == "3"
    assert effective["logingracetime"] == "30"
    assert effective["clientaliveinterval"] == "300"
    assert effective["clientalivecountmax"] == "2"
    assert effective["permittunnel"] == "no"
    assert effective["hostbasedauthentication"] == "no"
    assert effective["loglevel"] == "VERBOSE"
    assert effective["banner"] == "/etc/issue.net"


@pytest.mark.parametrize("option, refusal", [
    ("Ciphers=aes256-cbc", "no matching cipher found"),
    # A MAC is negotiated only with a cipher that is not AEAD.
    ("Ciphers=aes128-ctr -o MACs=hmac-sha1", "no matching MAC found"),
    ("KexAlgorithms=diffie-hellman-group14-sha1", "no matching key exchange method found"),
])
@pytest.mark.journal("ssh.service")
def test_weak_algorithms_refused_over_a_real_connection(client, fresh_meter, option, refusal):
    result = client.run(f"{SSH} -o {option} amina@common-a true")
    assert result.rc == 255
    assert refusal in result.stderr


@pytest.mark.journal("ssh.service")
def test_banner_shown_before_login(client, server, fresh_meter):
    for path in ("/etc/issue", "/etc/issue.net"):
        text = server.file(path).content_string
        assert "Authorised access only" in text
        assert "\\" not in text, f"{path}: getty escapes name the system"
    result = client.run(f"{SSH} amina@common-a true")
    assert result.rc == 0, result.stderr
    assert "Authorised access only. This system belongs to ChajiPoa" in result.stderr


@pytest.mark.journal("nftables.service", "ssh.service")
def test_ssh_flood_banned(client, server, lab_address):
    """New connections over the rate put the source in the ban set: its SSH traffic is dropped, other
    hosts' is not, and the ban times out (the set's timeout)."""
    table = server.check_output("nft list table inet chajipoa")
    assert "set ssh_ban4" in table and "timeout 10m" in table
    address = lab_address(client)
    server.check_output("nft flush set inet chajipoa ssh_meter4; nft flush set inet chajipoa ssh_ban4")
    try:
        assert client.run("nc -z -w 3 common-a 22").rc == 0
        # 40 connections at once: well over the burst of 20.
        client.run("for i in $(seq 40); do nc -z -w 1 common-a 22; done")
        banned = server.check_output("nft list set inet chajipoa ssh_ban4")
        assert address in banned
        assert re.search(rf"{re.escape(address)} (timeout 10m )?expires", banned), banned
        assert client.run("nc -z -w 3 common-a 22").rc != 0
        # The ban is SSH's: another opened port still answers the banned host, and the server itself
        # still reaches its own sshd.
        assert client.run("nc -z -w 3 common-a 8081").rc == 0
        assert server.run("nc -z -w 3 127.0.0.1 22").rc == 0
    finally:
        server.check_output("nft flush set inet chajipoa ssh_ban4; nft flush set inet chajipoa ssh_meter4")
    assert client.run("nc -z -w 3 common-a 22").rc == 0


# --- Accounts and sessions -------------------------------------------------------------------------------
def login_defs(host) -> dict[str, str]:
    lines = host.file("/etc/login.defs").content_string.splitlines()
    return dict(line.split(None, 1) for line in lines if line.strip() and not line.startswith("#"))


def test_login_defs(host):
    settings = login_defs(host)
    assert settings["ENCRYPT_METHOD"] == "SHA512"
    assert settings["SHA_CRYPT_MIN_ROUNDS"] == settings["SHA_CRYPT_MAX_ROUNDS"] == "65536"
    assert settings["UMASK"] == "027"
    assert (settings["PASS_MAX_DAYS"], settings["PASS_MIN_DAYS"], settings["PASS_WARN_AGE"]) == ("365", "1", "7")


def test_new_accounts_get_the_settings(host):
    """useradd and chpasswd read login.defs: a new account's home, ageing and SHA-512 hash show it."""
    host.check_output("useradd -m probe-user")
    try:
        assert host.file("/home/probe-user").mode == 0o750
        shadow = host.check_output("getent shadow probe-user").split(":")
        assert (shadow[3], shadow[4], shadow[5]) == ("1", "365", "7")
        host.check_output("echo 'probe-user:Probe-Pass-1' | chpasswd -c SHA512")
        assert host.check_output("getent shadow probe-user").split(":")[1].startswith("$6$rounds=65536$")
    finally:
        host.run("userdel -r probe-user")


def test_administrators_ageing(server):
    # Minimum and warning as login.defs; no maximum: key-only accounts would be locked out by an expiry.
    shadow = server.check_output("getent shadow amina").split(":")
    assert shadow[1] == "*"
    assert (shadow[3], shadow[4], shadow[5]) == ("1", "", "7")


@pytest.mark.journal("ssh.service")
def test_session_tmpdir_umask_and_no_core_dumps(client, fresh_meter):
    result = client.run(f"{SSH} amina@common-a 'echo $TMPDIR; ulimit -Hc; stat -c %a $TMPDIR; umask'")
    assert result.rc == 0, result.stderr
    tmpdir, core, mode, umask = result.stdout.split()
    assert re.fullmatch(r"/tmp/user/\d+", tmpdir)
    assert core == "0"
    assert mode == "700"
    # login.defs' UMASK, through pam_umask (Debian's default session umask is 0022).
    assert umask == "0027"


def test_what_runs_through_sudo_keeps_debians_umask(client, fresh_meter):
    # Ansible's become runs every module, package install and locale-gen this way: with the session's
    # 027, root made directories and archives that services could not read.
    result = client.run(f"{SSH} amina@common-a 'umask; sudo -n sh -c umask; sudo -n -u nobody sh -c umask'")
    assert result.rc == 0, result.stderr
    assert result.stdout.split() == ["0027", "0022", "0022"]
    # Nor do cron jobs and other non-interactive sessions get the login umask.
    assert "pam_umask" not in client.file("/etc/pam.d/common-session-noninteractive").content_string
    assert "pam_umask" in client.file("/etc/pam.d/common-session").content_string


def test_core_dumps_off(host):
    limits = host.file("/etc/security/limits.d/60-chajipoa.conf").content_string
    assert re.search(r"^\*\s+hard\s+core\s+0$", limits, re.MULTILINE)
    coredump = host.check_output("systemd-analyze cat-config systemd/coredump.conf")
    assert "Storage=none" in coredump and "ProcessSizeMax=0" in coredump
    assert host.file("/etc/sysctl.d/60-chajipoa.conf").contains("^fs.suid_dumpable = 0$")


def test_su_limited_to_administrators(server):
    """pam_wheel: su, even with the right password, only for members of chajipoa-admin."""
    su = server.file("/etc/pam.d/su").content_string
    assert re.search(r"^auth +required +pam_wheel\.so use_uid group=chajipoa-admin$", su, re.MULTILINE)
    server.check_output("useradd -M probe-target && echo 'probe-target:Target-Pass-1' | chpasswd")
    try:
        for user, admitted in (("amina", True), ("robot", False)):
            # su reads the password from a terminal: script gives it one, the password typed once
            # su asks (earlier input would be flushed).
            run = server.run(f"(sleep 2; printf 'Target-Pass-1\\n') | timeout 20 runuser -u {user} --"
                             f" script -qec 'su -c \"id -un\" probe-target' /dev/null")
            became = "probe-target" in [line.strip() for line in run.stdout.splitlines()]
            assert became == admitted, (user, run.stdout, run.stderr)
    finally:
        server.run("userdel probe-target")


# --- Kernel -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("module", BLOCKED)
def test_module_refused(host, module):
    dry_run = host.run(f"modprobe -n -v {module}")
    assert dry_run.rc == 0 and dry_run.stdout.strip() == "install /bin/false", dry_run.stdout + dry_run.stderr
    assert f"blacklist {module.replace('-', '_')}" in host.check_output("modprobe --showconfig").replace("-", "_")


def test_unlisted_module_not_refused(host):
    # The control for the test above: squashfs is left loadable (its install line is not ours).
    assert "install /bin/false" not in host.run("modprobe -n -v squashfs").stdout


CIS_SYSCTL = {
    "kernel.randomize_va_space": "2", "kernel.yama.ptrace_scope": "1", "fs.suid_dumpable": "0",
    "net.ipv4.conf.all.secure_redirects": "0", "net.ipv4.conf.default.secure_redirects": "0",
    "net.ipv4.conf.all.accept_redirects": "0", "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.conf.default.log_martians": "1", "net.ipv4.icmp_ignore_bogus_error_responses": "1",
    "net.ipv6.conf.all.accept_ra": "0", "net.ipv6.conf.default.accept_ra": "0",
    "net.ipv6.conf.all.accept_source_route": "0",
}


def test_cis_kernel_settings(host):
    """Written everywhere; applied where the kernel is the host's own. In a container /proc/sys is
    read-only and the kernel is the machine's: systemd-sysctl skips itself, and the settings are the
    machine's to apply (docs/architecture.md)."""
    written = host.file("/etc/sysctl.d/60-chajipoa.conf")
    for key, value in CIS_SYSCTL.items():
        assert written.contains(f"^{re.escape(key)} = {value}$"), key
    if host.run("test -w /proc/sys/kernel/randomize_va_space").rc == 0:
        for key, value in CIS_SYSCTL.items():
            assert host.check_output(f"sysctl -n {key}") == value, key
    else:
        assert host.check_output("systemctl show systemd-sysctl -p ConditionResult --value") == "no"


# --- Audit and accounting -------------------------------------------------------------------------------
AUDIT_RULES = [
    "-w /etc/passwd -p wa -k identity", "-w /etc/shadow -p wa -k identity", "-w /etc/gshadow -p wa -k identity",
    "-w /etc/group -p wa -k identity", "-w /etc/security/opasswd -p wa -k identity",
    "-w /etc/sudoers -p wa -k scope", "-w /etc/sudoers.d -p wa -k scope",
    "-a always,exit -F arch=b64 -S adjtimex,settimeofday,clock_settime -k time-change",
    "-w /etc/localtime -p wa -k time-change",
    "-a always,exit -F arch=b64 -S init_module,finit_module,delete_module -F auid!=unset -k kernel_modules",
    "-w /etc/chajipoa -p wa -k chajipoa-secrets", "-w /etc/ssl/private -p wa -k chajipoa-secrets",
    "-w /var/lib/chajipoa-backup -p wa -k chajipoa-secrets",
]


@pytest.mark.journal("auditd.service")
def test_audit_rules(host):
    rules = host.file("/etc/audit/rules.d/60-chajipoa.rules").content_string.splitlines()
    for rule in AUDIT_RULES:
        assert rule in rules, rule
    assert host.package("auditd").is_installed
    assert host.service("auditd").is_enabled
    if capable(host, CAP_AUDIT_CONTROL):
        loaded = host.check_output("auditctl -l")
        for watch in ("-w /etc/shadow -p wa -k identity", "-w /etc/sudoers.d -p wa -k scope"):
            assert watch in loaded
    else:
        # A container lacks CAP_AUDIT_CONTROL: auditd could not run. Its unit skips itself by the
        # role's condition instead of failing (which would leave the host degraded).
        assert host.check_output("systemctl show auditd -p ConditionResult --value") == "no"
        assert host.check_output("systemctl show auditd -p ActiveState --value") == "inactive"
        assert "auditd.service" not in host.check_output("systemctl list-units --failed --plain --no-legend")


def test_process_accounting_and_sysstat(host):
    assert host.package("acct").is_installed
    if capable(host, CAP_SYS_PACCT):
        assert host.service("acct").is_running
    else:
        assert host.check_output("systemctl show acct -p ConditionResult --value") == "no"
    assert host.file("/etc/default/sysstat").contains('^ENABLED="true"$')
    assert host.service("sysstat").is_enabled
    assert host.check_output("systemctl is-active sysstat-collect.timer") == "active"


@pytest.mark.journal("acct.service")
def test_process_accounting_records_from_its_sandbox(server):
    # common-a is given CAP_SYS_PACCT (molecule.yml). Started again under the role's drop-in, as at
    # boot: a sandbox with a mount namespace of its own would leave accounting off once accton exits.
    assert capable(server, CAP_SYS_PACCT)
    server.check_output("systemctl restart acct")
    assert "chajipoa.conf" in server.check_output("systemctl show acct -p DropInPaths --value")
    probe = f"acctprobe{uuid.uuid4().hex[:5]}"
    server.check_output(f"cp /bin/true /root/{probe} && /root/{probe} && rm /root/{probe}")
    assert probe in server.check_output(f"lastcomm --command {probe}")


@pytest.mark.journal("sysstat-collect.service")
def test_sysstat_collects_from_its_sandbox(host):
    data = f"/var/log/sysstat/sa{host.check_output('date +%d')}"
    started = int(host.check_output("date +%s"))
    # After a restart record sadc needs a sample to measure from: the second run writes figures.
    for _ in range(2):
        time.sleep(1)
        host.check_output("systemctl start sysstat-collect.service")
        assert host.check_output("systemctl show sysstat-collect -p Result --value") == "success"
    records = [line.split(";") for line in host.check_output(f"sadf -d -U {data} -- -u").splitlines()
               if not line.startswith("#") and "LINUX-RESTART" not in line]
    assert records and int(records[-1][2]) >= started, records[-3:]


# Every service unit the common role configures (plugins/module_utils/systemd_sandbox.py): under its
# sandbox's limit, or where the entry says why Debian's unit runs as shipped, at the exposure recorded.
COMMON_UNITS = ["chajipoa-debsums.service", "nftables.service", "acct.service", "sysstat.service", "sysstat-collect.service",
                "sysstat-summary.service", "chrony.service", "systemd-journald.service", "ssh.service", "auditd.service",
                "unattended-upgrades.service", "apt-daily.service", "apt-daily-upgrade.service"]


@pytest.mark.parametrize("unit", COMMON_UNITS)
def test_unit_within_its_exposure_limit(host, sandbox_exposure, unit):
    exposure, limit = sandbox_exposure(host, unit)
    assert exposure <= limit, f"{unit}: exposure {exposure}, limit {limit}"


def test_journal_upload_within_its_exposure_limit(server, sandbox_exposure):
    exposure, limit = sandbox_exposure(server, "systemd-journal-upload.service")
    assert exposure <= limit, f"systemd-journal-upload.service: exposure {exposure}, limit {limit}"


@pytest.mark.journal("systemd-journald.service")
def test_journal_persistent_with_limits(host):
    config = host.check_output("systemd-analyze cat-config systemd/journald.conf")
    for setting in ("Storage=persistent", "SystemMaxUse=1G", "SystemKeepFree=2G", "MaxRetentionSec=3month"):
        assert re.search(f"^{setting}$", config, re.MULTILINE), setting
    # journald writes to /var/log/journal, not the volatile /run/log/journal.
    files = host.check_output("journalctl --header --no-pager | awk '/^File path:/ {print $3}'").split()
    assert files and all(path.startswith("/var/log/journal/") for path in files), files


def test_no_upload_without_a_log_host(client):
    # common-b names no log host (it is one): nothing uploads its journal.
    assert not client.service("systemd-journal-upload").is_enabled


@pytest.mark.journal("systemd-journal-upload.service")
def test_journal_reaches_the_log_host(server, client):
    assert server.service("systemd-journal-upload").is_enabled
    assert server.service("systemd-journal-upload").is_running
    assert "URL=http://common-b:19532" in server.check_output("systemd-analyze cat-config systemd/journal-upload.conf")
    mark = f"chajipoa-forward-test-{uuid.uuid4()}"
    server.check_output(f"logger -t chajipoa-forward-test {mark}")
    # The upload follows the journal; the receiver writes what it gets under /var/log/journal/remote.
    for _ in range(60):
        received = client.run("journalctl -D /var/log/journal/remote --no-pager -o cat -t chajipoa-forward-test")
        if mark in received.stdout:
            break
        time.sleep(1)
    else:
        pytest.fail(f"{mark} logged on common-a did not reach common-b's journal-remote within 60 s: {received.stdout[-500:]}")


# --- Package integrity ----------------------------------------------------------------------------------
METRICS = "/var/lib/prometheus/node-exporter/chajipoa_debsums.prom"


def metrics(host) -> dict[str, float]:
    text = host.file(METRICS).content_string
    return {name: float(value) for name, value in re.findall(r"^(chajipoa_\w+) (\S+)$", text, re.MULTILINE)}


def test_metrics_directory_is_searchable_by_the_services_that_write_it(host):
    # The backup (as postgres) and the node exporter (as prometheus) write and read beside the metric:
    # a parent made 0700 by the first check's sandboxed mkdir locked the backup out.
    path = METRICS.rsplit("/", 1)[0]
    assert host.run(f"runuser -u nobody -- ls {path}").rc == 0, host.check_output(f"namei -m {path}")


@pytest.mark.journal("chajipoa-debsums.service", "chajipoa-debsums.timer")
def test_debsums_timer_and_metric(host):
    assert host.service("chajipoa-debsums.timer").is_enabled
    assert host.check_output("systemctl is-active chajipoa-debsums.timer") == "active"
    assert "OnCalendar=weekly" in host.check_output("systemctl cat chajipoa-debsums.timer")
    # The first check started at install; a oneshot: start waits for the running one.
    host.check_output("systemctl start chajipoa-debsums.service")
    values = metrics(host)
    assert values["chajipoa_package_files_changed"] == 0
    assert values["chajipoa_package_files_check_success"] == 1
    assert abs(values["chajipoa_package_files_check_timestamp_seconds"] - float(host.check_output("date +%s"))) < 3600


@pytest.mark.journal("chajipoa-debsums.service")
def test_debsums_counts_a_changed_file(server):
    server.check_output("cp -p /usr/bin/less /root/less.orig && printf 'x' >> /usr/bin/less")
    try:
        server.check_output("systemctl start chajipoa-debsums.service")
        assert metrics(server)["chajipoa_package_files_changed"] == 1
        assert "/usr/bin/less" in server.check_output("journalctl -u chajipoa-debsums.service -n 20 --no-pager -o cat")
    finally:
        server.check_output("cp -p /root/less.orig /usr/bin/less && rm /root/less.orig")
    server.check_output("systemctl start chajipoa-debsums.service")
    assert metrics(server)["chajipoa_package_files_changed"] == 0


# --- Bad input -------------------------------------------------------------------------------------------
BAD = {
    "cipher with a space": ({"common_ssh_ciphers": ["aes256-ctr Match all"]}, "common_ssh_ciphers"),
    "banner with a getty escape": ({"common_login_banner": "Welcome to \\n"}, "common_login_banner"),
    "audited path relative": ({"common_audit_watch_paths": ["etc/chajipoa"]}, "common_audit_watch_paths"),
    "ban rate": ({"common_ssh_ban_rate": "10/fortnight"}, "common_ssh_ban_rate"),
    "log host with a newline": ({"common_log_host": "logs\nURL=x"}, "common_log_host"),
    "reboot window": ({"common_security_updates_reboot_window": "2-5"}, "common_security_updates_reboot_window"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_stops_before_any_change(server, run_playbook, case):
    extra, variable = BAD[case]
    before = server.check_output("sha256sum /etc/ssh/sshd_config.d/00-chajipoa.conf /etc/issue.net /etc/nftables.conf"
                                 " /etc/audit/rules.d/60-chajipoa.rules")
    run = run_playbook(SCENARIO / "converge.yml", "--limit", "common-a", "-e", json.dumps(extra))
    assert run.returncode != 0
    report = json.loads(run.stdout)
    failed = [task["task"]["name"] for play in report["plays"] for task in play["tasks"]
              if task["hosts"].get("common-a", {}).get("failed")]
    changed = [task["task"]["name"] for play in report["plays"] for task in play["tasks"]
               if task["hosts"].get("common-a", {}).get("changed")]
    assert changed == []
    assert len(failed) == 1 and variable in json.dumps(report), failed
    assert server.check_output("sha256sum /etc/ssh/sshd_config.d/00-chajipoa.conf /etc/issue.net /etc/nftables.conf"
                               " /etc/audit/rules.d/60-chajipoa.rules") == before
