"""Unit tests of the custom-format reader on archives built here from the format's layout
(pg_backup_archiver.c, pg_backup_custom.c): edge cases a real pg_dump seldom writes (a row whose
length bytes hold a newline, a damaged zlib stream, lz4, a cut file). Real pg_dump 15 archives
are read in tests/integration/test_deep_verification.py."""
from __future__ import annotations

import hashlib
import zlib

import pytest

from ansible_collections.chajipoa.platform.plugins.module_utils import pg_archive

COPY_END = b"\\.\n\n\n"


def integer(value: int) -> bytes:
    return bytes([value < 0]) + abs(value).to_bytes(4, "little")


def string(value: str | None) -> bytes:
    if value is None:
        return integer(-1)
    raw = value.encode()
    return integer(len(raw)) + raw


def entry(dump_id: int, desc: str, tag: str, namespace: str = "public", defn: str = "", has_data: bool = False) -> bytes:
    return (integer(dump_id) + integer(int(has_data)) + string("0") + string("0") + string(tag) + string(desc)
            + integer(1) + string(defn) + string("") + string("") + string(namespace) + string("") + string("heap")
            + string("postgres") + string("false") + string(None) + bytes([pg_archive.OFFSET_SET]) + bytes(8))


def chunks(payloads: list[bytes]) -> bytes:
    return b"".join(integer(len(p)) + p for p in payloads) + integer(0)


def archive(blocks: list[tuple[int, list[bytes]]], level: int = 0, version: tuple = (1, 14, 0),
            algorithm: int | None = None, extra_entries: list[bytes] = ()) -> bytes:
    """An archive of tables t<dump id>, each block's payloads as given (already compressed when level > 0)."""
    header = pg_archive.MAGIC + bytes(version) + bytes([4, 8, pg_archive.FORMAT_CUSTOM])
    header += bytes([algorithm]) if algorithm is not None else integer(level)
    header += b"".join(integer(0) for _field in range(7)) + string("rental") + string("15.18") + string("15.18")
    entries = [entry(dump_id, "TABLE DATA", f"t{dump_id}", has_data=True) for dump_id, _payloads in blocks] + list(extra_entries)
    toc = integer(len(entries)) + b"".join(entries)
    data = b"".join(bytes([pg_archive.BLOCK_DATA]) + integer(dump_id) + chunks(payloads) for dump_id, payloads in blocks)
    return header + toc + data


def rows(count: int, width: int = 20) -> list[bytes]:
    return [f"{n}\t{'x' * width}".encode()[: width - 1] + b"\n" for n in range(count)] + [COPY_END]


def read(tmp_path, data: bytes) -> pg_archive.Archive:
    path = tmp_path / "x.dump"
    path.write_bytes(data)
    return pg_archive.read(path)


def gzip_payloads(payloads: list[bytes], piece: int = 7) -> list[bytes]:
    stream = zlib.compress(b"".join(payloads), 6)
    return [stream[i:i + piece] for i in range(0, len(stream), piece)]


@pytest.mark.parametrize("width", [10, 11, 2570, 300], ids=["length-holds-newline", "plain", "long-rows", "mid"])
def test_uncompressed_rows_are_counted_whatever_their_length_bytes_hold(tmp_path, width):
    """A row of 10 bytes has a chunk length whose first byte is a newline."""
    data = archive([(7, rows(500, width)), (8, [COPY_END]), (9, [])])
    result = read(tmp_path, data)
    assert result.error is None and result.compression == "none" and result.dbname == "rental"
    assert [(b.dump_id, b.rows, b.error) for b in result.blocks.values()] == [(7, 500, None), (8, 0, None), (9, 0, None)]
    assert (result.sha256, result.bytes) == (hashlib.sha256(data).hexdigest(), len(data))


def test_the_table_of_contents_alone_is_the_same_as_in_a_full_read_and_stops_before_the_data(tmp_path):
    path = tmp_path / "x.dump"
    path.write_bytes(archive([(7, rows(50)), (8, [b"not a COPY block at all"])]))
    toc, full = pg_archive.read_toc(path), pg_archive.read(path)
    assert toc.toc_complete and toc.error is None
    assert toc.entries == full.entries and toc.dbname == "rental"
    assert toc.blocks == {} and toc.sha256 == ""


def test_uncompressed_blocks_are_scanned_across_read_buffers(tmp_path, monkeypatch):
    monkeypatch.setattr(pg_archive, "_READ_SIZE", 97)
    result = read(tmp_path, archive([(3, rows(2000, 13)), (4, rows(5, 40))]))
    assert result.error is None
    assert {b.dump_id: b.rows for b in result.blocks.values()} == {3: 2000, 4: 5}


def test_gzip_blocks_are_decompressed_and_counted_and_hashed_as_stored(tmp_path):
    plain, compressed = rows(300), gzip_payloads(rows(300))
    result = read(tmp_path, archive([(5, compressed)], level=6))
    block = result.blocks[5]
    assert (result.compression, block.rows, block.data_bytes) == ("gzip", 300, len(b"".join(plain)))
    stored = chunks(compressed)
    assert (block.stored_bytes, block.sha256) == (len(stored), hashlib.sha256(stored).hexdigest())


def test_a_damaged_zlib_stream_fails_its_block_and_the_next_block_is_still_read(tmp_path):
    damaged = gzip_payloads(rows(300))
    damaged[3] = bytes(b ^ 0x5A for b in damaged[3])
    result = read(tmp_path, archive([(5, damaged), (6, gzip_payloads(rows(4)))], level=6))
    assert "public.t5: the compressed data is damaged" in result.blocks[5].error
    assert result.blocks[6].rows == 4 and result.blocks[6].error is None


def test_a_table_without_its_last_row_end_is_named(tmp_path):
    result = read(tmp_path, archive([(5, gzip_payloads([b"1\tcut off"]))], level=6))
    assert result.blocks[5].error == "public.t5: the table's data does not end with a complete row"


def test_a_cut_file_stops_the_reader_but_is_hashed_whole(tmp_path):
    data = archive([(3, rows(400))])[:-700]
    result = read(tmp_path, data)
    assert "ends inside the data of entry 3" in result.error
    assert result.toc_complete and result.sha256 == hashlib.sha256(data).hexdigest()


def test_lz4_is_named_as_unsupported_and_nothing_is_decompressed(tmp_path):
    result = read(tmp_path, archive([(3, [b"\x04\x22\x4d\x18"])], version=(1, 15, 0), algorithm=2))
    assert result.compression == "lz4" and "compressed with lz4" in result.unsupported
    assert result.toc_complete and not result.blocks


@pytest.mark.parametrize("data, message", [
    (b"PK\x03\x04 a zip file", "does not begin with PGDMP"),
    (pg_archive.MAGIC + bytes([1, 9, 0]), "archive version 1.9 is not one this reader knows"),
    (pg_archive.MAGIC + bytes([1, 14, 0, 4, 8, 5]), "is not the custom format"),
])
def test_what_is_not_a_custom_archive_is_named(tmp_path, data, message):
    result = read(tmp_path, data)
    assert message in result.error and not result.toc_complete


def test_large_objects_are_decompressed_one_stream_each(tmp_path):
    header_and_toc = archive([], level=6, extra_entries=[entry(9, "BLOBS", "BLOBS", namespace="", has_data=True)])
    objects = b"".join(integer(oid) + chunks(gzip_payloads([b"\x00\n binary \x00" * 50])) for oid in (16001, 16002))
    result = read(tmp_path, header_and_toc + bytes([pg_archive.BLOCK_LARGE_OBJECTS]) + integer(9) + objects + integer(0))
    assert result.error is None and result.blocks[9].rows == 2 and result.blocks[9].data_bytes == 2 * 550
