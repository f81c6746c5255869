"""The module_calls callback on a real run: a playbook on two local-connection hosts whose every kind
of task (module, loop, controller-side, skipped, failed, delegated) is known in advance."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.chajipoa.platform.plugins.callback.module_calls import runs_on_controller

ROOT = Path(__file__).resolve().parents[4]

PLAYBOOK = """
- name: Every kind of task once
  hosts: all
  gather_facts: true
  tasks:
    - name: A module call that changes nothing
      ansible.builtin.command: "true"
      changed_when: false
    - name: A module call that changes something
      ansible.builtin.command: "true"
    - name: Controller-side only
      ansible.builtin.set_fact:
        seen: true
    - name: An assertion, also on the controller
      ansible.builtin.assert:
        that: seen
        quiet: true
    - name: A loop of three items, one of them skipped
      ansible.builtin.command: "echo {{ item }}"
      changed_when: false
      loop: [1, 2, 3]
      when: item != 2
    - name: A task skipped outright
      ansible.builtin.command: "false"
      when: false
    - name: A failure that is ignored
      ansible.builtin.command: "false"
      ignore_errors: true
    - name: Delegated to host_b, on host_a's behalf only
      ansible.builtin.command: "true"
      changed_when: false
      delegate_to: "{{ groups['all'] | last }}"
      when: inventory_hostname == 'host_a'
"""


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict]:
    work = tmp_path_factory.mktemp("module_calls")
    (work / "site.yml").write_text(PLAYBOOK)
    (work / "hosts.ini").write_text(
        f"host_a ansible_connection=local ansible_python_interpreter={sys.executable}\n"
        f"host_b ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    output = work / "calls.json"
    # Ansible's stock settings (no ansible.cfg in the work directory): facts gathered, none cached.
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"),
               ANSIBLE_CALLBACKS_ENABLED="chajipoa.platform.module_calls", CHAJIPOA_MODULE_CALLS_FILE=str(output),
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_CONFIG", None)
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(work / "hosts.ini"),
                          str(work / "site.yml")], cwd=work, capture_output=True, text=True, check=False, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    return run, json.loads(output.read_text())


def test_counts_every_kind_of_task_where_it_ran(recorded_run):
    counts = recorded_run[1]
    # Per host: facts, two commands, two loop items, the ignored failure (6; a failure is not counted
    # as a change); host_b also ran the call delegated to it for host_a, and skipped its own.
    assert counts == {
        "host_a": {"calls": 6, "changed": 1, "failed": 1, "controller": 2, "skipped": 2},
        "host_b": {"calls": 7, "changed": 1, "failed": 1, "controller": 2, "skipped": 3},
    }


def test_prints_the_table_at_the_end_of_the_run(recorded_run):
    run = recorded_run[0]
    table = run.stdout[run.stdout.index("MODULE CALLS"):].splitlines()
    assert table[1].split() == ["host", "calls", "changed", "failed", "controller", "skipped"]
    assert table[2].split() == ["host_a", "6", "1", "1", "2", "2"]
    assert table[3].split() == ["host_b", "7", "1", "1", "2", "3"]


@pytest.mark.parametrize(("action", "on_controller"), [
    ("ansible.builtin.set_fact", True),
    ("ansible.legacy.include_tasks", True),
    ("assert", True),
    ("chajipoa.platform.preflight", True),
    ("ansible.builtin.template", False),
    ("community.postgresql.postgresql_query", False),
    ("my.collection.set_fact", False),
])
def test_only_ansibles_own_controller_actions_are_controller_side(action, on_controller):
    assert runs_on_controller(action) is on_controller
