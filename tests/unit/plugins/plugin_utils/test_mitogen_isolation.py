"""The host's interpreter makes no copy for isolated calls as it starts; the first isolated call
starts one interpreter, and every isolated call is forked there. Mitogen's functions are replaced
here by test doubles of ansible_mitogen.target and of a Mitogen context (mocks, for the wrapper's
logic only); tests/integration/test_mitogen_strategy.py runs the real ones on a lab host."""
from __future__ import annotations

import types

import ansible_mitogen.target
import mitogen.parent
import pytest

from ansible_collections.chajipoa.platform.plugins.plugin_utils import mitogen_isolation


class StartedInterpreterDouble:
    """A context Mitogen's local method started: records the calls it is given."""

    def __init__(self):
        self.calls = []

    def call(self, function, *args):
        self.calls.append(function)
        return f"fork {len(self.calls)}"


@pytest.fixture()
def target(monkeypatch):
    """ansible_mitogen.target with Mitogen's init_child and spawn_isolated_child replaced by doubles
    that report what they saw, then wrapped as the strategy's first call wraps them."""
    seen = types.SimpleNamespace(fork_supported=[], started=[])

    def init_child(econtext, log_level, candidate_temp_dirs):
        seen.fork_supported.append(ansible_mitogen.target.FORK_SUPPORTED)
        return {"fork_context": None, "home_dir": "/root", "good_temp_dir": "/tmp"}

    init_child.mitogen_takes_econtext = True

    def spawn_isolated_child(econtext):
        raise AssertionError("Mitogen's own spawn_isolated_child runs in the started interpreter, not here")

    def local():
        seen.started.append(StartedInterpreterDouble())
        return seen.started[-1]

    monkeypatch.setattr(ansible_mitogen.target, "init_child", init_child)
    monkeypatch.setattr(ansible_mitogen.target, "spawn_isolated_child", spawn_isolated_child)
    monkeypatch.setattr(ansible_mitogen.target, "FORK_SUPPORTED", True)
    monkeypatch.setattr(mitogen.parent, "upgrade_router", lambda econtext: None)
    mitogen_isolation.start_clean_interpreter_on_demand()
    seen.econtext = types.SimpleNamespace(router=types.SimpleNamespace(local=local))
    seen.fork_isolated = spawn_isolated_child
    return seen


def test_the_interpreter_starts_without_a_copy_and_forks_stay_supported(target):
    result = ansible_mitogen.target.init_child(target.econtext, log_level=20, candidate_temp_dirs=["/tmp"])
    assert result["fork_context"] is None
    assert target.fork_supported == [False]
    assert ansible_mitogen.target.FORK_SUPPORTED is True
    # Mitogen's dispatcher passes the context to functions marked so; the mark must survive the wrapping.
    assert ansible_mitogen.target.init_child.mitogen_takes_econtext is True


def test_isolated_calls_start_one_interpreter_and_fork_each_call_there(target):
    forks = [ansible_mitogen.target.spawn_isolated_child(target.econtext) for _call in range(3)]
    assert forks == ["fork 1", "fork 2", "fork 3"]
    [started] = target.started
    assert started.calls == [target.fork_isolated] * 3


def test_no_interpreter_is_started_without_an_isolated_call(target):
    ansible_mitogen.target.init_child(target.econtext, log_level=20, candidate_temp_dirs=[])
    assert target.started == []
