"""Quick verification of a MongoDB backup: the archive walk beside the hash, against the tools underneath.

MongoDB cannot be installed on the project's machines, so the archive is built from mongo-tools'
format specification (tests/mongo_archives.py) and gzip-compressed at mongodump's level (6), with
documents of a rental record's size. In each round, alternating who goes first:
  quick      backup_checks.quick on the archive and its manifest: SHA-256, and the archive walked
             (decompressed, every document's length followed, every collection's end marker found,
             counts compared with the manifest), the two side by side.
  baseline   `sha256sum` and `gzip -t` side by side: reading the file once to hash it and once to
             decompress it is the least any check of a compressed archive does.
Usage: python3 bench/mongodb_archive.py [--megabytes 400] [--rounds 3]; writes docs/performance.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gzip
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "collections")]

from ansible_collections.chajipoa.platform.plugins.module_utils import backup_checks, backup_manifest, mongo_archive  # noqa: E402
from bench.benchlib import record, results_log  # noqa: E402
from tests import mongo_archives  # noqa: E402

DOCUMENT_NOTE_BYTES = 200


def baseline(path: Path) -> None:
    processes = [subprocess.Popen(command, stdout=subprocess.DEVNULL) for command in
                 (["sha256sum", str(path)], ["gzip", "-t", str(path)])]
    if any(process.wait() for process in processes):
        sys.exit("sha256sum or gzip -t failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=400, help="uncompressed size of the archive")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    stamp = dt.datetime.now(dt.timezone.utc)
    log = results_log("mongodb-archive", stamp)
    documents = args.megabytes * 1_000_000 // (DOCUMENT_NOTE_BYTES + 60)
    collections = {("chajipoa", "rentals"): documents * 3 // 4, ("chajipoa", "payments"): documents // 5,
                   ("chajipoa", "stations"): documents - documents * 3 // 4 - documents // 5}
    with tempfile.TemporaryDirectory(prefix="chajipoa-bench-") as work:
        path = Path(work) / "mongodb-rs0-20261130T020000Z-bench.archive"
        data = mongo_archives.archive(collections, segment=1000, oplog_entries=1000, note_bytes=DOCUMENT_NOTE_BYTES)
        uncompressed = len(data)
        path.write_bytes(gzip.compress(data, compresslevel=6))
        del data
        sha256, size = backup_manifest.sha256_file(path)
        contents = mongo_archive.read(path)
        manifest = {"format": backup_manifest.FORMAT, "format_version": backup_manifest.CURRENT_VERSION,
                    "kind": "mongodb", "name": path.stem, "database": "mongodb-rs0", "reason": "bench", "file": path.name,
                    "bytes": size, "sha256": sha256, "started_at": "2026-11-30T02:00:00Z",
                    "finished_at": "2026-11-30T02:00:00Z", "server_version": contents["server_version"],
                    "collections": contents["collections"]}
        manifest_path = backup_manifest.manifest_path(path)
        backup_manifest.write(manifest_path, manifest)
        times = {"quick": [], "baseline": []}
        for round_no in range(args.rounds):
            contenders = [("baseline", lambda: baseline(path)),
                          ("quick", lambda: backup_checks.quick(backup_checks.Report("quick", path, manifest_path)))]
            for name, action in contenders[:: 1 if round_no % 2 else -1]:
                start = time.perf_counter()
                outcome = action()
                times[name].append(time.perf_counter() - start)
                if name == "quick" and not outcome.passed:
                    sys.exit(outcome.failure_message())
            log.write(f"round {round_no + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()) + "\n")
    median = {name: statistics.median(values) for name, values in times.items()}
    total = sum(c["documents"] for c in contents["collections"])
    text = f"""Measured {stamp:%Y-%m-%d} with `python3 bench/mongodb_archive.py --megabytes {args.megabytes} --rounds {args.rounds}`
(medians of {args.rounds} alternating rounds; 2 cores). Archive of {total:,} documents in {len(collections)} collections
and the oplog: {uncompressed / 1e6:,.0f} MB uncompressed, {size / 1e6:,.0f} MB gzip-compressed (level 6, as mongodump --gzip).

| What | Time | Against | Ratio |
|---|---|---|---|
| quick verification (SHA-256 beside the archive walk and count comparison) | {median['quick']:.2f} s = {uncompressed / 1e6 / median['quick']:,.0f} MB/s uncompressed | `sha256sum` beside `gzip -t` {median['baseline']:.2f} s | {median['quick'] / median['baseline']:.2f}x |

Raw timings: bench/results/mongodb-archive-{stamp:%Y%m%dT%H%M%SZ}.log."""
    record("mongodb-archive", text)


if __name__ == "__main__":
    main()
