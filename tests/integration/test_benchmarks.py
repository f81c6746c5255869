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
