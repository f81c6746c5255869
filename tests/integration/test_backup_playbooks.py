"""The backup playbooks against the checked-in inventories, without reaching a host: what they do
where the databases are managed services (production: RDS), decided on the controller."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run_playbook
from tests.integration.test_validate_inventory import vault_file


# An operator limits a run to the hosts they mean; none of these selections holds localhost.
@pytest.mark.parametrize("limit", [[], ["--limit", "backup"], ["--limit", "app1.prod.chajipoa.internal"]],
                         ids=["no-limit", "limit-backup", "limit-an-app-host"])
def test_restore_in_production_fails_naming_why_and_the_rds_path(tmp_path, limit):
    """Production's postgres group is empty (RDS): the restore, which needs the server's local
    superuser over its Unix socket, must not report success having restored nothing, whatever the
    run is limited to."""
    result = run_playbook("restore.yml", "inventories/production",
                          extra=["-e", f"@{vault_file(tmp_path)}", "-e", "restore_replace=true", *limit])
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Cannot restore" in output and "group postgres has no host" in output, output
    assert "docs/backups.md" in output and "RDS" in output, output
    assert "UNREACHABLE" not in output, output


def drill_play_vars(tmp_path: Path, *inventories: str) -> dict:
    """The variables playbooks/databases.yml's drill host play gives a drill host (drill1, on this
    machine, in an overlay on the inventories), as Ansible renders them: the play's own vars and
    pre_tasks, then a task printing them in place of the role."""
    plays = yaml.safe_load((ROOT / "playbooks/databases.yml").read_text())
    (play,) = [play for play in plays if play["hosts"] == "backup_drill:!postgres"]
    names = ["backup_s3_prefix", "backup_scratch_postgres_version", "backup_drill_only"]
    probe = {**{key: value for key, value in play.items() if key not in ("roles", "gather_facts", "gather_subset")},
             "gather_facts": False,
             "tasks": [{"name": "Print the drill host's wiring",
                        "ansible.builtin.debug": {"msg": "WIRING " + "{{ {" + ", ".join(f"'{n}': {n}" for n in names) + "} | to_json }}"}}]}
    playbook = ROOT / "playbooks" / f".drill-probe-{tmp_path.name}.yml"
    overlay = tmp_path / "drill"
    (overlay / "group_vars/all").mkdir(parents=True)
    (overlay / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"backup_drill": {"hosts": {
        "drill1": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}}}))
    playbook.write_text(yaml.safe_dump([probe]))
    try:
        result = run_playbook(playbook.name, *inventories, overlay, extra=["-e", f"@{vault_file(tmp_path)}"])
    finally:
        playbook.unlink()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return json.loads(re.search(r'"msg": "WIRING (.*)"', output).group(1).replace('\\"', '"'))


@pytest.mark.parametrize("inventory, drilled, version", [
    # Production's databases are RDS (group postgres is empty): the backup host uploads the copies.
    ("inventories/production", "production/backup1.prod.chajipoa.internal/", 15),
    ("inventories/development", "development/db1/", 15),
])
def test_a_drill_host_drills_the_primarys_copies_else_the_backup_hosts(tmp_path, inventory, drilled, version):
    wiring = drill_play_vars(tmp_path, inventory)
    assert wiring == {"backup_s3_prefix": drilled, "backup_scratch_postgres_version": version, "backup_drill_only": True}
