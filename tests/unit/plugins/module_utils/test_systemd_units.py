"""Unit tests of systemd_units' logic (plugins/module_utils/systemd_units.py) on recorded systemctl
output: parsing `show` and `is-enabled --full`, refusals, systemd_service's enablement verdicts, the
plans, the batches and the reported (or, in check mode, predicted) state. No systemd, no mocks.
A real systemd: tests/integration/test_systemd_units.py."""
from __future__ import annotations

import pytest

from ansible_collections.chajipoa.platform.plugins.module_utils.systemd_units import (
    EnabledState,
    Status,
    UnitsError,
    Wish,
    batches,
    check_usable,
    enabled_from_show,
    is_enabled,
    is_enabled_command,
    needs_sysv_check,
    parse_is_enabled,
    parse_show,
    plan,
    report,
    show_command,
    unit_name,
    wishes,
)

# `systemctl show --property=Id,LoadState,ActiveState,SubState,UnitFileState,LoadError` for four
# units, recorded from systemd 252 (Debian 12): an instance, a missing unit, a masked one, an alias.
SHOW = """\
Id=demo@one.service
LoadState=loaded
ActiveState=inactive
SubState=dead
UnitFileState=disabled
LoadError=

Id=nosuch.service
LoadState=not-found
ActiveState=inactive
SubState=dead
UnitFileState=
LoadError=org.freedesktop.systemd1.NoSuchUnit "Unit nosuch.service not found."

Id=sudo.service
LoadState=masked
ActiveState=inactive
SubState=dead
UnitFileState=masked
LoadError=org.freedesktop.systemd1.UnitMasked "Unit sudo.service is masked."

Id=systemd-modules-load.service
LoadState=loaded
ActiveState=active
SubState=exited
UnitFileState=static
LoadError=
"""
SHOW_NAMES = ["demo@one.service", "nosuch.service", "sudo.service", "kmod.service"]

# `systemctl is-enabled --full ue uealias kmod ua demo@two` (ue enabled with Alias=uealias.service).
IS_ENABLED = """\
enabled
  /etc/systemd/system/multi-user.target.wants/ue.service
  /etc/systemd/system/uealias.service
alias
  /etc/systemd/system/multi-user.target.wants/ue.service
  /etc/systemd/system/uealias.service
alias
disabled
enabled
  /etc/systemd/system/multi-user.target.wants/demo@two.service
"""


def status(active: str = "inactive", unit_file_state: str = "disabled", load_state: str = "loaded",
           unit_id: str = "demo.service", load_error: str = "") -> Status:
    return Status(id=unit_id, load_state=load_state, active_state=active, unit_file_state=unit_file_state,
                  load_error=load_error)


# -- names ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("cron", "cron.service"),
        ("cron.service", "cron.service"),
        ("postgresql@15-main", "postgresql@15-main.service"),
        ("postgresql@15-main.service", "postgresql@15-main.service"),
        ("fstrim.timer", "fstrim.timer"),
        ("docker.socket", "docker.socket"),
        ("multi-user.target", "multi-user.target"),
        ("node.exporter", "node.exporter.service"),
    ],
)
def test_unit_name_adds_service_where_no_type_is_given(given, name):
    assert unit_name(given) == name


def test_wishes_keep_the_order_and_the_given_name():
    result = wishes([{"name": "b", "enabled": True, "state": "started"}, {"name": "a.timer", "enabled": None, "state": None}])
    assert result == [Wish("b.service", "b", True, "started"), Wish("a.timer", "a.timer", None, None)]


@pytest.mark.parametrize(
    ("units", "named", "words"),
    [
        ([{"name": "cron*"}], ["cron*"], "Glob"),
        ([{"name": "a"}, {"name": "a.service"}], ["a.service"], "more than once"),
        ([{"name": "demo@.service"}], ["demo@.service"], "template"),
        ([{"name": "demo@"}], ["demo@.service"], "template"),
        ([{"name": "a", "state": "restarted"}], ["a.service"], "started, stopped"),
        ([{"name": " "}], [], "empty name"),
    ],
)
def test_wishes_refuse_what_systemctl_cannot_act_on(units, named, words):
    with pytest.raises(UnitsError, match=words) as raised:
        wishes(units)
    assert raised.value.units == named


# -- systemctl show -------------------------------------------------------------------------------
def test_show_command_reads_every_unit_in_one_process():
    assert show_command("/bin/systemctl", ["a.service", "b.service"]) == [
        "/bin/systemctl", "show", "--property=Id,LoadState,ActiveState,SubState,UnitFileState,LoadError", "--",
        "a.service", "b.service"]


def test_parse_show_reads_the_blocks_in_order():
    statuses = parse_show(SHOW, SHOW_NAMES)
    assert [s.id for s in statuses] == ["demo@one.service", "nosuch.service", "sudo.service",
                                        "systemd-modules-load.service"]
    assert [s.load_state for s in statuses] == ["loaded", "not-found", "masked", "loaded"]
    assert statuses[0] == Status(id="demo@one.service", load_state="loaded", active_state="inactive",
                                 sub_state="dead", unit_file_state="disabled", load_error="")
    assert statuses[1].load_error.startswith("org.freedesktop.systemd1.NoSuchUnit")
    assert statuses[3].running


def test_parse_show_takes_an_instance_with_an_empty_unit_file_state():
    out = "Id=postgresql@15-main.service\nLoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=\n"
    (unit,) = parse_show(out, ["postgresql@15-main.service"])
    assert unit.unit_file_state == ""
    assert unit.running


def test_parse_show_refuses_a_block_count_that_differs():
    with pytest.raises(UnitsError, match="printed 4 blocks for 3 units"):
        parse_show(SHOW, SHOW_NAMES[:3])


def test_parse_show_ignores_extra_blank_lines():
    out = "\nId=a.service\nLoadState=loaded\nActiveState=active\n\n\nId=b.service\nLoadState=loaded\nActiveState=failed\n\n"
    assert [s.active_state for s in parse_show(out, ["a.service", "b.service"])] == ["active", "failed"]


# -- refusals -------------------------------------------------------------------------------------
def test_check_usable_names_every_missing_unit():
    wanted = [Wish(n, n) for n in SHOW_NAMES]
    with pytest.raises(UnitsError, match="Could not find the requested unit: nosuch.service") as raised:
        check_usable(wanted, parse_show(SHOW, SHOW_NAMES))
    assert raised.value.units == ["nosuch.service"]


@pytest.mark.parametrize(("enabled", "state"), [(True, None), (None, "started"), (True, "started")])
def test_check_usable_refuses_to_start_or_enable_a_masked_unit(enabled, state):
    with pytest.raises(UnitsError, match="Masked.*sudo.service") as raised:
        check_usable([Wish("sudo.service", "sudo", enabled, state)], [status(load_state="masked", unit_file_state="masked")])
    assert raised.value.units == ["sudo.service"]


@pytest.mark.parametrize(("enabled", "state"), [(False, None), (None, "stopped"), (None, None), (False, "stopped")])
def test_check_usable_lets_a_masked_unit_be_stopped_or_disabled(enabled, state):
    check_usable([Wish("sudo.service", "sudo", enabled, state)], [status(load_state="masked", unit_file_state="masked")])


def test_check_usable_refuses_a_unit_file_that_does_not_load():
    broken = status(load_state="bad-setting", load_error='org.freedesktop.systemd1.BadUnitSetting "bad"')
    with pytest.raises(UnitsError, match="Error loading unit file 'demo.service'"):
        check_usable([Wish("demo.service", "demo")], [broken])


# -- enablement -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("state", "detailed", "enabled"),
    [
        # systemd_service: exit 0 is enabled, except enabled-runtime, indirect and alias printed alone.
        ("enabled", True, True),
        ("enabled", False, True),
        ("static", False, True),
        ("generated", False, True),
        ("transient", False, True),
        ("enabled-runtime", False, False),
        ("indirect", False, False),
        ("alias", False, False),
        # With symlinks printed under them (is-enabled -l), systemd_service's comparison misses them.
        ("alias", True, True),
        ("indirect", True, True),
        # Non-zero exit.
        ("disabled", False, False),
        ("masked", False, False),
        ("linked", False, False),
        ("bad", False, False),
    ],
)
def test_is_enabled_judges_as_systemd_service(state, detailed, enabled):
    assert is_enabled(EnabledState(state, detailed)) is enabled


def test_is_enabled_asks_sysv_only_on_a_non_zero_exit_not_ending_in_disabled():
    assert needs_sysv_check(EnabledState("masked"))
    assert is_enabled(EnabledState("masked"), sysv_enabled=True)
    assert not needs_sysv_check(EnabledState("disabled"))
    assert not is_enabled(EnabledState("disabled"), sysv_enabled=True)
    assert not needs_sysv_check(EnabledState("static"))


@pytest.mark.parametrize(
    ("wish_name", "unit", "from_show"),
    [
        ("demo.service", status(unit_file_state="enabled"), EnabledState("enabled")),
        ("demo.service", status(unit_file_state="disabled"), EnabledState("disabled")),
        ("demo.service", status(unit_file_state="static"), EnabledState("static")),
        ("demo.service", status(unit_file_state="masked", load_state="masked"), EnabledState("masked")),
        # is-enabled only: an alias name, an empty state (instances on some systemd), and the states
        # whose verdict depends on is-enabled's symlink lines or on SysV scripts.
        ("kmod.service", status(unit_file_state="static", unit_id="systemd-modules-load.service"), None),
        ("demo.service", status(unit_file_state=""), None),
        ("demo.service", status(unit_file_state="indirect"), None),
        ("demo.service", status(unit_file_state="alias"), None),
        ("demo.service", status(unit_file_state="enabled-runtime"), None),
        ("demo.service", status(unit_file_state="generated"), None),
    ],
)
def test_enabled_from_show_only_where_show_is_conclusive(wish_name, unit, from_show):
    assert enabled_from_show(Wish(wish_name, wish_name, True), unit) == from_show


def test_an_instance_with_its_state_in_show_needs_no_is_enabled():
    (unit,) = parse_show(SHOW.split("\n\n", maxsplit=1)[0], ["demo@one.service"])
    assert enabled_from_show(Wish("demo@one.service", "demo@one", True), unit) == EnabledState("disabled")


def test_parse_is_enabled_reads_a_state_per_unit_with_its_symlink_lines():
    names = ["ue.service", "uealias.service", "kmod.service", "ua.service", "demo@two.service"]
    assert is_enabled_command("systemctl", names) == ["systemctl", "is-enabled", "--full", "--", *names]
    assert parse_is_enabled(IS_ENABLED, names) == [
        EnabledState("enabled", True), EnabledState("alias", True), EnabledState("alias"),
        EnabledState("disabled"), EnabledState("enabled", True)]
    assert [is_enabled(s) for s in parse_is_enabled(IS_ENABLED, names)] == [True, True, False, False, True]


def test_parse_is_enabled_refuses_a_short_answer():
    # systemctl stops at the first unit it cannot read.
    with pytest.raises(UnitsError, match="printed 1 states for 2 units"):
        parse_is_enabled("disabled\n", ["ua.service", "nosuch.service"])


# -- plans, batches, results ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("wish", "unit", "enabled", "actions", "after"),
    [
        (Wish("a.service", "a", True, "started"), status(), False, ["enable", "start"], (True, True)),
        (Wish("a.service", "a", True, "started"), status("active"), True, [], (True, True)),
        (Wish("a.service", "a", True, "started"), status("activating"), True, [], (True, True)),
        (Wish("a.service", "a", True, "started"), status("deactivating"), True, ["start"], (True, True)),
        (Wish("a.service", "a", True, "started"), status("failed"), True, ["start"], (True, True)),
        (Wish("a.service", "a", False, "stopped"), status("active"), True, ["disable", "stop"], (False, False)),
        (Wish("a.service", "a", False, "stopped"), status("deactivating"), False, ["stop"], (False, False)),
        (Wish("a.service", "a", False, "stopped"), status("failed"), False, [], (False, False)),
        (Wish("a.service", "a", None, "stopped"), status(), None, [], (None, False)),
        (Wish("a.service", "a", True, None), status("active"), False, ["enable"], (True, True)),
        (Wish("a.service", "a"), status("active"), None, [], (None, True)),
    ],
)
def test_plan_takes_systemd_services_actions(wish, unit, enabled, actions, after):
    result = plan(wish, unit, enabled)
    assert result.actions == actions
    assert (result.enabled_after, result.active_after) == after
    assert (result.enabled_before, result.active_before) == (enabled, unit.running)


def test_batches_one_systemctl_per_verb_enablement_first():
    plans = [
        plan(Wish("a.service", "a", True, "started"), status(), False),
        plan(Wish("b.service", "b", False, "stopped"), status("active"), True),
        plan(Wish("c.service", "c", True, "started"), status("active"), True),
        plan(Wish("d.service", "d", True, "started"), status(), False),
    ]
    assert batches(plans) == [("enable", ["a.service", "d.service"]), ("disable", ["b.service"]),
                              ("start", ["a.service", "d.service"]), ("stop", ["b.service"])]


def test_nothing_to_do_is_no_batch_and_unchanged():
    plans = [plan(Wish("a.service", "a", True, "started"), status("active"), True)]
    assert batches(plans) == []
    assert report(plans, []) == [{"name": "a.service", "enabled": True, "active": True, "changed": False, "actions": []}]


def test_check_mode_reports_the_predicted_state():
    # In check mode the module marks every batch done without running it: the result is the prediction.
    plans = [plan(Wish("a.service", "a", True, "started"), status(), False),
             plan(Wish("b.service", "b", None, "stopped"), status("active"), None),
             plan(Wish("c.service", "c", True, None), status("active"), True)]
    done = [verb for verb, _units in batches(plans)]
    assert report(plans, done) == [
        {"name": "a.service", "enabled": True, "active": True, "changed": True, "actions": ["enable", "start"]},
        {"name": "b.service", "enabled": None, "active": False, "changed": True, "actions": ["stop"]},
        {"name": "c.service", "enabled": True, "active": True, "changed": False, "actions": []},
    ]


def test_a_failed_batch_reports_only_what_ran_before_it():
    plans = [plan(Wish("a.service", "a", True, "started"), status(), False)]
    assert report(plans, ["enable"]) == [
        {"name": "a.service", "enabled": True, "active": False, "changed": True, "actions": ["enable"]}]
