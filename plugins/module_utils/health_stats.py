# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""Latency percentiles, error rate and their verdict against thresholds, for the health gate.

Standard library only: the health_gate module runs it on the managed host, the health_verdict
filter on the controller, so a gate on live probes and a gate on numbers from elsewhere (a load
test, Prometheus) judge alike.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# The guide's performance targets: p95 < 200 ms, p99 < 500 ms, error rate < 0.1 %.
DEFAULT_THRESHOLDS = {"p95_ms": 200.0, "p99_ms": 500.0, "error_percent": 0.1}


@dataclass(frozen=True)
class Sample:
    """One probe: how long it took, whether it passed, and why not."""

    latency_ms: float
    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class Thresholds:
    """The most a window may show and still pass (a value above its threshold fails)."""

    p95_ms: float = DEFAULT_THRESHOLDS["p95_ms"]
    p99_ms: float = DEFAULT_THRESHOLDS["p99_ms"]
    error_percent: float = DEFAULT_THRESHOLDS["error_percent"]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, base: Thresholds | None = None, what: str = "thresholds") -> Thresholds:
        """Thresholds from a dict of some of the keys; the others from base (else the defaults)."""
        merged = dict((base or cls()).as_dict())
        if values is None:
            return cls(**merged)
        if not isinstance(values, Mapping):
            raise ValueError(f"{what}: expected a dict, got {type(values).__name__} {values!r}")
        unknown = sorted(str(key) for key in values if key not in DEFAULT_THRESHOLDS)
        if unknown:
            raise ValueError(f"{what}: unknown key(s) {', '.join(map(repr, unknown))}; "
                             f"known keys: {', '.join(DEFAULT_THRESHOLDS)}")
        for key, value in values.items():
            if value is None:
                continue
            merged[key] = number(value, f"{what}.{key}")
        return cls(**merged)

    def as_dict(self) -> dict[str, float]:
        return {"p95_ms": self.p95_ms, "p99_ms": self.p99_ms, "error_percent": self.error_percent}


def number(value: Any, what: str) -> float:
    """value as a finite float >= 0; strings of digits are accepted, as extra vars arrive as text."""
    # bool is an int subclass: 'p95_ms: true' is a mistake, not 1 ms.
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a number >= 0, got bool {value!r}")
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected a number >= 0, got {type(value).__name__} {value!r}") from None
    if not math.isfinite(result) or result < 0:
        raise ValueError(f"{what}: expected a number >= 0, got {value!r}")
    return result


def percentile(values: Iterable[float], q: float) -> float | None:
    """The nearest-rank q-th percentile: the smallest value at least q % of the values do not
    exceed. Never interpolated, so it is always a latency that was seen; over fewer than 100/(100-q)
    values it is the maximum. None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Summary:
    """What a set of samples shows; the percentiles are None when there are no latencies."""

    # Whole numbers for samples; a summary made elsewhere may count fractions (Prometheus's increase()).
    count: int | float
    errors: int | float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    @property
    def error_percent(self) -> float:
        return 100.0 * self.errors / self.count if self.count else 0.0

    def as_dict(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 2)

        return {"count": self.count, "errors": self.errors, "error_percent": round(self.error_percent, 4),
                "p50_ms": rounded(self.p50_ms), "p95_ms": rounded(self.p95_ms), "p99_ms": rounded(self.p99_ms),
                "max_ms": rounded(self.max_ms)}


def summarise(samples: Iterable[Sample]) -> Summary:
    """Percentiles over every sample's latency, failed ones included: a probe that timed out kept
    its caller waiting just as long. Errors are counted apart."""
    samples = list(samples)
    latencies = [sample.latency_ms for sample in samples]
    return Summary(count=len(samples), errors=sum(not sample.ok for sample in samples),
                   p50_ms=percentile(latencies, 50), p95_ms=percentile(latencies, 95),
                   p99_ms=percentile(latencies, 99), max_ms=max(latencies, default=None))


def judge(summary: Summary, thresholds: Thresholds) -> list[str]:
    """Why summary fails thresholds, one phrase per broken threshold; empty when it passes.
    No samples at all never pass: no evidence is not good evidence."""
    if not summary.count:
        return ["no samples"]
    failures = []
    if summary.error_percent > thresholds.error_percent:
        failures.append(f"error rate {summary.error_percent:.3g} % ({summary.errors} of {summary.count}) "
                        f"above {thresholds.error_percent:g} %")
    for name, value, limit in (("p95", summary.p95_ms, thresholds.p95_ms), ("p99", summary.p99_ms, thresholds.p99_ms)):
        if value is not None and value > limit:
            failures.append(f"{name} {value:.1f} ms above {limit:g} ms")
    return failures


class Window:
    """The last `size` samples of one check, and every sample's count since the start."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"window: expected at least 1 sample, got {size}")
        self.samples: deque[Sample] = deque(maxlen=size)
        self.count = 0
        self.errors = 0
        self.last_error: str | None = None

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)
        self.count += 1
        if not sample.ok:
            self.errors += 1
            self.last_error = sample.error

    @property
    def last(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def summary(self) -> Summary:
        return summarise(self.samples)
