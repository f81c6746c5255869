"""Unit tests of backup_restore's pure parts; the restore itself runs against a real server in
molecule/backup (restore as the application's login, owners, reads and writes, signatures)."""
from __future__ import annotations

import pytest

from ansible_collections.chajipoa.platform.plugins.modules import backup_restore

# pg_restore --list output as PostgreSQL 15 writes it: an extension's owner field is empty, so its
# line ends in a space.
LISTING = "\n".join([
    ';',
    '; Archive created at 2026-11-23 02:00:01 UTC',
    ';     dbname: chajipoa',
    ';',
    '2; 3079 16385 EXTENSION - citext ',
    '4021; 0 0 COMMENT - EXTENSION citext ',
    '3; 3079 16390 EXTENSION - pg_stat_statements ',
    '4022; 0 0 COMMENT - EXTENSION pg_stat_statements ',
    '6; 2615 16500 SCHEMA - rental chajipoa',
    '233; 1259 16510 TABLE rental stations postgres',
    '4023; 0 0 COMMENT rental TABLE stations postgres',
    '',
])


def test_only_the_precreated_extensions_entries_are_left_out():
    kept = backup_restore.restore_list(LISTING, ["citext"]).splitlines()
    assert not [line for line in kept if "citext" in line]
    assert "3; 3079 16390 EXTENSION - pg_stat_statements " in kept
    assert "4023; 0 0 COMMENT rental TABLE stations postgres" in kept
    assert kept[:4] == LISTING.splitlines()[:4]


def test_nothing_left_out_without_extensions():
    assert backup_restore.restore_list(LISTING, []) == LISTING


@pytest.mark.parametrize(("quoted", "name"), [("citext", "citext"), ('"uuid-ossp"', "uuid-ossp"), ('"a""b"', 'a"b')])
def test_catalogue_names_are_unquoted_before_being_quoted_again(quoted, name):
    assert backup_restore._unquote(quoted) == name


def test_secrets_are_no_log():
    spec = backup_restore.ARGUMENT_SPEC
    assert spec["owner_password"]["no_log"] is True and spec["manifest_key"]["no_log"] is True


@pytest.mark.parametrize(("host", "requested", "expected"), [
    ("127.0.0.1", None, "prefer"),
    ("::1", None, "prefer"),
    ("localhost", None, "prefer"),
    ("/var/run/postgresql", None, "prefer"),
    ("10.20.1.11", None, "verify-full"),
    ("db1.prod.chajipoa.internal", None, "verify-full"),
    ("10.20.1.11", "require", "require"),
])
def test_the_owners_password_crosses_a_network_only_over_verified_tls(host, requested, expected):
    assert backup_restore.ssl_mode(host, requested) == expected
