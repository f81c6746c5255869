"""The backup's statements stay out of pg_stat_statements, on a real PostgreSQL 15 with the library
loaded (the postgres role loads it everywhere), so that the nightly dump does not raise the mean
statement latency PostgresQueryLatencyHigh watches.

- A dedicated backup login (a backup host dumping the server over the network): the postgres role's
  own SQL and expressions (roles/postgres/vars/main.yml, run by tasks/primary.yml: the shared probe's
  part that lists the logins with the setting, and the pending logins it leaves) find the default
  postgres_untracked_logins login without the setting, give it `pg_stat_statements.track = none`
  and find nothing left to do afterwards (a second run changes nothing).
- The backup program's run as that login, and as the superuser (the backup on the primary itself,
  which opts its own sessions out), adds no statement to pg_stat_statements, while the same row
  count from another login is counted: tracking works, the backup is left out.
"""
from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from ansible_collections.chajipoa.platform.plugins.module_utils import backup_config, backup_program
from tests.integration.test_monitoring_exporters import StatementsServer
from tests.pgserver import PostgresServer
from tests.unit.roles import rendering

BACKUP_LOGIN, BACKUP_PASSWORD = "chajipoa_backup", "backup-test-password"
APP_LOGIN, APP_PASSWORD = "chajipoa", "app-test-password"
DATABASE = "rental"


def role_sql(name: str) -> str:
    return rendering.render("postgres", "{{ " + name + " }}", rendering.role_variables("postgres"))


def pending(server: PostgresServer) -> list[str]:
    """The logins of the role's default postgres_untracked_logins that still lack the setting, as the
    role decides it from what its shared probe reads."""
    [(untracked,)] = server.execute("SELECT " + role_sql("_postgres_probe_untracked"))
    probe = {"query_result": [{"state": {"roles": {row[0]: {} for row in server.execute("SELECT rolname FROM pg_roles")},
                                         "untracked": untracked}}]}
    variables = {**rendering.role_variables("postgres"), "__postgres_probe_shared": probe}
    return rendering.render("postgres", "{{ _postgres_untracked_pending }}", variables)


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    """The server with the backup and app logins as the postgres role and docs/aws.md make them, and
    the role's ALTER ROLE applied as tasks/primary.yml does."""
    with StatementsServer() as pg:
        pg.create_database(DATABASE)
        pg.execute("CREATE EXTENSION pg_stat_statements", DATABASE)
        pg.execute("CREATE TABLE rentals AS SELECT n AS id, md5(n::text) AS note FROM generate_series(1, 500) n", DATABASE)
        pg.execute(f"CREATE ROLE {BACKUP_LOGIN} LOGIN PASSWORD '{BACKUP_PASSWORD}' IN ROLE pg_read_all_data")
        pg.execute(f"CREATE ROLE {APP_LOGIN} LOGIN PASSWORD '{APP_PASSWORD}' IN ROLE pg_read_all_data")
        assert pending(pg) == [BACKUP_LOGIN]
        for login in pending(pg):
            pg.execute(role_sql("_postgres_untrack_sql").replace("{login}", login))
        yield pg


def test_the_roles_sql_leaves_nothing_pending(server):
    assert pending(server) == []
    assert server.execute(f"SELECT rolconfig FROM pg_roles WHERE rolname = '{BACKUP_LOGIN}'") == [
        (["pg_stat_statements.track=none"],)]


def statements(server: PostgresServer) -> list[str]:
    """What pg_stat_statements holds of the table's reads (a dump's COPY, a row count)."""
    return [row[0] for row in server.execute(
        "SELECT query FROM pg_stat_statements WHERE query ~* '(copy|count).*rentals'", DATABASE)]


@pytest.mark.parametrize("login", [BACKUP_LOGIN, "superuser"])
def test_a_backup_adds_nothing_to_pg_stat_statements(server, tmp_path, monkeypatch, login):
    user, password = (BACKUP_LOGIN, BACKUP_PASSWORD) if login == BACKUP_LOGIN else (server.user, server.password)
    monkeypatch.setenv("PGPASSWORD", password)
    monkeypatch.setenv(backup_config.MANIFEST_KEY_ENV, "statements-test-manifest-key")
    config = backup_program.Config({
        "host": "test", "backup_dir": str(tmp_path / "backups"), "metrics_file": str(tmp_path / "metrics.prom"),
        "postgresql": {"databases": [DATABASE], "host": server.host, "port": server.port, "user": user,
                       "bindir": str(server.bindir)},
        "retention": {"local": {}, "s3": {}}, "verify": {"jobs": 1}})
    server.execute("SELECT pg_stat_statements_reset()", DATABASE)
    _manifest, report = backup_program.take_backup(config, "postgresql", DATABASE, "daily")
    assert report.passed, report.failure_message()
    assert statements(server) == []
    # The same read by the application's login is counted.
    with psycopg.connect(host=server.host, port=server.port, user=APP_LOGIN, password=APP_PASSWORD, dbname=DATABASE,
                         autocommit=True) as app:
        app.execute("SELECT count(*) FROM ONLY public.rentals")
    assert len(statements(server)) == 1
