"""The overview console page, rendered by a real Prometheus 2.42 with Debian's console libraries.

Debian's prometheus package ships prom.lib and menu.lib only as examples
(/usr/share/doc/prometheus/examples/console_libraries) and leaves /etc/prometheus/console_libraries
empty; the page is served from those files, the way the role points Prometheus at them. Prometheus
(with the role's rules) scrapes itself, Debian's node exporter reading the backup program's textfile
(instance "db1"), Debian's blackbox exporter probing a TLS server of the test's own (its certificate
lives two days, under the role's 14), and a target where nothing listens (down). The page must
answer 200 with those numbers in it, no template error, and the cells past their alert's threshold
marked; Debian's chromium must render the same numbers headless (the page needs no JavaScript).
The same Prometheus answers every dashboard panel's query, and the overview's with data where this
lab has the series (the lab's molecule test asks for the rest).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ansible_collections.chajipoa.platform.plugins.module_utils import backup_state
from tests import dashboards
from tests.integration.test_monitoring_exporters import exporter, https_server
from tests.ports import free_port
from tests.unit.roles import monitoring

CONSOLE_LIBRARIES = Path("/usr/share/doc/prometheus/examples/console_libraries")
PAGE = "chajipoa-overview.html"
# What Go's template engine writes where a page fails, or where a field it prints is missing.
TEMPLATE_ERRORS = ("error executing template", "template:", "&lt;no value&gt;", "<no value>")
HOURS_AGO = 30


@dataclass
class Lab:
    url: str
    probed: str


def query(url: str, expr: str) -> list[dict]:
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}", timeout=10) as response:
            return json.load(response)["data"]["result"]
    except urllib.error.HTTPError as error:
        raise AssertionError(f"Prometheus refused {expr!r}: {error.code} {error.read().decode()}") from None


def wait_ready(url: str, timeout: float = 120) -> None:
    """Until Prometheus says it is ready: it listens before its storage and rules are loaded, and
    answers 503 to queries meanwhile (for longer on a busy machine)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=10) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        assert time.monotonic() < deadline, f"Prometheus at {url} not ready after {timeout:.0f} s"
        time.sleep(0.2)


def wait_for(url: str, expr: str, count: int, timeout: float = 60) -> None:
    """Until `expr` answers `count` series: scrapes and rule evaluations have happened."""
    deadline = time.monotonic() + timeout
    while len(query(url, expr)) != count:
        assert time.monotonic() < deadline, f"{expr} did not answer {count} series: {query(url, expr)}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    if shutil.which("prometheus") is None or not (CONSOLE_LIBRARIES / "prom.lib").is_file():
        pytest.fail(f"prometheus or {CONSOLE_LIBRARIES}/prom.lib not found: run lab/test-deps.sh as root (Debian's "
                    "prometheus)", pytrace=False)
    directory = tmp_path_factory.mktemp("console")
    consoles, rules, textfiles = (directory / name for name in ("consoles", "rules", "textfile"))
    for path in (consoles, rules, textfiles):
        path.mkdir()
    (consoles / PAGE).write_text(monitoring.render(Path("etc/prometheus/consoles") / f"{PAGE}.j2"))
    monitoring.write_rules(rules)
    # The backup program's own renderer: a backup older than the role's 26 hours, so its cell is marked.
    taken = time.time() - HOURS_AGO * 3600
    state = {"backups": {"postgres/chajipoa": {"kind": "postgres", "database": "chajipoa", "last_run": taken,
                                               "last_run_success": 1, "last_success": taken}},
             "verifications": {}}
    (textfiles / "chajipoa_backup.prom").write_text(backup_state.render_metrics(state))

    with https_server(directory) as (web_port, ca_file):
        probed = f"https://127.0.0.1:{web_port}/"
        (directory / "blackbox.yml").write_text(yaml.safe_dump(
            {"modules": {"http_2xx": {"prober": "http", "http": {"tls_config": {"ca_file": str(ca_file)}}}}}))
        node_port, blackbox_port, port = free_port(), free_port(), free_port()
        (directory / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules / "*.yml")],
            "scrape_configs": [
                {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]},
                {"job_name": "node", "static_configs": [{"targets": [f"127.0.0.1:{node_port}"],
                                                         "labels": {"instance": "db1"}}]},
                # Nothing listens there: a target that is down.
                {"job_name": "redis", "static_configs": [{"targets": [f"127.0.0.1:{free_port()}"],
                                                          "labels": {"instance": "redis1"}}]},
                {"job_name": "blackbox_http", "metrics_path": "/probe", "params": {"module": ["http_2xx"]},
                 "static_configs": [{"targets": [probed]}],
                 "relabel_configs": [{"source_labels": ["__address__"], "target_label": "__param_target"},
                                     {"source_labels": ["__param_target"], "target_label": "instance"},
                                     {"target_label": "__address__", "replacement": f"127.0.0.1:{blackbox_port}"}]},
            ],
        }))
        with (exporter(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{node_port}",
                        f"--collector.textfile.directory={textfiles}"], node_port, log=directory / "node.log"),
              exporter(["prometheus-blackbox-exporter", f"--config.file={directory / 'blackbox.yml'}",
                        f"--web.listen-address=127.0.0.1:{blackbox_port}"], blackbox_port, log=directory / "blackbox.log"),
              exporter(["prometheus", f"--config.file={directory / 'prometheus.yml'}",
                        f"--web.listen-address=127.0.0.1:{port}", f"--storage.tsdb.path={directory / 'data'}",
                        f"--web.console.templates={consoles}", f"--web.console.libraries={CONSOLE_LIBRARIES}"],
                       port, log=directory / "prometheus.log")):
            url = f"http://127.0.0.1:{port}"
            wait_ready(url)
            wait_for(url, "up", 4)
            wait_for(url, "probe_ssl_earliest_cert_expiry", 1)
            wait_for(url, "instance:node_cpu_utilisation:ratio_rate5m", 1)
            yield Lab(url, probed)


def cells(html: str, table: str) -> list[list[str]]:
    """The rows of the page's table `table` (its id), each a list of its cells' markup."""
    body = re.search(rf'<table[^>]*id="{table}">(.*?)</table>', html, re.S)
    assert body, f"no table {table} in the page"
    return [re.findall(r"<td[^>]*>.*?</td>", row, re.S) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(1), re.S)][1:]


def text(cell: str) -> str:
    return re.sub(r"<[^>]+>", "", cell).strip()


def check_page(html: str, lab: Lab) -> None:
    for error in TEMPLATE_ERRORS:
        assert error not in html, f"{error!r} in the page:\n{html}"
    # Four targets, all but the one where nothing listens up; nothing firing yet (every `for` is minutes).
    summary = [text(link) for link in re.findall(r'<a class="prom_query_drilldown"[^>]*>.*?</a>', html, re.S)]
    assert summary == ["3", "4", "0"], summary
    targets = {(text(row[0]), text(row[1])): row[2] for row in cells(html, "targets")}
    assert 'class="alert-danger">down' in targets[("redis", "redis1")]
    assert ">up<" in targets[("node", "db1")] and ">up<" in targets[("blackbox_http", lab.probed)]
    # The backup is 30 hours old: over the 26 the role allows.
    [backup] = cells(html, "backups")
    assert [text(cell) for cell in backup[:3]] == ["db1", "postgres", "chajipoa"]
    assert "alert-danger" in backup[3] and re.fullmatch(rf"1d {HOURS_AGO - 24}h \d+m \d+s", text(backup[3])), backup
    # The probe succeeds; its certificate has two days left, under the role's 14.
    [probe] = cells(html, "probes")
    assert text(probe[0]) == lab.probed and text(probe[1]) == "up"
    assert "alert-danger" in probe[2] and 1 < float(text(probe[2])) <= 2, probe
    # No PostgreSQL, Redis or API series here: said so, not left blank.
    for table in ("api", "postgres", "redis", "alerts"):
        assert [[text(cell) for cell in row] for row in cells(html, table)] == [["no series"]], table


def test_console_page_renders_with_data(lab):
    try:
        with urllib.request.urlopen(f"{lab.url}/consoles/{PAGE}", timeout=10) as response:
            html = response.read().decode()
    except urllib.error.HTTPError as error:
        pytest.fail(f"/consoles/{PAGE} answered {error.code}: {error.read().decode()}", pytrace=False)
    assert response.status == 200
    check_page(html, lab)


def test_console_page_in_headless_chromium(lab, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (lab/test-deps.sh installs it): the page is not rendered "
                    "in a browser")
    # --no-sandbox: Chromium's sandbox refuses to run as root, as the tests do.
    result = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}",
                             "--dump-dom", f"{lab.url}/consoles/{PAGE}"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    check_page(result.stdout, lab)


def test_every_dashboard_query_is_accepted(lab):
    for path in dashboards.all_dashboards():
        for _title, expr in dashboards.panel_queries(path):
            query(lab.url, expr)


# The overview's panels whose series this lab has: Prometheus, a node exporter with a backup, a probe.
OVERVIEW_HERE = {"Targets up by job": 4, "Targets down by job": 4, "Alerts firing": 1, "Last good backup age": 1,
                 "Uptime probes": 1, "Certificate days left": 1}


def test_overview_answers_with_data(lab):
    answers = {title: query(lab.url, expr) for title, expr in dashboards.panel_queries(dashboards.DASHBOARDS / "overview.json")
               if title in OVERVIEW_HERE}
    assert {title: len(series) for title, series in answers.items()} == OVERVIEW_HERE
    down = {series["metric"]["job"]: series["value"][1] for series in answers["Targets down by job"]}
    assert down == {"prometheus": "0", "node": "0", "redis": "1", "blackbox_http": "0"}
    assert 29 * 3600 < float(answers["Last good backup age"][0]["value"][1]) < 31 * 3600
