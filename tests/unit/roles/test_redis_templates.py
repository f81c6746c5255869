"""The redis role's templates and interface, rendered offline with Ansible's own templating.

The lab scenario (molecule/redis) proves the server behaves; these pin what is rendered: the
ACL file Redis parses strictly, the replica's settings, the container-only unit relaxation.
"""
from __future__ import annotations

import base64
import importlib.util
import hashlib
from typing import Any

import pytest
from tests.conftest import role_options
from tests.unit.roles import rendering

SECRETS = {"redis_app_password", "redis_replication_password", "redis_monitoring_password"}
HOSTS = ["cache1", "cache2"]


def render(template: str, host: str = "cache1", **overrides: Any) -> Any:
    """Render a role template (or an expression) for `host` of group redis, as Ansible does."""
    hostvars = {name: {"private_address": f"10.20.2.{index + 11}"} for index, name in enumerate(HOSTS)}
    hostvars["cache2"]["redis_replica_of"] = "cache1"
    variables = {
        **rendering.role_variables("redis"),
        **hostvars[host],
        "inventory_hostname": host,
        "groups": {"all": HOSTS + ["api1"], "redis": HOSTS, "app": ["api1"]},
        "hostvars": {**hostvars, "api1": {"private_address": "10.20.4.11"}},
        "ansible_facts": {"default_ipv4": {"address": "192.0.2.1"}},
        **{name: f"{name}-value" for name in SECRETS},
        **overrides,
    }
    return rendering.render("redis", template, variables)


def directives(text: str) -> dict[str, str]:
    lines = [line.split(" ", 1) for line in text.splitlines() if line and not line.startswith("#")]
    return dict(lines)


def test_primary_conf():
    text = render("etc/redis/redis.conf.j2")
    assert text.startswith("#\n# Ansible managed\n#\n")
    conf = directives(text)
    assert conf["bind"] == "127.0.0.1 -::1 10.20.2.11"
    assert conf["protected-mode"] == "yes"
    assert conf["aclfile"] == "/etc/redis/users.acl"
    assert conf["maxmemory"] == "256mb" and conf["maxmemory-policy"] == "volatile-lru"
    assert conf["save"] == '"3600 1 300 100 60 10000"'
    assert conf["appendonly"] == "yes" and conf["appendfsync"] == "everysec"
    assert conf["logfile"] == '""' and conf["supervised"] == "systemd"
    assert "replicaof" not in conf
    assert conf["masteruser"] == "replication"


def test_tls_port_only_and_replication_over_tls():
    conf = directives(render("etc/redis/redis.conf.j2"))
    assert conf["port"] == "0"  # no plain TCP port
    assert conf["tls-port"] == "6379"
    assert conf["tls-cert-file"] == "/etc/redis/redis.crt"
    assert conf["tls-key-file"] == "/etc/redis/redis.key"
    assert conf["tls-ca-cert-file"] == "/etc/redis/ca.crt"
    assert conf["tls-auth-clients"] == "optional"
    assert conf["tls-replication"] == "yes"
    assert conf["unixsocket"] == "/run/redis/redis-server.sock" and conf["unixsocketperm"] == "700"


def test_without_tls_the_plain_port_and_no_tls_directive():
    conf = directives(render("etc/redis/redis.conf.j2", redis_tls_enabled=False, redis_port=6390))
    assert conf["port"] == "6390"
    assert not [key for key in conf if key.startswith("tls-")]
    assert conf["unixsocket"] == "/run/redis/redis-server.sock"


def test_replica_conf_points_at_the_primary():
    conf = directives(render("etc/redis/redis.conf.j2", host="cache2"))
    assert conf["replicaof"] == "10.20.2.11 6379"
    assert conf["masteruser"] == "replication"
    assert conf["masterauth"] == '"redis_replication_password-value"'
    assert conf["replica-read-only"] == "yes"
    assert conf["bind"] == "127.0.0.1 -::1 10.20.2.12"


def test_masterauth_quoted_for_redis():
    conf = directives(render("etc/redis/redis.conf.j2", redis_replication_password='a"b\\c'))
    assert conf["masterauth"] == '"a\\"b\\\\c"'


def test_snapshots_off_and_extra_settings():
    conf = directives(render("etc/redis/redis.conf.j2", redis_save=[], redis_appendonly=False,
                             redis_config_extra={"latency-monitor-threshold": 100}))
    assert conf["save"] == '""' and conf["appendonly"] == "no"
    assert conf["latency-monitor-threshold"] == "100"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_acl_file_parsable_by_redis_and_default_user_off():
    lines = render("etc/redis/users.acl.j2").splitlines()
    # Redis rejects any line not starting with "user": no header, no comments.
    assert lines and all(line.startswith("user ") for line in lines if line.strip())
    assert lines[0] == "user default off resetpass resetkeys resetchannels -@all"
    assert "nopass" not in lines[0]  # protected mode would then refuse every remote client


LOCAL_SECRET = {"content": base64.b64encode(b"host-local-secret\n").decode()}


def test_acl_users_hashed_and_scoped():
    text = render("etc/redis/users.acl.j2", __redis_converge_secret=LOCAL_SECRET)
    users = {line.split()[1]: line for line in text.splitlines() if line.startswith("user ")}
    assert set(users) == {"default", "chajipoa-converge", "app", "monitoring", "replication"}
    # The role's own login, whose secret the host made: it reads and loads the ACLs, nothing else.
    assert users["chajipoa-converge"] == f"user chajipoa-converge reset on #{sha256('host-local-secret')} -@all +acl|list +acl|load"
    for name, secret in (("app", "redis_app_password"), ("monitoring", "redis_monitoring_password"),
                         ("replication", "redis_replication_password")):
        assert f" on #{sha256(secret + '-value')} " in users[name]
        assert f"{secret}-value" not in text
    assert users["app"].endswith("~* &* +@all -@admin -@dangerous")
    # +sync and +info: the backup role pulls RDB snapshots as this user (redis-cli --rdb).
    assert users["replication"].endswith("-@all +psync +sync +replconf +ping +info")
    assert "+info" in users["monitoring"] and "~" not in users["monitoring"]


def test_acl_admin_only_with_its_password_and_inventory_users_appended():
    without = render("etc/redis/users.acl.j2")
    assert "user admin " not in without
    text = render("etc/redis/users.acl.j2", redis_admin_password="admin-secret", redis_acl_users=[
        {"name": "reporting", "password": "reporting-secret", "rules": "~report:* -@all +@read"},
        {"name": "retired", "password": "retired-secret", "rules": "-@all", "enabled": False},
    ])
    lines = text.splitlines()
    assert f"user admin reset on #{sha256('admin-secret')} ~* &* +@all" in lines
    assert f"user reporting reset on #{sha256('reporting-secret')} ~report:* -@all +@read" in lines
    assert f"user retired reset off #{sha256('retired-secret')} -@all" in lines


@pytest.mark.parametrize("relaxed", [False, True])
def test_unit_drop_in_relaxes_only_private_users_and_only_when_asked(relaxed):
    text = render("etc/systemd/system/redis-server.service.d/chajipoa.conf.j2", redis_systemd_relax_sandbox=relaxed,
                  redis_systemd_sandbox=False)
    settings = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert settings == (["[Service]", "PrivateUsers=false"] if relaxed else ["[Service]"])


def test_unit_drop_in_tightens_debians_unit_but_keeps_its_umask():
    text = render("etc/systemd/system/redis-server.service.d/chajipoa.conf.j2")
    settings = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert {"ProtectSystem=strict", "CapabilityBoundingSet=", "PrivateMounts=yes", "KeyringMode=private"} <= set(settings)
    assert not [line for line in settings if line.startswith(("UMask=", "PrivateUsers="))]


def test_firewall_sources_are_the_groups_private_addresses():
    assert render("{{ _redis_firewall_sources }}") == ["10.20.2.11", "10.20.2.12", "10.20.4.11"]
    assert render("{{ _redis_firewall_sources }}", redis_firewall_sources_extra=["10.9.0.0/16"])[-1] == "10.9.0.0/16"


# Keys, types and descriptions against defaults/main.yml: tests/unit/test_role_argument_specs.py.
def test_secrets_required_and_never_logged():
    options = role_options("redis")
    assert {name for name, option in options.items() if option.get("required")} == SECRETS
    assert {name for name, option in options.items() if option.get("no_log")} == SECRETS | {"redis_admin_password"}
    assert options["redis_acl_users"]["options"]["password"]["no_log"] is True


def _redis_state():
    """roles/redis/files/redis_state.py, the script the role runs on Redis hosts, as a module."""
    path = rendering.ROLES / "redis" / "files" / "redis_state.py"
    spec = importlib.util.spec_from_file_location("redis_state", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_acl_comparison_ignores_the_order_redis_prints_commands_in():
    """Two servers holding the same user print its single commands in their own hash order."""
    canonical = _redis_state().canonical
    one = canonical("user m on sanitize-payload #ab resetchannels -@all +@connection +get -quit +info")
    other = canonical("user m on sanitize-payload #ab resetchannels -@all +@connection +info +get -quit")
    assert one == other


@pytest.mark.parametrize(
    "changed",
    [
        "user m off sanitize-payload #ab resetchannels -@all +@connection +get -quit +info",  # disabled
        "user m on sanitize-payload #cd resetchannels -@all +@connection +get -quit +info",  # new password
        "user m on sanitize-payload #ab #cd resetchannels -@all +@connection +get -quit +info",  # extra password
        "user m on sanitize-payload #ab resetchannels +@connection -@all +get -quit +info",  # categories reordered
        "user m on sanitize-payload #ab ~* resetchannels -@all +@connection +get -quit +info",  # keys
        "user m on sanitize-payload #ab resetchannels -@all +@connection +get +quit +info",  # a command allowed
    ],
    ids=["flag", "password", "second-password", "category-order", "keys", "command"],
)
def test_acl_comparison_sees_every_other_difference(changed):
    canonical = _redis_state().canonical
    assert canonical("user m on sanitize-payload #ab resetchannels -@all +@connection +get -quit +info") != canonical(changed)
