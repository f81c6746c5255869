"""Static checks of roles/postgres beyond those every role gets (test_role_argument_specs.py):
exactly its catalogued secrets go without a default, no default pg_hba entry trusts, pg_hba entries
that could inject a line or weaken authentication are refused (by the preflight's own conditions)
and never rendered, and the standby's copy decision, fed what a data directory can hold, copies
only over an empty directory or the package's fresh cluster. molecule/postgres runs it for real."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleError
from ansible.template import Templar, trust_as_template

from tests.conftest import ROOT, load_yaml, role_options
from tests.unit.roles import rendering

DEFAULTS = load_yaml(ROOT / "roles" / "postgres" / "defaults" / "main.yml")
CATALOGUE = load_yaml(ROOT / "roles" / "validate_inventory" / "vars" / "main.yml")["_validate_inventory_secrets"]
PREFLIGHT = load_yaml(ROOT / "roles" / "postgres" / "tasks" / "preflight.yml")
STANDBY_COPY = load_yaml(ROOT / "roles" / "postgres" / "tasks" / "standby_copy.yml")
HOSTS = ["db1", "db2"]


def render(template: str, host: str = "db1", **overrides):
    variables = {
        **rendering.role_variables("postgres"),
        "inventory_hostname": host,
        "groups": {"all": HOSTS, "postgres": ["db1"], "postgres_replica": ["db2"]},
        "hostvars": {"db1": {"private_address": "10.20.1.11"}, "db2": {"private_address": "10.20.1.12"}},
        "private_address": {"db1": "10.20.1.11", "db2": "10.20.1.12"}[host],
        "ansible_facts": {"default_ipv4": {"address": "192.0.2.1"}, "memtotal_mb": 4096, "processor_vcpus": 2},
        **{name: f"{name}-value" for name in ("postgres_app_password", "postgres_replication_password",
                                              "postgres_monitoring_password")},
        **overrides,
    }
    return rendering.render("postgres", template, variables)


def test_only_the_secrets_are_specified_without_default():
    role_secrets = {secret["name"] for secret in CATALOGUE if secret["name"].startswith("postgres_")}
    assert set(role_options("postgres")) - set(DEFAULTS) == role_secrets


@pytest.mark.parametrize("name", ["postgres_hba", "postgres_hba_default"])
def test_no_trust_in_default_hba(name):
    assert all(entry["method"] != "trust" for entry in DEFAULTS[name])


# --- pg_hba.conf -------------------------------------------------------------------------------

def hba_lines(**overrides) -> list[str]:
    text = render("etc/postgresql/cluster/pg_hba.conf.j2", **overrides)
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_default_hba_renders_the_roles_lines():
    assert hba_lines() == [
        "local       all             postgres                                peer",
        "local       all             all                                     peer",
        "host        all             all             127.0.0.1/32            scram-sha-256",
        "host        all             all             ::1/128                 scram-sha-256",
        "hostssl     replication     replicator      10.20.1.11/32           scram-sha-256",
        "hostssl     replication     replicator      10.20.1.12/32           scram-sha-256",
        "hostssl     all             all             10.20.1.11/32           scram-sha-256",
        "hostssl     all             all             10.20.1.12/32           scram-sha-256",
    ]


def test_a_line_break_in_a_comment_never_becomes_a_line():
    entry = {"type": "hostssl", "database": "reporting", "user": "analyst", "address": "10.20.7.0/24",
             "method": "scram-sha-256", "comment": "BI tools\nhost all all 0.0.0.0/0 trust\r\x0bend"}
    lines = hba_lines(postgres_hba=[entry])
    assert lines[-1] == "hostssl     reporting       analyst         10.20.7.0/24            scram-sha-256"
    assert len(lines) == len(hba_lines()) + 1
    text = render("etc/postgresql/cluster/pg_hba.conf.j2", postgres_hba=[entry])
    assert "# BI tools host all all 0.0.0.0/0 trust end\n" in text


@pytest.mark.parametrize("field", ["database", "user", "method", "options", "address"])
def test_a_line_break_in_a_field_is_not_rendered(field):
    entry = {"type": "hostssl", "database": "reporting", "user": "analyst", "address": ["10.20.7.0/24"],
             "method": "scram-sha-256", "options": "clientcert=verify-full"}
    entry[field] = "x\nhost all all 0.0.0.0/0 trust"
    with pytest.raises(AnsibleError, match="Cannot render pg_hba.conf: .* holds a line break or control character"):
        render("etc/postgresql/cluster/pg_hba.conf.j2", postgres_hba=[entry])


def preflight_task():
    return next(task for task in PREFLIGHT if "chajipoa.platform.preflight" in task)


def hba_check():
    checks = preflight_task()["chajipoa.platform.preflight"]["checks"]
    return next(check for check in checks if check["name"] == "Check the client authentication entries")


def hba_refused(entry: dict) -> bool:
    """Whether the preflight's own conditions refuse `entry`, evaluated as chajipoa.platform.preflight does."""
    task = hba_check()
    fields = render(task["vars"]["__postgres_hba_fields"], item=entry)
    variables = {**rendering.role_variables("postgres"), "item": entry, "__postgres_hba_fields": fields}
    templar = Templar(loader=rendering.LOADER, variables=variables)
    return not all(templar.evaluate_conditional(trust_as_template(condition))
                   for condition in task["that"])


def test_the_preflight_check_runs_whenever_pg_hba_is_rendered():
    assert "postgres_configure" in preflight_task()["tags"]


def test_default_entries_pass_the_preflight():
    entries = render("{{ _postgres_hba }}")
    assert entries and not any(hba_refused(entry) for entry in entries)


LOCAL = {"type": "local", "database": "all", "user": "all", "method": "peer"}
NETWORK = {"type": "hostssl", "database": "reporting", "user": "analyst", "address": ["10.20.7.0/24"],
           "method": "scram-sha-256", "options": "clientcert=verify-full", "comment": "BI tools"}


@pytest.mark.parametrize(
    "entry",
    [LOCAL, {**LOCAL, "method": "scram-sha-256"}, {**LOCAL, "method": "reject"}, NETWORK,
     {**NETWORK, "method": "cert"}, {**NETWORK, "address": "10.20.7.5"}],
    ids=["local-peer", "local-scram", "local-reject", "network-scram", "network-cert", "single-address"],
)
def test_the_preflight_accepts(entry):
    assert not hba_refused(entry)


@pytest.mark.parametrize(
    "entry",
    [
        {**LOCAL, "method": "trust"},
        {**LOCAL, "method": "password"},
        {**LOCAL, "method": "md5"},
        {**NETWORK, "method": "trust"},
        {**NETWORK, "method": "password"},
        {**NETWORK, "method": "peer"},
        {**NETWORK, "comment": "BI\nhost all all 0.0.0.0/0 trust"},
        {**NETWORK, "options": "clientcert=verify-full\nhost all all 0.0.0.0/0 trust"},
        {**NETWORK, "user": "analyst\nhost all all 0.0.0.0/0 trust"},
        {**NETWORK, "database": "all all 0.0.0.0/0 trust #"},
        {**NETWORK, "address": ["10.20.7.0/24", "10.0.0.0/8 trust"]},
        {**LOCAL, "user": "all trust"},
        {**NETWORK, "type": "hostgssenc"},
        {key: value for key, value in NETWORK.items() if key != "address"},
        {key: value for key, value in NETWORK.items() if key != "method"},
    ],
    ids=["local-trust", "local-password", "local-md5", "network-trust", "network-password", "network-peer",
         "newline-comment", "newline-options", "newline-user", "space-database", "space-address", "space-local-user",
         "unknown-type", "no-address", "no-method"],
)
def test_the_preflight_refuses(entry):
    assert hba_refused(entry)


# --- PgBouncer's auth login (postgres_pgbouncer_auth_enabled) --------------------------------

PGBOUNCER = {"postgres_pgbouncer_auth_enabled": True,
             "groups": {"all": [*HOSTS, "app1", "app2"], "postgres": ["db1"], "postgres_replica": ["db2"],
                        "app": ["app1", "app2"]},
             "hostvars": {"db1": {"private_address": "10.20.1.11"}, "db2": {"private_address": "10.20.1.12"},
                          "app1": {"private_address": "10.20.2.21"}, "app2": {"private_address": "10.20.2.22"}}}


def test_the_auth_login_comes_in_by_certificate_before_any_password_line():
    lines = hba_lines(**PGBOUNCER)
    assert lines[:2] == [
        "hostssl     chajipoa        pgbouncer_auth  10.20.2.21/32           cert map=pgbouncer",
        "hostssl     chajipoa        pgbouncer_auth  10.20.2.22/32           cert map=pgbouncer",
    ]
    assert lines[2:] == hba_lines(groups=PGBOUNCER["groups"], hostvars=PGBOUNCER["hostvars"])


def ident_lines(**overrides) -> list[str]:
    text = render("etc/postgresql/cluster/pg_ident.conf.j2", **overrides)
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_each_pgbouncer_hosts_certificate_maps_to_the_auth_login():
    assert ident_lines(**PGBOUNCER) == [
        "pgbouncer       app1                            pgbouncer_auth",
        "pgbouncer       app2                            pgbouncer_auth",
    ]


def test_nothing_is_admitted_or_mapped_while_disabled():
    assert ident_lines(groups=PGBOUNCER["groups"], hostvars=PGBOUNCER["hostvars"]) == []
    assert not [line for line in hba_lines(groups=PGBOUNCER["groups"], hostvars=PGBOUNCER["hostvars"])
                if "pgbouncer_auth" in line]
    users = render("{{ _postgres_users | map(attribute='name') | list }}")
    assert "pgbouncer_auth" not in users


@pytest.mark.parametrize("host", ["/^.*$", "app 1", 'app"1'])
def test_a_host_name_that_is_no_plain_name_is_not_mapped(host):
    groups = {**PGBOUNCER["groups"], "app": [host]}
    hostvars = {**PGBOUNCER["hostvars"], host: {"private_address": "10.20.2.23"}}
    with pytest.raises(AnsibleError, match="Cannot render pg_ident.conf"):
        render("etc/postgresql/cluster/pg_ident.conf.j2", **{**PGBOUNCER, "groups": groups, "hostvars": hostvars})


def test_the_auth_function_is_a_definer_with_a_safe_path_run_by_the_auth_login_only():
    statements = render("{{ _postgres_pgbouncer_auth_sql }}", **PGBOUNCER)
    function = next(sql for sql in statements if sql.startswith("CREATE OR REPLACE FUNCTION"))
    assert "SECURITY DEFINER" in function and "SET search_path = pg_catalog, pg_temp" in function
    assert "pg_catalog.pg_shadow WHERE usename = p_usename AND NOT usesuper" in function
    assert 'REVOKE ALL ON FUNCTION "pgbouncer".get_auth(text) FROM PUBLIC' in statements
    assert statements[-1] == 'GRANT EXECUTE ON FUNCTION "pgbouncer".get_auth(text) TO "pgbouncer_auth"'
    assert render("{{ _postgres_pgbouncer_auth_comment }}", **PGBOUNCER).endswith(
        "IS '" + render("{{ _postgres_pgbouncer_auth_version }}", **PGBOUNCER) + "'")


# --- The standby's copy decision -------------------------------------------------------------

PRIMARY = {"system_identifier": "7314462346822676431", "catalog_version": "202209061"}
FRESH_CONTROL = {
    "pg_control version number": "1300",
    "Catalog version number": "202209061",
    "Database system identifier": "7714462346822676999",
    "Database cluster state": "shut down",
    "pg_control last modified": "Tue Dec  1 22:13:54 2026",
    "Latest checkpoint's TimeLineID": "1",
    "Latest checkpoint's NextXID": "0:724",
    "Latest checkpoint's NextOID": "13572",
}
# What the find task leaves of a fresh initdb (its excludes drop names that are numbers below 16000).
FRESH_FILES = [
    "PG_VERSION", "base", "base/1/PG_VERSION", "base/1/pg_filenode.map", "base/4/PG_VERSION",
    "base/4/pg_filenode.map", "base/5/PG_VERSION", "base/5/pg_filenode.map", "base/5/pg_internal.init",
    "global", "global/pg_control", "global/pg_filenode.map", "pg_stat", "pg_tblspc", "pg_wal",
    "pg_wal/000000010000000000000001", "pg_wal/archive_status", "postmaster.opts",
]
DATA_DIR = "/var/lib/postgresql/15/main"


def doubts(control: dict | None, files: list[str], stderr: str = "") -> list[str]:
    controldata = ({"rc": 0, "stdout_lines": [f"{key}: {value}" for key, value in control.items()], "stderr": ""}
                   if control is not None else {"rc": 1, "stdout_lines": [], "stderr": stderr})
    return render(
        "{{ _postgres_copy_doubts }}",
        host="db2",
        __postgres_local_controldata=controldata,
        __postgres_local_files={"files": [{"path": f"{DATA_DIR}/{name}"} for name in files]},
        __postgres_primary_control={"query_result": [PRIMARY]},
    )


def test_the_find_excludes_only_initdbs_numbered_files():
    import re

    find = next(task for task in STANDBY_COPY if task["name"] == "Files of the local cluster")
    (exclude,) = find["ansible.builtin.find"]["excludes"]
    for name in ("1", "4", "5", "1259", "1259_fsm", "1259_vm", "2619.1", "13410", "15999", "0000"):
        assert re.match(exclude, name), name
    for name in ("16384", "16390_fsm", "24576.2", "t3_16400", "PG_VERSION", "pg_filenode.map", "backup_label",
                 "000000010000000000000001"):
        assert not re.match(exclude, name), name


@pytest.mark.parametrize(
    ("control", "files"),
    [
        (None, []),
        (FRESH_CONTROL, FRESH_FILES),
        ({**FRESH_CONTROL, "Database cluster state": "in production"}, FRESH_FILES + ["postmaster.pid"]),
        ({**FRESH_CONTROL, "Latest checkpoint's NextOID": "16383"}, FRESH_FILES + ["base/pgsql_tmp"]),
    ],
    ids=["absent-or-empty", "fresh-stopped", "fresh-running-or-crashed", "fresh-with-temporary-files-directory"],
)
def test_copies_over_nothing_or_the_packages_fresh_cluster(control, files):
    assert doubts(control, files) == []


@pytest.mark.parametrize(
    ("control", "files", "expected"),
    [
        pytest.param(
            None, FRESH_FILES, ['its control data cannot be read (pg_controldata: error: could not open file "global/pg_control")'],
            id="unreadable-control-file"),
        pytest.param(
            {**FRESH_CONTROL, "Database system identifier": PRIMARY["system_identifier"], "Latest checkpoint's TimeLineID": "2",
             "Latest checkpoint's NextOID": "24576"},
            FRESH_FILES + ["base/16384", "base/16384/PG_VERSION", "base/16385"],
            ["it is a copy of the primary (system identifier 7314462346822676431) not marked as a standby",
             "it was promoted (timeline 2)", "objects were created in it after initdb (next OID 24576)",
             "databases not made by initdb: base/16384, base/16385"],
            id="promoted-standby-with-data"),
        pytest.param(
            {**FRESH_CONTROL, "Latest checkpoint's NextOID": "16390"}, FRESH_FILES + ["base/16389"],
            ["objects were created in it after initdb (next OID 16390)", "databases not made by initdb: base/16389"],
            id="other-cluster-with-a-database"),
        pytest.param(
            {**FRESH_CONTROL, "Database cluster state": "in production"}, FRESH_FILES + ["base/16384"],
            ["databases not made by initdb: base/16384"],
            id="crashed-before-a-checkpoint-with-a-database"),
        pytest.param(
            FRESH_CONTROL, FRESH_FILES + ["base/5/16390", "base/5/t4_16393"],
            ["relations not made by initdb: base/5/16390, base/5/t4_16393"],
            id="table-in-the-postgres-database"),
        pytest.param(
            {**FRESH_CONTROL, "Database system identifier": PRIMARY["system_identifier"],
             "Database cluster state": "shut down in recovery", "Latest checkpoint's NextOID": "24576"},
            FRESH_FILES,
            ["it is a copy of the primary", "its state is 'shut down in recovery'", "next OID 24576"],
            id="standby-that-lost-standby-signal"),
        pytest.param(
            {**FRESH_CONTROL, "Latest checkpoint's NextOID": "16400"}, FRESH_FILES,
            ["objects were created in it after initdb (next OID 16400)"],
            id="roles-only"),
        pytest.param(
            FRESH_CONTROL, FRESH_FILES + ["pg_tblspc/16400"], ["tablespaces: pg_tblspc/16400"], id="tablespace"),
        pytest.param(
            FRESH_CONTROL, FRESH_FILES + ["backup_label"], ["an unfinished base backup or recovery: backup_label"],
            id="backup-label"),
        pytest.param(
            {**FRESH_CONTROL, "Catalog version number": "202107181"}, FRESH_FILES,
            ["it is of another PostgreSQL version (catalogue version 202107181, the primary has 202209061)"],
            id="other-version"),
        pytest.param(
            {key: value for key, value in FRESH_CONTROL.items() if "NextOID" not in key}, FRESH_FILES,
            ["objects were created in it after initdb (next OID ?)"],
            id="unparsed-control-data"),
        pytest.param(
            {**FRESH_CONTROL, "Latest checkpoint's NextOID": "24576"},
            FRESH_FILES + [f"base/{16384 + i}" for i in range(8)],
            ["databases not made by initdb: base/16384, base/16385, base/16386, base/16387, base/16388 and 3 more"],
            id="many-databases"),
    ],
)
def test_refuses_on_any_doubt(control, files, expected):
    found = doubts(control, files, stderr='pg_controldata: error: could not open file "global/pg_control"')
    for text in expected:
        assert any(text in doubt for doubt in found), (text, found)


@pytest.mark.parametrize(("roles", "untracked", "users", "pending"), [
    # A login the server has without the setting gets it; one that has it is left alone.
    (["postgres", "chajipoa_backup"], [], [], ["chajipoa_backup"]),
    (["postgres", "chajipoa_backup"], ["chajipoa_backup"], [], []),
    # Not there yet (the backup role makes it later in the first run): nothing to alter this run.
    (["postgres"], [], [], []),
    # Made by this run's Logins task, which comes before; dropped by it, nothing to alter.
    (["postgres"], [], [{"name": "chajipoa_backup", "password": "p"}], ["chajipoa_backup"]),
    (["postgres", "chajipoa_backup"], [], [{"name": "chajipoa_backup", "state": "absent"}], []),
])
def test_the_untracked_logins_pending_come_from_the_shared_probe(roles, untracked, users, pending):
    probe = {"query_result": [{"state": {"roles": dict.fromkeys(roles, {}), "untracked": untracked}}]}
    assert render("{{ _postgres_untracked_pending }}", __postgres_probe_shared=probe, postgres_users=users) == pending
