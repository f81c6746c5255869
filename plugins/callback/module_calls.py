# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
name: module_calls
type: aggregate
short_description: Counts, per host, the module calls a run made on it
version_added: 0.6.0
author: ChajiPoa Infrastructure engineers (!UNKNOWN)
description:
  - A no-op run's time is its number of module calls times the cost of one call. This callback gives
    the first factor. At the end of a run it prints, per host, how many times a module ran on that
    host (each loop item once), how many of those changed something or failed, how many tasks ran
    on the controller alone (C(set_fact), C(assert), M(chajipoa.platform.preflight), includes and the like) and how many were skipped.
  - A delegated call counts on the host it ran on (the delegate), not on the host it ran for.
  - A module call is one execution of a task's action on a host. The file-transferring actions
    (C(template), C(copy)) make a C(stat) round trip before theirs, which this count does not add.
    It counts what the playbook asks for, the quantity a role can reduce.
  - Ansible's bundled callbacks time tasks (C(ansible.posix.profile_tasks)) or count results per
    play recap (ok also counts controller-side tasks); none counts module executions per host, hence
    this one. C(bench/noop_site.py) enables it and prints its counts beside the times.
requirements:
  - Enabled in ansible.cfg (C(callbacks_enabled)) or with
    C(ANSIBLE_CALLBACKS_ENABLED=chajipoa.platform.module_calls).
options:
  output_file:
    description:
      - Also write the counts to this file as JSON, an object per host with the keys C(calls),
        C(changed), C(failed), C(controller) and C(skipped).
    type: path
    env:
      - name: CHAJIPOA_MODULE_CALLS_FILE
    ini:
      - section: callback_module_calls
        key: output_file
"""

import json
from collections import Counter, defaultdict

from ansible.plugins.callback import CallbackBase

# Actions that never execute anything on the host: Ansible evaluates them on the controller.
CONTROLLER_ACTIONS = frozenset({
    "add_host", "assert", "debug", "fail", "group_by", "import_playbook", "import_role", "import_tasks",
    "include_role", "include_tasks", "include_vars", "meta", "pause", "set_fact", "set_stats",
    "validate_argument_spec",
})
# This collection's own actions that need no connection (their plugins set _requires_connection False).
COLLECTION_CONTROLLER_ACTIONS = frozenset({"chajipoa.platform.preflight"})
BUILTIN_PREFIXES = ("ansible.builtin.", "ansible.legacy.")
COLUMNS = ("calls", "changed", "failed", "controller", "skipped")


def runs_on_controller(action: str) -> bool:
    if action in COLLECTION_CONTROLLER_ACTIONS:
        return True
    for prefix in BUILTIN_PREFIXES:
        if action.startswith(prefix):
            action = action[len(prefix):]
    return action in CONTROLLER_ACTIONS


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "chajipoa.platform.module_calls"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.counts: dict[str, Counter] = defaultdict(Counter)

    def _count(self, result, outcome: str) -> None:
        task, values = result.task, result.result
        # A loop's per-item results were counted as they came; its summary result is not a call.
        if task.loop and "results" in values:
            return
        host = result.task.delegate_to or result.host.get_name()
        if outcome == "skipped":
            self.counts[host]["skipped"] += 1
        elif runs_on_controller(task.action):
            self.counts[host]["controller"] += 1
        else:
            self.counts[host]["calls"] += 1
            if outcome == "failed":
                self.counts[host]["failed"] += 1
            elif values.get("changed"):
                self.counts[host]["changed"] += 1

    def v2_runner_on_ok(self, result):
        self._count(result, "ok")

    def v2_runner_item_on_ok(self, result):
        self._count(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._count(result, "failed")

    def v2_runner_item_on_failed(self, result):
        self._count(result, "failed")

    def v2_runner_on_unreachable(self, result):
        self._count(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._count(result, "skipped")

    def v2_runner_item_on_skipped(self, result):
        self._count(result, "skipped")

    def report(self) -> dict[str, dict[str, int]]:
        return {host: {column: counts[column] for column in COLUMNS} for host, counts in sorted(self.counts.items())}

    def v2_playbook_on_stats(self, stats):
        report = self.report()
        width = max([len("host"), *map(len, report)])
        lines = ["MODULE CALLS " + "*" * 67, f"{'host':<{width}}  " + "  ".join(f"{column:>10}" for column in COLUMNS)]
        lines += [f"{host:<{width}}  " + "  ".join(f"{counts[column]:>10}" for column in COLUMNS) for host, counts in report.items()]
        self._display.display("\n".join(lines))
        output_file = self.get_option("output_file")
        if output_file:
            with open(output_file, "w", encoding="utf-8") as handle:
                json.dump(report, handle, indent=2, sort_keys=True)
