"""The backup playbooks against the checked-in inventories, without reaching a host: what they do
where the databases are managed services (production: RDS), decided on the controller."""
from __future__ import annotations

from tests.conftest import run_playbook
from tests.integration.test_validate_inventory import vault_file


def test_restore_in_production_fails_naming_why_and_the_rds_path(tmp_path):
    """Production's postgres group is empty (RDS): the restore, which needs the server's local
    superuser over its Unix socket, must not report success having restored nothing."""
    result = run_playbook("restore.yml", "inventories/production",
                          extra=["-e", f"@{vault_file(tmp_path)}", "-e", "restore_replace=true"])
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Cannot restore" in output and "group postgres has no host" in output, output
    assert "docs/backups.md" in output and "RDS" in output, output
    assert "UNREACHABLE" not in output, output
