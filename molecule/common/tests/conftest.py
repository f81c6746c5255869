"""Fixtures of the common scenario: common-a runs the services the tests open and close, common-b
is the client that probes them through common-a's firewall."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def server(lab_host):
    return lab_host("common-a")


@pytest.fixture(scope="module")
def client(lab_host):
    return lab_host("common-b")
