"""execution-environment.yml, AWX's execution environment, as ansible-builder reads it.

ansible-builder `create` writes the build context (the Containerfile and what it installs) without
building: the base image comes from quay.io, which this project's build hosts cannot reach, so no
image is built here, and what the image would run is what requirements.txt already runs in every
test and scenario.
"""
from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEFINITION = yaml.safe_load((ROOT / "execution-environment.yml").read_text())


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("ee")
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-builder"), "create", "--file", "execution-environment.yml",
                          "--context", str(directory)], cwd=ROOT, capture_output=True, text=True, check=False, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return directory


def test_the_image_installs_the_controllers_whole_runtime(context):
    """requirements.txt itself, Mitogen's pin included: the strategy a job template may select
    (ANSIBLE_STRATEGY=chajipoa.platform.mitogen_linear) finds it in the image."""
    installed = (context / "_build" / "requirements.txt").read_text()
    assert installed == (ROOT / "requirements.txt").read_text()
    assert re.search(r"^mitogen==\S+$", installed, re.M) and re.search(r"^ansible==\S+$", installed, re.M)
    assert (context / "_build" / "bindep.txt").read_text() == (ROOT / "bindep.txt").read_text()
    containerfile = (context / "Dockerfile").read_text()
    assert f"ARG EE_BASE_IMAGE=\"{DEFINITION['images']['base_image']['name']}\"" in containerfile
    # No Galaxy step: the collections come with the ansible package.
    assert "ansible-galaxy" not in containerfile.replace("check_galaxy", "")


def test_the_ansible_core_pin_is_the_one_the_ansible_package_brings():
    """The definition names ansible-core apart from requirements.txt's ansible; a bump of one
    without the other would install two different controllers' worth of expectations."""
    assert DEFINITION["dependencies"]["ansible_core"]["package_pip"] == f"ansible-core=={importlib.metadata.version('ansible-core')}"
    assert importlib.metadata.version("ansible") in (ROOT / "requirements.txt").read_text()


def test_the_strategy_it_offers_is_documented_in_the_collection():
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "-t", "strategy", "chajipoa.platform.mitogen_linear"],
                         cwd=ROOT, capture_output=True, text=True, check=False, timeout=120)
    assert run.returncode == 0 and "Mitogen" in run.stdout, run.stdout + run.stderr
