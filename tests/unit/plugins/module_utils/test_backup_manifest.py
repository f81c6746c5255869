"""Unit tests of the manifest format: names, hashing, reading every version and refusing bad ones."""
from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest

from ansible_collections.chajipoa.platform.plugins.module_utils import backup_manifest


def manifest(**changes) -> dict:
    data = {"format": backup_manifest.FORMAT, "format_version": 2, "kind": "postgresql", "name": "chajipoa-x",
            "database": "chajipoa", "reason": "daily", "file": "chajipoa-x.dump", "bytes": 1, "sha256": "0" * 64,
            "started_at": "2026-11-23T02:00:00Z", "finished_at": "2026-11-23T02:01:00Z", "server_version": "15.18",
            "tables": [], "catalogue": {"version": 1, "objects": [], "digest": "", "sequences": []}}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_backup_names_sort_by_time_and_are_safe_as_paths():
    moment = dt.datetime(2026, 11, 23, 5, 0, tzinfo=dt.timezone(dt.timedelta(hours=3)))
    assert backup_manifest.backup_name("chajipoa", moment, "pre-deploy") == "chajipoa-20261123T020000Z-pre-deploy"
    assert backup_manifest.backup_name("a/b c", moment, "x;y") == "a_b_c-20261123T020000Z-x_y"


def test_manifest_sits_beside_its_backup():
    assert backup_manifest.manifest_path("/b/chajipoa-x.dump").as_posix() == "/b/chajipoa-x.manifest.json"
    assert backup_manifest.manifest_path("/b/redis-x.rdb").name == "redis-x.manifest.json"


def test_sha256_matches_hashlib_across_chunk_boundaries(tmp_path):
    data = bytes(range(256)) * (backup_manifest._HASH_CHUNK // 256 + 3)
    path = tmp_path / "file"
    path.write_bytes(data)
    assert backup_manifest.sha256_file(path) == (hashlib.sha256(data).hexdigest(), len(data))


def test_written_manifest_reads_back(tmp_path):
    path = tmp_path / "m.manifest.json"
    backup_manifest.write(path, manifest())
    assert backup_manifest.load(path) == manifest()
    assert [p.name for p in tmp_path.iterdir()] == ["m.manifest.json"]


def test_format_3_carries_sequence_values_that_format_2_lacks(tmp_path):
    path = tmp_path / "new.manifest.json"
    values = [{"name": "public.s", "next_value": 2, "increment": 1, "cycle": False}]
    path.write_text(json.dumps(manifest(format_version=3, sequence_values=values)))
    assert backup_manifest.load(path)["sequence_values"] == values
    path.write_text(json.dumps(manifest()))
    assert "sequence_values" not in backup_manifest.load(path)


def test_format_1_without_catalogue_is_read(tmp_path):
    path = tmp_path / "old.manifest.json"
    path.write_text(json.dumps(manifest(format_version=1, catalogue=None)))
    assert "catalogue" not in backup_manifest.load(path)


@pytest.mark.parametrize(("content", "message"), [
    (None, "does not exist"),
    ("{", "Expecting"),
    (json.dumps({"format": "other"}), "not a chajipoa-backup-manifest document"),
    (json.dumps(manifest(format_version=5)), "format_version 5 is not one of"),
    (json.dumps(manifest(format_version=3)), "missing sequence_values"),
    (json.dumps(manifest(kind="oracle")), "kind 'oracle'"),
    (json.dumps(manifest(sha256=None, tables=None)), "missing sha256, tables"),
], ids=["absent", "not-json", "other-format", "future-version", "v3-without-sequence-values", "unknown-kind",
        "missing-keys"])
def test_bad_manifests_are_refused_naming_file_and_problem(tmp_path, content, message):
    path = tmp_path / "bad.manifest.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(backup_manifest.ManifestError, match=message) as error:
        backup_manifest.load(path)
    assert str(path) in str(error.value)
