"""The broken releases deploy tests feed the gates (tests/releases.py), run by Node.js on this host:
each must be broken exactly as its name says and otherwise serve, or a deploy test refusing it
would prove nothing. The API's databases are closed ports here: only what the change does is
looked at (/api/version answers without them, /api/health names them down with 503)."""
from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration.test_reference_api import _installed_modules, _require
from tests.ports import free_port
from tests.releases import SLOW_MS, make_release


def start(release: Path) -> tuple[subprocess.Popen, str]:
    (release / "node_modules").symlink_to(_installed_modules(), target_is_directory=True)
    port = free_port()
    closed = free_port()
    env = {"PATH": os.environ["PATH"], "NODE_ENV": "development", "PORT": str(port), "HOST": "127.0.0.1",
           "DATABASE_URL": f"postgresql://api:secret@127.0.0.1:{closed}/api", "REDIS_URL": f"redis://127.0.0.1:{closed}"}
    process = subprocess.Popen([_require("node"), "."], cwd=release, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    return process, f"http://127.0.0.1:{port}"


def get(url: str) -> tuple[int, bytes, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read(), time.monotonic() - started
    except urllib.error.HTTPError as error:
        return error.code, error.read(), time.monotonic() - started


def wait_listening(process: subprocess.Popen, base: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            get(f"{base}/api/version")
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail("the release did not listen within 20 s")


@pytest.fixture
def running(tmp_path):
    processes = []

    def run(version: str, fault: str | None = None) -> tuple[subprocess.Popen, str]:
        process, base = start(make_release(tmp_path, version, fault))
        processes.append(process)
        return process, base
    yield run
    for process in processes:
        process.kill()
        process.wait()


def test_a_new_version_serves_its_version(running):
    process, base = running("1.0.1")
    wait_listening(process, base)
    status, body, _taken = get(f"{base}/api/version")
    assert status == 200 and b'"version":"1.0.1"' in body


def test_the_crashing_release_exits_at_start(running):
    process, _base = running("1.0.2", "crash")
    assert process.wait(timeout=20) == 1
    assert "built to crash" in process.stdout.read()


def test_the_unhealthy_release_answers_500_on_its_health_only(running):
    process, base = running("1.0.3", "unhealthy")
    wait_listening(process, base)
    status, body, _taken = get(f"{base}/api/health")
    assert status == 500 and b"built to fail its health" in body
    assert get(f"{base}/api/version")[0] == 200


def test_the_slow_release_answers_every_request_late(running):
    process, base = running("1.0.4", "slow")
    wait_listening(process, base)
    for _request in range(3):
        status, body, taken = get(f"{base}/api/version")
        assert status == 200 and b'"version":"1.0.4"' in body and taken >= SLOW_MS / 1000


def test_a_change_that_no_longer_applies_is_refused(tmp_path, monkeypatch):
    from tests import releases
    monkeypatch.setitem(releases._CHANGES, "slow", ("src/app.js", "a line the app does not have\n", ""))
    with pytest.raises(ValueError, match="no longer has the line"):
        make_release(tmp_path, "1.0.5", "slow")
