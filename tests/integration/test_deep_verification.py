"""Deep verification (issue 21) against real pg_dump 15 archives from a real PostgreSQL 15.

The fault corpus of test_backups.py run through deep mode: every fault that needs no restore to
show is caught by the check that names it, with thorough mode's message where thorough has the
same check; random small databases are counted against count(*) on the source; and a dump of each
compression pg_dump 15 writes is read.
"""
from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.chajipoa.platform.plugins.module_utils import backup_checks, backup_manifest, pg_archive
# pylint: disable-next=unused-import  # make_config, scratch_dir, fault_db, good_backup: fixtures pytest finds by name
from tests.integration.test_backups import (  # noqa: F401 - the fixtures among them are used by name
    MANIFEST_KEY, backup, check, damaged_copy, failed, fault_db, flip_middle_byte, good_backup, make_config,
    pair_with_manifest, pg_dump, scratch_dir, truncate_half, verify)


def deep(path, manifest=None, **options) -> backup_checks.Report:
    return verify(path, "deep", manifest=manifest, **options)


def test_good_backup_passes_deep_mode_with_counts_and_timings_per_table(good_backup, rental_db):
    report = deep(good_backup, manifest_key=MANIFEST_KEY)
    assert report.passed, report.failure_message()
    assert [c["name"] for c in report.checks] == backup_checks.planned_checks("deep")
    assert all(c["status"] == "passed" for c in report.checks), [(c["name"], c["message"]) for c in report.checks]
    counts = check(report, "row counts")
    assert {t["table"]: t["rows"] for t in counts["per_table"]} == rental_db["tables"]
    assert all(t["seconds"] >= 0 and t["stored_bytes"] > 0 for t in counts["per_table"])
    assert check(report, "table hashes")["tables"] == len(rental_db["tables"])
    needs = check(report, "restore needs")
    assert "postgres" in needs["roles"]
    assert {e["name"] for e in needs["extensions"]} == {"citext", "pgcrypto"}
    assert "citext" in needs["message"]


def test_the_backup_records_each_tables_data_hash_from_its_one_read(good_backup):
    manifest = backup_manifest.load(backup_manifest.manifest_path(good_backup))
    archive = pg_archive.read(good_backup)
    blocks = {(e.namespace, e.tag): archive.blocks[e.dump_id] for e in archive.table_data()}
    assert manifest["format_version"] == backup_manifest.CURRENT_VERSION
    assert {(t["schema"], t["name"]): t["data_sha256"] for t in manifest["tables"]} == {
        key: block.sha256 for key, block in blocks.items()}
    assert (archive.sha256, archive.bytes) == backup_manifest.sha256_file(good_backup)


# --- the fault corpus ----------------------------------------------------------------------------

def test_truncated_dump_fails_the_size_check(good_backup, tmp_path):
    path, _manifest_path = damaged_copy(tmp_path, good_backup)
    truncate_half(path)
    report = deep(path)
    assert failed(report)[0] == "size" and "truncated" in report.failure_message()
    assert {check(report, name)["status"] for name in backup_checks.DEEP_CHECKS} == {"skipped"}


def test_bytes_damaged_after_the_manifest_fail_the_checksum(good_backup, tmp_path):
    path, _manifest_path = damaged_copy(tmp_path, good_backup)
    flip_middle_byte(path)
    assert failed(deep(path)) == ["sha256"]


def test_bytes_damaged_before_the_manifest_fail_the_data_blocks(good_backup, tmp_path):
    """What thorough mode finds only by restoring (test_restore_error_fails_with_the_first_errors)."""
    path, _manifest_path = damaged_copy(tmp_path, good_backup)
    data = bytearray(path.read_bytes())
    for offset in range(len(data) // 2, len(data) // 2 + 64):
        data[offset] ^= 0x5A
    path.write_bytes(bytes(data))
    pair_with_manifest(path, backup_manifest.load(backup_manifest.manifest_path(good_backup)))
    report = deep(path)
    assert failed(report)[0] == "data blocks"
    assert "the archive's data cannot all be read" in report.failure_message()
    assert check(report, "row counts")["status"] == "skipped"


def test_lost_rows_in_a_valid_stream_fail_the_counts_and_hashes(make_config, fault_db, pg_server, scratch_dir, tmp_path):
    manifest, _backup_path = backup(make_config(fault_db))
    pg_server.execute("DELETE FROM tz_power.payments WHERE id % 10 = 0", dbname=fault_db)
    dump = pair_with_manifest(pg_dump(pg_server, fault_db, tmp_path / f"{fault_db}.dump"), manifest)
    report = deep(dump)
    assert failed(report) == ["row counts", "table hashes"]
    counts = check(report, "row counts")["message"]
    assert counts == check(verify(dump, "thorough", scratch_dir), "row counts")["message"]
    assert counts.startswith("1 table(s) differ: tz_power.payments has ")
    assert check(report, "table hashes")["differing_tables"] == ["tz_power.payments"]


def test_stale_counts_fail_the_count_check_as_thorough_does(good_backup, tmp_path):
    path, manifest_path = damaged_copy(tmp_path, good_backup)
    manifest = backup_manifest.load(manifest_path)
    table = next(t for t in manifest["tables"] if t["name"] == "rentals")
    table["rows"] += 1
    backup_manifest.write(manifest_path, manifest)
    report = deep(path)
    assert failed(report) == ["row counts"]
    assert f"tz_power.rentals has {table['rows'] - 1} rows, the manifest {table['rows']}" in report.failure_message()


def test_table_missing_from_the_dump_fails_the_archive_check(good_backup, pg_server, tmp_path):
    dump = pg_dump(pg_server, "rental", tmp_path / "without_payments.dump", "--exclude-table=tz_power.payments")
    pair_with_manifest(dump, backup_manifest.load(backup_manifest.manifest_path(good_backup)))
    report = deep(dump)
    assert failed(report) == ["tables in archive"]
    assert report.failure_message() == verify(dump, "quick").failure_message().replace(" quick", " deep")


@pytest.mark.parametrize("damage, kind, name", [
    ("DROP INDEX tz_power.rentals_customer_started", "index", "tz_power.rentals_customer_started"),
    ("ALTER TABLE tz_power.payments DROP CONSTRAINT payments_rental_id_fkey", "constraint",
     "tz_power.payments.payments_rental_id_fkey"),
    ("DROP FUNCTION tz_power.rental_fee_tzs(integer)", "function", "tz_power.rental_fee_tzs("),
], ids=["index", "foreign-key", "function"])
def test_schema_drift_in_the_toc_fails_the_schema_check_as_thorough_does(make_config, fault_db, pg_server, scratch_dir,
                                                                         tmp_path, damage, kind, name):
    manifest, _backup_path = backup(make_config(fault_db))
    pg_server.execute(damage, dbname=fault_db)
    dump = pair_with_manifest(pg_dump(pg_server, fault_db, tmp_path / f"{fault_db}.dump"), manifest)
    report = deep(dump)
    assert failed(report) == ["schema"]
    missing = check(report, "schema")["differences"]
    assert [(d["kind"], d["change"]) for d in missing] == [(kind, "missing")] and missing[0]["name"].startswith(name)
    assert check(report, "schema")["message"] == check(verify(dump, "thorough", scratch_dir), "schema")["message"]


def test_sequence_behind_the_manifest_fails_the_sequence_check_as_thorough_does(make_config, fault_db, pg_server,
                                                                                scratch_dir, tmp_path):
    manifest, _backup_path = backup(make_config(fault_db))
    pg_server.execute("SELECT setval('tz_power.rentals_id_seq', 1)", dbname=fault_db)
    dump = pair_with_manifest(pg_dump(pg_server, fault_db, tmp_path / f"{fault_db}.dump"), manifest)
    report = deep(dump)
    assert failed(report) == ["sequences"]
    assert check(report, "sequences")["message"] == check(verify(dump, "thorough", scratch_dir), "sequences")["message"]
    assert "tz_power.rentals_id_seq" in report.failure_message()


def test_ignored_kinds_and_excluded_names_are_left_out(make_config, fault_db, pg_server, tmp_path):
    manifest, _backup_path = backup(make_config(fault_db))
    pg_server.execute("DROP INDEX tz_power.rentals_customer_started", dbname=fault_db)
    dump = pair_with_manifest(pg_dump(pg_server, fault_db, tmp_path / f"{fault_db}.dump"), manifest)
    assert deep(dump, ignore_kinds=["index"]).passed
    assert deep(dump, exclude=["tz_power.rentals_*"]).passed


@pytest.mark.parametrize("version", [1, 3])
def test_an_older_manifest_passes_with_what_it_lacks_skipped(good_backup, tmp_path, version):
    path, manifest_path = damaged_copy(tmp_path, good_backup)
    manifest = backup_manifest.load(manifest_path)
    for table in manifest["tables"]:
        del table["data_sha256"]
    manifest["format_version"] = version
    if version == 1:
        del manifest["catalogue"], manifest["sequence_values"]
    backup_manifest.write(manifest_path, manifest)
    report = deep(path)
    assert report.passed, report.failure_message()
    assert check(report, "table hashes")["status"] == "skipped"
    assert f"manifest format {version} records no per-table data hashes" in check(report, "table hashes")["message"]
    assert check(report, "row counts")["status"] == "passed"
    skipped = {c["name"] for c in report.checks if c["status"] == "skipped"}
    # The signature: no key given here (the manifest was rewritten, so its signature no longer holds).
    assert skipped == {"signature", "table hashes"} | ({"schema", "sequences"} if version == 1 else set())


# --- every compression pg_dump 15 writes ---------------------------------------------------------

@pytest.mark.parametrize("compress", [0, 1, 6, 9])
def test_a_dump_of_each_compression_is_read_and_counted(good_backup, pg_server, rental_db, tmp_path, compress):
    dump = pg_dump(pg_server, "rental", tmp_path / f"rental-z{compress}.dump", f"--compress={compress}")
    manifest = backup_manifest.load(backup_manifest.manifest_path(good_backup))
    for table in manifest["tables"]:
        del table["data_sha256"]  # hashes of the stored blocks differ with the compression
    report = deep(pair_with_manifest(dump, manifest))
    assert report.passed, report.failure_message()
    assert check(report, "data blocks")["compression"] == ("none" if compress == 0 else "gzip")
    assert {t["table"]: t["rows"] for t in check(report, "row counts")["per_table"]} == rental_db["tables"]


# --- random small databases: the archive's counts are count(*) on the source ----------------------

VALUES = st.one_of(st.none(), st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                                      max_size=40))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tables=st.lists(st.lists(st.tuples(VALUES, st.integers(-2**40, 2**40)), max_size=60), min_size=1, max_size=4),
       compress=st.sampled_from([0, 6]))
def test_deep_counts_equal_count_star_on_random_databases(pg_server, tmp_path, tables, compress):
    """Text with newlines, tabs, backslashes and "\\." lines, NULLs and empty tables: COPY escapes
    them, so each row is one line whatever it holds."""
    name = f"random_{uuid.uuid4().hex[:8]}"
    pg_server.create_database(name)
    try:
        with pg_server.connect(name) as connection:
            for number, rows in enumerate(tables):
                connection.execute(f"CREATE TABLE t{number} (id serial PRIMARY KEY, body text, n bigint)")
                with connection.cursor() as cursor:
                    cursor.executemany(f"INSERT INTO t{number} (body, n) VALUES (%s, %s)", rows)
            expected = {f"t{n}": connection.execute(f"SELECT count(*) FROM t{n}").fetchone()[0] for n in range(len(tables))}
        dump = pg_dump(pg_server, name, tmp_path / f"{name}.dump", f"--compress={compress}")
        archive = pg_archive.read(dump)
        assert not archive.error and all(not block.error for block in archive.blocks.values())
        assert {e.tag: archive.blocks[e.dump_id].rows for e in archive.table_data()} == expected
    finally:
        pg_server.drop_database(name)
