"""PgBouncer on an application host in front of the PostgreSQL primary: real servers, probed the
way the application uses them.

Hosts are found by group (`postgres`: the primary is the first; `app`: every PgBouncer host), so the
same tests run in any scenario that has both. Clients connect over TLS to PgBouncer and verify it
against the CA the role installs for them (/etc/chajipoa/postgres-ca.crt).
"""
from __future__ import annotations

import json
import os
import shlex
import uuid

import pytest
import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = AnsibleRunner(INVENTORY)
APP_HOSTS = RUNNER.get_hosts("app")
CA = "/etc/chajipoa/postgres-ca.crt"
PORT = 6432
CLIENTS = 60
# Seconds a session's transaction may take to be answered: no wait for a server connection.
PROMPT = 5

pytestmark = pytest.mark.journal("pgbouncer.service")

# Opens psql sessions one after another on the host; each runs one transaction that reports its
# server backend's pid, then stays connected, idle. Prints the pids in order, stopping at the first
# session not answered within the time given.
_IDLE_SESSIONS = """
import json, select, subprocess, sys
info, sessions, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
held, pids = [], []
try:
    for _ in range(sessions):
        psql = subprocess.Popen(["psql", "-X", "-w", "-q", "-At", "-v", "ON_ERROR_STOP=1", info], text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        held.append(psql)
        psql.stdin.write("BEGIN; SELECT pg_backend_pid(); COMMIT;\\n")
        psql.stdin.flush()
        if not select.select([psql.stdout], [], [], timeout)[0]:
            psql.kill()
            break
        pids.append(int(psql.stdout.readline()))
finally:
    for psql in held:
        psql.stdin.close()
        psql.wait()
print(json.dumps(pids))
"""


def lab(name: str):
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}")


@pytest.fixture(scope="module")
def primary():
    return lab(RUNNER.get_hosts("postgres")[0])


@pytest.fixture(scope="module", params=APP_HOSTS)
def app(request):
    return lab(request.param)


@pytest.fixture(scope="module")
def settings(app):
    variables = app.ansible.get_variables()
    return {
        "database": variables.get("postgres_app_database", "chajipoa"),
        "user": variables.get("postgres_app_user", "chajipoa"),
        "password": variables["postgres_app_password"],
        "monitoring": variables.get("postgres_monitoring_user", "monitoring"),
        "monitoring_password": variables["postgres_monitoring_password"],
        "max_db_connections": int(variables["pgbouncer_max_db_connections"]),
    }


def conninfo(host: str, database: str, user: str, sslmode: str = "verify-full") -> str:
    return (f"host={host} port={PORT} dbname={database} user={user} sslmode={sslmode} sslrootcert={CA} "
            "connect_timeout=5")


def psql(host, info: str, password: str, *statements: str):
    commands = " ".join(f"-c {shlex.quote(sql)}" for sql in statements)
    return host.run(f"PGPASSWORD={shlex.quote(password)} psql -X -w -At -v ON_ERROR_STOP=1 {shlex.quote(info)} {commands}")


def as_app(app, settings, *statements: str, host: str = "127.0.0.1", sslmode: str = "verify-full", password: str | None = None):
    info = conninfo(host, settings["database"], settings["user"], sslmode)
    return psql(app, info, settings["password"] if password is None else password, *statements)


def console(app, settings, command: str):
    info = conninfo("127.0.0.1", "pgbouncer", settings["monitoring"])
    return psql(app, info, settings["monitoring_password"], command)


def on_primary(primary, sql: str, database: str = "postgres") -> str:
    return primary.check_output(f"sudo -u postgres psql -X -At -d {database} -c {shlex.quote(sql)}")


def test_service_runs_sandboxed(app):
    assert app.service("pgbouncer").is_running
    assert app.service("pgbouncer").is_enabled
    shown = app.check_output("systemctl show pgbouncer -p NoNewPrivileges -p ProtectSystem -p PrivateTmp")
    assert set(shown.split()) == {"NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes"}


@pytest.mark.parametrize("where", ["loopback", "private address"])
def test_the_app_login_writes_and_reads_through_pgbouncer_over_verified_tls(app, primary, settings, where, lab_address):
    host = "127.0.0.1" if where == "loopback" else lab_address(app)
    mark = str(uuid.uuid4())
    result = as_app(app, settings,
                    "CREATE TABLE IF NOT EXISTS pgbouncer_probe (mark text PRIMARY KEY)",
                    f"INSERT INTO pgbouncer_probe VALUES ('{mark}')",
                    f"SELECT mark FROM pgbouncer_probe WHERE mark = '{mark}'",
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    host=host)
    assert result.rc == 0, result.stderr
    assert result.stdout.split()[-2:] == [mark, "t"], "PgBouncer's leg to PostgreSQL is not TLS"
    # The row is on the primary, written through the pool.
    assert on_primary(primary, f"SELECT count(*) FROM pgbouncer_probe WHERE mark = '{mark}'", settings["database"]) == "1"


def test_a_wrong_password_is_refused(app, settings):
    result = as_app(app, settings, "SELECT 1", password="not-" + settings["password"])
    assert result.rc != 0
    assert "SASL authentication failed" in result.stderr


def test_a_plain_connection_is_refused(app, settings):
    result = as_app(app, settings, "SELECT 1", sslmode="disable")
    assert result.rc != 0
    assert "SSL required" in result.stderr


def test_more_clients_than_the_server_allows_are_served(app, primary, settings):
    max_connections = int(on_primary(primary, "SHOW max_connections"))
    assert CLIENTS > max_connections, "the scenario must set postgres_max_connections below the client count"
    info = conninfo("127.0.0.1", settings["database"], settings["user"])
    # Each client holds its connection through three transactions that each wait a little, so the
    # clients are all connected at once while at most max_db_connections server connections serve them.
    client = (f"PGPASSWORD={shlex.quote(settings['password'])} psql -X -w -At -v ON_ERROR_STOP=1 {shlex.quote(info)} "
              + " ".join(["-c 'BEGIN' -c 'SELECT pg_sleep(0.2)' -c 'COMMIT'"] * 3)
              + " >/dev/null 2>>/var/tmp/pgbouncer-clients.err && echo ok")
    poll = ("PGPASSWORD={pw} psql -X -w -At -F' ' {info} -c 'SHOW POOLS' | awk '$1 == \"{db}\" {{c += $3 + $4; s += $7 + $10 + $11 + $12 + $13}} END {{print c, s}}'"
            .format(pw=shlex.quote(settings["monitoring_password"]), db=settings["database"],
                    info=shlex.quote(conninfo("127.0.0.1", "pgbouncer", settings["monitoring"]))))
    script = f"""
rm -f /var/tmp/pgbouncer-clients.err /var/tmp/pgbouncer-clients.out
for i in $(seq {CLIENTS}); do ( {client} ) >>/var/tmp/pgbouncer-clients.out & done
peak_clients=0; peak_servers=0
while [ "$(jobs -r | wc -l)" -gt 0 ]; do
  read clients servers < <({poll})
  [ "${{clients:-0}}" -gt "$peak_clients" ] && peak_clients=$clients
  [ "${{servers:-0}}" -gt "$peak_servers" ] && peak_servers=$servers
  sleep 0.1
done
wait
echo "$(grep -c ok /var/tmp/pgbouncer-clients.out) $peak_clients $peak_servers"
"""
    served, peak_clients, peak_servers = map(int, app.check_output(f"bash -c {shlex.quote(script)}").split())
    errors = app.run("cat /var/tmp/pgbouncer-clients.err").stdout
    assert served == CLIENTS, errors
    assert peak_clients > max_connections, f"only {peak_clients} clients were connected at once"
    assert peak_servers <= settings["max_db_connections"]


def test_transaction_pooling_serves_more_idle_sessions_than_server_connections(app, settings):
    """Sessions that finished their transaction hold no server connection: more of them than
    PgBouncer may open for the database each get theirs served at once, and some by the same
    backend. In session pooling each idle session keeps its server connection and the one past the
    limit waits: with pool_mode switched to session by hand, this test fails there."""
    sessions = settings["max_db_connections"] + 2
    info = conninfo("127.0.0.1", settings["database"], settings["user"])
    pids = json.loads(app.check_output(f"PGPASSWORD={shlex.quote(settings['password'])} "
                                       f"python3 -c {shlex.quote(_IDLE_SESSIONS)} {shlex.quote(info)} {sessions} {PROMPT}"))
    assert len(pids) == sessions, f"session {len(pids) + 1} of {sessions} waited over {PROMPT} s for a server connection"
    assert len(set(pids)) <= settings["max_db_connections"] < len(pids)


def test_a_server_whose_certificate_does_not_name_it_is_refused(app, settings):
    databases = app.check_output("sed -n '/^\\[databases\\]/,/^\\[/p' /etc/pgbouncer/pgbouncer.ini")
    if not any(line.startswith("unverified =") for line in databases.splitlines()):
        pytest.skip("this scenario wires no database under a name the server's certificate lacks")
    info = conninfo("127.0.0.1", "unverified", settings["user"])
    result = psql(app, info, settings["password"], "SELECT 1")
    assert result.rc != 0
    journal = app.check_output("journalctl -u pgbouncer -n 50 --no-pager")
    assert "name `unnamed-db.molecule.chajipoa.lan' not present in server certificate" in journal


def test_the_monitoring_login_reads_the_statistics(app, settings):
    stats = console(app, settings, "SHOW STATS")
    assert stats.rc == 0, stats.stderr
    assert settings["database"] in stats.stdout.split("|")
    pools = console(app, settings, "SHOW POOLS")
    assert pools.rc == 0, pools.stderr
    assert f"{settings['database']}|{settings['user']}|" in pools.stdout


def test_the_monitoring_login_cannot_administer(app, settings):
    result = console(app, settings, "PAUSE")
    assert result.rc != 0
    assert "admin access needed" in result.stderr


def test_no_application_password_on_the_host(app, settings):
    found = app.run(f"grep -rlF -- {shlex.quote(settings['password'])} /etc /var/lib /opt")
    assert found.rc == 1, f"the application's password is stored in {found.stdout}"
    # The auth file holds the stats user's SCRAM verifier and nothing else.
    entries = [line for line in app.file("/etc/pgbouncer/userlist.txt").content_string.splitlines()
               if line and not line.startswith(";")]
    assert len(entries) == 1
    user, verifier = entries[0].split(" ", 1)
    assert user == f'"{settings["monitoring"]}"'
    assert verifier.startswith('"SCRAM-SHA-256$4096:') and settings["monitoring_password"] not in verifier


def test_the_auth_login_has_no_password_and_only_it_runs_the_auth_function(app, primary, settings):
    assert on_primary(primary, "SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = 'pgbouncer_auth'") == "t"
    denied = as_app(app, settings, "SELECT * FROM pgbouncer.get_auth('monitoring')")
    assert denied.rc != 0
    assert "permission denied" in denied.stderr
    # Superusers' verifiers are never handed out, even to the auth login.
    lookup = ("SET ROLE pgbouncer_auth; SELECT count(*) FROM pgbouncer.get_auth('postgres') "
              "UNION ALL SELECT count(*) FROM pgbouncer.get_auth('monitoring')")
    assert on_primary(primary, lookup, settings["database"]).split()[-2:] == ["0", "1"]


def test_the_port_is_closed_to_hosts_outside_the_client_groups(app, primary, lab_address):
    probe = primary.run(f"timeout 3 bash -c '</dev/tcp/{lab_address(app)}/{PORT}'")
    assert probe.rc != 0
