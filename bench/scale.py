#!/usr/bin/env python3
"""How a no-op run grows with the fleet: the common role on a lab of --hosts containers each.

For each host count, in one run: an inventory of that many lab hosts (development settings, a lab
network of the bench's own), playbooks/lab.yml makes their containers, `site.yml --tags common`
converges them under Mitogen (make dev's strategy), then runs again with nothing to change under
Mitogen, under Ansible's linear strategy and under the collection's (and, with --baseline, with another commit's roles and
Mitogen strategy, side by side); the lab is removed before the next count. Written to
docs/performance.md: the times, the ratio of the no-op times between the largest and the smallest
fleet (target: at most 3x for 5x the hosts), the task results per host, the controller's CPU time per
module call (ansible-playbook and its workers, divided by the calls the chajipoa.platform.module_calls
callback counted on every host), the CPU time per host of the controller and of the host itself (its
container's, from Docker's cgroups), and how many of the machine's cores the controller and the
whole machine (the lab's containers are on it too) kept busy on average.

The lab's hosts run on the controller's machine, so a run can be no faster than the CPU time it made
the whole machine spend divided by the machine's cores: each run reports that floor, and the ratio
line the lowest ratio the largest fleet's floor allows against the smallest fleet's measured time.
Extra --forks values add Mitogen arms with those forks (the first value is every other arm's).

Each host count's no-op runs wait for the machine to settle after the cold converge, then run
--rounds times per arm, alternating; the median is reported.

Usage: python3 bench/scale.py [--hosts 6 30] [--forks 20 [10 30]] [--baseline REV] [--rounds 2]
"""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import tempfile
import time
import typing
from pathlib import Path

import yaml
from benchlib import ROOT, baseline_checkout, containers_cpu_seconds, machine_cpu_seconds, record, results_log, timed_playbook

NETWORK = "chajipoa-scale"
SUBNET = "172.30.90"
DEVELOPMENT = ROOT / "inventories" / "development"


def inventory(directory: Path, count: int, development: Path = DEVELOPMENT, credentials: Path | None = None) -> Path:
    """The development inventory's settings and groups with `count` hosts and a network of the bench's own.
    The hosts are in group redis because the validation play wants every host in a group it knows (and
    `--tags common` still validates the arguments of their group's roles); only the common role runs.
    An inventory for another commit's roles takes that commit's settings (how they name its secrets)
    and the secrets of `credentials`, so that both read the same."""
    shutil.copytree(development / "group_vars", directory / "group_vars")
    if credentials is not None:
        (directory / "credentials").symlink_to(credentials)
    lab = yaml.safe_load((directory / "group_vars/all/lab.yml").read_text())
    lab.update(lab_network=NETWORK, lab_subnet=f"{SUBNET}.0/24", lab_gateway=f"{SUBNET}.1")
    (directory / "group_vars/all/lab.yml").write_text(yaml.safe_dump(lab))
    hosts = {f"scale{number:02d}": {"ansible_host": f"{NETWORK}-{number:02d}", "private_address": f"{SUBNET}.{10 + number}"}
             for number in range(1, count + 1)}
    groups = {group: {} for group in yaml.safe_load((DEVELOPMENT / "hosts.yml").read_text())["all"]["children"]}
    (directory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {**groups, "redis": {"hosts": hosts}}}}))
    return directory


class Run(typing.NamedTuple):
    elapsed: float
    controller_cpu: float
    machine_cpu: float
    # The lab's containers (the hosts' own work: Mitogen's interpreter, the modules, what they start);
    # None where Docker's cgroups are not found.
    hosts_cpu: float | None
    calls: int
    # Every task result on a host, skipped and controller-side ones too: each costs the strategy a worker.
    results: int


def measured(args: list[str], log, strategy: str, forks: int, expect_noop: bool = False, checkout: Path = ROOT) -> Run:
    """One run's wall seconds, CPU seconds of the controller (ansible-playbook and its workers) and of
    the whole machine (controller, the lab's containers, Docker), and module calls and task results
    summed over the hosts."""
    machine_before, hosts_before = machine_cpu_seconds(), containers_cpu_seconds()
    run = timed_playbook(args, log, expect_noop=expect_noop, strategy=strategy, checkout=checkout,
                         settings={"ANSIBLE_FORKS": str(forks)})
    hosts_after = containers_cpu_seconds()
    return Run(run.seconds, run.controller_cpu, machine_cpu_seconds() - machine_before,
               None if hosts_before is None or hosts_after is None else hosts_after - hosts_before,
               sum(counts["calls"] for counts in run.calls.values()),
               sum(counts["calls"] + counts["controller"] + counts["skipped"] for counts in run.calls.values()))


def settle(quiet_cores: float = 0.5, longest: float = 300) -> float:
    """Wait until the machine's busy cores over 10 s drop under quiet_cores (new containers finish
    their first-boot work after a converge: apt's timers, man-db, sysstat), at most `longest`
    seconds; return the seconds waited. Without it the first arm measured pays for that work."""
    start = time.monotonic()
    while time.monotonic() - start < longest:
        before = machine_cpu_seconds()
        time.sleep(10)
        if (machine_cpu_seconds() - before) / 10 < quiet_cores:
            break
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[6, 30])
    parser.add_argument("--forks", type=int, nargs="+", default=[20])
    parser.add_argument("--baseline", help="also run the no-op with this commit's roles and Mitogen strategy")
    parser.add_argument("--rounds", type=int, default=2, help="no-op runs of each arm, alternating; the median (the lower middle run of an even count) is reported")
    options = parser.parse_args()
    forks, *more_forks = options.forks
    arms = {"mitogen": ("mitogen", ROOT, forks), "linear": ("linear", ROOT, forks),
            "chajipoa.platform.linear": ("collection-linear", ROOT, forks)}
    arms.update({f"mitogen, {each} forks": ("mitogen", ROOT, each) for each in more_forks})
    if options.baseline:
        arms[f"mitogen, roles of {options.baseline}"] = ("mitogen", baseline_checkout(options.baseline), forks)
    stamp = datetime.datetime.now(datetime.UTC)
    rows, noop, floor = [], {}, {}
    with results_log("scale", stamp) as log:
        for count in sorted(options.hosts):
            work = Path(tempfile.mkdtemp(prefix=f"chajipoa-scale-{count}-"))
            hosts = ["-i", str(inventory(work / "inventory", count))]
            inventories = {ROOT: hosts} | {
                checkout: ["-i", str(inventory(work / f"inventory-{checkout.name}", count, checkout / "inventories" / "development",
                                               work / "inventory" / "credentials"))]
                for _strategy, checkout, _forks in arms.values() if checkout != ROOT}
            try:
                timed_playbook(["playbooks/lab.yml", *hosts], log)
                cold = measured(["playbooks/site.yml", "--tags", "common", *hosts], log, "mitogen", forks)
                settled = settle()
                log.write(f"# the machine settled {settled:.0f} s after the cold converge\n")
                runs = {arm: [] for arm in arms}
                for _round in range(options.rounds):
                    for arm, (strategy, checkout, arm_forks) in arms.items():
                        runs[arm].append(measured(["playbooks/site.yml", "--tags", "common", *inventories[checkout]], log, strategy, arm_forks,
                                                  expect_noop=True, checkout=checkout))
                for arm, arm_runs in runs.items():
                    run = sorted(arm_runs, key=lambda each: each.elapsed)[(len(arm_runs) - 1) // 2]
                    noop[count, arm] = run.elapsed
                    floor[count, arm] = run.machine_cpu / os.cpu_count()
                    cold_column = f"{cold.elapsed:.0f}" if arm == "mitogen" else ""
                    rows.append(f"| {count} | {arm} | {cold_column} | {run.elapsed:.1f} | {run.calls / count:.0f} | "
                                f"{run.results / count:.0f} | {1000 * run.controller_cpu / run.calls:.0f} | "
                                f"{run.controller_cpu / count:.2f} / {'?' if run.hosts_cpu is None else f'{run.hosts_cpu / count:.2f}'} | "
                                f"{run.controller_cpu / run.elapsed:.2f} | {run.machine_cpu / run.elapsed:.2f} | {floor[count, arm]:.1f} |")
                    print(rows[-1])
            finally:
                timed_playbook(["playbooks/lab.yml", "-e", "lab_state=absent", *hosts], log)
                shutil.rmtree(work, ignore_errors=True)
    smallest, largest = min(options.hosts), max(options.hosts)
    ratios = ", ".join(f"{arm} {noop[largest, arm] / noop[smallest, arm]:.2f}x (at best "
                       f"{floor[largest, arm] / noop[smallest, arm]:.2f}x)" for arm in arms)
    record("scale", "\n".join([
        f"Measured {stamp:%Y-%m-%d} with `python3 bench/scale.py --hosts {' '.join(map(str, options.hosts))} "
        f"--forks {' '.join(map(str, options.forks))}"
        f"{' --baseline ' + options.baseline if options.baseline else ''} --rounds {options.rounds}` "
        f"on {os.cpu_count()} cores: {options.rounds} alternating rounds of the no-op runs, each arm's median run (the lower "
        f"middle one of an even count) reported. Raw output: {Path(log.name).relative_to(ROOT)}.",
        "",
        "| hosts | roles and strategy | cold converge (s) | no-op run (s) | module calls per host | task results per host | "
        "controller CPU per call (ms) | CPU per host, controller / the host (s) | controller cores busy | machine cores busy | "
        "fastest the machine's cores allow (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"No-op time, {largest} hosts against {smallest} (in brackets: the largest fleet's fastest against the smallest's "
        f"measured): {ratios} (target: at most 3x for 5x the hosts).",
    ]))


if __name__ == "__main__":
    main()
