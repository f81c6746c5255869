"""Unit tests of backup_verify's check-mode plan and where it finds the manifest key; the checks
themselves, the lock and the key in use run against a real PostgreSQL in tests/integration/test_backups.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.chajipoa.platform.plugins.module_utils import backup_checks, backup_config
from ansible_collections.chajipoa.platform.plugins.modules import backup_verify


@pytest.mark.parametrize(("path", "mode", "expected"), [
    ("/b/x.dump", "quick", list(backup_checks.QUICK_CHECKS["postgresql"])),
    ("/b/x.dump", "thorough", list(backup_checks.QUICK_CHECKS["postgresql"]) + list(backup_checks.THOROUGH_CHECKS)),
    ("/b/x.dump", "deep", list(backup_checks.QUICK_CHECKS["postgresql"]) + list(backup_checks.DEEP_CHECKS)),
    ("/b/x.archive", "deep", ["manifest", "signature", "file", "size", "sha256", "collections in archive"]),
    ("/b/x.rdb", "thorough", list(backup_checks.QUICK_CHECKS["redis"])),
    ("/b/x.archive", "thorough", ["manifest", "signature", "file", "size", "sha256", "collections in archive"]),
])
def test_check_mode_lists_what_would_be_checked(path, mode, expected):
    report = backup_verify.planned_report(Path(path), Path("/b/x.manifest.json"), mode)
    assert [c["name"] for c in report["checks"]] == expected
    assert {c["status"] for c in report["checks"]} == {"planned"}


def test_ignore_kinds_choices_are_the_catalogue_kinds():
    assert backup_verify.ARGUMENT_SPEC["ignore_kinds"]["choices"] == list(backup_checks.pg_catalogue.KINDS)
    assert backup_verify.ARGUMENT_SPEC["manifest_key"]["no_log"] is True


@pytest.mark.parametrize("option, in_file, in_environment, expected", [
    ("from-option", "from-file", "from-environment", "from-option"),
    (None, "from-file", "from-environment", "from-file"),
    (None, None, "from-environment", "from-environment"),
    (None, None, None, None),
])
def test_manifest_key_comes_from_the_option_then_the_programs_env_file_then_the_environment(
        tmp_path, monkeypatch, option, in_file, in_environment, expected):
    env_file = tmp_path / "backup.env"
    env_file.write_text(f"{backup_config.MANIFEST_KEY_ENV}={in_file}\n" if in_file else "AWS_ACCESS_KEY_ID=x\n")
    if in_environment:
        monkeypatch.setenv(backup_config.MANIFEST_KEY_ENV, in_environment)
    else:
        monkeypatch.delenv(backup_config.MANIFEST_KEY_ENV, raising=False)
    config = backup_config.Config({"backup_dir": str(tmp_path), "env_file": str(env_file)})
    assert backup_verify.manifest_key({"manifest_key": option}, config) == expected
