#!/usr/bin/env python3
"""Blue-green deploys on the development lab (`make dev` with its edge host), under a request loop.

In one run, while tests/loadloop.py requests /api/version through the edge all along:
  deploy      playbooks/deploy.yml with a new release (the reference API, a new version): the run's
              time, and from its start to the first answer of the new release through the edge;
              the loop's failed requests over the whole deploy
  rollback    playbooks/rollback.yml: its time, and from its start to the first answer of the
              previous release again
  refusals    deploys of a release that crashes at start and of one whose /api/health answers 500:
              the idle gate's decision time (its `elapsed`) and the run's; the release that serves
              keeps serving (failed requests counted)
  proxy       requests/s and p95 of the same loop for --seconds through the edge (https, TLS ended
              by nginx) and to the app host's live colour directly (http), alternating, --rounds
              each: the proxy's cost as ratios. Both loops run inside the edge's container (the app's
              firewall admits the edge hosts only), the same client for both paths.
Usage: .venv/bin/python bench/deploy.py [--clients 8] [--seconds 10] [--rounds 2]; writes
docs/performance.md. Other labs (a molecule scenario): --inventory, --edge-url with --edge-address,
--edge-container, --app-urls, and ansible-playbook arguments after --. The lab is left serving the previous release (after the rollback), the colour
of the refused releases stopped: rerunnable, each run deploys a version of its own.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "collections")]

from bench.benchlib import record, results_log  # noqa: E402
from tests.loadloop import Report, RequestLoop  # noqa: E402
from tests.releases import make_release  # noqa: E402

GATE_TASK = "Gate the colour and its release"


def playbook(name: str, args: list[str], inventory: str, log) -> tuple[float, int, dict]:
    """Run a playbook with the JSON callback: seconds, return code, the parsed report."""
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"))
    start = time.perf_counter()
    run = subprocess.run(["ansible-playbook", "-i", inventory, f"playbooks/{name}", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    log.write(f"$ ansible-playbook -i {inventory} playbooks/{name} {' '.join(args)}\n{run.stdout}{run.stderr}\n")
    log.flush()
    try:
        report = json.loads(run.stdout)
    except ValueError:
        sys.exit(f"playbooks/{name} printed no JSON report; see {log.name}")
    return elapsed, run.returncode, report


def gate_elapsed(report: dict) -> float:
    """The idle gate's own decision time, from the first host's result of the gate task."""
    for play in report["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].startswith(GATE_TASK):
                return next(iter(task["hosts"].values()))["elapsed"]
    sys.exit("the deploy ran no idle gate")


def live_version(report: Report) -> str:
    """The version that served last through the edge."""
    return max(report.versions.items(), key=lambda item: item[1].last)[0]


def first_seen_after(loop: RequestLoop, version: str, since: float, timeout: float = 30) -> float:
    """Seconds from `since` (loop time) to the first answer of `version` through the edge after it."""
    if not loop.wait_for(lambda report: report.first_after(version, since) is not None, timeout):
        sys.exit(f"release {version} never answered through the edge")
    return loop.report.first_after(version, since) - since


def in_container(container: str, url: str, seconds: float, clients: int, *options: str) -> Report:
    """The request loop run by the container's python3 (tests/loadloop.py copied in), its report."""
    run = subprocess.run(["docker", "exec", container, "python3", "/var/tmp/chajipoa-loadloop.py", url, "--duration",
                          str(seconds), "--clients", str(clients), *options], capture_output=True, text=True, check=False)
    if run.returncode:
        sys.exit(f"the request loop in {container} failed: {run.stderr[-2000:]}")
    return Report.from_dict(json.loads(run.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", default="inventories/development")
    parser.add_argument("--edge-url", default="https://127.0.0.1:18443/api/version", help="the edge, from here")
    parser.add_argument("--edge-address", help="connect to this IP[:port] for --edge-url's host")
    parser.add_argument("--edge-container", default="chajipoa-dev-edge1")
    parser.add_argument("--edge-url-inside", default="https://127.0.0.1/api/version",
                        help="the edge from inside its container, reached on 127.0.0.1:443 (the URL's host is the name TLS checks)")
    parser.add_argument("--app-urls", default="http://172.30.80.14:3001/api/version,http://172.30.80.14:3002/api/version",
                        help="the app host's colours, from the edge's container; the one serving the live release is used")
    parser.add_argument("--ca-file", default=str(ROOT / "inventories/development/credentials/pki/ca.crt"))
    parser.add_argument("--lab", default="the development lab", help="what the write-up calls the lab measured")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("ansible_args", nargs="*", help="more ansible-playbook arguments, after --")
    args = parser.parse_args()
    stamp = dt.datetime.now(dt.timezone.utc)
    # Semantic versions: no leading zero in a number.
    version = f"1.{stamp:%y%m%d}.{int(f'{stamp:%H%M%S}') + 1}"
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as scratch, results_log("deploy", stamp) as log:
        good = make_release(Path(scratch), version)
        crash = make_release(Path(scratch), version + "1", "crash")
        sick = make_release(Path(scratch), version + "2", "unhealthy")
        # Paced (20 ms between a client's requests): traffic all along, without taking the cores the
        # deploy itself needs. /var/tmp below: docker cp cannot write into a container's tmpfs /tmp.
        loop = RequestLoop(args.edge_url, clients=args.clients, address=args.edge_address, ca_file=args.ca_file,
                           pause=0.02).start()
        if not loop.wait_for(lambda report: report.versions, 30):
            sys.exit(f"nothing answered {args.edge_url} with a version: is the lab up (make dev)? {loop.stop().failures[:3]}")
        before = live_version(loop.report)

        start = loop.now()
        seconds, code, report = playbook("deploy.yml", ["-e", f"app_source={good}", *args.ansible_args], args.inventory, log)
        if code:
            sys.exit(f"the deploy of {good.name} failed; see {log.name}")
        new = next(name for name in loop.report.versions if name.startswith(version + "-"))
        to_traffic = first_seen_after(loop, new, start)
        failed = len(loop.report.failures)
        rows += [("deploy.yml, a new release", f"{seconds:.1f} s", f"{failed} failed of {loop.report.requests} requests"),
                 ("deploy start to the first answer of the new release through the edge", f"{to_traffic:.1f} s",
                  f"of the deploy's {seconds:.1f} s")]

        start = loop.now()
        seconds, code, report = playbook("rollback.yml", list(args.ansible_args), args.inventory, log)
        if code:
            sys.exit(f"the rollback failed; see {log.name}")
        back = first_seen_after(loop, before, start)
        rows += [("rollback.yml to the previous release", f"{seconds:.1f} s",
                  f"{len(loop.report.failures) - failed} failed; the previous release answered after {back:.1f} s")]
        failed = len(loop.report.failures)

        for label, release in (("crashes at start", crash), ("/api/health answers 500", sick)):
            seconds, code, report = playbook("deploy.yml", ["-e", f"app_source={release}", *args.ansible_args],
                                             args.inventory, log)
            if not code:
                sys.exit(f"the deploy of {release.name}, which {label}, passed; see {log.name}")
            rows.append((f"refused release that {label}: the idle gate's decision", f"{gate_elapsed(report):.1f} s",
                         f"run {seconds:.1f} s; {len(loop.report.failures) - failed} failed requests"))
            failed = len(loop.report.failures)
        loop.stop()
        serving = live_version(loop.report)

        for source, target in ((ROOT / "tests" / "loadloop.py", "/var/tmp/chajipoa-loadloop.py"), (args.ca_file, "/var/tmp/chajipoa-ca.crt")):
            subprocess.run(["docker", "cp", str(source), f"{args.edge_container}:{target}"], check=True)
        # The edge's own port 443 whatever the URL's host, which names the certificate's name.
        inside = ("--ca-file", "/var/tmp/chajipoa-ca.crt", "--address", "127.0.0.1:443")
        app_url = next((url for url in args.app_urls.split(",")
                        if serving in in_container(args.edge_container, url, 0.3, 1).versions), None)
        if app_url is None:
            sys.exit(f"none of {args.app_urls} serves {serving} from {args.edge_container}")
        edge, direct = [], []
        for _round in range(args.rounds):
            edge.append(in_container(args.edge_container, args.edge_url_inside, args.seconds, args.clients, *inside).summary())
            direct.append(in_container(args.edge_container, app_url, args.seconds, args.clients).summary())
        log.write(json.dumps({"edge": edge, "direct": direct}, indent=1) + "\n")

    rps = {name: statistics.median(r["requests_per_second"] for r in runs) for name, runs in (("edge", edge), ("direct", direct))}
    p95 = {name: statistics.median(r["p95_ms"] for r in runs) for name, runs in (("edge", edge), ("direct", direct))}
    errors = sum(r["failures"] for r in edge + direct)
    load = os.getloadavg()[0]
    record("deploy", "\n".join([
        f"Measured {stamp:%Y-%m-%d} with `python3 bench/deploy.py --clients {args.clients} --seconds {args.seconds:g} "
        f"--rounds {args.rounds}` on {args.lab} ({os.cpu_count()} cores, load average (1 min) {load:.1f} at the end), "
        f"the request loop ({args.clients} clients, half on kept-alive connections, 20 ms between requests) on /api/version through the edge "
        f"throughout; deploy gates with their defaults.",
        "",
        "| What | Time | Detail |",
        "|---|---|---|",
        *(f"| {what} | {time_} | {detail} |" for what, time_, detail in rows),
        "",
        "| Path | requests/s | p95 |",
        "|---|---|---|",
        f"| through the edge (https, nginx, keepalive upstream) | {rps['edge']:.0f} | {p95['edge']:.1f} ms |",
        f"| the app host's live colour directly (http) | {rps['direct']:.0f} | {p95['direct']:.1f} ms |",
        f"| **edge / direct** | **{rps['edge'] / rps['direct']:.2f}×** | **{p95['edge'] / p95['direct']:.2f}×** |",
        "",
        f"Medians of {args.rounds} rounds of {args.seconds:g} s each, alternating, both from inside the edge's container "
        f"with {args.clients} clients; {errors} failed requests in them. "
        f"Raw output: bench/results/deploy-{stamp:%Y%m%dT%H%M%SZ}.log.",
    ]))


if __name__ == "__main__":
    main()
