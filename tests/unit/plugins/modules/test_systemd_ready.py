"""Unit tests of systemd_ready's logic, with a fake clock and scripted states (no systemd)."""
from __future__ import annotations

import pytest

from ansible_collections.chajipoa.platform.plugins.modules import systemd_ready
from tests.unit.fake_clock import FakeClock


def scripted(states: list[str]):
    remaining = iter(states)
    last = states[-1]
    return lambda: next(remaining, last)


@pytest.mark.parametrize(
    ("state", "accept_degraded", "expected"),
    [
        ("running", True, True),
        ("running", False, True),
        ("degraded", True, True),
        ("degraded", False, False),
        ("starting", True, False),
        ("maintenance", True, False),
        ("offline", True, False),
    ],
)
def test_ready(state, accept_degraded, expected):
    assert systemd_ready.ready(state, accept_degraded) is expected


def test_waits_through_boot_states_then_returns():
    clock = FakeClock()
    state, elapsed = systemd_ready.wait_for_boot(
        scripted(["initializing", "starting", "starting", "running"]), timeout=10, clock=clock, sleep=clock.sleep
    )
    assert state == "running"
    assert elapsed == pytest.approx(3 * systemd_ready.POLL_SECONDS)


def test_returns_a_final_state_at_once():
    clock = FakeClock()
    assert systemd_ready.wait_for_boot(scripted(["degraded"]), timeout=10, clock=clock, sleep=clock.sleep) == ("degraded", 0.0)


def test_gives_up_at_the_timeout():
    clock = FakeClock()
    state, elapsed = systemd_ready.wait_for_boot(scripted(["starting"]), timeout=2, clock=clock, sleep=clock.sleep)
    assert state == "starting"
    assert 2 <= elapsed < 2 + systemd_ready.POLL_SECONDS
