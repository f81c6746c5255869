"""The pgbouncer role's templates, rendered offline with Ansible's own templating.

The lab scenario (molecule/pgbouncer) proves PgBouncer behaves; these pin what is rendered: the
[databases] lines from the playbook's wiring, the settings a reload applies apart from the ones only
a restart applies, and an auth file that holds a verifier, never a password.
"""
from __future__ import annotations

import configparser
from typing import Any

from tests.unit.roles import rendering

PASSWORD = "mon-Secret-3"


def render(template: str, **overrides: Any) -> Any:
    variables = {
        **rendering.role_variables("pgbouncer"),
        "inventory_hostname": "app1",
        "private_address": "10.20.2.21",
        "groups": {"all": ["app1", "mon1"], "app": ["app1"], "monitoring": ["mon1"]},
        "hostvars": {"app1": {"private_address": "10.20.2.21"}, "mon1": {"private_address": "10.20.9.11"}},
        "ansible_facts": {"default_ipv4": {"address": "192.0.2.1"}},
        "postgres_monitoring_password": PASSWORD,
        "pgbouncer_databases": [{"name": "chajipoa", "host": "10.20.1.11"},
                                {"name": "reports", "host": "db.lan", "port": 5433, "dbname": "reporting", "pool_size": 3}],
        **overrides,
    }
    return rendering.render("pgbouncer", template, variables)


def ini(template: str, **overrides: Any) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(comment_prefixes=(";", "%"), interpolation=None)
    parser.read_string(render(template, **overrides))
    return parser


def test_databases_from_the_wiring():
    databases = dict(ini("etc/pgbouncer/pgbouncer.ini.j2")["databases"])
    assert databases == {"chajipoa": "host=10.20.1.11 port=5432 dbname=chajipoa",
                         "reports": "host=db.lan port=5433 dbname=reporting pool_size=3"}


def test_transaction_pooling_scram_with_the_auth_query_and_tls_both_ways():
    settings = ini("etc/pgbouncer/pgbouncer.ini.j2")["pgbouncer"]
    assert settings["pool_mode"] == "transaction"
    assert settings["auth_type"] == "scram-sha-256"
    assert settings["auth_query"] == 'SELECT usename, passwd FROM "pgbouncer".get_auth($1)'
    assert settings["client_tls_sslmode"] == "require"
    assert settings["server_tls_sslmode"] == "verify-full"
    assert settings["server_tls_cert_file"] == settings["client_tls_cert_file"] == "/etc/pgbouncer/pgbouncer.crt"
    assert "listen_addr" not in settings, "the listening sockets belong in listen.ini (restart, not reload)"


def test_listen_ini_holds_the_sockets_only():
    text = render("etc/pgbouncer/listen.ini.j2")
    pairs = [line.split("=", 1) for line in text.splitlines() if line and not line.startswith(";")]
    settings = {name.strip(): value.strip() for name, value in pairs}
    assert settings == {"listen_addr": "127.0.0.1,10.20.2.21", "listen_port": "6432", "unix_socket_dir": ""}


def test_the_auth_file_holds_the_stats_users_verifier_not_its_password():
    lines = [line for line in render("etc/pgbouncer/userlist.txt.j2").splitlines() if not line.startswith(";")]
    assert len(lines) == 1
    assert lines[0].startswith('"monitoring" "SCRAM-SHA-256$4096:')
    assert PASSWORD not in lines[0]


def test_the_firewall_opens_to_app_hosts_only():
    # The monitoring host (10.20.9.11) scrapes PgBouncer's exporter on this host, never PgBouncer.
    assert render("{{ _pgbouncer_firewall_sources }}") == ["10.20.2.21"]
