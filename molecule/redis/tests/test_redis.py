"""The redis role on a primary and its replica: real servers, probed the way clients use them.

Clients connect over TLS and verify the server with the development CA, which the role also puts
on every Redis host (/etc/redis/ca.crt); there is no plain TCP port.
"""
from __future__ import annotations

import ipaddress
import os
import re
import shlex
import subprocess
import uuid
from pathlib import Path

import pytest

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
SCENARIO = Path(__file__).resolve().parent.parent

CA = "/etc/redis/ca.crt"

pytestmark = pytest.mark.journal("redis-server.service")



@pytest.fixture(scope="module")
def primary(lab_host):
    return lab_host("redis-primary")


@pytest.fixture(scope="module")
def replica(lab_host):
    return lab_host("redis-replica")


@pytest.fixture(scope="module")
def secrets(primary):
    variables = primary.ansible.get_variables()
    return {user: variables[f"redis_{user}_password"] for user in ("app", "monitoring", "replication", "admin")}


def cli(host, *command: str, user: str | None = None, password: str | None = None, server: str = "127.0.0.1",
        tls: str = f"--tls --cacert {CA}") -> str:
    """redis-cli on `host` against `server` over TLS with the CA (`tls` gives other options, "" none);
    the password travels in the environment, not argv."""
    auth = f"REDISCLI_AUTH={shlex.quote(password)} " if password else ""
    login = f"--user {user} " if user else ""
    result = host.run(f"{auth}timeout 10 redis-cli {tls} -h {server} {login}--no-auth-warning {shlex.join(command)}")
    # A refused AUTH is reported on stderr, a refused command on stdout: callers read both.
    return result.stdout + result.stderr


def task_output(run: subprocess.CompletedProcess, task: str) -> str:
    """What ansible-playbook printed for one of the role's tasks."""
    marker = f"TASK [chajipoa.platform.redis : {task}]"
    assert marker in run.stdout, run.stdout[-3000:]
    return run.stdout.split(marker, 1)[1].split("TASK [", 1)[0]


def main_pid(host) -> str:
    return host.check_output("systemctl show redis-server -p MainPID --value")


def test_redis_7_from_debian_running(host):
    assert host.package("redis-server").version.split(":")[-1].startswith("7.")
    service = host.service("redis-server")
    assert service.is_enabled and service.is_running


def test_listens_on_loopback_and_private_address_only(host, lab_address):
    address = lab_address(host)
    listening = {socket.split("//")[-1] for socket in (str(s) for s in host.socket.get_listening_sockets())}
    assert "127.0.0.1:6379" in listening
    assert f"{address}:6379" in listening
    assert "0.0.0.0:6379" not in listening and ":::6379" not in listening
    # 6379 is the TLS port and the only TCP port on the host but SSH's and Docker's resolver
    # (127.0.0.11): Redis has no plain port anywhere.
    tcp = {str(s) for s in host.socket.get_listening_sockets() if str(s).startswith("tcp")}
    assert not {s for s in tcp if not s.endswith((":6379", ":22")) and "//127.0.0.11:" not in s}, tcp
    assert host.socket("unix:///run/redis/redis-server.sock").is_listening


def test_tls_client_with_the_ca_from_the_other_host(replica, secrets):
    assert cli(replica, "PING", user="app", password=secrets["app"], server="redis-primary").strip() == "PONG"


def test_tls_client_without_the_ca_refused(replica, secrets):
    """The system's trust store does not hold the development CA: the certificate does not verify."""
    reply = cli(replica, "PING", user="app", password=secrets["app"], server="redis-primary", tls="--tls")
    assert "certificate verify failed" in reply, reply
    assert "PONG" not in reply


def test_plain_client_refused_from_the_network(replica, secrets):
    reply = cli(replica, "PING", user="app", password=secrets["app"], server="redis-primary", tls="")
    assert "PONG" not in reply, reply


def test_rdb_pulled_over_tls_as_the_backup_does(replica, secrets):
    """redis-cli --rdb as the replication user (the backup program's way), from another host, over TLS."""
    path = f"/tmp/pulled-{uuid.uuid4().hex}.rdb"
    reply = cli(replica, "--rdb", path, user="replication", password=secrets["replication"], server="redis-primary")
    assert "Transfer finished with success" in reply, reply
    assert replica.file(path).content[:5] == b"REDIS"
    replica.run(f"rm -f {path}")


def test_refuses_commands_without_auth(host, secrets):
    assert "NOAUTH" in cli(host, "PING")
    assert "NOAUTH" in cli(host, "GET", "anything")
    # The default user exists only disabled: logging in as it fails even with no password.
    assert "WRONGPASS" in cli(host, "PING", user="default", password="x")
    flags = cli(host, "ACL", "GETUSER", "default", user="admin", password=secrets["admin"]).split()
    assert "off" in flags and "on" not in flags


def test_wrong_password_refused(host):
    assert "WRONGPASS" in cli(host, "PING", user="app", password="not-the-password")


def test_app_user_reads_and_writes(primary, secrets):
    key = f"test:app:{uuid.uuid4().hex}"
    assert cli(primary, "SET", key, "karibu", user="app", password=secrets["app"]).strip() == "OK"
    assert cli(primary, "GET", key, user="app", password=secrets["app"]).strip() == "karibu"


@pytest.mark.parametrize("command", [["CONFIG", "GET", "maxmemory"], ["FLUSHALL"], ["KEYS", "*"], ["SHUTDOWN"], ["ACL", "LIST"], ["REPLICAOF", "NO", "ONE"], ["BGSAVE"]])
def test_app_user_denied_admin_and_dangerous_commands(primary, secrets, command):
    reply = cli(primary, *command, user="app", password=secrets["app"])
    assert "NOPERM" in reply, reply


def test_monitoring_user_sees_info_but_no_data(primary, secrets):
    info = cli(primary, "INFO", "server", user="monitoring", password=secrets["monitoring"])
    assert "redis_version:7." in info
    assert "NOPERM" in cli(primary, "SET", "test:monitoring", "x", user="monitoring", password=secrets["monitoring"])
    assert "NOPERM" in cli(primary, "FLUSHALL", user="monitoring", password=secrets["monitoring"])


def test_settings_in_effect(primary, secrets):
    def config(name: str) -> str:
        return cli(primary, "CONFIG", "GET", name, user="admin", password=secrets["admin"]).splitlines()[1]

    assert config("maxmemory") == str(64 * 1024 * 1024)
    assert config("maxmemory-policy") == "volatile-lru"
    assert config("appendonly") == "yes"
    assert config("appendfsync") == "everysec"
    assert config("save") == "3600 1 300 100 60 10000"
    assert config("protected-mode") == "yes"


def test_key_survives_restart(primary, secrets):
    key, value = f"test:durable:{uuid.uuid4().hex}", uuid.uuid4().hex
    assert cli(primary, "SET", key, value, user="app", password=secrets["app"]).strip() == "OK"
    before = main_pid(primary)
    primary.check_output("systemctl restart redis-server")
    assert main_pid(primary) != before
    # Type=notify: systemctl returns once Redis has loaded its data and accepts connections.
    assert cli(primary, "GET", key, user="app", password=secrets["app"]).strip() == value


def test_replica_receives_writes_and_refuses_its_own(primary, replica, secrets):
    key, value = f"test:replicated:{uuid.uuid4().hex}", uuid.uuid4().hex
    assert cli(primary, "SET", key, value, user="app", password=secrets["app"]).strip() == "OK"
    # WAIT blocks until one replica acknowledged the write (or 10 s passed): a condition, not a sleep.
    acknowledged = cli(primary, "WAIT", "1", "10000", user="app", password=secrets["app"]).strip()
    assert acknowledged == "1", cli(replica, "INFO", "replication", user="monitoring", password=secrets["monitoring"])
    assert cli(replica, "GET", key, user="app", password=secrets["app"]).strip() == value
    assert "READONLY" in cli(replica, "SET", key, "changed", user="app", password=secrets["app"])


def test_replica_links_to_primary_as_replication_user(primary, replica, secrets, lab_address):
    info = cli(replica, "INFO", "replication", user="monitoring", password=secrets["monitoring"])
    assert "role:slave" in info and "master_link_status:up" in info
    assert f"master_host:{lab_address(primary)}" in info
    clients = cli(primary, "CLIENT", "LIST", "TYPE", "replica", user="admin", password=secrets["admin"])
    assert "user=replication" in clients
    # The primary has no plain port, so the link is TLS; the replica is told to use it.
    assert cli(primary, "CONFIG", "GET", "port", user="admin", password=secrets["admin"]).split() == ["port", "0"]
    assert cli(replica, "CONFIG", "GET", "tls-replication", user="admin", password=secrets["admin"]).split() == ["tls-replication", "yes"]
    # The replication user can do nothing but replicate.
    assert "NOPERM" in cli(primary, "GET", "x", user="replication", password=secrets["replication"])


@pytest.mark.journal("nftables.service")
def test_reachable_from_the_other_host_through_the_firewall(primary, replica, secrets, lab_address):
    for client, server in ((replica, "redis-primary"), (primary, "redis-replica")):
        assert cli(client, "PING", user="app", password=secrets["app"], server=server).strip() == "PONG"
    ruleset = primary.check_output("nft list table inet chajipoa")
    assert 'tcp dport 6379 accept comment "redis"' in ruleset
    # The firewall merges neighbouring sources into networks (192.168.160.2/31), so the replica's
    # address must be inside one of the redis rule's sources rather than spelt out.
    sources = [ipaddress.ip_network(source, strict=False)
               for line in ruleset.splitlines() if 'comment "redis"' in line and "saddr" in line
               for source in re.findall(r"[0-9a-f.:]+(?:/\d+)?", line.split("saddr", 1)[1].split("tcp", 1)[0])
               if any(char.isdigit() for char in source)]
    assert any(ipaddress.ip_address(lab_address(replica)) in network for network in sources)


def test_acl_change_applied_without_restart(primary, replica, secrets):
    """An inventory change to the users reaches Redis through ACL LOAD: the server keeps running."""
    before = main_pid(primary)
    run = subprocess.run(
        ["ansible-playbook", "-i", INVENTORY, str(SCENARIO / "acl_change.yml")],
        capture_output=True, text=True, check=False, env=os.environ,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "changed: [redis-primary]" in task_output(run, "Load the ACL file into Redis where its users differ")
    assert cli(primary, "GET", "report:x", user="reporting", password="molecule-reporting-secret").strip() == ""
    assert "NOPERM" in cli(primary, "SET", "report:x", "1", user="reporting", password="molecule-reporting-secret")
    assert main_pid(primary) == before


def converge_redis(*extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ansible-playbook", "-i", INVENTORY, str(SCENARIO / "rotate.yml"), *extra],
        capture_output=True, text=True, check=False, env=os.environ,
    )


def changed_count(run: subprocess.CompletedProcess) -> int:
    return sum(int(word.split("=")[1]) for word in run.stdout.split() if word.startswith("changed="))


def test_password_rotation_converges_and_reruns_unchanged(primary, replica, secrets):
    """Rotate the admin and the app passwords: one run applies both, a rerun changes nothing."""
    new = {"admin": "rotated-admin-" + uuid.uuid4().hex, "app": "rotated-app-" + uuid.uuid4().hex}
    rotated = ["-e", f"redis_admin_password={new['admin']}", "-e", f"redis_app_password={new['app']}"]
    try:
        first = converge_redis(*rotated)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        for host in (primary, replica):
            for user in ("admin", "app"):
                assert "WRONGPASS" in cli(host, "PING", user=user, password=secrets[user]), f"old {user} password still accepted"
                assert cli(host, "PING", user=user, password=new[user]).strip() == "PONG", f"new {user} password refused"
        again = converge_redis(*rotated)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert changed_count(again) == 0, again.stdout[-3000:]
    finally:
        restored = converge_redis()
    assert restored.returncode == 0, restored.stdout[-3000:] + restored.stderr[-3000:]
    assert cli(primary, "PING", user="admin", password=secrets["admin"]).strip() == "PONG"


def test_server_drift_from_an_unchanged_file_is_converged(primary, secrets):
    """ACLs changed on the server behind the file's back (or a load a failed run lost) are put back."""
    admin = {"user": "admin", "password": secrets["admin"]}
    assert cli(primary, "ACL", "SETUSER", "app", f">drifted-{uuid.uuid4().hex}", "-@all", **admin).strip() == "OK"
    assert cli(primary, "ACL", "SETUSER", "intruder", "on", ">intruder-secret", "+@all", "~*", **admin).strip() == "OK"
    run = converge_redis()
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "intruder" not in cli(primary, "ACL", "USERS", **admin)
    key = f"test:drift:{uuid.uuid4().hex}"
    assert cli(primary, "SET", key, "1", user="app", password=secrets["app"]).strip() == "OK"
    assert changed_count(converge_redis()) == 0


# Debian's unit with the role's drop-in, within its exposure limit (plugins/module_utils/systemd_sandbox.py).
@pytest.mark.parametrize("name", ["redis-primary", "redis-replica"])
def test_unit_within_its_exposure_limit(lab_host, sandbox_exposure, name):
    exposure, limit = sandbox_exposure(lab_host(name), "redis-server.service")
    assert exposure <= limit, f"redis-server.service on {name}: exposure {exposure}, limit {limit}"
