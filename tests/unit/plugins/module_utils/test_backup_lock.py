"""Unit tests of the modules' side of the backup program's per-host lock (real flock on a temp file)."""
from __future__ import annotations

import fcntl
import time

import pytest

from ansible_collections.chajipoa.platform.plugins.module_utils import backup_lock


@pytest.fixture
def lock(tmp_path):
    return tmp_path / "lock"


def test_a_held_lock_times_out_naming_the_file(lock):
    with open(lock, "w") as program:
        fcntl.flock(program, fcntl.LOCK_EX)  # as the program holds it during a run
        started = time.monotonic()
        with pytest.raises(backup_lock.LockTimeout, match=f"Cannot take the backup lock {lock}: .* for 1 s"):
            with backup_lock.hold(lock, timeout=1):
                pass
        assert 1 <= time.monotonic() - started < 3


@pytest.mark.parametrize("shared", [True, False])
def test_the_program_waits_while_a_module_holds_it(lock, shared):
    with backup_lock.hold(lock, timeout=1, shared=shared), open(lock, "w") as program:
        with pytest.raises(BlockingIOError):
            fcntl.flock(program, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(lock, "w") as program:
        fcntl.flock(program, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released again


def test_listings_share_it(lock):
    with backup_lock.hold(lock, timeout=1, shared=True), backup_lock.hold(lock, timeout=1, shared=True):
        pass


@pytest.mark.parametrize(("config", "expected"), [
    ({"backup_dir": "/b", "state_dir": "/s"}, "/s/lock"),
    ({"backup_dir": "/b"}, "/b/.state/lock"),
])
def test_the_lock_is_where_the_program_puts_it(config, expected):
    assert str(backup_lock.lock_path(config)) == expected


def test_an_unreadable_config_names_the_file(tmp_path):
    broken = tmp_path / "backup.json"
    broken.write_text("")
    with pytest.raises(ValueError, match=f"Cannot read the backup configuration {broken}"):
        backup_lock.load_config(broken)
