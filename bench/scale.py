#!/usr/bin/env python3
"""How a no-op run grows with the fleet: the common role on a lab of --hosts containers each.

For each host count, in one run: an inventory of that many lab hosts (development settings, a lab
network of the bench's own), playbooks/lab.yml makes their containers, `site.yml --tags common`
converges them under Mitogen (make dev's strategy), then runs again with nothing to change under
Mitogen and under Ansible's linear strategy; the lab is removed before the next count. Written to docs/performance.md:
the times, the ratio of the no-op times between the largest and the smallest fleet (target: at most
3x for 5x the hosts), and the controller's CPU time per module call (ansible-playbook and its workers,
divided by the calls the chajipoa.platform.module_calls callback counted on every host).

Usage: python3 bench/scale.py [--hosts 6 30] [--forks 20]
"""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import tempfile
from pathlib import Path

import yaml
from benchlib import ROOT, children_cpu_seconds, record, results_log, timed_playbook

NETWORK = "chajipoa-scale"
SUBNET = "172.30.90"
DEVELOPMENT = ROOT / "inventories" / "development"


def inventory(directory: Path, count: int) -> Path:
    """The development inventory's settings and groups with `count` hosts and a network of the bench's own.
    The hosts are in group redis because the validation play wants every host in a group it knows (and
    `--tags common` still validates the arguments of their group's roles); only the common role runs."""
    shutil.copytree(DEVELOPMENT / "group_vars", directory / "group_vars")
    lab = yaml.safe_load((directory / "group_vars/all/lab.yml").read_text())
    lab.update(lab_network=NETWORK, lab_subnet=f"{SUBNET}.0/24", lab_gateway=f"{SUBNET}.1")
    (directory / "group_vars/all/lab.yml").write_text(yaml.safe_dump(lab))
    hosts = {f"scale{number:02d}": {"ansible_host": f"{NETWORK}-{number:02d}", "private_address": f"{SUBNET}.{10 + number}"}
             for number in range(1, count + 1)}
    groups = {group: {} for group in yaml.safe_load((DEVELOPMENT / "hosts.yml").read_text())["all"]["children"]}
    (directory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {**groups, "redis": {"hosts": hosts}}}}))
    return directory


def measured(args: list[str], log, strategy: str, expect_noop: bool = False) -> tuple[float, float, int]:
    """Wall seconds, controller CPU seconds and module calls (all hosts) of one run."""
    cpu_before = children_cpu_seconds()
    elapsed, calls = timed_playbook(args, log, expect_noop=expect_noop, strategy=strategy)
    return elapsed, children_cpu_seconds() - cpu_before, sum(counts["calls"] for counts in calls.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[6, 30])
    parser.add_argument("--forks", type=int, default=20)
    options = parser.parse_args()
    os.environ["ANSIBLE_FORKS"] = str(options.forks)
    stamp = datetime.datetime.now(datetime.UTC)
    rows, noop = [], {}
    with results_log("scale", stamp) as log:
        for count in sorted(options.hosts):
            work = Path(tempfile.mkdtemp(prefix=f"chajipoa-scale-{count}-"))
            hosts = ["-i", str(inventory(work / "inventory", count))]
            try:
                timed_playbook(["playbooks/lab.yml", *hosts], log)
                cold, _, _ = measured(["playbooks/site.yml", "--tags", "common", *hosts], log, "mitogen")
                for strategy in ("mitogen", "linear"):
                    elapsed, cpu, calls = measured(["playbooks/site.yml", "--tags", "common", *hosts], log, strategy, expect_noop=True)
                    noop[count, strategy] = elapsed
                    cold_column = f"{cold:.0f}" if strategy == "mitogen" else ""
                    rows.append(f"| {count} | {strategy} | {cold_column} | {elapsed:.1f} | {calls / count:.0f} | {1000 * cpu / calls:.0f} |")
                    print(rows[-1])
            finally:
                timed_playbook(["playbooks/lab.yml", "-e", "lab_state=absent", *hosts], log)
                shutil.rmtree(work, ignore_errors=True)
    smallest, largest = min(options.hosts), max(options.hosts)
    ratios = ", ".join(f"{strategy} {noop[largest, strategy] / noop[smallest, strategy]:.2f}x" for strategy in ("mitogen", "linear"))
    record("scale", "\n".join([
        f"Measured {stamp:%Y-%m-%d} with `python3 bench/scale.py --hosts {' '.join(map(str, options.hosts))} --forks {options.forks}` "
        f"on {os.cpu_count()} cores. Raw output: {Path(log.name).relative_to(ROOT)}.",
        "",
        "| hosts | strategy | cold converge (s) | no-op run (s) | module calls per host | controller CPU per call (ms) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"No-op time, {largest} hosts against {smallest}: {ratios} (target: at most 3x for 5x the hosts).",
    ]))


if __name__ == "__main__":
    main()
