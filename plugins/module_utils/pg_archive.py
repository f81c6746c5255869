# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""A reader of pg_dump's custom-format archive (pg_dump -Fc), in one pass over the file.

Deep verification (backup_checks.py) and the backup program need what pg_restore would read, the
header, the table of contents and every data block, without a server and without reading the
file twice: the same pass hashes the whole file (the quick check's SHA-256), decompresses every
block, counts each table's COPY rows and hashes each table's block as stored. Stdlib only: the
backup program on the database hosts imports this file.

The layout, after PostgreSQL's src/bin/pg_dump/pg_backup_archiver.c and pg_backup_custom.c:
  header   "PGDMP", version (3 bytes), int size, offset size, format (1 = custom); up to archive
           version 1.14 (pg_dump 15) the compression level as an int (non-zero: zlib), from 1.15
           the algorithm as a byte (0 none, 1 gzip, 2 lz4, 3 zstd); the creation time (7 ints),
           the database name, the server's and pg_dump's versions.
  TOC      a count, then per entry: dump id, has-data flag, catalog oids, tag, description,
           section, definition, drop statement, COPY statement, namespace, tablespace, table
           access method (1.14), relkind (1.16), owner, "false", dependencies, and the data's
           offset (custom format).
  data     per block: type (1 table data, 3 large objects), dump id, then chunks (an int length
           and that many bytes; length 0 ends the block). Large objects repeat (oid, chunks)
           until oid 0. Compressed blocks are one zlib stream each (one per large object).
An int is a sign byte and int-size bytes, least significant first; a string is an int length
(-1 for NULL) and its bytes.

Speed: the file is read in large blocks; hashing (hashlib) and decompression (zlib) run in C,
the whole-file hash in a thread beside the parsing. pg_dump writes an uncompressed table's COPY
data as one chunk per row, so those blocks are scanned with bytes and regular-expression
operations over whole buffers instead of row by row in Python (_plain_copy_block).
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import re
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

MAGIC = b"PGDMP"
# The archive versions this reader knows: pg_dump 12 (1.14) writes the same layout as pg_dump 15.
MIN_VERSION, MAX_VERSION = (1, 12), (1, 16)
FORMAT_CUSTOM = 1
COMPRESSION_NAMES = {0: "none", 1: "gzip", 2: "lz4", 3: "zstd"}
BLOCK_DATA, BLOCK_LARGE_OBJECTS = 1, 3
# The custom format's data offset flags: a data block written (2) or never written (3).
OFFSET_NOT_SET, OFFSET_SET, OFFSET_NO_DATA = 1, 2, 3
_READ_SIZE = 8 * 1024 * 1024
# In an uncompressed COPY block every row ends with a newline, followed by the next chunk's header:
# a zero sign byte and a four-byte length. Text COPY escapes newlines in values and has no NUL
# bytes, so a row's only newline is its last byte, and newline + five zero bytes is the block's end
# (the last row's newline and the terminating zero-length chunk).
_CHUNK_HEADER = re.compile(rb"\n\x00([\s\S]{4})")
_BLOCK_END = b"\n\x00\x00\x00\x00\x00"
# pg_dump 15 ends each table's COPY data with the end-of-data marker and two empty lines.
_COPY_END = b"\\.\n\n\n"


class ArchiveError(ValueError):
    """An archive that cannot be read as a custom-format dump; the message says where and why."""


@dataclass
class Entry:
    """One entry of the table of contents, as pg_restore --list shows it."""

    dump_id: int
    has_data: bool
    tag: str
    desc: str
    defn: str
    copy_stmt: str
    namespace: str
    owner: str
    dependencies: list[int]
    data_state: int
    data_offset: int

    @property
    def label(self) -> str:
        return f"{self.namespace}.{self.tag}" if self.namespace else self.tag


@dataclass
class Block:
    """What the pass found in one data block."""

    dump_id: int
    kind: int
    stored_bytes: int = 0
    data_bytes: int = 0
    # COPY rows of a table's block; the number of large objects of a large-object block.
    rows: int = 0
    sha256: str = ""
    seconds: float = 0.0
    error: str | None = None


@dataclass
class Archive:
    """The archive's header, table of contents and data blocks, and the whole file's SHA-256."""

    version: tuple[int, int, int] = (0, 0, 0)
    compression: str = "none"
    compression_level: int | None = None
    dbname: str | None = None
    server_version: str | None = None
    dump_version: str | None = None
    entries: list[Entry] = field(default_factory=list)
    # Whether the whole table of contents was read (a damaged one stops the reader inside it).
    toc_complete: bool = False
    blocks: dict[int, Block] = field(default_factory=dict)
    sha256: str = ""
    bytes: int = 0
    # Why reading stopped early (a truncated or damaged archive); the hash still covers the whole file.
    error: str | None = None
    # Why the data blocks were not decompressed (an algorithm this reader does not have).
    unsupported: str | None = None

    def table_data(self) -> list[Entry]:
        return [entry for entry in self.entries if entry.desc == "TABLE DATA"]

    def table_blocks(self) -> dict[tuple[str, str], Block | None]:
        """Each table's data block by (schema, name), as manifests name tables."""
        return {(entry.namespace, entry.tag): self.blocks.get(entry.dump_id) for entry in self.table_data()}


class _Stream:
    """The file read forward in large pieces, each piece also hashed (in a thread) for the whole
    file's SHA-256."""

    def __init__(self, handle, pool: concurrent.futures.Executor):
        self._handle = handle
        self._pool = pool
        self._hash = hashlib.sha256()
        self._hashing: concurrent.futures.Future | None = None
        self._buffer = b""
        self._pos = 0
        self.consumed = 0
        self.size = 0
        self.int_size = 4
        self.offset_size = 8

    def _fill(self, need: int) -> int:
        """At least `need` bytes ready (fewer at the end of the file); returns how many are."""
        while len(self._buffer) - self._pos < need:
            piece = self._handle.read(max(_READ_SIZE, need))
            if not piece:
                break
            self._hashed(piece)
            self._buffer = self._buffer[self._pos:] + piece
            self._pos = 0
        return len(self._buffer) - self._pos

    def _hashed(self, piece: bytes) -> None:
        # hashlib releases the GIL on large buffers: the previous piece is hashed while this one
        # is parsed. One piece at a time keeps the order.
        if self._hashing is not None:
            self._hashing.result()
        self.size += len(piece)
        self._hashing = self._pool.submit(self._hash.update, piece)

    def window(self, need: int) -> tuple[bytes, int, int]:
        """The buffer with the bytes ready from the current position, as (buffer, start, stop):
        at least `need` of them unless the file ends. For bytes methods and regular expressions
        that take bounds, so that nothing is copied."""
        self._fill(need)
        return self._buffer, self._pos, len(self._buffer)

    def take(self, count: int) -> memoryview:
        if self._fill(count) < count:
            raise ArchiveError(f"the archive ends at byte {self.consumed + len(self._buffer) - self._pos} "
                               f"inside a structure of {count} bytes at byte {self.consumed}: it is truncated")
        view = memoryview(self._buffer)[self._pos:self._pos + count]
        self._pos += count
        self.consumed += count
        return view

    def at_end(self) -> bool:
        return self._fill(1) == 0

    def byte(self) -> int:
        return self.take(1)[0]

    def integer(self) -> int:
        raw = self.take(1 + self.int_size)
        value = int.from_bytes(raw[1:], "little")
        return -value if raw[0] else value

    def string(self) -> str | None:
        length = self.integer()
        if length < 0:
            return None
        return bytes(self.take(length)).decode("utf-8", errors="replace")

    def offset(self) -> tuple[int, int]:
        state = self.byte()
        return state, int.from_bytes(self.take(self.offset_size), "little")

    def finish(self) -> tuple[str, int]:
        """Read (and hash) whatever is left; the whole file's SHA-256 and size."""
        self._pos = len(self._buffer)
        while True:
            piece = self._handle.read(_READ_SIZE)
            if not piece:
                break
            self._hashed(piece)
        if self._hashing is not None:
            self._hashing.result()
        return self._hash.hexdigest(), self.size


def _read_header(stream: _Stream, archive: Archive) -> None:
    if bytes(stream.take(5)) != MAGIC:
        raise ArchiveError("the file does not begin with PGDMP: it is not a pg_dump custom-format archive")
    archive.version = (stream.byte(), stream.byte(), stream.byte())
    if not MIN_VERSION <= archive.version[:2] <= MAX_VERSION:
        raise ArchiveError(f"archive version {archive.version[0]}.{archive.version[1]} is not one this reader knows "
                           f"({MIN_VERSION[0]}.{MIN_VERSION[1]} to {MAX_VERSION[0]}.{MAX_VERSION[1]})")
    stream.int_size, stream.offset_size = stream.byte(), stream.byte()
    archive_format = stream.byte()
    if archive_format != FORMAT_CUSTOM:
        raise ArchiveError(f"archive format {archive_format} is not the custom format (pg_dump -Fc)")
    if archive.version[:2] >= (1, 15):
        algorithm = stream.byte()
        archive.compression = COMPRESSION_NAMES.get(algorithm, f"unknown algorithm {algorithm}")
    else:
        archive.compression_level = stream.integer()
        archive.compression = "gzip" if archive.compression_level != 0 else "none"
    for _field in range(7):  # creation time: seconds, minutes, hours, day, month, year, DST
        stream.integer()
    archive.dbname, archive.server_version, archive.dump_version = stream.string(), stream.string(), stream.string()


def _read_toc(stream: _Stream, archive: Archive) -> None:
    count = stream.integer()
    version = archive.version[:2]
    for _index in range(count):
        dump_id, has_data = stream.integer(), stream.integer()
        stream.string(), stream.string()  # catalog table oid and object oid
        tag, desc = stream.string(), stream.string()
        stream.integer()  # section
        defn, _drop, copy_stmt, namespace = stream.string(), stream.string(), stream.string(), stream.string()
        stream.string()  # tablespace
        if version >= (1, 14):
            stream.string()  # table access method
        if version >= (1, 16):
            stream.integer()  # relkind
        owner = stream.string()
        stream.string()  # "false": the former WITH OIDS flag
        dependencies = []
        while (dependency := stream.string()) is not None:
            dependencies.append(int(dependency))
        data_state, data_offset = stream.offset()
        archive.entries.append(Entry(dump_id, bool(has_data), tag or "", desc or "", defn or "", copy_stmt or "",
                                     namespace or "", owner or "", dependencies, data_state, data_offset))


def _chunks(stream: _Stream, digest):
    """Each chunk of one stream of chunks (a table's block, or one large object) up to its
    zero-length end; every byte read is also fed to the block's digest."""
    while True:
        header = stream.take(1 + stream.int_size)
        digest.update(header)
        length = int.from_bytes(header[1:], "little")
        if header[0] or not length:
            if header[0]:
                raise ArchiveError(f"a negative chunk length at byte {stream.consumed - len(header)}: the data is damaged")
            return
        chunk = stream.take(length)
        digest.update(chunk)
        yield chunk


def _inflate(stream: _Stream, digest, compressed: bool, label: str, block: Block) -> bytes:
    """One stream of chunks, decompressed piece by piece; returns the data's last bytes (how a
    COPY block ends). A zlib error is recorded on the block and the remaining chunks are still
    walked, so the next blocks can be read."""
    inflater = zlib.decompressobj() if compressed else None
    tail = b""
    for chunk in _chunks(stream, digest):
        if block.error:
            continue
        if inflater is None:
            data = chunk
        else:
            try:
                data = inflater.decompress(chunk)
            except zlib.error as error:
                block.error = f"{label}: the compressed data is damaged at byte {stream.consumed - len(chunk)} (zlib: {error})"
                continue
        block.data_bytes += len(data)
        if block.kind == BLOCK_DATA:
            block.rows += data.count(b"\n")
        tail = (tail + data[-len(_COPY_END):])[-len(_COPY_END):]
    if inflater is not None and not block.error and not inflater.eof:
        block.error = f"{label}: the compressed data ends before its zlib stream does"
    return tail


def _plain_copy_block(stream: _Stream, digest, block: Block) -> bytes:
    """An uncompressed table's COPY block, one chunk per row, scanned a buffer at a time.

    Each span handed to the regular expression ends where no chunk header can straddle it (no
    newline among its last five bytes); the lengths found are summed and must account for every
    byte of the rows, so a block that is not laid out this way fails instead of being miscounted.
    """
    first = stream.take(1 + stream.int_size)
    digest.update(first)
    if first[0]:
        raise ArchiveError(f"a negative chunk length at byte {stream.consumed - len(first)}: the data is damaged")
    expected = int.from_bytes(first[1:], "little")
    if not expected:
        return b""
    payload = 0
    tail = b""
    need = len(_BLOCK_END)
    while True:
        buffer, start, stop = stream.window(need)
        end = buffer.find(_BLOCK_END, start, stop)
        cut = end + 1 if end >= 0 else stop
        while end < 0 and cut > start and (newline := buffer.rfind(b"\n", max(cut - 5, start), cut)) >= 0:
            cut = newline
        if cut <= start:
            if stop - start < need:
                raise ArchiveError(f"the archive ends inside the data of entry {block.dump_id} (byte {stream.consumed + stop - start})")
            need = 2 * (stop - start)
            continue
        lengths = b"".join(_CHUNK_HEADER.findall(buffer, start, cut))
        found = len(lengths) // 4
        expected += sum(struct.unpack(f"<{found}I", lengths))
        block.rows += buffer.count(b"\n", start, cut) - lengths.count(b"\n")
        payload += cut - start - 5 * found
        tail = (tail + buffer[max(cut - len(_COPY_END), start):cut])[-len(_COPY_END):]
        digest.update(stream.take(cut - start))
        need = len(_BLOCK_END)
        if end >= 0:
            break
    digest.update(stream.take(len(_BLOCK_END) - 1))
    block.data_bytes = payload
    if payload != expected:
        raise ArchiveError(f"the chunk lengths of entry {block.dump_id} ({expected} bytes) do not add up to its rows "
                           f"({payload} bytes): the data is damaged or not laid out as pg_dump writes it")
    return tail


def _finish_copy(block: Block, tail: bytes, label: str) -> None:
    """Rows are the COPY data's lines, less the end-of-data marker pg_dump appends."""
    if tail.endswith(_COPY_END):
        block.rows -= _COPY_END.count(b"\n")
    elif tail and not tail.endswith(b"\n") and not block.error:
        block.error = f"{label}: the table's data does not end with a complete row"


def _data_block(stream: _Stream, archive: Archive, entries: dict[int, Entry]) -> Block:
    kind, dump_id = stream.byte(), stream.integer()
    entry = entries.get(dump_id)
    if kind not in (BLOCK_DATA, BLOCK_LARGE_OBJECTS) or entry is None:
        raise ArchiveError(f"a data block of type {kind} for entry {dump_id} at byte {stream.consumed}: "
                           "no such entry in the table of contents, the archive is damaged")
    block = Block(dump_id, kind)
    started, begin = time.perf_counter(), stream.consumed
    digest = hashlib.sha256()
    compressed = archive.compression == "gzip"
    if kind == BLOCK_DATA:
        tail = (_inflate(stream, digest, True, entry.label, block) if compressed
                else _plain_copy_block(stream, digest, block))
        _finish_copy(block, tail, entry.label)
    else:
        while (oid := stream.integer()) != 0:
            block.rows += 1
            _inflate(stream, digest, compressed, f"large object {oid}", block)
    block.stored_bytes = stream.consumed - begin
    block.sha256 = digest.hexdigest()
    block.seconds = round(time.perf_counter() - started, 4)
    return block


def read(path: Path | str) -> Archive:
    """Read a custom-format archive once: header, table of contents, every data block, and the
    file's SHA-256 and size.

    Damage does not raise once the header is read: why reading stopped is in archive.error (the
    blocks read before stay), a damaged block's own error in its Block, and the hash covers the
    whole file in every case, so the quick checks can still say what they see. A compression
    this reader lacks (lz4, zstd) leaves the blocks unread, saying so in archive.unsupported.
    """
    return _read(path, data=True)


def read_toc(path: Path | str) -> Archive:
    """The header and the table of contents only, from the start of the file: no data blocks,
    archive.sha256 empty. Where names must be exact (pg_restore --list prints a table's schema, name
    and owner separated by spaces that the names themselves may hold)."""
    return _read(path, data=False)


def _read(path: Path | str, data: bool) -> Archive:
    archive = Archive()
    with open(path, "rb", buffering=0) as handle, concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        stream = _Stream(handle, pool)
        try:
            _read_header(stream, archive)
            _read_toc(stream, archive)
            archive.toc_complete = True
            if not data:
                return archive
            if archive.compression not in ("none", "gzip"):
                archive.unsupported = (f"the archive is compressed with {archive.compression}, which this reader cannot "
                                       "decompress (it reads uncompressed and gzip archives, all that pg_dump 15 writes)")
            else:
                entries = {entry.dump_id: entry for entry in archive.entries}
                while not stream.at_end():
                    block = _data_block(stream, archive, entries)
                    archive.blocks[block.dump_id] = block
        except ArchiveError as error:
            archive.error = str(error)
        archive.sha256, archive.bytes = stream.finish()
    return archive
