"""Unit tests of the host_port filter."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.chajipoa.platform.plugins.filter.host_port import FilterModule

host_port = FilterModule().filters()["host_port"]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("172.30.80.11", "172.30.80.11"),
        ("0.0.0.0", "0.0.0.0"),
        ("db1.example.internal", "db1.example.internal"),
        ("fd00::13", "[fd00::13]"),
        ("::", "[::]"),
        ("::1", "[::1]"),
        ("fe80::1%eth0", "[fe80::1%eth0]"),
    ],
)
def test_ipv6_addresses_alone_go_in_brackets(host, expected):
    assert host_port(host) == expected


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("172.30.80.11", 9100, "172.30.80.11:9100"),
        ("fd00::13", 9100, "[fd00::13]:9100"),
        ("db1.example.internal", "5432", "db1.example.internal:5432"),
        ("::1", 65535, "[::1]:65535"),
        ("10.0.0.1", 1, "10.0.0.1:1"),
    ],
)
def test_with_a_port_host_and_port(host, port, expected):
    assert host_port(host, port) == expected


@pytest.mark.parametrize("host", ["[fd00::13]", "10.0.0.1:53", "fd00::13:9100:x", "db1:5432"])
def test_a_colon_that_is_no_ipv6_address_is_refused(host):
    with pytest.raises(AnsibleFilterError, match=r"holds a colon but is not an IPv6 address"):
        host_port(host)


@pytest.mark.parametrize("port", [0, 65536, -1, "http", "", True, 3.5])
def test_a_port_outside_1_65535_is_refused(port):
    with pytest.raises(AnsibleFilterError, match=r"the port is not a number 1-65535"):
        host_port("10.0.0.1", port)


@pytest.mark.parametrize("host", ["", None, 42, ["10.0.0.1"]])
def test_an_input_that_is_no_host_is_refused(host):
    with pytest.raises(AnsibleFilterError, match=r"host_port: the input must be"):
        host_port(host)


def test_in_a_template_through_the_collection():
    """As the roles use it: mapped over a list with a port, through the collection's name."""
    templar = Templar(loader=DataLoader(), variables={"addresses": ["10.0.0.1", "fd00::2"]})
    rendered = templar.template(trust_as_template("{{ addresses | map('chajipoa.platform.host_port', 9093) | list }}"))
    assert rendered == ["10.0.0.1:9093", "[fd00::2]:9093"]
