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
import time
from pathlib import Path

import ansible_mitogen
import pytest
import yaml

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


def lab_inventory(tmp_path: Path, connection: str = "community.docker.docker") -> str:
    """An inventory of the lab host, reached through `connection`."""
    (tmp_path / "hosts.ini").write_text(f"probe1 ansible_host={CONTAINER} ansible_connection={connection} "
                                        "ansible_python_interpreter=/usr/bin/python3\n")
    return str(tmp_path / "hosts.ini")


def parents(tmp_path: Path, strategy: dict[str, str], connection: str = "community.docker.docker") -> list[str]:
    output = run_playbook(tmp_path, PLAYBOOK, lab_inventory(tmp_path, connection), strategy)
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


BYTECODE = "/root/.cache/chajipoa/mitogen-bytecode"


def cached_code(container: str) -> dict[str, float]:
    """The host's entries of compiled code, by name, with the time each was last written or read."""
    listed = lab_container.docker("exec", container, "find", BYTECODE, "-type", "f", "-printf", "%f %T@\\n").stdout
    return {name: float(stamp) for name, stamp in (line.split() for line in listed.splitlines())}


def test_the_code_mitogen_compiles_on_a_host_is_kept_there_for_the_next_run(lab_host, tmp_path):
    """Mitogen sends the host's interpreter every module as source, and it compiled them all on every
    run: a quarter of what a no-op run cost a host. The next run reads every one of them back."""
    lab_container.docker("exec", lab_host, "rm", "-rf", BYTECODE)
    parents(tmp_path, PROJECTS)
    first = cached_code(lab_host)
    # Mitogen's own modules, ansible-core's module_utils and the modules that ran.
    assert len(first) > 50, first
    assert lab_container.docker("exec", lab_host, "stat", "-c", "%a %U", BYTECODE).stdout.split() == ["700", "root"]
    parents(tmp_path, PROJECTS)
    second = cached_code(lab_host)
    assert second.keys() == first.keys()
    assert all(second[name] > first[name] for name in first), "entries the second run did not read"


def test_the_short_connection_name_is_mitogens_under_either(lab_host, tmp_path):
    first, second = parents(tmp_path, MITOGENS, connection="docker")
    assert first == second


# Reports, from ansible-playbook itself at the end of the run, how many classes Mitogen's action mix-in has.
MIXIN_CLASSES_CALLBACK = """
import ansible_mitogen.mixins
from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "mixin_classes"

    def v2_playbook_on_stats(self, stats):
        self._display.display(f"mix-in classes {len(ansible_mitogen.mixins.ActionModuleMixin.__subclasses__())} end")
"""


def test_the_strategy_gives_each_action_plugin_one_class_however_many_tasks_run(lab_host, tmp_path):
    """Mitogen made a class for every task and host (the strategy asks for each task's action plugin
    on each host), and the frozen heap kept them to the end of the run: every worker's first check
    against the mix-in walked them all, so a host's tasks cost more the larger the fleet. Here 30
    tasks of two action plugins, on one host and on the controller, leave a class per plugin."""
    (tmp_path / "callbacks").mkdir()
    (tmp_path / "callbacks" / "mixin_classes.py").write_text(MIXIN_CLASSES_CALLBACK)
    tasks = [{"name": f"Call {number}", "ansible.builtin.stat": {"path": "/etc/hostname"}} for number in range(15)]
    tasks += [{"name": f"Judge {number}", "ansible.builtin.assert": {"that": "true", "quiet": True}} for number in range(15)]
    playbook = yaml.safe_dump([{"hosts": "all", "gather_facts": False, "tasks": tasks}], sort_keys=False)
    output = run_playbook(tmp_path, playbook, lab_inventory(tmp_path),
                          {**PROJECTS, "ANSIBLE_CALLBACK_PLUGINS": str(tmp_path / "callbacks"), "ANSIBLE_CALLBACKS_ENABLED": "mixin_classes"})
    classes = int(output.split("mix-in classes ")[1].split(" end")[0])
    assert 1 <= classes <= 2, output


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


# Mitogen's interpreters name themselves python3(mitogen:...) in their command line (the lab image has no ps).
INTERPRETERS = "for process in /proc/[0-9]*; do head -c 25 $process/cmdline; echo; done 2>/dev/null | grep -c '^/usr/bin/python3(mitogen:'"
ISOLATION_PLAYBOOK = r"""
- hosts: all
  gather_facts: false
  vars:
    interpreters: "%s"
    lineage: "forked_from=$(cut -d' ' -f4 /proc/$PPID/stat); echo $PPID $forked_from $(cut -d' ' -f4 /proc/$forked_from/stat)"
  tasks:
    - name: Mitogen's interpreters on the host at the first call
      ansible.builtin.shell: "{{ interpreters }}"
      register: first
      changed_when: false
    - name: Isolated calls, each with the interpreter it runs in, the one it was forked from and that one's parent
      ansible.builtin.shell: "{{ lineage }}"
      vars:
        mitogen_task_isolation: fork
      register: isolated
      changed_when: false
      loop: [1, 2]
    - name: An async call
      ansible.builtin.shell: "{{ lineage }}"
      async: 30
      poll: 1
      register: background
      changed_when: false
    - name: A shared call, with its interpreter
      ansible.builtin.shell: echo $PPID
      register: shared
      changed_when: false
    - name: Report
      ansible.builtin.debug:
        msg: "interpreters {{ first.stdout }} forks {{ (isolated.results | map(attribute='stdout') | list + [background.stdout]) | join(' ') }}
          shared {{ shared.stdout }} end"
""" % INTERPRETERS


def isolation(tmp_path: Path, strategy: dict[str, str], connection: str) -> tuple[int, list[tuple[str, str, str]], str]:
    """Mitogen's interpreters on the host at a run's first call; each isolated call's (two with
    mitogen_task_isolation=fork, one async) interpreter, the one it was forked from and that one's
    parent; the interpreter of the shared calls."""
    output = run_playbook(tmp_path, ISOLATION_PLAYBOOK, lab_inventory(tmp_path, connection), strategy)
    words = output.split('"interpreters ')[1].split(' end"')[0].split()
    forks, shared = words[words.index("forks") + 1:words.index("shared")], words[-1]
    return int(words[0]), list(zip(forks[::3], forks[1::3], forks[2::3])), shared


def test_isolated_calls_fork_from_an_interpreter_started_when_the_first_comes(lab_host, tmp_path):
    """Mitogen forked, as each host's interpreter started, the clean copy isolated calls are forked
    from, on every host and run: a no-op run has none. Here the host has one interpreter until an
    isolated call comes; then each isolated call, async ones too, runs in a fork of one new interpreter,
    started from the host's, not in a fork of the interpreter the shared calls ran in."""
    interpreters, forks, shared = isolation(tmp_path, PROJECTS, "community.docker.docker")
    assert interpreters == 1
    assert len({run for run, _parent, _started_by in forks}) == 3, forks
    [(parent, started_by)] = {(parent, started_by) for _run, parent, started_by in forks}
    assert parent != shared and started_by == shared, forks
    # The host's interpreters end when the controller's connection closes, just after ansible-playbook.
    for _attempt in range(40):
        left = lab_container.docker("exec", lab_host, "sh", "-c", INTERPRETERS + " || true").stdout.strip()
        if left == "0":
            break
        time.sleep(0.25)
    assert left == "0", f"interpreters left on the host 10 s after the run: {left}"


def test_mitogens_own_strategy_starts_each_host_with_a_copy_for_isolated_calls(lab_host, tmp_path):
    interpreters, forks, _shared = isolation(tmp_path, MITOGENS, "docker")
    assert interpreters == 2
    assert len({parent for _run, parent, _started_by in forks}) == 1, forks
