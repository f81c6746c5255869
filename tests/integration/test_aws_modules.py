"""docdb_cluster and elasticache_replication_group run as Ansible runs them (ansible-playbook, the
connection through module_defaults of group/chajipoa.platform.aws), against moto's server in this
process, with every result read back through boto3.

One lifecycle, as a module's integration test goes (check mode, apply, rerun, change, delete), runs
once for the test module (fixture `lifecycle`: four playbook runs, both modules side by side, to keep
the suite quick); each test asserts one step of it.

What moto lacks, and so what these tests do not prove (each named where it matters):
- DocumentDB: moto has none; its RDS backend serves DocumentDB's API once it accepts the engine docdb
  (fixture moto_rds_accepts_docdb, the only change made to moto). moto's DescribeDBClusterParameters
  lists only parameters set through ModifyDBClusterParameterGroup (AWS lists the family's defaults
  too), which is enough here: the module sets tls itself.
- ElastiCache: moto's CreateReplicationGroup makes one member whatever NumCacheClusters says (it
  honours only ReplicasPerNodeGroup), and it lacks IncreaseReplicaCount/DecreaseReplicaCount; so the
  group whose rerun must change nothing has one node (no failover), and the highly available group
  (two nodes, failover, Multi-AZ) is read back and then only planned again in check mode, where the
  member count is the one difference. moto's member clusters cannot be described
  (DescribeCacheClusters answers CacheClusterNotFound), so the engine version, subnet group,
  security groups and parameter group are not compared (the module warns). moto's
  ModifyReplicationGroup changes only the description, engine, node type, automatic failover,
  Multi-AZ and snapshot retention: it accepts AuthToken with AuthTokenUpdateStrategy (and
  SecurityGroupIds, EngineVersion, TransitEncryption*) and changes nothing (AuthTokenLastModifiedDate
  stays), so a rotation is proven only as far as the module reporting it without the token.
  DescribeReplicationGroups has no reader endpoint. DeleteReplicationGroup leaves the group
  "deleting" for ever and ignores FinalSnapshotIdentifier, so deletion runs with wait: false and no
  final snapshot is checked.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MASTER_PASSWORD = "docdb-Master-pass-4821"
AUTH_TOKEN = "redis-auth-token-7730-abcdefgh"
SUFFIX = uuid.uuid4().hex[:6]
DOCDB = f"docs-{SUFFIX}"
REDIS = f"cache-{SUFFIX}"
REDIS_HA = f"cache-ha-{SUFFIX}"
SECURITY_GROUP = "sg-0123456789abcdef0"


def docdb(**options) -> dict:
    return {"chajipoa.platform.docdb_cluster": {
        "cluster_id": DOCDB, "master_username": "chajipoa", "master_password": MASTER_PASSWORD,
        "kms_key_id": "alias/chajipoa-data", "vpc_security_group_ids": [SECURITY_GROUP],
        "tags": {"environment": "test"}, **options}}


def redis(**options) -> dict:
    """The group the idempotence is proven on: one node, as moto makes whatever is asked (see above)."""
    return {"chajipoa.platform.elasticache_replication_group": {
        "replication_group_id": REDIS, "num_cache_clusters": 1, "automatic_failover": False, "multi_az": False,
        "kms_key_id": "alias/chajipoa-data", "auth_token": AUTH_TOKEN, "tags": {"environment": "test"}, **options}}


def redis_ha(**options) -> dict:
    """The production shape: two nodes, automatic failover, Multi-AZ (the module's defaults)."""
    return {"chajipoa.platform.elasticache_replication_group": {
        "replication_group_id": REDIS_HA, "auth_token": AUTH_TOKEN, **options}}


def task(name: str, action: dict, **keywords) -> dict:
    return {"name": name, **action, **keywords}


def play(moto, directory: Path, tasks: list[dict]) -> dict[str, dict]:
    """Runs the tasks on localhost with ansible-playbook --diff and returns each task's result by its name."""
    playbook = directory / f"play-{len(list(directory.iterdir()))}.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "AWS modules against moto", "hosts": "localhost", "gather_facts": False,
        "module_defaults": {"group/chajipoa.platform.aws": moto.module_options}, "tasks": tasks}]))
    env = dict(os.environ, **moto.env, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_NOCOLOR="1",
               ANSIBLE_CACHE_PLUGIN="memory")
    done = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}",
                           "--diff", str(playbook)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    try:
        output = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"ansible-playbook gave no JSON (rc {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return {entry["task"]["name"]: entry["hosts"]["localhost"] for entry in output["plays"][0]["tasks"]}


def tag_dict(tags: list[dict]) -> dict:
    return {tag["Key"]: tag["Value"] for tag in tags}


def readback(moto) -> dict:
    """What boto3 sees of the three resources (None for each one that does not exist)."""
    docdb_client, elasticache = moto.client("docdb"), moto.client("elasticache")
    seen: dict = {}
    try:
        seen["cluster"] = docdb_client.describe_db_clusters(DBClusterIdentifier=DOCDB)["DBClusters"][0]
    except docdb_client.exceptions.DBClusterNotFoundFault:
        seen["cluster"] = None
    seen["instances"] = {item["DBInstanceIdentifier"]: item for item in docdb_client.describe_db_instances(
        Filters=[{"Name": "db-cluster-id", "Values": [DOCDB]}])["DBInstances"]} if seen["cluster"] else {}
    try:
        seen["tls"] = {p["ParameterName"]: p["ParameterValue"] for p in docdb_client.describe_db_cluster_parameters(
            DBClusterParameterGroupName=f"{DOCDB}-params")["Parameters"]}.get("tls")
    except docdb_client.exceptions.DBParameterGroupNotFoundFault:
        seen["tls"] = None
    seen["cluster_tags"] = tag_dict(docdb_client.list_tags_for_resource(
        ResourceName=seen["cluster"]["DBClusterArn"])["TagList"]) if seen["cluster"] else None
    seen["snapshots"] = [s["DBClusterSnapshotIdentifier"] for s in docdb_client.describe_db_cluster_snapshots(
        DBClusterIdentifier=DOCDB, SnapshotType="manual")["DBClusterSnapshots"]]
    for key, group in (("redis", REDIS), ("redis_ha", REDIS_HA)):
        try:
            seen[key] = elasticache.describe_replication_groups(ReplicationGroupId=group)["ReplicationGroups"][0]
        except elasticache.exceptions.ReplicationGroupNotFoundFault:
            seen[key] = None
    seen["redis_tags"] = tag_dict(elasticache.list_tags_for_resource(ResourceName=seen["redis"]["ARN"])["TagList"]) \
        if seen["redis"] else None
    return seen


@pytest.fixture(scope="module")
def lifecycle(moto_rds_accepts_docdb, tmp_path_factory) -> dict:
    """Each step's task results and what boto3 read back after it, by step name. Four playbook runs:
    a step holds the tasks that the same read-back serves, with a task's own check_mode where the
    step mixes planning with doing (then the doing task's diff, read from AWS just before it, shows
    that the planning changed nothing)."""
    moto = moto_rds_accepts_docdb
    kms = moto.client("kms")
    key = kms.create_key(Description="chajipoa data")["KeyMetadata"]
    kms.create_alias(AliasName="alias/chajipoa-data", TargetKeyId=key["KeyId"])
    directory = tmp_path_factory.mktemp("aws-plays")
    steps: dict = {"key_arn": key["Arn"]}

    def step(name: str, tasks: list[dict]) -> None:
        steps[name] = {"results": play(moto, directory, tasks), "seen": readback(moto)}

    plan = {"check_mode": True}
    changed_docdb = docdb(backup_retention_period=14, instance_count=3, tls=False)
    changed_redis = redis(snapshot_retention_limit=14, description="sessions and rate limits")
    step("check", [task("caller", {"amazon.aws.aws_caller_info": {}}), task("docdb", docdb(), **plan),
                   task("redis", redis(), **plan)])
    step("apply", [task("docdb", docdb()), task("redis", redis()), task("redis_ha", redis_ha()),
                   task("docdb_rerun", docdb()), task("redis_rerun", redis()), task("redis_ha_plan", redis_ha(), **plan)])
    rotate = {**changed_redis["chajipoa.platform.elasticache_replication_group"], "update_auth_token": "always"}
    step("change", [
        task("docdb_plan", changed_docdb, **plan), task("redis_plan", changed_redis, **plan),
        task("docdb_unencrypted", docdb(storage_encrypted=False, kms_key_id=None), ignore_errors=True, **plan),
        task("redis_port", redis(port=6380), ignore_errors=True, **plan),
        task("docdb_absent", docdb(state="absent"), ignore_errors=True),
        task("redis_absent", redis(state="absent"), ignore_errors=True),
        task("docdb", changed_docdb), task("redis", {"chajipoa.platform.elasticache_replication_group": rotate})])
    step("delete", [task("docdb", docdb(state="absent", allow_delete=True)),
                    task("redis", redis(state="absent", allow_delete=True, wait=False))])
    return steps


def test_check_mode_creates_nothing_and_reports_the_plan(lifecycle):
    results, seen = lifecycle["check"]["results"], lifecycle["check"]["seen"]
    assert seen["cluster"] is None and seen["tls"] is None and seen["redis"] is None and seen["redis_ha"] is None
    for name in ("docdb", "redis"):
        assert results[name]["changed"] is True, results[name]
        assert results[name]["diff"]["before"] == {}
    assert results["docdb"]["diff"]["after"]["instances"] == [f"{DOCDB}-1", f"{DOCDB}-2"]
    assert results["docdb"]["diff"]["after"]["kms_key_id"] == lifecycle["key_arn"]
    assert results["redis"]["diff"]["after"]["transit_encryption"] is True
    assert results["docdb"]["cluster"] == {} and results["redis"]["replication_group"] == {}


def test_the_connection_group_reaches_amazon_aws_modules_too(lifecycle):
    """meta/runtime.yml's group extends amazon.aws.aws: its module_defaults took this module to moto."""
    assert lifecycle["check"]["results"]["caller"]["account"] == "123456789012"


def test_docdb_cluster_is_created_encrypted_with_tls_and_its_instances(lifecycle):
    result, seen = lifecycle["apply"]["results"]["docdb"], lifecycle["apply"]["seen"]
    cluster = seen["cluster"]
    assert result["changed"] is True
    assert cluster["Engine"] == "docdb" and cluster["EngineVersion"] == "5.0.0" and cluster["Port"] == 27017
    assert cluster["StorageEncrypted"] is True and cluster["KmsKeyId"] == lifecycle["key_arn"]
    assert cluster["DeletionProtection"] is True and cluster["BackupRetentionPeriod"] == 7
    assert cluster["DBClusterParameterGroup"] == f"{DOCDB}-params" and seen["tls"] == "enabled"
    assert [g["VpcSecurityGroupId"] for g in cluster["VpcSecurityGroups"]] == [SECURITY_GROUP]
    assert sorted(seen["instances"]) == [f"{DOCDB}-1", f"{DOCDB}-2"]
    assert {i["DBInstanceClass"] for i in seen["instances"].values()} == {"db.t3.medium"}
    assert result["cluster"]["endpoint"] == cluster["Endpoint"] and result["cluster"]["reader_endpoint"] == cluster["ReaderEndpoint"]
    assert result["cluster"]["instances"] == [f"{DOCDB}-1", f"{DOCDB}-2"] and result["cluster"]["status"] == "available"


def test_replication_groups_are_created_encrypted_with_an_auth_token(lifecycle):
    """MemberClusters: moto makes one member of the two asked for (see the module docstring)."""
    results, seen = lifecycle["apply"]["results"], lifecycle["apply"]["seen"]
    for name in ("redis", "redis_ha"):
        group = seen[name]
        assert results[name]["changed"] is True
        assert group["AtRestEncryptionEnabled"] is True and group["TransitEncryptionEnabled"] is True
        assert group["AuthTokenEnabled"] is True and group["SnapshotRetentionLimit"] == 7
        assert group["CacheNodeType"] == "cache.t4g.small" and group["NodeGroups"][0]["PrimaryEndpoint"]["Port"] == 6379
        assert results[name]["replication_group"]["primary_endpoint"] == group["NodeGroups"][0]["PrimaryEndpoint"]["Address"]
    assert seen["redis"]["KmsKeyId"] == lifecycle["key_arn"]
    assert seen["redis_ha"]["AutomaticFailover"] == "enabled" and seen["redis_ha"]["MultiAZ"] == "enabled"
    assert seen["redis"]["AutomaticFailover"] == "disabled" and seen["redis"]["MultiAZ"] == "disabled"
    assert results["redis_ha"]["replication_group"]["auth_token_enabled"] is True


def test_tags_are_applied(lifecycle):
    seen = lifecycle["apply"]["seen"]
    assert seen["cluster_tags"] == {"environment": "test"} and seen["redis_tags"] == {"environment": "test"}


def test_second_run_changes_nothing(lifecycle):
    """The rerun is in the apply step, so the apply step's read-back is after it too."""
    results = lifecycle["apply"]["results"]
    for name in ("docdb_rerun", "redis_rerun"):
        assert results[name]["changed"] is False, results[name]["diff"]
        assert results[name]["diff"]["before"] == results[name]["diff"]["after"]
    assert "not compared" in " ".join(results["redis_rerun"].get("warnings", []))


def test_the_highly_available_group_differs_only_in_what_moto_did_not_make(lifecycle):
    """Planned in check mode: everything as asked but the member count moto got wrong (1 of 2)."""
    diff = lifecycle["apply"]["results"]["redis_ha_plan"]["diff"]
    assert {key for key in diff["after"] if diff["after"][key] != diff["before"].get(key)} == {"num_cache_clusters"}
    assert (diff["before"]["num_cache_clusters"], diff["after"]["num_cache_clusters"]) == (1, 2)


def test_check_diff_shows_the_changes_and_makes_none(lifecycle):
    """The plan in check mode, then the applying task's diff, read from AWS after the plan: unchanged."""
    results = lifecycle["change"]["results"]
    docdb_diff, redis_diff = results["docdb_plan"]["diff"], results["redis_plan"]["diff"]
    assert results["docdb_plan"]["changed"] is True and results["redis_plan"]["changed"] is True
    assert (docdb_diff["before"]["backup_retention_period"], docdb_diff["after"]["backup_retention_period"]) == (7, 14)
    assert (docdb_diff["before"]["tls"], docdb_diff["after"]["tls"]) == (True, False)
    assert docdb_diff["after"]["instances"] == [f"{DOCDB}-1", f"{DOCDB}-2", f"{DOCDB}-3"]
    assert (redis_diff["before"]["snapshot_retention_limit"], redis_diff["after"]["snapshot_retention_limit"]) == (7, 14)
    assert results["docdb"]["diff"]["before"] == docdb_diff["before"]
    assert results["redis"]["diff"]["before"] == redis_diff["before"]


def test_settings_aws_cannot_change_in_place_fail_naming_the_option(lifecycle):
    results = lifecycle["change"]["results"]
    assert results["docdb_unencrypted"]["failed"] is True
    assert "storage_encrypted (True -> False)" in results["docdb_unencrypted"]["msg"]
    assert "must be replaced" in results["docdb_unencrypted"]["msg"]
    assert results["redis_port"]["failed"] is True
    assert "port (6379 -> 6380)" in results["redis_port"]["msg"] and "must be replaced" in results["redis_port"]["msg"]


def test_changes_are_applied(lifecycle):
    results, seen = lifecycle["change"]["results"], lifecycle["change"]["seen"]
    assert results["docdb"]["changed"] is True and results["redis"]["changed"] is True
    assert seen["cluster"]["BackupRetentionPeriod"] == 14 and seen["tls"] == "disabled"
    assert sorted(seen["instances"]) == [f"{DOCDB}-1", f"{DOCDB}-2", f"{DOCDB}-3"]
    assert seen["redis"]["SnapshotRetentionLimit"] == 14 and seen["redis"]["Description"] == "sessions and rate limits"
    assert "restart" in " ".join(results["docdb"]["warnings"])


def test_auth_token_rotation_is_reported_without_the_token(lifecycle):
    """moto accepts the rotation and changes nothing, so only the module's side is proven here."""
    diff = lifecycle["change"]["results"]["redis"]["diff"]
    assert diff["after"]["auth_token"] == "(new value, not shown)" and "auth_token" not in diff["before"]


def test_no_secret_is_ever_returned(lifecycle):
    """Ansible masks a no_log value found in a result as ********, so a leaked secret shows as that."""
    dumped = json.dumps([step["results"] for name, step in lifecycle.items() if name != "key_arn"])
    assert MASTER_PASSWORD not in dumped and AUTH_TOKEN not in dumped and "********" not in dumped


def test_deletion_without_allow_delete_is_refused(lifecycle):
    """Refused, and the change after the refusal found both to change and read them back."""
    results, seen = lifecycle["change"]["results"], lifecycle["change"]["seen"]
    for name in ("docdb_absent", "redis_absent"):
        assert results[name]["failed"] is True and "allow_delete" in results[name]["msg"]
    assert seen["cluster"]["Status"] == "available" and seen["cluster"]["DeletionProtection"] is True
    assert results["docdb"]["changed"] is True and results["redis"]["changed"] is True
    assert len(seen["instances"]) == 3 and seen["redis"]["Status"] == "available"


def test_deletion_with_allow_delete(lifecycle):
    """The DocumentDB cluster goes (instances, final snapshot, parameter group); moto leaves a deleted
    replication group "deleting" for ever, and the module then treats it as gone."""
    results, seen = lifecycle["delete"]["results"], lifecycle["delete"]["seen"]
    assert results["docdb"]["changed"] is True and results["redis"]["changed"] is True
    assert seen["cluster"] is None and seen["tls"] is None
    assert [s for s in seen["snapshots"] if s.startswith(f"{DOCDB}-final-")]
    assert results["docdb"]["cluster"] == {}
    assert seen["redis"]["Status"] == "deleting"
    assert results["redis"]["diff"]["after"] == {} and results["redis"]["diff"]["before"]["port"] == 6379


def test_a_group_left_in_preferred_transit_mode_is_found_and_moved_to_required(moto_rds_accepts_docdb, tmp_path):
    """A group encrypted in transit but in TransitEncryptionMode preferred (TLS and plain text both
    accepted), as the two-step enabling leaves it when its second call fails: made here through
    boto3, as moto keeps the mode given on creation and returns it. The module must see it as a
    change and ask for required, in check mode and for real.

    moto's ModifyReplicationGroup ignores TransitEncryptionMode (the group stays preferred), so the
    move itself is not read back here; tests/unit/plugins/modules/test_elasticache_replication_group.py
    proves the call and that a group in required is then left alone."""
    moto, name = moto_rds_accepts_docdb, f"cache-pref-{SUFFIX}"
    moto.client("elasticache").create_replication_group(
        ReplicationGroupId=name, ReplicationGroupDescription=f"{name} (chajipoa.platform)", Engine="redis", EngineVersion="7.1",
        CacheNodeType="cache.t4g.small", NumCacheClusters=1, AutomaticFailoverEnabled=False, MultiAZEnabled=False,
        AtRestEncryptionEnabled=True, TransitEncryptionEnabled=True, TransitEncryptionMode="preferred", AuthToken=AUTH_TOKEN,
        SnapshotRetentionLimit=7)
    options = {"replication_group_id": name, "num_cache_clusters": 1, "automatic_failover": False, "multi_az": False,
               "auth_token": AUTH_TOKEN}
    action = {"chajipoa.platform.elasticache_replication_group": options}
    results = play(moto, tmp_path, [task("plan", action, check_mode=True), task("apply", action)])
    for step in ("plan", "apply"):
        diff = results[step]["diff"]
        assert results[step]["changed"] is True, results[step]
        assert {key for key in diff["after"] if diff["after"][key] != diff["before"].get(key)} == {"transit_encryption_mode"}
        assert (diff["before"]["transit_encryption_mode"], diff["after"]["transit_encryption_mode"]) == ("preferred", "required")
    assert results["plan"]["replication_group"]["transit_encryption"] is True
