#!/usr/bin/python
# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: systemd_ready
short_description: Wait until systemd has finished booting a host
description:
  - Polls C(systemctl is-system-running) until systemd leaves the C(initializing) and C(starting)
    states, then reports the state and the failed units.
  - Written because no bundled module waits on boot; C(ansible.builtin.systemd_service) reads unit
    states only. Lab containers and freshly booted machines need it before apt or service tasks,
    which otherwise fail at random while units still start.
version_added: 0.1.0
# The form validate-modules accepts without a GitHub handle; the team's address is in galaxy.yml.
author: ChajiPoa Infrastructure engineers (!UNKNOWN)
options:
  timeout:
    description: Seconds to wait before failing.
    type: int
    default: 120
  accept_degraded:
    description:
      - Treat C(degraded) (booted, some unit failed) as ready. The failed units are reported either way.
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module only reads state, so it runs unchanged in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - Needs systemd as PID 1 on the target.
"""

EXAMPLES = r"""
- name: Wait for the lab host to finish booting
  chajipoa.platform.systemd_ready:
    timeout: 60

- name: Insist that no unit failed
  chajipoa.platform.systemd_ready:
    accept_degraded: false
"""

RETURN = r"""
state:
  description: What C(systemctl is-system-running) reported last.
  returned: always
  type: str
  sample: running
failed_units:
  description: Units systemd lists as failed.
  returned: always
  type: list
  elements: str
  sample: [nvmf-autoconnect.service]
elapsed:
  description: Seconds spent waiting.
  returned: always
  type: float
  sample: 1.42
"""

import time

from ansible.module_utils.basic import AnsibleModule

BOOTING = frozenset({"initializing", "starting"})
POLL_SECONDS = 0.25


def ready(state: str, accept_degraded: bool) -> bool:
    return state == "running" or (accept_degraded and state == "degraded")


def wait_for_boot(read_state, timeout: float, clock=time.monotonic, sleep=time.sleep) -> tuple[str, float]:
    """Poll read_state() until systemd is past booting or timeout seconds passed."""
    start = clock()
    while True:
        state = read_state()
        elapsed = clock() - start
        if state not in BOOTING or elapsed >= timeout:
            return state, elapsed
        sleep(POLL_SECONDS)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "timeout": {"type": "int", "default": 120},
            "accept_degraded": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    systemctl = module.get_bin_path("systemctl", required=True)

    def read_state() -> str:
        # Exit status is non-zero for every state but "running": the text is what matters.
        _rc, out, _err = module.run_command([systemctl, "is-system-running"])
        return out.strip() or "unknown"

    state, elapsed = wait_for_boot(read_state, module.params["timeout"])
    _rc, out, _err = module.run_command([systemctl, "list-units", "--failed", "--plain", "--no-legend", "--no-pager"])
    failed_units = [line.split()[0] for line in out.splitlines() if line.strip()]
    result = {"changed": False, "state": state, "failed_units": failed_units, "elapsed": round(elapsed, 2)}

    if not ready(state, module.params["accept_degraded"]):
        cause = f"still {state} after {module.params['timeout']} s" if state in BOOTING else f"systemd reports {state}"
        units = f"; failed units: {', '.join(failed_units)}" if failed_units else ""
        module.fail_json(msg=f"Cannot confirm the host booted: {cause}{units}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
