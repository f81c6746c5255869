"""chajipoa.platform.linear on real runs, beside Ansible's own linear strategy: the same results in
the same order, on more hosts than forks (so that a worker runs a task on several hosts), no more
workers than forks for a task, and workers that start with the controller's objects frozen. An action
plugin of the test's own reports, from inside the worker, what Python's collector holds there."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
HOSTS = ("host_a", "host_b", "host_c", "host_d", "host_e")
FORKS = 4

# Runs in the worker that Ansible forks for the task and host.
GC_STATE_ACTION = '''
import gc
import pkgutil
import sys
from ansible.plugins.action import ActionBase
from ansible.plugins.loader import filter_loader


class ActionModule(ActionBase):
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        result.update(changed=False, frozen=gc.get_freeze_count(), tracked=len(gc.get_objects()),
                      loaded=sorted(name for name in sys.modules if name.startswith("ansible_collections.community.general.plugins.filter.")
                                    or name.startswith("ansible.plugins.filter.")))
        # After the modules loaded are listed. A template finds a filter as this does; each listing
        # of a collection's plugin files is a scan.
        scans, listing = [], pkgutil.iter_modules
        pkgutil.iter_modules = lambda *args, **kwargs: scans.append(args) or listing(*args, **kwargs)
        try:
            filter_loader.get("community.general.lists_mergeby")
        finally:
            pkgutil.iter_modules = listing
        result.update(filter_scans=len(scans))
        return result
'''

PLAYBOOK = """
- name: A few tasks in order on five hosts
  hosts: all
  gather_facts: false
  tasks:
    # The task names a collection's filter in a variable it never reads: only a strategy that loads
    # ahead brings community.general's filters into the worker.
    - name: What the worker's collector holds
      gc_state:
      vars:
        never_read: "{{ [] | community.general.lists_mergeby([], 'name') }}"
    # Each host's own value, from a worker that may have run the task on another host just before.
    - name: A module call
      ansible.builtin.command: "echo {{ inventory_hostname }}"
      changed_when: false
      register: echoed
    # Each host waits: the task's first worker is not done with its host before the strategy gives
    # the task more workers, up to forks.
    - name: A task whose hosts keep their workers waiting
      ansible.builtin.command: sleep 2
      changed_when: false
    - name: A task with a throttle, a worker for each host
      ansible.builtin.debug:
        msg: "throttled on {{ inventory_hostname }}"
      throttle: 5
    - name: A task once for the play
      ansible.builtin.debug:
        msg: "once, on {{ inventory_hostname }}"
      run_once: true
    - name: A loop, one item skipped
      ansible.builtin.debug:
        msg: "{{ item }} on {{ echoed.stdout }}"
      loop: [1, 2, 3]
      when: item != 2
    # One source read three ways (a task's template, a template file, the file with delimiters of its
    # own), on two hosts: a worker of this strategy loads what the first host's compiled, so a
    # template read one way must not be taken for another.
    - name: Templates compiled in one worker and loaded in the next
      ansible.builtin.debug:
        msg:
          - "{{ '\\n' | length }} [% inventory_hostname %]"
          - "{{ lookup('ansible.builtin.template', 'same_source.j2') }}"
          - "{{ lookup('ansible.builtin.template', 'same_source.j2', variable_start_string='[%', variable_end_string='%]') }}"
    # Skipped where the condition is false: by the strategy itself under chajipoa.platform.linear,
    # which forks no worker for them, exactly as a worker would skip them.
    - name: A skipped task, registered
      ansible.builtin.command: "echo never"
      when: inventory_hostname == 'nobody'
      register: never_run
    - name: What was registered
      ansible.builtin.debug:
        var: never_run
    - name: A skipped secret
      ansible.builtin.debug:
        msg: hidden
      when: false
      no_log: true
    - name: A skipped include
      ansible.builtin.include_tasks: absent.yml
      when: echoed.stdout == 'nobody'
    - name: A task for check mode only, from the play context's variables
      ansible.builtin.debug:
        msg: checking
      when: ansible_check_mode
    - name: A condition that cannot be evaluated, left to the worker
      ansible.builtin.debug:
        msg: unreachable
      when: not_defined_anywhere
      ignore_errors: true
    # The strategy keeps each host's decoded facts: a fact set again, or cleared, must read anew.
    - name: A fact for the cache
      ansible.builtin.set_fact:
        probe: "first {{ inventory_hostname }}"
        cacheable: true
    - name: The cached fact
      ansible.builtin.debug:
        msg: "{{ ansible_facts['probe'] }}"
    - name: The fact set again
      ansible.builtin.set_fact:
        probe: "second {{ inventory_hostname }}"
        cacheable: true
    - name: The fact as set again
      ansible.builtin.debug:
        msg: "{{ ansible_facts['probe'] }}"
    - name: The facts cleared
      ansible.builtin.meta: clear_facts
    - name: No fact left
      ansible.builtin.debug:
        msg: "{{ ansible_facts['probe'] | default('none') }}"
    - name: A failure on one host
      ansible.builtin.fail:
        msg: planned
      when: inventory_hostname == 'host_b'
    - name: Only the host left
      ansible.builtin.debug:
        msg: still here
"""


# Counts, in ansible-playbook itself, the processes it starts (its workers), by the task each is given.
COUNT_WORKERS = """
import atexit, collections, json, multiprocessing.process, os
_start, _parent, _started = multiprocessing.process.BaseProcess.start, os.getpid(), collections.Counter()
def start(self):
    _started[self._task.name] += 1
    return _start(self)
multiprocessing.process.BaseProcess.start = start
atexit.register(lambda: os.getpid() == _parent and open(os.environ["WORKERS_STARTED"], "w").write(json.dumps(_started)))
"""


def run(work: Path, strategy: str) -> tuple[list[tuple[str, str, dict]], dict[str, int]]:
    """The run's results by task and host, and how many workers it started for each task. On one CPU,
    so that chajipoa.platform.linear starts each task on fewer workers than forks, wherever it runs."""
    counted = work / f"workers-{strategy}"
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_STRATEGY=strategy, ANSIBLE_FORKS=str(FORKS), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1",
               ANSIBLE_ACTION_PLUGINS=str(work / "action_plugins"),
               PYTHONPATH=str(work / "count_workers"), WORKERS_STARTED=str(counted))
    for name in ("ANSIBLE_CONFIG", "ANSIBLE_STRATEGY_PLUGINS", "ANSIBLE_CALLBACKS_ENABLED"):
        env.pop(name, None)
    completed = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(work / "hosts.ini"), str(work / "site.yml")],
                               cwd=work, capture_output=True, text=True, check=False, env=env,
                               preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
    assert completed.returncode == 2, completed.stdout + completed.stderr  # host_b's planned failure
    report = json.loads(completed.stdout)
    # By task in the order they ran, then by host: ansible.posix.json lists each host's result of this
    # strategy apart, in the order they came, and a worker's hosts come in the order it took them.
    listed = [(task["task"]["name"], host, result) for play in report["plays"] for task in play["tasks"] for host, result in task["hosts"].items()]
    order = {name: index for index, name in reversed(list(enumerate(name for name, _host, _result in listed)))}
    return sorted(listed, key=lambda entry: (order[entry[0]], entry[1])), json.loads(counted.read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, list]:
    work = tmp_path_factory.mktemp("strategy")
    (work / "site.yml").write_text(PLAYBOOK)
    (work / "templates").mkdir()
    (work / "templates" / "same_source.j2").write_text("{{ '\\n' | length }} [% inventory_hostname %]")
    (work / "action_plugins").mkdir()
    (work / "action_plugins" / "gc_state.py").write_text(GC_STATE_ACTION)
    (work / "count_workers").mkdir()
    (work / "count_workers" / "sitecustomize.py").write_text(COUNT_WORKERS)
    (work / "hosts.ini").write_text("".join(f"{host} ansible_connection=local ansible_python_interpreter={sys.executable}\n"
                                            for host in HOSTS))
    return {strategy: run(work, strategy) for strategy in ("ansible.builtin.linear", "chajipoa.platform.linear")}


def results(runs, strategy: str) -> list[tuple[str, str, dict]]:
    return runs[strategy][0]


def outcome(result: dict) -> tuple:
    return (result.get("failed", False), result.get("skipped", False), result.get("changed"), result.get("msg"),
            result.get("stdout"), [(item.get("item"), item.get("skipped", False), item.get("msg")) for item in result.get("results", [])])


def test_the_same_results_in_the_same_order_as_ansibles_linear(runs):
    ours = [(task, host, outcome(result)) for task, host, result in results(runs, "chajipoa.platform.linear")]
    assert ours == [(task, host, outcome(result)) for task, host, result in results(runs, "ansible.builtin.linear")]
    compiled = [result["msg"] for task, _host, result in results(runs, "chajipoa.platform.linear") if task.startswith("Templates compiled")]
    assert compiled == [["1 [% inventory_hostname %]", "1 [% inventory_hostname %]", "{{ '\\n' | length }} " + host] for host in HOSTS]
    assert [(task, host) for task, host, _outcome in ours][-4:] == [("Only the host left", host) for host in HOSTS if host != "host_b"]
    echoed = [(host, result["stdout"]) for task, host, result in results(runs, "chajipoa.platform.linear") if task == "A module call"]
    assert echoed == [(host, host) for host in HOSTS]
    facts = [result["msg"] for task, host, result in results(runs, "chajipoa.platform.linear")
             if task in ("The cached fact", "The fact as set again", "No fact left") and host == "host_a"]
    assert facts == ["first host_a", "second host_a", "none"]


def test_a_task_skipped_without_a_worker_reads_as_one_its_worker_skipped(runs):
    ours = {(task, host): result for task, host, result in results(runs, "chajipoa.platform.linear")}
    theirs = {(task, host): result for task, host, result in results(runs, "ansible.builtin.linear")}
    skipped = [key for key, result in theirs.items() if result.get("skipped") and "results" not in result]
    assert {task for task, _host in skipped} == {"A skipped task, registered", "A skipped secret", "A skipped include",
                                                 "A task for check mode only, from the play context's variables", "A failure on one host"}
    for key in [*skipped, ("What was registered", "host_a"), ("What was registered", "host_b")]:
        assert ours[key] == theirs[key], key
    ansibles_workers = runs["ansible.builtin.linear"][1]
    assert sum(ansibles_workers.values()) == len(theirs)


def test_a_task_starts_on_few_workers_and_gains_more_while_its_hosts_wait_up_to_forks(runs):
    """Ansible forks a worker for every task and host; here a task starts on one worker per CPU (one
    CPU in this run) or two, gains one more at intervals while hosts wait that no worker has taken, and
    never has more than forks. Every host runs once, whichever worker took it."""
    ran: dict[str, int] = {}
    for task, _host, result in results(runs, "chajipoa.platform.linear"):
        if not (result.get("skipped") and "results" not in result):
            ran[task] = ran.get(task, 0) + 1
    workers = runs["chajipoa.platform.linear"][1]
    assert workers.pop("A task whose hosts keep their workers waiting") == FORKS < len(HOSTS)
    assert workers.pop("A task with a throttle, a worker for each host") == len(HOSTS)
    assert set(workers) == set(ran) - {"A task whose hosts keep their workers waiting", "A task with a throttle, a worker for each host"}
    for task, count in workers.items():
        assert 1 <= count <= min(ran[task], FORKS), (task, count)


def test_a_worker_finds_the_filters_its_task_names_loaded(runs):
    for strategy, preloaded in (("chajipoa.platform.linear", True), ("ansible.builtin.linear", False)):
        for task, _host, result in results(runs, strategy):
            if task == "What the worker's collector holds":
                collection = [name for name in result["loaded"] if ".community.general." in name]
                builtin = [name for name in result["loaded"] if name.startswith("ansible.plugins.filter.")]
                assert bool(collection) is preloaded and bool(builtin) is preloaded, (strategy, result["loaded"])
                if preloaded:
                    assert "ansible_collections.community.general.plugins.filter.lists_mergeby" in collection


def test_a_worker_finds_a_collections_filter_without_scanning_the_collection_again(runs):
    # The strategy resolved the filter the task names before it forked the worker.
    for strategy, scanned in (("chajipoa.platform.linear", False), ("ansible.builtin.linear", True)):
        scans = [result["filter_scans"] for task, _host, result in results(runs, strategy) if task == "What the worker's collector holds"]
        assert len(scans) == len(HOSTS) and all(bool(count) is scanned for count in scans), (strategy, scans)


def test_a_worker_starts_with_the_controllers_objects_frozen(runs):
    for strategy, frozen in (("chajipoa.platform.linear", True), ("ansible.builtin.linear", False)):
        states = [result for task, _host, result in results(runs, strategy) if task == "What the worker's collector holds"]
        assert len(states) == len(HOSTS)
        for state in states:
            # The controller's objects (the playbook, the inventory, Ansible's plugins) are tens of thousands.
            if frozen:
                assert state["frozen"] > 20000 and state["tracked"] < state["frozen"], (strategy, state)
            else:
                assert state["frozen"] == 0 and state["tracked"] > 20000, (strategy, state)
