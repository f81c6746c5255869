#!/usr/bin/python
# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: elasticache_replication_group
short_description: Manage an ElastiCache Redis replication group with encryption in transit and an auth token
description:
  - Creates, updates and deletes an ElastiCache replication group (cluster mode disabled, so one primary
    and its replicas) with encryption at rest (and its KMS key), encryption in transit, an AUTH token,
    automatic failover, Multi-AZ and automatic snapshots.
  - Written because no module in the collections the C(ansible) package bundles does this;
    community.aws 10 has M(community.aws.elasticache), which manages single cache clusters without
    encryption in transit or an auth token, and no replication-group module.
  - What AWS cannot change on an existing group (encryption at rest and its KMS key, the port, the subnet
    group, the engine, and encryption in transit before engine 7) fails the task naming the option and
    saying the group must be replaced; nothing is silently left different.
  - The engine version, subnet group, security groups and parameter group are read from the group's
    first member cluster; when it cannot be described the module warns and does not compare them.
  - The auth token is set on creation; with O(update_auth_token=always) it is rotated every run
    (C(AuthTokenUpdateStrategy=ROTATE), so the old and the new token both work until the next rotation).
    It is never returned nor shown in the diff.
  - One change may take several calls (the settings, the replica count, encryption in transit, the
    token), each once the group is available again; with O(wait=false) AWS may refuse a later one
    while the group is still modifying, and the next run finishes the job.
  - Encryption in transit is compared with its mode too (C(TransitEncryptionMode), the mode a pending
    modification moves to when there is one); a group left in V(preferred), which accepts plain
    connections as well, is a change, and the run requires TLS. A group that reports no mode but has
    encryption in transit is taken as V(required), AWS's mode for it.
version_added: 0.5.0
author: ChajiPoa Infrastructure engineers (!UNKNOWN)
requirements: [boto3]
options:
  replication_group_id:
    description: The replication group identifier.
    type: str
    required: true
  description:
    description: The group's description; unset, C(<replication_group_id> (chajipoa.platform)) on creation and not managed after.
    type: str
  engine:
    description: The engine. Cannot change afterwards.
    type: str
    default: redis
  engine_version:
    description: The engine version (V(7.1) matches AWS's V(7.1.0)).
    type: str
    default: "7.1"
  node_type:
    description: The node type of every member.
    type: str
    default: cache.t4g.small
  num_cache_clusters:
    description: Nodes, the primary included (1 to 6); changed with IncreaseReplicaCount and DecreaseReplicaCount.
    type: int
    default: 2
  automatic_failover:
    description: A replica takes over when the primary fails (needs O(num_cache_clusters) of 2 or more).
    type: bool
    default: true
  multi_az:
    description: Nodes in several availability zones (needs O(automatic_failover)).
    type: bool
    default: true
  cache_subnet_group_name:
    description: The cache subnet group (the private subnets). Cannot change afterwards.
    type: str
  security_group_ids:
    description: The VPC security groups of the members.
    type: list
    elements: str
  port:
    description: The port. Cannot change afterwards.
    type: int
    default: 6379
  at_rest_encryption:
    description: Encryption at rest. Cannot change afterwards.
    type: bool
    default: true
  transit_encryption:
    description:
      - Encryption in transit (TLS). From engine 7 AWS changes it in place (through C(TransitEncryptionMode)
        V(preferred)); before, it cannot change afterwards.
      - When true, TLS is required (C(TransitEncryptionMode=required)); a group found in V(preferred) is moved on to V(required).
    type: bool
    default: true
  kms_key_id:
    description: The KMS key (id, alias or ARN) for encryption at rest; unset, AWS's managed key. Cannot change afterwards.
    type: str
  auth_token:
    description: The AUTH token (16 to 128 printable characters); needs O(transit_encryption).
    type: str
  update_auth_token:
    description: V(always) rotates to O(auth_token) every run (always a change); V(on_create) sets it only on creation.
    type: str
    choices: [always, on_create]
    default: on_create
  parameter_group_name:
    description: The cache parameter group; unset, AWS's default for the engine.
    type: str
  snapshot_retention_limit:
    description: Days of automatic snapshots (0 turns them off).
    type: int
    default: 7
  snapshot_window:
    description: The daily snapshot window, UTC, C(hh24:mi-hh24:mi).
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - chajipoa.platform.aws_managed
attributes:
  check_mode:
    support: full
    details: Reads only, and reports the plan (changed, diff) a normal run would carry out.
  diff_mode:
    support: full
    details: The managed settings before and after; the auth token appears only as a marker that it is sent.
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Redis for sessions and rate limits, encrypted at rest and in transit, with an auth token
  chajipoa.platform.elasticache_replication_group:
    replication_group_id: chajipoa-cache
    description: ChajiPoa sessions and rate limits
    cache_subnet_group_name: chajipoa-private
    security_group_ids: ["{{ redis_sg.group_id }}"]
    kms_key_id: alias/chajipoa-data
    auth_token: "{{ vault_redis_auth_token }}"
    tags: {environment: production}
  register: redis

- name: Rotate the auth token (clients may use the old one until the next rotation)
  chajipoa.platform.elasticache_replication_group:
    replication_group_id: chajipoa-cache
    auth_token: "{{ vault_redis_auth_token_next }}"
    update_auth_token: always
"""

RETURN = r"""
replication_group:
  description: The group after the run; empty when it does not exist (or, in check mode, is still to be created).
  returned: always
  type: dict
  contains:
    id: {description: The identifier., type: str, sample: chajipoa-cache}
    arn: {description: The group's ARN., type: str}
    primary_endpoint: {description: The primary's address., type: str, sample: master.chajipoa-cache.abc123.afs1.cache.amazonaws.com}
    reader_endpoint: {description: The readers' address., type: str, sample: replica.chajipoa-cache.abc123.afs1.cache.amazonaws.com}
    port: {description: The port., type: int, sample: 6379}
    status: {description: The group's status., type: str, sample: available}
    at_rest_encryption: {description: Encrypted at rest., type: bool, sample: true}
    transit_encryption: {description: Encrypted in transit., type: bool, sample: true}
    transit_encryption_mode:
      description: V(required) (TLS only) or V(preferred) (TLS and plain), the mode a pending modification moves to if any; null without encryption in transit.
      type: str
      sample: required
    auth_token_enabled: {description: Clients must AUTH., type: bool, sample: true}
    kms_key_id: {description: The KMS key of encryption at rest., type: str}
    automatic_failover: {description: Automatic failover., type: bool, sample: true}
    multi_az: {description: Multi-AZ., type: bool, sample: true}
    member_clusters: {description: The member clusters., type: list, elements: str, sample: [chajipoa-cache-001, chajipoa-cache-002]}
    node_type: {description: The node type., type: str, sample: cache.t4g.small}
diff:
  description: The managed settings before and after (no secret).
  returned: always
  type: dict
  sample: {before: {snapshot_retention_limit: 7}, after: {snapshot_retention_limit: 14}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.chajipoa.platform.plugins.module_utils import aws_managed
from ansible_collections.chajipoa.platform.plugins.module_utils.aws_managed import AwsManagedError, call, call_unless_missing

ARGUMENT_SPEC = {
    "replication_group_id": {"type": "str", "required": True},
    "description": {"type": "str"},
    "engine": {"type": "str", "default": "redis"},
    "engine_version": {"type": "str", "default": "7.1"},
    "node_type": {"type": "str", "default": "cache.t4g.small"},
    "num_cache_clusters": {"type": "int", "default": 2},
    "automatic_failover": {"type": "bool", "default": True},
    "multi_az": {"type": "bool", "default": True},
    "cache_subnet_group_name": {"type": "str"},
    "security_group_ids": {"type": "list", "elements": "str"},
    "port": {"type": "int", "default": 6379},
    "at_rest_encryption": {"type": "bool", "default": True},
    "transit_encryption": {"type": "bool", "default": True},
    "kms_key_id": {"type": "str"},
    "auth_token": {"type": "str", "no_log": True},
    "update_auth_token": {"type": "str", "choices": ["always", "on_create"], "default": "on_create", "no_log": False},
    "parameter_group_name": {"type": "str"},
    "snapshot_retention_limit": {"type": "int", "default": 7},
    "snapshot_window": {"type": "str"},
    **aws_managed.CONNECTION_SPEC,
    **aws_managed.LIFECYCLE_SPEC,
}

# Option -> ModifyReplicationGroup argument, for the settings AWS changes in place with that call.
MODIFIABLE = {
    "description": "ReplicationGroupDescription",
    "engine_version": "EngineVersion",
    "node_type": "CacheNodeType",
    "automatic_failover": "AutomaticFailoverEnabled",
    "multi_az": "MultiAZEnabled",
    "security_group_ids": "SecurityGroupIds",
    "parameter_group_name": "CacheParameterGroupName",
    "snapshot_retention_limit": "SnapshotRetentionLimit",
    "snapshot_window": "SnapshotWindow",
}

# Read from the first member cluster, not from the replication group's own description.
MEMBER_SETTINGS = ("engine_version", "cache_subnet_group_name", "security_group_ids", "parameter_group_name")

# The settings the result carries as the group's description has them.
RETURNED_SETTINGS = ("at_rest_encryption", "transit_encryption", "transit_encryption_mode", "auth_token_enabled", "kms_key_id",
                     "automatic_failover", "multi_az", "node_type")

ALWAYS_IMMUTABLE = frozenset({"at_rest_encryption", "kms_key_id", "port", "cache_subnet_group_name", "engine"})


def immutable_settings(engine_version: str | None) -> frozenset[str]:
    """What AWS cannot change in place on a group of this engine version: encryption in transit too
    before 7 (and when the version could not be read)."""
    major = aws_managed.major_version(engine_version)
    return ALWAYS_IMMUTABLE if major is not None and major >= 7 else ALWAYS_IMMUTABLE | {"transit_encryption"}


def transit_encryption_mode(group: dict) -> str | None:
    """How the group takes connections: required (TLS only), preferred (TLS and plain) or None (no
    encryption in transit). A pending modification counts as done: it is on its way, and asking
    again while the group applies it is refused. A group with encryption in transit and no mode
    (older descriptions, and moto's) is required, the mode AWS gives it."""
    if not group.get("TransitEncryptionEnabled", False):
        return None
    pending = (group.get("PendingModifiedValues") or {}).get("TransitEncryptionMode")
    return pending or group.get("TransitEncryptionMode") or "required"


def group_settings(group: dict) -> dict:
    """The managed settings a replication group's description carries."""
    node_groups = group.get("NodeGroups") or [{}]
    endpoint = group.get("ConfigurationEndpoint") or node_groups[0].get("PrimaryEndpoint") or {}
    settings = {
        "description": group.get("Description"),
        "engine": group.get("Engine", "redis"),
        "node_type": group.get("CacheNodeType"),
        "num_cache_clusters": len(group.get("MemberClusters", [])),
        "automatic_failover": group.get("AutomaticFailover") in ("enabled", "enabling"),
        "multi_az": group.get("MultiAZ") == "enabled",
        "at_rest_encryption": group.get("AtRestEncryptionEnabled", False),
        "transit_encryption": group.get("TransitEncryptionEnabled", False),
        # Compared, not only reported: "preferred" still accepts plain connections, so a group the
        # two-step move left there (the second call refused or failed) is a change until it is required.
        "transit_encryption_mode": transit_encryption_mode(group),
        "kms_key_id": group.get("KmsKeyId"),
        "auth_token_enabled": group.get("AuthTokenEnabled", False),
        "snapshot_retention_limit": group.get("SnapshotRetentionLimit"),
        "snapshot_window": group.get("SnapshotWindow"),
    }
    if "Port" in endpoint:
        settings["port"] = endpoint["Port"]
    return settings


def member_settings(cluster: dict) -> dict:
    """The managed settings a member cluster's description carries."""
    return {
        "engine_version": cluster.get("EngineVersion"),
        "cache_subnet_group_name": cluster.get("CacheSubnetGroupName"),
        "security_group_ids": [group["SecurityGroupId"] for group in cluster.get("SecurityGroups", [])],
        "parameter_group_name": (cluster.get("CacheParameterGroup") or {}).get("CacheParameterGroupName"),
    }


class ReplicationGroup(aws_managed.ManagedResource):
    kind = "ElastiCache replication group"
    equal = {"engine_version": aws_managed.same_version}

    def __init__(self, module, service: str) -> None:
        super().__init__(module, service)
        self.group: dict | None = None
        self.immutable = ALWAYS_IMMUTABLE

    @property
    def name(self) -> str:
        return self.params["replication_group_id"]

    def describe(self) -> dict | None:
        found = call_unless_missing(f"describe {self.kind} {self.name}", "ReplicationGroupNotFoundFault",
                                    self.aws.describe_replication_groups, ReplicationGroupId=self.name)
        return found["ReplicationGroups"][0] if found and found["ReplicationGroups"] else None

    def read(self) -> dict | None:
        self.group = self.describe()
        # A group being deleted is on its way out: absent for state=absent; creating anew fails with AWS's
        # own "already exists" until it is gone.
        if self.group is None or self.group.get("Status") == "deleting":
            return None
        settings = group_settings(self.group)
        members = self.group.get("MemberClusters", [])
        cluster = members and call_unless_missing(f"describe member {members[0]} of {self.kind} {self.name}", "CacheClusterNotFound",
                                                  self.aws.describe_cache_clusters, CacheClusterId=members[0])
        if cluster and cluster.get("CacheClusters"):
            settings.update(member_settings(cluster["CacheClusters"][0]))
        else:
            self.module.warn(f"Cannot read {', '.join(MEMBER_SETTINGS)} of {self.kind} {self.name}: its member cluster "
                             f"{members[0] if members else '(none)'} cannot be described; they are not compared")
        self.immutable = immutable_settings(settings.get("engine_version"))
        tags = call(f"read the tags of {self.kind} {self.name}", self.aws.list_tags_for_resource, ResourceName=self.group["ARN"])
        settings["tags"] = aws_managed.tag_dict(tags["TagList"])
        return settings

    def validate(self, current: dict | None) -> None:
        params = self.params
        if params["state"] == "absent":
            return
        refusals = []
        if not 1 <= params["num_cache_clusters"] <= 6:
            refusals.append(f"num_cache_clusters is {params['num_cache_clusters']}, expected 1 to 6")
        if params["automatic_failover"] and params["num_cache_clusters"] < 2:
            refusals.append("automatic_failover needs num_cache_clusters of 2 or more")
        if params["multi_az"] and not params["automatic_failover"]:
            refusals.append("multi_az needs automatic_failover: true")
        if params["auth_token"] and not params["transit_encryption"]:
            refusals.append("auth_token needs transit_encryption: true")
        if params["kms_key_id"] and not params["at_rest_encryption"]:
            refusals.append("kms_key_id needs at_rest_encryption: true")
        if refusals:
            raise AwsManagedError(f"Cannot manage {self.kind} {self.name}: {'; '.join(refusals)}")

    def desired(self, current: dict | None) -> dict:
        params = self.params
        return {
            "description": params["description"],
            "engine": params["engine"],
            "engine_version": params["engine_version"],
            "node_type": params["node_type"],
            "num_cache_clusters": params["num_cache_clusters"],
            "automatic_failover": params["automatic_failover"],
            "multi_az": params["multi_az"],
            "cache_subnet_group_name": params["cache_subnet_group_name"],
            "security_group_ids": params["security_group_ids"],
            "port": params["port"],
            "at_rest_encryption": params["at_rest_encryption"],
            "transit_encryption": params["transit_encryption"],
            # Turning it off is transit_encryption's change; the mode is only managed while it is on.
            "transit_encryption_mode": "required" if params["transit_encryption"] else None,
            "kms_key_id": aws_managed.kms_key_arn(params, params["kms_key_id"]),
            # Only ever turned on here: a token is added with SET; removing one is not this module's job.
            "auth_token_enabled": True if params["auth_token"] else None,
            "parameter_group_name": params["parameter_group_name"],
            "snapshot_retention_limit": params["snapshot_retention_limit"],
            "snapshot_window": params["snapshot_window"],
            "tags": aws_managed.desired_tags((current or {}).get("tags"), params["tags"], params["purge_tags"]),
        }

    def secrets(self, current: dict | None) -> list[str]:
        token = self.params["auth_token"]
        if token and (current is None or self.params["update_auth_token"] == "always" or not current.get("auth_token_enabled")):
            return ["auth_token"]
        return []

    def create(self, desired: dict) -> None:
        call(f"create {self.kind} {self.name}", self.aws.create_replication_group,
             ReplicationGroupId=self.name,
             ReplicationGroupDescription=desired["description"] or f"{self.name} (chajipoa.platform)",
             Engine=desired["engine"], EngineVersion=desired["engine_version"], CacheNodeType=desired["node_type"],
             NumCacheClusters=desired["num_cache_clusters"], AutomaticFailoverEnabled=desired["automatic_failover"],
             MultiAZEnabled=desired["multi_az"], CacheSubnetGroupName=desired["cache_subnet_group_name"],
             SecurityGroupIds=desired["security_group_ids"], Port=desired["port"],
             AtRestEncryptionEnabled=desired["at_rest_encryption"], TransitEncryptionEnabled=desired["transit_encryption"],
             KmsKeyId=desired["kms_key_id"], AuthToken=self.params["auth_token"],
             CacheParameterGroupName=desired["parameter_group_name"],
             SnapshotRetentionLimit=desired["snapshot_retention_limit"], SnapshotWindow=desired["snapshot_window"],
             Tags=aws_managed.tag_list(desired["tags"]) if desired["tags"] else None)
        self.wait_available()

    def modify(self, what: str, then_wait: bool = False, **arguments) -> None:
        call(f"{what} of {self.kind} {self.name}", self.aws.modify_replication_group,
             ReplicationGroupId=self.name, ApplyImmediately=True, **arguments)
        self.wait_available(then_wait)

    def update(self, found: dict[str, tuple], secrets: list[str], desired: dict) -> None:
        modify = aws_managed.api_arguments(found, MODIFIABLE)
        if modify:
            self.modify("modify " + ", ".join(sorted(name for name in found if name in MODIFIABLE)), **modify)
        if "num_cache_clusters" in found:
            before, wanted = found["num_cache_clusters"]
            call(f"change the replicas of {self.kind} {self.name}",
                 self.aws.increase_replica_count if wanted > before else self.aws.decrease_replica_count,
                 ReplicationGroupId=self.name, NewReplicaCount=wanted - 1, ApplyImmediately=True)
            self.wait_available()
        if "transit_encryption" in found:
            # AWS moves a group between plain and TLS through the "preferred" mode, which accepts both.
            # The second step is refused while the group still applies the first: waited for even without wait.
            self.modify("set transit encryption to preferred", then_wait=True, TransitEncryptionEnabled=True,
                        TransitEncryptionMode="preferred")
            if desired["transit_encryption"]:
                self.modify("require transit encryption", TransitEncryptionMode="required")
            else:
                self.modify("turn transit encryption off", TransitEncryptionEnabled=False)
        elif "transit_encryption_mode" in found:
            # Encrypted but still "preferred": the second step of an earlier move, which did not happen.
            self.modify("require transit encryption", TransitEncryptionMode="required")
        if "auth_token" in secrets:
            strategy = "ROTATE" if self.group.get("AuthTokenEnabled") else "SET"
            self.modify(f"{strategy.lower()} the auth token", AuthToken=self.params["auth_token"], AuthTokenUpdateStrategy=strategy)
        if "tags" in found:
            aws_managed.sync_tags(self.aws, self.group["ARN"], found["tags"][0], desired["tags"], f"{self.kind} {self.name}")

    def wait_available(self, always: bool = False) -> None:
        if self.params["wait"] or always:
            self.wait_for(self.describe, lambda group: group is not None and group["Status"] == "available",
                          f"{self.kind} {self.name} to be available", lambda group: group["Status"] if group else "missing")

    def delete(self) -> None:
        call(f"delete {self.kind} {self.name}", self.aws.delete_replication_group, ReplicationGroupId=self.name,
             FinalSnapshotIdentifier=aws_managed.final_snapshot(self.params, self.name))
        if self.params["wait"]:
            self.wait_for(self.describe, lambda group: group is None, f"{self.kind} {self.name} to be deleted",
                          lambda group: group["Status"])

    def result(self) -> dict:
        group = self.describe()
        if group is None:
            return {}
        node_groups = group.get("NodeGroups") or [{}]
        settings = group_settings(group)
        return {
            "id": group["ReplicationGroupId"],
            "arn": group.get("ARN"),
            "primary_endpoint": (node_groups[0].get("PrimaryEndpoint") or group.get("ConfigurationEndpoint") or {}).get("Address"),
            "reader_endpoint": (node_groups[0].get("ReaderEndpoint") or {}).get("Address"),
            "port": settings.get("port"),
            "status": group.get("Status"),
            "member_clusters": group.get("MemberClusters", []),
            **{key: settings[key] for key in RETURNED_SETTINGS},
        }


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, **aws_managed.MODULE_KWARGS)
    aws_managed.run(module, ReplicationGroup, "elasticache", "replication_group")


if __name__ == "__main__":
    main()
