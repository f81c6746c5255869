"""PgBouncer's auth file mode against a PostgreSQL set up as RDS is: Debian's real PgBouncer 1.18 with
the configuration the pgbouncer role's templates render, in front of a real PostgreSQL 15.

The server stands in for RDS in what matters here: TLS only, with a CA of its own (Amazon's bundle in
production), SCRAM password logins and nothing else in pg_hba (no `cert` method), no
pgbouncer.get_auth function, and the logins docs/aws.md has the operator create, run from that page.
PgBouncer's certificate comes from another CA (the operator's internal one), which its clients verify
it with. molecule/app proves the auth query mode against a PostgreSQL of ours.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ansible_collections.chajipoa.platform.plugins.module_utils.pg_scratch import as_server_user, give_to_server_user
from tests.conftest import ROOT
from tests.integration.conftest import require_tools
from tests.pgserver import PostgresServer
from tests.ports import free_port
from tests.redisserver import make_tls_files
from tests.unit.roles import rendering

# A double quote and a space: the auth file's quoting is exercised, as PgBouncer reads it.
PASSWORDS = {"postgres_app_password": 'app "pass" word-0123456789', "backup_postgres_password": "backup-0123456789",
             "postgres_monitoring_password": "monitoring-0123456789"}
APP_USER = "chajipoa"
# RDS: TLS only (rds.force_ssl), passwords only. A second loopback address serves the same server
# under an address its certificate does not name.
RDS_HBA = ("local all all peer\n"
           "hostssl all all 127.0.0.1/32 scram-sha-256\n"
           "hostssl all all 127.0.0.2/32 scram-sha-256\n")


def operator_script() -> str:
    """The psql script docs/aws.md has the operator run once on RDS as its master user, with the
    test's passwords in place of the placeholders."""
    text = (ROOT / "docs/aws.md").read_text()
    section = text[text.index("## The logins on the managed servers"):]
    block = re.search(r"```sql\n(.*?)```", section, re.S).group(1)
    statements = "\n".join(line for line in block.splitlines() if not line.startswith("--"))
    assert "get_auth" not in statements and "pgbouncer" not in statements.lower(), "RDS cannot hold the auth function or its login"

    def literal(match: re.Match) -> str:
        return "'" + PASSWORDS[match.group(1)].replace("'", "''") + "'"
    return re.sub(r"'<([a-z_]+)>'", literal, block)


class Bouncer:
    """PgBouncer on a free loopback port with the role's rendered files in a directory of its own."""

    def __init__(self, directory: Path, server: PostgresServer, certificates: dict[str, Path], **overrides):
        self.directory, self.port = directory, free_port()
        self.variables = {
            **rendering.role_variables("pgbouncer"),
            # The role's paths, under the test's directory in place of /etc/pgbouncer.
            "_pgbouncer_conf_dir": str(directory),
            "pgbouncer_listen_addresses": ["127.0.0.1"],
            "pgbouncer_port": self.port,
            "pgbouncer_databases": [{"name": "chajipoa", "host": "127.0.0.1", "port": server.port},
                                    {"name": "misnamed", "host": "127.0.0.2", "port": server.port, "dbname": "chajipoa"}],
            "pgbouncer_app_user": APP_USER,
            **PASSWORDS,
            **overrides,
        }
        # Where the role's configure step puts each file (the pki role's certificate, key and server CA,
        # the clients' CA), read from the role, then the templates it renders.
        for variable, source in certificates.items():
            shutil.copyfile(source, self.path(variable))
        for variable, template in (("_pgbouncer_conf", "pgbouncer.ini.j2"), ("_pgbouncer_listen_conf", "listen.ini.j2"),
                                   ("_pgbouncer_auth_file", "userlist.txt.j2")):
            self.path(variable).write_text(rendering.render("pgbouncer", f"etc/pgbouncer/{template}", self.variables))
        for path in [directory, *directory.iterdir()]:
            give_to_server_user(path)
        self.log = directory / "pgbouncer.log"
        # PgBouncer refuses to run as root; the PostgreSQL servers' user will do. logfile is empty in
        # the rendered configuration (the journal keeps it on the hosts): stderr is the log.
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(as_server_user(["pgbouncer", str(self.path("_pgbouncer_conf"))]),
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert self.process.poll() is None and time.monotonic() < deadline, self.log.read_text()
                time.sleep(0.1)

    def path(self, variable: str) -> Path:
        return Path(rendering.render("pgbouncer", "{{ " + variable + " }}", self.variables))

    def conninfo(self, password: str, ca: Path, dbname: str = "chajipoa", timeout: int = 15) -> str:
        """The app's settings: verify-full against `ca`. PgBouncer keeps a client whose server login
        fails waiting (it retries the server): `timeout` ends the wait."""
        return (f"host=127.0.0.1 port={self.port} dbname={dbname} user={APP_USER} password='{password}' "
                f"sslmode=verify-full sslrootcert={ca} connect_timeout={timeout}")

    def stop(self) -> None:
        # runuser waits for PgBouncer: the session started for both goes.
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """A directory the PostgreSQL servers' user owns (pytest's tmp_path is root's only)."""
    directory = Path(tempfile.mkdtemp(prefix="chajipoa-pgbouncer-managed-", dir="/tmp"))
    give_to_server_user(directory)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def rds(workdir) -> Iterator[tuple[PostgresServer, Path]]:
    """The RDS stand-in, with the operator's logins made; and its CA certificate (Amazon's bundle)."""
    require_tools("pgbouncer", "psql", packages="pgbouncer, postgresql-client-15")
    tls = workdir / "rds"
    tls.mkdir()
    ca, cert, key = make_tls_files(tls, "server")
    for path in (tls, ca, cert, key):
        give_to_server_user(path)
    server = PostgresServer(settings={"listen_addresses": "'127.0.0.1,127.0.0.2'", "ssl": "on",
                                      "ssl_cert_file": f"'{cert}'", "ssl_key_file": f"'{key}'"}, hba=RDS_HBA)
    with server:
        # psql, as the operator runs it: the block switches databases with its \\connect.
        script = workdir / "rds-logins.sql"
        script.write_text(operator_script())
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-f", str(script)],
                       env={**os.environ, **server.env()}, check=True, capture_output=True, text=True, timeout=120)
        yield server, ca


@pytest.fixture(scope="module")
def internal_ca(workdir) -> dict[str, Path]:
    """PgBouncer's certificate and key, and the internal CA that signed them (for 127.0.0.1 and localhost)."""
    directory = workdir / "internal"
    directory.mkdir()
    ca, cert, key = make_tls_files(directory, "pgbouncer")
    return {"ca": ca, "cert": cert, "key": key}


def certificates(rds_ca: Path, internal: dict[str, Path]) -> dict[str, Path]:
    return {"_pgbouncer_tls_cert": internal["cert"], "_pgbouncer_tls_key": internal["key"], "_pgbouncer_tls_ca": rds_ca,
            "_pgbouncer_tls_client_ca": internal["ca"]}


@pytest.fixture(scope="module")
def bouncer(workdir, rds, internal_ca) -> Iterator[Bouncer]:
    """PgBouncer in the auth file mode, as production's inventory sets it."""
    server, rds_ca = rds
    directory = workdir / "file-mode"
    directory.mkdir()
    running = Bouncer(directory, server, certificates(rds_ca, internal_ca), pgbouncer_auth_mode="file")
    yield running
    running.stop()


def psql(server: PostgresServer, sql: str) -> str:
    """A direct session to the server, as the master user, over TLS verified against its CA."""
    result = subprocess.run(["psql", "-X", "-At", "-d", "chajipoa", "-c", sql], env={**os.environ, **server.env()},
                            capture_output=True, text=True, timeout=30, check=True)
    return result.stdout.strip()


def test_the_apps_login_writes_and_reads_through_pgbouncer_over_verified_tls(bouncer, rds, internal_ca):
    server = rds[0]
    # The app's own settings: verify-full against the CA that signed PgBouncer's certificate.
    with psycopg.connect(bouncer.conninfo(PASSWORDS["postgres_app_password"], internal_ca["ca"]), autocommit=True,
                         prepare_threshold=None) as conn:
        assert conn.pgconn.ssl_in_use
        conn.execute("CREATE TABLE IF NOT EXISTS rentals (id int PRIMARY KEY, station text)")
        conn.execute("INSERT INTO rentals VALUES (1, 'Kariakoo')")
        # On the server side: the app's login, over TLS from PgBouncer.
        assert conn.execute("SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (APP_USER, True)
        psql(server, "INSERT INTO rentals VALUES (2, 'Mwenge')")
        assert conn.execute("SELECT station FROM rentals ORDER BY id").fetchall() == [("Kariakoo",), ("Mwenge",)]
    assert psql(server, "SELECT string_agg(station, ',' ORDER BY id) FROM rentals") == "Kariakoo,Mwenge"
    # PgBouncer presented no certificate: nothing on the server could have mapped one to a login.
    assert psql(server, "SELECT count(*) FROM pg_stat_ssl WHERE client_dn IS NOT NULL") == "0"


def test_a_wrong_password_is_refused(bouncer, internal_ca):
    with pytest.raises(psycopg.OperationalError, match="authentication failed"):
        psycopg.connect(bouncer.conninfo("not-the-password", internal_ca["ca"]))


def test_the_app_cannot_verify_pgbouncer_with_the_servers_ca(bouncer, rds):
    """Why app_database_ca_file is the internal CA in production, not Amazon's bundle."""
    rds_ca = rds[1]
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(bouncer.conninfo(PASSWORDS["postgres_app_password"], rds_ca))


def test_a_server_whose_certificate_does_not_name_the_address_is_refused(bouncer, internal_ca):
    """verify-full: the same server, dialled at 127.0.0.2, which its certificate does not name."""
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(bouncer.conninfo(PASSWORDS["postgres_app_password"], internal_ca["ca"], dbname="misnamed", timeout=5))
    log = bouncer.log.read_text()
    assert "TLS handshake error: name `127.0.0.2' not present in server certificate" in log, log[-3000:]


def test_the_auth_query_mode_cannot_log_in_to_a_managed_server(workdir, rds, internal_ca):
    """The configuration production had: its auth user logs in with a certificate the server has no
    method for, to call a function that cannot exist there. No client gets in."""
    server, rds_ca = rds
    directory = workdir / "query-mode"
    directory.mkdir()
    query = Bouncer(directory, server, certificates(rds_ca, internal_ca), pgbouncer_auth_mode="query")
    try:
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(query.conninfo(PASSWORDS["postgres_app_password"], internal_ca["ca"], timeout=5))
        log = query.log.read_text()
        assert 'server login failed: FATAL password authentication failed for user "pgbouncer_auth"' in log, log[-3000:]
    finally:
        query.stop()
