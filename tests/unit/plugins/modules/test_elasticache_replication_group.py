"""Unit tests of elasticache_replication_group's own logic: reading AWS's descriptions into settings,
which settings cannot change in place, and what it refuses. No AWS (the integration tests run it
against moto). The descriptions below follow the shapes of AWS's API reference."""
from __future__ import annotations

import pytest

from ansible_collections.chajipoa.platform.plugins.module_utils.aws_managed import AwsManagedError, plan
from ansible_collections.chajipoa.platform.plugins.modules import elasticache_replication_group as module

GROUP = {
    "ReplicationGroupId": "cache", "Description": "sessions", "Status": "available",
    "MemberClusters": ["cache-001", "cache-002"],
    "NodeGroups": [{"NodeGroupId": "0001", "PrimaryEndpoint": {"Address": "master.cache.x.afs1.cache.amazonaws.com", "Port": 6379},
                    "ReaderEndpoint": {"Address": "replica.cache.x.afs1.cache.amazonaws.com", "Port": 6379}}],
    "AutomaticFailover": "enabling", "MultiAZ": "enabled", "SnapshotRetentionLimit": 7, "SnapshotWindow": "02:00-03:00",
    "CacheNodeType": "cache.t4g.small", "AuthTokenEnabled": True, "TransitEncryptionEnabled": True,
    "AtRestEncryptionEnabled": True, "KmsKeyId": "arn:aws:kms:af-south-1:1:key/k", "ARN": "arn:aws:elasticache:x", "Engine": "redis",
}


def test_group_settings():
    assert module.group_settings(GROUP) == {
        "description": "sessions", "engine": "redis", "node_type": "cache.t4g.small", "num_cache_clusters": 2,
        "automatic_failover": True, "multi_az": True, "at_rest_encryption": True, "transit_encryption": True,
        "kms_key_id": "arn:aws:kms:af-south-1:1:key/k", "auth_token_enabled": True, "snapshot_retention_limit": 7,
        "snapshot_window": "02:00-03:00", "port": 6379, "transit_encryption_mode": "required"}


def test_a_group_still_creating_has_no_port_to_compare():
    creating = {**GROUP, "NodeGroups": [{"NodeGroupId": "0001"}], "Status": "creating"}
    assert "port" not in module.group_settings(creating)


def test_member_settings():
    cluster = {"EngineVersion": "7.1.0", "CacheSubnetGroupName": "private", "CacheParameterGroup": {"CacheParameterGroupName": "default.redis7"},
               "SecurityGroups": [{"SecurityGroupId": "sg-1", "Status": "active"}]}
    assert module.member_settings(cluster) == {"engine_version": "7.1.0", "cache_subnet_group_name": "private",
                                               "security_group_ids": ["sg-1"], "parameter_group_name": "default.redis7"}


@pytest.mark.parametrize(("version", "transit_fixed"), [("6.2.6", True), ("7.1.0", False), ("7.0", False), (None, True), ("x", True)])
def test_transit_encryption_changes_in_place_from_engine_7_only(version, transit_fixed):
    immutable = module.immutable_settings(version)
    assert ("transit_encryption" in immutable) is transit_fixed
    assert {"at_rest_encryption", "kms_key_id", "port", "cache_subnet_group_name", "engine"} <= immutable


def test_a_port_change_is_refused_naming_it_and_the_replacement():
    current = {**module.group_settings(GROUP), "engine_version": "7.1.0"}
    with pytest.raises(AwsManagedError, match=r"^Cannot change port \(6379 -> 6380\) of ElastiCache replication group cache in place: .*must be replaced"):
        plan(module.ReplicationGroup.kind, "cache", "present", {"port": 6380, "engine_version": "7.1"}, current,
             allow_delete=False, immutable=module.immutable_settings("7.1.0"), equal=module.ReplicationGroup.equal)


def test_the_same_settings_plan_nothing():
    current = {**module.group_settings(GROUP), "engine_version": "7.1.0"}
    desired = {"port": 6379, "engine_version": "7.1", "num_cache_clusters": 2, "automatic_failover": True, "auth_token_enabled": True}
    result = plan(module.ReplicationGroup.kind, "cache", "present", desired, current, allow_delete=False,
                  immutable=module.immutable_settings("7.1.0"), equal=module.ReplicationGroup.equal)
    assert not result.changed


def test_every_modifiable_setting_is_an_option_and_never_immutable():
    assert set(module.MODIFIABLE) <= set(module.ARGUMENT_SPEC)
    assert not set(module.MODIFIABLE) & module.immutable_settings(None)


def resource(**params) -> module.ReplicationGroup:
    """A ReplicationGroup without its AWS client (validate and secrets never call AWS)."""
    made = module.ReplicationGroup.__new__(module.ReplicationGroup)
    made.params = {"replication_group_id": "cache", "state": "present", "num_cache_clusters": 2, "automatic_failover": True,
                   "multi_az": True, "auth_token": "t" * 16, "transit_encryption": True, "kms_key_id": None,
                   "at_rest_encryption": True, "update_auth_token": "on_create", **params}
    return made


@pytest.mark.parametrize(("params", "needle"), [
    ({"num_cache_clusters": 7}, "num_cache_clusters is 7, expected 1 to 6"),
    ({"num_cache_clusters": 1}, "automatic_failover needs num_cache_clusters of 2 or more"),
    ({"automatic_failover": False}, "multi_az needs automatic_failover: true"),
    ({"transit_encryption": False}, "auth_token needs transit_encryption: true"),
    ({"at_rest_encryption": False, "kms_key_id": "alias/x"}, "kms_key_id needs at_rest_encryption: true"),
])
def test_validate_refuses_what_aws_would(params, needle):
    with pytest.raises(AwsManagedError, match=needle):
        resource(**params).validate(None)


def test_validate_passes_the_defaults_and_any_deletion():
    resource().validate(None)
    resource(num_cache_clusters=0, state="absent").validate({"port": 6379})


@pytest.mark.parametrize(("params", "current", "secrets"), [
    ({}, None, ["auth_token"]),
    ({}, {"auth_token_enabled": True}, []),
    ({}, {"auth_token_enabled": False}, ["auth_token"]),
    ({"update_auth_token": "always"}, {"auth_token_enabled": True}, ["auth_token"]),
    ({"auth_token": None}, {"auth_token_enabled": True}, []),
])
def test_the_token_is_sent_on_create_when_missing_or_always(params, current, secrets):
    assert resource(**params).secrets(current) == secrets


class StubElastiCacheClient:
    """Stub of boto3's ElastiCache client for the calls moto lacks or ignores: records every call;
    the group is always available."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, operation):
        def record(**kwargs):
            self.calls.append((operation, kwargs))
            return {"ReplicationGroups": [{**GROUP, "Status": "available"}]}
        return record


def updating(**params) -> tuple[module.ReplicationGroup, StubElastiCacheClient]:
    made = resource(**{"wait": True, "wait_timeout": 10, **params})
    made.aws = StubElastiCacheClient()
    made.group = dict(GROUP)
    return made, made.aws


def mutations(stub: StubElastiCacheClient) -> list[tuple[str, dict]]:
    return [(name, {k: v for k, v in kwargs.items() if k != "ReplicationGroupId"}) for name, kwargs in stub.calls
            if not name.startswith("describe")]


def test_settings_go_in_one_modify_call():
    group, stub = updating()
    group.update({"node_type": ("cache.t4g.small", "cache.r7g.large"), "snapshot_retention_limit": (7, 14)}, [], {})
    assert mutations(stub) == [("modify_replication_group", {"ApplyImmediately": True, "CacheNodeType": "cache.r7g.large",
                                                             "SnapshotRetentionLimit": 14})]


@pytest.mark.parametrize(("before", "wanted", "operation"), [(2, 3, "increase_replica_count"), (3, 2, "decrease_replica_count")])
def test_the_member_count_changes_through_the_replica_count(before, wanted, operation):
    group, stub = updating()
    group.update({"num_cache_clusters": (before, wanted)}, [], {})
    assert mutations(stub) == [(operation, {"NewReplicaCount": wanted - 1, "ApplyImmediately": True})]


def test_transit_encryption_is_turned_on_through_preferred_then_required():
    group, stub = updating(wait=False)
    group.update({"transit_encryption": (False, True)}, [], {"transit_encryption": True})
    assert mutations(stub) == [
        ("modify_replication_group", {"ApplyImmediately": True, "TransitEncryptionEnabled": True, "TransitEncryptionMode": "preferred"}),
        ("modify_replication_group", {"ApplyImmediately": True, "TransitEncryptionMode": "required"})]
    assert [call[0] for call in stub.calls].index("describe_replication_groups") == 1  # waited between, despite wait: false


def test_transit_encryption_is_turned_off_through_preferred():
    group, stub = updating()
    group.update({"transit_encryption": (True, False)}, [], {"transit_encryption": False})
    assert mutations(stub)[-1] == ("modify_replication_group", {"ApplyImmediately": True, "TransitEncryptionEnabled": False})


@pytest.mark.parametrize(("enabled", "strategy"), [(True, "ROTATE"), (False, "SET")])
def test_the_auth_token_is_rotated_or_set(enabled, strategy):
    group, stub = updating()
    group.group["AuthTokenEnabled"] = enabled
    group.update({}, ["auth_token"], {})
    assert mutations(stub) == [("modify_replication_group", {"ApplyImmediately": True, "AuthToken": "t" * 16,
                                                             "AuthTokenUpdateStrategy": strategy})]


@pytest.mark.parametrize(("description", "mode"), [
    ({"TransitEncryptionEnabled": True, "TransitEncryptionMode": "required"}, "required"),
    ({"TransitEncryptionEnabled": True, "TransitEncryptionMode": "preferred"}, "preferred"),
    # No mode in the description (moto's, older groups'): TLS only, AWS's mode for an encrypted group.
    ({"TransitEncryptionEnabled": True}, "required"),
    # Already asked for and being applied: asking again would be refused while the group modifies.
    ({"TransitEncryptionEnabled": True, "TransitEncryptionMode": "preferred",
      "PendingModifiedValues": {"TransitEncryptionMode": "required"}}, "required"),
    ({"TransitEncryptionEnabled": False}, None),
    ({"TransitEncryptionEnabled": False, "TransitEncryptionMode": "preferred"}, None),
])
def test_the_transit_encryption_mode_is_read(description, mode):
    assert module.group_settings({**GROUP, **description})["transit_encryption_mode"] == mode


def test_a_group_in_preferred_mode_plans_requiring_tls_whatever_else_matches():
    current = {**module.group_settings({**GROUP, "TransitEncryptionMode": "preferred"}), "engine_version": "7.1.0"}
    desired = {"port": 6379, "engine_version": "7.1", "transit_encryption": True, "transit_encryption_mode": "required"}
    result = plan(module.ReplicationGroup.kind, "cache", "present", desired, current, allow_delete=False,
                  immutable=module.immutable_settings("7.1.0"), equal=module.ReplicationGroup.equal)
    assert result.action == "update" and result.changes == {"transit_encryption_mode": ("preferred", "required")}


def test_without_transit_encryption_the_mode_is_not_managed():
    assert resource(transit_encryption=False, auth_token=None, description=None, engine="redis", engine_version="7.1",
                    node_type="cache.t4g.small", cache_subnet_group_name=None, security_group_ids=None, port=6379,
                    parameter_group_name=None, snapshot_retention_limit=7, snapshot_window=None, tags=None,
                    purge_tags=True).desired(None)["transit_encryption_mode"] is None


class MockElastiCacheInPreferredMode:
    """Mock of boto3's ElastiCache client holding one group whose move to TLS stopped half way:
    encrypted in transit, TransitEncryptionMode preferred (what the two-step enabling leaves when its
    second call fails). moto cannot hold this state past a modification (its ModifyReplicationGroup
    ignores TransitEncryptionMode), so the decision is tested here. A modification of the mode is
    applied at once, as AWS does once the group is available again; every call is recorded."""

    def __init__(self):
        self.group = {**GROUP, "TransitEncryptionMode": "preferred", "AutomaticFailover": "enabled"}
        self.calls = []

    def describe_replication_groups(self, **kwargs):
        self.calls.append(("describe_replication_groups", kwargs))
        return {"ReplicationGroups": [dict(self.group)]}

    def describe_cache_clusters(self, **kwargs):
        self.calls.append(("describe_cache_clusters", kwargs))
        return {"CacheClusters": [{"EngineVersion": "7.1.0", "CacheSubnetGroupName": "private", "SecurityGroups": [],
                                   "CacheParameterGroup": {"CacheParameterGroupName": "default.redis7"}}]}

    def list_tags_for_resource(self, **kwargs):
        self.calls.append(("list_tags_for_resource", kwargs))
        return {"TagList": []}

    def modify_replication_group(self, **kwargs):
        self.calls.append(("modify_replication_group", kwargs))
        if "TransitEncryptionMode" in kwargs:
            self.group["TransitEncryptionMode"] = kwargs["TransitEncryptionMode"]
        return {"ReplicationGroup": dict(self.group)}


class FakeAnsibleModule:
    """Stands in for AnsibleModule: the options, check mode, and the exit or failure it was given."""

    def __init__(self, check_mode=False):
        self.params = {"replication_group_id": "cache", "state": "present", "description": None, "engine": "redis",
                       "engine_version": "7.1", "node_type": "cache.t4g.small", "num_cache_clusters": 2,
                       "automatic_failover": True, "multi_az": True, "cache_subnet_group_name": None,
                       "security_group_ids": None, "port": 6379, "at_rest_encryption": True, "transit_encryption": True,
                       "kms_key_id": None, "auth_token": "t" * 16, "update_auth_token": "on_create",
                       "parameter_group_name": None, "snapshot_retention_limit": 7, "snapshot_window": "02:00-03:00",
                       "tags": None, "purge_tags": True, "allow_delete": False, "skip_final_snapshot": False,
                       "wait": True, "wait_timeout": 10}
        self.check_mode = check_mode
        self.warnings = []
        self.exited = None

    def warn(self, text):
        self.warnings.append(text)

    def exit_json(self, **result):
        self.exited = result

    def fail_json(self, **result):
        raise AssertionError(f"the module failed: {result}")


def run_module(aws, check_mode=False) -> dict:
    fake = FakeAnsibleModule(check_mode)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module.aws_managed, "client", lambda params, service: aws)
        module.aws_managed.run(fake, module.ReplicationGroup, "elasticache", "replication_group")
    return fake.exited


def modifications(aws) -> list[dict]:
    return [{k: v for k, v in kwargs.items() if k != "ReplicationGroupId"} for name, kwargs in aws.calls
            if name == "modify_replication_group"]


def test_a_group_left_in_preferred_mode_is_moved_to_required_and_then_left_alone():
    """The audit's case: a group in preferred (TLS and plain) used to read as encrypted, unchanged."""
    aws = MockElastiCacheInPreferredMode()
    planned = run_module(aws, check_mode=True)
    assert planned["changed"] is True and modifications(aws) == []
    assert (planned["diff"]["before"]["transit_encryption_mode"], planned["diff"]["after"]["transit_encryption_mode"]) == \
        ("preferred", "required")
    done = run_module(aws)
    assert done["changed"] is True
    assert modifications(aws) == [{"ApplyImmediately": True, "TransitEncryptionMode": "required"}]
    assert done["replication_group"]["transit_encryption_mode"] == "required"
    again = run_module(aws)
    assert again["changed"] is False and len(modifications(aws)) == 1
