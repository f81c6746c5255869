"""chajipoa.platform.mitogen_linear takes over hosts whose connection is named community.docker.docker,
as molecule's and the development inventory's are, where Mitogen's own strategy silently leaves them
to Ansible; the controller's own tasks (connection local) stay Ansible's.

Under Mitogen every module call on a host runs in the one interpreter Mitogen keeps there, so two
shell tasks report the same parent process; under Ansible's linear strategy each call starts a new
interpreter, and the parents differ. Needs the Docker engine and the lab image (`make integration`).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ansible_mitogen
import pytest

from tests import lab_container
from tests.conftest import ROOT

CONTAINER = "chajipoa-strategy-probe1"
PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: Parent of the first call
      ansible.builtin.shell: echo $PPID
      register: first
      changed_when: false
    - name: Parent of the second call
      ansible.builtin.shell: echo $PPID
      register: second
      changed_when: false
    # A collection's module with module_utils of its collection: Mitogen sends them from the
    # collection directories the strategy listed once, before forking its workers.
    - name: A collection's module
      chajipoa.platform.systemd_units:
        units: [{name: systemd-journald.service}]
      register: units
    - name: Report
      ansible.builtin.debug:
        msg: "parents {{ first.stdout }} {{ second.stdout }} units {{ units.units | length }}"
"""


@pytest.fixture(scope="module")
def lab_host():
    lab_container.start(CONTAINER)
    yield CONTAINER
    lab_container.remove(CONTAINER)


PROJECTS = {"ANSIBLE_STRATEGY": "chajipoa.platform.mitogen_linear"}
MITOGENS = {"ANSIBLE_STRATEGY_PLUGINS": str(Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"),
            "ANSIBLE_STRATEGY": "mitogen_linear"}


def run_playbook(tmp_path: Path, playbook: str, inventory: str, strategy: dict[str, str] | None = None) -> str:
    """The output of a successful run of `playbook` under `strategy` (PROJECTS, the collection's, found
    as an execution environment finds it, through the collection alone; or MITOGENS)."""
    (tmp_path / "site.yml").write_text(playbook)
    env = {name: value for name, value in os.environ.items() if name not in ("ANSIBLE_STRATEGY", "ANSIBLE_STRATEGY_PLUGINS")}
    env.update(strategy or PROJECTS, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", inventory, str(tmp_path / "site.yml")],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def parents(tmp_path: Path, strategy: dict[str, str], connection: str = "community.docker.docker") -> list[str]:
    (tmp_path / "hosts.ini").write_text(f"probe1 ansible_host={CONTAINER} ansible_connection={connection} "
                                        "ansible_python_interpreter=/usr/bin/python3\n")
    output = run_playbook(tmp_path, PLAYBOOK, str(tmp_path / "hosts.ini"), strategy)
    words = output.split('"parents ')[1].split('"')[0].split()
    assert words[2:] == ["units", "1"], output
    return words[:2]


def test_the_projects_strategy_runs_every_call_in_mitogens_interpreter(lab_host, tmp_path):
    first, second = parents(tmp_path, PROJECTS)
    assert first == second


def test_mitogens_own_strategy_leaves_the_collection_named_connection_to_ansible(lab_host, tmp_path):
    # The reason the project's strategy exists: with the stock strategy, the calls do not share an interpreter.
    first, second = parents(tmp_path, MITOGENS)
    assert first != second


def test_the_short_connection_name_is_mitogens_under_either(lab_host, tmp_path):
    first, second = parents(tmp_path, MITOGENS, connection="docker")
    assert first == second


CPU_PLAYBOOK = r"""
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: CPUs the worker and ansible-playbook (the worker's parent) may run on
      vars:
        worker: "{{ lookup('ansible.builtin.file', '/proc/self/status') }}"
        controller_pid: "{{ worker | regex_search('PPid:\\s*(\\d+)', '\\1') | first }}"
        controller: "{{ lookup('ansible.builtin.file', '/proc/' ~ controller_pid ~ '/status') }}"
      ansible.builtin.debug:
        msg: "cpus {{ worker | regex_search('Cpus_allowed_list:\\s*(\\S+)', '\\1') | first }}
          {{ controller | regex_search('Cpus_allowed_list:\\s*(\\S+)', '\\1') | first }} end"
"""


def cpu_set(listed: str) -> set[int]:
    """The CPUs of a Linux CPU list (/proc/<pid>/status's Cpus_allowed_list: 0-3,6)."""
    cpus = set()
    for part in listed.split(","):
        first, last = (part.split("-") + [part])[:2]
        cpus.update(range(int(first), int(last) + 1))
    return cpus


def test_the_controller_and_its_workers_keep_every_cpu_they_were_given(tmp_path):
    """Mitogen's fixed CPU placement pins ansible-playbook and every worker it forks: on a machine with
    two CPUs, all of them to one, the other kept for Mitogen's connection multiplexer (which used 2 s of
    CPU in a 40 s run of the scale bench). The project's strategy leaves placement to the kernel."""
    output = run_playbook(tmp_path, CPU_PLAYBOOK, "localhost,")
    worker, controller = output.split('"cpus ')[1].split(" end")[0].split()
    assert cpu_set(worker) == cpu_set(controller) == os.sched_getaffinity(0), output
