"""Unit tests of health_stats: nearest-rank percentiles, thresholds, summaries, verdicts, windows."""
from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.chajipoa.platform.plugins.module_utils.health_stats import (
    DEFAULT_THRESHOLDS,
    Sample,
    Summary,
    Thresholds,
    Window,
    judge,
    percentile,
    summarise,
)

ONE_TO_HUNDRED = list(range(1, 101))


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        (ONE_TO_HUNDRED, 50, 50),
        (ONE_TO_HUNDRED, 95, 95),
        (ONE_TO_HUNDRED, 99, 99),
        (ONE_TO_HUNDRED, 100, 100),
        (ONE_TO_HUNDRED, 0, 1),
        # Fewer than 20 values: the p95 is the slowest; fewer than 100: so is the p99.
        (list(range(1, 11)), 95, 10),
        (list(range(1, 21)), 95, 19),
        (list(range(1, 21)), 99, 20),
        ([7.5], 99, 7.5),
        ([30, 10, 20], 50, 20),
    ],
)
def test_nearest_rank_percentile(values, q, expected):
    assert percentile(values, q) == expected


def test_percentile_of_nothing_is_none():
    assert percentile([], 95) is None


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1), st.floats(min_value=0, max_value=100))
def test_percentile_is_a_seen_value_that_q_percent_do_not_exceed(values, q):
    p = percentile(values, q)
    assert p in values
    assert sum(v <= p for v in values) >= q / 100 * len(values)
    # And it is the smallest such value: fewer than q % lie strictly below it.
    assert sum(v < p for v in values) < max(1, math.ceil(q / 100 * len(values)))


class TestThresholds:
    def test_defaults_are_the_guides_targets(self):
        assert Thresholds().as_dict() == {"p95_ms": 200.0, "p99_ms": 500.0, "error_percent": 0.1} == DEFAULT_THRESHOLDS
        assert Thresholds.from_dict(None) == Thresholds.from_dict({}) == Thresholds()

    def test_keys_override_a_base_one_by_one(self):
        base = Thresholds.from_dict({"p95_ms": 150})
        own = Thresholds.from_dict({"p99_ms": "300", "error_percent": None}, base=base)
        assert own.as_dict() == {"p95_ms": 150.0, "p99_ms": 300.0, "error_percent": 0.1}

    @pytest.mark.parametrize(
        ("values", "message"),
        [
            ({"p90_ms": 100}, "unknown key(s) 'p90_ms'"),
            ({"p95_ms": True}, "thresholds.p95_ms: expected a number >= 0, got bool True"),
            ({"p95_ms": -1}, "thresholds.p95_ms: expected a number >= 0, got -1"),
            ({"p99_ms": "fast"}, "thresholds.p99_ms: expected a number >= 0, got str 'fast'"),
            ({"error_percent": float("nan")}, "thresholds.error_percent: expected a number >= 0"),
            ([200, 500], "thresholds: expected a dict, got list"),
        ],
    )
    def test_bad_values_are_named(self, values, message):
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            Thresholds.from_dict(values)


def samples(latencies, failed=()):
    return [Sample(latency_ms=ms, ok=index not in failed, error=None if index not in failed else "boom")
            for index, ms in enumerate(latencies)]


def test_summary_counts_failed_samples_in_latency_and_errors():
    summary = summarise(samples([5, 1, 3, 2, 4000], failed={4}))
    assert summary == Summary(count=5, errors=1, p50_ms=3, p95_ms=4000, p99_ms=4000, max_ms=4000)
    assert summary.error_percent == 20.0
    assert summary.as_dict()["error_percent"] == 20.0


class TestJudge:
    def test_no_samples_never_pass(self):
        assert judge(summarise([]), Thresholds()) == ["no samples"]

    def test_a_fast_clean_window_passes(self):
        assert judge(summarise(samples([10] * 50)), Thresholds()) == []

    def test_at_the_threshold_passes_above_fails(self):
        at = Summary(count=1000, errors=1, p50_ms=1, p95_ms=200, p99_ms=500, max_ms=900)
        assert judge(at, Thresholds()) == []
        above = Summary(count=1000, errors=2, p50_ms=1, p95_ms=200.1, p99_ms=500.5, max_ms=900)
        assert judge(above, Thresholds()) == [
            "error rate 0.2 % (2 of 1000) above 0.1 %",
            "p95 200.1 ms above 200 ms",
            "p99 500.5 ms above 500 ms",
        ]

    def test_one_error_in_a_small_window_breaks_the_default_error_rate(self):
        assert judge(summarise(samples([1] * 10, failed={3})), Thresholds()) == ["error rate 10 % (1 of 10) above 0.1 %"]
        assert judge(summarise(samples([1] * 10, failed={3})), Thresholds(error_percent=10)) == []

    def test_slow_p95_only(self):
        # 19 fast and one slow of 20: the p95 (19th) is fast, the p99 (20th) is the slow one.
        window = samples([10] * 19 + [450])
        assert judge(summarise(window), Thresholds()) == []
        assert judge(summarise(window), Thresholds(p99_ms=400)) == ["p99 450.0 ms above 400 ms"]


def test_window_keeps_the_last_samples_and_counts_them_all():
    window = Window(3)
    for sample in samples([1, 2, 3, 4, 5], failed={0}):
        window.add(sample)
    assert [s.latency_ms for s in window.samples] == [3, 4, 5]
    assert (window.count, window.errors, window.last_error) == (5, 1, "boom")
    assert window.summary().errors == 0
    assert window.last.latency_ms == 5


def test_window_needs_a_sample():
    with pytest.raises(ValueError, match="window: expected at least 1 sample, got 0"):
        Window(0)
