"""Fixtures of the postgres scenario: its two hosts, the inventory's secrets, the primary's address."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def primary(lab_host):
    return lab_host("pg-primary")


@pytest.fixture(scope="module")
def replica(lab_host):
    return lab_host("pg-replica")


@pytest.fixture(scope="module")
def secrets(primary):
    variables = primary.ansible.get_variables()
    return {name: variables[f"postgres_{name}_password"] for name in ("app", "replication", "monitoring")}


@pytest.fixture(scope="module")
def primary_address(primary, lab_address):
    return lab_address(primary)
