#!/usr/bin/env python3
"""The data tier's cold converge and its no-op re-run on the development lab (PostgreSQL primary
and standby, Redis), in one run. The lab is made anew so the converge starts from bare hosts; the
base system is converged first and timed apart, so the figures are the data tier's own.

    .venv/bin/python bench/data_tier.py        # replaces the lab's containers
"""
from __future__ import annotations

import datetime
import os

from benchlib import calls_per_host, record, results_log, timed_playbook


def main() -> None:
    stamp = datetime.datetime.now(datetime.UTC)
    with results_log("data-tier", stamp) as log:
        timed_playbook(["playbooks/lab.yml", "-e", "lab_state=absent"], log)
        timed_playbook(["playbooks/lab.yml"], log)
        base = timed_playbook(["playbooks/site.yml", "--tags", "common"], log).seconds
        cold = timed_playbook(["playbooks/site.yml", "--tags", "databases"], log).seconds
        noop = timed_playbook(["playbooks/site.yml", "--tags", "databases"], log, expect_noop=True)
        # The other tiers too, not timed: bench/noop_site.py, next in make bench, needs the whole site.
        timed_playbook(["playbooks/site.yml"], log)
    record("data-tier", "\n".join([
        f"Measured {stamp:%Y-%m-%d} with `python3 bench/data_tier.py` on {os.cpu_count()} cores, fresh lab "
        f"containers, one run. Module calls per host in the no-op run: {calls_per_host(noop.calls)}.",
        "",
        "| step | seconds |",
        "|---|---|",
        f"| base system first (site.yml --tags common, not counted below) | {base:.1f} |",
        f"| data tier, cold converge (site.yml --tags databases) | {cold:.1f} |",
        f"| data tier, no-op re-run | {noop.seconds:.1f} |",
        f"| **cold / no-op** | **{cold / noop.seconds:.1f}×** |",
    ]))


if __name__ == "__main__":
    main()
