# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""A throwaway PostgreSQL cluster for one verification, and the removal of those a killed run left.

Thorough verification and restore drills restore a dump here, never into the production server:
no WAL of the copy reaches the standbys, and nothing in the dump runs beside the live data. The
cluster lives in a private directory <scratch_dir>/<pid>-<random> (mode 0700) with its data, its
log and its Unix socket; it listens on no TCP address, and only its OS user (and root) can reach
the socket, which is why local logins are trusted. Durability is switched off: a crash loses a copy
that is thrown away anyway.

The server refuses to run as root. Run by root (the tests, a module with become but no
become_user), the server programs run as the OS user `postgres` and the directory is theirs; run by
any other user (postgres on the hosts), as that user.

A run that is killed cannot remove its cluster. cleanup_stale() removes every directory whose
owner process is gone, stopping a postmaster still running there; the backup program calls it at
the start of each run, under its lock. The owner is recorded as "<pid> <start time>" so that a
reused pid does not keep a dead run's cluster alive.

Stdlib only (psycopg where a caller connects): the backup program on the hosts imports it.
"""
from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

SERVER_OS_USER = "postgres"
SUPERUSER = "chajipoa_scratch"
PORT = 5432
OWNER_FILE = "owner.pid"
_RUN_DIR = re.compile(r"^(\d+)-[0-9a-f]{8}$")
# sun_path holds 108 bytes with the terminating NUL.
_MAX_SOCKET_PATH = 107
# A throwaway copy: durability only costs time, and with wal_level minimal the data that
# pg_restore loads into tables it created in the same transaction writes no WAL at all.
SETTINGS = {
    "listen_addresses": "''",
    "port": str(PORT),
    "unix_socket_permissions": "0700",
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "archive_mode": "off",
    "autovacuum": "off",
    "shared_preload_libraries": "''",
    "max_wal_size": "'2GB'",
    "checkpoint_timeout": "'30min'",
    "maintenance_work_mem": "'256MB'",
    "timezone": "'UTC'",
    # No JIT: its code generation writes executable memory, which the verification units forbid
    # (MemoryDenyWriteExecute, plugins/module_utils/systemd_sandbox.py); a restore gains nothing from it.
    "jit": "off",
    "log_timezone": "'UTC'",
}
# How long the server may take to start or stop before the run gives up.
TIMEOUT = 120


class ScratchError(RuntimeError):
    """The scratch cluster cannot be made or started; the message says why and what to do."""


def as_server_user(args: list[str]) -> list[str]:
    """The command line that runs a server program (initdb, pg_ctl) as a user it accepts."""
    if os.geteuid() == 0:
        return ["runuser", "-u", SERVER_OS_USER, "--", *args]
    return args


def give_to_server_user(path: Path) -> None:
    """Hand a file or directory root made to the user the server runs as."""
    if os.geteuid() == 0:
        owner = pwd.getpwnam(SERVER_OS_USER)
        os.chown(path, owner.pw_uid, owner.pw_gid)


def server_bindir(major: int | None, pg_bindir: str | None = None) -> Path:
    """Where the server programs of the dump's major version are: pg_bindir, else Debian's place."""
    bindir = Path(pg_bindir) if pg_bindir else Path(f"/usr/lib/postgresql/{major}/bin")
    if not (bindir / "initdb").is_file():
        raise ScratchError(f"Cannot make a scratch cluster: {bindir}/initdb does not exist (install the "
                           f"postgresql-{major} server package, or set pg_bindir to its bin directory)")
    return bindir


def _process_start(pid: int) -> str | None:
    """The start time of a process in clock ticks since boot, or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in parentheses may hold spaces; the fields after it are fixed.
    return stat.rsplit(")", 1)[1].split()[19]


def _tool_env() -> dict:
    # A PGDATA, PGPORT ... of the caller's environment must not steer the server programs.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


class ScratchCluster:
    """One throwaway cluster: start() makes and starts it, remove() stops it and deletes it all."""

    def __init__(self, scratch_dir: str | os.PathLike, bindir: Path):
        self.scratch_dir = Path(scratch_dir)
        self.bindir = Path(bindir)
        self.directory: Path | None = None
        self.running = False

    @property
    def datadir(self) -> Path:
        return self.directory / "data"

    @property
    def logfile(self) -> Path:
        return self.directory / "server.log"

    @property
    def socket_dir(self) -> str:
        return str(self.directory)

    def conninfo(self, dbname: str, user: str = SUPERUSER) -> str:
        from psycopg.conninfo import make_conninfo
        return make_conninfo(host=self.socket_dir, port=PORT, user=user, dbname=dbname)

    def connect(self, dbname: str, user: str = SUPERUSER, autocommit: bool = True):
        import psycopg
        return psycopg.connect(self.conninfo(dbname, user), autocommit=autocommit)

    def _run(self, *args) -> None:
        command = as_server_user([str(arg) for arg in args])
        # A process group of its own, killed whole when anything interrupts the wait (a module's
        # timeout, the start timeout): as root the program is runuser's child, and killing runuser
        # alone, as subprocess.run does, left initdb writing into the directory being removed.
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_tool_env(),
                              cwd=self.directory, start_new_session=True) as process:
            try:
                stdout, stderr = process.communicate(timeout=TIMEOUT)
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise
        if process.returncode != 0:
            raise ScratchError(f"Cannot run {Path(str(args[0])).name} for the scratch cluster in {self.directory}: "
                               f"{(stderr or stdout).strip()}{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            lines = self.logfile.read_text(errors="replace").splitlines()[-10:]
        except OSError:
            return ""
        return (" | server log: " + " / ".join(lines)) if lines else ""

    def start(self) -> ScratchCluster:
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        # The server user must be able to pass through; the run's own directory is private.
        if os.geteuid() == 0:
            os.chmod(self.scratch_dir, os.stat(self.scratch_dir).st_mode | 0o111)
        name = f"{os.getpid()}-{secrets.token_hex(4)}"
        directory = self.scratch_dir / name
        if len(str(directory / f".s.PGSQL.{PORT}")) > _MAX_SOCKET_PATH:
            raise ScratchError(f"Cannot make a scratch cluster in {self.scratch_dir}: the socket path would be longer "
                               f"than {_MAX_SOCKET_PATH} bytes; choose a shorter scratch_dir")
        directory.mkdir(mode=0o700)
        self.directory = directory
        try:
            (directory / OWNER_FILE).write_text(f"{os.getpid()} {_process_start(os.getpid())}\n")
            give_to_server_user(directory)
            self._run(self.bindir / "initdb", "-D", self.datadir, "-U", SUPERUSER, "--auth-local=trust",
                      "--auth-host=reject", "--encoding=UTF8", "--locale=C", "--no-instructions", "--nosync")
            settings = dict(SETTINGS, unix_socket_directories="'" + self.socket_dir.replace("'", "''") + "'")
            # postgresql.auto.conf is read last: these win over initdb's postgresql.conf.
            auto_conf = self.datadir / "postgresql.auto.conf"
            auto_conf.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()))
            give_to_server_user(auto_conf)
            self._run(self.bindir / "pg_ctl", "-D", self.datadir, "-l", self.logfile, "-w", "-t", str(TIMEOUT),
                      "start")
            self.running = True
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        """Stop the server at once (nothing is kept, so no checkpoint) and delete the directory."""
        if self.directory is None:
            return
        remove_cluster(self.directory)
        self.running = False
        self.directory = None

    def __enter__(self) -> ScratchCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.remove()


def _stop_postmaster(datadir: Path) -> None:
    """Immediate shutdown of the postmaster serving datadir, if one runs; returns once it is gone."""
    try:
        pid = int((datadir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    # A stale postmaster.pid may name a pid reused since: only a process whose working directory is
    # this data directory (the postmaster chdirs there) is signalled.
    try:
        if Path(os.readlink(f"/proc/{pid}/cwd")) != datadir.resolve():
            return
    except OSError:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGQUIT)
    deadline = time.monotonic() + TIMEOUT
    while _process_start(pid) is not None:
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = float("inf")
        time.sleep(0.05)


def remove_cluster(directory: str | os.PathLike) -> None:
    """Stop the cluster in a run's directory, if it runs, and delete the directory (a kept drill copy)."""
    directory = Path(directory)
    _stop_postmaster(directory / "data")
    shutil.rmtree(directory, ignore_errors=True)


def _owner_alive(directory: Path) -> bool:
    try:
        pid, started = (directory / OWNER_FILE).read_text().split()
    except (OSError, ValueError):
        # A run dies between mkdir and writing its owner file only by a kill: the pid in the name decides.
        pid, started = _RUN_DIR.match(directory.name).group(1), None
    current = _process_start(int(pid))
    return current is not None and started in (None, current)


def cleanup_stale(scratch_dir: str | os.PathLike) -> list[str]:
    """Remove the clusters of runs that are gone (a postmaster still running is stopped first).

    Returns the directories removed. Directories of live runs, and anything not named like a run's
    directory, are left alone.
    """
    scratch_dir = Path(scratch_dir)
    removed = []
    if not scratch_dir.is_dir():
        return removed
    for directory in sorted(scratch_dir.iterdir()):
        if not (directory.is_dir() and _RUN_DIR.match(directory.name)) or _owner_alive(directory):
            continue
        remove_cluster(directory)
        removed.append(str(directory))
    return removed
