"""The monitoring role's Grafana dashboards read as the queries Prometheus receives.

Grafana fills its variables in before a query leaves: `$instance` with the instances chosen (or the
variable's "All" value, `.*`), `$__rate_interval` with a multiple of the scrape interval. Here every
variable takes the value that selects everything, so an expression can go to Prometheus's query API
(the lab's molecule test) or to promtool as it is. Shared by the dashboards' unit test and the lab.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DASHBOARDS = Path(__file__).resolve().parents[1] / "roles" / "monitoring" / "files" / "dashboards"
NAMES = ("overview", "postgresql", "redis", "api", "backups")

# Grafana's own variables, at values Prometheus accepts: at least four scrape intervals for a rate.
BUILTINS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"^label_values\((?:(.*),\s*)?(\w+)\)$")

# Names the dashboards read that neither a rule nor the API's contract does: the integration test
# tests/integration/test_monitoring_exporters.py requires each from Debian's exporter of its prefix.
EXPORTER_NAMES = frozenset({
    "pg_database_size_bytes", "pg_stat_database_blks_hit", "pg_stat_database_blks_read",
    "pg_stat_database_deadlocks", "pg_stat_database_xact_commit", "pg_stat_database_xact_rollback",
    "redis_commands_processed_total", "redis_connected_clients", "redis_evicted_keys_total",
    "redis_keyspace_hits_total", "redis_keyspace_misses_total", "redis_rdb_last_save_timestamp_seconds",
    "chajipoa_backup_last_duration_seconds", "chajipoa_backup_last_run_timestamp_seconds",
    "chajipoa_backup_last_size_bytes",
})

# Series that exist only once something has happened, whatever the lab's traffic: a query reading
# one may honestly answer nothing.
ONLY_AFTER = {
    "chajipoa_backup_": "the backup program has run on a host",
    "ALERTS": "an alert fires",
}


def all_dashboards() -> list[Path]:
    return [DASHBOARDS / f"{name}.json" for name in NAMES]


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def template_variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in dashboard.get("templating", {}).get("list", [])}


def _everything(variable: dict[str, Any]) -> str:
    """The value of a variable that selects every series it could."""
    if variable.get("includeAll"):
        return variable.get("allValue") or ".*"
    current = variable.get("current", {}).get("value")
    if isinstance(current, list):
        current = "|".join(current)
    if not current:
        raise ValueError(f"Cannot fill in the variable {variable['name']}: it has no All value and no current value")
    return current


def substitute(expr: str, dashboard: dict[str, Any]) -> str:
    """`expr` with every Grafana variable filled in; an unknown variable is an error, not left as it is."""
    values = {**BUILTINS, **{name: _everything(variable) for name, variable in template_variables(dashboard).items()
                             if variable["type"] != "datasource"}}

    def value(match: re.Match) -> str:
        name = next(group for group in match.groups() if group)
        if name not in values:
            raise ValueError(f"Cannot fill in the variable {name} in {expr!r}: the dashboard defines no such variable")
        return values[name]

    return _VARIABLE.sub(value, expr)


def panel_queries(path: Path) -> list[tuple[str, str]]:
    """(panel title, expr) of every target of every panel, as Prometheus receives it."""
    dashboard = load(path)
    return [(panel["title"], substitute(target["expr"], dashboard))
            for panel in panels(dashboard) for target in panel.get("targets", []) if target.get("expr")]


def variable_queries(path: Path) -> list[tuple[str, str]]:
    """(variable name, series selector) of every `label_values(selector, label)` variable."""
    found = []
    for name, variable in template_variables(load(path)).items():
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = _LABEL_VALUES.match(query.strip())
        if match is None:
            raise ValueError(f"Cannot read the variable {name}'s query {query!r}: only label_values(selector, label)")
        if match.group(1):
            found.append((name, match.group(1)))
    return found


def may_be_empty(expr: str) -> str | None:
    """Why a query may answer no series in a lab with traffic (see ONLY_AFTER), or None if it must answer."""
    if re.search(r"\bor\s+vector\([^()]*\)\s*$", expr):
        return None
    for prefix, reason in ONLY_AFTER.items():
        if re.search(rf"(?<![\w:]){re.escape(prefix)}", expr):
            return reason
    return None
