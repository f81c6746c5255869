"""playbooks/aws-production.yml (role aws_platform) against moto's server in this process: apply, a
second apply with changed=0, check mode with diff on a platform not yet built and on a changed variable,
every resource read back through boto3, the endpoints file, and the refusal to tear down, which no
selection of tasks (--tags, --skip-tags, --start-at-task on a deleting task) gets past.

One platform is applied twice for the whole module (fixture `platform`), and each test asserts one
part of it; the check-mode runs and the refused teardown change nothing, so they share it too.

What moto lacks, and so what these tests do not prove:
- DocumentDB: moto has none; its RDS backend serves DocumentDB's API once it accepts the engine
  docdb (fixture moto_rds_accepts_docdb). TLS is read from the cluster parameter group's tls.
- ElastiCache: moto's CreateReplicationGroup makes one member whatever NumCacheClusters says, so the
  platform here asks for one node (aws_platform_redis_num_cache_clusters: 1, hence no automatic
  failover): with two, every rerun would plan to add the member moto did not make. moto lacks
  ModifyCacheSubnetGroup, which an unchanged subnet group never calls.
- RDS gp3: moto's DescribeDBInstances gives no StorageThroughput for gp3 storage, on which
  amazon.aws.rds_instance fails when it compares settings (KeyError), so the platform here uses gp2
  (aws_platform_rds_storage_type); gp3 (the default) is not exercised.
- Five answers of moto differ from AWS's and make amazon.aws's modules fail or report a change on
  every run; tests/moto_deviations.py makes them answer as AWS does (DescribeDBParameterGroups of a
  missing group, DescribeDBParameters' family entries for the four parameters the role sets, without
  values, DescribeTags' resource type of NAT gateways, ScheduleKeyDeletion by ARN,
  GetObjectLockConfiguration's default retention). No resource's state or setting is faked: every value read back was set by the role.
- amazon.aws.s3_bucket and community.aws.s3_lifecycle have no check mode: Ansible skips them in
  check mode, so the bucket's plan is not shown there.
- The allowed teardown runs on a platform of its own without DocumentDB and ElastiCache: moto's
  DeleteReplicationGroup leaves the group "deleting" for ever, so a teardown that waits for it (as it
  must on AWS before the cache subnet group can go) never ends against moto; the refusal is tested on
  the full platform, and so are the refused teardowns of a selection of tasks (each stops at its first
  task, before any wait). Its bucket has no Object Lock: a locked version cannot be deleted (moto enforces
  COMPLIANCE), which stops a teardown at the bucket, before the key that decrypts it.
- Object Lock's refusal to delete a locked version, KMS's key policy and IAM's evaluation of the
  policy are AWS's enforcement, which moto does not model: the documents are read back instead.
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

from tests.moto_deviations import moto_answers_as_aws

ROOT = Path(__file__).resolve().parents[2]
# Where Ansible connects from (the bastion / AWX subnet).
SSH_SOURCE = "10.9.0.0/24"
NAME = f"t{uuid.uuid4().hex[:8]}"
SECRETS = {"aws_platform_rds_master_password": "rds-Master-pass-5521", "aws_platform_docdb_master_password": "docdbMasterPass7730",
           "aws_platform_redis_auth_token": "redis-auth-token-0123456789"}


def inventory(directory: Path, moto, name: str, **variables) -> Path:
    """A throwaway inventory: localhost in group controller, the platform's variables in group_vars."""
    (directory / "group_vars" / "all").mkdir(parents=True)
    (directory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"controller": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}}}))
    (directory / "group_vars" / "all" / "aws.yml").write_text(yaml.safe_dump({
        "aws_platform_endpoint_url": moto.endpoint_url, "aws_platform_region": moto.region, "aws_platform_name": name,
        "aws_platform_rds_storage_type": "gp2", "aws_platform_redis_num_cache_clusters": 1,
        "aws_platform_backup_prefix": "production/", "aws_platform_ssh_sources": [SSH_SOURCE], **SECRETS, **variables}))
    return directory


def run(moto, directory: Path, *args: str) -> dict:
    """ansible-playbook playbooks/aws-production.yml with the json callback: its stats, tasks, rc and output."""
    env = dict(os.environ, **moto.env, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_NOCOLOR="1",
               ANSIBLE_CACHE_PLUGIN="memory")
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        env.pop(key, None)
    done = subprocess.run(["ansible-playbook", "-i", str(directory), "playbooks/aws-production.yml", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    try:
        report = json.loads(done.stdout[done.stdout.index("{"):])
    except ValueError:
        pytest.fail(f"ansible-playbook gave no JSON (rc {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    tasks = {}
    for play in report["plays"]:
        for task in play["tasks"]:
            # Role tasks are named "<role> : <task>".
            tasks.setdefault(task["task"]["name"].split(" : ")[-1], []).append(task["hosts"].get("localhost", {}))
    failed = {name: [r.get("msg") for r in results if r.get("failed")] for name, results in tasks.items() if any(r.get("failed") for r in results)}
    return {"rc": done.returncode, "stats": report["stats"].get("localhost", {}), "failed": failed, "tasks": tasks, "stderr": done.stderr}


@pytest.fixture(scope="module")
def platform(moto_rds_accepts_docdb, tmp_path_factory):
    """The platform applied twice; the endpoints file after each run; boto3 clients for reading back.
    moto answers as AWS does (tests/moto_deviations.py) for every test of the module."""
    moto = moto_rds_accepts_docdb
    with moto_answers_as_aws():
        directory = inventory(tmp_path_factory.mktemp("aws-inventory"), moto, NAME)
        endpoints = directory / "group_vars" / "all" / "aws_endpoints.yml"
        first = run(moto, directory)
        assert first["rc"] == 0 and first["stats"]["failures"] == 0, first["failed"]
        written = endpoints.read_text()
        second = run(moto, directory)
        yield {"moto": moto, "inventory": directory, "first": first, "second": second, "written": [written, endpoints.read_text()],
               "endpoints": yaml.safe_load(endpoints.read_text())["aws_endpoints"], "client": moto.client}


def test_a_second_run_changes_nothing(platform):
    assert platform["first"]["stats"]["changed"] > 0
    assert platform["second"]["rc"] == 0 and platform["second"]["stats"]["changed"] == 0, platform["second"]["stats"]


def test_vpc_spans_two_zones_with_a_public_and_a_private_subnet_in_each(platform):
    ec2, vpc_id = platform["client"]("ec2"), platform["endpoints"]["vpc_id"]
    assert ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]["CidrBlock"] == "10.40.0.0/16"
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    tiers = {subnet["SubnetId"]: {tag["Key"]: tag["Value"] for tag in subnet["Tags"]}["chajipoa:tier"] for subnet in subnets}
    zones = {subnet["SubnetId"]: subnet["AvailabilityZone"] for subnet in subnets}
    public, private = platform["endpoints"]["subnets"]["public"], platform["endpoints"]["subnets"]["private"]
    assert {zones[s] for s in public} == {zones[s] for s in private} == {"af-south-1a", "af-south-1b"}
    assert {tiers[s] for s in public} == {"public"} and {tiers[s] for s in private} == {"private"}
    assert all(subnet["MapPublicIpOnLaunch"] == (subnet["SubnetId"] in public) for subnet in subnets)


def test_public_subnets_route_to_the_internet_and_each_private_one_through_its_zones_nat(platform):
    ec2, vpc_id = platform["client"]("ec2"), platform["endpoints"]["vpc_id"]
    nats = {nat["SubnetId"]: nat["NatGatewayId"]
            for nat in ec2.describe_nat_gateways(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["NatGateways"] if nat["State"] == "available"}
    subnets = {s["SubnetId"]: s["AvailabilityZone"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]}
    public, private = platform["endpoints"]["subnets"]["public"], platform["endpoints"]["subnets"]["private"]
    assert sorted(nats) == sorted(public)
    routes = {}
    for table in ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["RouteTables"]:
        default = next((r for r in table["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"), {})
        for association in table["Associations"]:
            if association.get("SubnetId"):
                routes[association["SubnetId"]] = default.get("GatewayId") or default.get("NatGatewayId")
    assert all(routes[s].startswith("igw-") for s in public)
    for subnet in private:
        nat_subnet = next(s for s in public if subnets[s] == subnets[subnet])
        assert routes[subnet] == nats[nat_subnet]


def _ingress(platform, key: str) -> list[dict]:
    group_id = platform["endpoints"]["security_groups"][key]
    return platform["client"]("ec2").describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]["IpPermissions"]


def _sources(permission: dict) -> set[str]:
    return {pair["GroupId"] for pair in permission["UserIdGroupPairs"]}


# Exact sets, each member for a reason: backup dumps PostgreSQL and DocumentDB but backs ElastiCache up
# through its API (snapshots), so it has no way in to Redis; monitoring runs the exporters.
@pytest.mark.parametrize(("key", "port", "sources"), [
    ("postgres", 5432, {"app", "backup", "monitoring"}),
    ("documentdb", 27017, {"app", "backup", "monitoring"}),
    ("redis", 6379, {"app", "monitoring"}),
    # The colour ports of a blue-green release: the edge proxies, Prometheus scrapes /metrics.
    ("app", 3001, {"edge", "monitoring"}),
    ("app", 3002, {"edge", "monitoring"}),
])
def test_data_and_app_ports_are_open_only_to_the_named_security_groups(platform, key, port, sources):
    groups = platform["endpoints"]["security_groups"]
    permissions = [p for p in _ingress(platform, key) if p["FromPort"] == port]
    assert len(permissions) == 1 and permissions[0]["ToPort"] == port and permissions[0]["IpProtocol"] == "tcp"
    assert _sources(permissions[0]) == {groups[name] for name in sources}
    assert not permissions[0]["IpRanges"] and not permissions[0].get("Ipv6Ranges")
    if key in ("postgres", "documentdb", "redis"):
        assert len(_ingress(platform, key)) == 1, "a data store's group opens one port"


def test_edge_is_public_on_443_and_80_and_exporters_open_only_to_monitoring(platform):
    groups = platform["endpoints"]["security_groups"]
    edge = {p["FromPort"]: p for p in _ingress(platform, "edge")}
    assert {cidr["CidrIp"] for cidr in edge[443]["IpRanges"]} == {cidr["CidrIp"] for cidr in edge[80]["IpRanges"]} == {"0.0.0.0/0"}
    for key in ("app", "edge", "backup", "monitoring"):
        exporters = {p["FromPort"]: p for p in _ingress(platform, key) if p["FromPort"] in (9100, 9113)}
        assert sorted(exporters) == [9100, 9113]
        assert all(_sources(p) == {groups["monitoring"]} and not p["IpRanges"] for p in exporters.values())


def test_ssh_reaches_the_hosts_groups_from_the_bastion_only_and_no_data_store(platform):
    for key in ("app", "edge", "backup", "monitoring"):
        (ssh,) = [p for p in _ingress(platform, key) if p["FromPort"] == 22]
        assert ssh["ToPort"] == 22 and {cidr["CidrIp"] for cidr in ssh["IpRanges"]} == {SSH_SOURCE} and not _sources(ssh)
    for key in ("postgres", "documentdb", "redis"):
        assert not [p for p in _ingress(platform, key) if p["FromPort"] == 22]


def test_kms_key_has_rotation_and_the_platforms_alias(platform):
    kms, arn = platform["client"]("kms"), platform["endpoints"]["kms_key_arn"]
    assert kms.get_key_rotation_status(KeyId=arn)["KeyRotationEnabled"] is True
    aliases = {alias["AliasName"]: alias.get("TargetKeyId") for alias in kms.list_aliases()["Aliases"]}
    assert arn.endswith(aliases[f"alias/{NAME}"])


def test_rds_is_multi_az_encrypted_with_the_key_backed_up_protected_and_replicated(platform):
    rds, endpoints = platform["client"]("rds"), platform["endpoints"]
    primary = rds.describe_db_instances(DBInstanceIdentifier=f"{NAME}-postgres")["DBInstances"][0]
    assert primary["Engine"] == "postgres" and primary["EngineVersion"].split(".")[0] == "15"
    assert primary["MultiAZ"] is True and primary["StorageEncrypted"] is True and primary["KmsKeyId"] == endpoints["kms_key_arn"]
    assert primary["BackupRetentionPeriod"] == 14 and primary["DeletionProtection"] is True
    assert primary["PubliclyAccessible"] is False and primary["DBSubnetGroup"]["DBSubnetGroupName"] == f"{NAME}-data"
    assert [g["VpcSecurityGroupId"] for g in primary["VpcSecurityGroups"]] == [endpoints["security_groups"]["postgres"]]
    assert primary["DBParameterGroups"][0]["DBParameterGroupName"] == f"{NAME}-postgres15"
    assert primary["ReadReplicaDBInstanceIdentifiers"] == [f"{NAME}-postgres-replica-1"]
    replica = rds.describe_db_instances(DBInstanceIdentifier=f"{NAME}-postgres-replica-1")["DBInstances"][0]
    assert replica["ReadReplicaSourceDBInstanceIdentifier"] == f"{NAME}-postgres" and replica["StorageEncrypted"] is True
    assert endpoints["postgres"] == {"address": primary["Endpoint"]["Address"], "port": 5432}
    assert endpoints["postgres_readers"] == [{"address": replica["Endpoint"]["Address"], "port": 5432}]


def test_rds_parameter_group_carries_the_postgres_roles_intent(platform):
    pages = platform["client"]("rds").get_paginator("describe_db_parameters").paginate(DBParameterGroupName=f"{NAME}-postgres15")
    values = {p["ParameterName"]: p.get("ParameterValue") for page in pages for p in page["Parameters"]}
    assert values["rds.force_ssl"] == "1" and values["password_encryption"] == "scram-sha-256"
    assert values["shared_preload_libraries"] == "pg_stat_statements" and values["log_min_duration_statement"] == "500"


def test_documentdb_is_encrypted_with_the_key_and_requires_tls(platform):
    docdb, endpoints = platform["client"]("docdb"), platform["endpoints"]
    cluster = docdb.describe_db_clusters(DBClusterIdentifier=f"{NAME}-documentdb")["DBClusters"][0]
    assert cluster["StorageEncrypted"] is True and cluster["KmsKeyId"] == endpoints["kms_key_arn"] and cluster["DeletionProtection"] is True
    assert [g["VpcSecurityGroupId"] for g in cluster["VpcSecurityGroups"]] == [endpoints["security_groups"]["documentdb"]]
    parameters = docdb.describe_db_cluster_parameters(DBClusterParameterGroupName=cluster["DBClusterParameterGroup"])["Parameters"]
    assert {p["ParameterName"]: p.get("ParameterValue") for p in parameters}["tls"] == "enabled"
    assert endpoints["documentdb"] == {"address": cluster["Endpoint"], "reader_address": cluster["ReaderEndpoint"], "port": 27017}


def test_elasticache_is_encrypted_at_rest_and_in_transit_with_an_auth_token(platform):
    endpoints = platform["endpoints"]
    group = platform["client"]("elasticache").describe_replication_groups(ReplicationGroupId=f"{NAME}-redis")["ReplicationGroups"][0]
    assert group["AtRestEncryptionEnabled"] is True and group["TransitEncryptionEnabled"] is True and group["AuthTokenEnabled"] is True
    assert group["KmsKeyId"] == endpoints["kms_key_arn"] and group["SnapshotRetentionLimit"] == 7
    assert endpoints["redis"]["address"] == group["NodeGroups"][0]["PrimaryEndpoint"]["Address"] and endpoints["redis"]["port"] == 6379


def test_backup_bucket_is_versioned_encrypted_private_and_locked(platform):
    s3, bucket = platform["client"]("s3"), platform["endpoints"]["backup_bucket"]
    assert bucket == f"{NAME}-backups"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]
    assert rule == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": platform["endpoints"]["kms_key_arn"]}
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    lock = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled" and lock["Rule"]["DefaultRetention"] == {"Mode": "COMPLIANCE", "Days": 30}
    (rule,) = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rule["ID"] == "chajipoa-backup" and rule["Status"] == "Enabled" and rule["Filter"] == {"Prefix": "production/"}
    assert rule["Expiration"] == {"Days": 365} and rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}


def test_backup_host_role_may_put_get_and_list_but_never_delete(platform):
    iam, endpoints = platform["client"]("iam"), platform["endpoints"]
    profile = iam.get_instance_profile(InstanceProfileName=endpoints["backup_instance_profile"])["InstanceProfile"]
    assert [role["RoleName"] for role in profile["Roles"]] == [f"{NAME}-backup"]
    assert iam.list_role_policies(RoleName=f"{NAME}-backup")["PolicyNames"] == ["backup-bucket"]
    document = iam.get_role_policy(RoleName=f"{NAME}-backup", PolicyName="backup-bucket")["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    allowed = {a for s in document["Statement"] if s["Effect"] == "Allow" for a in s["Action"]}
    denied = {a for s in document["Statement"] if s["Effect"] == "Deny" for a in s["Action"]}
    # ElastiCache's snapshots of the platform's group are the backup host's way of backing Redis up.
    # The bucket's Object Lock settings are read, so that no copy goes where they would not lock it.
    assert allowed == {"s3:ListBucket", "s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "kms:GenerateDataKey", "kms:Decrypt",
                       "s3:GetBucketObjectLockConfiguration",
                       "elasticache:CreateSnapshot", "elasticache:DeleteSnapshot", "elasticache:DescribeSnapshots"}
    assert {"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention", "s3:PutObjectRetention"} <= denied
    resources = {s["Sid"]: s["Resource"] for s in document["Statement"]}
    assert resources["CheckObjectLock"] == f"arn:aws:s3:::{NAME}-backups"
    assert resources["UploadAndFetchBackups"] == f"arn:aws:s3:::{NAME}-backups/production/*"
    assert resources["EncryptBackups"] == endpoints["kms_key_arn"]
    group = endpoints["redis"]["replication_group_id"]
    assert resources["PruneElastiCacheSnapshots"] == f"arn:aws:elasticache:*:*:snapshot:elasticache-{group}-*"
    trust = iam.get_role(RoleName=f"{NAME}-backup")["Role"]["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}


def test_endpoints_file_is_stable_and_says_who_writes_it(platform):
    first, second = platform["written"]
    assert first == second
    assert "# Written by playbooks/aws-production.yml" in first
    endpoints = platform["endpoints"]
    assert sorted(endpoints) == ["backup_bucket", "backup_instance_profile", "documentdb", "kms_key_arn", "postgres",
                                 "postgres_readers", "redis", "region", "security_groups", "subnets", "vpc_id"]
    assert endpoints["region"] == "af-south-1" and endpoints["backup_instance_profile"] == f"{NAME}-backup"
    assert sorted(endpoints["security_groups"]) == ["app", "backup", "documentdb", "edge", "monitoring", "postgres", "redis"]
    assert all(secret not in first for secret in SECRETS.values())


def test_check_mode_on_a_platform_not_yet_built_plans_it_and_creates_nothing(platform, tmp_path):
    """A name none of whose resources exist on the session's moto stands in for a fresh account."""
    moto, fresh = platform["moto"], f"f{uuid.uuid4().hex[:8]}"
    result = run(moto, inventory(tmp_path, moto, fresh), "--check", "--diff")
    assert result["rc"] == 0, result["failed"]
    assert result["stats"]["changed"] > 0
    ec2 = moto.client("ec2")
    assert not ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [fresh]}])["Vpcs"]
    assert not moto.client("rds").describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": [f"{fresh}-postgres"]}])["DBInstances"]
    assert f"{fresh}-backups" not in {b["Name"] for b in moto.client("s3").list_buckets()["Buckets"]}
    assert not (tmp_path / "group_vars" / "all" / "aws_endpoints.yml").exists()


def test_check_mode_shows_a_changed_variable_and_changes_nothing(platform):
    moto = platform["moto"]
    result = run(moto, platform["inventory"], "--check", "--diff", "-e", json.dumps({"aws_platform_edge_sources": ["198.51.100.0/24"]}))
    assert result["rc"] == 0, result["failed"]
    (groups,) = result["tasks"]["Security groups"]
    edge = next(item for item in groups["results"] if item["item"]["key"] == "edge")
    assert edge["changed"] is True and "198.51.100.0/24" in json.dumps(edge["diff"])
    assert all(not item["changed"] for item in groups["results"] if item["item"]["key"] != "edge")
    ingress = {p["FromPort"]: p for p in _ingress(platform, "edge")}
    assert {cidr["CidrIp"] for cidr in ingress[443]["IpRanges"]} == {"0.0.0.0/0"}


def test_teardown_without_allow_destroy_is_refused_naming_what_it_would_delete(platform):
    moto = platform["moto"]
    result = run(moto, platform["inventory"], "-e", "aws_platform_state=absent")
    assert result["rc"] != 0 and result["stats"]["changed"] == 0
    (refusal,) = result["tasks"]["Check the teardown is allowed"]
    for name in (f"RDS instances {NAME}-postgres, {NAME}-postgres-replica-1", f"DocumentDB cluster {NAME}-documentdb",
                 f"ElastiCache replication group {NAME}-redis", f"S3 bucket {NAME}-backups", f"KMS key alias/{NAME}",
                 "aws_platform_allow_destroy: true"):
        assert name in refusal["msg"]
    assert moto.client("rds").describe_db_instances(DBInstanceIdentifier=f"{NAME}-postgres")["DBInstances"]
    assert moto.client("docdb").describe_db_clusters(DBClusterIdentifier=f"{NAME}-documentdb")["DBClusters"]


BACKUP_KEY = "production/postgres/chajipoa/refused-teardown.dump"


def _nothing_was_deleted(platform) -> None:
    """Every stateful resource of the platform read back through boto3, as the first run built it."""
    moto, client = platform["moto"], platform["client"]
    rds = client("rds")
    for instance in (f"{NAME}-postgres", f"{NAME}-postgres-replica-1"):
        (found,) = rds.describe_db_instances(DBInstanceIdentifier=instance)["DBInstances"]
        assert found["DBInstanceStatus"] == "available", instance
    assert rds.describe_db_instances(DBInstanceIdentifier=f"{NAME}-postgres")["DBInstances"][0]["DeletionProtection"] is True
    (cluster,) = client("docdb").describe_db_clusters(DBClusterIdentifier=f"{NAME}-documentdb")["DBClusters"]
    assert cluster["Status"] == "available" and cluster["DeletionProtection"] is True
    (group,) = client("elasticache").describe_replication_groups(ReplicationGroupId=f"{NAME}-redis")["ReplicationGroups"]
    assert group["Status"] == "available"
    assert client("s3").get_object(Bucket=f"{NAME}-backups", Key=BACKUP_KEY)["Body"].read() == b"backup"
    assert client("kms").describe_key(KeyId=platform["endpoints"]["kms_key_arn"])["KeyMetadata"]["KeyState"] == "Enabled"
    assert client("ec2").describe_vpcs(VpcIds=[platform["endpoints"]["vpc_id"]])["Vpcs"]
    assert moto.endpoint_url and (platform["inventory"] / "group_vars/all/aws_endpoints.yml").exists()


def _refused(result) -> str:
    """The failed tasks' results whole, as text: a loop's own message is only "One or more items
    failed", each item's is in its results."""
    return json.dumps({name: [r for r in result["tasks"][name] if r.get("failed")] for name in result["failed"]})


@pytest.fixture
def backup_in_the_bucket(platform):
    """A copy in the platform's bucket, as the backup host would leave one, to see it survive."""
    platform["client"]("s3").put_object(Bucket=f"{NAME}-backups", Key=BACKUP_KEY, Body=b"backup")
    return BACKUP_KEY


@pytest.mark.parametrize(("selection", "refused_by"), [
    (["--tags", "aws_platform_teardown"], "Check the teardown is allowed"),
    (["--skip-tags", "aws_platform_preflight"], "Check the teardown is allowed"),
    # Leaves out the check at the top of teardown.yml too: each deleting task then refuses on its own.
    (["--tags", "aws_platform_teardown", "--skip-tags", "always"], "Lift the RDS instances' deletion protection"),
], ids=["tags-teardown", "skip-preflight", "skip-always"])
def test_no_tag_selection_gets_a_teardown_past_the_refusal(platform, backup_in_the_bucket, selection, refused_by):
    """The audit's reproduction: these selections once left the preflight's refusal out and deleted
    the RDS instances, the bucket with its objects and the KMS key."""
    result = run(platform["moto"], platform["inventory"], "-e", "aws_platform_state=absent", *selection)
    assert result["rc"] != 0 and result["stats"]["changed"] == 0, result["stats"]
    # The first deleting task the selection reaches refuses, and the run ends there.
    assert list(result["failed"]) == [refused_by], result["failed"]
    assert "aws_platform_allow_destroy: true" in _refused(result), _refused(result)
    _nothing_was_deleted(platform)


@pytest.mark.parametrize("task", ["Replicas, then the primary (a final snapshot of the primary is kept)", "DocumentDB cluster",
                                  "ElastiCache replication group", "Backup bucket and its objects", "Schedule the KMS key's deletion"])
def test_a_deleting_task_started_at_on_its_own_refuses(platform, backup_in_the_bucket, task):
    """--start-at-task skips every task before it, the always-tagged check too, so the task's own
    state refuses. (Lift the RDS instances' deletion protection, started at, fails for lack of the
    instances read before it; the skip-always case above reaches it and sees it refuse.)"""
    result = run(platform["moto"], platform["inventory"], "-e", "aws_platform_state=absent", "--start-at-task", task)
    assert result["rc"] != 0 and result["stats"]["changed"] == 0, result["stats"]
    assert list(result["failed"]) == [task], result["failed"]
    assert "aws_platform_allow_destroy: true" in _refused(result), _refused(result)
    _nothing_was_deleted(platform)


def test_teardown_with_allow_destroy_deletes_everything_in_order(platform, tmp_path):
    moto, name = platform["moto"], f"d{uuid.uuid4().hex[:8]}"
    directory = inventory(tmp_path, moto, name, aws_platform_docdb_enabled=False, aws_platform_redis_enabled=False,
                          aws_platform_backup_object_lock=False, aws_platform_nat_gateway_per_az=False)
    built = run(moto, directory)
    assert built["rc"] == 0, built["failed"]
    vpc_id = yaml.safe_load((directory / "group_vars/all/aws_endpoints.yml").read_text())["aws_endpoints"]["vpc_id"]
    s3 = moto.client("s3")
    s3.put_object(Bucket=f"{name}-backups", Key="production/db1/dump", Body=b"backup")

    result = run(moto, directory, "-e", "aws_platform_state=absent", "-e", "aws_platform_allow_destroy=true")
    assert result["rc"] == 0, result["failed"]
    rds, ec2 = moto.client("rds"), moto.client("ec2")
    assert not rds.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": [f"{name}-postgres", f"{name}-postgres-replica-1"]}])["DBInstances"]
    assert rds.describe_db_snapshots(DBSnapshotIdentifier=f"{name}-postgres-final")["DBSnapshots"]
    assert f"{name}-backups" not in {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}
    assert not ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Vpcs"]
    assert all(nat["State"] == "deleted" for nat in ec2.describe_nat_gateways(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["NatGateways"])
    assert f"{name}-backup" not in {role["RoleName"] for role in moto.client("iam").list_roles()["Roles"]}
    kms = moto.client("kms")
    key = next(alias["TargetKeyId"] for alias in kms.list_aliases()["Aliases"] if alias["AliasName"] == f"alias/{name}")
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    assert not (directory / "group_vars/all/aws_endpoints.yml").exists()


def _shape(value):
    """Keys and nesting only: moto gives ElastiCache no reader endpoint (None where AWS has a name)."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return "value"


def test_the_endpoints_have_the_shape_the_production_inventory_reads(platform):
    """inventories/production maps aws_endpoints into the backup, app and monitoring variables; its
    checked-in example must be what the role writes, key for key."""
    example = yaml.safe_load((ROOT / "inventories/production/group_vars/all/aws_endpoints.yml").read_text())["aws_endpoints"]
    assert _shape(platform["endpoints"]) == _shape(example)
