# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""What the off-site backup bucket and the backup hosts' S3 credentials must look like.

One copy for the backup role (which writes both documents on its hosts) and the aws_platform role
(which creates the bucket and the backup host's IAM role from them). The two filters are documented
in backup_s3_iam_policy.yml and backup_s3_bucket_settings.yml beside this file.
"""
from __future__ import annotations

import re
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

# S3's rules for new buckets: 3 to 63 lowercase letters, digits, dots and hyphens, starting and
# ending with a letter or digit.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_OBJECT_LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
# ElastiCache's rule for replication group ids, which backup names for it also follow (they name snapshots).
_ELASTICACHE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,63}$")
# With Object Lock the program never deletes, so the host gets no delete right at all, and an
# explicit deny keeps it so should a broader policy be attached to the same role.
_NEVER_DESTROY = [
    "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention", "s3:PutObjectRetention",
    "s3:PutObjectLegalHold", "s3:PutBucketObjectLockConfiguration", "s3:PutLifecycleConfiguration",
    "s3:PutBucketVersioning", "s3:PutBucketPolicy", "s3:DeleteBucket",
]


def _flag(name: str, value: Any) -> bool:
    try:
        return boolean(value, strict=True)
    except TypeError as exc:
        raise AnsibleFilterError(f"Cannot build the backup bucket's settings: {name} must be a boolean, got {value!r}") from exc


def _days(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool):
        raise AnsibleFilterError(f"Cannot build the backup bucket's settings: {name} must be an integer, got {value!r}")
    try:
        days = int(value)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"Cannot build the backup bucket's settings: {name} must be an integer, got {value!r}") from exc
    if days < minimum:
        raise AnsibleFilterError(f"Cannot build the backup bucket's settings: {name} must be at least {minimum}, got {days}")
    return days


def _prefix(value: Any) -> str:
    if not isinstance(value, str) or _CONTROL.search(value) or "*" in value:
        raise AnsibleFilterError(f"Cannot build the backup bucket's settings: the prefix must be a string without control characters or '*', got {value!r}")
    return value


def backup_s3_iam_policy(bucket: Any, prefix: Any = "", object_lock: Any = False, drill_only: Any = False,
                         sse: Any = "AES256", kms_key_id: Any = "", elasticache_group: Any = "",
                         elasticache_name: Any = "") -> dict[str, Any]:
    """The IAM policy a backup host (or, with drill_only, a restore-drill host) needs on bucket/prefix."""
    if not isinstance(bucket, str) or not _BUCKET.match(bucket):
        raise AnsibleFilterError(f"Cannot build the backup host's IAM policy: {bucket!r} is not an S3 bucket name")
    prefix = _prefix(prefix)
    object_lock, drill_only = _flag("object_lock", object_lock), _flag("drill_only", drill_only)
    if sse not in ("AES256", "aws:kms"):
        raise AnsibleFilterError(f"Cannot build the backup host's IAM policy: sse must be AES256 or aws:kms, got {sse!r}")
    if not isinstance(kms_key_id, str):
        raise AnsibleFilterError(f"Cannot build the backup host's IAM policy: kms_key_id must be a string, got {kms_key_id!r}")
    bucket_arn = f"arn:aws:s3:::{bucket}"
    objects = f"{bucket_arn}/{prefix}*"
    statements: list[dict[str, Any]] = [
        {"Sid": "ListBackups", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": bucket_arn,
         "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}}},
        {"Sid": "FetchBackups" if drill_only else "UploadAndFetchBackups", "Effect": "Allow",
         "Action": ["s3:GetObject"] if drill_only else ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"],
         "Resource": objects},
    ]
    if object_lock:
        if not drill_only:
            # The program uploads only into a bucket whose default retention locks the copies.
            statements.append({"Sid": "CheckObjectLock", "Effect": "Allow", "Action": ["s3:GetBucketObjectLockConfiguration"],
                               "Resource": bucket_arn})
        statements.append({"Sid": "NeverDestroyBackups", "Effect": "Deny", "Action": list(_NEVER_DESTROY),
                           "Resource": [bucket_arn, f"{bucket_arn}/*"]})
    elif not drill_only:
        # Without Object Lock the program prunes by the retention policy itself.
        statements.append({"Sid": "PruneBackups", "Effect": "Allow", "Action": ["s3:DeleteObject"], "Resource": objects})
    if sse == "aws:kms":
        statements.append({"Sid": "EncryptBackups", "Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                           "Resource": kms_key_id or "*"})
    if elasticache_group:
        statements += _elasticache_statements(elasticache_group, elasticache_name)
    return {"Version": "2012-10-17", "Statement": statements}


def _elasticache_statements(group: Any, name: Any) -> list[dict[str, Any]]:
    """Snapshots of one replication group, named as the backup program names them
    (<name>-<time>-<reason>): made, and deleted when pruned, by the backup host alone."""
    if not isinstance(group, str) or not _ELASTICACHE_ID.match(group):
        raise AnsibleFilterError(f"Cannot build the backup host's IAM policy: {group!r} is not an ElastiCache replication group id")
    name = name or f"elasticache-{group}"
    if not isinstance(name, str) or not _ELASTICACHE_ID.match(name):
        raise AnsibleFilterError(f"Cannot build the backup host's IAM policy: {name!r} is not a backup name for ElastiCache")
    snapshots = f"arn:aws:elasticache:*:*:snapshot:{name}-*"
    return [
        # A group's snapshot is taken of one of its member clusters (<group>-001, ...).
        {"Sid": "SnapshotElastiCache", "Effect": "Allow", "Action": ["elasticache:CreateSnapshot"],
         "Resource": [f"arn:aws:elasticache:*:*:replicationgroup:{group}", f"arn:aws:elasticache:*:*:cluster:{group}-*", snapshots]},
        {"Sid": "PruneElastiCacheSnapshots", "Effect": "Allow", "Action": ["elasticache:DeleteSnapshot"], "Resource": snapshots},
        # Describing takes no resource narrower than every snapshot; it changes nothing.
        {"Sid": "ReadElastiCacheSnapshots", "Effect": "Allow", "Action": ["elasticache:DescribeSnapshots"], "Resource": "*"},
    ]


def backup_s3_bucket_settings(prefix: Any = "", object_lock: Any = False, object_lock_mode: Any = "COMPLIANCE",
                              object_lock_days: Any = 1, expire_days: Any = 1) -> dict[str, Any]:
    """Versioning, Object Lock and lifecycle settings, keyed as boto3's put_bucket_* calls take them."""
    prefix = _prefix(prefix)
    if not _flag("object_lock", object_lock):
        return {"versioning": None, "object_lock": None, "lifecycle": {"Rules": [_rule(prefix)]}}
    if object_lock_mode not in _OBJECT_LOCK_MODES:
        raise AnsibleFilterError(
            f"Cannot build the backup bucket's settings: object_lock_mode must be one of {', '.join(_OBJECT_LOCK_MODES)}, got {object_lock_mode!r}")
    lock_days, expire_days = _days("object_lock_days", object_lock_days, 1), _days("expire_days", expire_days, 1)
    # A locked version outlives no lifecycle rule: the lock must end before the copy expires.
    if lock_days > expire_days:
        raise AnsibleFilterError(f"Cannot build the backup bucket's settings: object_lock_days ({lock_days}) exceeds expire_days ({expire_days})")
    return {
        "versioning": {"Status": "Enabled"},
        "object_lock": {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": object_lock_mode, "Days": lock_days}}},
        # The program never deletes under Object Lock: the lifecycle rule expires copies after the
        # longest period of the retention policy instead.
        "lifecycle": {"Rules": [{**_rule(prefix), "Expiration": {"Days": expire_days}, "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}]},
    }


def _rule(prefix: str) -> dict[str, Any]:
    return {"ID": "chajipoa-backup", "Status": "Enabled", "Filter": {"Prefix": prefix},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"backup_s3_iam_policy": backup_s3_iam_policy, "backup_s3_bucket_settings": backup_s3_bucket_settings}
