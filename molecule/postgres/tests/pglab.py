"""What the postgres scenario's tests share: psql on a lab host, the application's connection
string, and a converge of the scenario run by a test (rotations, broken standbys)."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
SCENARIO = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
CA = "/etc/postgresql/15/main/ca.crt"
UNIT = "postgresql@15-main.service"
DATA_DIR = "/var/lib/postgresql/15/main"


def psql(host, sql: str, conninfo: str = "", password: str | None = None, database: str = ""):
    """psql on `host`: through the local socket as postgres, or to `conninfo` over the network."""
    env = "" if password is None else f"PGPASSWORD={shlex.quote(password)} "
    if conninfo:
        return host.run(f"{env}psql -X -w -At -v ON_ERROR_STOP=1 {shlex.quote(conninfo)} -c {shlex.quote(sql)}")
    target = f" -d {shlex.quote(database)}" if database else ""
    return host.run(f"sudo -u postgres psql -X -At -v ON_ERROR_STOP=1{target} -c {shlex.quote(sql)}")


def app_conninfo(address: str, sslmode: str = "verify-full") -> str:
    return f"host={address} port=5432 dbname=chajipoa user=chajipoa sslmode={sslmode} sslrootcert={CA} connect_timeout=5"


def replication_conninfo(address: str) -> str:
    return (f"host={address} port=5432 dbname=postgres user=replicator replication=true sslmode=verify-full "
            f"sslrootcert={CA} connect_timeout=5")


def wait_for(host, condition: str, seconds: int = 30) -> bool:
    """Whether the shell `condition` holds on `host` within `seconds` (tried every 0.2 s)."""
    tries = seconds * 5
    return host.run(f"for i in $(seq {tries}); do ( {condition} ) >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1").rc == 0


def converge(*extra: str) -> subprocess.CompletedProcess:
    """The scenario's converge.yml, as molecule runs it, with `extra` arguments, less the common role:
    molecule's converge and idempotence runs have proved it, no test here changes its inputs, and it
    is half of each run's module calls (eight runs in these tests)."""
    playbook = Path(sys.executable).parent / "ansible-playbook"
    # JSON results: the YAML the scenario otherwise prints folds long messages with escapes.
    env = {**os.environ, "ANSIBLE_CALLBACK_RESULT_FORMAT": "json", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    return subprocess.run(
        [str(playbook), "-i", INVENTORY, str(SCENARIO / "converge.yml"), "--skip-tags", "common", *extra],
        capture_output=True, text=True, check=False, env=env,
    )


def output(run: subprocess.CompletedProcess) -> str:
    """A run's output with its line wrapping undone, for messages the YAML callback folds."""
    return " ".join((run.stdout + run.stderr).split())


def changed(run: subprocess.CompletedProcess) -> dict[str, int]:
    """The recap's changed count per host."""
    return {host: int(count) for host, count in re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", run.stdout, re.M)}
