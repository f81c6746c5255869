"""Unit tests of the inventory_faults filter with the role's real rules and the roles' real argument
specifications; plain dicts stand in for hostvars and groups."""
from __future__ import annotations

import atexit
import copy
import shutil
import tempfile
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.chajipoa.platform.plugins.filter.inventory_faults import FilterModule
from ansible_collections.chajipoa.platform.plugins.filter.shared_addresses import shared_addresses
from ansible_collections.chajipoa.platform.plugins.plugin_utils.inventory_checks import argument_errors
from tests.conftest import ROOT, load_yaml

inventory_faults = FilterModule().filters()["inventory_faults"]

VARS = load_yaml(ROOT / "roles/validate_inventory/vars/main.yml")
RULES = {
    **VARS["_validate_inventory_rules"],
    "environments": VARS["_validate_inventory_environments"],
    "secrets": VARS["_validate_inventory_secrets"],
    "group_roles": VARS["_validate_inventory_group_roles"],
}
ROLES_DIR = str(ROOT / "roles")
SECRETS = {
    # Long enough for the longest minimum a secret has (the API's signing secrets: 32 characters).
    **{entry["name"]: f"secret-{entry['name']}-{'0' * 32}" for entry in VARS["_validate_inventory_secrets"]},
    # Wrapped, as openssl rand -base64 prints it.
    "mongodb_keyfile": "c2VjcmV0LWtleWZpbGUtY29udGVudHM=\nbW9yZQ==",
}
GROUPS = {"postgres": ["db1"], "postgres_replica": ["db2"], "redis": ["cache1", "cache2"], "mongodb": ["mongo1"], "app": ["app1"],
          "edge": ["edge1"], "backup": ["backup1"]}
# The certificate files the sound inventory names, on the controller: made here for the whole session
# (other modules check their roles' inputs through faults() too).
CONTROLLER = Path(tempfile.mkdtemp(prefix="chajipoa-controller-"))
atexit.register(shutil.rmtree, CONTROLLER, True)
FILES = CONTROLLER / "files"
HOSTS = {
    "db1": {"private_address": "10.20.2.11", "backup_s3_bucket": "chajipoa-production-backups"},
    "db2": {"private_address": "10.20.2.12"},
    "cache1": {"private_address": "10.20.3.11"},
    "cache2": {"private_address": "10.20.3.12", "redis_replica_of": "cache1"},
    "mongo1": {"private_address": "10.20.4.11"},
    # Outside development the certificates come from the controller (<role>_tls_self_signed false).
    "app1": {"private_address": "10.20.1.11", "pgbouncer_tls_cert_file": f"{FILES}/pki/app1-pgbouncer.crt",
             "pgbouncer_tls_key_file": f"{FILES}/pki/app1-pgbouncer.key", "pgbouncer_tls_ca_file": f"{FILES}/rds.pem"},
    "edge1": {"private_address": "10.20.0.11", "edge_tls_cert_file": f"{FILES}/edge/fullchain.pem",
              "edge_tls_key_file": f"{FILES}/edge/privkey.pem", "edge_tls_ca_file": f"{FILES}/edge/chain.pem"},
    # Dumps a managed server (RDS) over the network.
    "backup1": {"private_address": "10.20.6.11", "backup_postgres_host": "chajipoa.c9x.af-south-1.rds.amazonaws.com",
                "backup_s3_bucket": "chajipoa-production-backups"},
}

for _own in HOSTS.values():
    for _name, _path in _own.items():
        if _name.endswith("_file"):
            Path(_path).parent.mkdir(parents=True, exist_ok=True)
            Path(_path).write_text("-----BEGIN CERTIFICATE-----\n")


def inventory(env_name="production", **changes) -> tuple[dict, dict]:
    """hostvars and groups of a sound inventory, with changes as {host: {variable: value}} or groups=..."""
    groups = copy.deepcopy(changes.pop("groups", GROUPS))
    hostvars = {}
    for host, own in {**HOSTS, **{host: {} for members in groups.values() for host in members if host not in HOSTS}}.items():
        hostvars[host] = {"env_name": env_name, "common_ssh_sources": ["10.20.0.0/24"], "ansible_user": "deploy",
                          "common_ssh_allow_groups": ["deploy"],
                          **SECRETS, **own, **changes.get(host, {})}
    groups["all"] = list(hostvars)
    return hostvars, groups


def faults(host: str, sources=(), env_name="production", **changes) -> list[str]:
    hostvars, groups = inventory(env_name, **changes)
    return inventory_faults(host, hostvars, groups, RULES, ROLES_DIR, list(sources))


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_a_sound_inventory_has_no_faults(host):
    assert faults(host) == []


@pytest.mark.parametrize(
    ("host", "variable", "value", "expected"),
    [
        ("db1", "postgres_port", 0, "postgres_port 0 is out of range for a port (1 to 65535)"),
        ("db1", "postgres_port", "65536", "postgres_port '65536' is out of range for a port"),
        ("cache1", "redis_port", -1, "redis_port -1 is out of range"),
        ("db1", "postgres_max_connections", -5, "postgres_max_connections -5 is out of range"),
        ("cache1", "redis_maxmemory", "256 megs", "redis_maxmemory '256 megs' is not a Redis size"),
        ("cache1", "redis_maxmemory", "-1mb", "redis_maxmemory '-1mb' is not a Redis size"),
        ("db1", "postgres_shared_buffers", "1 lot", "postgres_shared_buffers '1 lot' is not a PostgreSQL size"),
        ("app1", "private_address", "10.20.1.300", "private_address '10.20.1.300' is not an IPv4 or IPv6 address"),
        ("app1", "app_mongodb_url_options", {"auth source": "admin"},
         "app_mongodb_url_options key 'auth source' is not a MongoDB connection string option"),
        ("app1", "app_mongodb_url_options", {"retryWrites": False},
         "app_mongodb_url_options.retryWrites False is not a MongoDB connection string option's value"),
        ("app1", "common_ssh_sources", ["10.20.0.0/33"], "common_ssh_sources[0] '10.20.0.0/33' is not an IPv4/IPv6 address or CIDR network"),
        ("app1", "common_ssh_sources", ["10.20.0.1/24"], "common_ssh_sources[0] '10.20.0.1/24' is not"),
        ("app1", "common_firewall_inbound", [{"name": "web", "ports": [443], "sources": ["bastion.example"]}],
         "common_firewall_inbound[0].sources[0] 'bastion.example' is not"),
        ("app1", "common_firewall_inbound", [{"name": 'web" accept', "ports": [443]}], "common_firewall_inbound[0].name"),
        ("app1", "common_firewall_inbound", [{"name": "web", "ports": [0]}], "common_firewall_inbound[0].ports[0] 0 is out of range"),
        ("db1", "postgres_hba", [{"type": "local", "database": "all", "user": "all", "method": "trust"}],
         "postgres_hba[0] {'type': 'local', 'database': 'all', 'user': 'all', 'method': 'trust'} has method 'trust', refused for local lines"),
        ("db1", "postgres_hba", [{"type": "host", "database": "all", "user": "all", "address": "10.0.0.0/8", "method": "password"}],
         "has method 'password', refused for network lines"),
        ("db1", "postgres_hba", [{"type": "host", "database": "all", "user": "all", "address": "10.0.0.0/8", "method": "md5"}],
         "has method 'md5', refused"),
        ("db1", "postgres_hba", [{"type": "hostssl", "database": "all", "user": "x y", "address": "10.0.0.0/8", "method": "cert"}],
         "has a user that is not a comma list of PostgreSQL names"),
        ("db1", "postgres_hba", [{"type": "hostssl", "database": "all", "user": "all", "address": ["10.0.0.0/40"], "method": "cert"}],
         "needs addresses that are"),
        ("db1", "postgres_hba", [{"type": "hostssl", "database": "all", "user": "all", "method": "cert"}], "needs addresses"),
        ("db1", "postgres_hba", [{"type": "local", "database": "all", "user": "all", "address": "10.0.0.1", "method": "peer"}],
         "local lines do not take"),
        ("db1", "postgres_hba", [{"type": "hostgss", "database": "all", "user": "all", "method": "gss"}], "has type 'hostgss'"),
        ("cache1", "redis_app_acl_rules", "~* +@all nopass", "holds the ACL rule nopass, which lets the user in with any password"),
        ("cache1", "redis_app_acl_rules", "~* +@all NOPASS", "holds the ACL rule NOPASS"),
        ("cache1", "redis_monitoring_acl_rules", "+info >letmein", "redis_monitoring_acl_rules (value hidden) holds the ACL rule >..., which adds"),
        ("cache1", "redis_app_acl_rules", "resetpass ~*", "holds the ACL rule resetpass"),
        ("cache1", "redis_app_acl_rules", "on ~*", "holds the ACL rule on"),
        ("cache1", "redis_acl_users", [{"name": "bi", "password": "x", "rules": "#0123 ~*"}], "redis_acl_users[0].rules (value hidden)"),
        ("cache1", "redis_acl_users", [{"name": "b i", "password": "x", "rules": "~*"}], "redis_acl_users[0].name 'b i' is not a Redis ACL user name"),
        ("app1", "common_admin_users", [{"name": "Deploy!", "ssh_keys": ["ssh-ed25519 AAAA x"]}], "common_admin_users[0].name 'Deploy!'"),
        ("app1", "common_admin_users", [{"name": "deploy", "ssh_keys": ["not a key"]}], "common_admin_users[0].ssh_keys[0]"),
        ("app1", "common_locales_extra", ["swahili"], "common_locales_extra[0] 'swahili' is not a locale name"),
        ("app1", "common_sysctl", {"vm overcommit": 1}, "common_sysctl key 'vm overcommit' is not a sysctl key"),
        ("db1", "postgres_settings", {"work mem": "4MB"}, "postgres_settings key 'work mem'"),
        ("db1", "backup_retention_local", {"daily_days": -1}, "backup_retention_local.daily_days -1 is out of range"),
        ("db1", "backup_mongodb_hosts", ["mongo1"], "backup_mongodb_hosts[0] 'mongo1' is not host:port"),
        ("backup1", "backup_postgres_host", "rds endpoint", "backup_postgres_host 'rds endpoint' is not a host name or address"),
        ("backup1", "backup_postgres_port", 70000, "backup_postgres_port 70000 is out of range for a port"),
        ("mongo1", "monitoring_exporter_ports", {"node": 9100, "postgres": 9187, "redis": 9121, "pgbouncer": 9127,
                                                 "nginx": 9113, "mongodb": 70000},
         "monitoring_exporter_ports.mongodb 70000 is out of range for a port"),
        ("db1", "postgres_untracked_logins", ["chajipoa backup"], "postgres_untracked_logins[0] 'chajipoa backup'"),
        ("mongo1", "mongodb_keyfile", "short", "mongodb_keyfile (secret) is not 6 to 1024 base64 characters"),
        ("db1", "env_name", "prod-uction", "env_name 'prod-uction' is not one of development, staging, production"),
        # A string where a list belongs: the argument specification would split it at commas for its
        # check only, and the role would receive the string (one character per item in a template).
        ("app1", "common_ssh_sources", "0.0.0.0/0 ; evil", "common_ssh_sources '0.0.0.0/0 ; evil' is a string, not a list"),
        ("app1", "common_ssh_allow_groups", "deploy,admins", "common_ssh_allow_groups 'deploy,admins' is a string, not a list"),
        ("app1", "common_firewall_inbound", [{"name": "web", "ports": "443"}], "common_firewall_inbound[0].ports '443' is a string, not a list"),
        ("app1", "app_environment_extra", "A=1", "app_environment_extra 'A=1' is a string, not a mapping"),
        ("backup1", "backup_verify_ignore_kinds", "redis", "backup_verify_ignore_kinds 'redis' is a string, not a list"),
    ],
)
def test_a_value_in_the_wrong_format_is_named_with_its_host(host, variable, value, expected):
    found = faults(host, **{host: {variable: value}})
    assert any(expected in fault and fault.startswith(f"Cannot configure {host}: ") for fault in found), found


EDGE_DEFAULTS = load_yaml(ROOT / "roles/edge/defaults/main.yml")


def test_the_edge_defaults_written_into_an_inventory_pass():
    # Not the empty certificate files: production must name its own (test_certificate_files_are_required_unless_self_signed).
    plain = {name: value for name, value in EDGE_DEFAULTS.items()
             if not (isinstance(value, str) and "{{" in value) and name not in TLS_FILES["edge1"][1]}
    assert {"edge_csp", "edge_security_headers", "edge_rate_limit", "edge_maintenance_message"} <= set(plain)
    assert faults("edge1", edge1=plain) == []


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        # Each would end or change an nginx directive (a quote, a semicolon, a $ variable, a brace).
        ("edge_csp", {"script-src": ["'self'; report-uri https://evil.example"]}, "edge_csp.script-src[0]"),
        ("edge_csp", {"script-src": ["'self'", 'https://x" always; add_header A "b']}, "edge_csp.script-src[1]"),
        ("edge_csp", {"script-srcx": ["'self'"]}, "edge_csp key 'script-srcx' is not a Content-Security-Policy directive"),
        ("edge_security_headers", {"X-Frame-Options": 'DENY" always; return 200 "x'}, "edge_security_headers.X-Frame-Options"),
        ("edge_security_headers", {"Referrer-Policy": "$http_referer"}, "edge_security_headers.Referrer-Policy"),
        ("edge_security_headers", {"X Frame": "DENY"}, "edge_security_headers key 'X Frame' is not an HTTP header name"),
        ("edge_rate_limit", "10/m", "edge_rate_limit '10/m' is not an nginx rate"),
        ("edge_rate_limit", "10r/h", "is not an nginx rate"),
        ("edge_rate_limited_routes", ["/api/auth/login { return 200; }"], "edge_rate_limited_routes[0]"),
        ("edge_rate_limited_routes", ["api/payments"], "is not a path of the API"),
        ("edge_rate_limited_routes", ["/api/payments", "/metrics"], "edge_rate_limited_routes[1] '/metrics' is not a path of the API"),
        ("edge_rate_limited_routes", ["/api/../metrics"], "edge_rate_limited_routes[0] '/api/../metrics' is not a path of the API"),
        ("edge_frontend_immutable_prefixes", ["/assets/;"], "edge_frontend_immutable_prefixes[0]"),
        ("edge_server_name", "chajipoa.co.tz;", "edge_server_name"),
        ("edge_server_aliases", ["www.chajipoa.co.tz *"], "edge_server_aliases[0]"),
        ("edge_maintenance_message", "Back soon <script>alert(1)</script>", "edge_maintenance_message"),
        ("edge_platform_name", "Chaji$host", "edge_platform_name"),
        ("edge_real_ip_from", ["10.0.0.1/8"], "edge_real_ip_from[0] '10.0.0.1/8' is not"),
        ("edge_firewall_sources", ["lb.example"], "edge_firewall_sources[0] 'lb.example' is not"),
        ("edge_proxy_read_timeout", "60 s", "edge_proxy_read_timeout '60 s' is not an nginx time"),
        ("edge_client_max_body_size", "1 MB", "is not an nginx size"),
        ("edge_https_port", 70000, "edge_https_port 70000 is out of range"),
        ("edge_app_upstreams", [{"name": "app1", "address": "app1.internal", "port": 3001}], "edge_app_upstreams[0].address"),
        ("edge_resolvers", ["dns.example"], "edge_resolvers[0] 'dns.example' is not an IPv4 or IPv6 address"),
        ("edge_tls_ciphers", "ECDHE-RSA-AES128-GCM-SHA256; ssl_protocols TLSv1", "edge_tls_ciphers"),
        ("edge_frontend_source", "builds/web", "edge_frontend_source 'builds/web' is not an absolute path"),
    ],
)
def test_an_edge_value_that_would_break_its_nginx_directive_is_refused(variable, value, expected):
    found = faults("edge1", edge1={variable: value})
    assert any(expected in fault and fault.startswith("Cannot configure edge1: ") for fault in found), found


@pytest.mark.parametrize(
    ("host", "variable", "value", "path"),
    [
        ("db1", "postgres_hba", [{"type": "hostssl", "database": "all", "user": "bi", "address": "10.0.0.0/8",
                                  "method": "scram-sha-256", "comment": "BI\nhost all all 0.0.0.0/0 trust"}], "postgres_hba[0].comment"),
        ("db1", "postgres_settings", {"work_mem": "4MB\nssl = off"}, "postgres_settings.work_mem"),
        ("app1", "common_timezone", "Africa/Dar_es_Salaam\r", "common_timezone"),
        ("app1", "common_sysctl", {"vm.swappiness\n": 1}, "common_sysctl key 'vm.swappiness\\n'"),
        ("app1", "app_jwt_secret", "first\x00second", "app_jwt_secret"),
        ("db1", "backup_s3_prefix", "a\u2028b", "backup_s3_prefix"),
        ("db1", "backup_s3_prefix", "tab\there", "backup_s3_prefix"),
    ],
)
def test_control_characters_are_refused_anywhere_inside_a_value(host, variable, value, path):
    found = faults(host, **{host: {variable: value}})
    assert any(fault.startswith(f"Cannot configure {host}: {path} holds a newline or another control character") for fault in found), found


def test_the_mongodb_keyfile_may_be_wrapped():
    assert faults("mongo1") == []


def test_an_unknown_role_variable_names_the_closest_known_one():
    found = faults("db1", db1={"postgres_max_conections": 200, "redis_maxmemroy": "1mb", "unrelated_setting": 1})
    assert "Cannot configure db1: postgres_max_conections is no role's input and no secret; did you mean postgres_max_connections?" in found
    assert any("redis_maxmemroy" in fault and "redis_maxmemory?" in fault for fault in found)
    assert not any("unrelated_setting" in fault for fault in found)


def test_argument_spec_errors_name_the_variable_only_for_the_hosts_roles():
    found = faults("db1", db1={"common_firewall_enabled": "maybe", "redis_appendonly": "perhaps"})
    assert any("common_firewall_enabled" in fault and "role common's argument specification" in fault for fault in found)
    assert not any("redis_appendonly" in fault for fault in found)


def test_argument_spec_errors_never_show_a_no_log_value():
    # The roles' no_log options are strings, to which anything converts: a made-up int one shows the masking.
    errors = argument_errors({"token": {"type": "int", "no_log": True, "description": "x"}}, {"token": "topsecret"})
    assert errors and all("token" in error and "topsecret" not in error for error in errors), errors


@pytest.mark.parametrize(
    ("host", "changes", "expected"),
    [
        ("db3", {"groups": {**GROUPS, "postgres": ["db1", "db3"]}}, "group postgres holds db1, db3; it takes exactly one host"),
        ("db2", {"groups": {**GROUPS, "postgres": []}}, "it is in group postgres_replica, but group postgres holds no primary"),
        ("db1", {"groups": {**GROUPS, "postgres_replica": ["db1", "db2"]}}, "both groups postgres and postgres_replica"),
        ("db2", {"db2": {"postgres_primary_host": "db9"}}, "postgres_primary_host 'db9' is not the host of group postgres"),
        ("cache1", {"cache1": {"redis_replica_of": "db1"}}, "redis_replica_of 'db1' must name another host of group redis"),
        ("cache1", {"cache1": {"redis_replica_of": "cache1"}}, "redis_replica_of 'cache1' must name another host"),
        ("cache2", {"cache1": {"redis_replica_of": "cache2"}}, "redis_replica_of 'cache1' is itself a replica"),
        ("mongo1", {"groups": {**GROUPS, "mongodb": ["mongo1", "mongo2"]}}, "group mongodb holds 2 members (mongo1, mongo2)"),
        ("cache1", {"cache1": {"redis_acl_users": [{"name": "default", "password": "x", "rules": "~*"}]}}, "names the default user"),
        ("app1", {"app1": {"common_admin_users": [{"name": "amina"}]}}, "common_admin_users[0] needs at least one key"),
        ("app1", {"app1": {"ansible_user": "root"}}, "Ansible connects as root over SSH"),
        ("app1", {"app1": {"ansible_user": "ops", "common_ssh_allow_groups": []}},
         "Ansible connects as 'ops' over SSH, which is not in common_admin_users, and common_ssh_allow_groups is empty"),
        ("app1", {"app1": {"common_ssh_sources": []}}, "common_ssh_sources is empty or unset; outside development"),
        ("db1", {"db1": {"backup_s3_kms_key_id": "alias/backups"}}, "backup_s3_kms_key_id is set but backup_s3_sse is 'AES256'"),
        ("db1", {"db1": {"backup_s3_access_key_id": "AKIA"}}, "backup_s3_access_key_id and backup_s3_secret_access_key are set together"),
    ],
)
def test_topology_and_environment_faults(host, changes, expected):
    found = faults(host, **changes)
    assert any(expected in fault and fault.startswith(f"Cannot configure {host}: ") for fault in found), found


@pytest.mark.parametrize("app1", [
    {"ansible_user": "ops", "common_ssh_allow_groups": [], "common_admin_users": [{"name": "ops", "ssh_keys": ["ssh-ed25519 AAAA ops"]}]},
    {"ansible_user": "ops", "common_ssh_allow_groups": ["ops"]},
    {"ansible_user": "ops", "common_ssh_allow_groups": [], "ansible_connection": "community.docker.docker"},
])
def test_an_account_sshd_will_admit_is_no_fault(app1):
    assert not any("sshd would refuse" in fault for fault in faults("app1", app1=app1))


# The switch and the files it then needs, per role (PgBouncer on app hosts, nginx on edge hosts).
TLS_FILES = {"app1": ("pgbouncer_tls_self_signed", ["pgbouncer_tls_cert_file", "pgbouncer_tls_key_file", "pgbouncer_tls_ca_file"]),
             "edge1": ("edge_tls_self_signed", ["edge_tls_cert_file", "edge_tls_key_file", "edge_tls_ca_file"])}


@pytest.mark.parametrize(("host", "count"), [(host, count) for host in TLS_FILES for count in (1, 3)])
def test_certificate_files_are_required_unless_self_signed(host, count):
    """The role's preflight would stop the deploy on the host; the validation play stops it first,
    naming every file the inventory leaves out."""
    switch, names = TLS_FILES[host]
    blank = {name: "" for name in names[:count]}
    assert faults(host, **{host: blank}) == [
        f"Cannot configure {host}: {', '.join(names[:count])} {'is' if count == 1 else 'are'} empty or unset; "
        f"with {switch} false (its default outside development; env_name 'production') the role copies "
        "its certificate, key and CA from these files on the controller"]
    # Set in the inventory, the switch decides in any environment.
    assert faults(host, **{host: {**blank, switch: True}}) == []
    assert faults(host, env_name="development", **{host: blank}) == []
    found = faults(host, env_name="development", **{host: {**blank, switch: False}})
    assert len(found) == 1 and f"with {switch} false (env_name 'development')" in found[0], found


def test_ssh_sources_may_be_empty_in_development():
    assert faults("app1", env_name="development", app1={"common_ssh_sources": []}) == []


LOCAL_ONLY = {"backup_s3_bucket": "", "backup_offsite_opt_out_reason": " "}


@pytest.mark.parametrize("host", ["db1", "backup1"])
def test_backups_without_an_off_site_copy_or_a_reason_fail_outside_development_only(host):
    assert faults(host, **{host: LOCAL_ONLY}) == [
        f"Cannot configure {host}: none of backup_s3_bucket, backup_offsite_opt_out_reason is set; outside development "
        "(env_name 'production') one of them must give the bucket of the off-site copies, or one line saying why "
        "there is none"]
    assert faults(host, env_name="development", **{host: LOCAL_ONLY}) == []
    assert faults(host, **{host: {**LOCAL_ONLY, "backup_offsite_opt_out_reason": "the DR site's replica serves restores"}}) == []
    # The hosts without the backup role are not asked.
    assert faults("cache1", cache1=LOCAL_ONLY) == []


DRILL = {**GROUPS, "backup_drill": ["drill1"]}


@pytest.mark.parametrize("env_name", ["production", "development"])
def test_a_drill_host_without_the_bucket_it_restores_from_fails_in_every_environment(env_name):
    """A drill host (playbooks/databases.yml: group backup_drill, not postgres) has no backups of its own:
    it restores the primary's copies from S3, so an opt-out reason does not stand in for the bucket, and
    development's drill host needs one too."""
    drill1 = {"private_address": "10.20.6.21", **LOCAL_ONLY, "backup_offsite_opt_out_reason": "no bucket"}
    assert faults("drill1", env_name=env_name, groups=DRILL, drill1=drill1) == [
        "Cannot configure drill1: backup_s3_bucket is empty or unset; on a host of group backup_drill (and not of "
        "postgres) it must give the bucket the primary uploads its copies to, which the drills restore from "
        "(playbooks/databases.yml)"]
    assert faults("drill1", env_name=env_name, groups=DRILL,
                  drill1={**drill1, "backup_s3_bucket": "chajipoa-production-backups"}) == []
    # The primary drills its own copies: it is asked only what every backup host is.
    on_primary = {**GROUPS, "backup_drill": ["db1"]}
    primary_without_bucket = {"backup_s3_bucket": "", "backup_offsite_opt_out_reason": "replica"}
    assert faults("db1", env_name=env_name, groups=on_primary, db1=primary_without_bucket) == []


def test_a_plaintext_vault_fails_outside_development_only(tmp_path):
    (tmp_path / "group_vars/all").mkdir(parents=True)
    (tmp_path / "group_vars/all/vault.yml").write_text("vault_x: plain\n")
    (tmp_path / "host_vars/db1").mkdir(parents=True)
    (tmp_path / "host_vars/db1/vault.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\n3031\n")
    found = faults("app1", sources=[str(tmp_path)])
    assert found == [f"Cannot configure app1: {tmp_path}/group_vars/all/vault.yml is not encrypted (it does not start with "
                     "$ANSIBLE_VAULT) and env_name is 'production'; encrypt it with ansible-vault encrypt (docs/secrets.md)"]
    assert faults("app1", sources=[str(tmp_path)], env_name="development") == []


def test_a_value_not_known_before_facts_is_left_to_the_preflights():
    class Unrendered(dict):
        def __getitem__(self, name):
            if name == "postgres_shared_buffers":
                from ansible.errors import AnsibleUndefinedVariable
                raise AnsibleUndefinedVariable("'ansible_facts' is undefined")
            return super().__getitem__(name)

    hostvars, groups = inventory(db1={"postgres_shared_buffers": "{{ ansible_facts['memtotal_mb'] // 4 }}MB"})
    hostvars["db1"] = Unrendered(hostvars["db1"])
    assert inventory_faults("db1", hostvars, groups, RULES, ROLES_DIR) == []


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({**RULES, "formats": {"postgres_port": "portt"}}, "unknown format portt"),
        ({**RULES, "patterns": {**RULES["patterns"], "bad": {"pattern": "("}}}, "pattern bad needs the keys"),
        ({**RULES, "patterns": {**RULES["patterns"], "bad": {"pattern": "(", "means": "x"}}}, "pattern bad does not compile"),
        ("rules", "the rules must be a mapping"),
        ({**RULES, "required_outside_development": [{"any_of": ["x"]}]}, "each entry of required_outside_development needs any_of"),
        ({**RULES, "required_in_groups": [{"any_of": ["x"], "means": "y"}]}, "each entry of required_in_groups needs groups"),
    ],
)
def test_bad_rules_are_refused(rules, message):
    hostvars, groups = inventory()
    with pytest.raises(AnsibleFilterError, match=message):
        inventory_faults("db1", hostvars, groups, rules, ROLES_DIR)


def test_bad_input_is_refused():
    hostvars, groups = inventory()
    with pytest.raises(AnsibleFilterError, match="'db9' is not an inventory host"):
        inventory_faults("db9", hostvars, groups, RULES, ROLES_DIR)
    with pytest.raises(AnsibleFilterError, match="groups must be"):
        inventory_faults("db1", hostvars, ["db1"], RULES, ROLES_DIR)
    with pytest.raises(AnsibleFilterError, match="no role with meta/argument_specs.yml"):
        inventory_faults("db1", hostvars, groups, RULES, str(ROOT / "docs"))


def test_a_secret_is_judged_only_on_the_hosts_that_need_it():
    assert faults("app1", app1={"mongodb_keyfile": "not base64!"}) == []
    assert faults("mongo1", mongo1={"mongodb_keyfile": "not base64!"}) != []


def test_acl_rules_and_secrets_never_reach_a_message():
    found = faults("cache1", cache1={"redis_app_acl_rules": "~* >letmein", "redis_app_password": "hunter\n2"})
    assert any("redis_app_acl_rules (value hidden)" in fault for fault in found), found
    assert any(fault.startswith("Cannot configure cache1: redis_app_password holds a newline") for fault in found), found
    assert not any("letmein" in fault or "hunter" in fault for fault in found), found


MONITORING = {**GROUPS, "monitoring": ["mon1"]}
RECEIVERS = {"monitoring_email_to": ["oncall@chajipoa.co.tz"], "monitoring_smtp_smarthost": "smtp.chajipoa.co.tz:587",
             "monitoring_smtp_from": "alerts@chajipoa.co.tz", "monitoring_slack_webhook_url": "https://hooks.slack.com/services/T0/B0/Zq9hidden",
             "monitoring_sms_webhook_url": "https://sms.example.co.tz/send?key=Zq9hidden"}


def test_a_monitoring_host_with_every_receiver_has_no_faults():
    assert faults("mon1", groups=MONITORING, mon1={"private_address": "10.20.5.11", **RECEIVERS}) == []


@pytest.mark.parametrize(
    ("changes", "env_name", "expected"),
    [
        ({"monitoring_smtp_smarthost": ""}, "production", "monitoring_smtp_smarthost is empty but monitoring_email_to is set"),
        ({"monitoring_smtp_from": ""}, "development", "monitoring_smtp_from is empty but monitoring_email_to is set"),
        ({"monitoring_slack_webhook_url": "http://hooks.slack.com/services/T0/B0/Zq9hidden"}, "production",
         "monitoring_slack_webhook_url (secret) is not an https:// URL"),
        ({"monitoring_sms_webhook_url": "http://sms.example.co.tz/send?key=Zq9hidden"}, "staging",
         "monitoring_sms_webhook_url (secret) is not an https:// URL"),
        ({"monitoring_smtp_require_tls": False}, "production", "monitoring_smtp_require_tls is false"),
        ({"monitoring_email_to": ["oncall"]}, "production", "monitoring_email_to[0] 'oncall' is not an email address"),
        ({"monitoring_scrape_interval": "30"}, "production", "monitoring_scrape_interval '30' is not a Prometheus duration"),
        ({"monitoring_slack_webhook_url": "https://hooks.slack.com/a b"}, "production",
         "monitoring_slack_webhook_url (secret) is not an http(s) URL"),
        ({"monitoring_maintenance_alerts": "Probe\"Failed"}, "production", "monitoring_maintenance_alerts"),
        ({"monitoring_ui_sources": ["10.20.0.0/33"]}, "production", "monitoring_ui_sources[0]"),
    ],
)
def test_monitoring_receivers_and_settings_faults(changes, env_name, expected):
    found = faults("mon1", env_name=env_name, groups=MONITORING, mon1={"private_address": "10.20.5.11", **RECEIVERS, **changes})
    assert any(expected in fault and fault.startswith("Cannot configure mon1: ") for fault in found), found
    # A webhook URL holds its token: no message shows it.
    assert not [fault for fault in found if "Zq9hidden" in fault]


NO_RECEIVER = {"monitoring_email_to": [], "monitoring_slack_webhook_url": "", "monitoring_sms_webhook_url": ""}
MON1 = {"private_address": "10.20.5.11", **RECEIVERS}


def test_a_monitoring_host_without_a_receiver_fails_outside_development_only():
    [found] = faults("mon1", groups=MONITORING, mon1={**MON1, **NO_RECEIVER})
    assert found.startswith("Cannot configure mon1: none of monitoring_email_to, monitoring_slack_webhook_url is set; "
                            "outside development (env_name 'production') one of them must give a receiver for every alert")
    assert faults("mon1", env_name="development", groups=MONITORING, mon1={**MON1, **NO_RECEIVER}) == []
    # The other hosts run the monitoring role's exporters, but send no alerts.
    assert faults("app1", groups=MONITORING, mon1=MON1, app1=NO_RECEIVER) == []


@pytest.mark.parametrize("receiver", ["monitoring_email_to", "monitoring_slack_webhook_url"])
def test_email_or_slack_alone_is_enough(receiver):
    others = {name: empty for name, empty in NO_RECEIVER.items() if name != receiver}
    assert faults("mon1", groups=MONITORING, mon1={**MON1, **others}) == []


def test_an_sms_webhook_alone_is_refused_outside_development():
    """SMS pages for critical alerts only: with no email or Slack receiver, every warning reaches nobody."""
    sms_only = {**MON1, **NO_RECEIVER, "monitoring_sms_webhook_url": RECEIVERS["monitoring_sms_webhook_url"]}
    [found] = faults("mon1", groups=MONITORING, mon1=sms_only)
    assert found.startswith("Cannot configure mon1: none of monitoring_email_to, monitoring_slack_webhook_url is set")
    assert "warnings" in found and "Zq9hidden" not in found
    assert faults("mon1", env_name="development", groups=MONITORING, mon1=sms_only) == []


def test_clear_text_receivers_are_for_development_only():
    lab = {"monitoring_slack_webhook_url": "http://127.0.0.1:9099/slack", "monitoring_smtp_require_tls": False}
    assert faults("mon1", env_name="development", groups=MONITORING, mon1={"private_address": "10.20.5.11", **RECEIVERS, **lab}) == []


def test_an_example_vault_value_stops_production_but_not_development():
    refused = faults("app1", app1={"app_jwt_secret": "example-app-jwt-secret-0123456789"})
    assert refused == ["Cannot configure app1: app_jwt_secret (secret) holds the example vault's value and env_name is "
                       "'production'; write your own values into the vault and re-key it (docs/secrets.md)"]
    assert faults("app1", env_name="development", app1={"app_jwt_secret": "example-app-jwt-secret-0123456789"}) == []


@pytest.mark.parametrize(("host", "changes", "expected"), [
    ("db1", {"db1": {"backup_verify_timeout_minutes": 721}},
     "backup_verify_timeout_minutes (721) is more than monitoring_backup_run_max_minutes (720) of mon1; "
     "BackupVerificationRunTooLong"),
    ("backup1", {"mon1": {"monitoring_backup_run_max_minutes": 400}},
     "backup_verify_timeout_minutes (720) is more than monitoring_backup_run_max_minutes (400) of mon1; "
     "BackupVerificationRunTooLong"),
    ("db1", {"db1": {"backup_run_timeout_minutes": "900"}, "mon1": {"monitoring_backup_run_max_minutes": 800}},
     "backup_run_timeout_minutes (900) is more than monitoring_backup_run_max_minutes (800) of mon1; BackupRunTooLong"),
])
def test_a_backup_time_limit_beyond_the_monitorings_names_both(host, changes, expected):
    """The monitoring hosts render BackupRunTooLong from their own limit: a run the backup role's unit
    lets go on longer would page while it is still allowed to run."""
    mon1 = {"private_address": "10.20.5.11", **changes.pop("mon1", {})}
    found = faults(host, groups=MONITORING, mon1=mon1, **changes)
    assert [fault for fault in found if "monitoring_backup_run_max_minutes" in fault] == [
        f"Cannot configure {host}: {expected} would fire while a run may still be going on: "
        "raise the monitoring limit or lower the backup's"], found


def test_backup_time_limits_within_the_monitorings_are_no_fault():
    # The defaults agree, at the limit exactly; without a monitoring host there is no alert to agree with.
    assert faults("db1", groups=MONITORING, mon1={"private_address": "10.20.5.11"}) == []
    assert faults("db1", db1={"backup_verify_timeout_minutes": 9000}) == []
    assert faults("backup1", groups=MONITORING, mon1={"private_address": "10.20.5.11", "monitoring_backup_run_max_minutes": 60},
                  backup1={"backup_run_timeout_minutes": 60, "backup_verify_timeout_minutes": 60}) == []


# The AWS bucket's days as production's group_vars/all/aws.yml sets them, against the role's retention
# (daily 30, weekly 90, monthly 365).
BUCKET = {"aws_platform_backup_object_lock": True, "aws_platform_backup_object_lock_days": 30, "aws_platform_backup_expire_days": 365}


@pytest.mark.parametrize(("changes", "expected"), [
    ({"aws_platform_backup_expire_days": 90},
     "aws_platform_backup_expire_days (90) is less than the longest period of backup_retention_s3 (365 days)"),
    # The retention changed, the bucket not.
    ({"backup_retention_s3": {"daily_days": 30, "weekly_days": 90, "monthly_days": 730, "pre_deploy_keep": 5}},
     "aws_platform_backup_expire_days (365) is less than the longest period of backup_retention_s3 (730 days)"),
    ({"aws_platform_backup_object_lock_days": 14},
     "aws_platform_backup_object_lock_days (14) is less than the shortest period of backup_retention_s3 (30 days)"),
    ({"backup_retention_s3": {"daily_days": 45, "weekly_days": 0, "monthly_days": 365, "pre_deploy_keep": 5}},
     "aws_platform_backup_object_lock_days (30) is less than the shortest period of backup_retention_s3 (45 days)"),
    ({"aws_platform_backup_object_lock_days": 60, "backup_s3_object_lock": False},
     "aws_platform_backup_object_lock_days (60) is more than the shortest period of backup_retention_s3 (30 days) "
     "and backup_s3_object_lock is false"),
    # A partial retention: the role completes it from the S3 tier's defaults (monthly 365), and so must the check.
    ({"backup_retention_s3": {"daily_days": 30}, "aws_platform_backup_expire_days": 90},
     "aws_platform_backup_expire_days (90) is less than the longest period of backup_retention_s3 (365 days)"),
    ({"backup_retention_s3": {"monthly_days": 300}, "aws_platform_backup_object_lock_days": 14},
     "aws_platform_backup_object_lock_days (14) is less than the shortest period of backup_retention_s3 (30 days)"),
])
def test_backup_bucket_days_that_do_not_fit_the_retention_name_both(changes, expected):
    found = faults("backup1", backup1={**BUCKET, **changes})
    (fault,) = [fault for fault in found if "aws_platform_backup" in fault]
    assert fault.startswith(f"Cannot configure backup1: {expected}") and "backup_retention_s3" in fault, found


@pytest.mark.parametrize("changes", [
    {},
    # A longer lock where the program never deletes in S3 (the lifecycle rule expires copies).
    {"aws_platform_backup_object_lock_days": 60},
    {"aws_platform_backup_expire_days": 400},
    # Without Object Lock the program prunes and no rule expires copies: the days mean nothing.
    {"aws_platform_backup_object_lock": False, "aws_platform_backup_expire_days": 1},
])
def test_backup_bucket_days_that_fit_the_retention_are_no_fault(changes):
    assert faults("backup1", backup1={**BUCKET, **changes}) == []


def test_backup_bucket_days_are_judged_only_on_backup_hosts_and_only_where_named():
    assert faults("app1", app1={**BUCKET, "aws_platform_backup_expire_days": 90}) == []
    assert faults("backup1", backup1={"backup_retention_s3": {"daily_days": 30, "weekly_days": 90, "monthly_days": 730,
                                                              "pre_deploy_keep": 5}}) == []


# -- addresses two hosts share: one check of the whole inventory (shared_addresses) -----------------
def test_a_shared_private_address_names_both_hosts():
    hostvars, groups = inventory(app1={"private_address": "10.20.2.11"})
    assert sorted(shared_addresses(groups["all"], hostvars)) == [
        "Cannot configure app1: private_address '10.20.2.11' is also db1's; each host needs its own",
        "Cannot configure db1: private_address '10.20.2.11' is also app1's; each host needs its own",
    ]


def test_the_sound_inventory_shares_no_address_and_hosts_without_one_are_left_out():
    hostvars, groups = inventory()
    assert shared_addresses(groups["all"], hostvars) == []
    hostvars, groups = inventory(app1={"private_address": None}, cache1={"private_address": None})
    assert shared_addresses(groups["all"], hostvars) == []


def test_the_per_host_check_no_longer_reads_other_hosts():
    # Reading every other host's address from every host made validation grow with hosts squared.
    hostvars, groups = inventory(app1={"private_address": "10.20.2.11"})
    read = []

    class Watched(dict):
        def __getitem__(self, host):
            read.append(host)
            return super().__getitem__(host)

    inventory_faults("app1", Watched(hostvars), groups, RULES, ROLES_DIR, [])
    assert set(read) <= {"app1"} | set(groups.get("postgres", [])) | set(groups.get("redis", [])), read


@pytest.mark.parametrize(("hosts", "message"), [
    ("db1", "must be a list of host names"),
    (["db1", 7], "must be a list of host names"),
    (["db1", "db9"], "not inventory hosts: db9"),
])
def test_shared_addresses_refuses_what_is_not_a_list_of_inventory_hosts(hosts, message):
    hostvars, _groups = inventory()
    with pytest.raises(AnsibleFilterError, match=message):
        shared_addresses(hosts, hostvars)


@pytest.mark.parametrize("name", ["app_jwt_secret", "app_jwt_refresh_secret"])
def test_a_signing_secret_needs_the_32_characters_the_api_requires(name):
    assert faults("app1", app1={name: "s" * 32}) == []
    assert faults("app1", app1={name: "s" * 31}) == [
        f"Cannot configure app1: {name} (secret) is not a signing secret of at least 32 characters"]


@pytest.mark.parametrize("value", ["ops@chajipoa.co.tz", "ops@chajipoa.co.tz, dev@chajipoa.co.tz"])
def test_a_receiver_list_given_as_a_string_is_refused(value):
    found = faults("mon1", groups=MONITORING, mon1={**MON1, "monitoring_email_to": value})
    assert any(fault.startswith("Cannot configure mon1: monitoring_email_to ") and "is a string, not a list" in fault for fault in found), found


@pytest.mark.parametrize("value", [" padded-secret-0123456789", "padded-secret-0123456789 ", "padded-secret-0123456789\t",
                                   "padded-secret-0123456789\n"])
@pytest.mark.parametrize(("host", "name"), [("db1", "backup_manifest_key"), ("backup1", "backup_manifest_key"),
                                            ("app1", "app_jwt_secret"), ("cache1", "redis_app_password")])
def test_a_secret_with_surrounding_whitespace_is_named(host, name, value):
    """The backup program and env-file readers strip what the roles pass on whole: the two sides disagree."""
    value = value.replace("padded-secret", "padded-secret" + "0" * 16)
    found = faults(host, **{host: {name: value}})
    assert f"Cannot configure {host}: {name} (secret) begins or ends with whitespace" in "\n".join(found), found
    assert not [fault for fault in found if "padded-secret" in fault]


def test_the_mongodb_keyfile_may_end_with_a_line_break():
    # mongod strips whitespace from its key file, and openssl rand -base64 ends its output with one.
    assert faults("mongo1", mongo1={"mongodb_keyfile": "c2VjcmV0LWtleWZpbGUtY29udGVudHM=\n"}) == []


@pytest.mark.parametrize(("variable", "entry", "expected"), [
    # Written into the exporter's DSN (key=value words): a space would add settings of its own.
    ("monitoring_managed_postgres", {"name": "rds", "address": "rds.example.com sslmode=disable", "port": 5432},
     "monitoring_managed_postgres[0].address 'rds.example.com sslmode=disable' is not a host name or address"),
    ("monitoring_managed_redis", {"name": "cache", "address": "redis://x@cache", "port": 6379},
     "monitoring_managed_redis[0].address 'redis://x@cache' is not a host name or address"),
    ("monitoring_managed_mongodb", {"name": "docdb", "address": "docdb.example.com/?tls=false", "port": 27017},
     "monitoring_managed_mongodb[0].address 'docdb.example.com/?tls=false' is not a host name or address"),
    ("monitoring_managed_postgres", {"name": "rds", "address": "rds.example.com", "port": 0},
     "monitoring_managed_postgres[0].port 0 is out of range for a port"),
    ("monitoring_managed_postgres", {"name": "RDS Primary", "address": "rds.example.com", "port": 5432},
     "monitoring_managed_postgres[0].name 'RDS Primary' is not a host name label"),
])
def test_a_managed_server_is_an_address_a_port_and_a_name(variable, entry, expected):
    found = faults("mon1", groups=MONITORING, mon1={**MON1, variable: [entry]})
    assert any(fault.startswith(f"Cannot configure mon1: {expected}") for fault in found), found


def test_the_managed_servers_production_names_pass():
    managed = {"monitoring_managed_postgres": [{"name": "rds-primary", "address": "chajipoa.c9x.af-south-1.rds.amazonaws.com", "port": 5432},
                                               {"name": "rds-replica-1", "address": "10.20.11.40", "port": "5432"}],
               "monitoring_managed_mongodb": [{"name": "documentdb", "address": "docdb.af-south-1.docdb.amazonaws.com", "port": 27017}]}
    assert faults("mon1", groups=MONITORING, mon1={**MON1, **managed}) == []


@pytest.mark.parametrize(("host", "name"), [("edge1", "edge_tls_key_file"), ("app1", "pgbouncer_tls_ca_file"),
                                            ("backup1", "backup_postgres_ca_file"), ("app1", "app_redis_ca_file")])
def test_a_file_copied_from_the_controller_must_be_there(host, name, tmp_path):
    absent = str(tmp_path / "files" / "absent.pem")
    found = faults(host, **{host: {name: absent}})
    assert f"Cannot configure {host}: {name} names {absent!r}, which is not a file on the controller" in "\n".join(found), found
    # Named on a host whose roles do not take it, it is not the gate's to judge.
    assert not [fault for fault in faults("cache1", cache1={name: absent}) if "not a file on the controller" in fault]


@pytest.mark.parametrize("name", ["monitoring_probe_ca_file", "monitoring_tls_ca_file"])
def test_the_monitoring_cas_copied_from_the_controller_must_be_there(name, tmp_path):
    """The probes' CA and the data tier's: the monitoring role copies each from the controller."""
    absent = str(tmp_path / "files" / "absent.pem")
    found = faults("mon1", groups=MONITORING, mon1={**MON1, name: absent})
    assert f"Cannot configure mon1: {name} names {absent!r}, which is not a file on the controller" in "\n".join(found), found
    present = tmp_path / "files" / "ca.pem"
    present.parent.mkdir()
    present.write_text("-----BEGIN CERTIFICATE-----\n")
    assert faults("mon1", groups=MONITORING, mon1={**MON1, name: str(present)}) == []
