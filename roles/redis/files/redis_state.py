#!/usr/bin/python3
"""What the running Redis lacks of its files, asked of Redis itself (run on the host by the redis role).

Prints one JSON object:
  restart  true when the server must restart: it started before one of the given files was last
           written (redis.conf, TLS files, unit drop-in), or the ACL convergence user cannot log in
           (a new login secret, or a server still on another configuration). A restart reads them all.
  acl      "same" or "differ": the server's ACL LIST against the ACL LIST of a throwaway server
           that loaded the same ACL file, so both are in Redis's own canonical form;
           "unknown" when the running server could not be asked (then restart is true).
  reason   why, for the run's output.

Nothing is changed: the throwaway server listens on a private unix socket only, keeps no data
and is stopped before the script ends. A file Redis refuses is reported as an error, naming it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path


def canonical(line: str) -> str:
    """One ACL LIST line with its single-command rules sorted.

    Redis lists a user's categories in the order given but its single commands in the order of its
    command table, a hash table seeded per process: two servers holding the same user print them
    in different orders. Sorting them compares what they allow, not how they were printed.
    """
    tokens = line.split()
    commands = [token for token in tokens if token[:1] in "+-" and token[1:2] != "@"]
    return " ".join([token for token in tokens if token not in commands] + sorted(commands))


def acl_list(socket: str, user: str, secret: str) -> list[str] | str:
    """The server's ACL LIST, canonical and sorted; the refusal as a string when the login or the command fails."""
    result = subprocess.run(
        ["redis-cli", "-s", socket, "--user", user, "--no-auth-warning", "ACL", "LIST"],
        env={**os.environ, "REDISCLI_AUTH": secret}, capture_output=True, text=True, timeout=30, check=False,
    )
    lines = result.stdout.splitlines()
    # redis-cli exits 0 on refusals too: only a list of user lines is an answer.
    if result.returncode != 0 or not lines or not all(line.startswith("user ") for line in lines):
        return (result.stderr or result.stdout or f"redis-cli exited {result.returncode}").strip().splitlines()[0]
    return sorted(canonical(line) for line in lines)


def wanted_acl_list(aclfile: str, user: str, secret: str) -> list[str]:
    """The ACL LIST a server shows after loading aclfile, from a throwaway server."""
    with tempfile.TemporaryDirectory(prefix="redis-acl-") as scratch:
        socket = f"{scratch}/redis.sock"
        server = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", socket, "--unixsocketperm", "700",
             "--aclfile", aclfile, "--dir", scratch, "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--logfile", f"{scratch}/log", "--databases", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while not Path(socket).exists():
                if server.poll() is not None:
                    log = Path(f"{scratch}/log").read_text(errors="replace").strip().splitlines()
                    raise SystemExit(f"Cannot check the ACL file {aclfile}: Redis refuses it: "
                                     f"{log[-1] if log else 'exit status ' + str(server.returncode)}")
                if time.monotonic() > deadline:
                    raise SystemExit(f"Cannot check the ACL file {aclfile}: the throwaway server did not start in 20 s")
                time.sleep(0.02)
            answer = acl_list(socket, user, secret)
            if isinstance(answer, str):
                raise SystemExit(f"Cannot check the ACL file {aclfile}: the convergence user cannot log in: {answer}")
            return answer
        finally:
            server.terminate()
            server.wait(timeout=30)


def started_at(service: str) -> float | None:
    """When the service's main process started (seconds since the epoch), None when it is not running."""
    value = subprocess.run(
        ["systemctl", "show", service, "-p", "ExecMainStartTimestamp", "--timestamp=us+utc", "--value"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()
    pid = subprocess.run(["systemctl", "show", service, "-p", "MainPID", "--value"],
                         capture_output=True, text=True, check=False).stdout.strip()
    if not value or pid in ("", "0"):
        return None
    return datetime.strptime(value, "%a %Y-%m-%d %H:%M:%S.%f UTC").replace(tzinfo=timezone.utc).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--service", required=True)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--aclfile", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--secret-file", required=True)
    parser.add_argument("--file", action="append", default=[], help="a file the running server must postdate")
    args = parser.parse_args()

    secret = Path(args.secret_file).read_text().strip()
    wanted = wanted_acl_list(args.aclfile, args.user, secret)
    start = started_at(args.service)
    # Not the ACL file: ACL LOAD applies it without a restart.
    newer = [name for name in args.file
             if start is not None and Path(name).exists() and os.stat(name).st_mtime > start]
    state = {"restart": False, "acl": "unknown", "reason": ""}
    if start is None:
        state.update(restart=True, reason=f"{args.service} is not running")
    elif newer:
        state.update(restart=True, reason="written after the server started: " + ", ".join(newer))
    else:
        live = acl_list(args.socket, args.user, secret)
        if isinstance(live, str):
            state.update(restart=True, reason=f"the ACL convergence user cannot log in to the running server: {live}")
        elif live == wanted:
            state.update(acl="same", reason="the running server has the ACL file's users")
        else:
            state.update(acl="differ", reason="the running server's users differ from the ACL file's: "
                         + ", ".join(sorted({line.split()[1] for line in set(live) ^ set(wanted)})))
    json.dump(state, sys.stdout)


if __name__ == "__main__":
    main()
