#!/usr/bin/env python3
"""The cost of one module call on a lab host, by connection and strategy, in one run.

One systemd container of the lab image (its own, on Docker's default network; sshd installed in it
from Debian's archive for the SSH arms) receives a playbook of --tasks no-op module calls
(ansible.builtin.stat of a file, gather_facts off) under each configuration below, alternating,
--rounds times; the medians of the wall time and of the controller's CPU time (ansible-playbook and
its workers) are written to docs/performance.md with their ratios to the project's default
connection under Ansible's linear strategy. Every arm runs with the project's ansible.cfg
(pipelining on).

  docker           community.docker.docker: a `docker exec` process per call (the lab's connection)
  docker_api       community.docker.docker_api: the engine's API from the controller, no CLI process
  ssh              ansible.builtin.ssh with ControlPersist (production hosts are reached over SSH)
  mitogen docker   the same docker connection under Mitogen (chajipoa.platform.mitogen_linear)
  mitogen ssh      the same ssh connection under Mitogen

Usage: python3 bench/module_call.py [--tasks 40] [--rounds 3]
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import ROOT, record, results_log, timed_playbook

sys.path[:0] = [str(ROOT)]
from tests import lab_container  # noqa: E402

CONTAINER = "chajipoa-bench-call1"
# name: (connection variables, strategy)
ARMS = {
    "docker": ({"ansible_connection": "community.docker.docker", "ansible_host": CONTAINER}, "linear"),
    "docker_api": ({"ansible_connection": "community.docker.docker_api", "ansible_host": CONTAINER}, "linear"),
    "ssh (ControlPersist)": ({"ansible_connection": "ansible.builtin.ssh"}, "linear"),
    "mitogen, docker": ({"ansible_connection": "community.docker.docker", "ansible_host": CONTAINER}, "mitogen"),
    "mitogen, ssh": ({"ansible_connection": "ansible.builtin.ssh"}, "mitogen"),
}
BASELINE = "docker"


def sh(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs)


def start_host(public_key: Path) -> str:
    """The bench's container with sshd admitting `public_key` as root; returns its address."""
    lab_container.start(CONTAINER)
    sh("docker", "exec", CONTAINER, "sh", "-c",
       "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server >/dev/null "
       "&& install -d -m 0700 /root/.ssh && systemctl start ssh")
    sh("docker", "exec", "-i", CONTAINER, "sh", "-c", "cat > /root/.ssh/authorized_keys", input=public_key.read_text())
    return sh("docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", CONTAINER).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    stamp = datetime.datetime.now(datetime.UTC)
    work = Path(tempfile.mkdtemp(prefix="chajipoa-bench-call-"))
    key = work / "id_ed25519"
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    address = start_host(key.with_suffix(".pub"))
    playbook = work / "calls.yml"
    playbook.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n" + "".join(
        f"    - name: Call {number}\n      ansible.builtin.stat:\n        path: /etc/hostname\n" for number in range(options.tasks)))
    inventories = {}
    for number, (name, (connection, _)) in enumerate(ARMS.items()):
        settings = {"ansible_host": address, "ansible_user": "root", "ansible_ssh_private_key_file": str(key),
                    "ansible_ssh_common_args": "-o UserKnownHostsFile=/dev/null",
                    "ansible_python_interpreter": "/usr/bin/python3", **connection}
        inventories[name] = work / f"hosts-{number}.ini"
        inventories[name].write_text("bench1 " + " ".join(f"{key_}='{value}'" for key_, value in settings.items()) + "\n")
    wall: dict[str, list[float]] = {name: [] for name in ARMS}
    cpu: dict[str, list[float]] = {name: [] for name in ARMS}
    try:
        with results_log("module-call", stamp) as log:
            for round_number in range(1, options.rounds + 1):
                for name, (_, strategy) in ARMS.items():
                    # The container's host key is new each run; Mitogen reads this setting, not ssh's options.
                    run = timed_playbook(["-i", str(inventories[name]), str(playbook)], log, config=str(ROOT / "ansible.cfg"),
                                         strategy=strategy, settings={"ANSIBLE_HOST_KEY_CHECKING": "False"})
                    wall[name].append(run.seconds)
                    cpu[name].append(run.controller_cpu)
                print(f"round {round_number}: " + ", ".join(f"{name} {values[-1]:.1f} s" for name, values in wall.items()))
    finally:
        lab_container.remove(CONTAINER)
    wall_median = {name: statistics.median(values) for name, values in wall.items()}
    cpu_median = {name: statistics.median(values) for name, values in cpu.items()}
    base = wall_median[BASELINE]
    record("module-call", "\n".join([
        f"Measured {stamp:%Y-%m-%d} with `python3 bench/module_call.py --tasks {options.tasks} --rounds {options.rounds}` "
        f"on {os.cpu_count()} cores: one lab container, {options.tasks} no-op calls (`stat`) per run, project ansible.cfg; "
        f"medians of {options.rounds} alternating rounds. Controller CPU: ansible-playbook and its workers. "
        f"Raw output: {Path(log.name).relative_to(ROOT)}.",
        "",
        "| connection, strategy | wall (s) | per call (s) | controller CPU (s) | wall / docker, linear |",
        "|---|---|---|---|---|",
        *(f"| {name}{'' if strategy == 'mitogen' else ', linear'} | {wall_median[name]:.1f} | {wall_median[name] / options.tasks:.2f} | "
          f"{cpu_median[name]:.1f} | {wall_median[name] / base:.2f}x |" for name, (_, strategy) in ARMS.items()),
    ]))


if __name__ == "__main__":
    main()
