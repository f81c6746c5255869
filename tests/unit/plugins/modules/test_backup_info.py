"""Unit tests of backup_info's listing on a directory of real manifests (no server needed)."""
from __future__ import annotations

import json

import pytest

from ansible_collections.chajipoa.platform.plugins.module_utils import backup_manifest
from ansible_collections.chajipoa.platform.plugins.module_utils.backup_config import Config
from ansible_collections.chajipoa.platform.plugins.modules import backup_info

KEY = "environment-key"


def add(root, kind, database, stamp, verified=None, key=KEY, tamper=False):
    name = f"{database}-{stamp}-daily"
    directory = root / kind / database
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {"format": backup_manifest.FORMAT, "format_version": 2, "kind": kind, "name": name, "database": database,
                "reason": "daily", "file": name + backup_manifest.DUMP_SUFFIX[kind], "bytes": 1, "sha256": "0" * 64,
                "started_at": f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}Z",
                "finished_at": "2026-11-23T02:00:09Z", "server_version": "15.8", "tables": [], "collections": []}
    if key:
        manifest = backup_manifest.sign(manifest, key)
    if tamper:
        manifest["bytes"] = 2
    backup_manifest.write(directory / (name + backup_manifest.MANIFEST_SUFFIX), manifest)
    if verified is not None:
        (directory / (name + ".verify.json")).write_text(json.dumps({"passed": verified}))
    return name


def listing(root, **overrides):
    return backup_info.listing(Config({"backup_dir": str(root)}), params(**overrides))


@pytest.fixture
def root(tmp_path):
    add(tmp_path, "postgresql", "chajipoa", "20261121T020000Z", verified=True)
    add(tmp_path, "postgresql", "chajipoa", "20261122T020000Z", verified=False, key=None)
    add(tmp_path, "postgresql", "chajipoa", "20261123T020000Z", tamper=True)
    add(tmp_path, "redis", "redis-cache1", "20261123T020000Z", verified=True)
    (tmp_path / "postgresql" / "chajipoa" / "junk.manifest.json").write_text("{")
    return tmp_path


def params(**overrides):
    return {"kind": None, "database": None, "name": None, "verified_only": False, "latest": None, "manifest_key": KEY,
            **overrides}


def names(found):
    return {key: [backup["name"] for backup in backups] for key, backups in found.items()}


def test_newest_first_per_database_with_signatures(root):
    found = listing(root)
    assert names(found) == {
        "postgresql/chajipoa": ["chajipoa-20261123T020000Z-daily", "chajipoa-20261122T020000Z-daily",
                                "chajipoa-20261121T020000Z-daily"],
        "redis/redis-cache1": ["redis-cache1-20261123T020000Z-daily"]}
    assert [b["signature"] for b in found["postgresql/chajipoa"]] == ["mismatch", "unsigned", "valid"]
    assert "its manifest's HMAC does not match" in found["postgresql/chajipoa"][0]["signature_message"]


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"verified_only": True, "kind": "postgresql"}, {"postgresql/chajipoa": ["chajipoa-20261121T020000Z-daily"]}),
    ({"latest": 1, "database": "chajipoa"}, {"postgresql/chajipoa": ["chajipoa-20261123T020000Z-daily"]}),
    ({"name": "chajipoa-20261122T020000Z-daily"}, {"postgresql/chajipoa": ["chajipoa-20261122T020000Z-daily"]}),
    ({"kind": "mongodb"}, {}),
])
def test_filters(root, overrides, expected):
    assert names(listing(root, **overrides)) == expected


def test_without_a_key_no_signature_is_claimed(root):
    assert all("signature" not in b for bs in listing(root, manifest_key=None).values() for b in bs)


CONFIGURED = {"postgresql": {"databases": ["chajipoa", "reports"]}, "redis": {"enabled": True, "name": "redis-cache1"},
              "mongodb": {"enabled": True, "name": "mongodb-rs0"}}


@pytest.mark.parametrize(("overrides", "expected"), [
    ({}, ["postgresql/reports", "mongodb/mongodb-rs0"]),
    # A database with backups, none of which passed its last verification, has none to give.
    ({"verified_only": True}, ["postgresql/reports", "mongodb/mongodb-rs0"]),
    ({"verified_only": True, "latest": 1, "database": "chajipoa"}, []),
    ({"kind": "redis"}, []),
    ({"kind": "postgresql"}, ["postgresql/reports"]),
    ({"database": "reports"}, ["postgresql/reports"]),
    # One backup asked for by name: the other databases are not missing it.
    ({"name": "chajipoa-20261122T020000Z-daily"}, []),
])
def test_missing_names_what_the_configuration_backs_up_and_the_listing_lacks(root, overrides, expected):
    config = Config({"backup_dir": str(root), **CONFIGURED})
    asked = params(**overrides)
    assert backup_info.missing(config, asked, backup_info.listing(config, asked)) == expected


def test_a_drill_hosts_verification_of_an_empty_bucket_finds_every_database_missing(tmp_path):
    config = Config({"backup_dir": str(tmp_path), "drill_only": True, "postgresql": {"databases": ["chajipoa"]}})
    assert backup_info.missing(config, params(), {}) == ["postgresql/chajipoa"]
