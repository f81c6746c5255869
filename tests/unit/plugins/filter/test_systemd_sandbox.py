"""Unit tests of the systemd_sandbox filter and of the one list it writes from."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.chajipoa.platform.plugins.filter.systemd_sandbox import FilterModule
from ansible_collections.chajipoa.platform.plugins.module_utils import systemd_sandbox as sandbox

systemd_sandbox = FilterModule().filters()["systemd_sandbox"]


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_a_unit_gets_the_base_set_and_its_limit_as_a_comment():
    text = systemd_sandbox("prometheus-redis-exporter.service")
    assert text.startswith("# Sandbox (plugins/module_utils/systemd_sandbox.py): systemd-analyze security exposure at most 4.0.")
    assert "ProtectSystem=strict" in lines(text)
    assert "CapabilityBoundingSet=" in lines(text)
    assert lines(text).count("SystemCallFilter=@system-service") == 1
    assert "SystemCallFilter=~@privileged @resources" in lines(text)


def test_a_directive_left_out_carries_its_reason():
    text = systemd_sandbox("app@.service")
    assert not any(line.startswith("MemoryDenyWriteExecute=") for line in lines(text))
    assert "# No MemoryDenyWriteExecute: V8 (Node.js) compiles JavaScript into executable memory." in text


def test_one_reason_for_several_directives_names_each():
    text = systemd_sandbox("acct.service")
    assert not any(line.startswith(("ProtectSystem=", "PrivateTmp=", "ProcSubset=")) for line in lines(text))
    assert "# No ProtectSystem, ProtectHome, PrivateTmp," in text
    assert "SystemCallFilter=acct" in lines(text)


def test_a_unit_run_as_shipped_gets_its_reason_and_no_directive():
    text = systemd_sandbox("auditd.service")
    assert lines(text) == []
    assert text.startswith("# No sandbox (plugins/module_utils/systemd_sandbox.py): systemd-analyze security exposure 8.7,")
    assert "auditd controls the kernel's audit subsystem" in text


def test_a_limit_above_ok_carries_its_reason(monkeypatch):
    monkeypatch.setitem(sandbox.UNITS, "root.service", {"limit": 6.5, "reason": "it must run as root"})
    text = systemd_sandbox("root.service")
    assert "exposure at most 6.5" in text
    assert "# Above 4.0 because it must run as root." in text


def test_a_note_explains_other_departures():
    assert "# nginx's master runs as root" in systemd_sandbox("nginx.service")


@pytest.mark.parametrize("unit", ["chajipoa-backup@daily.service", "chajipoa-backup@.service"])
def test_an_instance_is_its_template(unit):
    assert sandbox.limit(unit) == sandbox.limit("chajipoa-backup@.service")
    assert systemd_sandbox(unit) == systemd_sandbox("chajipoa-backup@.service")


def test_the_roles_directives_win_lists_are_one_line_each_and_null_leaves_out():
    text = systemd_sandbox("prometheus.service", {"ReadWritePaths": ["/var/lib/prometheus", "/srv/tsdb"], "UMask": "0027",
                                                  "ProcSubset": None, "PrivateNetwork": True})
    assert lines(text)[-3:] == ["ReadWritePaths=/var/lib/prometheus", "ReadWritePaths=/srv/tsdb", "PrivateNetwork=yes"]
    assert "UMask=0027" in lines(text) and "UMask=0077" not in lines(text)
    assert not any(line.startswith("ProcSubset=") for line in lines(text))


def test_disabled_writes_no_directive():
    text = systemd_sandbox("pgbouncer.service", {}, False)
    assert lines(text) == []
    assert "Sandbox off" in text


@pytest.mark.parametrize(
    ("unit", "directives", "enabled", "message"),
    [
        ("unknown.service", {}, True, "has no entry"),
        ("unknown.service", {}, False, "has no entry"),
        ("pgbouncer.service", {"ReadWritePaths": "/srv\nExecStartPre=/bin/sh"}, True, "control character or a line break"),
        ("pgbouncer.service", {"Bad Name": "x"}, True, "not a systemd directive name"),
        ("pgbouncer.service", ["ProtectSystem"], True, "must be a dict"),
        ("pgbouncer.service", {}, "yes", "must be true or false"),
        ("", {}, True, "must be a unit name"),
        ("ssh.service", {"ProtectSystem": "full"}, True, "runs as Debian ships it, because every login session"),
    ],
)
def test_faults_are_refused(unit, directives, enabled, message):
    with pytest.raises(AnsibleFilterError, match=message):
        systemd_sandbox(unit, directives, enabled)


@pytest.mark.parametrize("unit", sorted(sandbox.UNITS))
def test_every_entry_says_why(unit):
    entry = sandbox.UNITS[unit]
    assert set(entry) <= {"limit", "reason", "note", "directives", "why", "as_shipped"}
    assert sandbox.limit(unit) <= sandbox.DEFAULT_LIMIT or entry.get("reason") or entry.get("as_shipped"), \
        "a limit above 4.0 needs its reason"
    assert not (entry.get("as_shipped") and set(entry) & {"directives", "why", "reason"}), "a unit run as shipped has no sandbox"
    left_out = {key for key, value in entry.get("directives", {}).items() if value is None}
    explained = [key for keys in entry.get("why", {}) for key in keys.split()]
    assert sorted(left_out) == sorted(explained), "every directive left out, and only those, has its reason, once"
    assert set(left_out) <= set(sandbox.BASE)
