"""The monitoring role's Grafana dashboards and its Prometheus console page, offline.

Every query a panel, a dashboard variable or the console page sends is parsed by Debian's own
promtool (each wrapped into a recording rule, Grafana's variables filled in first), and every metric
name it reads must be one the platform really has: a recording rule of the role's rule files, a name
those rules read (tests/integration/test_monitoring_exporters.py finds each in Debian's exporters),
the API's contract in docs/monitoring.md, Prometheus's own `up` and `ALERTS`, or one of the
dashboards' further exporter names (tests.dashboards.EXPORTER_NAMES, required by that same
integration test). The last tests break a copy on purpose and require the checks to say so.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests import dashboards
from tests.conftest import ROOT
from tests.unit.roles import monitoring

# The classic JSON model's version of Grafana 10 and 11; a Grafana migrates a lower version on load, so
# one place pins it rather than each file drifting with whichever Grafana last exported it.
SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PROMETHEUS_OWN = {"up", "ALERTS"}
CONSOLE_PAGE = Path("etc/prometheus/consoles/chajipoa-overview.html.j2")
API_CONTRACT = ROOT / "docs" / "monitoring.md"
# The console page writes its queries as Go raw strings.
_RAW_STRING = re.compile(r"`([^`]*)`")

Queries = list[tuple[str, str]]


@pytest.fixture(scope="module", autouse=True)
def _promtool():
    if shutil.which("promtool") is None:
        pytest.fail("promtool not found: run lab/test-deps.sh as root (Debian's prometheus)", pytrace=False)


def api_contract_names(text: str) -> set[str]:
    """The series of docs/monitoring.md's table "The API's metrics": a histogram's are its suffixed names."""
    section = re.search(r"^### The API's metrics.*?\n(.*?)(?=^#)", text, re.S | re.M)
    if section is None:
        raise AssertionError("docs/monitoring.md has no section \"The API's metrics\"")
    names = set()
    for row in section.group(1).splitlines():
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        metrics = re.findall(r"`(\w+)`", cells[0])
        suffixes = re.findall(r"`(_\w+)`", cells[1]) if "histogram" in cells[1] else [""]
        names |= {metric + suffix for metric in metrics for suffix in suffixes}
    return names


@cache
def allowed_names() -> frozenset[str]:
    recorded = {rule["record"] for rule in monitoring.rules() if "record" in rule}
    return frozenset(recorded | set(monitoring.exported_names_needed()) | api_contract_names(API_CONTRACT.read_text())
                     | PROMETHEUS_OWN | dashboards.EXPORTER_NAMES)


def unknown_names(queries: Queries) -> dict[str, list[str]]:
    """Metric name -> the titles of the queries that read it, for every name not allowed."""
    unknown: dict[str, list[str]] = {}
    for title, expr in queries:
        for name in sorted(monitoring.metric_names(expr) - allowed_names()):
            unknown.setdefault(name, []).append(title)
    return unknown


def promtool_refusal(queries: Queries, directory: Path) -> str:
    """What promtool says against the queries as recording rules; empty when it accepts them all."""
    rules = [{"record": f"chajipoa_dashboard_query_{index}", "expr": expr} for index, (_title, expr) in enumerate(queries)]
    path = directory / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sort_keys=False))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=120,
                            check=False)
    if result.returncode == 0:
        return ""
    numbered = "\n".join(f"  chajipoa_dashboard_query_{index}: {title}: {expr}" for index, (title, expr) in enumerate(queries))
    return f"{result.stdout}{result.stderr}\nqueries:\n{numbered}"


def all_queries(path: Path) -> Queries:
    return dashboards.panel_queries(path) + [(f"variable {name}", selector)
                                             for name, selector in dashboards.variable_queries(path)]


def console_queries() -> Queries:
    page = monitoring.render(CONSOLE_PAGE)
    return [("console page", expr) for expr in _RAW_STRING.findall(page)]


DASHBOARDS = pytest.mark.parametrize("path", dashboards.all_dashboards(), ids=lambda path: path.stem)


def test_the_files_are_the_five_dashboards():
    assert sorted(dashboards.DASHBOARDS.glob("*")) == sorted(dashboards.all_dashboards())


@DASHBOARDS
def test_dashboard_identity(path):
    dashboard = dashboards.load(path)
    assert dashboard["uid"] == f"chajipoa-{path.stem}" and len(dashboard["uid"]) <= 40
    assert "chajipoa" in dashboard["tags"]
    assert dashboard["schemaVersion"] == SCHEMA_VERSION
    # Provisioning matches a dashboard by uid; a numeric id of another Grafana would clash.
    assert dashboard["id"] is None
    assert dashboard["title"].startswith("ChajiPoa: ")


@DASHBOARDS
def test_datasource_is_a_variable(path):
    dashboard = dashboards.load(path)
    variables = dashboards.template_variables(dashboard)
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name, variable in variables.items():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, name
    for panel in dashboards.panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        assert all(target["datasource"] == DATASOURCE for target in panel["targets"]), panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


@DASHBOARDS
def test_panel_ids_and_titles_are_unique_and_panels_fit(path):
    found = dashboards.panels(dashboards.load(path))
    ids = [panel["id"] for panel in found]
    assert all(isinstance(panel_id, int) for panel_id in ids) and len(ids) == len(set(ids)), ids
    # The lab's test and its reports name a query by its panel's title.
    titles = [panel["title"] for panel in found]
    assert len(titles) == len(set(titles)), titles
    for panel in found:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]


@DASHBOARDS
def test_every_query_parses_with_promtool(path, tmp_path):
    queries = all_queries(path)
    assert queries
    refusal = promtool_refusal(queries, tmp_path)
    assert not refusal, refusal


@DASHBOARDS
def test_every_metric_name_exists(path):
    assert unknown_names(all_queries(path)) == {}


def test_console_page_queries_parse_and_exist(tmp_path):
    queries = console_queries()
    assert len(queries) >= 10
    refusal = promtool_refusal(queries, tmp_path)
    assert not refusal, refusal
    assert unknown_names(queries) == {}


def test_console_page_thresholds_follow_the_role_variables():
    """The cells a page marks red are the alerts' own thresholds: move one and the page moves. Each is
    written as a float: Go's `gt` refuses to compare a sample's float with an integer, and the page then
    answers 500 (tests/integration/test_monitoring_console.py saw it)."""
    defaults = monitoring.render(CONSOLE_PAGE)
    moved = monitoring.render(CONSOLE_PAGE, monitoring_api_latency_p95_ms=1000, monitoring_certificate_min_days=30,
                              monitoring_api_error_rate_percent=100, monitoring_backup_max_age_hours=24)
    assert "args .Value 0.5 " in defaults and "args .Value 1.0 " in moved
    assert "args .Value 14.0 " in defaults and "args .Value 30.0 " in moved
    for page in (defaults, moved):
        thresholds = re.findall(r"args \.Value (\S+) ", page)
        assert len(thresholds) == 8 and all(re.fullmatch(r"\d+\.\d+", value) for value in thresholds), thresholds


def test_exporter_names_are_all_used():
    """An entry no dashboard reads would be required from the exporters for nothing."""
    used = set().union(*(monitoring.metric_names(expr) for path in dashboards.all_dashboards()
                         for _title, expr in all_queries(path)))
    assert dashboards.EXPORTER_NAMES <= used
    assert not dashboards.EXPORTER_NAMES & set(monitoring.exported_names_needed()), "already read by a rule"


def test_api_contract_names():
    assert api_contract_names(API_CONTRACT.read_text()) >= {
        "http_request_duration_seconds_bucket", "http_request_duration_seconds_count", "http_request_duration_seconds_sum",
        "chajipoa_db_pool_connections", "chajipoa_db_pool_max", "process_resident_memory_bytes"}


def test_may_be_empty_names_what_only_appears_later():
    overview = dict(dashboards.panel_queries(dashboards.DASHBOARDS / "overview.json"))
    assert dashboards.may_be_empty(overview["Last good backup age"]) == "the backup program has run on a host"
    assert dashboards.may_be_empty(overview["Alerts firing"]) is None, "count(...) or vector(0) always answers"
    assert dashboards.may_be_empty(overview["Redis memory"]) is None
    # Every probe is HTTPS (the edge serves nothing else; monitoring_probe_urls_extra only adds to
    # them), and the blackbox exporter reads the certificate of every probe that completes its TLS
    # handshake, a 503 included: the lab's overview must show it.
    assert dashboards.may_be_empty(overview["Certificate days left"]) is None


# --- The checks fail where they should -----------------------------------------------------------
def test_a_misspelt_metric_name_is_refused():
    queries = [(title, expr.replace("redis_memory_used_bytes", "redis_memory_use_bytes"))
               for title, expr in dashboards.panel_queries(dashboards.DASHBOARDS / "overview.json")]
    assert unknown_names(queries) == {"redis_memory_use_bytes": ["Redis memory"]}


def test_an_expression_promtool_refuses_is_reported(tmp_path):
    refusal = promtool_refusal([("fine", "sum(up)"), ("broken", "sum by (job) (rate(up[5m])")], tmp_path)
    assert "chajipoa_dashboard_query_1: broken" in refusal and "parse" in refusal


def test_an_undefined_variable_is_refused():
    dashboard = dashboards.load(dashboards.DASHBOARDS / "redis.json")
    assert dashboards.substitute('redis_up{instance=~"$instance"}', dashboard) == 'redis_up{instance=~".*"}'
    with pytest.raises(ValueError, match="no such variable"):
        dashboards.substitute('redis_up{instance=~"$host"}', dashboard)
