#!/usr/bin/env python3
"""What the validation gate costs as the inventory grows, with no host contacted.

playbooks/validate-inventory.yml (the first play of every site run) on inventories of --hosts hosts
each, made as bench/scale.py makes them (the development inventory's settings), so fleets larger than
the lab can hold are measured too. Written to docs/performance.md: the median wall time and controller
CPU (ansible-playbook and its workers) of --rounds runs, and the CPU per host, which stays flat while
the gate's work per host does not depend on how many other hosts there are. --baseline REV runs
that commit's playbooks and roles alternately with these.

Usage: python3 bench/validation.py [--hosts 6 30 120] [--rounds 3] [--baseline REV]
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import tempfile
from pathlib import Path

from benchlib import ROOT, baseline_checkout, record, results_log, timed_playbook
from scale import inventory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[6, 30, 120])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", help="also run this commit's playbooks and roles, alternately with these")
    options = parser.parse_args()
    trees = {"this commit": ROOT, **({options.baseline: baseline_checkout(options.baseline)} if options.baseline else {})}
    stamp = datetime.datetime.now(datetime.UTC)
    rows = []
    with results_log("validation", stamp) as log, tempfile.TemporaryDirectory(prefix="chajipoa-validation-") as work:
        for count in options.hosts:
            hosts = ["-i", str(inventory(Path(work) / str(count), count))]
            runs: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
            for _ in range(options.rounds):
                for name, tree in trees.items():
                    run = timed_playbook(["playbooks/validate-inventory.yml", *hosts], log, checkout=tree)
                    runs[name].append((run.seconds, run.controller_cpu))
            for name, measured in runs.items():
                wall = statistics.median(elapsed for elapsed, _ in measured)
                cpu = statistics.median(seconds for _, seconds in measured)
                rows.append(f"| {count} | {name} | {wall:.1f} | {cpu:.1f} | {1000 * cpu / count:.0f} |")
                print(rows[-1])
    record("validation", "\n".join([
        f"Measured {stamp:%Y-%m-%d} with `python3 bench/validation.py --hosts {' '.join(map(str, options.hosts))} "
        f"--rounds {options.rounds}{f' --baseline {options.baseline}' if options.baseline else ''}` on {os.cpu_count()} cores "
        f"(medians). Raw output: {Path(log.name).relative_to(ROOT)}.",
        "",
        "| hosts | playbooks and roles of | wall (s) | controller CPU (s) | CPU per host (ms) |",
        "|---|---|---|---|---|",
        *rows,
    ]))


if __name__ == "__main__":
    main()
