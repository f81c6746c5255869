"""A throwaway PostgreSQL 15 cluster for the backup tests and benchmarks.

No pytest in here, so a benchmark script can use it too:

    from tests.pgserver import PostgresServer
    with PostgresServer() as pg:
        pg.create_database("rental")
        subprocess.run(["pg_dump", "-Fc", "rental"], env={**os.environ, **pg.env()}, ...)

The cluster lives in a fresh temporary directory, owned by the OS user `postgres` when run as root
(initdb refuses to run as root; plugins/module_utils/pg_scratch.py's helpers do that), listens on 127.0.0.1 only, on a free port, and is thrown away whole
by stop(). Logins over TCP need the generated password (scram-sha-256), the way the production
servers are set up, so the tests see the same authentication as a real backup does.
"""
from __future__ import annotations

import atexit
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from ansible_collections.chajipoa.platform.plugins.module_utils.pg_scratch import as_server_user, give_to_server_user
from tests.ports import free_port

BINDIR = Path("/usr/lib/postgresql/15/bin")


class PostgresNotInstalled(RuntimeError):
    """PostgreSQL 15's server binaries are missing: `lab/test-deps.sh` installs them."""


def _quote_conninfo(value: str) -> str:
    """A value for a libpq keyword/value connection string."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresServer:
    """One PostgreSQL 15 cluster of its own; start() to run it, stop() to remove it."""

    host = "127.0.0.1"
    user = "postgres"

    def __init__(self, base_dir: str | os.PathLike | None = None, bindir: Path = BINDIR,
                 settings: dict[str, str] | None = None, hba: str | None = None):
        """settings: postgresql.conf values (quoted as the file wants them) over the defaults below;
        hba: the whole pg_hba.conf in place of initdb's, for a server set up as another one is (RDS)."""
        self.bindir = Path(bindir)
        self.extra_settings = dict(settings or {})
        self.hba = hba
        # The temporary directory must be reachable by the postgres user: under /tmp by default,
        # not under a TMPDIR such as /root/tmp that only root may enter.
        self.base_dir = Path(base_dir) if base_dir else Path("/tmp")
        self.password = secrets.token_urlsafe(24)
        self.port: int | None = None
        self.dir: Path | None = None
        self._running = False

    # -- paths ------------------------------------------------------------------------------------
    @property
    def datadir(self) -> Path:
        return self.dir / "data"

    @property
    def logfile(self) -> Path:
        return self.dir / "postgresql.log"

    @property
    def socket_dir(self) -> Path:
        return self.dir

    # -- lifecycle --------------------------------------------------------------------------------
    def _run(self, *args: str | os.PathLike, check: bool = True) -> subprocess.CompletedProcess:
        # initdb and pg_ctl refuse to run as root: the verification's scratch clusters solve the same.
        cmd = as_server_user([str(a) for a in args])
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=self.dir, env=self._tool_env(), check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
                               f"{self._log_tail()}")
        return result

    def _tool_env(self) -> dict:
        # The server's tools must not pick up a PGDATA, PGPORT ... of the caller's environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8"
        return env

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.logfile.read_text(errors="replace").splitlines()[-lines:]
        except (OSError, TypeError):
            return ""
        return "\n--- server log (tail) ---\n" + "\n".join(text) if text else ""

    def start(self) -> "PostgresServer":
        if self._running:
            return self
        if not (self.bindir / "initdb").exists():
            raise PostgresNotInstalled(
                f"{self.bindir}/initdb not found: PostgreSQL 15 is not installed; run lab/test-deps.sh "
                "as root (or `make integration`, which runs it)")
        self.dir = Path(tempfile.mkdtemp(prefix="chajipoa-pg-", dir=self.base_dir))
        try:
            give_to_server_user(self.dir)
            self._initdb()
            for attempt in range(5):
                self.port = free_port()
                self._write_settings()
                result = self._run(self.bindir / "pg_ctl", "-D", self.datadir, "-l", self.logfile,
                                   "-w", "-t", "60", "start", check=False)
                if result.returncode == 0:
                    break
                if "could not bind" not in self._log_tail(10) or attempt == 4:
                    raise RuntimeError(f"pg_ctl start failed:\n{result.stdout}{result.stderr}{self._log_tail()}")
            self._running = True
            atexit.register(self.stop)
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
            raise
        return self

    def _initdb(self) -> None:
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        give_to_server_user(pwfile)
        try:
            # C collation and UTF-8 whatever locales the machine has, so the same data sorts the
            # same everywhere; peer for the socket, a password for TCP, as on the real servers.
            self._run(self.bindir / "initdb", "-D", self.datadir, "-U", self.user, f"--pwfile={pwfile}",
                      "--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C",
                      "--no-instructions", "--nosync")
        finally:
            pwfile.unlink(missing_ok=True)
        if self.hba is not None:
            (self.datadir / "pg_hba.conf").write_text(self.hba)

    def _write_settings(self) -> None:
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": "'" + str(self.socket_dir).replace("'", "''") + "'",
            # A throwaway cluster: a crash loses it anyway, so durability only costs time. Without
            # the flushes and the full-page images, loading the 1.2 GB benchmark set is I/O-bound
            # on the data alone and the tests measure the backup, not the disk's fsync latency.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            # Bulk loads then pay for no checkpoint until they are done.
            "max_wal_size": "'8GB'",
            "checkpoint_timeout": "'30min'",
            "shared_buffers": "'256MB'",
            "timezone": "'UTC'",
            "log_timezone": "'UTC'",
            **self.extra_settings,
        }
        # postgresql.auto.conf is read last, so these win over initdb's postgresql.conf; rewritten
        # whole when start() retries on another port.
        text = "".join(f"{key} = {value}\n" for key, value in settings.items())
        (self.datadir / "postgresql.auto.conf").write_text(
            "# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n" + text)

    def stop(self) -> None:
        """Stop the server at once (no checkpoint: nothing is kept) and remove its directory."""
        if self.dir is None:
            return
        if self._running:
            self._run(self.bindir / "pg_ctl", "-D", self.datadir, "-m", "immediate", "-w", "stop", check=False)
            self._running = False
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
        atexit.unregister(self.stop)

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- clients ----------------------------------------------------------------------------------
    def conninfo(self, dbname: str = "postgres") -> str:
        """A libpq keyword/value string for a TCP login with the password."""
        params = {"host": self.host, "port": str(self.port), "user": self.user,
                  "password": self.password, "dbname": dbname}
        return " ".join(f"{key}={_quote_conninfo(value)}" for key, value in params.items())

    def env(self) -> dict:
        """The libpq variables for a subprocess (pg_dump, pg_restore, psql) to log in over TCP."""
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user,
                "PGPASSWORD": self.password}

    def connect(self, dbname: str = "postgres", autocommit: bool = True):
        """A psycopg (3) connection; the caller closes it (it is a context manager)."""
        import psycopg  # only the clients need it, not starting and stopping the server

        return psycopg.connect(self.conninfo(dbname), autocommit=autocommit)

    def execute(self, sql: str, dbname: str = "postgres", *, params=None) -> list[tuple] | None:
        """Run one statement in autocommit (with %s `params`, if any); its rows, or None when it
        returns none."""
        with self.connect(dbname) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else None

    def create_database(self, name: str) -> None:
        self.execute(f"CREATE DATABASE {_quote_ident(name)}")

    def drop_database(self, name: str) -> None:
        # FORCE ends the sessions still connected (a failed test's, a killed pg_dump's).
        self.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
