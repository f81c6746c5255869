"""Unit tests of docdb_cluster's own logic: instance names, the parameter group family, what it
refuses to change or to create. No AWS (the integration tests run it against moto)."""
from __future__ import annotations

import pytest

from ansible_collections.chajipoa.platform.plugins.module_utils.aws_managed import AwsManagedError, plan
from ansible_collections.chajipoa.platform.plugins.modules import docdb_cluster


@pytest.mark.parametrize(("version", "family"), [("5.0.0", "docdb5.0"), ("4.0.0", "docdb4.0"), ("8.0", "docdb8.0")])
def test_parameter_group_family(version, family):
    assert docdb_cluster.parameter_group_family(version) == family


def test_instances_are_numbered_from_one():
    assert docdb_cluster.instance_names("docs", 3) == ["docs-1", "docs-2", "docs-3"]


def test_own_instances_in_number_order_without_foreign_members():
    members = ["docs-10", "docs-2", "docs-1", "docs-reporting", "other-3", "docs-1x"]
    assert docdb_cluster.own_instances("docs", members) == ["docs-1", "docs-2", "docs-10"]


@pytest.mark.parametrize(("classes", "expected"), [
    ([], None), (["db.r6g.large"] * 2, "db.r6g.large"), (["db.t3.medium", "db.r6g.large"], ["db.r6g.large", "db.t3.medium"]),
])
def test_instance_class_of(classes, expected):
    assert docdb_cluster.instance_class_of(classes) == expected


@pytest.mark.parametrize("setting", sorted(docdb_cluster.DocdbCluster.immutable))
def test_settings_docdb_cannot_modify_are_refused(setting):
    with pytest.raises(AwsManagedError, match=rf"Cannot change {setting} .* must be replaced"):
        plan("DocumentDB cluster", "docs", "present", {setting: "new"}, {setting: "old"}, allow_delete=False,
             immutable=docdb_cluster.DocdbCluster.immutable)


def test_every_modifiable_setting_is_an_option_or_the_parameter_group():
    assert set(docdb_cluster.MODIFIABLE) - {"parameter_group"} <= set(docdb_cluster.ARGUMENT_SPEC)
    assert not set(docdb_cluster.MODIFIABLE) & docdb_cluster.DocdbCluster.immutable


def resource(**params) -> docdb_cluster.DocdbCluster:
    """A DocdbCluster without its AWS client (never called by validate/desired-free logic)."""
    made = docdb_cluster.DocdbCluster.__new__(docdb_cluster.DocdbCluster)
    made.params = {"cluster_id": "docs", "state": "present", "instance_count": 2, "kms_key_id": None, "storage_encrypted": True,
                   "master_username": "chajipoa", "master_password": "pw", "update_password": "on_create", **params}
    return made


@pytest.mark.parametrize(("params", "current", "needle"), [
    ({"instance_count": 0}, None, "instance_count is 0, expected at least 1"),
    ({"kms_key_id": "alias/x", "storage_encrypted": False}, None, "kms_key_id needs storage_encrypted: true"),
    ({"master_password": None}, None, "master_username and master_password are required to create it"),
])
def test_validate_refuses(params, current, needle):
    with pytest.raises(AwsManagedError, match=needle):
        resource(**params).validate(current)


def test_validate_needs_no_password_for_an_existing_cluster_nor_for_deletion():
    resource(master_password=None).validate({"port": 27017})
    resource(master_password=None, state="absent", instance_count=0).validate(None)


@pytest.mark.parametrize(("params", "current", "secrets"), [
    ({}, None, ["master_password"]),
    ({}, {"port": 1}, []),
    ({"update_password": "always"}, {"port": 1}, ["master_password"]),
    ({"update_password": "always", "master_password": None}, {"port": 1}, []),
])
def test_the_password_is_sent_on_create_or_always(params, current, secrets):
    assert resource(**params).secrets(current) == secrets


class StubDocdbClient:
    """Stub of boto3's DocumentDB client: records every call; the cluster and its instances are
    always available, the module's parameter group exists."""

    def __init__(self, instances):
        self.calls = []
        self.instances = instances

    def __getattr__(self, operation):
        def record(**kwargs):
            self.calls.append((operation, kwargs))
            return {"DBClusters": [{"Status": "available"}], "Parameters": [{"ParameterName": "tls", "ParameterValue": "enabled"}],
                    "DBInstances": [{"DBInstanceIdentifier": name, "DBInstanceStatus": "available"} for name in self.instances]}
        return record


class StubModule:
    """Stub of AnsibleModule: collects warnings."""

    def __init__(self):
        self.warnings = []

    def warn(self, message):
        self.warnings.append(message)


def updating(instances: dict[str, str], **params):
    cluster = resource(wait=True, wait_timeout=10, engine_version="5.0.0", instance_class="db.r6g.large", **params)
    cluster.aws = StubDocdbClient(["docs-1", "docs-2"])
    cluster.module = StubModule()
    cluster.cluster = {"DBClusterArn": "arn:aws:rds:af-south-1:1:cluster:docs"}
    cluster.instances = {name: {"DBInstanceClass": cls} for name, cls in instances.items()}
    return cluster


def mutations(cluster) -> list[tuple[str, dict]]:
    return [call for call in cluster.aws.calls if not call[0].startswith("describe")]


def test_a_major_upgrade_is_allowed_explicitly_and_the_password_rides_along():
    cluster = updating({"docs-1": "db.r6g.large", "docs-2": "db.r6g.large"}, update_password="always")
    cluster.update({"engine_version": ("4.0.0", "5.0.0")}, ["master_password"],
                   {"engine_version": "5.0.0", "instances": ["docs-1", "docs-2"], "instance_class": "db.r6g.large", "tls": True})
    assert mutations(cluster) == [("modify_db_cluster", {"DBClusterIdentifier": "docs", "ApplyImmediately": True, "EngineVersion": "5.0.0",
                                                         "AllowMajorVersionUpgrade": True, "MasterUserPassword": "pw"})]


def test_instances_are_added_resized_and_removed_by_name():
    cluster = updating({"docs-1": "db.t3.medium", "docs-2": "db.r6g.large", "docs-3": "db.r6g.large", "docs-reporting": "db.t3.medium"})
    cluster.update({"instances": (["docs-1", "docs-2", "docs-3"], ["docs-1", "docs-2"])}, [],
                   {"instances": ["docs-1", "docs-2"], "instance_class": "db.r6g.large", "tls": True})
    assert mutations(cluster) == [
        ("modify_db_instance", {"DBInstanceIdentifier": "docs-1", "DBInstanceClass": "db.r6g.large", "ApplyImmediately": True}),
        ("delete_db_instance", {"DBInstanceIdentifier": "docs-3"})]


def test_a_tls_change_sets_the_parameter_and_warns_of_the_restart():
    cluster = updating({"docs-1": "db.r6g.large", "docs-2": "db.r6g.large"})
    cluster.update({"tls": (True, False)}, [], {"instances": ["docs-1", "docs-2"], "instance_class": "db.r6g.large", "tls": False})
    assert mutations(cluster) == [("modify_db_cluster_parameter_group", {
        "DBClusterParameterGroupName": "docs-params",
        "Parameters": [{"ParameterName": "tls", "ParameterValue": "disabled", "ApplyMethod": "pending-reboot"}]})]
    assert "restart" in cluster.module.warnings[0]
