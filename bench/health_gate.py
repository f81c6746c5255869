"""The health gate's decision time and its own cost per round, against a plain HTTP request loop.

In one run, against health endpoints on 127.0.0.1 served by another process (tests/healthserver.py,
so the server does not share this process's interpreter lock with the client):
  decision    how long the gate takes to pass a healthy endpoint and to fail a broken one (HTTP 503),
              with the module's defaults (3 consecutive rounds, 1 s apart, window 10) and a deadline
              of --deadline seconds; the broken one also with fail_after 3. The floor of a pass is
              (consecutive - 1) x interval: the gate waits for the rounds, not for itself.
  overhead    rounds back to back (interval 0) on the healthy endpoint, one http check with a JSON
              expectation, against a loop of plain http.client requests (connect, GET, read the body,
              close), alternating, --requests each time; the gate's cost per round beyond the request.
  ansible     the module through ansible-playbook on localhost (3 rounds 0.1 s apart), its total
              time beside the gate's own elapsed, i.e. what Ansible adds around one gate.
Usage: python3 bench/health_gate.py [--requests 1000] [--repeats 3] [--deadline 10]; writes docs/performance.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "collections")]

from ansible_collections.chajipoa.platform.plugins.module_utils.health_checks import build_checks, run_gate  # noqa: E402
from ansible_collections.chajipoa.platform.plugins.module_utils.health_stats import Thresholds  # noqa: E402
from bench.benchlib import record, results_log  # noqa: E402
from tests.healthserver import HealthServer  # noqa: E402

DEFAULTS = {"consecutive": 3, "interval": 1.0, "window": 10}


def serve(mode: str, ports: multiprocessing.Queue) -> None:
    with HealthServer(mode=mode) as server:
        ports.put(server.port)
        while True:
            time.sleep(3600)


def start_server(mode: str) -> tuple[multiprocessing.Process, str]:
    ports: multiprocessing.Queue = multiprocessing.Queue()
    process = multiprocessing.Process(target=serve, args=(mode, ports), daemon=True)
    process.start()
    return process, f"http://127.0.0.1:{ports.get(timeout=10)}/api/health"


def gate(url: str, **settings):
    options = {**DEFAULTS, "deadline": 60.0, **settings}
    checks = build_checks([{"name": "api", "kind": "http", "url": url, "expect_json": {"status": "healthy"}}],
                          Thresholds(), options.pop("window"))
    return run_gate(checks, **options)


def plain_loop(url: str, requests: int) -> float:
    """Seconds for `requests` plain GETs, each on a connection of its own, as the gate's probes are."""
    host, port = url.split("/")[2].split(":")
    start = time.perf_counter()
    for _request in range(requests):
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("GET", "/api/health")
        response = conn.getresponse()
        response.read()
        conn.close()
        if response.status != 200:
            sys.exit(f"the healthy endpoint answered {response.status}")
    return time.perf_counter() - start


def through_ansible(url: str, log) -> tuple[float, float]:
    """(ansible-playbook's wall time, the gate's elapsed) for one gate on localhost."""
    play = [{"name": "Gate", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "Gate", "chajipoa.platform.health_gate": {
            "checks": [{"name": "api", "kind": "http", "url": url, "expect_json": {"status": "healthy"}}],
            "interval": 0.1}}]}]
    with tempfile.TemporaryDirectory() as work:
        playbook = Path(work) / "gate.yml"
        playbook.write_text(json.dumps(play))
        env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_CACHE_PLUGIN="memory",
                   ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"))
        start = time.perf_counter()
        result = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", "-e",
                                 f"ansible_python_interpreter={sys.executable}", str(playbook)],
                                cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
    log.write(result.stdout + result.stderr)
    if result.returncode:
        sys.exit(f"ansible-playbook failed; see {log.name}")
    gate_result = json.loads(result.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return wall, gate_result["elapsed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--deadline", type=float, default=10.0)
    args = parser.parse_args()
    stamp = dt.datetime.now(dt.timezone.utc)
    log = results_log("health-gate", stamp)
    load_at_start = os.getloadavg()[0]
    healthy_process, healthy = start_server("healthy")
    broken_process, broken = start_server("unhealthy")
    try:
        decisions = {"healthy": [], "broken": [], "broken_fail_after": []}
        for repeat in range(args.repeats):
            for name, url, settings in (("healthy", healthy, {}), ("broken", broken, {"deadline": args.deadline}),
                                        ("broken_fail_after", broken, {"deadline": args.deadline, "fail_after": 3})):
                start = time.perf_counter()
                result = gate(url, **settings)
                decisions[name].append(time.perf_counter() - start)
                if result.passed != (name == "healthy"):
                    sys.exit(f"the gate judged the {name} endpoint wrongly: {result.message()}")
                log.write(f"decision {repeat + 1} {name}: {decisions[name][-1]:.3f} s, {result.rounds} rounds\n")
        per_request = {"plain": [], "gate": []}
        for repeat in range(args.repeats):
            # Alternate who goes first: the first loop of a pair may meet a colder machine.
            contenders = [("plain", lambda: plain_loop(healthy, args.requests)),
                          ("gate", lambda: gate(healthy, consecutive=args.requests, interval=0.0).elapsed)]
            for name, action in contenders[:: 1 if repeat % 2 else -1]:
                per_request[name].append(action() / args.requests)
                log.write(f"overhead {repeat + 1} {name}: {per_request[name][-1] * 1e6:.0f} us per request\n")
        wall, gate_elapsed = through_ansible(healthy, log)
    finally:
        healthy_process.terminate()
        broken_process.terminate()
    median = {name: statistics.median(values) for name, values in {**decisions, **per_request}.items()}
    floor = (DEFAULTS["consecutive"] - 1) * DEFAULTS["interval"]
    plain_us, gate_us = median["plain"] * 1e6, median["gate"] * 1e6
    load = f"load average (1 min) {load_at_start:.1f} at the start and {os.getloadavg()[0]:.1f} at the end"
    text = f"""Measured {stamp:%Y-%m-%d} with `python3 bench/health_gate.py --requests {args.requests} --repeats {args.repeats} --deadline {args.deadline:g}`
(medians of {args.repeats}; 2 cores, {load}). One http check with a JSON expectation; the module's defaults:
{DEFAULTS['consecutive']} consecutive rounds {DEFAULTS['interval']:g} s apart, window {DEFAULTS['window']}.

| What | Time | Against | Ratio |
|---|---|---|---|
| decision, healthy endpoint (passes) | {median['healthy']:.3f} s | the floor, (consecutive - 1) x interval = {floor:.1f} s | {median['healthy'] / floor:.3f}x |
| decision, broken endpoint (503), deadline {args.deadline:g} s | {median['broken']:.3f} s | the deadline {args.deadline:g} s | {median['broken'] / args.deadline:.3f}x |
| decision, broken endpoint, fail_after 3 | {median['broken_fail_after']:.3f} s | the floor {floor:.1f} s | {median['broken_fail_after'] / floor:.3f}x |
| gate round, back to back ({args.requests} rounds) | {gate_us:.0f} µs | plain `http.client` request loop {plain_us:.0f} µs per request | {gate_us / plain_us:.2f}x (+{gate_us - plain_us:.0f} µs a round) |
| the module through `ansible-playbook` on localhost (3 rounds 0.1 s apart) | {wall:.2f} s | the gate's own elapsed {gate_elapsed:.2f} s | Ansible adds {wall - gate_elapsed:.2f} s |

The broken endpoint fails by the deadline (its last round starts before it), or after three
failing rounds with fail_after 3. Raw timings: bench/results/health-gate-{stamp:%Y%m%dT%H%M%SZ}.log."""
    record("health-gate", text)


if __name__ == "__main__":
    main()
