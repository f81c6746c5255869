"""Unit tests of module_utils/aws_managed: the plan (desired versus current), the diff, the refusals,
waiting, tags and the client's options. No AWS: the stubs below are named as such."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ansible_collections.chajipoa.platform.plugins.module_utils import aws_managed
from ansible_collections.chajipoa.platform.plugins.module_utils.aws_managed import SECRET_SENT, AwsManagedError, changes, plan
from tests.unit.fake_clock import FakeClock

KIND = "DocumentDB cluster"


@pytest.mark.parametrize(("desired", "current", "expected"), [
    ({"port": 27017}, {"port": 27017}, {}),
    ({"port": 27018}, {"port": 27017}, {"port": (27017, 27018)}),
    ({"port": None}, {"port": 27017}, {}),
    ({"port": 27018}, {}, {}),
    ({"groups": ["sg-b", "sg-a"]}, {"groups": ["sg-a", "sg-b"]}, {}),
    ({"groups": ["sg-a"]}, {"groups": ["sg-a", "sg-b"]}, {"groups": (["sg-a", "sg-b"], ["sg-a"])}),
    ({"tags": {}}, {"tags": {"a": "1"}}, {"tags": ({"a": "1"}, {})}),
    ({"kms_key_id": "arn:k"}, {"kms_key_id": None}, {"kms_key_id": (None, "arn:k")}),
])
def test_changes_compares_only_managed_and_known_settings(desired, current, expected):
    assert changes(desired, current) == expected


@pytest.mark.parametrize(("desired", "current", "same"), [
    ("7.1", "7.1.0", True), ("7.1", "7.1", True), ("7.1", "7.10.0", False), ("7.1", "6.2.6", False), ("7.1", None, False),
])
def test_same_version(desired, current, same):
    assert aws_managed.same_version(desired, current) is same
    assert (changes({"v": desired}, {"v": current}, {"v": aws_managed.same_version}) == {}) is same


def test_absent_and_missing_is_nothing_to_do():
    assert plan(KIND, "docs", "absent", {"port": 1}, None, allow_delete=False) == aws_managed.Plan("none")


def test_deleting_without_allow_delete_is_refused_naming_the_option():
    with pytest.raises(AwsManagedError, match=r"^Cannot delete DocumentDB cluster docs: .*set allow_delete: true"):
        plan(KIND, "docs", "absent", {}, {"port": 27017}, allow_delete=False)


def test_deleting_with_allow_delete_diffs_everything_away():
    result = plan(KIND, "docs", "absent", {}, {"port": 27017}, allow_delete=True)
    assert (result.action, result.diff) == ("delete", {"before": {"port": 27017}, "after": {}})


def test_create_shows_the_managed_settings_and_a_marker_for_each_secret():
    result = plan(KIND, "docs", "present", {"port": 27017, "kms_key_id": None}, None, allow_delete=False,
                  secrets=["master_password"])
    assert result.action == "create" and result.changed
    assert result.diff == {"before": {}, "after": {"port": 27017, "master_password": SECRET_SENT}}


def test_no_change_is_unchanged_with_equal_sides():
    result = plan(KIND, "docs", "present", {"port": 27017, "tls": None}, {"port": 27017, "tls": True, "status": "x"},
                  allow_delete=False)
    assert not result.changed
    assert result.diff == {"before": {"port": 27017}, "after": {"port": 27017}}


def test_update_diffs_only_managed_settings():
    result = plan(KIND, "docs", "present", {"port": 27017, "backup_retention_period": 14},
                  {"port": 27017, "backup_retention_period": 7, "tls": True}, allow_delete=False)
    assert result.action == "update" and result.changes == {"backup_retention_period": (7, 14)}
    assert result.diff == {"before": {"port": 27017, "backup_retention_period": 7},
                           "after": {"port": 27017, "backup_retention_period": 14}}


def test_a_secret_sent_alone_is_an_update():
    result = plan(KIND, "docs", "present", {"port": 1}, {"port": 1}, allow_delete=False, secrets=["master_password"])
    assert result.action == "update" and result.changes == {}
    assert result.diff["after"]["master_password"] == SECRET_SENT and "master_password" not in result.diff["before"]


def test_an_immutable_change_is_refused_with_both_values_and_replacement():
    with pytest.raises(AwsManagedError) as raised:
        plan(KIND, "docs", "present", {"storage_encrypted": False, "port": 2}, {"storage_encrypted": True, "port": 1},
             allow_delete=False, immutable={"storage_encrypted"})
    message = str(raised.value)
    assert message.startswith("Cannot change storage_encrypted (True -> False) of DocumentDB cluster docs in place")
    assert "must be replaced" in message and "port" not in message


def test_an_immutable_setting_that_is_unchanged_or_unmanaged_passes():
    result = plan(KIND, "docs", "present", {"storage_encrypted": True, "kms_key_id": None, "port": 2},
                  {"storage_encrypted": True, "kms_key_id": "arn:other", "port": 1}, allow_delete=False,
                  immutable={"storage_encrypted", "kms_key_id"})
    assert result.changes == {"port": (1, 2)}


def test_replacement_refusal_names_every_blocked_setting():
    message = aws_managed.replacement_refusal("ElastiCache replication group", "cache", {
        "port": (6379, 6380), "at_rest_encryption": (True, False), "node_type": ("a", "b")}, {"port", "at_rest_encryption"})
    assert "port (6379 -> 6380), at_rest_encryption (True -> False)" in message and "node_type" not in message
    assert "these settings" in message


@pytest.mark.parametrize(("current", "wanted", "purge", "expected"), [
    ({"a": "1"}, None, True, None),
    ({"a": "1"}, {"b": 2}, True, {"b": "2"}),
    ({"a": "1"}, {"b": 2}, False, {"a": "1", "b": "2"}),
    (None, {"b": "2"}, False, {"b": "2"}),
])
def test_desired_tags(current, wanted, purge, expected):
    assert aws_managed.desired_tags(current, wanted, purge) == expected


def test_tag_list_and_dict_round_trip():
    assert aws_managed.tag_list({"b": "2", "a": 1}) == [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]
    assert aws_managed.tag_dict(aws_managed.tag_list({"a": "1"})) == {"a": "1"}


class StubTaggingClient:
    """Stub of a boto3 RDS/ElastiCache client: records the tag calls."""

    def __init__(self):
        self.calls = []

    def add_tags_to_resource(self, **kwargs):
        self.calls.append(("add", kwargs))

    def remove_tags_from_resource(self, **kwargs):
        self.calls.append(("remove", kwargs))


def test_sync_tags_removes_stale_and_sets_new_or_changed_only():
    stub = StubTaggingClient()
    aws_managed.sync_tags(stub, "arn:x", {"keep": "1", "old": "1", "edit": "1"}, {"keep": "1", "edit": "2", "new": "3"}, "x")
    assert stub.calls == [("remove", {"ResourceName": "arn:x", "TagKeys": ["old"]}),
                          ("add", {"ResourceName": "arn:x", "Tags": [{"Key": "edit", "Value": "2"}, {"Key": "new", "Value": "3"}]})]


def test_wait_until_returns_the_answer_that_is_done():
    clock = FakeClock()
    answers = iter(["creating", "creating", "available"])
    assert aws_managed.wait_until(lambda: next(answers), lambda a: a == "available", 60, "x", clock=clock, sleep=clock.sleep) == "available"
    assert clock.now == 3.0  # 1 s, then 2 s


def test_wait_until_fails_at_the_timeout_naming_the_last_state():
    clock = FakeClock()
    with pytest.raises(AwsManagedError, match=r"^Cannot wait for cluster docs: still modifying after 100 s \(wait_timeout\)$"):
        aws_managed.wait_until(lambda: "modifying", lambda a: False, 100, "cluster docs", clock=clock, sleep=clock.sleep)
    assert clock.now == 100.0


def test_wait_until_backs_off_to_the_maximum_interval():
    clock = FakeClock()
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        clock.sleep(seconds)

    with pytest.raises(AwsManagedError):
        aws_managed.wait_until(lambda: "x", lambda a: False, 200, "x", clock=clock, sleep=sleep)
    assert slept[:7] == [1, 2, 4, 8, 16, 30, 30]


def test_final_snapshot_name():
    now = datetime(2026, 12, 2, 14, 5, 9, tzinfo=timezone.utc)
    assert aws_managed.final_snapshot({"skip_final_snapshot": False}, "docs", now) == "docs-final-20261202140509"
    assert aws_managed.final_snapshot({"skip_final_snapshot": True}, "docs", now) is None


def test_kms_key_arn_passes_an_arn_and_nothing_through_without_asking_aws():
    arn = "arn:aws:kms:af-south-1:123456789012:key/1234"
    assert aws_managed.kms_key_arn({}, arn) == arn
    assert aws_managed.kms_key_arn({}, None) is None


def params(**overrides) -> dict:
    return {"endpoint_url": None, "region": None, "access_key": None, "secret_key": None, "session_token": None,
            "profile": None, "validate_certs": True, "aws_ca_bundle": None, **overrides}


@pytest.fixture
def no_aws_environment(monkeypatch, tmp_path):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))


def test_client_from_the_options(no_aws_environment):
    made = aws_managed.client(params(endpoint_url="http://127.0.0.1:9", region="af-south-1", access_key="a", secret_key="b"), "docdb")
    assert made.meta.endpoint_url == "http://127.0.0.1:9" and made.meta.region_name == "af-south-1"
    assert made.meta.service_model.service_name == "docdb"


def test_client_falls_back_to_the_environment(no_aws_environment, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert aws_managed.client(params(), "elasticache").meta.region_name == "eu-west-1"


def test_client_without_a_region_fails_saying_so(no_aws_environment):
    with pytest.raises(AwsManagedError, match=r"^Cannot create the docdb client: no region"):
        aws_managed.client(params(), "docdb")


def test_client_with_an_unknown_profile_fails_naming_it(no_aws_environment):
    with pytest.raises(AwsManagedError, match=r"^Cannot create the kms client: .*nowhere"):
        aws_managed.client(params(profile="nowhere", region="af-south-1"), "kms")


class StubModule:
    """Stub of AnsibleModule: the params and check mode it is given; exit_json/fail_json record and stop."""

    def __init__(self, check_mode: bool, **params):
        self.check_mode = check_mode
        self.params = {"state": "present", "allow_delete": False, "wait": True, "wait_timeout": 5, **params}
        self.exited = None

    def exit_json(self, **result):
        self.exited = ("exit", result)
        raise SystemExit

    def fail_json(self, **result):
        self.exited = ("fail", result)
        raise SystemExit


class StubResource(aws_managed.ManagedResource):
    """Stub of a resource: current settings given; records which mutating method ran."""

    kind = "stub"
    immutable = frozenset({"encrypted"})
    current: dict | None = None
    calls: list = []

    def __init__(self, module, service):  # no AWS client
        self.module, self.params = module, module.params

    name = "thing"

    def read(self):
        return self.current

    def desired(self, current):
        return {"size": self.params.get("size"), "encrypted": self.params.get("encrypted")}

    def create(self, desired):
        self.calls.append("create")

    def update(self, found, secrets, desired):
        self.calls.append(("update", found))

    def delete(self):
        self.calls.append("delete")

    def result(self):
        return {"size": "as read"}


@pytest.mark.parametrize(("check_mode", "current", "options", "action"), [
    (True, None, {"size": 2}, "create"),
    (False, None, {"size": 2}, "create"),
    (True, {"size": 1}, {"size": 2}, "update"),
    (False, {"size": 1}, {"size": 2}, ("update", {"size": (1, 2)})),
    (False, {"size": 2}, {"size": 2}, None),
    (True, {"size": 2}, {"state": "absent", "allow_delete": True}, "delete"),
    (False, {"size": 2}, {"state": "absent", "allow_delete": True}, "delete"),
])
def test_run_changes_only_outside_check_mode(monkeypatch, check_mode, current, options, action):
    monkeypatch.setattr(StubResource, "current", current)
    monkeypatch.setattr(StubResource, "calls", [])
    module = StubModule(check_mode, **options)
    with pytest.raises(SystemExit):
        aws_managed.run(module, StubResource, "stub", "thing")
    outcome, result = module.exited
    assert outcome == "exit" and result["changed"] is (action is not None) and result["thing"] == {"size": "as read"}
    assert StubResource.calls == ([] if check_mode or action is None else [action])


@pytest.mark.parametrize(("current", "options", "needle"), [
    ({"size": 2}, {"state": "absent"}, "set allow_delete: true"),
    ({"size": 2, "encrypted": True}, {"encrypted": False}, "encrypted (True -> False)"),
])
def test_run_fails_before_any_change(monkeypatch, current, options, needle):
    monkeypatch.setattr(StubResource, "current", current)
    monkeypatch.setattr(StubResource, "calls", [])
    module = StubModule(False, **options)
    with pytest.raises(SystemExit):
        aws_managed.run(module, StubResource, "stub", "thing")
    assert module.exited[0] == "fail" and needle in module.exited[1]["msg"] and StubResource.calls == []


def test_api_arguments_cover_only_the_settings_the_call_modifies():
    found = {"port": (1, 2), "kms_key_id": ("a", "b"), "backup_retention_period": (7, 14)}
    assert aws_managed.api_arguments(found, {"port": "Port", "backup_retention_period": "BackupRetentionPeriod"}) == {
        "Port": 2, "BackupRetentionPeriod": 14}


@pytest.mark.parametrize(("version", "major"), [("7.1.0", 7), ("5.0", 5), ("10", 10), (None, None), ("", None), ("x.1", None)])
def test_major_version(version, major):
    assert aws_managed.major_version(version) == major
