"""mongodump archives built in Python, for the tests: MongoDB's tools cannot be installed here.

Written from the archive format specification of mongo-tools (common/archive), independently of
plugins/module_utils/mongo_archive.py, which reads them: magic number, header, collection
metadata, terminator, then each collection's documents in segments interleaved with the other
collections', each collection closed by an EOF header. A fixture for the tests, not a mongodump.

stand_in_mongodump() writes a `mongodump` that builds such archives, for the backup program's tests.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import struct
import sys
from pathlib import Path

TERMINATOR = b"\xff\xff\xff\xff"


def bson(fields: dict) -> bytes:
    """A flat BSON document of strings, booleans and integers."""
    body = b""
    for name, value in fields.items():
        key = name.encode() + b"\x00"
        if isinstance(value, bool):
            body += b"\x08" + key + (b"\x01" if value else b"\x00")
        elif isinstance(value, int):
            body += (b"\x10" + key + struct.pack("<i", value) if -2 ** 31 <= value < 2 ** 31
                     else b"\x12" + key + struct.pack("<q", value))
        else:
            encoded = str(value).encode() + b"\x00"
            body += b"\x02" + key + struct.pack("<i", len(encoded)) + encoded
    return struct.pack("<i", len(body) + 5) + body + b"\x00"


def _incompressible(seed: int, size: int) -> str:
    """Hex text that compresses about as well as real documents do (about 2:1), unlike repeated text."""
    return "".join(hashlib.blake2b(f"{seed}-{part}".encode(), digest_size=32).hexdigest()
                   for part in range(size // 64 + 1))[:size]


def archive(collections: dict[tuple[str, str], int], *, server_version: str = "7.0.14", segment: int = 3,
            oplog_entries: int | None = None, note_bytes: int | None = None) -> bytes:
    """An uncompressed archive: collections maps (database, collection) to its number of documents.

    Each document has an _id, a station and a note of note_bytes characters (by default 0 to 39).
    """
    data = bytearray(struct.pack("<I", 0x8199E26D))
    data += bson({"concurrent_collections": 4, "version": "0.1", "server_version": server_version,
                  "tool_version": "100.10.0"})
    for database, collection in collections:
        data += bson({"db": database, "collection": collection, "metadata": '{"indexes":[]}', "size": 0})
    data += TERMINATOR
    namespaces = dict(collections)
    if oplog_entries is not None:
        namespaces[("", "oplog")] = oplog_entries
    remaining = dict(namespaces)
    # Round-robin segments, as mongodump's concurrent collection dumps interleave them.
    while any(remaining.values()):
        for (database, collection), left in remaining.items():
            if not left:
                continue
            batch = min(segment, left)
            data += bson({"db": database, "collection": collection, "EOF": False, "CRC": 0})
            for number in range(namespaces[(database, collection)] - left, namespaces[(database, collection)] - left + batch):
                note = "x" * (number % 40) if note_bytes is None else _incompressible(number, note_bytes)
                data += bson({"_id": number, "station": f"DAR-{number:05d}", "note": note})
            data += TERMINATOR
            remaining[(database, collection)] = left - batch
    for database, collection in namespaces:
        data += bson({"db": database, "collection": collection, "EOF": True, "CRC": 0}) + TERMINATOR
    return bytes(data)


def write(path: Path, collections: dict[tuple[str, str], int], *, compress: bool = True, **options) -> Path:
    data = archive(collections, **options)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


STAND_IN = '''#!{python}
# Stand-in for mongodump in the backup program's tests (a mock, named as such): records its
# arguments and its options file, then writes an archive or fails as its plan file says.
import gzip, json, os, stat, sys
sys.path.insert(0, {tests!r})
import mongo_archives
plan = json.load(open({plan!r}))
arguments = sys.argv[1:]
options = next(a.split("=", 1)[1] for a in arguments if a.startswith("--config="))
json.dump({{"argv": arguments, "options": open(options).read(),
           "options_mode": stat.S_IMODE(os.stat(options).st_mode)}}, open({record!r}, "w"))
if plan.get("exit"):
    print("Failed: can't create session: connection refused", file=sys.stderr)
    sys.exit(plan["exit"])
target = next(a.split("=", 1)[1] for a in arguments if a.startswith("--archive="))
data = mongo_archives.archive({{tuple(k.split(".", 1)): v for k, v in plan["collections"].items()}},
                              oplog_entries=2 if "--oplog" in arguments else None)
if plan.get("truncate"):
    data = data[: len(data) // 2]
open(target, "wb").write(gzip.compress(data) if "--gzip" in arguments else data)
'''


def stand_in_mongodump(directory: Path, plan: dict) -> tuple[Path, Path]:
    """A `mongodump` executable in directory following plan; returns (plan file, record file)."""
    plan_file, record = directory / "plan.json", directory / "record.json"
    plan_file.write_text(json.dumps(plan))
    program = directory / "mongodump"
    program.write_text(STAND_IN.format(python=sys.executable, tests=str(Path(__file__).parent),
                                       plan=str(plan_file), record=str(record)))
    program.chmod(0o755)
    return plan_file, record
