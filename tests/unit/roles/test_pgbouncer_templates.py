"""The pgbouncer role's templates, rendered offline with Ansible's own templating.

The lab scenario (molecule/app) proves PgBouncer behaves in the auth query mode and
tests/integration/test_pgbouncer_managed.py in the auth file mode (a managed server); these pin what is
rendered: the [databases] lines from the playbook's wiring, the settings a reload applies apart from
the ones only a restart applies, and an auth file that holds the stats user's verifier, never its
password, and the application's login only in the auth file mode. Production's own rendering, from
its inventories, is in test_pgbouncer_production.py.
"""
from __future__ import annotations

import configparser
from typing import Any

from tests.unit.roles import rendering

PASSWORD = "mon-Secret-3"
APP_PASSWORD = 'app "Secret" 4'


def render(template: str, **overrides: Any) -> Any:
    variables = {
        **rendering.role_variables("pgbouncer"),
        "inventory_hostname": "app1",
        "private_address": "10.20.2.21",
        "groups": {"all": ["app1", "mon1"], "app": ["app1"], "monitoring": ["mon1"]},
        "hostvars": {"app1": {"private_address": "10.20.2.21"}, "mon1": {"private_address": "10.20.9.11"}},
        "ansible_facts": {"default_ipv4": {"address": "192.0.2.1"}},
        "postgres_monitoring_password": PASSWORD,
        "postgres_app_password": APP_PASSWORD,
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
    assert settings["auth_user"] == "pgbouncer_auth"
    # The certificate is the auth user's credential (pg_hba "cert").
    assert settings["server_tls_cert_file"] == settings["client_tls_cert_file"] == "/etc/pgbouncer/pgbouncer.crt"
    assert settings["server_tls_key_file"] == settings["client_tls_key_file"] == "/etc/pgbouncer/pgbouncer.key"
    assert settings["server_tls_ca_file"] == "/etc/pgbouncer/ca.crt"
    assert settings["client_tls_ca_file"] == "/etc/pgbouncer/client-ca.crt"
    assert "listen_addr" not in settings, "the listening sockets belong in listen.ini (restart, not reload)"


def test_listen_ini_holds_the_sockets_only():
    text = render("etc/pgbouncer/listen.ini.j2")
    pairs = [line.split("=", 1) for line in text.splitlines() if line and not line.startswith(";")]
    settings = {name.strip(): value.strip() for name, value in pairs}
    assert settings == {"listen_addr": "127.0.0.1,10.20.2.21", "listen_port": "6432", "unix_socket_dir": ""}


def test_the_auth_file_mode_has_no_auth_query_and_no_client_certificate_towards_the_server():
    """A managed server (RDS) has neither the auth function nor certificate logins: clients are checked
    against the auth file and PgBouncer logs in with the password listed there, verifying the server
    against pgbouncer_tls_ca_file (the RDS bundle) but presenting no certificate of its own."""
    settings = ini("etc/pgbouncer/pgbouncer.ini.j2", pgbouncer_auth_mode="file")["pgbouncer"]
    assert settings["auth_type"] == "scram-sha-256"
    assert settings["auth_file"] == "/etc/pgbouncer/userlist.txt"
    assert "auth_user" not in settings and "auth_query" not in settings
    assert settings["server_tls_sslmode"] == "verify-full"
    assert settings["server_tls_ca_file"] == "/etc/pgbouncer/ca.crt"
    assert settings["server_tls_cert_file"] == settings["server_tls_key_file"] == ""
    # Clients still get PgBouncer's own certificate, from the CA that signed it.
    assert settings["client_tls_cert_file"] == "/etc/pgbouncer/pgbouncer.crt"
    assert settings["client_tls_ca_file"] == "/etc/pgbouncer/client-ca.crt"
    assert settings["stats_users"] == "monitoring"


def entries(**overrides: Any) -> list[str]:
    return [line for line in render("etc/pgbouncer/userlist.txt.j2", **overrides).splitlines() if not line.startswith(";")]


def test_the_auth_file_holds_the_stats_users_verifier_not_its_password():
    lines = entries()
    assert len(lines) == 1
    assert lines[0].startswith('"monitoring" "SCRAM-SHA-256$4096:')
    assert PASSWORD not in lines[0]
    assert APP_PASSWORD.replace('"', '""') not in lines[0]


def test_the_auth_file_mode_lists_the_application_login_with_its_password():
    lines = entries(pgbouncer_auth_mode="file", pgbouncer_app_user="shop")
    assert lines[0].startswith('"monitoring" "SCRAM-SHA-256$4096:') and PASSWORD not in lines[0]
    # Double quotes doubled, as PgBouncer reads them back.
    assert lines[1:] == ['"shop" "app ""Secret"" 4"']


def test_the_preflight_requires_the_application_password_only_in_the_auth_file_mode():
    assert render("{{ _pgbouncer_secrets }}") == ["postgres_monitoring_password"]
    assert render("{{ _pgbouncer_secrets }}", pgbouncer_auth_mode="file") == ["postgres_monitoring_password", "postgres_app_password"]


def test_the_certificate_is_a_client_certificate_only_in_the_auth_query_mode():
    assert render("{{ _pgbouncer_tls_usages }}") == ["serverAuth", "clientAuth"]
    assert render("{{ _pgbouncer_tls_usages }}", pgbouncer_auth_mode="file") == ["serverAuth"]


def test_the_clients_ca_is_the_servers_unless_named():
    """One CA signs both in development and for a PostgreSQL of ours; a managed server's CA signs no
    certificate of ours, so production names the CA of PgBouncer's certificate apart."""
    tls = {"pgbouncer_tls_self_signed": False, "pgbouncer_tls_ca_file": "/inv/files/rds-global-bundle.pem"}
    assert render("{{ _pgbouncer_client_ca_source }}", **tls) == "/inv/files/rds-global-bundle.pem"
    assert render("{{ _pgbouncer_client_ca_source }}", **tls, pgbouncer_client_tls_ca_file="/inv/files/pki/ca.crt") == "/inv/files/pki/ca.crt"
    assert render("{{ _pgbouncer_client_ca_source }}", pgbouncer_tls_self_signed=True, pgbouncer_tls_ca_dir="/inv/credentials/pki") == (
        "/inv/credentials/pki/ca.crt")


def test_the_firewall_opens_to_app_hosts_only():
    # The monitoring host (10.20.9.11) scrapes PgBouncer's exporter on this host, never PgBouncer.
    assert render("{{ _pgbouncer_firewall_sources }}") == ["10.20.2.21"]
