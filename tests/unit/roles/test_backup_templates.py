"""The backup role's program configuration and credentials, rendered offline.

The molecule scenario backup runs the role on a real host with PostgreSQL and Redis; MongoDB cannot
be installed on these machines, so its wiring into the program is checked here: the rendered
configuration, read by the program itself, names the replica set's members and the backup user,
and the credentials file carries the password only when MongoDB is backed up.
"""
from __future__ import annotations

import pytest

import json

from ansible_collections.chajipoa.platform.plugins.module_utils import backup_program, backup_sources, gfs_retention
from tests.unit.roles import rendering


def render(template: str, mongodb_hosts: list[str], mongodb_vars: dict | None = None, **overrides):
    """Render for db1 in group postgres; mongodb_vars are the MongoDB members' own variables."""
    hostvars = {name: {"private_address": f"10.20.3.{index + 11}", **(mongodb_vars or {})}
                for index, name in enumerate(mongodb_hosts)}
    variables = {
        **rendering.role_variables("backup"),
        "inventory_hostname": "db1",
        "group_names": ["postgres"],
        "groups": {"all": ["db1", "cache1", *mongodb_hosts], "postgres": ["db1"], "mongodb": mongodb_hosts,
                   "redis": ["cache1"]},
        "hostvars": {"db1": {}, "cache1": {"private_address": "10.20.2.11", "redis_port": 6380}, **hostvars},
        "mongodb_backup_password": "mongodb-backup-secret",
        "redis_replication_password": "unused",
        "backup_manifest_key": "manifest-key-secret",
        **overrides,
    }
    return rendering.render("backup", template, variables)


def program_config(mongodb_hosts: list[str], mongodb_vars: dict | None = None, **overrides) -> backup_program.Config:
    return backup_program.Config(json.loads(render("etc/chajipoa/backup.json.j2", mongodb_hosts, mongodb_vars, **overrides)))


def test_replica_set_of_group_mongodb_is_backed_up_as_the_backup_user():
    config = program_config(["mongo1", "mongo2", "mongo3"])
    assert backup_program.targets(config) == [("postgresql", "chajipoa"), ("redis", "redis-cache1"),
                                              ("mongodb", "mongodb-rs0")]
    assert backup_sources.mongodb_uri(config.mongodb, "pw") == (
        "mongodb://backup:pw@10.20.3.11:27017,10.20.3.12:27017,10.20.3.13:27017/"
        "?authSource=admin&replicaSet=rs0&readPreference=secondaryPreferred")
    assert config.mongodb["oplog"] is True


def test_port_replica_set_and_user_come_from_the_members_own_variables():
    config = program_config(["mongo1"], {"mongodb_port": 27018, "mongodb_replica_set": "rs-dar",
                                         "mongodb_backup_user": "nightly"})
    assert config.mongodb["hosts"] == ["10.20.3.11:27018"]
    assert backup_program.targets(config)[-1] == ("mongodb", "mongodb-rs-dar")
    assert backup_sources.mongodb_uri(config.mongodb, "pw").startswith("mongodb://nightly:pw@10.20.3.11:27018/")


def test_redis_address_and_port_come_from_the_redis_hosts_own_variables():
    config = program_config([])
    assert (config.redis["host"], config.redis["port"], config.redis["user"]) == ("10.20.2.11", 6380, "replication")


def test_no_mongodb_hosts_no_mongodb_backup_and_no_password_on_disk():
    config = program_config([])
    assert [kind for kind, _database in backup_program.targets(config)] == ["postgresql", "redis"]
    assert "MONGODB_PASSWORD" not in render("etc/chajipoa/backup.env.j2", [])
    assert "MONGODB_PASSWORD=mongodb-backup-secret" in render("etc/chajipoa/backup.env.j2", ["mongo1"]).splitlines()


def test_the_program_gets_the_manifest_key():
    assert "CHAJIPOA_BACKUP_MANIFEST_KEY=manifest-key-secret" in render("etc/chajipoa/backup.env.j2", []).splitlines()


@pytest.mark.parametrize(
    ("host", "drill_hosts", "expected"),
    [
        # Without a drill host the primary verifies its own backups weekly.
        ({"group_names": ["postgres"]}, [], {"chajipoa-backup.timer": True, "chajipoa-backup-verify-weekly.timer": True,
                                             "chajipoa-backup-verify-daily.timer": True}),
        # With one, the primary leaves it to that host, which verifies the copies in S3 and takes no backups.
        ({"group_names": ["postgres"]}, ["drill1"], {"chajipoa-backup.timer": True, "chajipoa-backup-verify-weekly.timer": False,
                                                     "chajipoa-backup-verify-daily.timer": True}),
        ({"group_names": ["backup_drill"], "backup_drill_only": True}, ["drill1"],
         {"chajipoa-backup-verify-weekly.timer": True}),
        # A host dumping a managed server (group backup) verifies its own: the drill host drills the primary's.
        ({"group_names": ["backup"]}, ["drill1"], {"chajipoa-backup.timer": True, "chajipoa-backup-verify-weekly.timer": True,
                                                   "chajipoa-backup-verify-daily.timer": True}),
    ],
)
def test_the_weekly_verification_runs_on_the_drill_host_where_there_is_one(host, drill_hosts, expected):
    groups = {"all": ["db1", "cache1", *drill_hosts], "postgres": ["db1"], "redis": ["cache1"], "backup_drill": drill_hosts}
    timers = render("{{ _backup_timers }}", [], groups=groups, **host)
    assert {timer["name"]: timer["enabled"] for timer in timers} == expected
    assert all(timer["state"] == ("started" if timer["enabled"] else "stopped") for timer in timers)
    unit = render("etc/systemd/system/chajipoa-backup-verify@.service.j2", [], groups=groups,
                  template_destpath="/etc/systemd/system/chajipoa-backup-verify@.service", **host)
    # A drill host has no backups of its own: it verifies the copies in S3.
    source = "s3" if host.get("backup_drill_only") else "local"
    assert f"ExecStart=/usr/local/sbin/chajipoa-backup verify --mode thorough --latest %i --from {source}\n" in unit


def test_every_derived_variable_renders_without_a_bucket():
    """Development has no bucket; a loop over the policy file is templated before its `when`, so a
    derived variable that refuses an empty bucket failed `make dev` on db1 (every one is rendered)."""
    derived = [name for name in rendering.role_variables("backup") if name.startswith("_backup_")]
    for name in derived:
        render("{{ %s }}" % name, [], backup_s3_bucket="")
    assert render("{{ _backup_s3_iam_policy }}", [], backup_s3_bucket="") == {}
    assert render("{{ _backup_s3_iam_policy }}", [], backup_s3_bucket="chajipoa-backups")["Statement"]


@pytest.mark.parametrize("tier, given, expected", [
    ("local", {"daily_days": 3}, {"daily_days": 3, "weekly_days": 0, "monthly_days": 0, "pre_deploy_keep": 2}),
    ("s3", {"pre_deploy_keep": 9}, {"daily_days": 30, "weekly_days": 90, "monthly_days": 365, "pre_deploy_keep": 9}),
])
def test_a_partial_retention_policy_is_completed_from_its_own_tiers_defaults(tier, given, expected):
    """Ansible replaces a dict rather than merge it: an operator's {daily_days: 3} for the local
    copies keeps the local tier's other values, not the guide's long S3 policy."""
    config = program_config([], **{f"backup_retention_{tier}": given})
    assert config.retention[tier] == expected
    assert int(render("{{ _backup_s3_expire_days }}", [], **{f"backup_retention_{tier}": given})) == max(
        (expected if tier == "s3" else rendering.role_variables("backup")["backup_retention_s3"]).get(key) for key in
        ("daily_days", "weekly_days", "monthly_days"))


def test_the_retention_defaults_are_the_programs_tier_defaults():
    """The role documents in its defaults the values the program completes a partial policy with."""
    variables = rendering.role_variables("backup")
    assert {tier: variables[f"backup_retention_{tier}"] for tier in gfs_retention.TIER_POLICIES} == gfs_retention.TIER_POLICIES
