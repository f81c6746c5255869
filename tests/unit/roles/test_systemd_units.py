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
UNIT_TEMPLATES = sorted(str(path.relative_to(ROLES.parent)) for path in ROLES.glob("*/templates/**/*.j2")
                        if "[Service]" in path.read_text())
# The sandbox's own directives, which a unit template must not write by hand.
HAND_WRITTEN = re.compile(rf"^({'|'.join(sandbox.BASE)})=", re.MULTILINE)


def test_the_units_are_found():
    assert len(UNIT_TEMPLATES) >= 9


@pytest.mark.parametrize("template", UNIT_TEMPLATES)
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
    for unit in filter(sandbox.sandboxed, sandbox.UNITS):
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


COMMON_DROP_IN = "etc/systemd/system/unit.service.d/chajipoa.conf.j2"


def render_common_drop_in(unit, **overrides):
    from tests.unit.roles import rendering
    variables = {**rendering.role_variables("common"), "template_destpath": f"/etc/systemd/system/{unit}.d/chajipoa.conf", **overrides}
    return rendering.render("common", COMMON_DROP_IN, variables)


def test_every_drop_in_the_common_role_writes_has_its_entry():
    from tests.unit.roles import rendering
    written = set()
    for path in [*(ROLES / "common" / "tasks").glob("*.yml"), ROLES / "common" / "vars" / "main.yml"]:
        written |= set(re.findall(r"dest: /etc/systemd/system/([\w@.-]+\.service)\.d/chajipoa\.conf\n", path.read_text()))
    generated = rendering.render("common", "{{ _common_sysstat_drop_in_files }}", rendering.role_variables("common"))
    written |= {entry["dest"].split("/")[4].removesuffix(".d") for entry in generated if entry["dest"].endswith("/chajipoa.conf")}
    assert written == set(rendering.role_variables("common")["_common_drop_ins"])
    assert all(render_common_drop_in(unit).count("# No sandbox") == (not sandbox.sandboxed(unit)) for unit in written)


@pytest.mark.parametrize("unit", ["nftables.service", "acct.service", "sysstat-collect.service", "systemd-journal-upload.service",
                                  "auditd.service"])
def test_a_common_drop_in_keeps_its_own_lines_beside_the_sandbox(unit):
    text = render_common_drop_in(unit)
    settings = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert settings.count("[Service]") == 1
    assert sandbox.render(unit).splitlines()[-1] in (settings if sandbox.sandboxed(unit) else text.splitlines())
    service = settings[settings.index("[Service]") + 1:]
    if unit == "nftables.service":
        assert service[:2] == ["ExecStart=", "ExecStart=/usr/local/sbin/chajipoa-firewall load"]
        assert "CapabilityBoundingSet=CAP_NET_ADMIN" in service
    if unit == "acct.service":
        assert settings[:2] == ["[Unit]", "ConditionCapability=CAP_SYS_PACCT"]
        assert not [line for line in service if line.startswith(("ProtectSystem=", "ReadWritePaths=", "PrivateTmp="))]
    if unit == "sysstat-collect.service":
        assert "ReadWritePaths=/var/log/sysstat" in service
    if unit == "auditd.service":
        assert settings == ["[Unit]", "ConditionCapability=CAP_AUDIT_CONTROL", "[Service]"]
    if unit == "systemd-journal-upload.service":
        assert "StartLimitIntervalSec=0" in settings[:settings.index("[Service]")] and "Restart=always" in service
    off = [line for line in render_common_drop_in(unit, common_systemd_sandbox=False).splitlines() if line and not line.startswith("#")]
    assert not [line for line in off if line.split("=")[0] in sandbox.BASE]
