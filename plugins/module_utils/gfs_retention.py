# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""Grandfather-father-son retention planning: which backups to keep, which to delete, and why.

Standard library only, no Ansible: the backup program on the database hosts (Python 3.11) imports a
copy of this file, so that the controller's filter and the hosts' pruning decide alike.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

PRE_DEPLOY = "pre-deploy"

# Output order of an entry's rules, so that equal plans compare equal.
RULES = ("newest", "daily", "weekly", "monthly", PRE_DEPLOY)

# The operator guide's retention policy.
DEFAULT_POLICY = {
    "daily_days": 30,
    "weekly_days": 90,
    "monthly_days": 365,
    "pre_deploy_keep": 5,
}

# The backup role's two tiers: local copies are for fast restores, S3 keeps the guide's policy.
# Ansible replaces a dict rather than merge it, so a policy that names only some keys takes the
# others from its own tier (complete_policy): local copies must not fall back to the S3 policy.
# roles/backup/defaults/main.yml documents the same values (a unit test compares them).
TIER_POLICIES = {
    "local": {"daily_days": 7, "weekly_days": 0, "monthly_days": 0, "pre_deploy_keep": 2},
    "s3": DEFAULT_POLICY,
}

REQUIRED_KEYS = ("name", "time", "reason")


def parse_time(value: Any, what: str) -> datetime:
    """Return value as an aware datetime in UTC; what names the value in error messages."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{what}: {value!r} is not an ISO-8601 time") from None
    else:
        raise ValueError(f"{what}: expected an ISO-8601 string or a datetime, got {type(value).__name__} {value!r}")
    # A naive time means whatever zone the writer's machine had; guessing it would shift day,
    # week and month boundaries, so the caller has to say.
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what}: {value!r} has no time zone (add 'Z' or an offset such as '+03:00')")
    return moment.astimezone(timezone.utc)


def format_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().removesuffix("+00:00") + "Z"


def _check_policy(policy: Any, tier: str | None = None) -> dict[str, Any]:
    if not isinstance(policy, Mapping):
        raise ValueError(f"policy: expected a dict, got {type(policy).__name__} {policy!r}")
    unknown = sorted((str(key) for key in policy if key not in DEFAULT_POLICY and key != "now"))
    if unknown:
        raise ValueError(
            f"policy: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known keys: {', '.join(sorted([*DEFAULT_POLICY, 'now']))}"
        )
    checked: dict[str, Any] = dict(TIER_POLICIES[tier] if tier else DEFAULT_POLICY)
    for key in DEFAULT_POLICY:
        if key not in policy:
            continue
        value = policy[key]
        # bool is an int subclass: 'daily_days: true' is a mistake, not a one-day window.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"policy.{key}: expected an integer >= 0, got {type(value).__name__} {value!r}")
        if value < 0:
            raise ValueError(f"policy.{key}: expected an integer >= 0, got {value!r}")
        checked[key] = value
    return checked


def _check_backups(backups: Any) -> list[tuple[datetime, str, Mapping[str, Any]]]:
    if not isinstance(backups, list):
        raise ValueError(f"backups: expected a list of dicts, got {type(backups).__name__} {backups!r}")
    checked = []
    first_index: dict[str, int] = {}
    for index, backup in enumerate(backups):
        where = f"backups[{index}]"
        if not isinstance(backup, Mapping):
            raise ValueError(f"{where}: expected a dict, got {type(backup).__name__} {backup!r}")
        missing = [key for key in REQUIRED_KEYS if key not in backup]
        if missing:
            raise ValueError(f"{where}: missing key(s) {', '.join(map(repr, missing))}")
        name = backup["name"]
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}.name: expected a non-empty string, got {name!r}")
        where = f"{where} ({name!r})"
        if name in first_index:
            raise ValueError(f"{where}: duplicate name, also backups[{first_index[name]}]")
        first_index[name] = index
        reason = backup["reason"]
        if not isinstance(reason, str) or not reason:
            raise ValueError(f"{where}.reason: expected a non-empty string, got {reason!r}")
        checked.append((parse_time(backup["time"], f"{where}.time"), name, backup))
    return checked


def _newest_per_period(
    candidates: list[tuple[datetime, str]], period: Callable[[datetime], Hashable], window: timedelta, now: datetime
) -> set[str]:
    """Names of the newest candidate of each period, among those younger than window."""
    newest: dict[Hashable, tuple[datetime, str]] = {}
    for moment, name in candidates:
        key = period(moment)
        if key not in newest or (moment, name) > newest[key]:
            newest[key] = (moment, name)
    # Backups stamped after now (clock skew between hosts) count as age 0 rather than negative.
    return {name for moment, name in newest.values() if max(now - moment, timedelta(0)) < window}


def complete_policy(policy: Any, tier: str) -> dict[str, int]:
    """policy checked, with the keys it leaves out taken from tier's policy (TIER_POLICIES)."""
    if tier not in TIER_POLICIES:
        raise ValueError(f"tier: expected one of {', '.join(TIER_POLICIES)}, got {tier!r}")
    return _check_policy(policy, tier)


def plan(backups: list[dict], policy: dict, now: datetime | None = None, tier: str | None = None) -> dict:
    """Split backups into those a GFS policy keeps and those it deletes.

    Keys the policy leaves out take tier's values (TIER_POLICIES) or, without a tier, the guide's
    DEFAULT_POLICY.

    Returns {"keep": [...], "delete": [...]}, both newest first; each entry is a copy of its input
    dict with time in UTC ('...Z'), and kept entries carry 'rules', the reasons to keep them.
    Raises ValueError naming the bad input.
    """
    checked_policy = complete_policy(policy, tier) if tier else _check_policy(policy)
    entries = _check_backups(backups)
    # policy.now is checked even when the argument overrides it: a bad policy fails everywhere.
    policy_now = parse_time(policy["now"], "policy.now") if "now" in policy else None
    if now is not None:
        now = parse_time(now, "now")
    else:
        now = policy_now or datetime.now(timezone.utc)

    # (time, name) is a total order since names are unique: the plan never depends on input order.
    entries.sort(key=lambda entry: (entry[0], entry[1]), reverse=True)
    rules: dict[str, list[str]] = {name: [] for _moment, name, _backup in entries}

    if entries:
        rules[entries[0][1]].append("newest")

    # Pre-deploy backups are the way back from a bad release; they are counted, not aged, and are no
    # day's, week's or month's representative, lest they push out the scheduled backup of that period.
    scheduled = [(moment, name) for moment, name, backup in entries if backup["reason"] != PRE_DEPLOY]
    periods = (
        ("daily", checked_policy["daily_days"], lambda moment: moment.date()),
        ("weekly", checked_policy["weekly_days"], lambda moment: moment.isocalendar()[:2]),
        ("monthly", checked_policy["monthly_days"], lambda moment: (moment.year, moment.month)),
    )
    for rule, days, period in periods:
        for name in _newest_per_period(scheduled, period, timedelta(days=days), now):
            rules[name].append(rule)

    pre_deploy = [name for _moment, name, backup in entries if backup["reason"] == PRE_DEPLOY]
    for name in pre_deploy[: checked_policy["pre_deploy_keep"]]:
        rules[name].append(PRE_DEPLOY)

    result: dict[str, list[dict]] = {"keep": [], "delete": []}
    for moment, name, backup in entries:
        entry = dict(backup)
        entry["time"] = format_time(moment)
        # 'rules' is ours: a plan's own output fed back in must not keep stale reasons.
        entry.pop("rules", None)
        if rules[name]:
            entry["rules"] = rules[name]
            result["keep"].append(entry)
        else:
            result["delete"].append(entry)
    return result
