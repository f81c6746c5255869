#!/usr/bin/python
# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: systemd_units
short_description: Bring several systemd units to their enablement and run state in one call
description:
  - Enables or disables, and starts or stops, a list of systemd units with one module call on the
    host for the whole list.
  - Written because M(ansible.builtin.systemd_service) handles one unit a call, so a role's loop over
    its units costs one module call per unit on every run, and a no-op run's time is its number of
    module calls (issue 20).
  - Reads all units with one C(systemctl show); asks C(systemctl is-enabled) (once, for all of them)
    only about units whose C(show) output does not settle their enablement (an alias name, an instance
    whose C(UnitFileState) is empty, V(indirect), V(alias), V(enabled-runtime), V(generated), ...).
    Then runs at most one C(systemctl enable), one C(disable), one C(start) and one C(stop), in that
    order, each for all the units that need it.
  - Judges enablement as M(ansible.builtin.systemd_service) does, so a loop over that module can be
    replaced by this one without a change of behaviour. V(static), V(generated) and V(transient)
    units count as enabled (O(units[].enabled=false) runs C(systemctl disable) on them on every run);
    V(enabled-runtime), V(indirect) and V(alias) count as disabled (O(units[].enabled=true) runs
    C(systemctl enable) on every run) unless C(systemctl is-enabled --full) lists symlinks for them.
  - Fails before anything changes when a unit is not found, its unit file does not load, or it is
    masked and asked to be started or enabled; the message names the units.
version_added: 0.7.0
# The form validate-modules accepts without a GitHub handle; the team's address is in galaxy.yml.
author: ChajiPoa Infrastructure engineers (!UNKNOWN)
options:
  units:
    description: The units, reported in this order. Each may be listed once.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - The unit's name; a name without a unit type suffix means V(NAME.service).
          - A template's instance is named with its instance, such as V(postgresql@15-main.service).
        type: str
        required: true
      enabled:
        description: Whether the unit starts on boot. Omitted, the enablement is left as it is.
        type: bool
      state:
        description:
          - V(started) starts the unit unless it is active or activating, V(stopped) stops it if it is
            active, activating or deactivating. Omitted, the run state is left as it is.
          - There is no V(restarted) or V(reloaded), since restarts belong in handlers.
        type: str
        choices: [started, stopped]
  daemon_reload:
    description:
      - Run C(systemctl daemon-reload) before anything else, so that changed unit files are read.
      - Not reported as a change and skipped in check mode, as M(ansible.builtin.systemd_service) does.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports the actions that would run and the state they would leave, and runs none.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - Needs systemd as PID 1 on the target; acts on the system manager only.
seealso:
  - module: ansible.builtin.systemd_service
"""

EXAMPLES = r"""
- name: The exporters run
  chajipoa.platform.systemd_units:
    daemon_reload: true
    units:
      - name: prometheus-node-exporter.service
        enabled: true
        state: started
      - name: prometheus-postgres-exporter
        enabled: true
        state: started

- name: The cluster's instance runs, the packaged default one does not start on boot
  chajipoa.platform.systemd_units:
    units:
      - name: postgresql@15-main.service
        enabled: true
        state: started
      - name: postgresql.service
        enabled: false
"""

RETURN = r"""
units:
  description:
    - Each unit, in the order given, with its state after the call (in check mode, the state it would
      have).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The unit's name as systemctl took it (with V(.service) added where it was left out).
      type: str
      sample: prometheus-node-exporter.service
    enabled:
      description:
        - Whether the unit is enabled, as M(ansible.builtin.systemd_service) judges it.
        - V(null) when the task left the unit's enablement alone.
      type: bool
      sample: true
    active:
      description: Whether the unit is active or activating.
      type: bool
      sample: true
    changed:
      description: Whether anything was done to the unit.
      type: bool
      sample: true
    actions:
      description: What was done to the unit, in order, of V(enable), V(disable), V(start) and V(stop).
      type: list
      elements: str
      sample: [enable, start]
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.service import sysv_exists, sysv_is_enabled

from ansible_collections.chajipoa.platform.plugins.module_utils.systemd_units import (
    STATES,
    UnitsError,
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
    wishes,
)


def converge(module: AnsibleModule, systemctl: str, plans: list, done: list) -> None:
    """Fills plans (one per unit) and done (the verbs run, or that would run in check mode);
    UnitsError when a unit cannot be brought to its state or systemctl fails."""
    wanted = wishes(module.params["units"])

    if module.params["daemon_reload"] and not module.check_mode:
        rc, _out, err = module.run_command([systemctl, "daemon-reload"])
        if rc != 0:
            # Imported only here: the facts package imports every fact collector with it, which cost
            # each host 80 ms on every run for a check made only when daemon-reload fails.
            from ansible.module_utils.facts.system.chroot import is_chroot

            if is_chroot(module) or os.environ.get("SYSTEMD_OFFLINE") == "1":
                module.warn(f"daemon-reload failed, but target is a chroot or systemd is offline. Continuing. "
                            f"Error was: {rc} / {err}")
            else:
                raise UnitsError(f"failure {rc} during daemon-reload: {err}")
    if not wanted:
        return

    names = [w.name for w in wanted]
    rc, out, err = module.run_command(show_command(systemctl, names))
    if rc != 0:
        raise UnitsError(f"systemctl show failed for {', '.join(names)} (exit {rc}): {(err or out).strip()}", names)
    statuses = parse_show(out, names)
    check_usable(wanted, statuses)

    # Enablement only of the units whose wish names it; is-enabled once for those show leaves open.
    states = {w.name: enabled_from_show(w, s) for w, s in zip(wanted, statuses) if w.enabled is not None}
    ask = [name for name, state in states.items() if state is None]
    if ask:
        # Its exit status is 0 when any unit is enabled: only the count of states tells a failure.
        _rc, out, err = module.run_command(is_enabled_command(systemctl, ask))
        try:
            states.update(zip(ask, parse_is_enabled(out, ask)))
        except UnitsError as error:
            raise UnitsError(f"{error.msg}: {err.strip()}", ask) from error

    for wish, status in zip(wanted, statuses):
        enabled = None
        state = states.get(wish.name)
        if state is not None:
            # systemd_service looks for the init script by the name as the task gave it.
            sysv = needs_sysv_check(state) and sysv_exists(wish.given) and sysv_is_enabled(wish.given)
            enabled = is_enabled(state, sysv_enabled=sysv)
        plans.append(plan(wish, status, enabled))

    for verb, units in batches(plans):
        if not module.check_mode:
            rc, out, err = module.run_command([systemctl, verb, "--", *units])
            if rc != 0:
                raise UnitsError(f"systemctl {verb} failed for {', '.join(units)} (exit {rc}): {(err or out).strip()}",
                                 units)
        done.append(verb)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "units": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "name": {"type": "str", "required": True},
                    "enabled": {"type": "bool"},
                    "state": {"type": "str", "choices": list(STATES)},
                },
            },
            "daemon_reload": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    systemctl = module.get_bin_path("systemctl", required=True)
    plans: list = []
    done: list[str] = []
    try:
        converge(module, systemctl, plans, done)
    except UnitsError as error:
        # The units and changed say what was done before the failure.
        module.fail_json(msg=error.msg, failed_units=error.units, changed=bool(done), units=report(plans, done))
    module.exit_json(changed=bool(done), units=report(plans, done))


if __name__ == "__main__":
    main()
