"""Static checks of roles/postgres beyond those every role gets (test_role_argument_specs.py):
exactly its catalogued secrets go without a default, and no default pg_hba entry trusts."""
from __future__ import annotations

import pytest

from tests.conftest import ROOT, load_yaml, role_options

DEFAULTS = load_yaml(ROOT / "roles" / "postgres" / "defaults" / "main.yml")
CATALOGUE = load_yaml(ROOT / "roles" / "validate_inventory" / "vars" / "main.yml")["_validate_inventory_secrets"]


def test_only_the_secrets_are_specified_without_default():
    role_secrets = {secret["name"] for secret in CATALOGUE if secret["name"].startswith("postgres_")}
    assert set(role_options("postgres")) - set(DEFAULTS) == role_secrets


@pytest.mark.parametrize("name", ["postgres_hba", "postgres_hba_default"])
def test_no_trust_in_default_hba(name):
    assert all(entry["method"] != "trust" for entry in DEFAULTS[name])
