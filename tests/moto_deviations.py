"""Where moto 5.2.5 answers differently from AWS's documented API, in ways the amazon.aws modules
the aws_platform role uses stumble on, made to answer as AWS does. Each correction changes an
answer's form, never a resource's state, and names the API it concerns; apply them in the process
that runs moto's server (moto.server.ThreadedMotoServer), before the tests call it.

- RDS DescribeDBParameterGroups with the name of a group that does not exist: AWS fails with
  DBParameterGroupNotFound, moto answers an empty list, on which amazon.aws.rds_instance_param_group
  fails (IndexError) instead of creating the group.
- EC2 DescribeTags: AWS gives a NAT gateway's resource-type as "natgateway", moto as "nat-gateway",
  so amazon.aws.ec2_vpc_nat_gateway finds no tags and tags the gateway again on every run.
- S3 GetObjectLockConfiguration: AWS returns the one period the default retention was set with
  (Days or Years), moto both (the other as 0), so amazon.aws.s3_bucket sets it again on every run.
"""
from __future__ import annotations

from typing import Any

_APPLIED: list[str] = []


def correct_moto_deviations() -> None:
    """Apply the corrections above (once per process)."""
    if _APPLIED:
        return
    from moto.ec2 import utils as ec2_utils
    from moto.rds.exceptions import DBParameterGroupNotFoundError
    from moto.rds.models import RDSBackend
    from moto.s3.models import S3Backend

    describe_parameter_groups = RDSBackend.describe_db_parameter_groups

    def describe_db_parameter_groups(self, db_parameter_group_kwargs: dict[str, Any]):
        found = describe_parameter_groups(self, db_parameter_group_kwargs)
        name = db_parameter_group_kwargs.get("db_parameter_group_name")
        if name and not found:
            raise DBParameterGroupNotFoundError(name)
        return found

    get_lock = S3Backend.get_object_lock_configuration

    def get_object_lock_configuration(self, bucket_name: str):
        enabled, mode, days, years = get_lock(self, bucket_name)
        return enabled, mode, days or None, years or None

    RDSBackend.describe_db_parameter_groups = describe_db_parameter_groups
    S3Backend.get_object_lock_configuration = get_object_lock_configuration
    # moto's tag store maps id prefixes to resource types through this dict, shared by reference.
    ec2_utils.EC2_PREFIX_TO_RESOURCE["nat"] = "natgateway"
    _APPLIED.append("applied")
