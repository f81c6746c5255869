# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
name: health_verdict
short_description: Judge latency samples or their summary against p95, p99 and error-rate thresholds
version_added: 0.3.0
# The form validate-modules accepts without a GitHub handle; the team's address is in galaxy.yml.
author: ChajiPoa Infrastructure engineers (!UNKNOWN)
description:
  - Computes the p50, p95 and p99 latency and the error rate of a list of samples, or takes them from
    a summary made elsewhere (a load test, a Prometheus query), and says whether they are within the
    thresholds (by default the operator guide's targets, p95 200 ms, p99 500 ms, error rate 0.1 %).
  - The same code as the M(chajipoa.platform.health_gate) module's verdict, so a playbook can gate a
    deploy on numbers the module did not collect and judge them alike. Written because no bundled
    filter computes percentiles or judges them.
  - Percentiles are nearest-rank, never interpolated (always a latency that was seen); failed samples
    count in them too. A value above its threshold fails; no samples at all never pass.
  - Fails, naming the bad value, on input that is neither a list nor a dict, a sample without a
    latency, a latency or threshold that is not a number >= 0, an unknown threshold, or a summary
    whose errors exceed its count.
positional: thresholds
options:
  _input:
    description:
      - Either a list of samples, each a number (a latency in milliseconds of a request that succeeded)
        or a dict with C(latency_ms) (a number) and optionally C(ok) (a boolean, default V(true));
        other keys are ignored.
      - Or a summary, a dict with C(count) (requests), C(errors) (failed requests, at most C(count)),
        C(p95_ms) and C(p99_ms), and optionally C(p50_ms) and C(max_ms), each a number >= 0 or a string
        of one, as Prometheus's query API answers (its C(increase) gives fractional counts).
    type: raw
    required: true
  thresholds:
    description: The most the samples may show; omitted keys keep their defaults.
    type: dict
    default: {}
    suboptions:
      p95_ms:
        description: Most p95 latency in milliseconds.
        type: float
        default: 200.0
      p99_ms:
        description: Most p99 latency in milliseconds.
        type: float
        default: 500.0
      error_percent:
        description: Most failed samples, in percent of all samples.
        type: float
        default: 0.1
"""

EXAMPLES = r"""
- name: Judge a load test's latencies (milliseconds) and failures
  ansible.builtin.assert:
    that: verdict.passed
    fail_msg: "Cannot accept the release: {{ verdict.failures | join(', ') }}"
  vars:
    verdict: >-
      {{ ((load_test.latencies_ms | map('float') | list)
          + ([{'latency_ms': 0, 'ok': false}] * load_test.failed)) | chajipoa.platform.health_verdict }}

# requests, errors, p95 and p99: values of Prometheus query results, strings such as "1234.56"
# (sum(increase(...[10m])) and histogram_quantile(...) in seconds).
- name: Gate on Prometheus' numbers with a tighter p95
  ansible.builtin.set_fact:
    verdict: >-
      {{ {'count': requests, 'errors': errors, 'p95_ms': p95 | float * 1000, 'p99_ms': p99 | float * 1000}
         | chajipoa.platform.health_verdict({'p95_ms': 150}) }}
"""

RETURN = r"""
_value:
  description: The verdict, with the numbers it was made from (latencies in milliseconds).
  type: dict
  contains:
    passed:
      description: Whether every threshold holds.
      type: bool
      sample: false
    failures:
      description: Each threshold broken, in words; empty when passed.
      type: list
      elements: str
      sample: ["p95 312.0 ms above 200 ms"]
    count:
      description: Samples (or the summary's count, fractional where the summary's is).
      type: float
      sample: 1200
    errors:
      description: Failed samples (or the summary's errors).
      type: float
      sample: 0
    error_percent:
      description: Failed samples in percent.
      type: float
      sample: 0.0
    p50_ms:
      description: Median latency; null for a summary without one.
      type: float
      sample: 41.0
    p95_ms:
      description: p95 latency.
      type: float
      sample: 312.0
    p99_ms:
      description: p99 latency.
      type: float
      sample: 480.5
    max_ms:
      description: Slowest sample; null for a summary without one.
      type: float
      sample: 611.2
    thresholds:
      description: The thresholds applied.
      type: dict
      sample: {p95_ms: 200.0, p99_ms: 500.0, error_percent: 0.1}
"""

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.chajipoa.platform.plugins.module_utils.health_stats import Sample, Summary, Thresholds, judge, number, summarise


def _sample(item: Any, index: int) -> Sample:
    if isinstance(item, Mapping):
        if "latency_ms" not in item:
            raise ValueError(f"samples[{index}]: a dict sample needs latency_ms, got keys {sorted(map(str, item))}")
        ok = item.get("ok", True)
        if not isinstance(ok, bool):
            raise ValueError(f"samples[{index}].ok: expected a boolean, got {type(ok).__name__} {ok!r}")
        return Sample(latency_ms=number(item["latency_ms"], f"samples[{index}].latency_ms"), ok=ok)
    return Sample(latency_ms=number(item, f"samples[{index}]"), ok=True)


def _count(summary: Mapping, key: str) -> int | float:
    """A count as Prometheus answers one too: a string, and fractional from increase() over a window."""
    value = number(summary.get(key), f"summary.{key}")
    return int(value) if value.is_integer() else value


def _summary(summary: Mapping) -> Summary:
    count, errors = _count(summary, "count"), _count(summary, "errors")
    if errors > count:
        raise ValueError(f"summary.errors: {errors} is more than summary.count {count}")
    for key in ("p95_ms", "p99_ms"):
        if key not in summary:
            raise ValueError(f"summary.{key}: missing (a summary needs count, errors, p95_ms and p99_ms)")

    def optional(key: str) -> float | None:
        return None if summary.get(key) is None else number(summary[key], f"summary.{key}")

    return Summary(count=count, errors=errors, p50_ms=optional("p50_ms"), p95_ms=number(summary["p95_ms"], "summary.p95_ms"),
                   p99_ms=number(summary["p99_ms"], "summary.p99_ms"), max_ms=optional("max_ms"))


def health_verdict(data: Any, thresholds: Mapping | None = None) -> dict[str, Any]:
    try:
        limits = Thresholds.from_dict(thresholds or {})
        if isinstance(data, Mapping):
            summary = _summary(data)
        elif isinstance(data, (list, tuple)):
            summary = summarise(_sample(item, index) for index, item in enumerate(data))
        else:
            raise ValueError(f"expected a list of samples or a summary dict, got {type(data).__name__} {data!r}")
    except ValueError as error:
        raise AnsibleFilterError(f"health_verdict: {error}") from error
    failures = judge(summary, limits)
    return {"passed": not failures, "failures": failures, **summary.as_dict(), "thresholds": limits.as_dict()}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"health_verdict": health_verdict}
