"""The mongodb role's templates and interface, rendered offline (no MongoDB needed).

MongoDB's repository is unreachable from the project's machines, so its molecule scenario skips;
these tests are what runs everywhere: mongod.conf and the apt source rendered with Ansible's own
templating for a group of one and of three hosts, and the argument specification against the
defaults.
"""
from __future__ import annotations

from typing import Any

import pytest
import yaml
from tests.conftest import role_options
from tests.unit.roles import rendering

SECRETS = {"mongodb_admin_password", "mongodb_app_password", "mongodb_backup_password", "mongodb_monitoring_password",
           "mongodb_keyfile"}


def render(template: str, hosts: list[str], host: str | None = None, memtotal_mb: int = 8192,
           private_addresses: bool = True, **overrides: Any) -> Any:
    """Render a role template (or an expression) the way Ansible does, for `host` in group mongodb.

    Every host has a private_address (10.20.3.11, .12, ...) or, with private_addresses=False,
    only gathered facts whose default route address is 192.0.2.11, .12, ...
    """
    host = host or hosts[0]
    hostvars = {
        name: {"private_address": f"10.20.3.{index + 11}"} if private_addresses
        else {"ansible_facts": {"default_ipv4": {"address": f"192.0.2.{index + 11}"}}}
        for index, name in enumerate(hosts)
    }
    facts = {"memtotal_mb": memtotal_mb, "distribution_release": "bookworm",
             "default_ipv4": {"address": f"192.0.2.{hosts.index(host) + 11}"}}
    variables = {
        **rendering.role_variables("mongodb"),
        **{key: value for key, value in hostvars[host].items() if key != "ansible_facts"},
        "inventory_hostname": host,
        "groups": {"all": hosts, "mongodb": hosts},
        "hostvars": hostvars,
        "ansible_facts": facts,
        **{name: "unit-test-secret" for name in SECRETS},
        **overrides,
    }
    return rendering.render("mongodb", template, variables)


def mongod_conf(hosts: list[str], **kwargs: Any) -> dict:
    text = render("etc/mongod.conf.j2", hosts, **kwargs)
    assert text.startswith("#\n# Ansible managed\n#\n")
    return yaml.safe_load(text)


@pytest.mark.parametrize("hosts", [["mongo1"], ["mongo1", "mongo2", "mongo3"]], ids=["one host", "three hosts"])
def test_security_and_replica_set_on_every_member(hosts):
    for index, host in enumerate(hosts):
        conf = mongod_conf(hosts, host=host)
        assert conf["net"]["port"] == 27017 and conf["net"]["bindIp"] == f"127.0.0.1,10.20.3.{index + 11}"
        assert conf["security"] == {"authorization": "enabled", "keyFile": "/etc/mongodb/keyfile"}
        assert conf["replication"] == {"replSetName": "rs0"}
        assert conf["storage"]["dbPath"] == "/var/lib/mongodb"
        assert "systemLog" not in conf  # the journal keeps the log


def test_tls_required_with_the_member_certificate_and_the_ca():
    conf = mongod_conf(["mongo1", "mongo2", "mongo3"], host="mongo2")
    assert conf["net"]["tls"] == {
        "mode": "requireTLS",
        # Key and certificate in one file (the pki role's combined PEM), as MongoDB wants them.
        "certificateKeyFile": "/etc/mongodb/mongod.pem",
        "CAFile": "/etc/mongodb/ca.crt",
        # Clients log in with passwords; no client certificate is asked for.
        "allowConnectionsWithoutCertificates": True,
        "disabledProtocols": "TLS1_0,TLS1_1",
    }


def test_tls_mode_and_off():
    assert mongod_conf(["mongo1"], mongodb_tls_mode="preferTLS")["net"]["tls"]["mode"] == "preferTLS"
    assert "tls" not in mongod_conf(["mongo1"], mongodb_tls_enabled=False)["net"]


@pytest.mark.parametrize(
    ("memtotal_mb", "cache_gb"),
    [(1024, 0.25), (2048, 0.5), (4096, 1.5), (8192, 3.5), (16000, 7.31), (65536, 31.5)],
)
def test_cache_size_from_memory(memtotal_mb, cache_gb):
    conf = mongod_conf(["mongo1"], memtotal_mb=memtotal_mb)
    assert conf["storage"]["wiredTiger"]["engineConfig"]["cacheSizeGB"] == cache_gb


def test_cache_size_from_the_share_of_memory_given_to_mongod():
    conf = mongod_conf(["mongo1"], memtotal_mb=65536, mongodb_memory_mb=3072)
    assert conf["storage"]["wiredTiger"]["engineConfig"]["cacheSizeGB"] == 1.0


def test_cache_size_overridden():
    conf = mongod_conf(["mongo1"], mongodb_wiredtiger_cache_size_gb=2.25)
    assert conf["storage"]["wiredTiger"]["engineConfig"]["cacheSizeGB"] == 2.25


def test_without_private_address_the_default_route_address_is_used():
    hosts = ["mongo1", "mongo2", "mongo3"]
    conf = mongod_conf(hosts, host="mongo2", private_addresses=False)
    assert conf["net"]["bindIp"] == "127.0.0.1,192.0.2.12"
    members = render("{{ _mongodb_replica_members }}", hosts, private_addresses=False)
    assert [member["host"] for member in members] == ["192.0.2.11:27017", "192.0.2.12:27017", "192.0.2.13:27017"]


def test_replica_set_name_and_set_parameters():
    conf = mongod_conf(["mongo1", "mongo2", "mongo3"], mongodb_replica_set="chajipoa",
                       mongodb_set_parameters={"diagnosticDataCollectionEnabled": False, "maxTransactionLockRequestTimeoutMillis": 20})
    assert conf["replication"]["replSetName"] == "chajipoa"
    assert conf["setParameter"] == {"diagnosticDataCollectionEnabled": False, "maxTransactionLockRequestTimeoutMillis": 20}


def test_apt_source_default_and_mirror():
    default = render("etc/apt/sources.list.d/mongodb-org.sources.j2", ["mongo1"])
    assert "URIs: https://repo.mongodb.org/apt/debian\n" in default
    assert "Suites: bookworm/mongodb-org/7.0\n" in default
    assert "Signed-By: /etc/apt/keyrings/mongodb-server-7.0.asc\n" in default
    mirror = render("etc/apt/sources.list.d/mongodb-org.sources.j2", ["mongo1"],
                    mongodb_apt_repository_url="https://mirror.example.net/mongodb/apt/debian")
    assert "URIs: https://mirror.example.net/mongodb/apt/debian\n" in mirror


@pytest.mark.parametrize(
    ("hosts", "members"),
    [(["mongo1"], ["10.20.3.11:27017"]),
     (["mongo1", "mongo2", "mongo3"], ["10.20.3.11:27017", "10.20.3.12:27017", "10.20.3.13:27017"])],
    ids=["one host", "three hosts"],
)
def test_replica_set_members_and_firewall_sources(hosts, members):
    # The first member initiates the set and is preferred as primary.
    assert render("{{ _mongodb_replica_members }}", hosts) == [
        {"host": member, "priority": 2 if index == 0 else 1} for index, member in enumerate(members)]
    assert render("{{ _mongodb_primary }}", hosts) == "mongo1"
    assert render("{{ _mongodb_firewall_sources }}", hosts) == [member.split(":")[0] for member in members]


# Keys, types and descriptions against defaults/main.yml: tests/unit/test_role_argument_specs.py.
def test_secrets_required_and_never_logged():
    options = role_options("mongodb")
    assert {name for name, option in options.items() if option.get("required")} == SECRETS
    assert {name for name, option in options.items() if option.get("no_log")} == SECRETS | {"mongodb_uri"}
