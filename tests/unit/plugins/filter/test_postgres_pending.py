"""Unit tests of the postgres_pending filters on probe answers shaped as the postgres role's probes return them."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.chajipoa.platform.plugins.filter.postgres_pending import FilterModule
from ansible_collections.chajipoa.platform.plugins.filter.scram_verifier import scram_verifier

FILTERS = FilterModule().filters()
roles_pending = FILTERS["postgres_roles_pending"]
databases_pending = FILTERS["postgres_databases_pending"]
extensions_pending = FILTERS["postgres_extensions_pending"]


def server_role(name, password=None, **flags):
    attributes = dict(superuser=False, createrole=False, createdb=False, inherit=True, login=True, replication=False, bypassrls=False)
    attributes.update(flags)
    return {"password": scram_verifier(password, name) if password else None, **attributes}


ROLES = {
    "chajipoa": server_role("chajipoa", "app-secret"),
    "replicator": server_role("replicator", "repl-secret", replication=True),
    "pgbouncer_auth": server_role("pgbouncer_auth"),
    "postgres": server_role("postgres", superuser=True, createrole=True, createdb=True, replication=True, bypassrls=True),
}


def test_logins_as_the_server_has_them_need_nothing():
    users = [{"name": "chajipoa", "password": "app-secret"},
             {"name": "replicator", "password": "repl-secret", "role_attr_flags": "LOGIN,REPLICATION"},
             {"name": "pgbouncer_auth"}]
    assert roles_pending(users, ROLES) == []


def test_a_new_password_is_pending():
    users = [{"name": "chajipoa", "password": "rotated"}]
    assert roles_pending(users, ROLES) == users


def test_a_verifier_given_as_the_password_is_compared_as_it_is():
    assert roles_pending([{"name": "chajipoa", "password": ROLES["chajipoa"]["password"]}], ROLES) == []


def test_a_missing_login_is_pending():
    assert roles_pending([{"name": "reporting", "password": "x"}], ROLES) == [{"name": "reporting", "password": "x"}]


@pytest.mark.parametrize(("flags", "pending"), [
    ("LOGIN,REPLICATION", False), ("login, replication", False), ("LOGIN", False), ("NOLOGIN", True),
    ("LOGIN,NOREPLICATION", True), ("CREATEDB", True), ("NOSUPERUSER", False), ("LOGIN,BYPASSRLS", True)])
def test_only_the_listed_attributes_are_compared(flags, pending):
    users = [{"name": "replicator", "password": "repl-secret", "role_attr_flags": flags}]
    assert roles_pending(users, ROLES) == (users if pending else [])


def test_without_flags_a_login_must_be_able_to_log_in():
    assert roles_pending([{"name": "nologin"}], {"nologin": server_role("nologin", login=False)}) == [{"name": "nologin"}]


@pytest.mark.parametrize(("name", "pending"), [("chajipoa", True), ("gone", False)])
def test_an_absent_login_is_pending_while_the_server_has_it(name, pending):
    users = [{"name": name, "state": "absent"}]
    assert roles_pending(users, ROLES) == (users if pending else [])


def test_an_unknown_attribute_is_refused():
    with pytest.raises(AnsibleFilterError, match="unknown role attribute 'SUPERPOWERS'"):
        roles_pending([{"name": "chajipoa", "role_attr_flags": "SUPERPOWERS"}], ROLES)


DATABASES = {"chajipoa": {"owner": "chajipoa", "encoding": "UTF8", "collate": "C.UTF-8", "ctype": "C.UTF-8"},
             "postgres": {"owner": "postgres", "encoding": "UTF8", "collate": "C.UTF-8", "ctype": "C.UTF-8"}}


def test_databases_as_the_server_has_them_need_nothing():
    assert databases_pending([{"name": "chajipoa", "owner": "chajipoa"}, {"name": "postgres"}], DATABASES) == []


@pytest.mark.parametrize("database", [
    {"name": "reports", "owner": "chajipoa"},
    {"name": "chajipoa", "owner": "someone_else"},
    {"name": "chajipoa", "owner": "chajipoa", "encoding": "LATIN1"},
    {"name": "chajipoa", "owner": "chajipoa", "lc_collate": "sw_TZ.UTF-8"},
    {"name": "chajipoa", "owner": "chajipoa", "lc_ctype": "en_US.UTF-8"},
    {"name": "postgres", "state": "absent"},
])
def test_a_missing_or_different_database_is_pending(database):
    assert databases_pending([database], DATABASES) == [database]


def test_an_absent_database_the_server_lacks_needs_nothing():
    assert databases_pending([{"name": "old", "state": "absent"}], DATABASES) == []


OBJECTS = {"chajipoa": {"extensions": ["plpgsql", "pg_stat_statements"], "lag_view": "", "pgbouncer_auth": "abc"},
           "postgres": {"extensions": ["plpgsql"], "lag_view": "def", "pgbouncer_auth": ""}}


def test_installed_extensions_need_nothing():
    assert extensions_pending([{"name": "pg_stat_statements", "db": "chajipoa"}], OBJECTS) == []


@pytest.mark.parametrize("extension", [
    {"name": "pg_stat_statements", "db": "postgres"},
    {"name": "pgcrypto", "db": "chajipoa"},
    {"name": "pg_stat_statements", "db": "not_read_yet"},
    {"name": "pg_stat_statements", "db": "chajipoa", "state": "absent"},
])
def test_a_missing_or_unwanted_extension_is_pending(extension):
    assert extensions_pending([extension], OBJECTS) == [extension]


@pytest.mark.parametrize(("name", "entries", "state"), [
    ("postgres_roles_pending", "chajipoa", ROLES), ("postgres_databases_pending", [{"name": "x"}], None),
    ("postgres_extensions_pending", [["pgcrypto"]], OBJECTS)])
def test_inputs_of_the_wrong_shape_are_refused(name, entries, state):
    with pytest.raises(AnsibleFilterError, match=name):
        FILTERS[name](entries, state)
