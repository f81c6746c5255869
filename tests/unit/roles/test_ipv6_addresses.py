"""IPv6 addresses reach the configuration files in brackets, written by the filter host_port, in the
templates as the template action renders them. The expression this replaced, regex_replace with
'[\\1]', wrote "[\\x01]" there: a template file's backslashes are Jinja's, and Jinja reads \\1 in a
string as the character 0x01."""
from __future__ import annotations

import json

from tests.unit.roles import rendering

HOSTS = {"mon1": "10.0.0.5", "mon2": "fd00::6", "db1": "fd00::11", "app1": "10.0.0.7", "edge1": "fd00::8"}
GROUPS = {"all": list(HOSTS), "monitoring": ["mon1", "mon2"], "postgres": ["db1"], "redis": ["db1"], "app": ["app1"],
          "edge": ["edge1"]}
HOSTVARS = {host: {"private_address": address, "group_names": [group for group, members in GROUPS.items()
                                                               if host in members and group != "all"]}
            for host, address in HOSTS.items()}


def monitoring(template: str, host: str = "mon1"):
    variables = {**rendering.role_variables("monitoring"), "groups": GROUPS, "hostvars": HOSTVARS, "inventory_hostname": host,
                 "monitoring_api_targets": [{"name": "app1", "address": "fd00::7", "port": 3001}]}
    return rendering.render("monitoring", template, variables)


def test_prometheus_scrapes_ipv6_targets_in_brackets():
    text = monitoring("etc/prometheus/prometheus.yml.j2")
    assert '- targets: ["10.0.0.5:9093", "[fd00::6]:9093"]' in text
    for target in ('"[fd00::11]:9100"', '"[fd00::11]:9187"', '"[fd00::11]:9121"', '"[fd00::8]:9113"', '"10.0.0.7:9100"',
                   '"https://[fd00::8]/api/health"'):
        assert f"- targets: [{target}]" in text, target
    assert "\x01" not in text


def test_the_alertmanagers_cluster_with_an_ipv6_peer():
    assert "--cluster.peer=[fd00::6]:9094\"" in monitoring("etc/default/prometheus-alertmanager.j2", "mon1")
    ipv6 = monitoring("etc/default/prometheus-alertmanager.j2", "mon2")
    assert "--web.listen-address=[fd00::6]:9093 " in ipv6 and "--cluster.peer=10.0.0.5:9094\"" in ipv6


def test_the_api_targets_file_writes_ipv6_in_brackets():
    # As the entry point api_targets writes the file.
    assert json.loads(monitoring("{{ _monitoring_api_file_sd | to_json }}")) == [{"targets": ["[fd00::7]:3001"], "labels": {"instance": "app1"}}]


def test_nginx_listens_resolves_and_proxies_over_ipv6():
    variables = {**rendering.role_variables("edge"), "inventory_hostname": "edge1", "edge_tls_ocsp_stapling": True,
                 "edge_resolvers": ["1.1.1.1", "2606:4700::1111"],
                 "edge_app_upstreams": [{"name": "app1", "address": "10.0.0.7", "port": 3001},
                                        {"name": "app2", "address": "fd00::7", "port": 3002}]}
    nginx = rendering.render("edge", "etc/nginx/nginx.conf.j2", variables)
    assert "    resolver 1.1.1.1 [2606:4700::1111] valid=300s;" in nginx
    assert "        listen [::]:443 ssl http2 default_server;" in nginx
    servers = rendering.render("edge", "etc/nginx/chajipoa/upstream-servers.conf.j2", variables)
    assert "server 10.0.0.7:3001;" in servers and "server [fd00::7]:3002;" in servers
