"""Unit tests of the backup_s3_iam_policy and backup_s3_bucket_settings filters (plugins/filter/backup_bucket.py)."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.chajipoa.platform.plugins.filter.backup_bucket import FilterModule

FILTERS = FilterModule().filters()
policy = FILTERS["backup_s3_iam_policy"]
settings = FILTERS["backup_s3_bucket_settings"]
KEY = "arn:aws:kms:af-south-1:123456789012:key/0f1e2d3c"


def _actions(document: dict, effect: str) -> set[str]:
    return {action for statement in document["Statement"] if statement["Effect"] == effect for action in statement["Action"]}


def test_a_backup_host_without_object_lock_uploads_fetches_and_prunes_under_its_prefix_only():
    document = policy("chajipoa-backups", "production/db1/")
    assert document == {"Version": "2012-10-17", "Statement": [
        {"Sid": "ListBackups", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": "arn:aws:s3:::chajipoa-backups",
         "Condition": {"StringLike": {"s3:prefix": ["production/db1/*"]}}},
        {"Sid": "UploadAndFetchBackups", "Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"],
         "Resource": "arn:aws:s3:::chajipoa-backups/production/db1/*"},
        {"Sid": "PruneBackups", "Effect": "Allow", "Action": ["s3:DeleteObject"], "Resource": "arn:aws:s3:::chajipoa-backups/production/db1/*"},
    ]}


@pytest.mark.parametrize("drill_only", [False, True])
def test_with_object_lock_nothing_may_delete_and_an_explicit_deny_says_so(drill_only):
    document = policy("chajipoa-backups", "p/", object_lock=True, drill_only=drill_only)
    allowed, denied = _actions(document, "Allow"), _actions(document, "Deny")
    assert not {action for action in allowed if "Delete" in action}
    assert {"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention", "s3:DeleteBucket",
            "s3:PutLifecycleConfiguration", "s3:PutBucketObjectLockConfiguration"} <= denied
    deny = next(statement for statement in document["Statement"] if statement["Effect"] == "Deny")
    assert deny["Resource"] == ["arn:aws:s3:::chajipoa-backups", "arn:aws:s3:::chajipoa-backups/*"]
    # Retention comes from the bucket's default, never from the host (s3:PutObjectRetention is denied):
    # an uploading host may read that default, to refuse a bucket that would not lock its copies.
    assert "s3:PutObjectRetention" in denied
    assert ("s3:GetBucketObjectLockConfiguration" in allowed) is not drill_only


def test_a_drill_host_only_lists_and_fetches():
    document = policy("chajipoa-backups", "", drill_only="yes")
    assert _actions(document, "Allow") == {"s3:ListBucket", "s3:GetObject"}
    assert [statement["Sid"] for statement in document["Statement"]] == ["ListBackups", "FetchBackups"]
    assert document["Statement"][1]["Resource"] == "arn:aws:s3:::chajipoa-backups/*"


@pytest.mark.parametrize(("kms_key_id", "resource"), [(KEY, KEY), ("", "*")])
def test_sse_kms_grants_the_key(kms_key_id, resource):
    statement = policy("chajipoa-backups", "p/", sse="aws:kms", kms_key_id=kms_key_id)["Statement"][-1]
    assert statement == {"Sid": "EncryptBackups", "Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": resource}
    assert not _actions(policy("chajipoa-backups", "p/", kms_key_id=KEY), "Allow") & {"kms:GenerateDataKey", "kms:Decrypt"}


@pytest.mark.parametrize(("args", "message"), [
    (("Bad_Bucket",), r"'Bad_Bucket' is not an S3 bucket name"),
    (("ab",), r"'ab' is not an S3 bucket name"),
    (("chajipoa-backups", "p/\n"), r"the prefix must be a string without control characters"),
    (("chajipoa-backups", "p/*"), r"or '\*'"),
    (("chajipoa-backups", "p/", "maybe"), r"object_lock must be a boolean, got 'maybe'"),
    (("chajipoa-backups", "p/", False, False, "aws:kms:dsse"), r"sse must be AES256 or aws:kms"),
])
def test_policy_refuses_bad_input_naming_it(args, message):
    with pytest.raises(AnsibleFilterError, match=message):
        policy(*args)


def test_settings_without_object_lock_only_abort_stale_uploads():
    assert settings("production/db1/") == {"versioning": None, "object_lock": None, "lifecycle": {"Rules": [
        {"ID": "chajipoa-backup", "Status": "Enabled", "Filter": {"Prefix": "production/db1/"},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}]}}


def test_settings_with_object_lock_version_lock_and_expire_after_the_longest_period():
    result = settings("p/", object_lock="true", object_lock_mode="GOVERNANCE", object_lock_days="30", expire_days=365)
    assert result["versioning"] == {"Status": "Enabled"}
    assert result["object_lock"] == {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 30}}}
    assert result["lifecycle"]["Rules"][0] == {
        "ID": "chajipoa-backup", "Status": "Enabled", "Filter": {"Prefix": "p/"}, "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
        "Expiration": {"Days": 365}, "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"object_lock_mode": "LEGAL"}, r"object_lock_mode must be one of GOVERNANCE, COMPLIANCE, got 'LEGAL'"),
    ({"object_lock_days": 0}, r"object_lock_days must be at least 1, got 0"),
    ({"object_lock_days": True}, r"object_lock_days must be an integer, got True"),
    ({"object_lock_days": 40, "expire_days": 30}, r"object_lock_days \(40\) exceeds expire_days \(30\)"),
])
def test_settings_refuse_a_lock_that_cannot_hold_naming_the_value(kwargs, message):
    with pytest.raises(AnsibleFilterError, match=message):
        settings("p/", object_lock=True, **{"object_lock_days": 30, "expire_days": 365, **kwargs})


def test_elasticache_snapshots_of_one_group_named_as_its_backups():
    statements = {s["Sid"]: s for s in policy("backups", elasticache_group="chajipoa-production-redis")["Statement"]}
    assert statements["SnapshotElastiCache"]["Action"] == ["elasticache:CreateSnapshot"]
    assert statements["SnapshotElastiCache"]["Resource"] == [
        "arn:aws:elasticache:*:*:replicationgroup:chajipoa-production-redis",
        "arn:aws:elasticache:*:*:cluster:chajipoa-production-redis-*",
        "arn:aws:elasticache:*:*:snapshot:elasticache-chajipoa-production-redis-*"]
    assert statements["PruneElastiCacheSnapshots"]["Resource"] == "arn:aws:elasticache:*:*:snapshot:elasticache-chajipoa-production-redis-*"
    assert statements["ReadElastiCacheSnapshots"]["Action"] == ["elasticache:DescribeSnapshots"]
    assert not [s for s in policy("backups")["Statement"] if "ElastiCache" in s["Sid"]]
    with pytest.raises(AnsibleFilterError, match="is not an ElastiCache replication group id"):
        policy("backups", elasticache_group="redis*")
