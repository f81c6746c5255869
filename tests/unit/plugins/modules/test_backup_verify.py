"""Unit tests of backup_verify's check-mode plan; the checks themselves run against a real
PostgreSQL in tests/integration/test_backups.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.chajipoa.platform.plugins.module_utils import backup_checks
from ansible_collections.chajipoa.platform.plugins.modules import backup_verify


@pytest.mark.parametrize(("path", "mode", "expected"), [
    ("/b/x.dump", "quick", list(backup_checks.QUICK_CHECKS["postgresql"])),
    ("/b/x.dump", "thorough", list(backup_checks.QUICK_CHECKS["postgresql"]) + list(backup_checks.THOROUGH_CHECKS)),
    ("/b/x.rdb", "thorough", list(backup_checks.QUICK_CHECKS["redis"])),
    ("/b/x.archive", "thorough", ["manifest", "signature", "file", "size", "sha256", "collections in archive"]),
])
def test_check_mode_lists_what_would_be_checked(path, mode, expected):
    report = backup_verify.planned_report(Path(path), Path("/b/x.manifest.json"), mode)
    assert [c["name"] for c in report["checks"]] == expected
    assert {c["status"] for c in report["checks"]} == {"planned"}


def test_ignore_kinds_choices_are_the_catalogue_kinds():
    assert backup_verify.ARGUMENT_SPEC["ignore_kinds"]["choices"] == list(backup_checks.pg_catalogue.KINDS)
