"""What loading each of the collection's modules imports, on every host that runs it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

COLLECTIONS = Path(__file__).resolve().parents[4] / "collections"
MODULES = sorted(path.stem for path in (COLLECTIONS / "ansible_collections/chajipoa/platform/plugins/modules").glob("*.py")
                 if path.stem != "__init__")


@pytest.mark.parametrize("module", MODULES)
def test_loading_a_module_leaves_the_fact_collectors_out(module):
    """Importing anything of ansible.module_utils.facts runs its package's __init__, which imports every
    fact collector: 80 ms of each host's CPU on each run (systemd_units did, for a helper it needs
    only when daemon-reload fails). A module needing one imports it where it is used."""
    probe = (f"import sys; from ansible_collections.chajipoa.platform.plugins.modules import {module}; "
             "print(sorted(name for name in sys.modules if name.startswith('ansible.module_utils.facts')))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(COLLECTIONS)}).stdout.strip()
    assert loaded == "[]"
