"""Prometheus's text exposition format as the tests read it: an exporter's answer to /metrics, its
sample lines by metric name. Shared by the integration test that scrapes Debian's exporters and by
the molecule scenarios that scrape an exporter on a lab host."""
from __future__ import annotations


def samples_by_name(text: str) -> dict[str, list[str]]:
    """Metric name -> its sample lines (comments and blank lines left out)."""
    samples: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            samples.setdefault(line.split("{")[0].split(" ")[0], []).append(line)
    return samples
