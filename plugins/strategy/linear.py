# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
name: linear
short_description: Ansible's linear strategy, with workers that start from what the controller already loaded
version_added: 0.7.0
author: ChajiPoa Infrastructure engineers (!UNKNOWN)
description:
  - The task order, output, options and results of C(ansible.builtin.linear), which this strategy
    is; only what happens in C(ansible-playbook) just before it forks a task's worker differs.
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
  - ansible-core found a collection's filter or test anew each time a template used it, listing the
    collection's plugin files and asking each for its functions, so each condition or argument naming
    one (C(chajipoa.platform.missing_packages), C(community.general.dict_kv)) paid it again on every
    host, a quarter of the CPU of the common role's call of its files. Here each name is resolved
    once for the run, and workers inherit what C(ansible-playbook) resolved before it forked them.
  - Each worker compiled from its source every template and condition it evaluated, as ansible-core
    keeps no compiled template, and so the same ones once for every host, a third of the workers'
    CPU in a no-op run of the base system on 30 hosts. Here a template is compiled once per run, by
    the first worker that needs it, and every other worker loads the compiled code from Ansible's
    temporary directory of the run (C(plugins/plugin_utils/template_cache.py) in the collection).
  - Ansible forks a worker for every task and host, so a task on 30 hosts cost 30 forks and 30
    workers' starts, each costing the controller about as much as a task that contacts no host. Here
    a task's hosts share its workers. Each runs the task on the host it is given, then takes the next
    host no worker has taken, until none is left. A task starts on one worker for each of the
    controller's CPUs, and gains one more every quarter of a second while hosts wait that no worker
    has taken, up to C(forks). A task whose hosts answer quickly (most of a no-op run) so runs on a
    few workers, and one whose hosts keep their workers waiting (packages, restarts, a lookup in
    another service) on as many as C(forks) allows, 20 within 5 seconds. C(forks) keeps
    its meaning, how many hosts a task runs on at once at most. Each host runs a copy of the task as
    it came, as Ansible runs each item of a loop. Tasks with C(throttle) or C(async) get a worker for
    each host, as before.
  - A task whose condition is false on a host is skipped there by the strategy itself, with the result
    and callbacks its worker would have given, and no worker is forked for it (a fork cost the
    controller about as much as a task that runs). Tasks with a loop (each item has the condition) or
    a delegation, and conditions that warn or fail, still go to a worker, which reports as before.
  - Ansible read a host's cached facts from the fact cache, decoding them from JSON, each time it
    gathered the host's variables, for every task on every host in C(ansible-playbook) itself and
    again in workers that read other hosts' variables. Here the decoded facts are kept for the
    run and read again only after the host's facts change.
  - No strategy of Ansible's or of the collections it bundles does this. Mitogen for Ansible's
    strategy C(chajipoa.platform.mitogen_linear) is built on this one.
notes:
  - Select it with C(strategy = chajipoa.platform.linear) in C(ansible.cfg), C(ANSIBLE_STRATEGY), or a
    play's C(strategy) keyword. The project's C(ansible.cfg) leaves Ansible's own in place; C(make dev)
    and molecule run C(chajipoa.platform.mitogen_linear), which is built on this one.
  - ansible-core warns that strategies outside C(ansible.builtin) are deprecated, and callbacks that
    tell Ansible's linear strategy by its name (C(ansible.posix.json) for one) list this one's results
    per host and task, as they list those of C(free). Neither changes what runs.
  - A task's results come in the order its hosts finish, as under C(free); a plugin that keeps state
    between tasks in its worker's memory would now see several hosts in one worker, as it sees
    several items of a loop under any strategy.
  - A task whose hosts each take long gets its workers a quarter of a second apart, up to C(forks),
    where Ansible's strategy starts them all at once. With 20 forks the last starts some 5 seconds
    after the first, on a task whose hosts take longer than that. Give a task C(throttle) (C(forks)
    or more) and it gets a worker for each host at once, as under Ansible's strategy.
  - A plugin that a task's template reaches only through a variable (a role default holding a
    template with a collection's filter) is still loaded by the worker, as before.
  - The template cache and the skipping use ansible-core's internal templating and task results,
    which its releases may change; the project tests the ansible-core its requirements pin, as
    Mitogen for Ansible does.
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

import contextlib
import gc
import os
import re
import time

from ansible import constants as C
from ansible import context
from ansible._internal import _display_utils
from ansible._internal._templating._engine import TemplateEngine
from ansible.executor.process.worker import WorkerProcess
from ansible.executor.task_result import _RawTaskResult
from ansible.plugins import loader as plugin_loader
from ansible.plugins.loader import connection_loader, filter_loader, test_loader
from ansible.plugins.strategy.linear import StrategyModule as AnsibleLinear
from ansible.utils.multiprocessing import context as multiprocessing_context
from ansible_collections.chajipoa.platform.plugins.plugin_utils import template_cache

# A task starts on a worker for each of the controller's CPUs and gains one every GROWTH_INTERVAL seconds
# while hosts wait that no worker has taken, up to forks. A host of a no-op run keeps a worker tens of
# milliseconds a task, so most of its tasks stay on their first workers; a task whose hosts keep
# their workers waiting (packages, restarts) reaches 20 forks within 5 s.
GROWTH_INTERVAL = 0.25

# namespace.collection.name: a module, filter, test or lookup named by its full name.
_FULL_NAME = re.compile(r"\b[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*\b")


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


def remember_resolutions(loader) -> None:
    """Makes a Jinja plugin loader (filters or tests) resolve each name once for the run (ansible-core's
    Jinja2Loader.get_with_context lists a collection's plugin files on every call, and its own comment
    says it keeps nothing). The plugins of a run do not change while it runs, so a name's first
    resolution stands, a name found in no plugin too. A resolution that raises is not kept, and raises
    again where the name is used."""
    if getattr(loader, "_chajipoa_resolved", None) is not None:
        return
    resolve = loader.get_with_context
    resolved: dict = {}

    def get_with_context(name, *args, **kwargs):
        # class_only means nothing to a Jinja plugin loader (its functions are not classes).
        if args or set(kwargs) - {"class_only"}:
            return resolve(name, *args, **kwargs)
        try:
            return resolved[name]
        except KeyError:
            result = resolved[name] = resolve(name)
            return result

    loader.get_with_context = get_with_context
    loader._chajipoa_resolved = resolved  # pylint: disable=protected-access


@contextlib.contextmanager
def _frozen():
    """The controller's objects frozen while a worker is forked, so that the worker's collector leaves
    them (and the pages that hold them) alone; thawed at once, so that the controller still collects
    its own garbage."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class DecodedFacts:
    """The fact cache, each host's facts decoded once and kept until they are set or cleared.

    ansible-core's fact cache decodes a host's facts from JSON on every read. Its readers either
    deep-copy what they get (the variables of a task) or change only its top level and store it
    back at once (set_host_facts), which forgets the kept copy here."""

    _MISSING = object()

    def __init__(self, cache):
        self._cache = cache
        self._decoded: dict = {}

    def get(self, key):
        try:
            value = self._decoded[key]
        except KeyError:
            try:
                value = self._cache.get(key)
            except KeyError:
                value = self._MISSING
            self._decoded[key] = value
        if value is self._MISSING:
            raise KeyError(key)
        return value

    def set(self, key, value) -> None:
        self._decoded.pop(key, None)
        self._cache.set(key, value)

    def delete(self, key) -> None:
        self._decoded.pop(key, None)
        self._cache.delete(key)

    def flush(self) -> None:
        self._decoded.clear()
        self._cache.flush()

    def __getattr__(self, name):
        return getattr(self._cache, name)


class PoolWorker(WorkerProcess):
    """A worker of a task's pool: runs the task on the host it is given, then on one host after
    another that no worker of the pool has taken yet, until none is left, and sends every host's
    result as it is done."""

    def __init__(self, *, pool, **kwargs):
        super().__init__(**kwargs)
        self._pool = pool

    def _run(self) -> None:
        self._run_on_host(self._task)
        while (index := self._pool.take()) is not None:
            self._host, task, self._task_vars, self._play_context = self._pool.hosts[index]
            self._run_on_host(task)

    def _run_on_host(self, task) -> None:
        # Running a task fills in its attributes with the host's values (its arguments, templated), and
        # a worker of Ansible's never runs it again. Each host gets a copy of the task as it came, made
        # as Ansible makes one for each item of a loop.
        self._task = task.copy(exclude_parent=True, exclude_tasks=True)
        self._task._parent = task._parent  # pylint: disable=protected-access
        super()._run()


class Pool:
    """A task's hosts, each (host, task, task_vars, play_context) as the host's iterator gave it, and
    how many of them its workers have taken: a counter in shared memory, which the strategy and the
    workers it forks take from."""

    def __init__(self, hosts: list):
        self.hosts = hosts
        self.grown_at = 0.0
        self._taken = multiprocessing_context.Value("i", 0)

    def take(self) -> int | None:
        """The index of the next host no worker has taken, now taken, or None when none is left."""
        with self._taken.get_lock():
            index = self._taken.value
            if index >= len(self.hosts):
                return None
            self._taken.value += 1
        return index

    def waiting(self) -> bool:
        """Whether hosts wait that no worker has taken."""
        return self._taken.value < len(self.hosts)


class StrategyModule(AnsibleLinear):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Ansible's own filters and tests: all their files load at the first use of any of them (the
        # loader keeps them, so a later play's strategy finds them loaded).
        for loader in (filter_loader, test_loader):
            list(loader.all())
            remember_resolutions(loader)
        template_cache.share(C.DEFAULT_LOCAL_TMP)
        if not isinstance(self._variable_manager._fact_cache, DecodedFacts):
            self._variable_manager._fact_cache = DecodedFacts(self._variable_manager._fact_cache)
        self._preloaded_tasks: set[str] = set()
        self._preloaded_names: set[str] = set()
        self._preloaded_connections: set[str] = set()
        # Each task's hosts, held until every host of the task is queued: {task's uuid: [(host, task, task_vars, play_context), ...]}.
        self._held: dict[str, list] = {}
        # The pools of released tasks whose hosts may still wait for a worker.
        self._growing: list[Pool] = []

    def _queue_task(self, host, task, task_vars, play_context):
        if self._skipped_here(host, task, task_vars, play_context):
            return
        self._preload(task, task_vars, play_context)
        if task.async_val or task.throttle:
            with _frozen():
                super()._queue_task(host, task, task_vars, play_context)
            return
        self._held.setdefault(task._uuid, []).append((host, task, task_vars, play_context))
        # Counted now, so that the strategy waits for its results (and so releases it).
        self._pending_results += 1

    def _wait_on_pending_results(self, iterator):
        self._release_held()
        return super()._wait_on_pending_results(iterator)

    def _process_pending_results(self, iterator, one_pass=False, max_passes=None):
        self._grow()
        return super()._process_pending_results(iterator, one_pass, max_passes)

    def _release_held(self) -> None:
        """Starts each held task on a worker for each of the controller's CPUs; each runs the task on one
        host, then takes the next host no worker has taken, until none is left. _grow adds workers
        while hosts wait, up to forks."""
        held, self._held = self._held, {}
        cpus = len(os.sched_getaffinity(0))
        for hosts in held.values():
            # Ansible's queueing announces the host it gives a worker and keeps the host's variables for
            # its result: here every host of the task is announced and kept before any worker can take one.
            for host, task, task_vars, play_context in hosts:
                self._queued_task_cache[(host.name, task._uuid)] = {
                    "host": host, "task": task, "task_vars": task_vars, "play_context": play_context}
                self._tqm.send_callback("v2_runner_on_start", host, task)
            pool = Pool(hosts)
            first = min(cpus, len(self._workers))
            while first and self._start_worker(pool, wait=True):
                first -= 1
            pool.grown_at = time.monotonic()
            self._growing.append(pool)

    def _grow(self) -> None:
        """One worker more for a task whose hosts wait that no worker has taken, every GROWTH_INTERVAL
        seconds, while Ansible's worker list (forks long) has room: its workers wait on their hosts (a
        package install, a restart, a service's answer), not on the controller's CPUs."""
        if not self._growing:
            return
        now = time.monotonic()
        for pool in self._growing:
            if now - pool.grown_at >= GROWTH_INTERVAL and pool.waiting():
                self._start_worker(pool, wait=False)
                pool.grown_at = now
        self._growing = [pool for pool in self._growing if pool.waiting()]

    def _start_worker(self, pool: Pool, wait: bool) -> bool:
        """Forks a worker of pool, given the next host none has taken, in a free place of Ansible's worker
        list (without `wait`, only if a place is free now); whether one started."""
        while (slot := self._free_slot()) is None:
            if not wait:
                return False
            time.sleep(C.DEFAULT_INTERNAL_POLL_INTERVAL)
        index = pool.take()
        if index is None:
            return False
        host, task, task_vars, play_context = pool.hosts[index]
        if self._workers[slot] is not None:
            self._workers[slot].close()
        self._workers[slot] = PoolWorker(
            pool=pool, final_q=self._final_q, task_vars=task_vars, host=host, task=task, play_context=play_context,
            loader=self._loader, variable_manager=self._variable_manager,
            shared_loader_obj=plugin_loader.get_plugin_loader_namespace(), worker_id=slot, cliargs=context.CLIARGS)
        with _frozen():
            self._workers[slot].start()
        return True

    def _free_slot(self) -> int | None:
        return next((slot for slot, worker in enumerate(self._workers) if worker is None or not worker.is_alive()), None)

    def _skipped_here(self, host, task, task_vars, play_context) -> bool:
        """Skips the task on host, as its worker would, when its condition is false, and says so.
        Only the plain case: no loop (whose items each have the condition), no delegation, and a
        condition that evaluates without warning or error; every other task goes to a worker, which
        says what it always said about it."""
        if not task.when or task.loop_with or task.loop is not None or task.delegate_to is not None:
            return False
        # TaskExecutor's variables for the condition: the task's search path (for lookups), then
        # what the play context adds for the connection (ansible_check_mode among them).
        variables = dict(task_vars, ansible_search_path=task.get_search_path())
        if self._loader.get_basedir() not in variables["ansible_search_path"]:
            variables["ansible_search_path"].append(self._loader.get_basedir())
        templar = TemplateEngine(loader=self._loader, variables=variables)
        detail: dict = {}
        try:
            with _display_utils.DeferredWarningContext(variables=variables) as warnings:
                context = play_context.set_task_and_variable_override(task=task, variables=variables, templar=templar)
                context.post_validate(templar=templar)
                context.remote_addr = context.remote_addr or host.address
                context.update_vars(variables)
                if task._resolve_conditional(task.when, variables, result_context=detail):
                    return False
            if warnings.get_warnings() or warnings.get_deprecation_warnings():
                return False
        except Exception:  # pylint: disable=broad-exception-caught
            return False
        result = {"changed": False, "skipped": True, "skip_reason": "Conditional result was False", **detail}
        task.update_result_no_log(templar, result)
        # What a worker sends, by the way the results thread receives it.
        sent = _RawTaskResult(host=host, task=task, return_data=result, task_fields=task.dump_attrs()).as_wire_task_result()
        self._queued_task_cache[(host.name, task._uuid)] = {"host": host, "task": task, "task_vars": task_vars, "play_context": play_context}
        self._tqm.send_callback("v2_runner_on_start", host, task)
        with self._results_lock:
            self._results.append(self._convert_wire_task_result_to_raw(sent))
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
