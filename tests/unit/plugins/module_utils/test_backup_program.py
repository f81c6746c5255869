"""Unit tests of the backup program's pure parts: metrics text, S3 listing, credentials file.

The S3 listing test uses a stand-in paginator (a mock, named as such); the program's real S3
traffic is tested against moto in tests/integration/test_backups.py.
"""
from __future__ import annotations

import os

from ansible_collections.chajipoa.platform.plugins.module_utils import backup_program


def test_metrics_are_node_exporter_textfile_gauges():
    text = backup_program.render_metrics({
        "backups": {"postgresql/chajipoa": {"kind": "postgresql", "database": "chajipoa", "last_run": 20.0,
                                            "last_run_success": 0, "last_success": 10.0, "last_size_bytes": 5}},
        "verifications": {"postgresql/chajipoa/quick": {"kind": "postgresql", "database": "chajipoa", "mode": "quick",
                                                       "last_run": 20.0, "last_success": 1}},
    })
    lines = text.splitlines()
    assert 'chajipoa_backup_last_success_timestamp_seconds{kind="postgresql",database="chajipoa"} 10.0' in lines
    assert 'chajipoa_backup_last_run_success{kind="postgresql",database="chajipoa"} 0' in lines
    assert 'chajipoa_backup_verify_last_success{kind="postgresql",database="chajipoa",mode="quick"} 1' in lines
    assert "# TYPE chajipoa_backup_last_size_bytes gauge" in lines
    assert not any("last_duration" in line for line in lines), "families without samples are left out"
    assert text.endswith("\n")


def test_label_values_are_escaped():
    text = backup_program.render_metrics({"backups": {"x": {"kind": "postgresql", "database": 'we"ird\\db',
                                                            "last_run": 1}}, "verifications": {}})
    assert 'database="we\\"ird\\\\db"' in text


class StandInPaginator:
    """Mock of boto3's list_objects_v2 paginator: one page of the given keys."""

    def __init__(self, keys):
        self.keys = keys

    def paginate(self, **_):
        return [{"Contents": [{"Key": key} for key in self.keys]}]


class StandInClient:
    def __init__(self, keys):
        self.keys = keys

    def get_paginator(self, _):
        return StandInPaginator(self.keys)


def test_s3_listing_pairs_files_with_manifests_and_reads_reasons_with_dashes():
    prefix = "prod/db1/postgresql/chajipoa/"
    keys = [prefix + name for name in (
        "chajipoa-20261123T020000Z-daily.dump", "chajipoa-20261123T020000Z-daily.manifest.json",
        "chajipoa-20261120T101500Z-pre-deploy.dump", "chajipoa-20261120T101500Z-pre-deploy.manifest.json",
        "chajipoa-20261119T020000Z-daily.dump",  # no manifest: an interrupted upload, not a backup
    )]
    config = backup_program.Config({"backup_dir": "/x", "s3": {"bucket": "b", "prefix": "prod/db1/"}})
    backups = sorted(backup_program.s3_backups(config, StandInClient(keys), "postgresql", "chajipoa"), key=lambda b: b["time"])
    assert [(b["name"], b["reason"], b["time"]) for b in backups] == [
        ("chajipoa-20261120T101500Z-pre-deploy", "pre-deploy", "2026-11-20T10:15:00+00:00"),
        ("chajipoa-20261123T020000Z-daily", "daily", "2026-11-23T02:00:00+00:00"),
    ]
    assert backups[0]["keys"] == [prefix + "chajipoa-20261120T101500Z-pre-deploy.dump",
                                  prefix + "chajipoa-20261120T101500Z-pre-deploy.manifest.json"]


def test_credentials_file_fills_only_what_the_environment_lacks(tmp_path, monkeypatch):
    path = tmp_path / "backup.env"
    path.write_text("# comment\nAWS_ACCESS_KEY_ID=from-file\nREDIS_PASSWORD=a=b\n\n")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.delenv("REDIS_PASSWORD", raising=False)
    backup_program.load_env_file(str(path))
    assert os.environ["AWS_ACCESS_KEY_ID"] == "from-env"
    assert os.environ["REDIS_PASSWORD"] == "a=b"
    backup_program.load_env_file(str(tmp_path / "absent"))
