# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""Shared code of the modules that manage one AWS resource through boto3 where the bundled
collections have no module for it (docdb_cluster, elasticache_replication_group).

A module describes its resource as a ManagedResource: how to read the managed settings, what the
options ask for, how to create, update and delete it. run() does the rest the same way for every
resource: the plan (create, update, delete or nothing) from desired versus current settings, the
refusal to delete without allow_delete, the refusal to change what AWS cannot change in place,
check mode, the {before, after} diff without secrets, waiting for a status, and errors of the form
"Cannot <verb> <object>: <cause>".
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

try:
    import boto3
    import botocore.config
    import botocore.exceptions
    import botocore.parsers
except ImportError:
    boto3 = None

# Option names and aliases as amazon.aws spells them, so that one module_defaults entry (or the
# action group meta/runtime.yml declares) serves these modules and amazon.aws's alike.
CONNECTION_SPEC: dict[str, dict[str, Any]] = {
    "endpoint_url": {"type": "str", "aliases": ["aws_endpoint_url"]},
    "region": {"type": "str", "aliases": ["aws_region"]},
    "access_key": {"type": "str", "aliases": ["aws_access_key_id", "aws_access_key"], "no_log": False},
    "secret_key": {"type": "str", "aliases": ["aws_secret_access_key", "aws_secret_key"], "no_log": True},
    "session_token": {"type": "str", "aliases": ["aws_session_token"], "no_log": True},
    "profile": {"type": "str", "aliases": ["aws_profile"]},
    "validate_certs": {"type": "bool", "default": True},
    "aws_ca_bundle": {"type": "path"},
}

LIFECYCLE_SPEC: dict[str, dict[str, Any]] = {
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "allow_delete": {"type": "bool", "default": False},
    "skip_final_snapshot": {"type": "bool", "default": False},
    "tags": {"type": "dict"},
    "purge_tags": {"type": "bool", "default": True},
    "wait": {"type": "bool", "default": True},
    "wait_timeout": {"type": "int", "default": 1800},
}

# Keyword arguments of AnsibleModule for a module built on these specs.
MODULE_KWARGS: dict[str, Any] = {
    "supports_check_mode": True,
    "required_together": [["access_key", "secret_key"]],
    "mutually_exclusive": [["profile", "access_key"]],
}

# What the diff shows for a secret sent this run; the secret itself never leaves the module.
SECRET_SENT = "(new value, not shown)"


class AwsManagedError(Exception):
    """A failure with a message for the operator ("Cannot <verb> <object>: <cause>")."""


def error_code(error: Exception) -> str:
    """The AWS error code of a botocore ClientError ("" for any other error)."""
    response = getattr(error, "response", None) or {}
    return response.get("Error", {}).get("Code", "")


def client(params: dict, service: str):
    """A boto3 client for the service from the module's connection options; whatever they leave
    unset (credentials, region, endpoint) comes from boto3's usual chain (environment variables,
    shared config and credentials files, instance role)."""
    if boto3 is None:
        raise AwsManagedError(f"Cannot create the {service} client: boto3 is not installed for this Python")
    try:
        session = boto3.session.Session(
            aws_access_key_id=params.get("access_key"), aws_secret_access_key=params.get("secret_key"),
            aws_session_token=params.get("session_token"), profile_name=params.get("profile"),
            region_name=params.get("region"))
    except botocore.exceptions.BotoCoreError as error:
        raise AwsManagedError(f"Cannot create the {service} client: {error}") from error
    if not session.region_name:
        raise AwsManagedError(f"Cannot create the {service} client: no region (set region, or AWS_REGION in the environment)")
    config = botocore.config.Config(retries={"mode": "standard"}, user_agent_extra="chajipoa.platform")
    return session.client(service, endpoint_url=params.get("endpoint_url"), config=config,
                          verify=params.get("aws_ca_bundle") or params.get("validate_certs", True))


def call(what: str, function: Callable, **kwargs) -> dict:
    """function(**kwargs) with the arguments whose value is None left out; an AWS or connection
    error becomes "Cannot <what>: <code>: <message>"."""
    try:
        return function(**{key: value for key, value in kwargs.items() if value is not None})
    # An answer that is not AWS's (a proxy's or a test server's error page) fails as cleanly as AWS's errors.
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError, botocore.parsers.ResponseParserError) as error:
        code = error_code(error)
        message = error.response["Error"].get("Message", "") if code else str(error)
        raise AwsManagedError(f"Cannot {what}: {code + ': ' if code else ''}{message}") from error


def call_unless_missing(what: str, missing: str, function: Callable, **kwargs) -> dict | None:
    """call(), but None when AWS answers with the error code missing (the resource does not exist)."""
    try:
        return call(what, function, **kwargs)
    except AwsManagedError as error:
        if error_code(error.__cause__) == missing:
            return None
        raise


def wait_until(fetch: Callable[[], Any], done: Callable[[Any], bool], timeout: float, what: str,
               state: Callable[[Any], str] = str, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep, first_interval: float = 1.0,
               max_interval: float = 30.0) -> Any:
    """Calls fetch until done(its answer) holds and returns that answer; asks again after 1 s, then
    twice as long each time up to 30 s. Raises AwsManagedError naming the last state(answer) when
    timeout seconds pass first."""
    deadline = clock() + timeout
    interval = first_interval
    while True:
        answer = fetch()
        if done(answer):
            return answer
        left = deadline - clock()
        if left <= 0:
            raise AwsManagedError(f"Cannot wait for {what}: still {state(answer)} after {timeout:g} s (wait_timeout)")
        sleep(min(interval, left))
        interval = min(interval * 2, max_interval)


def same(desired: Any, current: Any) -> bool:
    """Equality of settings, where a list is a set (security group ids, instance names)."""
    if isinstance(desired, list) and isinstance(current, list):
        return sorted(map(str, desired)) == sorted(map(str, current))
    return desired == current


def same_version(desired: Any, current: Any) -> bool:
    """An engine version asked for as "7.1" is what AWS reports as "7.1.0" (or "7.1.2")."""
    return current is not None and (str(current) == str(desired) or str(current).startswith(f"{desired}."))


def changes(desired: dict, current: dict, equal: dict[str, Callable[[Any, Any], bool]] | None = None) -> dict[str, tuple]:
    """The managed settings whose current value is not the desired one, as {name: (current, desired)}.
    A desired None is not managed (the option was not given); a name missing from current could not
    be read and is not compared either."""
    found = {}
    for name, wanted in desired.items():
        if wanted is None or name not in current:
            continue
        if not (equal or {}).get(name, same)(wanted, current[name]):
            found[name] = (current[name], wanted)
    return found


def api_arguments(found: dict[str, tuple], names: dict[str, str]) -> dict[str, Any]:
    """The arguments of a modify call for the changed settings it covers: names maps a setting to
    its argument (port -> Port)."""
    return {names[setting]: pair[1] for setting, pair in found.items() if setting in names}


def major_version(version: Any) -> int | None:
    """7 for "7.1.0"; None when there is no version or it does not start with a number."""
    try:
        return int(str(version).split(".", maxsplit=1)[0])
    except ValueError:
        return None


def replacement_refusal(kind: str, name: str, found: dict[str, tuple], immutable: Iterable[str]) -> str | None:
    """The message refusing changes AWS cannot make to an existing resource (None when there are none)."""
    blocked = [setting for setting in found if setting in set(immutable)]
    if not blocked:
        return None
    listed = ", ".join(f"{setting} ({found[setting][0]!r} -> {found[setting][1]!r})" for setting in blocked)
    return (f"Cannot change {listed} of {kind} {name} in place: AWS cannot modify "
            f"{'this setting' if len(blocked) == 1 else 'these settings'} on an existing {kind}, so it must be "
            f"replaced (create a new {kind} beside it, move the data, then delete this one)")


def deletion_refusal(kind: str, name: str, allow_delete: bool) -> str | None:
    """The message refusing to delete a stateful resource unless allow_delete (None when allowed)."""
    if allow_delete:
        return None
    return f"Cannot delete {kind} {name}: it holds data; set allow_delete: true to delete it"


def final_snapshot(params: dict, name: str, now: datetime | None = None) -> str | None:
    """The final snapshot's name, <name>-final-<UTC time> (None with skip_final_snapshot)."""
    if params["skip_final_snapshot"]:
        return None
    return f"{name}-final-{now or datetime.now(timezone.utc):%Y%m%d%H%M%S}"


def tag_list(tags: dict) -> list[dict[str, str]]:
    return [{"Key": str(key), "Value": str(value)} for key, value in sorted(tags.items())]


def tag_dict(tags: Iterable[dict]) -> dict[str, str]:
    return {tag["Key"]: tag.get("Value", "") for tag in tags}


def desired_tags(current: dict | None, wanted: dict | None, purge: bool) -> dict | None:
    """The tags the resource should carry: wanted, plus the current ones when not purging (None: unmanaged)."""
    if wanted is None:
        return None
    wanted = {str(key): str(value) for key, value in wanted.items()}
    return wanted if purge else {**(current or {}), **wanted}


def sync_tags(aws, arn: str, current: dict, wanted: dict, what: str) -> None:
    """Tags through the add/remove_tags_from_resource calls RDS, DocumentDB and ElastiCache share."""
    stale = sorted(set(current) - set(wanted))
    fresh = {key: value for key, value in wanted.items() if current.get(key) != value}
    if stale:
        call(f"remove tags from {what}", aws.remove_tags_from_resource, ResourceName=arn, TagKeys=stale)
    if fresh:
        call(f"tag {what}", aws.add_tags_to_resource, ResourceName=arn, Tags=tag_list(fresh))


def kms_key_arn(params: dict, key: str | None) -> str | None:
    """The ARN of a KMS key given by id, alias or ARN, as AWS reports it on encrypted resources."""
    if not key or key.startswith("arn:") and ":key/" in key:
        return key
    kms = client(params, "kms")
    return call(f"find KMS key {key}", kms.describe_key, KeyId=key)["KeyMetadata"]["Arn"]


@dataclass
class Plan:
    """What a run does: action is create, update, delete or none."""

    action: str
    changes: dict[str, tuple] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    diff: dict[str, dict] = field(default_factory=lambda: {"before": {}, "after": {}})

    @property
    def changed(self) -> bool:
        return self.action != "none"


def plan(kind: str, name: str, state: str, desired: dict, current: dict | None, *, allow_delete: bool,
         immutable: Iterable[str] = (), secrets: Iterable[str] = (), equal: dict | None = None) -> Plan:
    """The plan from the desired and the current managed settings (current None: the resource does
    not exist). secrets names the secret options sent this run (set on create, rotated on update);
    the diff shows them as SECRET_SENT. Raises AwsManagedError for a refused deletion or change."""
    secrets = list(secrets)
    sent = {secret: SECRET_SENT for secret in secrets}
    managed = {key: value for key, value in desired.items() if value is not None}
    if state == "absent":
        if current is None:
            return Plan("none")
        refusal = deletion_refusal(kind, name, allow_delete)
        if refusal:
            raise AwsManagedError(refusal)
        return Plan("delete", diff={"before": current, "after": {}})
    if current is None:
        return Plan("create", secrets=secrets, diff={"before": {}, "after": {**managed, **sent}})
    found = changes(desired, current, equal)
    refusal = replacement_refusal(kind, name, found, immutable)
    if refusal:
        raise AwsManagedError(refusal)
    before = {key: current[key] for key in managed if key in current}
    after = {**before, **{key: pair[1] for key, pair in found.items()}, **sent}
    if not found and not secrets:
        return Plan("none", diff={"before": before, "after": before})
    return Plan("update", changes=found, secrets=secrets, diff={"before": before, "after": after})


class ManagedResource:
    """One resource a module manages. Subclasses set kind, immutable and equal and implement the
    methods below; they read their options from self.params and call AWS through self.aws."""

    kind = "resource"
    immutable: frozenset[str] = frozenset()
    equal: dict[str, Callable[[Any, Any], bool]] = {}

    def __init__(self, module, service: str) -> None:
        self.module = module
        self.params = module.params
        self.aws = client(self.params, service)

    @property
    def name(self) -> str:
        raise NotImplementedError

    def validate(self, current: dict | None) -> None:
        """Raise AwsManagedError for options AWS would refuse (together, or to create the resource);
        called in check mode too, before any change."""

    def read(self) -> dict | None:
        """The current managed settings, None when the resource does not exist. A setting that cannot
        be read is left out (not compared)."""
        raise NotImplementedError

    def desired(self, current: dict | None) -> dict:
        """The managed settings the options ask for (None: not managed)."""
        raise NotImplementedError

    def secrets(self, current: dict | None) -> list[str]:
        """The secret options this run sends."""
        return []

    def create(self, desired: dict) -> None:
        raise NotImplementedError

    def update(self, found: dict[str, tuple], secrets: list[str], desired: dict) -> None:
        raise NotImplementedError

    def delete(self) -> None:
        raise NotImplementedError

    def result(self) -> dict:
        """What the module returns about the resource after the run ({} when it does not exist)."""
        raise NotImplementedError

    def wait_for(self, fetch: Callable[[], Any], done: Callable[[Any], bool], what: str,
                 state: Callable[[Any], str] = str) -> Any:
        """wait_until with the module's wait_timeout."""
        return wait_until(fetch, done, self.params["wait_timeout"], what, state)


def run(module, resource_class: type[ManagedResource], service: str, result_key: str) -> None:
    """The whole run of a module managing one resource; exits the module."""
    params = module.params
    try:
        resource = resource_class(module, service)
        current = resource.read()
        resource.validate(current)
        desired = resource.desired(current)
        secrets = resource.secrets(current) if params["state"] == "present" else []
        the_plan = plan(resource.kind, resource.name, params["state"], desired, current,
                        allow_delete=params["allow_delete"], immutable=resource.immutable,
                        secrets=secrets, equal=resource.equal)
        if not module.check_mode:
            if the_plan.action == "create":
                resource.create(desired)
            elif the_plan.action == "update":
                resource.update(the_plan.changes, the_plan.secrets, desired)
            elif the_plan.action == "delete":
                resource.delete()
        returned = resource.result()
    except AwsManagedError as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=the_plan.changed, diff=the_plan.diff, **{result_key: returned})
