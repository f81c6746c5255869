#!/usr/bin/python
# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: docdb_cluster
short_description: Manage an Amazon DocumentDB cluster, its instances and its TLS parameter group
description:
  - Creates, updates and deletes an Amazon DocumentDB (MongoDB compatible) cluster with its instances
    (the primary plus replicas, named C(<cluster_id>-1) to C(<cluster_id>-N)) and a cluster parameter
    group of its own, C(<cluster_id>-params), that sets C(tls).
  - Written because no module in the collections the C(ansible) package bundles manages DocumentDB
    (amazon.aws 10 and community.aws 10); M(amazon.aws.rds_cluster) refuses the engine C(docdb).
  - Encryption at rest (and its KMS key), the subnet group and the master user name cannot be changed
    on an existing cluster; a different value fails the task saying the cluster must be replaced.
  - C(tls) is a static parameter; changed on an existing cluster, it applies once the instances restart
    (the module warns, it does not reboot them).
  - Deletion needs O(allow_delete=true); it lifts deletion protection, deletes the instances, and takes a
    final snapshot unless O(skip_final_snapshot).
  - The master password is never returned nor shown in the diff.
version_added: 0.5.0
author: ChajiPoa Infrastructure engineers (!UNKNOWN)
requirements: [boto3]
options:
  cluster_id:
    description: The cluster identifier.
    type: str
    required: true
  engine_version:
    description:
      - DocumentDB engine version. Its major.minor also names the parameter group family (V(5.0.0) gives
        C(docdb5.0)). A new major version is applied with C(AllowMajorVersionUpgrade).
    type: str
    default: 5.0.0
  instance_class:
    description: The class of every instance.
    type: str
    default: db.t3.medium
  instance_count:
    description:
      - How many instances, the primary included; instances C(<cluster_id>-N) above the count are deleted.
        Members named otherwise are left alone (with a warning).
    type: int
    default: 2
  port:
    description: The port the cluster listens on.
    type: int
    default: 27017
  master_username:
    description: The master user; needed to create the cluster, cannot change afterwards.
    type: str
  master_password:
    description: The master user's password; needed to create the cluster.
    type: str
  update_password:
    description: V(always) sets O(master_password) on every run (always a change); V(on_create) only when creating.
    type: str
    choices: [always, on_create]
    default: on_create
  db_subnet_group_name:
    description: The DB subnet group (the private subnets); unset, AWS's default. Cannot change afterwards.
    type: str
  vpc_security_group_ids:
    description: The VPC security groups of the cluster.
    type: list
    elements: str
  storage_encrypted:
    description: Encryption at rest. Cannot change afterwards.
    type: bool
    default: true
  kms_key_id:
    description: The KMS key (id, alias or ARN) for encryption at rest; unset, AWS's managed key. Cannot change afterwards.
    type: str
  backup_retention_period:
    description: Days of automated backups (1 to 35).
    type: int
    default: 7
  preferred_backup_window:
    description: The daily backup window, UTC, C(hh24:mi-hh24:mi).
    type: str
  preferred_maintenance_window:
    description: The weekly maintenance window, UTC, C(ddd:hh24:mi-ddd:hh24:mi).
    type: str
  tls:
    description: Clients must use TLS (the parameter group's C(tls) is V(enabled), else V(disabled)).
    type: bool
    default: true
  deletion_protection:
    description: AWS refuses to delete the cluster while this is on.
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - chajipoa.platform.aws_managed
attributes:
  check_mode:
    support: full
    details: Reads only, and reports the plan (changed, diff) a normal run would carry out.
  diff_mode:
    support: full
    details: The managed settings before and after; the password appears only as a marker that it is sent.
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: DocumentDB for the rentals API, encrypted, TLS only, three instances
  chajipoa.platform.docdb_cluster:
    cluster_id: chajipoa-docs
    instance_count: 3
    master_username: chajipoa
    master_password: "{{ vault_docdb_master_password }}"
    db_subnet_group_name: chajipoa-private
    vpc_security_group_ids: ["{{ docdb_sg.group_id }}"]
    kms_key_id: alias/chajipoa-data
    backup_retention_period: 14
    tags: {environment: production}
  register: docdb

- name: Delete a cluster (a final snapshot is taken)
  chajipoa.platform.docdb_cluster:
    cluster_id: chajipoa-docs-old
    state: absent
    allow_delete: true
"""

RETURN = r"""
cluster:
  description: The cluster after the run; empty when it does not exist (or, in check mode, is still to be created).
  returned: always
  type: dict
  contains:
    cluster_id: {description: The identifier., type: str, sample: chajipoa-docs}
    arn: {description: The cluster's ARN., type: str, sample: "arn:aws:rds:af-south-1:123456789012:cluster:chajipoa-docs"}
    endpoint: {description: The writer endpoint., type: str, sample: chajipoa-docs.cluster-c1x2.af-south-1.docdb.amazonaws.com}
    reader_endpoint: {description: The reader endpoint., type: str, sample: chajipoa-docs.cluster-ro-c1x2.af-south-1.docdb.amazonaws.com}
    port: {description: The port., type: int, sample: 27017}
    status: {description: The cluster's status., type: str, sample: available}
    storage_encrypted: {description: Encrypted at rest., type: bool, sample: true}
    kms_key_id: {description: The KMS key's ARN., type: str}
    engine_version: {description: The engine version., type: str, sample: 5.0.0}
    deletion_protection: {description: Deletion protection., type: bool, sample: true}
    instances: {description: The member instances., type: list, elements: str, sample: [chajipoa-docs-1, chajipoa-docs-2]}
    parameter_group: {description: The cluster parameter group., type: str, sample: chajipoa-docs-params}
diff:
  description: The managed settings before and after (no secret).
  returned: always
  type: dict
  sample: {before: {backup_retention_period: 7}, after: {backup_retention_period: 14}}
"""

import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.chajipoa.platform.plugins.module_utils import aws_managed
from ansible_collections.chajipoa.platform.plugins.module_utils.aws_managed import AwsManagedError, call, call_unless_missing

ARGUMENT_SPEC = {
    "cluster_id": {"type": "str", "required": True},
    "engine_version": {"type": "str", "default": "5.0.0"},
    "instance_class": {"type": "str", "default": "db.t3.medium"},
    "instance_count": {"type": "int", "default": 2},
    "port": {"type": "int", "default": 27017},
    "master_username": {"type": "str"},
    "master_password": {"type": "str", "no_log": True},
    "update_password": {"type": "str", "choices": ["always", "on_create"], "default": "on_create", "no_log": False},
    "db_subnet_group_name": {"type": "str"},
    "vpc_security_group_ids": {"type": "list", "elements": "str"},
    "storage_encrypted": {"type": "bool", "default": True},
    "kms_key_id": {"type": "str"},
    "backup_retention_period": {"type": "int", "default": 7},
    "preferred_backup_window": {"type": "str"},
    "preferred_maintenance_window": {"type": "str"},
    "tls": {"type": "bool", "default": True},
    "deletion_protection": {"type": "bool", "default": True},
    **aws_managed.CONNECTION_SPEC,
    **aws_managed.LIFECYCLE_SPEC,
}

# Option -> ModifyDBCluster argument, for the settings AWS changes in place.
MODIFIABLE = {
    "port": "Port",
    "vpc_security_group_ids": "VpcSecurityGroupIds",
    "backup_retention_period": "BackupRetentionPeriod",
    "preferred_backup_window": "PreferredBackupWindow",
    "preferred_maintenance_window": "PreferredMaintenanceWindow",
    "deletion_protection": "DeletionProtection",
    "parameter_group": "DBClusterParameterGroupName",
    "engine_version": "EngineVersion",
}


def parameter_group_family(engine_version: str) -> str:
    """docdb5.0 for 5.0.0: the family DocumentDB names by the engine's major.minor."""
    return "docdb" + ".".join(engine_version.split(".")[:2])


def instance_names(cluster_id: str, count: int) -> list[str]:
    return [f"{cluster_id}-{number}" for number in range(1, count + 1)]


def own_instances(cluster_id: str, members: list[str]) -> list[str]:
    """The members named the way this module names instances, in their number's order."""
    pattern = re.compile(rf"^{re.escape(cluster_id)}-(\d+)$")
    return sorted((m for m in members if pattern.match(m)), key=lambda m: int(pattern.match(m).group(1)))


def instance_class_of(classes: list[str]) -> str | list[str] | None:
    """One class when every instance has it, else the distinct classes (which never equal the option)."""
    distinct = sorted(set(classes))
    if not distinct:
        return None
    return distinct[0] if len(distinct) == 1 else distinct


class DocdbCluster(aws_managed.ManagedResource):
    kind = "DocumentDB cluster"
    immutable = frozenset({"storage_encrypted", "kms_key_id", "db_subnet_group_name", "master_username"})

    def __init__(self, module, service: str) -> None:
        super().__init__(module, service)
        self.cluster: dict | None = None
        self.instances: dict[str, dict] = {}

    @property
    def name(self) -> str:
        return self.params["cluster_id"]

    @property
    def parameter_group(self) -> str:
        return f"{self.name}-params"

    def describe(self) -> dict | None:
        found = call_unless_missing(f"describe {self.kind} {self.name}", "DBClusterNotFoundFault",
                                    self.aws.describe_db_clusters, DBClusterIdentifier=self.name)
        return found["DBClusters"][0] if found and found["DBClusters"] else None

    def describe_instances(self) -> dict[str, dict]:
        found = call(f"describe the instances of {self.kind} {self.name}", self.aws.describe_db_instances,
                     Filters=[{"Name": "db-cluster-id", "Values": [self.name]}])
        return {item["DBInstanceIdentifier"]: item for item in found["DBInstances"]}

    def tls_parameter(self) -> bool | None:
        """Whether the module's parameter group turns TLS on (None: the group does not exist)."""
        pages = call_unless_missing(f"read parameter group {self.parameter_group}", "DBParameterGroupNotFound",
                                    self.aws.describe_db_cluster_parameters, DBClusterParameterGroupName=self.parameter_group)
        if pages is None:
            return None
        values = {p["ParameterName"]: p.get("ParameterValue") for p in pages["Parameters"]}
        return values.get("tls", "disabled") != "disabled"

    def read(self) -> dict | None:
        self.cluster = self.describe()
        # A cluster being deleted is on its way out: absent for state=absent; creating anew fails with
        # AWS's own "already exists" until it is gone.
        if self.cluster is None or self.cluster.get("Status") == "deleting":
            return None
        cluster = self.cluster
        if cluster.get("Engine", "docdb") != "docdb":
            raise AwsManagedError(f"Cannot manage {self.kind} {self.name}: it is a {cluster['Engine']} cluster")
        self.instances = self.describe_instances()
        members = [member["DBInstanceIdentifier"] for member in cluster.get("DBClusterMembers", [])]
        foreign = sorted(set(members) - set(own_instances(self.name, members)))
        if foreign:
            self.module.warn(f"{self.kind} {self.name} has instances not named {self.name}-N, left alone: {', '.join(foreign)}")
        tags = call(f"read the tags of {self.kind} {self.name}", self.aws.list_tags_for_resource,
                    ResourceName=cluster["DBClusterArn"])["TagList"]
        return {
            "engine_version": cluster.get("EngineVersion"),
            "instance_class": instance_class_of([self.instances[m]["DBInstanceClass"] for m in own_instances(self.name, members)
                                                 if m in self.instances]),
            "instances": own_instances(self.name, members),
            "port": cluster.get("Port"),
            "master_username": cluster.get("MasterUsername"),
            "db_subnet_group_name": cluster.get("DBSubnetGroup"),
            "vpc_security_group_ids": [group["VpcSecurityGroupId"] for group in cluster.get("VpcSecurityGroups", [])],
            "storage_encrypted": cluster.get("StorageEncrypted", False),
            "kms_key_id": cluster.get("KmsKeyId"),
            "backup_retention_period": cluster.get("BackupRetentionPeriod"),
            "preferred_backup_window": cluster.get("PreferredBackupWindow"),
            "preferred_maintenance_window": cluster.get("PreferredMaintenanceWindow"),
            "parameter_group": cluster.get("DBClusterParameterGroup"),
            "tls": self.tls_parameter(),
            "deletion_protection": cluster.get("DeletionProtection", False),
            "tags": aws_managed.tag_dict(tags),
        }

    def validate(self, current: dict | None) -> None:
        params = self.params
        if params["state"] == "absent":
            return
        if params["instance_count"] < 1:
            raise AwsManagedError(f"Cannot manage {self.kind} {self.name}: instance_count is {params['instance_count']}, expected at least 1")
        if params["kms_key_id"] and not params["storage_encrypted"]:
            raise AwsManagedError(f"Cannot manage {self.kind} {self.name}: kms_key_id needs storage_encrypted: true")
        if current is None and not (params["master_username"] and params["master_password"]):
            raise AwsManagedError(f"Cannot create {self.kind} {self.name}: master_username and master_password are required to create it")

    def desired(self, current: dict | None) -> dict:
        params = self.params
        return {
            "engine_version": params["engine_version"],
            "instance_class": params["instance_class"],
            "instances": instance_names(self.name, params["instance_count"]),
            "port": params["port"],
            "master_username": params["master_username"],
            "db_subnet_group_name": params["db_subnet_group_name"],
            "vpc_security_group_ids": params["vpc_security_group_ids"],
            "storage_encrypted": params["storage_encrypted"],
            "kms_key_id": aws_managed.kms_key_arn(params, params["kms_key_id"]),
            "backup_retention_period": params["backup_retention_period"],
            "preferred_backup_window": params["preferred_backup_window"],
            "preferred_maintenance_window": params["preferred_maintenance_window"],
            "parameter_group": self.parameter_group,
            "tls": params["tls"],
            "deletion_protection": params["deletion_protection"],
            "tags": aws_managed.desired_tags((current or {}).get("tags"), params["tags"], params["purge_tags"]),
        }

    def secrets(self, current: dict | None) -> list[str]:
        if self.params["master_password"] and (current is None or self.params["update_password"] == "always"):
            return ["master_password"]
        return []

    def ensure_parameter_group(self, tls: bool) -> None:
        if self.tls_parameter() is None:
            call(f"create parameter group {self.parameter_group}", self.aws.create_db_cluster_parameter_group,
                 DBClusterParameterGroupName=self.parameter_group,
                 DBParameterGroupFamily=parameter_group_family(self.params["engine_version"]),
                 Description=f"{self.kind} {self.name} (chajipoa.platform.docdb_cluster)")
        call(f"set tls in parameter group {self.parameter_group}", self.aws.modify_db_cluster_parameter_group,
             DBClusterParameterGroupName=self.parameter_group,
             Parameters=[{"ParameterName": "tls", "ParameterValue": "enabled" if tls else "disabled", "ApplyMethod": "pending-reboot"}])

    def create_instance(self, identifier: str) -> None:
        call(f"create instance {identifier} of {self.kind} {self.name}", self.aws.create_db_instance,
             DBInstanceIdentifier=identifier, DBInstanceClass=self.params["instance_class"], Engine="docdb",
             DBClusterIdentifier=self.name)

    def create(self, desired: dict) -> None:
        self.ensure_parameter_group(desired["tls"])
        call(f"create {self.kind} {self.name}", self.aws.create_db_cluster,
             DBClusterIdentifier=self.name, Engine="docdb", EngineVersion=desired["engine_version"], Port=desired["port"],
             MasterUsername=desired["master_username"], MasterUserPassword=self.params["master_password"],
             DBSubnetGroupName=desired["db_subnet_group_name"], VpcSecurityGroupIds=desired["vpc_security_group_ids"],
             StorageEncrypted=desired["storage_encrypted"], KmsKeyId=desired["kms_key_id"],
             BackupRetentionPeriod=desired["backup_retention_period"],
             PreferredBackupWindow=desired["preferred_backup_window"],
             PreferredMaintenanceWindow=desired["preferred_maintenance_window"],
             DBClusterParameterGroupName=self.parameter_group, DeletionProtection=desired["deletion_protection"],
             Tags=aws_managed.tag_list(desired["tags"]) if desired["tags"] else None)
        for identifier in desired["instances"]:
            self.create_instance(identifier)
        self.wait_available(desired["instances"])

    def update(self, found: dict[str, tuple], secrets: list[str], desired: dict) -> None:
        if "tls" in found or "parameter_group" in found:
            self.ensure_parameter_group(desired["tls"])
            if "tls" in found:
                self.module.warn(f"tls of {self.kind} {self.name} changes when its instances restart (a static parameter)")
        modify = aws_managed.api_arguments(found, MODIFIABLE)
        if "engine_version" in found and \
                aws_managed.major_version(found["engine_version"][0]) != aws_managed.major_version(desired["engine_version"]):
            modify["AllowMajorVersionUpgrade"] = True
        if "master_password" in secrets:
            modify["MasterUserPassword"] = self.params["master_password"]
        if modify:
            call(f"modify {self.kind} {self.name}", self.aws.modify_db_cluster, DBClusterIdentifier=self.name,
                 ApplyImmediately=True, **modify)
        current_instances = own_instances(self.name, list(self.instances))
        for identifier in desired["instances"]:
            if identifier not in self.instances:
                self.create_instance(identifier)
            elif self.instances[identifier]["DBInstanceClass"] != desired["instance_class"]:
                call(f"modify instance {identifier}", self.aws.modify_db_instance, DBInstanceIdentifier=identifier,
                     DBInstanceClass=desired["instance_class"], ApplyImmediately=True)
        for identifier in set(current_instances) - set(desired["instances"]):
            call(f"delete instance {identifier}", self.aws.delete_db_instance, DBInstanceIdentifier=identifier)
        if "tags" in found:
            aws_managed.sync_tags(self.aws, self.cluster["DBClusterArn"], found["tags"][0], desired["tags"], f"{self.kind} {self.name}")
        self.wait_available(desired["instances"])

    def wait_available(self, instances: list[str]) -> None:
        if not self.params["wait"]:
            return

        def statuses() -> dict[str, str]:
            cluster = self.describe()
            found = self.describe_instances()
            return {self.name: cluster["Status"] if cluster else "missing",
                    **{name: found[name]["DBInstanceStatus"] if name in found else "missing" for name in instances}}

        self.wait_for(statuses, lambda answer: set(answer.values()) == {"available"},
                      f"{self.kind} {self.name} and its instances to be available",
                      lambda answer: ", ".join(f"{name} {status}" for name, status in answer.items() if status != "available"))

    def delete(self) -> None:
        what = f"{self.kind} {self.name}"
        if self.cluster.get("DeletionProtection"):
            call(f"lift the deletion protection of {what}", self.aws.modify_db_cluster, DBClusterIdentifier=self.name,
                 DeletionProtection=False, ApplyImmediately=True)
        # DocumentDB deletes a cluster only once none of its instances is left outside "deleting".
        for identifier, instance in self.instances.items():
            if instance.get("DBInstanceStatus") != "deleting":
                call(f"delete instance {identifier} of {what}", self.aws.delete_db_instance, DBInstanceIdentifier=identifier)
        call(f"delete {what}", self.aws.delete_db_cluster, DBClusterIdentifier=self.name,
             SkipFinalSnapshot=self.params["skip_final_snapshot"],
             FinalDBSnapshotIdentifier=aws_managed.final_snapshot(self.params, self.name))
        if not self.params["wait"]:
            return
        self.wait_for(self.describe, lambda cluster: cluster is None, f"{what} to be deleted",
                      lambda cluster: cluster["Status"])
        # The group is in use until the cluster is gone, hence only when waiting.
        call_unless_missing(f"delete parameter group {self.parameter_group}", "DBParameterGroupNotFound",
                            self.aws.delete_db_cluster_parameter_group, DBClusterParameterGroupName=self.parameter_group)

    def result(self) -> dict:
        cluster = self.describe()
        if cluster is None:
            return {}
        return {
            "cluster_id": cluster["DBClusterIdentifier"],
            "arn": cluster.get("DBClusterArn"),
            "endpoint": cluster.get("Endpoint"),
            "reader_endpoint": cluster.get("ReaderEndpoint"),
            "port": cluster.get("Port"),
            "status": cluster.get("Status"),
            "storage_encrypted": cluster.get("StorageEncrypted", False),
            "kms_key_id": cluster.get("KmsKeyId"),
            "engine_version": cluster.get("EngineVersion"),
            "deletion_protection": cluster.get("DeletionProtection", False),
            "instances": sorted(member["DBInstanceIdentifier"] for member in cluster.get("DBClusterMembers", [])),
            "parameter_group": cluster.get("DBClusterParameterGroup"),
        }


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, **aws_managed.MODULE_KWARGS)
    aws_managed.run(module, DocdbCluster, "docdb", "cluster")


if __name__ == "__main__":
    main()
