"""chajipoa.platform.linear on real runs, beside Ansible's own linear strategy: the same results in
the same order (skips, includes, blocks and conditions that fail among them), workers that start with
the controller's objects frozen, and no worker for a host that skips a task. An action plugin of the
test's own reports, from inside the worker, what Python's collector holds there; a filter and a lookup
of the test's own record which process judged a condition."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]

# Runs in the worker that Ansible forks for the task and host.
GC_STATE_ACTION = '''
import gc
import sys
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        result.update(changed=False, frozen=gc.get_freeze_count(), tracked=len(gc.get_objects()),
                      loaded=sorted(name for name in sys.modules if name.startswith("ansible_collections.community.general.plugins.filter.")
                                    or name.startswith("ansible.plugins.filter.")))
        return result
'''

PLAYBOOK = """
- name: A few tasks in order on two hosts
  hosts: all
  gather_facts: false
  tasks:
    # The task names a collection's filter in a variable it never reads: only a strategy that loads
    # ahead brings community.general's filters into the worker.
    - name: What the worker's collector holds
      gc_state:
      vars:
        never_read: "{{ [] | community.general.lists_mergeby([], 'name') }}"
    - name: A module call
      ansible.builtin.command: "echo {{ inventory_hostname }}"
      changed_when: false
      register: echoed
    - name: A loop, one item skipped
      ansible.builtin.debug:
        msg: "{{ item }} on {{ echoed.stdout }}"
      loop: [1, 2, 3]
      when: item != 2
    - name: Conditions of a block and of its task, skipped on one host and on both
      when: inventory_hostname == 'host_a'
      block:
        - name: Runs on host_a only
          ansible.builtin.debug:
            msg: ran
          when: true
        - name: Skipped everywhere
          ansible.builtin.debug:
            msg: never
          when: echoed.stdout == 'nobody'
    - name: An include skipped on one host
      ansible.builtin.include_tasks: included.yml
      when: inventory_hostname == 'host_b'
    - name: A condition that cannot be judged
      ansible.builtin.debug:
        msg: never
      when: no_such_variable == 1
      ignore_errors: true
    - name: A failure on one host
      ansible.builtin.fail:
        msg: planned
      when: inventory_hostname == 'host_b'
    - name: Only the host left
      ansible.builtin.debug:
        msg: still here
"""


def run(work: Path, strategy: str) -> list[tuple[str, str, dict]]:
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_STRATEGY=strategy, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", ANSIBLE_ACTION_PLUGINS=str(work / "action_plugins"))
    for name in ("ANSIBLE_CONFIG", "ANSIBLE_STRATEGY_PLUGINS", "ANSIBLE_CALLBACKS_ENABLED"):
        env.pop(name, None)
    completed = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(work / "hosts.ini"), str(work / "site.yml")],
                               cwd=work, capture_output=True, text=True, check=False, env=env)
    assert completed.returncode == 2, completed.stdout + completed.stderr  # host_b's planned failure
    report = json.loads(completed.stdout)
    return [(task["task"]["name"], host, result) for play in report["plays"] for task in play["tasks"]
            for host, result in sorted(task["hosts"].items())]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, list]:
    work = tmp_path_factory.mktemp("strategy")
    (work / "site.yml").write_text(PLAYBOOK)
    (work / "included.yml").write_text("- name: Included\n  ansible.builtin.debug:\n    msg: included on {{ inventory_hostname }}\n")
    (work / "action_plugins").mkdir()
    (work / "action_plugins" / "gc_state.py").write_text(GC_STATE_ACTION)
    (work / "hosts.ini").write_text("".join(f"{host} ansible_connection=local ansible_python_interpreter={sys.executable}\n"
                                            for host in ("host_a", "host_b")))
    return {strategy: run(work, strategy) for strategy in ("ansible.builtin.linear", "chajipoa.platform.linear")}


def outcome(result: dict) -> tuple:
    return (result.get("failed", False), result.get("skipped", False), result.get("changed"), result.get("msg"),
            result.get("skip_reason"), result.get("false_condition"),
            result.get("stdout"), [(item.get("item"), item.get("skipped", False), item.get("msg")) for item in result.get("results", [])])


def test_the_same_results_in_the_same_order_as_ansibles_linear(runs):
    ours = [(task, host, outcome(result)) for task, host, result in runs["chajipoa.platform.linear"]]
    assert ours == [(task, host, outcome(result)) for task, host, result in runs["ansible.builtin.linear"]]
    assert [(task, host) for task, host, _outcome in ours][-1] == ("Only the host left", "host_a")


def test_a_worker_finds_the_filters_its_task_names_loaded(runs):
    for strategy, preloaded in (("chajipoa.platform.linear", True), ("ansible.builtin.linear", False)):
        for task, _host, result in runs[strategy]:
            if task == "What the worker's collector holds":
                collection = [name for name in result["loaded"] if ".community.general." in name]
                builtin = [name for name in result["loaded"] if name.startswith("ansible.plugins.filter.")]
                assert bool(collection) is preloaded and bool(builtin) is preloaded, (strategy, result["loaded"])
                if preloaded:
                    assert "ansible_collections.community.general.plugins.filter.lists_mergeby" in collection


def test_a_worker_starts_with_the_controllers_objects_frozen(runs):
    for strategy, frozen in (("chajipoa.platform.linear", True), ("ansible.builtin.linear", False)):
        states = [result for task, _host, result in runs[strategy] if task == "What the worker's collector holds"]
        assert len(states) == 2
        for state in states:
            # The controller's objects (the playbook, the inventory, Ansible's plugins) are tens of thousands.
            if frozen:
                assert state["frozen"] > 20000 and state["tracked"] < state["frozen"], (strategy, state)
            else:
                assert state["frozen"] == 0 and state["tracked"] > 20000, (strategy, state)


# Record where a condition is judged: the process that renders it, and for which host.
JUDGED_IN_FILTER = """
import os


def judged_in(host, label):
    with open(os.environ["JUDGED_IN_FILE"], "a", encoding="utf-8") as record:
        record.write(f"{label} {host} {os.getpid()}\\n")
    return host


class FilterModule:
    def filters(self):
        return {"judged_in": judged_in}
"""

JUDGED_IN_LOOKUP = """
import os
from ansible.plugins.lookup import LookupBase


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        with open(os.environ["JUDGED_IN_FILE"], "a", encoding="utf-8") as record:
            record.write(f"{terms[0]} {variables['inventory_hostname']} {os.getpid()}\\n")
        return ["judged"]
"""

WHERE_JUDGED = """
- name: Where conditions are judged
  hosts: all
  gather_facts: false
  tasks:
    - name: True on host_a, false on host_b
      ansible.builtin.debug:
        msg: ran
      when: (inventory_hostname | judged_in('filter')) == 'host_a'
    - name: A lookup in the condition
      ansible.builtin.debug:
        msg: never
      when: lookup('judged_in', 'lookup') == 'never'
"""


def judged(tmp_path: Path, strategy: str) -> tuple[int, dict[tuple[str, str], list[int]]]:
    """The controller's process id, and the processes that judged each (condition, host)."""
    work = tmp_path / strategy
    for directory, name, source in (("filter_plugins", "judged_in.py", JUDGED_IN_FILTER), ("lookup_plugins", "judged_in.py", JUDGED_IN_LOOKUP)):
        (work / directory).mkdir(parents=True)
        (work / directory / name).write_text(source)
    (work / "site.yml").write_text(WHERE_JUDGED)
    (work / "hosts.ini").write_text("".join(f"{host} ansible_connection=local ansible_python_interpreter={sys.executable}\n"
                                            for host in ("host_a", "host_b")))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"), ANSIBLE_STRATEGY=strategy, JUDGED_IN_FILE=str(work / "judged"),
               ANSIBLE_FILTER_PLUGINS=str(work / "filter_plugins"), ANSIBLE_LOOKUP_PLUGINS=str(work / "lookup_plugins"))
    for name in ("ANSIBLE_CONFIG", "ANSIBLE_STRATEGY_PLUGINS", "ANSIBLE_CALLBACKS_ENABLED"):
        env.pop(name, None)
    with subprocess.Popen([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(work / "hosts.ini"), str(work / "site.yml")],
                          cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as playbook:
        output = playbook.communicate()[0]
    assert playbook.returncode == 0, output
    where: dict[tuple[str, str], list[int]] = {}
    for line in (work / "judged").read_text().splitlines():
        label, host, pid = line.split()
        where.setdefault((label, host), []).append(int(pid))
    return playbook.pid, where


def test_a_host_that_skips_a_task_gets_no_worker(tmp_path):
    controller, where = judged(tmp_path, "chajipoa.platform.linear")
    # Judged false by the controller alone; judged true by the controller, then run (and judged again) in a worker.
    assert where["filter", "host_b"] == [controller]
    assert where["filter", "host_a"][0] == controller and len(where["filter", "host_a"]) == 2
    assert controller not in where["filter", "host_a"][1:]
    # A lookup may do something each time it runs: judged in the worker alone, once, as Ansible does.
    assert len(where["lookup", "host_a"]) == len(where["lookup", "host_b"]) == 1
    assert controller not in where["lookup", "host_a"] + where["lookup", "host_b"]

    controller, where = judged(tmp_path, "ansible.builtin.linear")
    assert all(len(pids) == 1 and controller not in pids for pids in where.values()), where
