"""A clock for unit tests of code that waits (mocks of time.monotonic and time.sleep)."""
from __future__ import annotations


class FakeClock:
    """Called, it gives the time; its sleep() moves the time on at once, never backwards."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds
