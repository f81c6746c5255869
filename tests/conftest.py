"""Paths shared by the unit and integration tests."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def load_yaml(path: Path):
    with path.open() as handle:
        return yaml.safe_load(handle)
