# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""chajipoa.platform.preflight: a role's input checks in one task, every failure reported at once.

ansible.builtin.assert stops at the first false condition of one task and carries one message; a
role's preflight written as one assert per rule costs a task per rule on every host and run (the
controller's per-task work decides a no-op run's time, docs/performance.md) and shows an operator
one fault per run. Here each check keeps its own message, loop and variables, and all are judged
in one task."""
from __future__ import annotations

import typing as t

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.plugins.action import ActionBase

CHECK_KEYS = frozenset({"name", "that", "fail_msg", "when", "loop", "loop_var", "label", "vars"})


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    @classmethod
    def finalize_task_arg(cls, name: str, value: t.Any, templar: t.Any, context: t.Any) -> t.Any:
        # Conditions, messages and loops are judged per check (and per item) in run(), as assert
        # judges its `that`: templated here they would all be rendered, items unbound, at once.
        if name == "checks":
            return value
        return super().finalize_task_arg(name, value, templar, context)

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        checks = self._task.args.get("checks")
        unknown = sorted(set(self._task.args) - {"checks"})
        if unknown:
            raise AnsibleActionFail(f"unknown options: {', '.join(unknown)}")
        if not isinstance(checks, list) or not checks:
            raise AnsibleActionFail("checks must be a non-empty list of checks")
        failures = []
        for check in checks:
            validate(check)
            try:
                failures.extend(self.failures(check, task_vars))
            except AnsibleActionFail:
                raise
            except AnsibleError as error:
                # An input so wrong that a check cannot be judged (an undefined variable, a value of
                # the wrong type) is that check's failure: the others are still judged and reported.
                failures.append({"check": check["name"], "msg": f"could not be judged: {error.message}"})
        result["changed"] = False
        result["checked"] = len(checks)
        result["failures"] = failures
        if failures:
            result["failed"] = True
            result["msg"] = "\n".join(f"{failure['check']}: {failure['msg']}" for failure in failures)
        else:
            result["msg"] = f"All {len(checks)} checks passed"
        return result

    def failures(self, check: dict, task_vars: dict) -> list[dict]:
        variables = {**task_vars, **check.get("vars", {})}
        templar = self._templar.copy_with_new_env(available_variables=variables)
        if "when" in check and not templar.evaluate_conditional(check["when"]):
            return []
        conditions = check["that"] if isinstance(check["that"], list) else [check["that"]]
        if "loop" not in check:
            return [failure(check, templar)] if not all_hold(templar, conditions) else []
        items = templar.template(check["loop"])
        if not isinstance(items, list):
            raise AnsibleActionFail(f"{check['name']}: loop must give a list, got {type(items).__name__}")
        loop_var = check.get("loop_var", "item")
        found = []
        for item in items:
            item_templar = self._templar.copy_with_new_env(available_variables={**variables, loop_var: item})
            if not all_hold(item_templar, conditions):
                found.append(failure(check, item_templar, item))
        return found


def validate(check: t.Any) -> None:
    if not isinstance(check, dict):
        raise AnsibleActionFail(f"each check must be a dictionary, got {check!r}")
    name = check.get("name", "?")
    missing = [key for key in ("name", "that", "fail_msg") if key not in check]
    unknown = sorted(set(check) - CHECK_KEYS)
    if missing or unknown:
        raise AnsibleActionFail(f"check {name!r}: " + "; ".join(
            part for part in (missing and f"missing {', '.join(missing)}", unknown and f"unknown {', '.join(unknown)}") if part))
    if not isinstance(check.get("vars", {}), dict):
        raise AnsibleActionFail(f"check {name!r}: vars must be a dictionary")


def all_hold(templar, conditions: list) -> bool:
    return all(templar.evaluate_conditional(condition) for condition in conditions)


# A loop's item may itself be None; a check without a loop has no item at all.
NO_ITEM = object()


def failure(check: dict, templar, item: t.Any = NO_ITEM) -> dict:
    found = {"check": check["name"], "msg": str(templar.template(check["fail_msg"]))}
    if item is not NO_ITEM:
        found["item"] = templar.template(check["label"]) if "label" in check else item
    return found
