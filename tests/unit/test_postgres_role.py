"""Static checks of roles/postgres: its argument specification against its defaults and the
platform's secrets catalogue, and no secret or trust in its defaults."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "postgres"


def load(path: Path):
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def defaults() -> dict:
    return load(ROLE / "defaults" / "main.yml")


@pytest.fixture(scope="module")
def options() -> dict:
    return load(ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]


@pytest.fixture(scope="module")
def role_secrets() -> set[str]:
    catalogue = load(ROOT / "roles" / "validate_inventory" / "vars" / "main.yml")["_validate_inventory_secrets"]
    return {secret["name"] for secret in catalogue if secret["name"].startswith("postgres_")}


def test_every_default_is_specified(defaults, options):
    assert set(defaults) - set(options) == set()


def test_only_the_secrets_are_specified_without_default(defaults, options, role_secrets):
    assert set(options) - set(defaults) == role_secrets


def test_secrets_are_no_log_and_have_no_default(defaults, options, role_secrets):
    for name in role_secrets:
        assert name not in defaults
        assert options[name].get("no_log") is True, name


@pytest.mark.parametrize("name", ["postgres_hba", "postgres_hba_default"])
def test_no_trust_in_default_hba(defaults, name):
    assert all(entry["method"] != "trust" for entry in defaults[name])


def test_every_option_typed_and_described(options):
    for name, spec in options.items():
        assert "type" in spec, name
        assert spec.get("description"), name
