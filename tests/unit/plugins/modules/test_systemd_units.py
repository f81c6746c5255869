"""Unit tests of systemd_units' daemon-reload failure path, with a fake module (no systemd)."""
from __future__ import annotations

import pytest

from ansible_collections.chajipoa.platform.plugins.module_utils.systemd_units import UnitsError
from ansible_collections.chajipoa.platform.plugins.modules import systemd_units


class FakeModule:
    """Stands in for AnsibleModule: daemon-reload fails, warnings are collected."""

    def __init__(self):
        self.params = {"units": [], "daemon_reload": True}
        self.check_mode = False
        self.warnings: list[str] = []

    def run_command(self, argv):
        assert argv == ["systemctl", "daemon-reload"]
        return 1, "", "System has not been booted with systemd"

    def warn(self, message):
        self.warnings.append(message)


@pytest.fixture
def outside_chroot(monkeypatch):
    monkeypatch.delenv("debian_chroot", raising=False)
    monkeypatch.delenv("SYSTEMD_OFFLINE", raising=False)
    monkeypatch.setattr("ansible.module_utils.facts.system.chroot.is_chroot", lambda module=None: False)


def test_a_failed_daemon_reload_fails_the_task(outside_chroot):
    with pytest.raises(UnitsError, match="failure 1 during daemon-reload: System has not been booted"):
        systemd_units.converge(FakeModule(), "systemctl", [], [])


def test_a_failed_daemon_reload_with_systemd_offline_warns(outside_chroot, monkeypatch):
    monkeypatch.setenv("SYSTEMD_OFFLINE", "1")
    module = FakeModule()
    systemd_units.converge(module, "systemctl", [], [])
    assert len(module.warnings) == 1 and "chroot or systemd is offline" in module.warnings[0]


def test_a_failed_daemon_reload_in_a_chroot_warns(monkeypatch):
    """Ansible's own chroot check, which takes Debian's debian_chroot variable for a chroot."""
    monkeypatch.delenv("SYSTEMD_OFFLINE", raising=False)
    monkeypatch.setenv("debian_chroot", "build")
    module = FakeModule()
    systemd_units.converge(module, "systemctl", [], [])
    assert len(module.warnings) == 1 and "chroot or systemd is offline" in module.warnings[0]
