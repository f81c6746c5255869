"""Where moto 5.2.5 answers differently from AWS's documented API, in ways the amazon.aws modules
the aws_platform role uses stumble on, made to answer as AWS does. Each correction names the API it
concerns; none sets a resource's state or a value the role sets. They apply in the process
that runs moto's server (moto.server.ThreadedMotoServer), while the context manager is open.

- RDS DescribeDBParameterGroups with the name of a group that does not exist: AWS fails with
  DBParameterGroupNotFound, moto answers an empty list, on which amazon.aws.rds_instance_param_group
  fails (IndexError) instead of creating the group.
- RDS DescribeDBParameters: AWS lists every parameter of the group's family (engine defaults
  without a value, with DataType, ApplyType and IsModifiable), moto only those already set, so
  amazon.aws.rds_instance_param_group refuses every parameter as "not an available parameter". A new
  postgres group here gets the family's entries for the parameters the aws_platform role sets
  (POSTGRES_FAMILY_PARAMETERS, as AWS describes them for postgres15), without values; the values
  are then set by ModifyDBParameterGroup and read back as moto stores them.
- EC2 DescribeTags: AWS gives a NAT gateway's resource-type as "natgateway", moto as "nat-gateway",
  so amazon.aws.ec2_vpc_nat_gateway finds no tags and tags the gateway again on every run.
- KMS ScheduleKeyDeletion with a key's ARN: AWS takes a key id or ARN, moto only an id (an ARN
  raises KeyError inside moto, answered as HTTP 500), so amazon.aws.kms_key cannot delete a key.
- S3 GetObjectLockConfiguration: AWS returns the one period the default retention was set with
  (Days or Years), moto both (the other as 0), so amazon.aws.s3_bucket sets it again on every run.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

# From AWS's DescribeEngineDefaultParameters for the family postgres15.
POSTGRES_FAMILY_PARAMETERS = {
    "rds.force_ssl": {"DataType": "boolean", "ApplyType": "dynamic", "AllowedValues": "0,1"},
    "password_encryption": {"DataType": "string", "ApplyType": "dynamic", "AllowedValues": "md5,scram-sha-256"},
    "shared_preload_libraries": {"DataType": "list", "ApplyType": "static"},
    "log_min_duration_statement": {"DataType": "integer", "ApplyType": "dynamic", "AllowedValues": "-1-2147483647"},
}


@contextmanager
def moto_answers_as_aws() -> Iterator[None]:
    """The corrections above, undone on exit."""
    from moto.ec2 import utils as ec2_utils
    from moto.kms.models import KmsBackend
    from moto.rds.exceptions import DBParameterGroupNotFoundError
    from moto.rds.models import RDSBackend
    from moto.s3.models import S3Backend

    describe_parameter_groups = RDSBackend.describe_db_parameter_groups
    create_parameter_group = RDSBackend.create_db_parameter_group
    get_lock = S3Backend.get_object_lock_configuration
    schedule_deletion = KmsBackend.schedule_key_deletion

    def describe_db_parameter_groups(self, db_parameter_group_kwargs: dict[str, Any]):
        found = describe_parameter_groups(self, db_parameter_group_kwargs)
        name = db_parameter_group_kwargs.get("db_parameter_group_name")
        if name and not found:
            raise DBParameterGroupNotFoundError(name)
        return found

    def create_db_parameter_group(self, db_parameter_group_kwargs: dict[str, Any]):
        group = create_parameter_group(self, db_parameter_group_kwargs)
        if str(group.family).startswith("postgres"):
            for name, entry in POSTGRES_FAMILY_PARAMETERS.items():
                group.parameters[name] = {"ParameterName": name, "Source": "engine-default", "IsModifiable": True, **entry}
        return group

    def get_object_lock_configuration(self, bucket_name: str):
        enabled, mode, days, years = get_lock(self, bucket_name)
        return enabled, mode, days or None, years or None

    def schedule_key_deletion(self, key_id: str, pending_window_in_days: int):
        return schedule_deletion(self, self.get_key_id(key_id), pending_window_in_days)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(KmsBackend, "schedule_key_deletion", schedule_key_deletion)
        patch.setattr(RDSBackend, "describe_db_parameter_groups", describe_db_parameter_groups)
        patch.setattr(RDSBackend, "create_db_parameter_group", create_db_parameter_group)
        patch.setattr(S3Backend, "get_object_lock_configuration", get_object_lock_configuration)
        # moto's tag store maps id prefixes to resource types through this dict, shared by reference.
        patch.setitem(ec2_utils.EC2_PREFIX_TO_RESOURCE, "nat", "natgateway")
        yield
