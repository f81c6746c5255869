"""Unit tests of the mongodump archive reader, on archives built from the format specification.

MongoDB's tools cannot be installed on these machines (FACTS.md: its repository is unreachable),
so the archives come from tests/mongo_archives.py, written from the specification of mongo-tools.
"""
from __future__ import annotations

import gzip
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.chajipoa.platform.plugins.module_utils import mongo_archive
from tests import mongo_archives

COLLECTIONS = {("chajipoa", "rentals"): 50, ("chajipoa", "stations"): 7, ("chajipoa", "empty"): 0,
               ("zemo", "vehicles"): 11}


def counts(contents):
    return {(c["database"], c["name"]): c["documents"] for c in contents["collections"]}


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_reads_every_collection_with_its_document_count(tmp_path, compress):
    path = mongo_archives.write(tmp_path / "a.archive", COLLECTIONS, compress=compress, oplog_entries=4)
    contents = mongo_archive.read(path)
    assert counts(contents) == {**COLLECTIONS, ("", "oplog"): 4}
    assert contents["compressed"] is compress
    assert (contents["server_version"], contents["tool_version"], contents["format_version"]) == ("7.0.14", "100.10.0", "0.1")
    rentals = next(c for c in contents["collections"] if c["name"] == "rentals")
    assert rentals["bytes"] > 50 * 20


def test_segments_of_one_collection_add_up(tmp_path):
    path = mongo_archives.write(tmp_path / "a.archive", {("db", "c"): 100}, segment=1)
    assert counts(mongo_archive.read(path)) == {("db", "c"): 100}


def test_wrong_magic_number_is_named(tmp_path):
    path = tmp_path / "a.archive"
    path.write_bytes(b"PGDMP" + b"\x00" * 100)
    with pytest.raises(mongo_archive.ArchiveError, match="magic number"):
        mongo_archive.read(path)


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.97])
def test_truncated_plain_archive_is_named(tmp_path, cut):
    data = mongo_archives.archive(COLLECTIONS)
    path = tmp_path / "a.archive"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(mongo_archive.ArchiveError, match="truncated"):
        mongo_archive.read(path)


def test_archive_cut_between_segments_is_named_by_its_open_collection(tmp_path):
    data = mongo_archives.archive({("db", "c"): 5}, segment=5)
    # Everything up to the EOF header of db.c: complete documents, no end marker.
    eof = mongo_archives.bson({"db": "db", "collection": "c", "EOF": True, "CRC": 0}) + mongo_archives.TERMINATOR
    path = tmp_path / "a.archive"
    path.write_bytes(data[: -len(eof)])
    with pytest.raises(mongo_archive.ArchiveError, match=r"end marker of db\.c"):
        mongo_archive.read(path)


def test_truncated_compressed_archive_is_named(tmp_path):
    data = gzip.compress(mongo_archives.archive(COLLECTIONS))
    path = tmp_path / "a.archive"
    path.write_bytes(data[: len(data) - 20])
    with pytest.raises(mongo_archive.ArchiveError, match="compressed archive is damaged|truncated"):
        mongo_archive.read(path)


def test_flipped_bytes_in_a_compressed_archive_are_named(tmp_path):
    data = bytearray(gzip.compress(mongo_archives.archive(COLLECTIONS)))
    middle = len(data) // 2
    data[middle:middle + 8] = bytes(b ^ 0xFF for b in data[middle:middle + 8])
    path = tmp_path / "a.archive"
    path.write_bytes(bytes(data))
    with pytest.raises(mongo_archive.ArchiveError):
        mongo_archive.read(path)


def test_corrupt_document_length_is_named(tmp_path):
    data = bytearray(mongo_archives.archive({("db", "c"): 3}))
    header_end = 4 + struct.unpack_from("<i", data, 4)[0]
    data[header_end:header_end + 4] = struct.pack("<i", 2)
    path = tmp_path / "a.archive"
    path.write_bytes(bytes(data))
    with pytest.raises(mongo_archive.ArchiveError, match="corrupt"):
        mongo_archive.read(path)


def test_archive_cut_right_after_its_prelude_is_refused(tmp_path):
    # Found by the property below: the prelude lists the collections and ends with a terminator, so
    # a cut there looked like a complete archive of empty collections.
    data = mongo_archives.archive({("chajipoa", "a"): 12}, segment=2)
    prelude_end = data.index(b"\xff\xff\xff\xff") + 4
    path = tmp_path / "a.archive"
    path.write_bytes(data[:prelude_end])
    with pytest.raises(mongo_archive.ArchiveError, match="end marker of chajipoa.a"):
        mongo_archive.read(path)


def test_empty_collection_closed_by_its_end_marker_is_read(tmp_path):
    path = mongo_archives.write(tmp_path / "a.archive", {("chajipoa", "empty"): 0, ("chajipoa", "full"): 3})
    assert counts(mongo_archive.read(path)) == {("chajipoa", "empty"): 0, ("chajipoa", "full"): 3}


def test_empty_archive_of_a_server_without_collections(tmp_path):
    path = mongo_archives.write(tmp_path / "a.archive", {})
    assert mongo_archive.read(path)["collections"] == []


# Collections that each hold documents: every namespace then has data and an end marker, so no
# prefix of the archive is itself a complete archive.
ARCHIVES = st.fixed_dictionaries({
    "collections": st.dictionaries(st.tuples(st.sampled_from(["chajipoa", "zemo"]), st.text("abcdef", min_size=1, max_size=6)),
                                   st.integers(1, 30), min_size=1, max_size=4),
    "segment": st.integers(1, 7),
    "oplog_entries": st.one_of(st.none(), st.integers(1, 5)),
})


@settings(max_examples=150, deadline=None)
@given(ARCHIVES, st.floats(0, 1, exclude_max=True))
def test_every_strict_prefix_of_an_archive_is_refused_and_the_whole_one_read_exactly(tmp_path_factory, spec, cut):
    data = mongo_archives.archive(spec["collections"], segment=spec["segment"], oplog_entries=spec["oplog_entries"])
    path = tmp_path_factory.mktemp("archive") / "a.archive"
    path.write_bytes(data)
    expected = dict(spec["collections"])
    if spec["oplog_entries"] is not None:
        expected[("", "oplog")] = spec["oplog_entries"]
    assert counts(mongo_archive.read(path)) == expected
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(mongo_archive.ArchiveError):
        mongo_archive.read(path)
