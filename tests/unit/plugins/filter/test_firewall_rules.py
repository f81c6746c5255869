"""Unit tests of the firewall_rules filter: what it accepts and normalises, and every fault it refuses."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.chajipoa.platform.plugins.filter.firewall_rules import FilterModule

firewall_rules = FilterModule().filters()["firewall_rules"]


def one(**rule) -> dict:
    return firewall_rules([{"name": "probe", "ports": [8081]} | rule], "probe")[0]


def test_defaults_and_normal_form():
    assert one() == {"name": "probe", "proto": "tcp", "ports": [8081], "ipv4": [], "ipv6": []}


def test_templated_ports_arrive_as_strings():
    assert one(ports=["5432", 5432, 22])["ports"] == [22, 5432]


@pytest.mark.parametrize(("sources", "ipv4", "ipv6"), [
    (["10.20.0.7"], ["10.20.0.7"], []),
    (["10.20.0.7/32", "10.20.0.7"], ["10.20.0.7"], []),
    (["10.20.0.0/25", "10.20.0.128/25"], ["10.20.0.0/24"], []),
    (["10.0.0.0/8", "10.1.0.0/16"], ["10.0.0.0/8"], []),
    (["10.20.0.0/255.255.255.0"], ["10.20.0.0/24"], []),
    (["2001:db8::/32", "fd00::1", "10.20.0.1"], ["10.20.0.1"], ["2001:db8::/32", "fd00::1"]),
])
def test_sources_split_by_family_and_merged(sources, ipv4, ipv6):
    rule = one(sources=sources)
    assert (rule["ipv4"], rule["ipv6"]) == (ipv4, ipv6)


def test_udp():
    assert one(proto="udp")["proto"] == "udp"


def refusal(rules, service="probe") -> str:
    with pytest.raises(AnsibleFilterError) as error:
        firewall_rules(rules, service)
    message = str(error.value)
    assert message.startswith(f"Cannot open inbound ports for service {service!r}: ")
    return message


@pytest.mark.parametrize(("change", "expected"), [
    ({"sources": ["10.20.0.0/33"]}, "sources entry '10.20.0.0/33' is not an IPv4 or IPv6 address or network"),
    ({"sources": ["10.20.0.300"]}, "sources entry '10.20.0.300' is not"),
    ({"sources": ["010.20.0.1"]}, "sources entry '010.20.0.1' is not"),
    ({"sources": ["db1.chajipoa.internal"]}, "sources entry 'db1.chajipoa.internal' is not"),
    ({"sources": ["fe80::1%eth0"]}, "sources entry 'fe80::1%eth0' is not"),
    ({"sources": [" 10.20.0.1"]}, "sources entry ' 10.20.0.1' is not"),
    ({"sources": ["10.20.0.1\n"]}, "sources entry '10.20.0.1\\n' is not"),
    ({"sources": [168034305]}, "sources entry 168034305 is not"),
    ({"sources": ["10.20.0.5/24"]}, "'10.20.0.5/24' has host bits set (the network is 10.20.0.0/24)"),
    ({"sources": "10.20.0.1"}, "sources must be a list"),
    ({"sources": None}, "sources must be a list"),
    ({"ports": [0]}, "port 0 is not an integer 1-65535"),
    ({"ports": [65536]}, "port 65536 is not an integer 1-65535"),
    ({"ports": [-22]}, "port -22 is not"),
    ({"ports": [True]}, "port True is not"),
    ({"ports": ["22a"]}, "port '22a' is not"),
    ({"ports": ["8000-9000"]}, "port '8000-9000' is not"),
    ({"ports": [22.5]}, "port 22.5 is not"),
    ({"ports": []}, "ports must be a non-empty list"),
    ({"ports": 22}, "ports must be a non-empty list"),
    ({"proto": "icmp"}, "proto 'icmp' is neither tcp nor udp"),
    ({"source": ["10.0.0.1"]}, "unknown key 'source'"),
])
def test_faulty_rule_refused_naming_variable_rule_and_value(change, expected):
    message = refusal([{"name": "probe", "ports": [8081]} | change])
    assert "common_firewall_inbound rule 'probe': " in message
    assert expected in message


@pytest.mark.parametrize("name", ['probe" accept comment "all', "probe\naccept", "", "-probe", ".probe", "x" * 65, "p r", 7, None])
def test_unsafe_rule_name_refused(name):
    message = refusal([{"name": name, "ports": [8081]}])
    assert f"common_firewall_inbound[0]: name {name!r} is not a rule name" in message


@pytest.mark.parametrize("service", ["../nftables", "a/b", "a b", ".hidden", "x" * 65, "", None])
def test_unsafe_service_name_refused(service):
    assert f"common_firewall_service {service!r} is not a service name" in refusal([], service)


def test_every_fault_reported_in_one_message():
    message = refusal([
        {"name": "ok", "ports": [1]},
        {"name": "first", "ports": [0], "sources": ["nope"]},
        "not a dict",
    ])
    assert "common_firewall_inbound rule 'first': port 0" in message
    assert "common_firewall_inbound rule 'first': sources entry 'nope'" in message
    assert "common_firewall_inbound[2] is not a dict" in message
    assert "'ok'" not in message


def test_variable_named_in_messages():
    with pytest.raises(AnsibleFilterError, match="common_ssh_sources rule 'ssh': sources entry 'bad'"):
        firewall_rules([{"name": "ssh", "ports": [22], "sources": ["bad"]}], "ssh", variable="common_ssh_sources")


def test_not_a_list_refused():
    assert "common_firewall_inbound must be a list" in refusal({"name": "probe"})


def test_empty_list_is_no_opening():
    assert firewall_rules([], "probe") == []
