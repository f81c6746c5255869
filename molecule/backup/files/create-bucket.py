"""Create the backup bucket in moto as the backup role's bucket settings say (JSON file).

Used by prepare.yml (settings from the role's s3_settings entry point) and by the verifier after
it restarts moto, which keeps its state in memory (settings from the file the role rendered).
"""
import json
import sys

import boto3

bucket, region, settings_file = sys.argv[1:4]
with open(settings_file, encoding="utf-8") as handle:
    settings = json.load(handle)
client = boto3.client("s3", endpoint_url="http://127.0.0.1:5000", region_name=region,
                      aws_access_key_id="prepare", aws_secret_access_key="prepare")
client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region},
                     ObjectLockEnabledForBucket=bool(settings["object_lock"]))
if settings["versioning"]:
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration=settings["versioning"])
if settings["object_lock"]:
    client.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration=settings["object_lock"])
client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=settings["lifecycle"])
