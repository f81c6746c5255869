# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""The backup program's per-host lock and configuration, for the modules that work beside it.

The program holds flock(LOCK_EX) on <state_dir>/lock for a whole run; a module that lists,
fetches or restores backups holds the same lock while it works, so it never sees a run's half-done
pruning nor restores a file a run is replacing. Stdlib only.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import time
from pathlib import Path

DEFAULT_CONFIG = "/etc/chajipoa/backup.json"
DEFAULT_TIMEOUT = 3600
# How often a waiting module retries: short against a lock held for minutes.
_POLL_SECONDS = 0.2


class LockTimeout(RuntimeError):
    """The lock stayed taken for the whole timeout; the message names the lock file."""


def load_config(path: str | Path) -> dict:
    """The program's configuration (/etc/chajipoa/backup.json, rendered by the backup role)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        raise ValueError(f"Cannot read the backup configuration {path}: {error}") from error


def lock_path(config: dict) -> Path:
    """<state_dir>/lock, the file the program locks (state_dir defaults as the program's does)."""
    return Path(config.get("state_dir") or Path(config["backup_dir"]) / ".state") / "lock"


@contextlib.contextmanager
def hold(path: Path, timeout: int | None = None, shared: bool = False):
    """Hold the lock; a listing shares it with other readers, anything that writes holds it alone."""
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    operation = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
    deadline = time.monotonic() + timeout
    with open(path, "a", encoding="utf-8") as handle:
        while True:
            try:
                fcntl.flock(handle, operation)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"Cannot take the backup lock {path}: another backup run held it for "
                                      f"{timeout} s (see journalctl -u 'chajipoa-backup*')") from None
                time.sleep(_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
