"""Unit tests of the peer_addresses filter (plain dicts stand in for hostvars)."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.chajipoa.platform.plugins.filter.peer_addresses import FilterModule

peer_addresses = FilterModule().filters()["peer_addresses"]

HOSTVARS = {
    "db1": {"private_address": "172.30.80.11", "ansible_facts": {"default_ipv4": {"address": "10.0.0.1"}}},
    "db2": {"ansible_facts": {"default_ipv4": {"address": "10.0.0.2"}}},
    "cache1": {"private_address": "fd00::13"},
    "bare1": {},
    "bare2": {"private_address": "", "ansible_facts": {}},
    "typo1": {"private_address": "172.30.80.300"},
}


@pytest.mark.parametrize(
    ("hosts", "expected"),
    [
        (["db1", "db2", "cache1"], ["172.30.80.11", "10.0.0.2", "fd00::13"]),
        ("db1", ["172.30.80.11"]),
        (["db2", "db2"], ["10.0.0.2", "10.0.0.2"]),
        ([], []),
    ],
)
def test_private_address_first_then_the_fact_address_in_input_order(hosts, expected):
    assert peer_addresses(hosts, HOSTVARS) == expected


def test_hosts_with_no_address_are_named_not_dropped():
    with pytest.raises(AnsibleFilterError, match=r"Cannot find the address of bare1, bare2: set private_address"):
        peer_addresses(["db1", "bare1", "bare2"], HOSTVARS)


def test_a_malformed_private_address_is_refused_naming_the_host():
    with pytest.raises(AnsibleFilterError, match=r"typo1: private_address '172.30.80.300' is not an IPv4 or IPv6 address"):
        peer_addresses(["typo1"], HOSTVARS)


def test_an_unknown_host_is_refused():
    with pytest.raises(AnsibleFilterError, match="db9: it is not an inventory host"):
        peer_addresses(["db9"], HOSTVARS)


@pytest.mark.parametrize(("hosts", "hostvars"), [(42, HOSTVARS), ([1, 2], HOSTVARS), (["db1"], ["db1"])])
def test_bad_input_is_refused(hosts, hostvars):
    with pytest.raises(AnsibleFilterError, match="peer_addresses:"):
        peer_addresses(hosts, hostvars)
