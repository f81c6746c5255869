"""The two trust decisions of the monitoring role kept apart (issue 18): the blackbox exporter's probes of
the edge verify with monitoring_probe_ca_file (the system's trust store when empty: a blackbox ca_file
replaces it), the Redis and MongoDB exporters verify their servers with monitoring_tls_ca_file. An
operator with a public edge certificate and an internal-CA data tier needs both checked. Rendered
offline: the templates, and the conditions and arguments of the tasks that install each CA."""
from __future__ import annotations

import re

import pytest
import yaml

from tests.unit.roles import rendering

GROUPS = {"all": ["mon1", "cache1", "mongo1", "edge1", "app1"], "monitoring": ["mon1"], "redis": ["cache1"],
          "mongodb": ["mongo1"], "edge": ["edge1"], "app": ["app1"]}
HOSTVARS = {host: {"private_address": f"10.0.0.{number}", "group_names": [group for group, members in GROUPS.items()
                                                                          if host in members and group != "all"]}
            for number, host in enumerate(GROUPS["all"], start=5)}
HOSTVARS["edge1"]["edge_server_name"] = "chajipoa.co.tz"
TASKS = rendering.ROLES / "monitoring" / "tasks"
DATA_CA = "/etc/prometheus/tls/ca.crt"
# In development the probes read the exporters' file: one task installs it on a host.
DEVELOPMENT_CA = DATA_CA
PROBE_CA = "/etc/prometheus/tls/probe-ca.crt"
# Outside development, as production sets them: an internal CA for Redis and MongoDB, and the probe
# CA where the edge's certificate is not a public one.
PRODUCTION = {"monitoring_tls_self_signed": False, "monitoring_tls_ca_file": "/inv/files/pki/ca.crt",
              "monitoring_probe_ca_file": ""}


def render(template: str, host: str = "mon1", **overrides):
    variables = {**rendering.role_variables("monitoring"), "groups": GROUPS, "hostvars": HOSTVARS, "inventory_hostname": host,
                 "monitoring_redis_password": "r", "monitoring_mongodb_password": "m", **overrides}
    return rendering.render("monitoring", template, variables)


def blackbox(**overrides) -> dict:
    return yaml.safe_load(render("etc/prometheus/blackbox.yml.j2", **overrides))["modules"]


def ca_files(modules: dict) -> dict[str, str | None]:
    return {name: (module["http"].get("tls_config") or {}).get("ca_file") for name, module in modules.items()}


def redis_ca(**overrides) -> list[str]:
    text = render("etc/default/prometheus-redis-exporter.j2", host="cache1", **overrides)
    [args] = re.findall(r"^ARGS=(.*)$", text, re.M)
    return [arg.split("=", 1)[1] for arg in yaml.safe_load(args).split() if arg.startswith("-tls-ca-cert-file=")]


def mongodb_uri(**overrides) -> str:
    text = render("etc/default/prometheus-mongodb-exporter.j2", host="mongo1", **overrides)
    [uri] = re.findall(r"^MONGODB_URI=(.*)$", text, re.M)
    return yaml.safe_load(uri)


def test_outside_development_a_data_tier_ca_leaves_the_probes_on_the_system_trust_store():
    """The defect: monitoring_tls_ca_file set for Redis put its CA in every probe module, and the
    probes of a Let's Encrypt edge failed."""
    assert ca_files(blackbox(**PRODUCTION)) == {"edge_edge1": None, "http_2xx": None}
    assert "ca_file" not in render("etc/prometheus/blackbox.yml.j2", **PRODUCTION)
    assert redis_ca(**PRODUCTION) == [DATA_CA]
    assert mongodb_uri(**PRODUCTION) == f"mongodb://10.0.0.7:27017/admin?tls=true&tlsCAFile={DATA_CA}"


def test_outside_development_the_probes_verify_with_their_own_ca():
    settings = {**PRODUCTION, "monitoring_probe_ca_file": "/inv/files/edge/chain.pem"}
    assert ca_files(blackbox(**settings)) == {"edge_edge1": PROBE_CA, "http_2xx": PROBE_CA}
    assert redis_ca(**settings) == [DATA_CA]
    # A probe CA alone gives the exporters none: the system's trust store (a public CA's certificate).
    alone = {**settings, "monitoring_tls_ca_file": ""}
    assert ca_files(blackbox(**alone)) == {"edge_edge1": PROBE_CA, "http_2xx": PROBE_CA}
    assert redis_ca(**alone) == []
    assert mongodb_uri(**alone) == "mongodb://10.0.0.7:27017/admin?tls=true"


def test_in_development_both_verify_with_the_development_ca():
    assert ca_files(blackbox()) == {"edge_edge1": DEVELOPMENT_CA, "http_2xx": DEVELOPMENT_CA}
    assert redis_ca() == [DEVELOPMENT_CA]
    assert mongodb_uri() == f"mongodb://10.0.0.7:27017/admin?tls=true&tlsCAFile={DEVELOPMENT_CA}"


# --- Where each CA is installed -----------------------------------------------------------------

def installed(tasks: str, host: str, **overrides) -> list[dict]:
    """What each import of ca.yml in `tasks` installs on `host` (whose condition holds): the CA's path,
    the controller file it is copied from outside development, and the handlers it notifies."""
    [ca] = rendering.LOADER.load_from_file(str(TASKS / "ca.yml"), trusted_as_template=True)
    found = []
    for task in rendering.LOADER.load_from_file(str(TASKS / tasks), trusted_as_template=True):
        if task.get("ansible.builtin.import_tasks") != "ca.yml":
            continue
        scope = {**overrides, **task.get("vars", {})}
        if render(f"{{{{ ({task['when']}) | bool }}}}", host=host, **scope):
            found.append({key: render(ca["vars"][f"pki_{key}"], host=host, **scope) for key in ("ca_dest", "self_signed", "ca_file", "notify")})
    return found


def test_outside_development_each_ca_is_installed_where_it_is_read():
    # A public edge certificate: the monitoring host installs no CA for the probes.
    assert installed("configure.yml", "mon1", **PRODUCTION) == []
    settings = {**PRODUCTION, "monitoring_probe_ca_file": "/inv/files/edge/chain.pem"}
    probe = {"ca_dest": PROBE_CA, "self_signed": False, "ca_file": "/inv/files/edge/chain.pem", "notify": ["Restart the monitoring services"]}
    assert installed("configure.yml", "mon1", **settings) == [probe]
    data = {"ca_dest": DATA_CA, "self_signed": False, "ca_file": "/inv/files/pki/ca.crt", "notify": ["Restart the exporters"]}
    assert installed("exporters.yml", "cache1", **settings) == [data]
    assert installed("exporters.yml", "mongo1", **settings) == [data]
    # Hosts without a Redis or MongoDB exporter get neither CA, the monitoring host included.
    assert installed("exporters.yml", "app1", **settings) == []
    assert installed("exporters.yml", "mon1", **settings) == []
    assert installed("exporters.yml", "cache1", **{**settings, "monitoring_tls_ca_file": ""}) == []


@pytest.mark.parametrize(("tasks", "host", "notify"), [
    ("configure.yml", "mon1", "Restart the monitoring services"),
    ("exporters.yml", "cache1", "Restart the exporters"),
])
def test_in_development_one_task_installs_the_development_ca(tasks, host, notify):
    """The same file for both, as before: a development converge makes no further call."""
    [ca] = installed(tasks, host)
    assert (ca["ca_dest"], ca["self_signed"], ca["notify"]) == (DEVELOPMENT_CA, True, [notify])
