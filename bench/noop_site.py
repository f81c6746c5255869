#!/usr/bin/env python3
"""No-op run of site.yml on the converged development lab: the project's ansible.cfg under Mitogen
(make's LAB_STRATEGY default) and under Ansible's linear strategy, against Ansible's stock settings
(bench/stock.cfg), alternating, several rounds each, in one run, so all see the same machine load.
Records the medians and their ratios in docs/performance.md.

    make bench                      # brings the lab up and converges it first
    .venv/bin/python bench/noop_site.py --rounds 5
    .venv/bin/python bench/noop_site.py --limit db1,db2,cache1   # the hosts of earlier measurements
    .venv/bin/python bench/noop_site.py --baseline 9b7dde0   # also that commit's roles, side by side
"""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics

from benchlib import ROOT, baseline_checkout, calls_per_host, record, results_log, timed_playbook

STOCK = "stock Ansible settings (bench/stock.cfg)"
# name: (ANSIBLE_CONFIG, strategy, checkout)
CONFIGS = {
    "project ansible.cfg, Mitogen": ("ansible.cfg", "mitogen", ROOT),
    "project ansible.cfg, linear strategy": ("ansible.cfg", "linear", ROOT),
    STOCK: ("bench/stock.cfg", "linear", ROOT),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", help="only these hosts (ansible-playbook --limit)")
    parser.add_argument("--baseline", help="also run this commit's roles with its own ansible.cfg and Ansible's linear strategy "
                                           "(they must leave the lab as these roles do)")
    options = parser.parse_args()
    configs = dict(CONFIGS)
    if options.baseline:
        configs[f"roles of {options.baseline}, its ansible.cfg, linear strategy"] = ("ansible.cfg", "linear", baseline_checkout(options.baseline))
    rounds = options.rounds
    playbook = ["playbooks/site.yml", *(["--limit", options.limit] if options.limit else [])]
    stamp = datetime.datetime.now(datetime.UTC)
    calls: dict[str, dict] = {}
    first_calls: dict[str, dict] = {}
    times: dict[str, list[float]] = {name: [] for name in configs}
    with results_log("noop-site", stamp) as log:
        # The project's run starts with no cached facts, as the first run after a controller reboot would.
        shutil.rmtree(ROOT / ".cache" / "facts", ignore_errors=True)
        for round_number in range(1, rounds + 1):
            for name, (config, strategy, checkout) in configs.items():
                run = timed_playbook(playbook, log, config=config, expect_noop=True, strategy=strategy, checkout=checkout)
                times[name].append(run.seconds)
                first_calls.setdefault(name, run.calls)
                calls[name] = run.calls
            print(f"round {round_number}: " + ", ".join(f"{name} {values[-1]:.1f} s" for name, values in times.items()))

    medians = {name: statistics.median(values) for name, values in times.items()}
    stock = medians[STOCK]
    # A limited run is written beside the whole site's, not over it.
    record("noop-site-limit" if options.limit else "noop-site", "\n".join([
        f"Measured {stamp:%Y-%m-%d} with `python3 bench/noop_site.py --rounds {rounds}"
        f"{' --limit ' + options.limit if options.limit else ''}{' --baseline ' + options.baseline if options.baseline else ''}` on "
        f"{os.cpu_count()} cores: {rounds} rounds of each, alternating; medians. Module calls per host: the "
        "chajipoa.platform.module_calls callback's count in the last round and, in brackets where it differs, in "
        "the first: the first run of all (the project's, under Mitogen) found no cached facts, as an AWX job "
        "does every time; stock settings cache none.",
        "",
        "| configuration | no-op site.yml (s) | stock / this | module calls per host |",
        "|---|---|---|---|",
        *(f"| {name} | {median:.1f} | {stock / median:.2f}× | {calls_per_host(calls[name], first_calls[name])} |"
          for name, median in sorted(medians.items(), key=lambda item: -item[1])),
    ]))


if __name__ == "__main__":
    main()
