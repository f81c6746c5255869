"""Unit tests of the gfs_retention filter and the plan() it wraps: worked examples, bad input, properties."""
from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone

import pytest
from ansible.errors import AnsibleFilterError
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.chajipoa.platform.plugins.filter.gfs_retention import FilterModule
from ansible_collections.chajipoa.platform.plugins.module_utils.gfs_retention import DEFAULT_POLICY, RULES, plan

UTC = timezone.utc
EAT = timezone(timedelta(hours=3))

gfs_retention = FilterModule().filters()["gfs_retention"]
gfs_retention_policy = FilterModule().filters()["gfs_retention_policy"]


def names(entries: list[dict]) -> list[str]:
    return [entry["name"] for entry in entries]


def rules_by_name(result: dict) -> dict[str, list[str]]:
    return {entry["name"]: entry["rules"] for entry in result["keep"]}


def nightly(last: date, count: int) -> list[dict]:
    """count consecutive backups at 02:00 UTC, the last one on last, named db-YYYY-MM-DD."""
    days = [last - timedelta(days=i) for i in range(count)]
    return [{"name": f"db-{day}", "time": f"{day}T02:00:00Z", "reason": "daily"} for day in days]


# 2026-11-29 is a Sunday, so every ISO week's newest backup is its Sunday's.
LAST = date(2026, 11, 29)
JUST_AFTER_LAST = "2026-11-29T02:01:00Z"


@pytest.fixture(scope="module")
def four_hundred_nights() -> dict:
    return plan(nightly(LAST, 400), {"now": JUST_AFTER_LAST})


class TestFourHundredNights:
    @pytest.fixture
    def result(self, four_hundred_nights):
        return four_hundred_nights

    def test_counts(self, result):
        # daily: i = 0..29 days back (30). weekly: Sundays i = 0, 7, ..., 84 (13), of which 35..84 are
        # not daily (8). monthly: Nov 2026 back to Nov 2025 (13 months; 2025-11-30 is 364 days back),
        # of which all but 2026-11-29 and 2026-10-31 are neither daily nor weekly (11).
        rules = rules_by_name(result)
        assert sum("daily" in r for r in rules.values()) == 30
        assert sum("weekly" in r for r in rules.values()) == 13
        assert sum("monthly" in r for r in rules.values()) == 13
        assert len(result["keep"]) == 30 + 8 + 11
        assert len(result["delete"]) == 400 - 49

    def test_daily_window_is_the_newest_30_days(self, result):
        rules = rules_by_name(result)
        daily = [name for name, r in rules.items() if "daily" in r]
        assert daily == [f"db-{LAST - timedelta(days=i)}" for i in range(30)]

    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("db-2026-11-29", ["newest", "daily", "weekly", "monthly"]),
            ("db-2026-11-01", ["daily", "weekly"]),  # a Sunday, 28 days back
            ("db-2026-10-31", ["daily", "monthly"]),  # 29 days back, the last of its month
            ("db-2026-10-30", None),  # 30 days back: age 30 days and a minute is not less than 30 days
            ("db-2026-10-25", ["weekly"]),
            ("db-2026-09-30", ["monthly"]),
            ("db-2026-09-06", ["weekly"]),  # 84 days back
            ("db-2026-08-31", ["monthly"]),
            ("db-2026-08-30", None),  # a Sunday, 91 days back
            ("db-2025-11-30", ["monthly"]),  # 364 days back
            ("db-2025-10-31", None),  # 395 days back
            ("db-2025-10-26", None),  # the oldest
        ],
    )
    def test_rules_of(self, result, name, expected):
        assert rules_by_name(result).get(name) == expected
        assert (name in names(result["delete"])) is (expected is None)

    def test_sorted_newest_first(self, result):
        for entries in result.values():
            times = [entry["time"] for entry in entries]
            assert times == sorted(times, reverse=True)


def test_window_is_strict():
    backups = nightly(date(2026, 11, 1), 2)
    result = plan(backups, {"daily_days": 1, "weekly_days": 0, "monthly_days": 0, "now": "2026-11-01T02:00:00Z"})
    assert rules_by_name(result) == {"db-2026-11-01": ["newest", "daily"]}
    result = plan(backups, {"daily_days": 1, "weekly_days": 0, "monthly_days": 0, "now": "2026-10-31T02:00:00Z"})
    # 2026-11-01's backup lies in the future: age 0. 2026-10-31's has age exactly 0 too.
    assert rules_by_name(result) == {"db-2026-11-01": ["newest", "daily"], "db-2026-10-31": ["daily"]}


def pre_deploys(count: int, first: datetime) -> list[dict]:
    return [
        {"name": f"pd-{i}", "time": (first + timedelta(hours=i)).isoformat(), "reason": "pre-deploy"}
        for i in range(count)
    ]


def test_pre_deploy_keeps_the_newest_five_of_eight():
    result = plan(pre_deploys(8, datetime(2026, 11, 20, tzinfo=UTC)), {"pre_deploy_keep": 5, "now": "2026-11-23T00:00:00Z"})
    assert rules_by_name(result) == {
        "pd-7": ["newest", "pre-deploy"],
        "pd-6": ["pre-deploy"],
        "pd-5": ["pre-deploy"],
        "pd-4": ["pre-deploy"],
        "pd-3": ["pre-deploy"],
    }
    assert names(result["delete"]) == ["pd-2", "pd-1", "pd-0"]


def test_pre_deploy_is_no_period_representative():
    # The pre-deploy backups are younger than the nightly ones of their days, yet the nightly ones
    # stay daily, and the three oldest pre-deploy backups go although within the daily window.
    backups = nightly(date(2026, 11, 22), 3) + pre_deploys(8, datetime(2026, 11, 20, 12, tzinfo=UTC))
    result = plan(backups, {"weekly_days": 0, "monthly_days": 0, "now": "2026-11-23T00:00:00Z"})
    assert rules_by_name(result) == {
        "db-2026-11-22": ["newest", "daily"],
        "db-2026-11-21": ["daily"],
        "db-2026-11-20": ["daily"],
        "pd-7": ["pre-deploy"],
        "pd-6": ["pre-deploy"],
        "pd-5": ["pre-deploy"],
        "pd-4": ["pre-deploy"],
        "pd-3": ["pre-deploy"],
    }
    assert names(result["delete"]) == ["pd-2", "pd-1", "pd-0"]


def test_older_than_every_window_keeps_only_the_newest():
    result = plan(nightly(date(2020, 1, 31), 100), {"now": "2026-11-23T00:00:00Z"})
    assert rules_by_name(result) == {"db-2020-01-31": ["newest"]}
    assert len(result["delete"]) == 99


@pytest.mark.parametrize("policy", [{}, {"daily_days": 0, "weekly_days": 0, "monthly_days": 0, "pre_deploy_keep": 0}])
def test_empty(policy):
    assert plan([], policy) == {"keep": [], "delete": []}


def test_same_day_keeps_the_later_as_daily():
    backups = [
        {"name": "db-late", "time": "2026-11-22T23:00:00Z", "reason": "manual"},
        {"name": "db-early", "time": "2026-11-22T02:00:00Z", "reason": "daily"},
        {"name": "db-before", "time": "2026-11-21T02:00:00Z", "reason": "daily"},
    ]
    result = plan(backups, {"weekly_days": 0, "monthly_days": 0, "now": "2026-11-23T00:00:00Z"})
    assert rules_by_name(result) == {"db-late": ["newest", "daily"], "db-before": ["daily"]}
    assert names(result["delete"]) == ["db-early"]


def test_utc_decides_the_day():
    # 01:00 at +03:00 is 22:00 UTC the day before, so these two are different UTC days.
    backups = [
        {"name": "a", "time": "2026-11-22T01:00:00+03:00", "reason": "daily"},
        {"name": "b", "time": "2026-11-22T02:00:00Z", "reason": "daily"},
    ]
    result = plan(backups, {"now": "2026-11-23T00:00:00Z"})
    assert rules_by_name(result) == {"b": ["newest", "daily", "weekly", "monthly"], "a": ["daily"]}


def test_equal_times_prefer_the_greater_name():
    backups = [
        {"name": "b", "time": "2026-11-22T05:00:00+03:00", "reason": "daily"},
        {"name": "a", "time": "2026-11-22T02:00:00Z", "reason": "daily"},
    ]
    result = plan(backups, {"now": "2026-11-23T00:00:00Z"})
    assert names(result["keep"]) == ["b"]
    assert names(result["delete"]) == ["a"]


def test_entries_are_copies_with_utc_times_and_extra_keys():
    backup = {"name": "a", "time": datetime(2026, 11, 22, 5, 0, tzinfo=EAT), "reason": "daily", "bytes": 7, "key": "s3/a"}
    deleted = {"name": "b", "time": "2026-11-22T03:30:00.250000+03:00", "reason": "daily", "rules": ["stale"]}
    result = plan([deleted, backup], {}, now=datetime(2026, 11, 23, tzinfo=UTC))
    assert result == {
        "keep": [
            {"name": "a", "time": "2026-11-22T02:00:00Z", "reason": "daily", "bytes": 7, "key": "s3/a",
             "rules": ["newest", "daily", "weekly", "monthly"]},
        ],
        "delete": [{"name": "b", "time": "2026-11-22T00:30:00.250000Z", "reason": "daily"}],
    }
    assert backup["time"] == datetime(2026, 11, 22, 5, 0, tzinfo=EAT)
    assert deleted["rules"] == ["stale"]


def test_now_argument_wins_over_policy():
    backups = nightly(date(2026, 11, 22), 2)
    policy = {"daily_days": 1, "weekly_days": 0, "monthly_days": 0, "now": "2030-01-01T00:00:00Z"}
    assert rules_by_name(plan(backups, policy)) == {"db-2026-11-22": ["newest"]}
    result = plan(backups, policy, now="2026-11-22T03:00:00Z")
    assert rules_by_name(result) == {"db-2026-11-22": ["newest", "daily"]}


def test_now_defaults_to_the_clock():
    recent = datetime.now(UTC) - timedelta(hours=1)
    backups = [
        {"name": "recent", "time": recent, "reason": "daily"},
        {"name": "old", "time": "2000-01-01T00:00:00Z", "reason": "daily"},
    ]
    assert rules_by_name(plan(backups, {})) == {"recent": ["newest", "daily", "weekly", "monthly"]}


def test_filter_defaults_the_policy():
    backups = nightly(date(2026, 11, 22), 2)
    assert gfs_retention(backups) == plan(backups, {})
    assert gfs_retention(backups, {"now": "2026-11-23T00:00:00Z"})["delete"] == []


@pytest.mark.parametrize(("policy", "tier", "expected"), [
    ({"daily_days": 3}, "local", {"daily_days": 3, "weekly_days": 0, "monthly_days": 0, "pre_deploy_keep": 2}),
    ({}, "s3", DEFAULT_POLICY),
    ({"monthly_days": 730}, "s3", {**DEFAULT_POLICY, "monthly_days": 730}),
])
def test_policy_filter_completes_a_partial_policy_from_its_tier(policy, tier, expected):
    assert gfs_retention_policy(policy, tier) == expected
    backups = nightly(LAST, 400)
    assert plan(backups, policy, now=JUST_AFTER_LAST, tier=tier) == plan(backups, expected, now=JUST_AFTER_LAST)


@pytest.mark.parametrize(("policy", "tier", "message"), [
    ({}, "remote", "tier: expected one of local, s3, got 'remote'"),
    ({"daily_days": -1}, "local", "policy.daily_days: expected an integer >= 0, got -1"),
    ({"weekly": 1}, "s3", "policy: unknown key(s) 'weekly'"),
])
def test_policy_filter_refuses_bad_input(policy, tier, message):
    with pytest.raises(AnsibleFilterError, match="^gfs_retention_policy: ") as error:
        gfs_retention_policy(policy, tier)
    assert message in str(error.value)


GOOD = {"name": "a", "time": "2026-11-22T02:00:00Z", "reason": "daily"}


@pytest.mark.parametrize(
    ("backups", "policy", "message"),
    [
        ({"a": GOOD}, {}, "backups: expected a list of dicts, got dict"),
        ("a", {}, "backups: expected a list of dicts, got str"),
        ([GOOD, "b"], {}, "backups[1]: expected a dict, got str"),
        ([{"name": "a", "reason": "daily"}], {}, "backups[0]: missing key(s) 'time'"),
        ([{"time": "2026-11-22T02:00:00Z"}], {}, "backups[0]: missing key(s) 'name', 'reason'"),
        ([{**GOOD, "name": ""}], {}, "backups[0].name: expected a non-empty string, got ''"),
        ([{**GOOD, "name": 3}], {}, "backups[0].name: expected a non-empty string, got 3"),
        ([{**GOOD, "reason": ""}], {}, "backups[0] ('a').reason: expected a non-empty string"),
        ([GOOD, {**GOOD, "time": "2026-11-23T02:00:00Z"}], {}, "backups[1] ('a'): duplicate name, also backups[0]"),
        ([{**GOOD, "time": "2026-11-22T02:00:00"}], {}, "backups[0] ('a').time: '2026-11-22T02:00:00' has no time zone"),
        ([{**GOOD, "time": datetime(2026, 11, 22, 2)}], {}, "backups[0] ('a').time: datetime.datetime(2026, 11, 22, 2, 0) has no"),
        ([{**GOOD, "time": "yesterday"}], {}, "backups[0] ('a').time: 'yesterday' is not an ISO-8601 time"),
        ([{**GOOD, "time": "2026-13-01T00:00:00Z"}], {}, "backups[0] ('a').time: '2026-13-01T00:00:00Z' is not an ISO-8601"),
        ([{**GOOD, "time": 1764381600}], {}, "backups[0] ('a').time: expected an ISO-8601 string or a datetime, got int"),
        ([GOOD], [], "policy: expected a dict, got list"),
        ([GOOD], {"daily_days": -1}, "policy.daily_days: expected an integer >= 0, got -1"),
        ([GOOD], {"weekly_days": "90"}, "policy.weekly_days: expected an integer >= 0, got str '90'"),
        ([GOOD], {"monthly_days": 1.5}, "policy.monthly_days: expected an integer >= 0, got float 1.5"),
        ([GOOD], {"pre_deploy_keep": True}, "policy.pre_deploy_keep: expected an integer >= 0, got bool True"),
        ([GOOD], {"dayly_days": 3, "yearly_days": 1}, "policy: unknown key(s) 'dayly_days', 'yearly_days'; known keys:"),
        ([GOOD], {"now": "2026-11-23T00:00:00"}, "policy.now: '2026-11-23T00:00:00' has no time zone"),
    ],
)
def test_bad_input(backups, policy, message):
    with pytest.raises(ValueError) as error:
        plan(backups, policy, now=datetime(2026, 11, 23, tzinfo=UTC))
    assert message in str(error.value)
    with pytest.raises(AnsibleFilterError, match="^gfs_retention: ") as error:
        gfs_retention(backups, policy)
    assert message in str(error.value)


def test_bad_now_argument():
    with pytest.raises(ValueError, match=r"^now: .* has no time zone"):
        plan([GOOD], {}, now=datetime(2026, 11, 23))


# Properties, against an oracle that re-derives each rule by brute force over all pairs of backups.

START = datetime(2025, 1, 1, tzinfo=UTC)
REASONS = ("daily", "weekly", "monthly", "manual", "pre-deploy")
ZONES = (UTC, EAT, timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=30)))


def backup(name: str, hours: int, zone: timezone, as_string: bool, reason: str) -> dict:
    moment = (START + timedelta(hours=hours)).astimezone(zone)
    return {"name": name, "time": moment.isoformat() if as_string else moment, "reason": reason, "bytes": hours}


def backups_over(hours: int) -> st.SearchStrategy[list[dict]]:
    names_ = st.text("abcxyz", min_size=1, max_size=4)
    one = st.builds(backup, names_, st.integers(0, hours), st.sampled_from(ZONES), st.booleans(), st.sampled_from(REASONS))
    return st.lists(one, max_size=40, unique_by=lambda b: b["name"])


# Whole hours, over two days or over two years: the short span makes equal times and crowded days
# common, the long one spreads backups over many weeks and months.
backup_lists = backups_over(48) | backups_over(2 * 365 * 24)


policies = st.fixed_dictionaries(
    {},
    optional={
        "daily_days": st.integers(0, 800),
        "weekly_days": st.integers(0, 800),
        "monthly_days": st.integers(0, 800),
        "pre_deploy_keep": st.integers(0, 10),
    },
)
nows = st.integers(-30, 2 * 365 + 30).map(lambda days: START + timedelta(days=days, minutes=1))


def as_utc(value: str | datetime) -> datetime:
    return (value if isinstance(value, datetime) else datetime.fromisoformat(value)).astimezone(UTC)


def oracle(backups: list[dict], policy: dict, now: datetime) -> dict[str, list[str]]:
    """Each backup's rules, from the rule texts, without grouping or sorting."""
    full = {"daily_days": 30, "weekly_days": 90, "monthly_days": 365, "pre_deploy_keep": 5, **policy}
    times = {b["name"]: as_utc(b["time"]) for b in backups}

    def newer(other: dict, than: dict) -> bool:
        return (times[other["name"]], other["name"]) > (times[than["name"]], than["name"])

    def young(b: dict, days: int) -> bool:
        return max((now - times[b["name"]]).total_seconds(), 0) < days * 86400

    def monday(b: dict) -> date:
        day = times[b["name"]].date()
        return day - timedelta(days=day.weekday())

    periods = {
        "daily": (full["daily_days"], lambda b: times[b["name"]].strftime("%Y-%m-%d")),
        "weekly": (full["weekly_days"], monday),
        "monthly": (full["monthly_days"], lambda b: times[b["name"]].strftime("%Y-%m")),
    }
    scheduled = [b for b in backups if b["reason"] != "pre-deploy"]
    pre_deploy = [b for b in backups if b["reason"] == "pre-deploy"]
    result = {}
    for b in backups:
        rules = []
        if not any(newer(other, b) for other in backups):
            rules.append("newest")
        for rule, (days, period) in periods.items():
            if (
                b in scheduled
                and young(b, days)
                and not any(period(other) == period(b) and newer(other, b) for other in scheduled)
            ):
                rules.append(rule)
        if b in pre_deploy and sum(newer(other, b) for other in pre_deploy) < full["pre_deploy_keep"]:
            rules.append("pre-deploy")
        result[b["name"]] = rules
    return result


PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)


@PROPERTY_SETTINGS
@given(backup_lists, policies, nows)
def test_plan_matches_the_oracle(backups, policy, now):
    result = plan(backups, policy, now)
    kept = names(result["keep"])
    deleted = names(result["delete"])
    assert not set(kept) & set(deleted)
    assert sorted(kept + deleted) == sorted(b["name"] for b in backups)
    if backups:
        newest = max(backups, key=lambda b: (as_utc(b["time"]), b["name"]))
        assert newest["name"] in kept
    for entry in result["keep"]:
        assert entry["rules"]
        assert set(entry["rules"]) <= set(RULES)
        assert entry["rules"] == [rule for rule in RULES if rule in entry["rules"]]
    expected = oracle(backups, policy, now)
    assert rules_by_name(result) == {name: rules for name, rules in expected.items() if rules}
    for entries in result.values():
        order = [(datetime.fromisoformat(e["time"]), e["name"]) for e in entries]
        assert order == sorted(order, reverse=True)
        assert all(e["time"].endswith("Z") for e in entries)


@PROPERTY_SETTINGS
@given(backup_lists, policies, nows, st.randoms(use_true_random=False))
def test_plan_does_not_depend_on_input_order(backups, policy, now, rng: random.Random):
    shuffled = list(backups)
    rng.shuffle(shuffled)
    assert plan(shuffled, policy, now) == plan(backups, policy, now)
