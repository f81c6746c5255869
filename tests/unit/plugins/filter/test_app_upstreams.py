"""Unit tests of the app_upstreams filter (plain dicts stand in for hostvars)."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.chajipoa.platform.plugins.filter.app_upstreams import FilterModule

app_upstreams = FilterModule().filters()["app_upstreams"]

HOSTVARS = {
    "app1": {"private_address": "172.30.80.14", "app_live_colour": "green"},
    "app2": {"private_address": "172.30.80.15", "app_live_colour": "blue", "app_ports": {"blue": 4001, "green": 4002}},
    "app3": {"private_address": "fd00::16", "app_live_colour": "purple"},
    "app4": {"private_address": "172.30.80.17", "app_ports": {"blue": 4001}},
    "app5": {"private_address": "172.30.80.18"},
}


def test_each_host_on_its_live_colour_with_the_role_default_ports():
    assert app_upstreams(["app1", "app2"], HOSTVARS) == [
        {"name": "app1", "address": "172.30.80.14", "port": 3002},
        {"name": "app2", "address": "172.30.80.15", "port": 4001},
    ]


def test_colours_given_override_the_live_colour_for_those_hosts_only():
    assert app_upstreams(["app1", "app2"], HOSTVARS, {"app2": "green"}) == [
        {"name": "app1", "address": "172.30.80.14", "port": 3002},
        {"name": "app2", "address": "172.30.80.15", "port": 4002},
    ]
    assert app_upstreams(["app1"], HOSTVARS, {"app1": "blue"})[0]["port"] == 3001


@pytest.mark.parametrize(
    ("hosts", "colours", "message"),
    [
        (["app3"], {}, r"Cannot route to app3: colour 'purple' is not one of blue, green"),
        (["app4"], {"app4": "green"}, r"Cannot route to app4: app_ports has no port 1-65535 for green"),
        (["app1"], {"app2": "green"}, r"Cannot switch app2: not among the app hosts app1"),
        (["app9"], {}, r"app9: it is not an inventory host"),
        # Never read (outside a run's --limit or --tags): refused, not taken for blue.
        (["app1", "app5"], {}, r"Cannot route to app5: its live colour was not read"),
        (["app1"], ["app1"], r"app_upstreams: colours must map host names to colours"),
    ],
)
def test_faults_are_refused_naming_the_host(hosts, colours, message):
    with pytest.raises(AnsibleFilterError, match=message):
        app_upstreams(hosts, HOSTVARS, colours)


def test_no_app_hosts_give_no_servers():
    assert app_upstreams([], HOSTVARS) == []
