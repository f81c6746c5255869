"""The monitoring role's Prometheus files rendered offline, and the metric names their rules read.

Shared by the rules' unit tests (promtool, amtool) and by the integration test that scrapes Debian's
exporters for those names.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.unit.roles import rendering

TEMPLATES = rendering.ROLES / "monitoring" / "templates"
RULE_TEMPLATES = sorted(path.relative_to(TEMPLATES) for path in (TEMPLATES / "etc/prometheus/rules").glob("*.yml.j2"))
ALERTMANAGER = Path("etc/prometheus/alertmanager.yml.j2")
POSTGRES_QUERIES = Path("etc/prometheus/postgres_exporter_queries.yaml.j2")


def variables(**overrides: Any) -> dict[str, Any]:
    return {**rendering.role_variables("monitoring"), **overrides}


def render(template: Path, **overrides: Any) -> str:
    return rendering.render("monitoring", str(template), variables(**overrides))


def write_rules(directory: Path, **overrides: Any) -> list[Path]:
    """Every rule file rendered into `directory` (named as on the host, without .j2)."""
    paths = []
    for template in RULE_TEMPLATES:
        path = directory / template.name.removesuffix(".j2")
        path.write_text(render(template, **overrides))
        paths.append(path)
    return paths


def rules(**overrides: Any) -> list[dict]:
    """Every rule (recording and alerting) of every rendered rule file."""
    return [rule for template in RULE_TEMPLATES
            for group in yaml.safe_load(render(template, **overrides))["groups"] for rule in group["rules"]]


def alerts(**overrides: Any) -> dict[str, dict]:
    return {rule["alert"]: rule for rule in rules(**overrides) if "alert" in rule}


# --- The metric names an expression reads ------------------------------------------------------
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
             "inf", "nan"}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_LABEL_LISTS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGES = re.compile(r"\[[^\]]*\]")
_IDENTIFIER = re.compile(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?")


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (not its functions, keywords or labels)."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _LABEL_LISTS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    return {name for name, call in _IDENTIFIER.findall(text) if not call and name.lower() not in _KEYWORDS}


def exported_names_needed(**overrides: Any) -> dict[str, set[str]]:
    """Metric name -> the rules that read it, recording rules' own names resolved to their sources."""
    everything = rules(**overrides)
    recorded = {rule["record"] for rule in everything if "record" in rule}
    needed: dict[str, set[str]] = {}
    for rule in everything:
        for name in metric_names(rule["expr"]) - recorded:
            needed.setdefault(name, set()).add(rule.get("alert") or rule["record"])
    return needed
