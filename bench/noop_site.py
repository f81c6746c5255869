#!/usr/bin/env python3
"""No-op run of site.yml on the converged development lab: the project's ansible.cfg against
Ansible's stock settings (bench/stock.cfg), alternating, several rounds each, in one run, so both
see the same machine load. Prints the medians and their ratio, and records them in
docs/performance.md between the bench:noop-site markers.

    make bench                      # brings the lab up and converges it first
    .venv/bin/python bench/noop_site.py --rounds 5
"""
from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"project ansible.cfg": "ansible.cfg", "stock Ansible settings (bench/stock.cfg)": "bench/stock.cfg"}
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def noop_run(config: str, log) -> tuple[float, int]:
    """Seconds one site.yml run takes, and the tasks it ran; fails unless nothing changed."""
    env = dict(os.environ, ANSIBLE_CONFIG=config, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    start = time.perf_counter()
    result = subprocess.run(["ansible-playbook", "playbooks/site.yml"], cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    log.write(result.stdout + result.stderr)
    recaps = RECAP.findall(result.stdout)
    if result.returncode or not recaps or any(changed != "0" or failed != "0" for _, _, changed, _, failed in recaps):
        sys.exit(f"site.yml was not a clean no-op under {config} (converge the lab first: make dev); see {log.name}")
    return elapsed, max(int(ok) for _, ok, _, _, _ in recaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds

    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC)
    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    tasks = 0
    with (results_dir / f"noop-site-{stamp:%Y%m%dT%H%M%SZ}.log").open("w") as log:
        # The project's run starts with no cached facts, as the first run after a controller reboot would.
        shutil.rmtree(ROOT / ".cache" / "facts", ignore_errors=True)
        for round_number in range(1, rounds + 1):
            for name, config in CONFIGS.items():
                elapsed, tasks = noop_run(config, log)
                times[name].append(elapsed)
            print(f"round {round_number}: " + ", ".join(f"{name} {values[-1]:.1f} s" for name, values in times.items()))

    medians = {name: statistics.median(values) for name, values in times.items()}
    project, stock = medians["project ansible.cfg"], medians["stock Ansible settings (bench/stock.cfg)"]
    table = "\n".join(
        [
            f"Measured {stamp:%Y-%m-%d} on {os.cpu_count()} cores: {rounds} rounds of each, alternating; "
            f"medians; about {tasks} tasks ok per host.",
            "",
            "| configuration | no-op site.yml (s) |",
            "|---|---|",
            *(f"| {name} | {median:.1f} |" for name, median in sorted(medians.items(), key=lambda item: -item[1])),
            f"| **stock / project** | **{stock / project:.2f}×** |",
        ]
    )
    print(table)
    doc = ROOT / "docs" / "performance.md"
    block = f"<!-- bench:noop-site -->\n{table}\n<!-- /bench:noop-site -->"
    doc.write_text(re.sub(r"<!-- bench:noop-site -->.*?<!-- /bench:noop-site -->", lambda _: block, doc.read_text(), flags=re.S))


if __name__ == "__main__":
    main()
