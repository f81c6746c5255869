"""The redis role on a primary and its replica: real servers, probed the way clients use them."""
from __future__ import annotations

import os
import shlex
import subprocess
import uuid
from pathlib import Path

import pytest

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
SCENARIO = Path(__file__).resolve().parent.parent

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


def cli(host, *command: str, user: str | None = None, password: str | None = None, server: str = "127.0.0.1") -> str:
    """redis-cli on `host` against `server`; the password travels in the environment, not argv."""
    auth = f"REDISCLI_AUTH={shlex.quote(password)} " if password else ""
    login = f"--user {user} " if user else ""
    result = host.run(f"{auth}redis-cli -h {server} {login}--no-auth-warning {shlex.join(command)}")
    # A refused AUTH is reported on stderr, a refused command on stdout: callers read both.
    return result.stdout + result.stderr


def main_pid(host) -> str:
    return host.check_output("systemctl show redis-server -p MainPID --value")


def test_redis_7_from_debian_running(host):
    assert host.package("redis-server").version.split(":")[-1].startswith("7.")
    service = host.service("redis-server")
    assert service.is_enabled and service.is_running


def test_listens_on_loopback_and_private_address_only(host):
    address = host.interface("eth0").addresses[0]
    listening = {socket.split("//")[-1] for socket in (str(s) for s in host.socket.get_listening_sockets())}
    assert "127.0.0.1:6379" in listening
    assert f"{address}:6379" in listening
    assert "0.0.0.0:6379" not in listening and ":::6379" not in listening


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


def test_replica_links_to_primary_as_replication_user(primary, replica, secrets):
    info = cli(replica, "INFO", "replication", user="monitoring", password=secrets["monitoring"])
    assert "role:slave" in info and "master_link_status:up" in info
    assert f"master_host:{primary.interface('eth0').addresses[0]}" in info
    clients = cli(primary, "CLIENT", "LIST", "TYPE", "replica", user="admin", password=secrets["admin"])
    assert "user=replication" in clients
    # The replication user can do nothing but replicate.
    assert "NOPERM" in cli(primary, "GET", "x", user="replication", password=secrets["replication"])


@pytest.mark.journal("nftables.service")
def test_reachable_from_the_other_host_through_the_firewall(primary, replica, secrets):
    for client, server in ((replica, "redis-primary"), (primary, "redis-replica")):
        assert cli(client, "PING", user="app", password=secrets["app"], server=server).strip() == "PONG"
    ruleset = primary.check_output("nft list table inet chajipoa")
    assert 'tcp dport 6379 accept comment "redis"' in ruleset
    assert replica.interface("eth0").addresses[0] in ruleset


def test_acl_change_applied_without_restart(primary, replica, secrets):
    """An inventory change to the users reaches Redis through ACL LOAD: the server keeps running."""
    before = main_pid(primary)
    run = subprocess.run(
        ["ansible-playbook", "-i", INVENTORY, str(SCENARIO / "acl_change.yml")],
        capture_output=True, text=True, check=False, env=os.environ,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "RUNNING HANDLER [chajipoa.platform.redis : Load redis ACLs]" in run.stdout
    assert cli(primary, "GET", "report:x", user="reporting", password="molecule-reporting-secret").strip() == ""
    assert "NOPERM" in cli(primary, "SET", "report:x", "1", user="reporting", password="molecule-reporting-secret")
    assert main_pid(primary) == before
