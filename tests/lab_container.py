"""A throwaway systemd container of the lab image, for the integration tests and benchmarks that need
one real host of their own (molecule's scenarios and the development lab get theirs from their own
configuration): the flags systemd needs to boot as PID 1 in Docker, and the wait for its boot to end."""
from __future__ import annotations

import subprocess
import time

IMAGE = "chajipoa-lab:bookworm"
# systemd as PID 1: the host's cgroup tree, writable, and tmpfs where it expects one.
SYSTEMD_FLAGS = ("--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", "--cgroupns", "host",
                 "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp")


def docker(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True, check=False, timeout=300)


def remove(name: str) -> None:
    docker("rm", "-f", name)


def start(name: str, timeout: float = 60) -> str:
    """Replaces any container of that name with a new one and returns when systemd has finished booting
    it (running, or degraded: booted with a unit failed). Raises when it does not boot in time."""
    remove(name)
    started = docker("run", "-d", "--name", name, *SYSTEMD_FLAGS, IMAGE, "/lib/systemd/systemd")
    if started.returncode:
        raise RuntimeError(f"docker run {name}: {started.stderr}")
    deadline = time.monotonic() + timeout
    # systemctl fails until systemd listens on its socket, then --wait waits for the boot to end.
    while (state := docker("exec", name, "systemctl", "is-system-running", "--wait").stdout.strip()) not in ("running", "degraded"):
        if time.monotonic() > deadline:
            remove(name)
            raise RuntimeError(f"{name} did not boot in {timeout:.0f} s (systemd says {state!r})")
        time.sleep(0.5)
    return name
