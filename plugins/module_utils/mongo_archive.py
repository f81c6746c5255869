# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""What a mongodump archive (`mongodump --archive`, optionally `--gzip`) holds, read without MongoDB.

MongoDB has no counterpart of `pg_restore --list`: mongorestore reads an archive only while
restoring into a server. So the backup program and the quick check read the archive themselves,
following the format specification of mongo-tools (common/archive):

    magic number 0x8199e26d, header document, one metadata document per collection, terminator,
    then segments (namespace header, documents, terminator) interleaved across collections, each
    namespace closed by an EOF header and a terminator.

Only the structure is walked: the documents themselves are counted and skipped, never decoded.
The gzip layer's own CRC and length trailer catch corruption and truncation of a compressed archive.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

MAGIC = 0x8199E26D
TERMINATOR = -1
_INT32 = struct.Struct("<i")
_GZIP_MAGIC = b"\x1f\x8b"
# Fixed-width BSON element types: their struct format (None: kept as raw bytes) and width.
_FIXED_WIDTH = {0x01: ("<d", 8), 0x07: (None, 12), 0x08: ("?", 1), 0x09: ("<q", 8), 0x0A: (None, 0),
                0x10: ("<i", 4), 0x11: ("<Q", 8), 0x12: ("<q", 8)}
_READ_CHUNK = 1 << 20


class ArchiveError(ValueError):
    """The file is not a complete mongodump archive; the message says where it breaks."""


def _decode(document: bytes, within: str) -> dict:
    """The top-level fields of one of the archive's own (flat) documents: strings, numbers, booleans."""
    try:
        return _fields(document)
    except (ValueError, struct.error) as error:
        raise ArchiveError(f"{within} is not a readable document ({error}): the archive is corrupt") from error


def _fields(document: bytes) -> dict:
    fields, position = {}, 4
    while position < len(document) - 1:
        kind = document[position]
        end = document.index(b"\x00", position + 1)
        name = document[position + 1:end].decode("utf-8", "replace")
        position = end + 1
        if kind == 0x02:
            length = _INT32.unpack_from(document, position)[0]
            fields[name] = document[position + 4:position + 3 + length].decode("utf-8", "replace")
            position += 4 + length
        elif kind in _FIXED_WIDTH:
            layout, width = _FIXED_WIDTH[kind]
            raw = document[position:position + width]
            fields[name] = struct.unpack(layout, raw)[0] if layout else raw
            position += width
        elif kind in (0x03, 0x04):
            position += _INT32.unpack_from(document, position)[0]
        else:
            raise ArchiveError(f"unexpected BSON element type {kind:#x} in field {name!r}")
    return fields


class _Stream:
    """Exact reads from the (decompressed) archive through a buffer, naming the structure a short read broke.

    Documents are walked in the buffer by their length prefixes: one read call per megabyte rather
    than two per document keeps an archive of small documents fast.
    """

    def __init__(self, handle):
        self.handle = handle
        self.buffer = b""
        self.position = 0
        self.consumed = 0

    @property
    def offset(self) -> int:
        return self.consumed + self.position

    def _available(self, size: int) -> bool:
        while len(self.buffer) - self.position < size:
            chunk = self.handle.read(max(_READ_CHUNK, size))
            if not chunk:
                return False
            self.consumed += self.position
            self.buffer = self.buffer[self.position:] + chunk
            self.position = 0
        return True

    def _truncated(self, within: str) -> ArchiveError:
        return ArchiveError(f"the archive ends inside {within} at byte {self.consumed + len(self.buffer)}: it is truncated")

    def exactly(self, size: int, within: str) -> bytes:
        if not self._available(size):
            raise self._truncated(within)
        data = self.buffer[self.position:self.position + size]
        self.position += size
        return data

    def _length(self, within: str) -> int:
        """The next document's length prefix, not consumed; TERMINATOR for a terminator."""
        if not self._available(4):
            raise self._truncated(within)
        length = _INT32.unpack_from(self.buffer, self.position)[0]
        if length != TERMINATOR and length < 5:
            raise ArchiveError(f"a document of {length} bytes in {within} at byte {self.offset}: the archive is corrupt")
        return length

    def document(self, within: str, *, at_end_ok: bool = False) -> bytes | None:
        """One BSON document; None for a terminator, b"" at a clean end of the archive if allowed."""
        if at_end_ok and not self._available(1):
            return b""
        length = self._length(within)
        if length == TERMINATOR:
            self.position += 4
            return None
        return self.exactly(length, within)

    def skip_document_bodies(self, within: str) -> tuple[int, int]:
        """Count and skip the documents of a segment up to its terminator: (documents, bytes)."""
        documents = size = 0
        while (length := self._length(within)) != TERMINATOR:
            if not self._available(length):
                raise self._truncated(within)
            self.position += length
            documents += 1
            size += length
        self.position += 4
        return documents, size


def _namespace(fields: dict) -> tuple[str, str]:
    return fields.get("db", ""), fields.get("collection", "")


def _label(namespace: tuple[str, str]) -> str:
    """database.collection, or the bare name of the oplog (whose database is empty)."""
    return ".".join(part for part in namespace if part)


def read(path: str | Path) -> dict:
    """The archive's header and, per namespace, its document count and bytes.

    Raises ArchiveError for anything short of a complete archive: a wrong magic number, a damaged or
    cut-off compressed stream, a document cut in half, a namespace with data but no end marker.
    """
    with open(path, "rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
    # gzip reports a cut-off stream as EOFError and a damaged one as BadGzipFile or zlib.error.
    damaged = (EOFError, gzip.BadGzipFile, zlib.error) if compressed else ()
    try:
        with (gzip.open if compressed else open)(path, "rb") as handle:
            return _walk(_Stream(handle), compressed)
    except damaged as error:
        raise ArchiveError(f"the compressed archive is damaged: {error}") from error


def _walk(stream: _Stream, compressed: bool) -> dict:
    magic = stream.exactly(4, "the magic number")
    if struct.unpack("<I", magic)[0] != MAGIC:
        raise ArchiveError(f"the file does not start with mongodump's magic number (found {magic.hex()})")
    header_document = stream.document("the header")
    if not header_document:
        raise ArchiveError("the archive has no header document")
    header = _decode(header_document, "the header")
    namespaces: dict[tuple[str, str], dict] = {}

    def entry(key):
        return namespaces.setdefault(key, {"database": key[0], "name": key[1], "documents": 0, "bytes": 0,
                                           "data": False, "closed": False})

    # A collection with metadata and no documents has no data segment: it is listed from here.
    # mongodump closes every collection it dumped with an end marker, empty ones too, so a collection
    # of the prelude without one means the archive was cut; a view has metadata only and no marker.
    while (metadata := stream.document("the collection metadata")) is not None:
        fields = _decode(metadata, "a collection's metadata")
        entry(_namespace(fields))["view"] = fields.get("type") == "view"
    while (segment_header := stream.document("a namespace header", at_end_ok=True)) != b"":
        if segment_header is None:
            raise ArchiveError(f"a terminator where a namespace header belongs, at byte {stream.offset - 4}")
        fields = _decode(segment_header, "a namespace header")
        key = _namespace(fields)
        namespace, label = entry(key), _label(key)
        if fields.get("EOF"):
            if stream.document(f"the end marker of {label}") is not None:
                raise ArchiveError(f"the end marker of {label} is not followed by a terminator")
            namespace["closed"] = True
            continue
        namespace["data"] = True
        documents, size = stream.skip_document_bodies(f"the data of {label}")
        namespace["documents"] += documents
        namespace["bytes"] += size
    unclosed = [_label(key) for key, n in namespaces.items() if not n["closed"] and not n.get("view")]
    if unclosed:
        raise ArchiveError(f"the archive ends before the end marker of {', '.join(sorted(unclosed))}: it is truncated")
    return {
        "compressed": compressed,
        "format_version": header.get("version"),
        "server_version": header.get("server_version"),
        "tool_version": header.get("tool_version"),
        "collections": [{"database": n["database"], "name": n["name"], "documents": n["documents"], "bytes": n["bytes"]}
                        for _key, n in sorted(namespaces.items())],
    }
