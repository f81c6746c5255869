"""Unit tests of the health_verdict filter: samples and summaries judged like the health gate judges."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.chajipoa.platform.plugins.filter.health_verdict import FilterModule
from ansible_collections.chajipoa.platform.plugins.module_utils.health_stats import Sample, Thresholds, judge, summarise

health_verdict = FilterModule().filters()["health_verdict"]


def test_fast_clean_samples_pass():
    verdict = health_verdict([12, 15.5, 9, 30, 22])
    assert verdict == {"passed": True, "failures": [], "count": 5, "errors": 0, "error_percent": 0.0, "p50_ms": 15.5,
                       "p95_ms": 30.0, "p99_ms": 30.0, "max_ms": 30.0,
                       "thresholds": {"p95_ms": 200.0, "p99_ms": 500.0, "error_percent": 0.1}}


def test_a_load_test_with_a_slow_tail_and_failures_fails_naming_each():
    # 1000 requests: 930 at 50 ms, 50 at 300 ms, 18 at 900 ms, and 2 failures at 0 ms.
    samples = [50] * 930 + [300] * 50 + [900] * 18 + [{"latency_ms": 0, "ok": False}] * 2
    verdict = health_verdict(samples)
    assert (verdict["p50_ms"], verdict["p95_ms"], verdict["p99_ms"]) == (50.0, 300.0, 900.0)
    assert verdict["failures"] == ["error rate 0.2 % (2 of 1000) above 0.1 %", "p95 300.0 ms above 200 ms",
                                   "p99 900.0 ms above 500 ms"]
    assert not verdict["passed"]


def test_thresholds_are_overridden_key_by_key():
    verdict = health_verdict([150] * 10, {"p95_ms": 100})
    assert verdict["failures"] == ["p95 150.0 ms above 100 ms"]
    assert verdict["thresholds"] == {"p95_ms": 100.0, "p99_ms": 500.0, "error_percent": 0.1}


def test_a_summary_from_elsewhere_is_judged():
    verdict = health_verdict({"count": 120000, "errors": 60, "p95_ms": 180, "p99_ms": 510.5})
    assert verdict["failures"] == ["p99 510.5 ms above 500 ms"]
    assert verdict["error_percent"] == 0.05 and verdict["p50_ms"] is None and verdict["max_ms"] is None


def test_a_summary_of_prometheus_answers_is_judged_as_they_come():
    """Prometheus's query API gives every value as a string, and increase() over a window gives
    fractional counts: 1234.56 requests, 2.4 of them failed."""
    verdict = health_verdict({"count": "1234.56", "errors": "2.4", "p95_ms": "182.5", "p99_ms": 410})
    assert verdict["failures"] == ["error rate 0.194 % (2.4 of 1234.56) above 0.1 %"]
    assert (verdict["count"], verdict["errors"], verdict["p95_ms"]) == (1234.56, 2.4, 182.5)
    assert health_verdict({"count": "120", "errors": 0, "p95_ms": 1, "p99_ms": 1})["count"] == 120


def test_no_samples_do_not_pass():
    assert health_verdict([])["failures"] == ["no samples"]
    assert not health_verdict({"count": 0, "errors": 0, "p95_ms": 1, "p99_ms": 1})["passed"]


@pytest.mark.parametrize(
    ("data", "thresholds", "message"),
    [
        ("fast", None, "expected a list of samples or a summary dict, got str 'fast'"),
        ([10, {"ms": 3}], None, "samples[1]: a dict sample needs latency_ms, got keys ['ms']"),
        ([{"latency_ms": 3, "ok": "yes"}], None, "samples[0].ok: expected a boolean, got str 'yes'"),
        ([10, -1], None, "samples[1]: expected a number >= 0, got -1"),
        ([True], None, "samples[0]: expected a number >= 0, got bool True"),
        ([None], None, "samples[0]: expected a number >= 0, got NoneType None"),
        ({"count": 10, "errors": 11, "p95_ms": 1, "p99_ms": 1}, None, "summary.errors: 11 is more than summary.count 10"),
        ({"count": "ten", "errors": 0, "p95_ms": 1, "p99_ms": 1}, None, "summary.count: expected a number >= 0, got str 'ten'"),
        ({"count": 10, "errors": True, "p95_ms": 1, "p99_ms": 1}, None, "summary.errors: expected a number >= 0, got bool"),
        ({"count": -1, "errors": 0, "p95_ms": 1, "p99_ms": 1}, None, "summary.count: expected a number >= 0, got -1"),
        ({"count": 10, "errors": 0, "p95_ms": 1}, None, "summary.p99_ms: missing"),
        ({"count": 10, "errors": 0, "p95_ms": 1, "p99_ms": "slow"}, None, "summary.p99_ms: expected a number >= 0"),
        ([10], {"p90_ms": 1}, "thresholds: unknown key(s) 'p90_ms'"),
        ([10], {"error_percent": -0.1}, "thresholds.error_percent: expected a number >= 0, got -0.1"),
    ],
)
def test_bad_input_is_named(data, thresholds, message):
    with pytest.raises(AnsibleFilterError) as caught:
        health_verdict(data, thresholds)
    assert str(caught.value).startswith(f"health_verdict: {message}")


@given(st.lists(st.tuples(st.floats(min_value=0, max_value=5000), st.booleans()), max_size=200))
def test_the_filter_judges_as_the_module_does(pairs):
    verdict = health_verdict([{"latency_ms": ms, "ok": ok} for ms, ok in pairs])
    summary = summarise(Sample(latency_ms=ms, ok=ok) for ms, ok in pairs)
    assert verdict["failures"] == judge(summary, Thresholds())
    assert verdict["passed"] is (not judge(summary, Thresholds()))
