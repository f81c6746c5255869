# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""chajipoa.platform.preflight: a role's input checks in one task, every failure reported at once.

ansible.builtin.assert stops at the first false condition of one task and carries one message; a
role's preflight written as one assert per rule costs a task per rule on every host and run (the
controller's per-task work decides a no-op run's time, docs/performance.md) and shows an operator
one fault per run. Here each check keeps its own message, loop and variables, and all are judged
in one task."""
from __future__ import annotations

import re
import typing as t

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.plugins.action import ActionBase
from ansible.template import is_trusted_as_template, trust_as_template

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
        for check in checks:
            validate(check)
        passing = self.passing_at_once(checks, task_vars)
        failures = []
        for index, check in enumerate(checks):
            if index in passing:
                continue
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

    def passing_at_once(self, checks: list[dict], task_vars: dict) -> set[int]:
        """The indexes of the checks that certainly pass, judged by rendering one template for all of them.

        Ansible compiles a condition anew at every evaluation (no cache in ansible-core 2.19), and a
        forked worker evaluates each of a check's conditions for each item: a role's preflight was
        a few hundred compilations per host and run, most of its time (docs/performance.md). Here
        every condition is compiled once, inside a loop of Jinja's own. Only a verdict of exactly
        true counts; a check that does not pass (false, not a boolean, an error) is judged again
        one condition and item at a time by failures(), which words its messages, so the outcome
        is the same as without this step.
        """
        parts, variables, judged = [], dict(task_vars), []
        for index, check in enumerate(checks):
            part = self.at_once(index, check, variables)
            if part is not None:
                parts.append(part)
                judged.append(index)
        if not parts:
            return set()
        templar = self._templar.copy_with_new_env(available_variables=variables)
        try:
            # As Ansible evaluates a condition: backslashes in its strings are Jinja's escapes ('\\x00').
            rendered = templar.template(trust_as_template("=" + "|".join(parts)), escape_backslashes=False)
        except AnsibleError:
            return set()
        if not isinstance(rendered, str) or rendered.count("|") != len(parts) - 1:
            return set()
        return {index for index, verdicts in zip(judged, rendered[1:].split("|")) if set(verdicts) <= {"P"}}

    def at_once(self, index: int, check: dict, variables: dict) -> str | None:
        """The template part that writes P for each passing item (or the check) and X for any other,
        or None where rendering it with the others could differ from failures(): variables of the
        check's own (they may name the item), a loop behind a condition (its items may not exist),
        conditions that are not plain trusted expressions, or a name Jinja's loop would hide."""
        conditions = check["that"] if isinstance(check["that"], list) else [check["that"]]
        loop_var = check.get("loop_var", "item")
        expressions = [expression(condition) for condition in conditions + ([check["when"]] if "when" in check else [])]
        if "vars" in check or None in expressions or not (isinstance(loop_var, str) and loop_var.isidentifier()):
            return None
        if loop_var == "loop" or any(_LOOP_WORD.search(text) for text in expressions):
            return None
        verdict = "{{ 'P' if (" + " and ".join(f"(({text}) is sameas true)" for text in expressions[:len(conditions)]) + ") else 'X' }}"
        if "loop" not in check:
            if "when" not in check:
                return verdict
            when = expressions[-1]
            return f"{{% if ({when}) is sameas true %}}{verdict}{{% elif not (({when}) is sameas false) %}}X{{% endif %}}"
        if "when" in check:
            return None
        try:
            items = self._templar.copy_with_new_env(available_variables=variables).template(check["loop"])
        except AnsibleError:
            return None
        if not isinstance(items, list):
            return None
        name = f"__chajipoa_preflight_items_{index}"
        variables[name] = items
        return f"{{% for {loop_var} in {name} %}}{verdict}{{% endfor %}}"

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


# Jinja's for loop names its own state `loop`: a condition reading a variable of that name would read it.
_LOOP_WORD = re.compile(r"\bloop\b")


def expression(condition: t.Any) -> str | None:
    """A condition as the text of a Jinja expression, or None where it is not a plain one."""
    if isinstance(condition, bool):
        return "true" if condition else "false"
    if not isinstance(condition, str) or not is_trusted_as_template(condition):
        return None
    if any(marker in condition for marker in ("{{", "}}", "{%", "%}", "{#", "#}")):
        return None
    return condition


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
