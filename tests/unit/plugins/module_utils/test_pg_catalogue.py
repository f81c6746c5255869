"""Unit tests of the catalogue comparison and the sequence rule (catalogues as plain data, no server)."""
from __future__ import annotations

import pytest
import yaml

from ansible_collections.chajipoa.platform.plugins.module_utils import pg_catalogue
from ansible_collections.chajipoa.platform.plugins.modules import backup_verify
from tests.conftest import ROOT, load_yaml


def catalogue(*objects: tuple[str, str, str]) -> dict:
    entries = [{"kind": k, "name": n, "definition": d} for k, n, d in objects]
    return {"version": 1, "objects": entries, "digest": pg_catalogue.digest(entries), "sequences": []}


SOURCE = catalogue(
    ("table", "public.rentals", ""),
    ("index", "public.rentals_station", "CREATE INDEX rentals_station ON public.rentals USING btree (station_id)"),
    ("function", "public.fee(integer)", "CREATE FUNCTION public.fee(integer) ... 500"),
    ("trigger", "public.rentals.touch", "CREATE TRIGGER touch ..."),
)


def test_equal_catalogues_have_no_difference_and_one_digest():
    restored = catalogue(*reversed([(o["kind"], o["name"], o["definition"]) for o in SOURCE["objects"]]))
    assert pg_catalogue.compare(SOURCE, restored) == []
    assert restored["digest"] == SOURCE["digest"]


def test_missing_extra_and_changed_objects_are_named_with_both_definitions():
    restored = catalogue(
        ("table", "public.rentals", ""),
        ("function", "public.fee(integer)", "CREATE FUNCTION public.fee(integer) ... 600"),
        ("trigger", "public.rentals.touch", "CREATE TRIGGER touch ..."),
        ("view", "public.extra", "SELECT 1"),
    )
    differences = pg_catalogue.compare(SOURCE, restored)
    assert [(d["kind"], d["name"], d["change"]) for d in differences] == [
        ("function", "public.fee(integer)", "changed"),
        ("index", "public.rentals_station", "missing"),
        ("view", "public.extra", "extra"),
    ]
    changed = differences[0]
    assert changed["expected"].endswith("500") and changed["actual"].endswith("600")
    assert differences[1]["actual"] is None and differences[2]["expected"] is None
    assert pg_catalogue.describe(differences[1]) == "index public.rentals_station missing"
    assert pg_catalogue.digest(restored["objects"]) != SOURCE["digest"]


def test_ignored_kinds_and_excluded_names_leave_objects_out():
    restored = catalogue(("table", "public.rentals", ""), ("trigger", "public.rentals.touch", "CREATE TRIGGER touch ..."))
    assert [d["kind"] for d in pg_catalogue.compare(SOURCE, restored)] == ["function", "index"]
    assert pg_catalogue.compare(SOURCE, restored, ignore_kinds=["index", "function"]) == []
    assert pg_catalogue.compare(SOURCE, restored, exclude=["public.rentals_*", "public.fee(*"]) == []


def test_an_unknown_kind_is_refused_by_name():
    with pytest.raises(ValueError, match="indexes"):
        pg_catalogue.compare(SOURCE, SOURCE, ignore_kinds=["indexes"])


def sequence(last_value, is_called, data_extreme, increment=1):
    return {"name": "public.rentals_id_seq", "last_value": last_value, "is_called": is_called, "increment": increment,
            "columns": [{"table": "public.rentals", "column": "id", "data_extreme": data_extreme}]}


@pytest.mark.parametrize(("entry", "behind"), [
    (sequence(100, True, 100), False),    # nextval gives 101
    (sequence(99, True, 100), True),      # nextval gives 100, which exists
    (sequence(101, False, 100), False),   # never called: nextval gives 101
    (sequence(100, False, 100), True),    # never called: nextval gives 100
    (sequence(1, False, None), False),    # empty table
    (sequence(-100, True, -100, increment=-1), False),
    (sequence(-99, True, -100, increment=-1), True),
], ids=["called-at-max", "called-below-max", "fresh-above", "fresh-at-max", "empty", "descending-ok", "descending-behind"])
def test_a_sequence_must_be_ahead_of_its_column(entry, behind):
    problems = pg_catalogue.sequence_problems([entry])
    assert bool(problems) is behind
    if behind:
        assert problems[0]["name"] == "public.rentals_id_seq" and "public.rentals.id" in problems[0]["expected"]


def test_sequences_giving_values_to_no_column_are_not_judged_against_data():
    assert pg_catalogue.sequence_problems([{"name": "public.receipt_no", "last_value": 1, "is_called": False}]) == []


def test_every_column_a_sequence_gives_values_to_is_judged():
    entry = sequence(150, True, 100)
    entry["columns"].append({"table": "public.payments", "column": "receipt_no", "data_extreme": 200})
    problems = pg_catalogue.sequence_problems([entry])
    assert [p["expected"] for p in problems] == ["next value beyond public.payments.receipt_no = 200"]


def value(next_value, increment=1, cycle=False, name="public.receipt_no"):
    return {"name": name, "next_value": next_value, "increment": increment, "cycle": cycle}


@pytest.mark.parametrize(("recorded", "restored", "behind"), [
    (value(100), value(100), False),
    (value(100), value(250), False),          # pg_dump read later than the manifest: only ahead
    (value(100), value(99), True),
    (value(-100, -1), value(-99, -1), True),
    (value(-100, -1), value(-150, -1), False),
    (value(100, cycle=True), value(1, cycle=True), False),  # a cycling sequence may come round
    (value(100), value(1, name="public.other"), False),     # missing: the schema check names it
], ids=["equal", "ahead", "behind", "descending-behind", "descending-ahead", "cycling", "missing"])
def test_a_sequence_must_be_at_least_where_the_manifest_recorded_it(recorded, restored, behind):
    problems = pg_catalogue.sequence_value_problems([recorded], [restored])
    assert bool(problems) is behind
    if behind:
        assert problems[0]["name"] == "public.receipt_no" and problems[0]["change"] == "behind manifest"


def test_kinds_newer_than_the_source_catalogue_are_not_compared():
    old = dict(SOURCE, version=1)
    restored = catalogue(*[(o["kind"], o["name"], o["definition"]) for o in SOURCE["objects"]],
                         ("policy", "public.rentals.own", "permissive for all to public using (true)"),
                         ("row security", "public.rentals", "enabled"))
    assert pg_catalogue.compare(old, restored) == []
    assert [(d["kind"], d["change"]) for d in pg_catalogue.compare(SOURCE | {"version": 2}, restored)] == [
        ("policy", "extra"), ("row security", "extra")]


def test_the_backup_role_and_the_verify_module_offer_every_kind_to_ignore():
    """backup_verify_ignore_kinds reaches the module, whose choices are KINDS: a kind missing from
    the role's spec (row security, policy) could not be left out from the inventory."""
    specs = load_yaml(ROOT / "roles/backup/meta/argument_specs.yml")["argument_specs"]
    offered = [entry["options"]["backup_verify_ignore_kinds"]["choices"] for entry in specs.values()
               if "backup_verify_ignore_kinds" in entry["options"]]
    documented = yaml.safe_load(backup_verify.DOCUMENTATION)["options"]["ignore_kinds"]["choices"]
    assert offered and all(choices == list(pg_catalogue.KINDS) for choices in offered + [documented])
