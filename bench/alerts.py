#!/usr/bin/env python3
"""From a service stopping to its alert at a real receiver, against the floor the configuration sets.

On a lab whose monitoring host runs the receivers of lab/alert_inbox.py (molecule/app, converged:
`molecule converge -s app`), each round stops Redis on its host, notes the time on the monitoring
host's clock, and waits for RedisDown at the Slack-style webhook, the SMS webhook and the SMTP server;
then starts Redis and waits for the resolution at the webhook. The floor is what the configuration
makes the fastest possible alert: the scrape interval (until the exporter's failed scrape is
seen) + the rule's `for` + Alertmanager's group_wait, all read from the running Prometheus and
Alertmanager; a rule is evaluated every evaluation interval, so up to one more of those comes on top.

Usage: .venv/bin/python bench/alerts.py --inventory <molecule's ansible_inventory.yml> [--rounds 5];
writes docs/performance.md. The lab is left as it was (Redis running, no alert firing).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench.benchlib import record, results_log  # noqa: E402
from tests import alert_inbox  # noqa: E402

# The receivers as the results name them: lab/alert_inbox.py's webhook paths, and mail.
RECEIVERS = {"webhook": "slack", "sms": "sms", "mail": "mail"}
DURATION = re.compile(r"^(\d+)(ms|s|m|h)$")
UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def seconds(duration: str) -> float:
    match = DURATION.match(duration)
    if not match:
        raise ValueError(f"not a simple Prometheus duration: {duration!r}")
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)]


def sh(container: str, command: str) -> str:
    return subprocess.run(["docker", "exec", container, "sh", "-c", command], capture_output=True, text=True,
                          check=True).stdout


def http_json(container: str, url: str):
    return json.loads(sh(container, f"curl -sf --max-time 5 '{url}'"))


def arrival(container: str, since: float, status: str) -> dict[str, float | None]:
    """Seconds from `since` to the first RedisDown notification of `status` at each receiver."""
    found = alert_inbox.notifications(lambda command: sh(container, command), "RedisDown", since, status)
    return {key: min((note.received - since for note in found if note.receiver == receiver), default=None)
            for key, receiver in RECEIVERS.items()}


def wait(what: str, check, deadline: float) -> None:
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            sys.exit(f"{what}: not within {deadline:.0f} s")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", required=True, help="the lab's inventory (names the hosts of groups monitoring and redis)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--deadline", type=float, default=300, help="seconds to wait for each notification")
    args = parser.parse_args()
    inventory = json.loads(subprocess.run([str(ROOT / ".venv/bin/ansible-inventory"), "-i", args.inventory, "--list"],
                                          capture_output=True, text=True, check=True).stdout)
    monitor, redis = inventory["monitoring"]["hosts"][0], inventory["redis"]["hosts"][0]
    address = sh(monitor, "ip -4 -o addr show eth0").split()[3].split("/")[0]
    prometheus, alertmanager = f"http://{address}:9090", f"http://{address}:9093"

    config = http_json(monitor, f"{prometheus}/api/v1/status/config")["data"]["yaml"]
    scrape = seconds(re.search(r"scrape_interval: (\S+)", config).group(1))
    evaluation = seconds(re.search(r"evaluation_interval: (\S+)", config).group(1))
    rules = [rule for group in http_json(monitor, f"{prometheus}/api/v1/rules?type=alert")["data"]["groups"]
             for rule in group["rules"] if rule["name"] == "RedisDown"]
    hold = float(rules[0]["duration"])
    group_wait = seconds(re.search(r"group_wait: (\S+)", http_json(monitor, f"{alertmanager}/api/v2/status")["config"]["original"]).group(1))
    floor = scrape + hold + group_wait

    stamp = dt.datetime.now(dt.timezone.utc)
    log = results_log("alerts", stamp)
    rounds = []
    no_redis_down = f"{alertmanager}/api/v2/alerts?" + urllib.parse.urlencode({"filter": 'alertname="RedisDown"'})
    for number in range(args.rounds):
        wait("no RedisDown left from before", lambda: http_json(monitor, no_redis_down) == [], args.deadline)
        since = float(sh(monitor, "date +%s.%N"))
        sh(redis, "systemctl stop redis-server")
        try:
            wait("RedisDown at every receiver", lambda: None not in arrival(monitor, since, "firing").values(), args.deadline)
        finally:
            sh(redis, "systemctl start redis-server")
        fired = arrival(monitor, since, "firing")
        back = float(sh(monitor, "date +%s.%N"))
        wait("RedisDown resolved at the webhook", lambda: arrival(monitor, back, "resolved")["webhook"] is not None, args.deadline)
        resolved = arrival(monitor, back, "resolved")["webhook"]
        rounds.append({"round": number + 1, "fired": fired, "resolved": resolved})
        log.write(json.dumps(rounds[-1]) + "\n")
        log.flush()

    def median(key: str) -> float:
        return statistics.median(r["fired"][key] for r in rounds)

    load = os.getloadavg()[0]
    record("alerts", "\n".join([
        f"Measured {stamp:%Y-%m-%d} with `python3 bench/alerts.py --rounds {args.rounds}` on molecule/app's layout "
        f"({os.cpu_count()} cores, load average (1 min) {load:.1f} at the end): Redis stopped on its host, RedisDown "
        f"awaited at each real receiver on the monitoring host. The lab's settings: scrape interval {scrape:g} s, "
        f"RedisDown's for {hold:g} s, group_wait {group_wait:g} s, evaluation interval {evaluation:g} s: "
        f"**floor {floor:g} s** (scrape + for + group_wait).",
        "",
        "| Round | Slack-style webhook | SMS webhook | email (SMTP) | webhook / floor | resolved at the webhook |",
        "|---|---|---|---|---|---|",
        *(f"| {r['round']} | {r['fired']['webhook']:.1f} s | {r['fired']['sms']:.1f} s | {r['fired']['mail']:.1f} s | "
          f"{r['fired']['webhook'] / floor:.2f}× | {r['resolved']:.1f} s |" for r in rounds),
        f"| **median** | **{median('webhook'):.1f} s** | {median('sms'):.1f} s | {median('mail'):.1f} s | "
        f"**{median('webhook') / floor:.2f}×** | {statistics.median(r['resolved'] for r in rounds):.1f} s |",
        "",
        "The three receivers hear of it together: one notification per group, sent to each. Round 1 opens a new alert group, "
        "which waits group_wait; Alertmanager keeps a resolved alert in its group until its garbage collection (30 min), so "
        "a later round joins that group and is sent at the group's next group_interval tick, which can come sooner. The "
        "scrape interval in the floor is the longest the failed scrape can take to happen; it often comes sooner, and at "
        f"most one evaluation interval ({evaluation:g} s) comes on top. Raw output: "
        f"bench/results/alerts-{stamp:%Y%m%dT%H%M%SZ}.log.",
    ]))


if __name__ == "__main__":
    main()
