# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
name: linear
short_description: Ansible's linear strategy, with workers that start from what the controller already loaded, and none for a skip
version_added: 0.7.0
author: ChajiPoa Infrastructure engineers (!UNKNOWN)
description:
  - The task order, output, options and results of C(ansible.builtin.linear), which this strategy
    is; only what happens in C(ansible-playbook) just before it forks a task's worker differs, and
    whether it forks one for a host that skips the task.
  - Ansible runs every task on every host in a worker forked from C(ansible-playbook), and the
    worker ends after that one task. Whatever the worker loads or learns is lost with it, and whatever
    it touches of the controller's memory is copied for it. Two costs followed, on every task and
    host (C(docs/performance.md) in the repository has the profiles and the figures).
  - Python's garbage collector in a worker, at its first full collection, walked every object
    inherited from the controller (the playbook, the inventory, every variable, some 170,000 in a
    no-op run of the base system), writing to each and so copying the pages that hold them. Under
    Mitogen that collection came while the worker read this collection's role argument
    specifications, 0.13 s of CPU instead of 0.02 s. Here those objects are frozen (C(gc.freeze))
    for the fork and thawed at once, so the worker's collector looks only at what the worker makes,
    and C(ansible-playbook) still collects its own garbage, as Python's documentation recommends for
    a process that forks.
  - Each worker loaded, from source, the files of the filter and test plugins its templates use (every
    file of a collection's filters, to find one of them) and its connection plugin, a quarter of the
    workers' time in a no-op run of the base system. Here C(ansible-playbook) loads them before it
    forks, once per run, and every worker finds them loaded. Those are Ansible's own filters and tests, the
    Jinja plugins of every collection a task names by its full name (its module, or a filter like
    C(community.general.dict_kv) in its arguments or conditions), and the connection of each host.
  - A task that a host skips costs it no worker. When the task's C(when) is false for the host, the
    skipped result is made in C(ansible-playbook) by Ansible's own task executor (which skips before
    it reaches a connection) and put on Ansible's result queue as a worker puts it, so callbacks,
    handlers and the next task see what they would have seen. A condition that is true, or that fails,
    and a task with a loop, C(delegate_to), C(run_once), C(throttle) or a lookup in its condition, go to
    a worker as before, which judges the condition again (a pure condition gives the same answer).
  - No strategy of Ansible's or of the collections it bundles does this. Mitogen for Ansible's
    strategy for the lab (C(lab/strategy/mitogen_linear.py) in the repository) is built on this one.
notes:
  - Select it with C(strategy = chajipoa.platform.linear) in C(ansible.cfg), C(ANSIBLE_STRATEGY), or a
    play's C(strategy) keyword. The project's C(ansible.cfg) leaves Ansible's own in place; C(make dev)
    and molecule run Mitogen's, which is built on this one.
  - ansible-core warns that strategies outside C(ansible.builtin) are deprecated, and callbacks that
    tell Ansible's linear strategy by its name (C(ansible.posix.json) for one) list this one's results
    per host and task, as they list those of C(free). Neither changes what runs.
  - A plugin that a task's template reaches only through a variable (a role default holding a
    template with a collection's filter) is still loaded by the worker, as before.
"""

EXAMPLES = r"""
# In ansible.cfg, for every play:
# [defaults]
# strategy = chajipoa.platform.linear

- name: Base system
  hosts: all
  strategy: chajipoa.platform.linear
  roles:
    - role: chajipoa.platform.common
"""

RETURN = r""" # """

import gc
import re

from ansible._internal import _task
from ansible.executor.task_executor import TaskExecutor
from ansible.executor.task_result import _RawTaskResult
from ansible.playbook.handler import Handler
from ansible.plugins.loader import connection_loader, filter_loader, get_plugin_loader_namespace, test_loader
from ansible.plugins.strategy.linear import StrategyModule as AnsibleLinear

# namespace.collection.name: a module, filter, test or lookup named by its full name.
_FULL_NAME = re.compile(r"\b[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*\b")
# A lookup in a condition may do something each time it runs; judged here and again in the worker, it would run twice.
_LOOKUP = re.compile(r"\b(lookup|query|q)\s*\(")


class _WouldRun(BaseException):
    """The condition holds: the task runs, in a worker. A BaseException, so Ansible's task executor,
    which turns every Exception into a failed result, lets it through."""


class _SkipOnlyExecutor(TaskExecutor):
    """Ansible's task executor, stopped where the task would start to run for the host."""

    def _execute_internal(self, templar, variables):
        judge = self._task._resolve_conditional

        def resolve(conditional, all_vars, *args, **kwargs):
            if judge(conditional, all_vars, *args, **kwargs):
                raise _WouldRun()
            return False
        self._task._resolve_conditional = resolve
        return super()._execute_internal(templar, variables)


def strings(value):
    """Every string in a task's data: its action, arguments, conditions, loop and variables."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(key)
            yield from strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from strings(item)


class StrategyModule(AnsibleLinear):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Ansible's own filters and tests: all their files load at the first use of any of them (the
        # loader keeps them, so a later play's strategy finds them loaded).
        for loader in (filter_loader, test_loader):
            list(loader.all())
        self._preloaded_tasks: set[str] = set()
        self._preloaded_names: set[str] = set()
        self._preloaded_connections: set[str] = set()

    def _queue_task(self, host, task, task_vars, play_context):
        if self._skipped_here(host, task, task_vars, play_context):
            return
        self._preload(task, task_vars, play_context)
        gc.freeze()
        try:
            super()._queue_task(host, task, task_vars, play_context)
        finally:
            gc.unfreeze()

    def _skipped_here(self, host, task, task_vars, play_context) -> bool:
        """Whether the task's condition is false for the host: its skipped result is then on Ansible's
        result queue, exactly as the worker makes and sends it, and no worker is forked."""
        if (not task.when or task.loop_with or task.loop is not None or task.delegate_to or task.run_once or task.throttle
                or isinstance(task, Handler) or any(_LOOKUP.search(text) for text in strings(task.when))):
            return False
        # The executor squashes and templates what it is given: the worker's copies are its own, these must be
        # too. The task's blocks are copied for the conditions they pass down, not for their other tasks.
        own_task = task.copy(exclude_tasks=True)
        try:
            with _task.TaskContext(own_task):
                result = _SkipOnlyExecutor(host, own_task, dict(task_vars), play_context, self._loader,
                                           get_plugin_loader_namespace(), self._final_q, self._variable_manager).run()
        except _WouldRun:
            return False
        if not result.get("skipped") or result.get("failed"):
            return False
        self._queued_task_cache[(host.name, task._uuid)] = {"host": host, "task": task, "task_vars": task_vars, "play_context": play_context}
        self._tqm.send_callback("v2_runner_on_start", host, task)
        self._final_q.send_task_result(_RawTaskResult(host=host, task=own_task, return_data=result, task_fields=own_task.dump_attrs()))
        self._pending_results += 1
        return True

    def _preload(self, task, task_vars, play_context) -> None:
        connection = task_vars.get("ansible_connection") or play_context.connection
        if isinstance(connection, str) and connection not in self._preloaded_connections:
            self._preloaded_connections.add(connection)
            self._load(connection_loader, connection)
        if task._uuid in self._preloaded_tasks:
            return
        self._preloaded_tasks.add(task._uuid)
        for text in strings(task.get_ds()):
            for name in set(_FULL_NAME.findall(text)) - self._preloaded_names:
                self._preloaded_names.add(name)
                # Any full name makes the loader read every file of its collection's filters (or
                # tests) to find it; the files stay loaded whether the name is found or not.
                self._load(filter_loader, name)
                self._load(test_loader, name)

    @staticmethod
    def _load(loader, name: str) -> None:
        # A name that is not a plugin of this kind (a variable's attribute, a module) costs the
        # worker nothing either: it is never asked for. A plugin that fails to load fails in the
        # worker as it always did, with the task's own error: loading ahead must not end the run.
        try:
            loader.get(name, class_only=True)
        except Exception:  # pylint: disable=broad-exception-caught
            pass
