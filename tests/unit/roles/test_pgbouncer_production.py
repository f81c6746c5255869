"""PgBouncer as production's inventories configure it: in front of RDS, in the auth file mode.

Rendered from the real inventories (production, and the Tanzania overlay on it) with the wiring
playbooks/app.yml applies, through ansible-playbook with no host contacted
(pgbouncer_config.yml). tests/integration/test_pgbouncer_managed.py runs this configuration against a
real PgBouncer and a PostgreSQL set up as RDS is.
"""
from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from tests.conftest import ROOT, load_yaml
from tests.unit.roles import inventory_play

PLAY = Path(__file__).with_name("pgbouncer_config.yml")
HOSTS = {"app1.prod.chajipoa.internal", "app2.prod.chajipoa.internal"}


@pytest.fixture(scope="module", params=[("production",), ("production", "tanzania")], ids=["production", "tanzania"])
def rendered(request) -> dict:
    return inventory_play.last_task_messages(PLAY, *request.param)


def settings(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(comment_prefixes=(";", "%"), interpolation=None)
    parser.read_string(text)
    return parser


def test_pgbouncer_pools_to_rds_with_the_auth_file_and_no_client_certificate(rendered):
    endpoints = load_yaml(ROOT / "inventories/production/group_vars/all/aws_endpoints.yml")["aws_endpoints"]
    assert set(rendered) == HOSTS
    for host in rendered.values():
        ini = settings(host["pgbouncer_ini"])
        assert dict(ini["databases"]) == {
            "chajipoa": f"host={endpoints['postgres']['address']} port={endpoints['postgres']['port']} dbname=chajipoa"}
        bouncer = ini["pgbouncer"]
        # RDS has no pgbouncer.get_auth (its master user cannot read pg_authid) and no cert logins.
        assert "auth_query" not in bouncer and "auth_user" not in bouncer
        assert bouncer["auth_type"] == "scram-sha-256"
        assert bouncer["server_tls_sslmode"] == "verify-full"
        assert bouncer["server_tls_cert_file"] == bouncer["server_tls_key_file"] == ""


def test_the_auth_file_lists_the_apps_login_with_the_apps_password(rendered):
    password = inventory_play.secret("postgres_app_password")
    for host in rendered.values():
        lines = [line for line in host["userlist"].splitlines() if not line.startswith(";")]
        assert lines[0].startswith('"monitoring" "SCRAM-SHA-256$4096:')
        # The app role's login (app_database_user), wired by playbooks/app.yml.
        assert lines[1:] == [f'"chajipoa" "{password}"']


def test_the_tls_files_are_the_operators(rendered):
    """PgBouncer's certificate and key per host, the CA that signed them for its clients, Amazon's
    bundle for RDS: all on the controller beside the inventory (docs/pgbouncer.md)."""
    files = ROOT / "inventories/production/files"
    for name, host in rendered.items():
        assert host["tls_cert"] == f"{files}/pki/{name}-pgbouncer.crt"
        assert host["tls_key"] == f"{files}/pki/{name}-pgbouncer.key"
        assert host["client_ca"] == f"{files}/pki/ca.crt"
        assert host["server_ca"] == f"{files}/rds-global-bundle.pem"
