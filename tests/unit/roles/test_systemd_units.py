"""Every service unit and drop-in the roles ship is sandboxed from the one list
(plugins/module_utils/systemd_sandbox.py), and renders with the sandbox on and off.

Class of faults: a unit added without sandboxing, or with directives copied in by hand, fails here.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from ansible_collections.chajipoa.platform.plugins.module_utils import systemd_sandbox as sandbox

ROLES = Path(__file__).resolve().parents[3] / "roles"
# Units outside this list's reach, each with its reason.
ELSEWHERE = {
    # nftables loads the firewall as root with CAP_NET_ADMIN, a oneshot run at boot; the common role's
    # CIS baseline (issue 22's other bullets) decides its sandbox.
    "roles/common/templates/etc/systemd/system/nftables.service.d/chajipoa.conf.j2",
}
UNIT_TEMPLATES = sorted(str(path.relative_to(ROLES.parent)) for path in ROLES.glob("*/templates/**/*.j2")
                        if "[Service]" in path.read_text())
# The sandbox's own directives, which a unit template must not write by hand.
HAND_WRITTEN = re.compile(rf"^({'|'.join(sandbox.BASE)})=", re.MULTILINE)


def test_the_units_are_found():
    assert len(UNIT_TEMPLATES) >= 9


@pytest.mark.parametrize("template", [path for path in UNIT_TEMPLATES if path not in ELSEWHERE])
def test_every_unit_is_sandboxed_through_the_filter(template):
    text = (ROLES.parent / template).read_text()
    assert "chajipoa.platform.systemd_sandbox(" in text, "a unit without the sandbox"
    assert not HAND_WRITTEN.findall(text), "sandbox directives written by hand beside the filter's"
    named = re.findall(r"'([\w@.-]+\.service)' \| chajipoa\.platform\.systemd_sandbox", text)
    assert all(name in sandbox.UNITS for name in named)


def test_every_entry_has_its_unit():
    text = "\n".join((ROLES.parent / template).read_text() for template in UNIT_TEMPLATES)
    # Entries named by the template's destination (the backup verification's daily unit, the monitoring
    # drop-ins) are listed by the roles' vars.
    vars_text = "\n".join(path.read_text() for path in ROLES.glob("*/vars/main.yml"))
    for unit in sandbox.UNITS:
        stem = unit.removesuffix(".service").removesuffix("@")
        assert f"'{unit}'" in text or stem in vars_text, f"{unit} has an entry but no role writes it"


@pytest.mark.parametrize(("unit", "writes"), [("prometheus.service", ["/var/lib/prometheus"]),
                                              ("prometheus-node-exporter.service", [])])
def test_monitoring_drop_in_names_its_unit_from_its_path(unit, writes):
    from tests.unit.roles import rendering

    def render(**overrides):
        variables = {**rendering.role_variables("monitoring"), "template_destpath": f"/etc/systemd/system/{unit}.d/chajipoa.conf", **overrides}
        return rendering.render("monitoring", "etc/systemd/system/unit.service.d/chajipoa.conf.j2", variables)

    settings = [line for line in render().splitlines() if line and not line.startswith("#")]
    assert settings[0] == "[Service]" and "ProtectSystem=strict" in settings
    assert [line.split("=", 1)[1] for line in settings if line.startswith("ReadWritePaths=")] == writes
    assert sandbox.render(unit, {"ReadWritePaths": writes} if writes else {}).splitlines()[0] in render()
    assert [line for line in render(monitoring_systemd_sandbox=False).splitlines() if line and not line.startswith("#")] == ["[Service]"]
