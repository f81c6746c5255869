"""What the benchmarks share: timed playbook runs on the development lab, and their write-up."""
from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple, TextIO

ROOT = Path(__file__).resolve().parents[1]
CALLS_CALLBACK = "chajipoa.platform.module_calls"


def mitogen_settings(checkout: Path = ROOT) -> dict[str, str]:
    """lab/strategy/mitogen.env (the Makefile's settings for Mitogen) of this tree or of another
    commit's checkout; a strategy directory, which commits before the strategy joined the collection
    name, made absolute."""
    lines = (checkout / "lab" / "strategy" / "mitogen.env").read_text().splitlines()
    settings = dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))
    if "ANSIBLE_STRATEGY_PLUGINS" in settings:
        settings["ANSIBLE_STRATEGY_PLUGINS"] = str(checkout / settings["ANSIBLE_STRATEGY_PLUGINS"])
    return settings


# The strategies a run may use, as the Makefile's LAB_STRATEGY sets them: the environment each needs
# in a checkout.
STRATEGIES = {"linear": lambda _checkout: {}, "mitogen": mitogen_settings,
              "collection-linear": lambda _checkout: {"ANSIBLE_STRATEGY": "chajipoa.platform.linear"}}


def strategy_env(strategy: str, checkout: Path = ROOT, **settings: str) -> dict[str, str]:
    """This process's environment with `strategy`'s settings (a key of STRATEGIES, as `checkout` has
    them) and no other's, plus `settings`."""
    env = {name: value for name, value in os.environ.items() if name not in ("ANSIBLE_STRATEGY", "ANSIBLE_STRATEGY_PLUGINS")}
    env.update(STRATEGIES[strategy](checkout), **settings)
    return env


def children_cpu_seconds() -> float:
    """CPU time (user and system) of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_cpu_seconds() -> float:
    """CPU time every core of this machine has spent busy so far (/proc/stat: all but idle and iowait).
    The lab's hosts are containers on the same machine: their work competes with the controller's."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / os.sysconf("SC_CLK_TCK")


# Where Docker accounts its containers' CPU time: cgroup v1 (this machine), v2 with the cgroupfs
# driver, v2 with the systemd driver (one scope per container).
_CONTAINER_CPU = (("/sys/fs/cgroup/cpuacct/docker/cpuacct.usage", 1e-9, None),
                  ("/sys/fs/cgroup/docker/cpu.stat", 1e-6, "usage_usec"),
                  ("/sys/fs/cgroup/system.slice/docker-*.scope/cpu.stat", 1e-6, "usage_usec"))


def containers_cpu_seconds(root: Path = Path("/")) -> float | None:
    """CPU time the Docker containers running now have spent so far (the lab's hosts: their share of a
    run's machine CPU, beside the controller's); None where Docker's cgroups are not found. A container
    made or removed between two readings skews their difference (v1 and v2's cgroupfs driver keep a
    removed container's time in Docker's parent group, v2's systemd driver drops it with its scope):
    read around runs that neither make nor remove containers."""
    for pattern, unit, field in _CONTAINER_CPU:
        paths = sorted(root.glob(pattern.lstrip("/")))
        if paths:
            total = 0.0
            for path in paths:
                text = path.read_text(encoding="ascii")
                value = text.split()[0] if field is None else dict(line.split() for line in text.splitlines())[field]
                total += int(value) * unit
            return total
    return None


class PlaybookRun(NamedTuple):
    seconds: float
    # Module calls per host, as the chajipoa.platform.module_calls callback counted them:
    # {host: {"calls": n, "changed": n, ...}}.
    calls: dict
    # ansible-playbook and its workers, user and system.
    controller_cpu: float


def timed_playbook(args: list[str], log: TextIO, config: str = "ansible.cfg", expect_noop: bool = False,
                   strategy: str = "linear", checkout: Path = ROOT, settings: dict[str, str] | None = None) -> PlaybookRun:
    """Run ansible-playbook (this interpreter's, so a bench needs no venv on PATH) with args.
    `strategy` is a key of STRATEGIES; the caller's environment does not choose it. `checkout` is the
    tree whose playbooks, roles and ansible.cfg run (another commit's, from baseline_checkout).
    `settings` are more environment variables for Ansible (ANSIBLE_FORKS, say).

    Exits when the run fails, or when expect_noop is set and anything changed: a figure for a no-op
    run that was not one would be a figure for something else.
    """
    with tempfile.NamedTemporaryFile(suffix=".json") as calls_file:
        env = strategy_env(strategy, checkout, ANSIBLE_CONFIG=config, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_CALLBACKS_ENABLED=",".join(filter(None, [os.environ.get("ANSIBLE_CALLBACKS_ENABLED"), CALLS_CALLBACK])),
                   CHAJIPOA_MODULE_CALLS_FILE=calls_file.name, **(settings or {}))
        cpu_before = children_cpu_seconds()
        start = time.perf_counter()
        result = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), *args], cwd=checkout, env=env,
                                capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - start
        cpu = children_cpu_seconds() - cpu_before
        log.write(f"$ ansible-playbook {' '.join(args)}  (ANSIBLE_CONFIG={config}, {strategy}, in {checkout})\n{result.stdout}{result.stderr}")
        calls = json.loads(Path(calls_file.name).read_text() or "{}")
    if result.returncode or not calls:
        sys.exit(f"ansible-playbook {' '.join(args)} failed under {config} ({strategy}); see {log.name}")
    if expect_noop and any(counts["changed"] for counts in calls.values()):
        changed = ", ".join(f"{host} {counts['changed']}" for host, counts in sorted(calls.items()) if counts["changed"])
        sys.exit(f"ansible-playbook {' '.join(args)} was not a no-op under {config} ({strategy}): changed on {changed}; "
                 f"see {log.name} (converge the lab first: make dev)")
    return PlaybookRun(elapsed, calls, cpu)


def baseline_checkout(revision: str) -> Path:
    """A worktree of another commit under .cache, sharing this one's generated development secrets and
    fact cache, so its roles run against the same lab side by side with these (and gather no facts
    these have cached)."""
    commit = subprocess.run(["git", "rev-parse", "--short", revision], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    checkout = ROOT / ".cache" / "bench-baseline" / commit
    if not checkout.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(checkout), commit], cwd=ROOT, capture_output=True, check=True)
    for shared in (Path("inventories") / "development" / "credentials", Path(".cache") / "facts"):
        # A link to something this tree has not made yet (no make dev here) is still the link wanted.
        if not (checkout / shared).is_symlink() and not (checkout / shared).exists():
            (checkout / shared).parent.mkdir(parents=True, exist_ok=True)
            (checkout / shared).symlink_to(ROOT / shared)
    return checkout


def calls_per_host(calls: dict, other_run: dict | None = None) -> str:
    """"db1 24 (25), db2 20": the module calls each host ran, for a write-up; in brackets, where it
    differs, the count of `other_run`. A host neither run called (a play the tags left out) is not named."""
    def theirs(host: str, count: int) -> int:
        return (other_run or {}).get(host, {}).get("calls", count)

    def other(host: str, count: int) -> str:
        return f" ({theirs(host, count)})" if theirs(host, count) != count else ""
    return ", ".join(f"{host} {counts['calls']}{other(host, counts['calls'])}" for host, counts in sorted(calls.items())
                     if counts["calls"] or theirs(host, counts["calls"]))


def record(section: str, text: str) -> None:
    """Replace the text between <!-- bench:section --> markers in docs/performance.md.

    CHAJIPOA_BENCH_DOC names another file: the smoke test of the benchmarks writes a copy, not the docs.
    """
    doc = Path(os.environ.get("CHAJIPOA_BENCH_DOC") or ROOT / "docs" / "performance.md")
    block = f"<!-- bench:{section} -->\n{text}\n<!-- /bench:{section} -->"
    pattern = rf"<!-- bench:{section} -->.*?<!-- /bench:{section} -->"
    print(text)
    written, found = re.subn(pattern, lambda _: block, doc.read_text(), flags=re.S)
    # A run's figures are often an hour of measurement: losing them to a missing marker must be loud.
    if found != 1:
        raise SystemExit(f"{doc} holds {found} '<!-- bench:{section} -->' sections, not one: the figures above "
                         f"were not written")
    doc.write_text(written)


def results_log(name: str, stamp) -> TextIO:
    directory = ROOT / "bench" / "results"
    directory.mkdir(parents=True, exist_ok=True)
    return (directory / f"{name}-{stamp:%Y%m%dT%H%M%SZ}.log").open("w")
