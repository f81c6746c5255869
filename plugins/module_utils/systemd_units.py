# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""The systemd_units module's logic, as pure functions over systemctl's output.

The module reads every unit with one `systemctl show`, asks `systemctl is-enabled` (once, for all of
them) only about the units whose `show` output does not settle the enablement, plans each unit's
actions, and runs one systemctl process per action for all units that need it.

Enablement follows ansible.builtin.systemd_service (ansible-core 2.19), which runs
`systemctl is-enabled <unit> -l` and counts a unit as enabled when that exits 0, except when the
whole output is `enabled-runtime`, `indirect` or `alias`: so `static`, `generated` and `transient`
count as enabled, and an `alias` or `indirect` unit that --full (-l) prints symlinks for counts as
enabled too. A non-zero exit counts as disabled, unless the name as given has a SysV init script
enabled in some runlevel and the output does not end in `disabled`.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

# What systemctl takes as a unit name's type; a name ending otherwise means NAME.service.
UNIT_SUFFIXES = (".service", ".socket", ".target", ".device", ".mount", ".automount", ".swap", ".timer",
                 ".path", ".slice", ".scope")
SHOW_PROPERTIES = ("Id", "LoadState", "ActiveState", "SubState", "UnitFileState", "LoadError")
STATES = ("started", "stopped")
# systemd_service's judgement of ActiveState.
RUNNING = frozenset({"active", "activating"})
DEACTIVATING = frozenset({"deactivating"})
# The states `systemctl is-enabled` exits 0 for (systemctl(1)); every other state exits non-zero.
IS_ENABLED_RC0 = frozenset({"enabled", "enabled-runtime", "alias", "static", "indirect", "generated", "transient"})
# Exit 0, yet not enabled for systemd_service, when `is-enabled -l` prints the state alone.
NOT_ENABLED_WHEN_ALONE = frozenset({"enabled-runtime", "indirect", "alias"})
# UnitFileState values of `show` that are what `is-enabled` prints for the same name and cannot get
# symlink lines that would change systemd_service's verdict; others (empty for an instance on some
# systemd versions, generated for SysV scripts, alias, indirect, ...) are asked of `is-enabled`.
SHOW_CONCLUSIVE = frozenset({"enabled", "disabled", "static", "masked"})
# The order the batches run in: enablement first, then the run state.
VERBS = ("enable", "disable", "start", "stop")


class UnitsError(Exception):
    """A reason to fail the module; .units names the units concerned."""

    def __init__(self, msg: str, units: Sequence[str] = ()):
        super().__init__(msg)
        self.msg = msg
        self.units = list(units)


@dataclass(frozen=True)
class Wish:
    """One entry of the module's units option: name normalised, given as the task wrote it."""

    name: str
    given: str
    enabled: Optional[bool] = None
    state: Optional[str] = None


@dataclass(frozen=True)
class Status:
    """One unit's block of `systemctl show`."""

    id: str
    load_state: str
    active_state: str
    sub_state: str = ""
    unit_file_state: str = ""
    load_error: str = ""

    @property
    def running(self) -> bool:
        return self.active_state in RUNNING


@dataclass(frozen=True)
class EnabledState:
    """What `systemctl is-enabled -l` printed for one unit: the state, and whether lines followed it."""

    state: str
    detailed: bool = False


@dataclass
class Plan:
    """A unit's actions (in VERBS order) and its enablement and run state before and after them."""

    name: str
    actions: list[str] = field(default_factory=list)
    enabled_before: Optional[bool] = None
    enabled_after: Optional[bool] = None
    active_before: bool = False
    active_after: bool = False


# -- names ----------------------------------------------------------------------------------------
def unit_name(name: str) -> str:
    """The unit name systemctl acts on: NAME.service unless NAME ends in a unit type."""
    name = name.strip()
    return name if name.endswith(UNIT_SUFFIXES) else f"{name}.service"


def is_template(name: str) -> bool:
    """A template without an instance (demo@.service), which cannot be started or enabled as it is."""
    return name.rsplit(".", 1)[0].endswith("@")


def wishes(units: Iterable[Mapping[str, Any]]) -> list[Wish]:
    """The module's units option as Wishes, in order; UnitsError for a name systemctl cannot act on
    or a unit listed twice."""
    result: list[Wish] = []
    seen: set[str] = set()
    for entry in units:
        given = entry["name"]
        if not given or not given.strip():
            raise UnitsError("A unit has an empty name")
        for pattern in ("*", "?", "["):
            if pattern in given:
                raise UnitsError(f"Glob patterns are not supported, found '{pattern}' in unit name: {given}", [given])
        name = unit_name(given)
        if is_template(name):
            raise UnitsError(f"{name} is a template: name an instance of it, such as {name.replace('@.', '@NAME.', 1)}",
                             [name])
        if name in seen:
            raise UnitsError(f"{name} is listed more than once", [name])
        seen.add(name)
        state = entry.get("state")
        if state is not None and state not in STATES:
            raise UnitsError(f"state of {name} must be one of {', '.join(STATES)}, not {state}", [name])
        result.append(Wish(name=name, given=given, enabled=entry.get("enabled"), state=state))
    return result


# -- systemctl output -----------------------------------------------------------------------------
def show_command(systemctl: str, names: Sequence[str]) -> list[str]:
    return [systemctl, "show", f"--property={','.join(SHOW_PROPERTIES)}", "--", *names]


def parse_show(out: str, names: Sequence[str]) -> list[Status]:
    """`systemctl show` output for the units named, in that order: one block of KEY=VALUE lines per
    unit, blocks separated by a blank line. UnitsError when the count of blocks differs."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in out.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition("=")
        if sep:
            current[key] = value.strip()
    if current:
        blocks.append(current)
    if len(blocks) != len(names):
        raise UnitsError(f"systemctl show printed {len(blocks)} blocks for {len(names)} units: {', '.join(names)}",
                         names)
    statuses = []
    for name, block in zip(names, blocks):
        if "LoadState" not in block or "ActiveState" not in block:
            raise UnitsError(f"systemctl show printed no LoadState or ActiveState for {name}", [name])
        statuses.append(Status(id=block.get("Id", name), load_state=block["LoadState"],
                               active_state=block["ActiveState"], sub_state=block.get("SubState", ""),
                               unit_file_state=block.get("UnitFileState", ""),
                               load_error=block.get("LoadError", "")))
    return statuses


def is_enabled_command(systemctl: str, names: Sequence[str]) -> list[str]:
    # -l (--full), as systemd_service runs it: it decides whether symlink lines follow the state.
    return [systemctl, "is-enabled", "--full", "--", *names]


def parse_is_enabled(out: str, names: Sequence[str]) -> list[EnabledState]:
    """`systemctl is-enabled --full` output for the units named: a state line per unit, each followed
    by its indented symlink lines, if any. UnitsError when the count of states differs (systemctl
    stops at the first unit it cannot read)."""
    states: list[EnabledState] = []
    for line in out.splitlines():
        if not line.strip():
            continue
        if line[:1].isspace():
            if states:
                states[-1] = EnabledState(states[-1].state, detailed=True)
            continue
        states.append(EnabledState(line.strip()))
    if len(states) != len(names):
        raise UnitsError(f"systemctl is-enabled printed {len(states)} states for {len(names)} units: "
                         f"{', '.join(names)}", names)
    return states


# -- judgement ------------------------------------------------------------------------------------
def check_usable(wanted: Sequence[Wish], statuses: Sequence[Status]) -> None:
    """UnitsError naming every unit that is not found, failed to load, or is masked but asked to be
    started or enabled; nothing has changed when this raises."""
    missing = [w.name for w, s in zip(wanted, statuses) if s.load_state == "not-found"]
    if missing:
        raise UnitsError(f"Could not find the requested unit{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
                         missing)
    broken = [(w.name, s) for w, s in zip(wanted, statuses) if s.load_state != "masked" and s.load_error]
    if broken:
        raise UnitsError("Error loading unit file " + "; ".join(f"'{n}': {s.load_error}" for n, s in broken),
                         [name for name, _status in broken])
    masked = [w.name for w, s in zip(wanted, statuses)
              if s.load_state == "masked" and (w.enabled or w.state == "started")]
    if masked:
        raise UnitsError(f"Masked, so cannot be started or enabled: {', '.join(masked)}", masked)


def enabled_from_show(wish: Wish, status: Status) -> Optional[EnabledState]:
    """The unit's is-enabled state as `show` gives it, or None when only `is-enabled` can tell: an
    alias name (its Id differs), an empty UnitFileState (instances on some systemd versions) or a
    state whose verdict depends on is-enabled's own output."""
    if status.id != wish.name or status.unit_file_state not in SHOW_CONCLUSIVE:
        return None
    return EnabledState(status.unit_file_state)


def is_enabled(state: EnabledState, sysv_enabled: bool = False) -> bool:
    """systemd_service's verdict on `is-enabled -l` output; sysv_enabled: the name as given has an
    init script in /etc/init.d that is enabled in some runlevel (consulted only on a non-zero exit)."""
    if state.state in IS_ENABLED_RC0:
        return state.detailed or state.state not in NOT_ENABLED_WHEN_ALONE
    return sysv_enabled and not state.state.endswith("disabled")


def needs_sysv_check(state: EnabledState) -> bool:
    """Whether is_enabled() consults the SysV init script for this state."""
    return state.state not in IS_ENABLED_RC0 and not state.state.endswith("disabled")


def plan(wish: Wish, status: Status, enabled: Optional[bool]) -> Plan:
    """The unit's actions, as systemd_service would take them; enabled: its current enablement (None
    when the wish leaves enablement alone). The after-values are the state once the actions ran."""
    result = Plan(name=wish.name, enabled_before=enabled, enabled_after=enabled,
                  active_before=status.running, active_after=status.running)
    if wish.enabled is not None and enabled != wish.enabled:
        result.actions.append("enable" if wish.enabled else "disable")
        result.enabled_after = wish.enabled
    if wish.state == "started" and not status.running:
        result.actions.append("start")
        result.active_after = True
    elif wish.state == "stopped" and (status.running or status.active_state in DEACTIVATING):
        result.actions.append("stop")
        result.active_after = False
    return result


def batches(plans: Sequence[Plan]) -> list[tuple[str, list[str]]]:
    """The systemctl runs the plans need, one per verb, in VERBS order, each with its units in order."""
    return [(verb, names) for verb in VERBS if (names := [p.name for p in plans if verb in p.actions])]


def report(plans: Sequence[Plan], done: Iterable[str] = VERBS) -> list[dict[str, Any]]:
    """The module's units result; done: the verbs whose systemctl run succeeded (all, or all in check
    mode, where the result is the prediction)."""
    done = set(done)
    result = []
    for p in plans:
        actions = [a for a in p.actions if a in done]
        enabled = p.enabled_after if ("enable" in actions or "disable" in actions) else p.enabled_before
        active = p.active_after if ("start" in actions or "stop" in actions) else p.active_before
        result.append({"name": p.name, "enabled": enabled, "active": active, "changed": bool(actions),
                       "actions": actions})
    return result
