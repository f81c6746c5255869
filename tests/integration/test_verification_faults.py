"""Verification against backups with faults of its own making (issue 14), on a real PostgreSQL 15.

Each test builds the dump its fault needs: a table whose name begins another's, a foreign key to a
partitioned table, row-level security, sequences set back, a function that would run a shell
command during the restore. Thorough verification restores into a scratch cluster of its own
(pg_scratch.py) as a role that is no superuser; the production server only ever serves the dump.
"""
from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest

from ansible_collections.chajipoa.platform.plugins.module_utils import backup_checks, backup_manifest, pg_scratch
# pylint: disable-next=unused-import  # make_config, scratch_dir, fault_db, good_backup: fixtures pytest finds by name
from tests.integration.test_backups import (  # noqa: F401 - the fixtures among them are used by name
    MANIFEST_KEY, backup, check, damaged_copy, failed, fault_db, good_backup, make_config, pair_with_manifest, pg_dump,
    run_entry_point, run_module, scratch_dir, verify, write_config)

KEY = "test-manifest-key"


@pytest.fixture
def database(pg_server):
    """A fresh, empty database on the production stand-in, dropped afterwards."""
    name = f"fault_{uuid.uuid4().hex[:8]}"
    pg_server.create_database(name)
    yield name
    pg_server.drop_database(name)


# --- an unexpected error in any check -------------------------------------------------------------

class FaultyReport(backup_checks.Report):
    """A report whose check `fault` raises an error no check expects, after the check's own work."""

    fault = ""

    @contextlib.contextmanager
    def check(self, name: str):
        with super().check(name) as entry:
            yield entry
            if name == self.fault:
                raise OSError(f"injected failure in {name}")


@pytest.fixture(scope="module")
def signed_backup(good_backup, tmp_path_factory) -> Path:
    path, manifest_path = damaged_copy(tmp_path_factory.mktemp("signed"), good_backup, "signed")
    backup_manifest.write(manifest_path, backup_manifest.sign(backup_manifest.load(manifest_path), KEY))
    return path


@pytest.mark.parametrize("fault", backup_checks.planned_checks("thorough"))
def test_an_error_inside_any_check_fails_that_check_with_the_error(signed_backup, scratch_dir, fault):
    report = FaultyReport("thorough", signed_backup, backup_manifest.manifest_path(signed_backup))
    report.fault = fault
    backup_checks.thorough(report, scratch_dir=scratch_dir, manifest_key=KEY)
    assert not report.passed
    assert failed(report) == [fault]
    assert check(report, fault)["message"] == f"unexpected error: OSError: injected failure in {fault}"
    assert f"{fault}: unexpected error: OSError" in report.failure_message()


def test_a_manifest_table_without_its_row_count_fails_the_count_check(good_backup, scratch_dir, tmp_path):
    path, manifest_path = damaged_copy(tmp_path, good_backup)
    manifest = backup_manifest.load(manifest_path)
    del next(t for t in manifest["tables"] if t["name"] == "payments")["rows"]
    backup_manifest.write(manifest_path, manifest)
    report = verify(path, "thorough", scratch_dir)
    assert failed(report) == ["row counts"]
    assert "unexpected error: KeyError: 'rows'" in report.failure_message()
    assert check(report, "schema")["status"] == "passed"


# --- the signature -----------------------------------------------------------------------------------

def test_signature_valid_mismatched_or_unchecked(good_backup, signed_backup):
    valid = backup_checks.quick(backup_checks.Report("quick", signed_backup, backup_manifest.manifest_path(signed_backup)),
                                manifest_key=KEY)
    assert valid.passed and check(valid, "signature") == {**check(valid, "signature"), "status": "passed",
                                                          "signature": "valid"}
    unchecked = verify(signed_backup, "quick")
    assert check(unchecked, "signature")["status"] == "skipped"
    assert check(unchecked, "signature")["message"] == "no manifest key given"
    wrong_key = verify(signed_backup, "quick", manifest_key="another environment's key")
    assert failed(wrong_key) == ["signature"]
    assert f"Cannot trust backup {wrong_key.manifest['name']}" in wrong_key.failure_message()


@pytest.fixture(scope="module")
def unsigned_backup(good_backup, tmp_path_factory) -> Path:
    """What whoever can write to the bucket can make without the key: a dump and a manifest with no signature."""
    path, manifest_path = damaged_copy(tmp_path_factory.mktemp("unsigned"), good_backup, "unsigned")
    backup_manifest.write(manifest_path, {k: v for k, v in backup_manifest.load(manifest_path).items() if k != "signature"})
    return path


@pytest.mark.parametrize("mode", ["quick", "deep", "thorough"])
def test_an_unsigned_manifest_fails_every_mode_before_anything_is_restored(unsigned_backup, scratch_dir, mode):
    report = verify(unsigned_backup, mode, scratch_dir, manifest_key=KEY)
    assert failed(report) == ["signature"]
    assert f"Cannot trust backup {report.manifest['name']}: its manifest is unsigned" in report.failure_message()
    beyond_quick = {"quick": (), "deep": backup_checks.DEEP_CHECKS, "thorough": backup_checks.THOROUGH_CHECKS}[mode]
    assert {check(report, name)["status"] for name in beyond_quick} <= {"skipped"}


@pytest.mark.parametrize("mode", ["quick", "deep", "thorough"])
def test_an_unsigned_manifest_is_verified_where_the_operator_allows_it(unsigned_backup, scratch_dir, mode):
    report = verify(unsigned_backup, mode, scratch_dir, manifest_key=KEY, allow_unsigned=True)
    assert report.passed and check(report, "signature")["status"] == "skipped"
    assert "is unsigned" in check(report, "signature")["message"]


def test_a_tampered_signed_manifest_is_refused_before_anything_is_restored(signed_backup, scratch_dir, tmp_path):
    path, manifest_path = damaged_copy(tmp_path, signed_backup)
    manifest = backup_manifest.load(manifest_path)
    manifest["tables"][0]["rows"] += 1
    backup_manifest.write(manifest_path, manifest)
    report = verify(path, "thorough", scratch_dir, manifest_key=KEY)
    assert failed(report) == ["signature"]
    assert {check(report, name)["status"] for name in backup_checks.THOROUGH_CHECKS} == {"skipped"}


# --- archive entries matched exactly ------------------------------------------------------------------

def test_a_table_is_not_found_under_a_longer_name_beginning_with_it(make_config, database, pg_server, tmp_path):
    pg_server.execute('CREATE TABLE rentals (id int); CREATE TABLE "rentals archive" (id int);'
                      'INSERT INTO rentals VALUES (1); INSERT INTO "rentals archive" VALUES (1), (2);', dbname=database)
    manifest, path = backup(make_config(database))
    assert verify(path, "quick").passed
    dump = pair_with_manifest(pg_dump(pg_server, database, tmp_path / "without_rentals.dump",
                                      "--exclude-table=public.rentals"), manifest)
    report = verify(dump, "quick")
    assert failed(report) == ["tables in archive"]
    assert check(report, "tables in archive")["missing_tables"] == ["public.rentals"]


@pytest.mark.parametrize("mode", ["quick", "deep"])
def test_a_table_is_not_found_in_the_data_of_another_whose_name_begins_with_it(make_config, database, pg_server,
                                                                               tmp_path, mode):
    """The manifest lists `rentals` only; the archive holds data of `rentals archive` only."""
    pg_server.execute('CREATE TABLE rentals (id int); CREATE TABLE "rentals archive" (id int);'
                      'INSERT INTO rentals VALUES (1); INSERT INTO "rentals archive" VALUES (1), (2);', dbname=database)
    manifest, _path = backup(make_config(database))
    manifest["tables"] = [table for table in manifest["tables"] if table["name"] == "rentals"]
    dump = pair_with_manifest(pg_dump(pg_server, database, tmp_path / "without_rentals.dump",
                                      "--exclude-table=public.rentals"), manifest)
    report = verify(dump, mode)
    assert "tables in archive" in failed(report)
    assert check(report, "tables in archive")["missing_tables"] == ["public.rentals"]


# --- what the catalogue covers -----------------------------------------------------------------------

PARTITIONED = """
CREATE TABLE stations (region int, id int, PRIMARY KEY (region, id)) PARTITION BY LIST (region);
CREATE TABLE stations_arusha PARTITION OF stations FOR VALUES IN (2);
CREATE TABLE rentals (id int PRIMARY KEY, region int, station int,
                      FOREIGN KEY (region, station) REFERENCES stations) PARTITION BY RANGE (id);
CREATE TABLE rentals_1 PARTITION OF rentals FOR VALUES FROM (0) TO (1000);
CREATE INDEX rentals_station ON rentals (station);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER rentals_touch BEFORE INSERT ON rentals FOR EACH ROW EXECUTE FUNCTION touch();
-- A partition made after the foreign key: the server names its clone of the key after the
-- existing ones, while a restore, which makes every partition first, names them in bound order.
CREATE TABLE stations_dar PARTITION OF stations FOR VALUES IN (1);
CREATE TABLE rentals_2 PARTITION OF rentals FOR VALUES FROM (1000) TO (2000);
INSERT INTO stations VALUES (1, 1), (2, 1);
INSERT INTO rentals VALUES (1, 1, 1), (1500, 2, 1);
"""


def test_a_foreign_key_to_a_partitioned_table_passes_thorough(make_config, database, pg_server, scratch_dir):
    pg_server.execute(PARTITIONED, dbname=database)
    manifest, path = backup(make_config(database))
    names = {o["name"] for o in manifest["catalogue"]["objects"] if o["kind"] in ("constraint", "index", "trigger")}
    # The parent's objects are compared; the per-partition clones the server derives are not.
    assert {"public.rentals.rentals_region_station_fkey", "public.rentals_station", "public.rentals.rentals_touch"} <= names
    assert not any(name.startswith("public.rentals_1") or name.startswith("public.rentals_2") for name in names)
    for mode in ("thorough", "deep"):
        report = verify(path, mode, scratch_dir)
        assert report.passed, (mode, report.failure_message())


def test_a_lost_foreign_key_to_a_partitioned_table_is_named(make_config, database, pg_server, scratch_dir, tmp_path):
    pg_server.execute(PARTITIONED, dbname=database)
    manifest = backup(make_config(database))[0]
    pg_server.execute("ALTER TABLE rentals DROP CONSTRAINT rentals_region_station_fkey", dbname=database)
    dump = pair_with_manifest(pg_dump(pg_server, database, tmp_path / "no_fk.dump"), manifest)
    for mode in ("thorough", "deep"):
        report = verify(dump, mode, scratch_dir)
        assert failed(report) == ["schema"], mode
        assert [(d["kind"], d["name"], d["change"]) for d in check(report, "schema")["differences"]] == [
            ("constraint", "public.rentals.rentals_region_station_fkey", "missing")], mode


INHERITED = """
CREATE TABLE readings (id int PRIMARY KEY, volts numeric CONSTRAINT volts_positive CHECK (volts >= 0));
CREATE TABLE readings_2026 (station text) INHERITS (readings);
INSERT INTO readings VALUES (1, 3.7);
INSERT INTO readings_2026 VALUES (2, 4.1, 'dar'), (3, 4.0, 'arusha');
"""


def test_inherited_tables_pass_both_modes_with_each_tables_own_rows(make_config, database, pg_server, scratch_dir):
    pg_server.execute(INHERITED, dbname=database)
    manifest, path = backup(make_config(database))
    assert {t["name"]: t["rows"] for t in manifest["tables"]} == {"readings": 1, "readings_2026": 2}
    for mode in ("thorough", "deep"):
        report = verify(path, mode, scratch_dir)
        assert report.passed, (mode, report.failure_message())


def test_a_manifest_before_format_4_counts_parents_with_children(make_config, database, pg_server, scratch_dir):
    pg_server.execute(INHERITED, dbname=database)
    manifest, path = backup(make_config(database))
    # What the backup program wrote before format 4: count(*) without ONLY, no per-table hashes.
    older = dict(manifest, format_version=3, tables=[
        {"schema": t["schema"], "name": t["name"], "rows": 3 if t["name"] == "readings" else t["rows"]} for t in manifest["tables"]])
    older.pop("signature", None)
    backup_manifest.manifest_path(path).write_text(json.dumps(older))
    for mode in ("thorough", "deep"):
        report = verify(path, mode, scratch_dir)
        assert report.passed, (mode, report.failure_message())
        assert check(report, "row counts")["rows"] == 5, mode


RLS = """
CREATE ROLE chajipoa_test_app NOLOGIN;
CREATE TABLE accounts (id int PRIMARY KEY, msisdn text NOT NULL, agent text NOT NULL);
INSERT INTO accounts SELECT i, '+2557' || lpad(i::text, 8, '0'), 'agent' || i % 3 FROM generate_series(1, 30) i;
ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE accounts FORCE ROW LEVEL SECURITY;
CREATE POLICY agent_reads ON accounts FOR SELECT TO chajipoa_test_app USING (agent = current_user);
CREATE POLICY agent_writes ON accounts AS RESTRICTIVE FOR INSERT TO chajipoa_test_app WITH CHECK (agent = current_user);
"""


@pytest.fixture
def rls_database(database, pg_server):
    pg_server.execute("DROP ROLE IF EXISTS chajipoa_test_app")
    pg_server.execute(RLS, dbname=database)
    yield database
    pg_server.drop_database(database)
    pg_server.execute("DROP ROLE chajipoa_test_app")


def test_row_level_security_is_catalogued_and_restores_with_every_row(make_config, rls_database, scratch_dir):
    manifest, path = backup(make_config(rls_database))
    objects = {(o["kind"], o["name"]): o["definition"] for o in manifest["catalogue"]["objects"]}
    assert objects[("row security", "public.accounts")] == "enabled, forced"
    assert objects[("policy", "public.accounts.agent_reads")] == (
        "permissive for select to chajipoa_test_app using ((agent = CURRENT_USER))")
    assert objects[("policy", "public.accounts.agent_writes")].startswith("restrictive for insert")
    report = verify(path, "thorough", scratch_dir)
    assert report.passed, report.failure_message()
    assert check(report, "row counts")["rows"] == 30
    report = verify(path, "deep")
    assert report.passed, report.failure_message()
    assert [t["rows"] for t in check(report, "row counts")["per_table"]] == [30]


@pytest.mark.parametrize(("damage", "kind", "name", "change"), [
    ("DROP POLICY agent_reads ON accounts", "policy", "public.accounts.agent_reads", "missing"),
    ("ALTER TABLE accounts NO FORCE ROW LEVEL SECURITY", "row security", "public.accounts", "changed"),
    ("ALTER TABLE accounts DISABLE ROW LEVEL SECURITY; ALTER TABLE accounts NO FORCE ROW LEVEL SECURITY",
     "row security", "public.accounts", "missing"),
], ids=["lost-policy", "lost-force", "lost-rls"])
def test_a_dump_that_lost_row_level_security_fails_naming_it(make_config, rls_database, pg_server, scratch_dir,
                                                             tmp_path, damage, kind, name, change):
    manifest = backup(make_config(rls_database))[0]
    pg_server.execute(damage, dbname=rls_database)
    dump = pair_with_manifest(pg_dump(pg_server, rls_database, tmp_path / "rls.dump"), manifest)
    report = verify(dump, "thorough", scratch_dir)
    assert failed(report) == ["schema"]
    assert [(d["kind"], d["name"], d["change"]) for d in check(report, "schema")["differences"]] == [(kind, name, change)]
    assert f"{kind} {name} {change}" in report.failure_message()
    # Deep mode finds what the dump lacks from its table of contents; a changed definition (still
    # there, forced no more) only a restore shows (docs/backups.md, which mode finds which fault).
    report = verify(dump, "deep")
    if change == "missing":
        assert failed(report) == ["schema"]
        assert [(d["kind"], d["name"], d["change"]) for d in check(report, "schema")["differences"]] == [(kind, name, change)]
    else:
        assert report.passed, report.failure_message()


# --- sequences --------------------------------------------------------------------------------------

def test_the_manifest_records_every_sequence_before_the_dump(make_config, fault_db, pg_server):
    pg_server.execute("CREATE SEQUENCE tz_power.invoice_no; SELECT nextval('tz_power.invoice_no')", dbname=fault_db)
    manifest = backup(make_config(fault_db))[0]
    assert manifest["format_version"] >= 3  # sequence_values since format 3
    values = {v["name"]: v for v in manifest["sequence_values"]}
    assert values["tz_power.invoice_no"] == {"name": "tz_power.invoice_no", "next_value": 2, "increment": 1,
                                             "cycle": False}
    receipt = pg_server.execute("SELECT last_value + 1 FROM tz_power.receipt_no", dbname=fault_db)[0][0]
    assert values["tz_power.receipt_no"]["next_value"] == receipt
    assert set(values) == {f"tz_power.{name}" for name in (
        "invoice_no", "receipt_no", "stations_id_seq", "power_banks_id_seq", "customers_id_seq", "rentals_id_seq",
        "payments_id_seq")} | {'"Zemo Ops".vehicles_id_seq', '"Zemo Ops".bookings_id_seq',
                               '"Zemo Ops"."Vehicle Photos_id_seq"'}


def test_a_sequence_restored_below_the_manifest_fails_even_if_no_column_uses_it(make_config, fault_db, pg_server,
                                                                                scratch_dir, tmp_path):
    pg_server.execute("CREATE SEQUENCE tz_power.invoice_no; SELECT setval('tz_power.invoice_no', 5000)", dbname=fault_db)
    manifest = backup(make_config(fault_db))[0]
    pg_server.execute("SELECT setval('tz_power.invoice_no', 4000)", dbname=fault_db)
    dump = pair_with_manifest(pg_dump(pg_server, fault_db, tmp_path / "set_back.dump"), manifest)
    report = verify(dump, "thorough", scratch_dir)
    assert failed(report) == ["sequences"]
    assert [(d["name"], d["change"]) for d in check(report, "sequences")["differences"]] == [
        ("tz_power.invoice_no", "behind manifest")]
    assert "next value at least 5001" in report.failure_message()


def test_a_sequence_a_default_draws_from_is_judged_against_the_data(make_config, fault_db, pg_server, scratch_dir,
                                                                    tmp_path):
    """tz_power.receipt_no is owned by no column; payments.receipt_no takes nextval() of it as default.
    Judged by the data alone (a format 2 manifest records no values): set back, it would issue
    receipt numbers already printed."""
    manifest = backup(make_config(fault_db))[0]
    del manifest["sequence_values"]
    manifest["format_version"] = 2
    pg_server.execute("SELECT setval('tz_power.receipt_no', 100001)", dbname=fault_db)
    dump = pair_with_manifest(pg_dump(pg_server, fault_db, tmp_path / "receipts.dump"), manifest)
    report = verify(dump, "thorough", scratch_dir)
    assert failed(report) == ["sequences"]
    problems = check(report, "sequences")["differences"]
    assert [(d["name"], d["change"]) for d in problems] == [("tz_power.receipt_no", "behind data")]
    assert "tz_power.payments.receipt_no" in problems[0]["expected"]
    assert "records no sequence values" in check(report, "sequences")["note"]


# --- code in the dump runs without superuser rights, outside the production server ----------------------

# pwned() runs a shell command by COPY ... TO PROGRAM, which only a superuser (or a member of
# pg_execute_server_program) may do; it stays quiet while the test builds its data.
MALICIOUS = """
CREATE FUNCTION pwned(i int) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
    IF current_setting('chajipoa.building', true) IS DISTINCT FROM 'yes' THEN
        COPY (SELECT 1) TO PROGRAM 'touch {marker}';
    END IF;
    RETURN true;
END $f$;
CREATE FUNCTION looks_pure(i int) RETURNS int LANGUAGE sql IMMUTABLE AS $f$ SELECT CASE WHEN public.pwned(i) THEN i END $f$;
CREATE TABLE victims (i int);
"""
USES = {
    "check-constraint": ("ALTER TABLE victims ADD CONSTRAINT victims_checked CHECK (pwned(i))", "victims"),
    "index-expression": ("CREATE INDEX victims_pwned_idx ON victims (looks_pure(i))", "victims_pwned_idx"),
    "generated-column": ("ALTER TABLE victims ADD COLUMN j int GENERATED ALWAYS AS (looks_pure(i)) STORED", "victims"),
    "materialized-view": ("CREATE MATERIALIZED VIEW victims_seen AS SELECT looks_pure(i) FROM victims", "victims_seen"),
}


def plant(pg_server, database: str, use: str) -> Path:
    """Builds the malicious objects of one use in the database; returns the file their command would touch."""
    marker = Path(f"/tmp/chajipoa-pwned-{uuid.uuid4().hex}")
    with pg_server.connect(database) as connection:
        connection.execute("SET chajipoa.building = 'yes'")
        connection.execute(MALICIOUS.format(marker=marker))
        connection.execute("INSERT INTO victims VALUES (1), (2)")
        connection.execute(USES[use][0])
    return marker


@pytest.mark.parametrize("use", sorted(USES))
def test_code_in_the_dump_runs_without_superuser_rights(make_config, database, pg_server, scratch_dir, use):
    marker, named = plant(pg_server, database, use), USES[use][1]
    path = backup(make_config(database))[1]
    try:
        report = verify(path, "thorough", scratch_dir)
        assert not marker.exists(), f"the dump's shell command ran during verification ({marker} exists)"
    finally:
        marker.unlink(missing_ok=True)
    assert failed(report) == ["restore"]
    message = report.failure_message()
    assert "pg_execute_server_program role to COPY to or from an external program" in message
    assert named in message and "pwned" in message


@pytest.fixture
def restorable(pg_server):
    """Stages a backup for backup_restore with a fresh owner login; returns the module's parameters.
    On the hosts the module runs as the postgres user, whose peer login over the socket is the
    superuser; here the test's own user gets such a login (a superuser of the same name). Every
    database, login and directory it made is removed afterwards."""
    admin = getpass.getuser()
    pg_server.execute(f'CREATE ROLE "{admin}" SUPERUSER LOGIN')
    made = []

    def stage(path: Path) -> dict:
        owner, password = f"owner_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        pg_server.execute(f"CREATE ROLE {owner} LOGIN PASSWORD '{password}'")
        workdir = Path(tempfile.mkdtemp(prefix="chajipoa-restore-"))
        target = f"restored_{uuid.uuid4().hex[:8]}"
        made.append((workdir, owner, target))
        shutil.copy(path, workdir)
        shutil.copy(backup_manifest.manifest_path(path), workdir)
        (workdir / "backup.json").write_text(json.dumps({"host": "test", "backup_dir": str(workdir),
                                                         "state_dir": str(workdir / "state")}))
        return {"path": str(workdir / path.name), "database": target, "owner": owner, "owner_password": password,
                "port": pg_server.port, "login_user": admin, "login_unix_socket": str(pg_server.socket_dir),
                "manifest_key": MANIFEST_KEY, "config": str(workdir / "backup.json"), "pg_bindir": str(pg_server.bindir)}

    yield stage
    for workdir, owner, target in made:
        pg_server.execute(f'DROP DATABASE IF EXISTS "{target}"')
        pg_server.execute(f"DROP ROLE IF EXISTS {owner}")
        shutil.rmtree(workdir, ignore_errors=True)
    pg_server.execute(f'DROP ROLE IF EXISTS "{admin}"')


def databases_named(pg_server, prefix: str) -> list[str]:
    return [name for (name,) in pg_server.execute("SELECT datname FROM pg_database") if name.startswith(prefix)]


@pytest.mark.parametrize("use", sorted(USES))
def test_code_in_the_dump_restored_by_backup_restore_runs_as_the_owner_and_nothing_is_swapped_in(
        make_config, database, pg_server, restorable, use):
    """The restore runbook's module, given a signed dump whose code would run a shell command:
    pg_restore runs as the application's login, so the command is refused, the restore fails and
    neither the target nor the staging database is left. The same dump restored the old way, by
    pg_restore as the superuser, does run it: the dump is as dangerous as it looks."""
    marker = plant(pg_server, database, use)
    path = backup(make_config(database))[1]
    params = restorable(path)
    try:
        result = run_module(params, module="backup_restore")
        assert not marker.exists(), f"the dump's shell command ran during the restore ({marker} exists)"
        assert result.get("failed"), result
        assert f"pg_restore as {params['owner']} logged errors" in result["msg"]
        assert "pg_execute_server_program" in result["msg"]
        assert databases_named(pg_server, params["database"]) == []

        # The control: the superuser's pg_restore runs the command.
        pg_server.create_database(params["database"])
        subprocess.run([str(pg_server.bindir / "pg_restore"), "--no-owner", f"--dbname={pg_server.conninfo(params['database'])}",
                        str(path)], env={**os.environ, **pg_server.env()}, capture_output=True, check=False)
        assert marker.exists(), "restored as the superuser, the dump's command did not run: the test proves nothing"
    finally:
        marker.unlink(missing_ok=True)


def test_a_swap_the_server_refuses_leaves_the_live_database_taking_connections(make_config, database, pg_server, restorable):
    """The swap stops new sessions to the live database and ends those it has before renaming it
    aside; a prepared transaction on it cannot be ended, so the rename fails. The restore fails
    naming it, and the live database is as it was: connections allowed, its data there, no second
    copy beside it. Once the transaction is gone, the same restore replaces it."""
    pg_server.execute("CREATE TABLE restored AS SELECT 'from the backup' AS note", database)
    params = {**restorable(backup(make_config(database))[1]), "replace": True}
    target = params["database"]
    pg_server.create_database(target)
    with pg_server.connect(target, autocommit=False) as live:
        live.execute("CREATE TABLE kept (note text)")
        live.execute("INSERT INTO kept VALUES ('before')")
        live.commit()
        live.execute("INSERT INTO kept VALUES ('in doubt')")
        live.execute("PREPARE TRANSACTION 'held_by_a_coordinator'")
    try:
        refused = run_module(params, module="backup_restore")
        assert refused.get("failed"), refused
        assert "prepared transaction" in refused["msg"], refused["msg"]
        assert pg_server.execute("SELECT datallowconn FROM pg_database WHERE datname = %s", params=(target,)) == [(True,)]
        assert pg_server.execute("SELECT note FROM kept", target) == [("before",)]
        assert databases_named(pg_server, target) == [target]
    finally:
        # Where the swap left connections off, the transaction could not be ended otherwise.
        pg_server.execute(f'ALTER DATABASE "{target}" ALLOW_CONNECTIONS true')
        pg_server.execute("ROLLBACK PREPARED 'held_by_a_coordinator'", target)
    replaced = run_module(params, module="backup_restore")
    assert replaced.get("changed") and not replaced.get("failed"), replaced
    aside = replaced["restore"]["replaced_database"]
    try:
        assert pg_server.execute("SELECT note FROM kept", aside) == [("before",)]
        assert pg_server.execute("SELECT note FROM restored", target) == [("from the backup",)]
    finally:
        pg_server.drop_database(aside)


# --- the modules' time limit -----------------------------------------------------------------------

# A restore of this dump takes about 5 s whatever the machine: each row's CHECK sleeps 5 ms (not
# while the test builds it), so a limit of 1 s always ends it mid-restore.
SLOW = """
CREATE FUNCTION slowly(i int) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
    IF current_setting('chajipoa.building', true) IS DISTINCT FROM 'yes' THEN
        PERFORM pg_sleep(0.005);
    END IF;
    RETURN true;
END $f$;
CREATE TABLE slow_rows (i int CHECK (slowly(i)));
INSERT INTO slow_rows SELECT generate_series(1, 1000);
"""


@pytest.fixture
def slow_backup(make_config, database, pg_server) -> Path:
    with pg_server.connect(database) as connection:
        connection.execute("SET chajipoa.building = 'yes'")
        connection.execute(SLOW)
    return backup(make_config(database))[1]


# The limits end the run in the throwaway cluster's initdb, its start and the restore: at 0.2 s an
# initdb that outlived its runuser (killed alone) wrote on into the directory being removed.
@pytest.mark.parametrize("limit", [0.2, 0.5, 1])
def test_the_verify_module_stops_past_its_timeout_and_leaves_no_cluster(slow_backup, make_config, scratch_dir, tmp_path,
                                                                        limit):
    config = write_config(make_config("rental", scratch_dir=str(scratch_dir)), tmp_path)
    params = {"path": str(slow_backup), "mode": "thorough", "manifest_key": MANIFEST_KEY, "config": str(config)}
    result = run_module({**params, "timeout": limit})
    assert result.get("failed"), result
    assert f"the thorough verification of {slow_backup.name} did not finish within {limit:g} s (timeout)" in result["msg"]
    # The throwaway cluster was stopped and removed with the run, not left to the next one.
    assert list(scratch_dir.iterdir()) == []
    assert subprocess.run(["pgrep", "-f", str(scratch_dir)], capture_output=True, check=False).returncode == 1
    # Without the limit the same verification runs at once: the lock was released.
    passed = run_module({**params, "lock_timeout": 0})
    assert not passed.get("failed"), passed.get("msg")


def test_a_restore_past_its_timeout_leaves_no_new_database_and_frees_the_lock(slow_backup, pg_server, restorable):
    params = restorable(slow_backup)
    result = run_module({**params, "timeout": 1}, module="backup_restore")
    assert result.get("failed"), result
    assert f"the restore of {slow_backup.name} did not finish within 1 s (timeout)" in result["msg"]
    assert databases_named(pg_server, params["database"]) == []
    # Without the limit the same restore runs at once: the lock was released.
    done = run_module({**params, "lock_timeout": 0}, module="backup_restore")
    assert not done.get("failed"), done.get("msg")
    assert databases_named(pg_server, params["database"]) == [params["database"]]


def test_the_restore_role_is_no_superuser_and_the_cluster_has_no_tcp_port(good_backup, scratch_dir):
    report = verify(good_backup, "thorough", scratch_dir, keep_restored=True)
    kept = report.restored_cluster
    try:
        directory = Path(kept["directory"])
        assert directory.stat().st_mode & 0o777 == 0o700
        pid, started = (directory / pg_scratch.OWNER_FILE).read_text().split()
        assert int(pid) == os.getpid() and directory.name.startswith(f"{pid}-")
        with psycopg.connect(host=kept["socket_dir"], port=kept["port"], user=kept["user"],
                             dbname=kept["database"]) as connection:
            role = connection.execute("SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles "
                                      "WHERE rolname = current_user").fetchone()
            assert role == (False, False, False, True)
            owner = connection.execute("SELECT pg_get_userbyid(datdba) FROM pg_database "
                                       "WHERE datname = current_database()").fetchone()[0]
            assert owner == kept["user"]
            assert not connection.execute("SELECT pg_has_role('pg_execute_server_program', 'MEMBER')").fetchone()[0]
            settings = dict(connection.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN ('listen_addresses', 'fsync', 'wal_level', "
                "'max_wal_senders', 'autovacuum', 'full_page_writes', 'synchronous_commit')").fetchall())
        assert settings == {"listen_addresses": "", "fsync": "off", "wal_level": "minimal", "max_wal_senders": "0",
                            "autovacuum": "off", "full_page_writes": "off", "synchronous_commit": "off"}
    finally:
        pg_scratch.remove_cluster(kept["directory"])


def test_verification_adds_no_wal_on_the_production_server(good_backup, pg_server, rental_db, scratch_dir):
    def lsn():
        return pg_server.execute("SELECT pg_current_wal_lsn()")[0][0]

    before = lsn()
    report = verify(good_backup, "thorough", scratch_dir)
    after = lsn()
    assert report.passed, report.failure_message()
    written = pg_server.execute("SELECT pg_wal_lsn_diff(%s, %s)::bigint", params=[after, before])[0][0]
    # A restore into the production server writes about the database's size (tens of MB here).
    assert written < 256 * 1024 < rental_db["size_bytes"] / 20, f"{written} bytes of WAL during verification"


# --- the scratch cluster's life ----------------------------------------------------------------------

def test_a_killed_run_leaves_a_cluster_that_the_next_run_removes(scratch_dir, tmp_path):
    """A child starts a scratch cluster, then dies by SIGKILL: its postmaster runs on, its directory
    stays. cleanup_stale() stops that postmaster and removes the directory, and leaves a live run's."""
    child = subprocess.run(
        [sys.executable, "-c", "import os, signal, sys; sys.path[:0] = ['collections']\n"
         "from ansible_collections.chajipoa.platform.plugins.module_utils import pg_scratch\n"
         f"cluster = pg_scratch.ScratchCluster({str(scratch_dir)!r}, pg_scratch.server_bindir(15))\n"
         "cluster.start(); print(cluster.directory, flush=True); os.kill(os.getpid(), signal.SIGKILL)"],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, check=False)
    assert child.returncode == -signal.SIGKILL, child.stderr
    dead = Path(child.stdout.strip())
    postmaster = int((dead / "data" / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, 0)
    with pg_scratch.ScratchCluster(scratch_dir, pg_scratch.server_bindir(15)) as live:
        assert pg_scratch.cleanup_stale(scratch_dir) == [str(dead)]
        assert not dead.exists() and live.directory.exists()
        with pytest.raises(ProcessLookupError):
            os.kill(postmaster, 0)
        with live.connect("postgres") as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
    assert list(scratch_dir.iterdir()) == []


def test_without_the_server_programs_the_restore_fails_saying_what_to_install(good_backup, scratch_dir, tmp_path):
    report = verify(good_backup, "thorough", scratch_dir, pg_bindir=str(tmp_path / "no-postgres"))
    assert failed(report) == ["restore"]
    assert f"{tmp_path}/no-postgres/initdb does not exist" in report.failure_message()
    assert "set pg_bindir" in report.failure_message()


def test_an_extension_the_host_lacks_fails_the_restore_naming_it(good_backup, scratch_dir, tmp_path):
    path, manifest_path = damaged_copy(tmp_path, good_backup)
    manifest = backup_manifest.load(manifest_path)
    manifest["catalogue"]["objects"].append({"kind": "extension", "name": "postgis", "definition": "version 3.3.2 schema public"})
    backup_manifest.write(manifest_path, manifest)
    report = verify(path, "thorough", scratch_dir)
    assert failed(report) == ["restore"]
    assert "cannot create extension postgis 3.3.2 in schema public" in report.failure_message()


RESTORE_ENTRY_POINT = """
- name: The backup role's restore entry point (playbooks/restore.yml), on this machine
  hosts: localhost
  gather_facts: false
  module_defaults:
    chajipoa.platform.backup_info: {config: "{{ config }}"}
    chajipoa.platform.backup_restore:
      config: "{{ config }}"
      login_user: "{{ login_user }}"
      login_unix_socket: "{{ login_unix_socket }}"
      pg_bindir: "{{ pg_bindir }}"
  tasks:
    - name: Restore the backup named
      ansible.builtin.include_role:
        name: chajipoa.platform.backup
        tasks_from: restore
"""


@pytest.mark.parametrize("allowed", [False, True])
def test_a_named_backup_whose_last_verification_failed_is_restored_only_if_the_operator_says_so(
        make_config, database, pg_server, restorable, tmp_path, allowed):
    """restore.yml -e restore_backup=<name>: a backup whose recorded (here thorough) verification
    failed is refused before anything changes, naming the failed check and the switch; with the
    switch the operator takes it knowingly, and it is restored."""
    params = restorable(backup(make_config(database))[1])
    dump = Path(params["path"])
    name = dump.name.removesuffix(backup_manifest.DUMP_SUFFIX["postgresql"])
    directory = dump.parent / "postgresql" / params["database"]
    directory.mkdir(parents=True)
    for path in (dump, backup_manifest.manifest_path(dump)):
        path.rename(directory / path.name)
    (directory / f"{name}.verify.json").write_text(json.dumps({
        "mode": "thorough", "passed": False, "checked_at": "2026-12-06T03:00:00Z",
        "failed": ["rows: public.rentals holds 2 rows, the manifest 3"]}))
    variables = tmp_path / "restore-vars.json"
    variables.write_text(json.dumps({
        "backup_restore_backup": name, "backup_restore_database": params["database"], "backup_restore_owner": params["owner"],
        "postgres_app_password": params["owner_password"], "postgres_port": params["port"],
        "login_user": params["login_user"], "login_unix_socket": params["login_unix_socket"], "pg_bindir": params["pg_bindir"],
        "backup_restore_allow_failed_verification": allowed}))
    result = run_entry_point(RESTORE_ENTRY_POINT, Path(params["config"]), tmp_path, "-e", f"@{variables}")
    output = result.stdout + result.stderr
    if allowed:
        assert result.returncode == 0, output
        assert databases_named(pg_server, params["database"]) == [params["database"]]
        assert f"Restored {name}" in output and "its last verification (thorough" in output, output
    else:
        assert result.returncode != 0, output
        assert f"Cannot restore backup {name}" in output, output
        assert ("its last verification (thorough, 2026-12-06T03:00:00Z) failed: "
                "rows: public.rentals holds 2 rows, the manifest 3") in output, output
        assert "restore_allow_failed_verification=true" in output, output
        assert databases_named(pg_server, params["database"]) == []
