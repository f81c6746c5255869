"""The host-side benchmarks still run: a tiny dataset through each, written into a copy of the docs.

They are not timed here (figures come from full runs, docs/performance.md); this only keeps them from
breaking unseen when the code they drive changes (a signed manifest once stopped bench/backups.py).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("script, args, section", [
    ("backups.py", ["--gigabytes", "0.01", "--rounds", "1"], "backups"),
    ("mongodb_archive.py", ["--megabytes", "2", "--rounds", "1"], "mongodb-archive"),
    # No host contacted: the validation play alone, on a generated inventory.
    ("validation.py", ["--hosts", "2", "--rounds", "1"], "validation"),
    # A lab container of its own (the lab image), sshd from Debian's archive in it.
    ("module_call.py", ["--tasks", "2", "--rounds", "1"], "module-call"),
])
def test_benchmark_runs_and_writes_its_section(tmp_path, script, args, section):
    docs = (ROOT / "docs" / "performance.md").read_text()
    doc = tmp_path / "performance.md"
    shutil.copy(ROOT / "docs" / "performance.md", doc)
    before = doc.read_text()
    run = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT, capture_output=True,
                         text=True, check=False, env=dict(os.environ, CHAJIPOA_BENCH_DOC=str(doc)), timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    after = doc.read_text()
    assert f"<!-- bench:{section} -->" in after and after != before
    assert (ROOT / "docs" / "performance.md").read_text() == docs


def _benchlib():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import benchlib  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return benchlib


@pytest.mark.parametrize("task, changes", [
    ("ansible.builtin.stat: {path: /etc/hostname}", False),
    # touch changes the file's times in every run: a playbook that is never a no-op.
    ("ansible.builtin.file: {path: '{{ playbook_dir }}/touched', state: touch, mode: '0600'}", True),
])
def test_a_no_op_bench_refuses_a_run_that_changed_something(tmp_path, task, changes):
    """Every no-op figure (noop_site.py, data_tier.py, scale.py) goes through timed_playbook's
    expect_noop: a run that changed anything stops the bench, naming the host, instead of being timed."""
    benchlib = _benchlib()
    playbook = tmp_path / "play.yml"
    playbook.write_text(f"- hosts: all\n  gather_facts: false\n  tasks:\n    - {task}\n")
    args = ["-i", "bench1,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)]
    with (tmp_path / "run.log").open("w") as log:
        if changes:
            with pytest.raises(SystemExit, match=r"was not a no-op .*changed on bench1 1"):
                benchlib.timed_playbook(args, log, expect_noop=True)
        else:
            run = benchlib.timed_playbook(args, log, expect_noop=True)
            assert run.calls["bench1"]["calls"] == 1 and run.calls["bench1"]["changed"] == 0
            assert run.seconds > 0 and run.controller_cpu > 0
