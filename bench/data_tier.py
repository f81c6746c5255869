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
        base, _ = timed_playbook(["playbooks/site.yml", "--tags", "common"], log)
        cold, _ = timed_playbook(["playbooks/site.yml", "--tags", "databases"], log)
        noop, calls = timed_playbook(["playbooks/site.yml", "--tags", "databases"], log, expect_noop=True)
    record("data-tier", "\n".join([
        f"Measured {stamp:%Y-%m-%d} on {os.cpu_count()} cores, fresh lab containers, one run. "
        f"Module calls per host in the no-op run: {calls_per_host(calls)}.",
        "",
        "| step | seconds |",
        "|---|---|",
        f"| base system first (site.yml --tags common, not counted below) | {base:.1f} |",
        f"| data tier, cold converge (site.yml --tags databases) | {cold:.1f} |",
        f"| data tier, no-op re-run | {noop:.1f} |",
        f"| **cold / no-op** | **{cold / noop:.1f}×** |",
    ]))


if __name__ == "__main__":
    main()
