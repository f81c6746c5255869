"""The edge (nginx on app-edge) in front of both app hosts, probed with real requests from the
other app host, app-web, as a browser or a scanner would: curl over TLS verified against the
development CA, sslscan and openssl s_client for the protocols, the access log and the operators'
status socket on the edge host, and the project's playbooks (maintenance.yml, edge.yml --check)
and the role's `switch` entry point run as a deploy runs it (switch.yml)."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import pytest
import yaml
from testinfra.utils.ansible_runner import AnsibleRunner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
SCENARIO = Path(__file__).resolve().parent.parent
ROLE = SCENARIO.parent.parent / "roles" / "edge"
RUNNER = AnsibleRunner(INVENTORY)
EDGE = RUNNER.get_hosts("edge")[0]
CLIENT = next(host for host in RUNNER.get_hosts("app") if host not in RUNNER.get_hosts("edge"))
CA = "/etc/chajipoa/apps/reference-api/ca.crt"
SOCKET = "/run/chajipoa-edge/status.sock"
ACCESS_LOG = "/var/log/nginx/access.log"
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())

pytestmark = pytest.mark.journal("nginx.service")


@pytest.fixture(scope="module")
def edge(lab_host):
    return lab_host(EDGE)


@pytest.fixture(scope="module")
def client(lab_host):
    return lab_host(CLIENT)


@pytest.fixture(scope="module")
def settings():
    variables = RUNNER.get_variables(EDGE)
    return {"name": variables["platform_domain"], "aliases": variables["edge_server_aliases"],
            "retry_after": int(variables["edge_maintenance_retry_after"]), "rate": variables["edge_rate_limit"],
            "burst": int(variables["edge_rate_limit_burst"])}


@pytest.fixture(scope="module")
def edge_address(edge, lab_address) -> str:
    return lab_address(edge)


class Answer:
    def __init__(self, text: str):
        head, _, self.body = text.replace("\r\n", "\n").partition("\n\n")
        lines = head.splitlines()
        self.status = int(lines[0].split()[1])
        self.headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers.setdefault(name.strip().lower(), []).append(value.strip())

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower(), [])
        assert len(values) <= 1, f"{name} sent {len(values)} times: {values}"
        return values[0] if values else None

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<{self.status} {self.headers} {self.body[:300]!r}>"


def curl_command(edge_address: str, settings: dict, path: str, method: str = "GET", headers: dict | None = None,
                 body: str | None = None, name: str | None = None, scheme: str = "https") -> str:
    name = name or settings["name"]
    port = 443 if scheme == "https" else 80
    # --path-as-is: the path reaches nginx as given, dot segments too (curl would resolve them itself).
    args = ["curl", "-sS", "-i", "--path-as-is", "--max-time", "10", "--resolve", f"{name}:{port}:{edge_address}", "--cacert", CA,
            "-X", method, f"{scheme}://{name}{path}"]
    for key, value in (headers or {}).items():
        args += ["-H", f"{key}: {value}"]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data", body]
    return shlex.join(args)


@pytest.fixture(scope="module")
def get(client, edge_address, settings):
    return lambda path, **kwargs: Answer(client.check_output(curl_command(edge_address, settings, path, **kwargs)))


@pytest.fixture(scope="module")
def burst(client, edge_address, settings):
    """`count` requests in a row from one shell on the client. A rate limit's test sent through `get`
    depended on its pace: past the burst only while nginx has not refilled a request (2 s at this
    scenario's 30r/m), so the exec per request (70 to 100 ms here, idle or loaded) had to stay fast."""
    def send(path: str, count: int, **kwargs) -> list[Answer]:
        command = curl_command(edge_address, settings, path, **kwargs)
        # A NUL after each answer, which none of them holds.
        output = client.check_output(f"for _ in $(seq {count}); do {command}; printf '\\0'; done")
        return [Answer(text) for text in output.split("\0")[:count]]
    return send


def expected_headers() -> dict[str, str]:
    hsts = f"max-age={DEFAULTS['edge_hsts_max_age']}; includeSubDomains; preload"
    csp = "; ".join(" ".join([directive, *sources]) for directive, sources in DEFAULTS["edge_csp"].items())
    return {"Strict-Transport-Security": hsts, "Content-Security-Policy": csp, **DEFAULTS["edge_security_headers"]}


def assert_security_headers(answer: Answer) -> None:
    for name, value in expected_headers().items():
        assert answer.header(name) == value, (name, answer)
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", answer.header("X-Request-Id") or ""), answer


def test_the_guide_s_csp_is_the_default():
    assert expected_headers()["Content-Security-Policy"] == (
        "default-src 'self'; script-src 'self' 'unsafe-eval' 'unsafe-inline' https://js.stripe.com; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' blob: data: https:; font-src 'self' data:; "
        "connect-src 'self' https://api.stripe.com https://sentry.io; frame-src 'self' https://js.stripe.com")


@pytest.mark.parametrize(("path", "status"), [
    ("/", 200),                           # the frontend's index
    ("/stations/DAR-001", 200),           # a route of the single-page app: index.html
    ("/assets/app-3f9c2a7d.js", 200),     # a content-hashed asset
    ("/assets/missing-0000.js", 404),     # never index.html for a missing asset
    ("/api/health", 200),                 # proxied; the app's own copies of the headers are hidden
    ("/api/no-such-route", 404),          # the app's 404, proxied
])
def test_every_answer_carries_the_security_headers_once(get, path, status):
    answer = get(path)
    assert answer.status == status, answer
    assert_security_headers(answer)


def test_the_frontend_is_served_spa_friendly_with_long_cache_for_hashed_assets(get):
    index, route, asset = get("/"), get("/stations/DAR-001"), get("/assets/app-3f9c2a7d.js")
    assert "chajipoa-test-frontend" in index.body and route.body == index.body
    assert index.header("Cache-Control") == "no-cache" and route.header("Cache-Control") == "no-cache"
    assert asset.header("Cache-Control") == "public, max-age=31536000, immutable"
    assert "chajipoa-test-asset" in asset.body


@pytest.mark.parametrize("path", ["/metrics", "/api/../metrics", "/api/%2e%2e/metrics", "/api/..%2fmetrics", "/api/metrics"])
def test_the_apis_metrics_are_not_published_through_the_edge(get, path):
    """The API serves /metrics beside /api/ for Prometheus alone (docs/monitoring.md); the edge
    proxies /api/ only, so no spelling of the path reaches the API's /metrics through it."""
    answer = get(path)
    assert "http_request_duration_seconds" not in answer.body and "# TYPE" not in answer.body, answer
    if path == "/metrics":
        assert answer.body == get("/").body, answer


def test_http_redirects_to_https(get, settings):
    answer = get("/api/health?x=1", scheme="http")
    assert answer.status == 301
    assert answer.header("Location") == f"https://{settings['name']}/api/health?x=1"


def sslscan(client, edge_address: str, settings: dict) -> dict[str, str]:
    out = client.check_output(f"sslscan --no-colour --sni-name={settings['name']} {edge_address}:443")
    return dict(re.findall(r"^(SSLv[23]|TLSv1\.[0-3])\s+(enabled|disabled)", out, re.MULTILINE))


def s_client(client, edge_address: str, name: str, *options: str):
    command = (f"openssl s_client -connect {edge_address}:443 -servername {name} -verify_hostname {name} "
               f"-CAfile {CA} {' '.join(options)}")
    return client.run(f"echo | timeout 10 {command}")


def test_only_tls_1_2_and_1_3_are_accepted(client, edge_address, settings):
    protocols = sslscan(client, edge_address, settings)
    assert protocols == {"SSLv2": "disabled", "SSLv3": "disabled", "TLSv1.0": "disabled", "TLSv1.1": "disabled",
                         "TLSv1.2": "enabled", "TLSv1.3": "enabled"}, protocols
    # openssl as a second opinion; SECLEVEL=0 lets the client offer the old protocols at all.
    for option in ("-tls1", "-tls1_1"):
        refused = s_client(client, edge_address, settings["name"], option, "-cipher", "'DEFAULT:@SECLEVEL=0'")
        assert "Cipher is (NONE)" in refused.stdout or refused.rc != 0, refused.stdout
    for option, protocol in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        accepted = s_client(client, edge_address, settings["name"], option)
        assert f"New, {protocol}, Cipher is " in accepted.stdout and "Verify return code: 0 (ok)" in accepted.stdout, accepted.stdout


def test_the_certificate_verifies_for_the_server_name_and_aliases_only(client, edge_address, settings):
    for name in [settings["name"], *settings["aliases"]]:
        answer = s_client(client, edge_address, name, "-tls1_3")
        assert "Verify return code: 0 (ok)" in answer.stdout, (name, answer.stdout)
    wrong = s_client(client, edge_address, "elsewhere.example", "-tls1_3")
    assert "Verify return code: 62 (hostname mismatch)" in wrong.stdout, wrong.stdout


def test_no_session_tickets_and_no_ocsp_stapling_for_the_development_ca(client, edge_address, settings):
    answer = s_client(client, edge_address, settings["name"], "-tls1_2", "-status")
    assert "TLS session ticket:" not in answer.stdout, answer.stdout
    assert "OCSP response: no response sent" in answer.stdout, answer.stdout


def access_log(edge, request_id: str) -> list[dict]:
    lines = edge.check_output(f"grep -F -- {shlex.quote(request_id)} {ACCESS_LOG} || true").splitlines()
    return [json.loads(line) for line in lines]


def live_servers(lab_host, lab_address) -> set[str]:
    servers = set()
    for name in RUNNER.get_hosts("app"):
        host = lab_host(name)
        live = host.run("cat /etc/chajipoa/apps/reference-api/live").stdout.strip() or "blue"
        servers.add(f"{lab_address(host)}:{ {'blue': 3001, 'green': 3002}[live] }")
    return servers


def test_api_health_is_served_by_the_live_colour_of_both_app_hosts(get, edge, lab_host, lab_address):
    live = live_servers(lab_host, lab_address)
    # nginx leaves a server that failed a request out for its fail_timeout (10 s), and the deploy
    # tests' colour switches may have just done so: rounds of six requests for a little longer.
    deadline = time.monotonic() + 15
    while True:
        marker = uuid.uuid4().hex[:12]
        for index in range(6):
            answer = get("/api/health", headers={"X-Request-Id": f"health-{marker}-{index}"})
            assert answer.status == 200 and answer.json()["status"] == "healthy", answer
        entries = access_log(edge, f"health-{marker}-")
        assert len(entries) == 6
        assert {entry["upstream_status"] for entry in entries} == {"200"}
        if {entry["upstream_addr"] for entry in entries} == live or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert {entry["upstream_addr"] for entry in entries} == live


def test_the_access_log_is_json_with_request_id_and_upstream_timing(get, edge):
    request_id = f"log-{uuid.uuid4().hex}"
    get("/api/market?secret=not-logged", headers={"X-Request-Id": request_id})
    [entry] = access_log(edge, request_id)
    assert entry["status"] == 200 and entry["path"] == "/api/market" and entry["method"] == "GET"
    assert isinstance(entry["request_time"], float)
    assert float(entry["upstream_response_time"]) >= 0 and entry["upstream_status"] == "200"
    assert re.fullmatch(r"[0-9.]+:300[12]", entry["upstream_addr"])
    assert "not-logged" not in edge.check_output(f"grep -F {request_id} {ACCESS_LOG}")


def test_a_plain_request_id_goes_to_the_app_and_back(get, edge, lab_host):
    request_id = f"trace-{uuid.uuid4().hex}:1.a_b"
    answer = get("/api/market", headers={"X-Request-Id": request_id})
    assert answer.status == 200 and answer.header("X-Request-Id") == request_id
    [entry] = access_log(edge, request_id)
    assert entry["request_id"] == request_id
    # The app logged it too: it received the edge's X-Request-Id.
    journals = [lab_host(name).run(f"journalctl -u 'reference-api@*' --since=-5min --no-pager | grep -cF -- {shlex.quote(request_id)}")
                for name in RUNNER.get_hosts("app")]
    assert sum(int(journal.stdout.strip() or 0) for journal in journals) == 1


@pytest.mark.parametrize("given", [None, "two words", "x" * 129, 'quote"d'])
def test_without_a_plain_request_id_nginx_makes_one(get, edge, given):
    answer = get("/api/market", headers={"X-Request-Id": given} if given else None)
    generated = answer.header("X-Request-Id")
    assert re.fullmatch(r"[0-9a-f]{32}", generated), answer
    [entry] = access_log(edge, generated)
    assert entry["status"] == 200


def rate(settings: dict) -> int:
    number, unit = re.fullmatch(r"(\d+)r/([sm])", settings["rate"]).groups()
    return 1 if unit == "s" else -(-60 // int(number))


def test_a_listed_route_answers_429_with_json_past_its_limit(burst, settings):
    answers = burst("/api/auth/login", settings["burst"] + 4, method="POST", body='{"phone": "+255712345678"}')
    statuses = [answer.status for answer in answers]
    # The first request and the burst reach the app (which has no such route: 404), then 429s.
    assert statuses[:settings["burst"] + 1] == [404] * (settings["burst"] + 1), statuses
    assert statuses[-1] == 429, statuses
    limited = answers[-1]
    assert limited.json() == {"error": "too many requests", "retry_after": rate(settings)}
    assert limited.header("Retry-After") == str(rate(settings))
    assert limited.header("Content-Type") == "application/json"
    assert_security_headers(limited)


def test_an_unlisted_route_is_not_limited(burst, settings):
    statuses = [answer.status for answer in burst("/api/market", settings["burst"] + 4)]
    assert statuses == [200] * len(statuses)


@pytest.fixture
def maintenance(run_playbook):
    def switch(state: str) -> None:
        run = run_playbook("playbooks/maintenance.yml", "-e", f"maintenance={state}")
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    yield switch
    switch("off")


def test_maintenance_serves_its_page_and_spares_api_health(get, edge, settings, maintenance):
    reloads = edge.check_output("journalctl -u nginx --no-pager | grep -c Reload || true")
    maintenance("on")
    page = get("/")
    assert page.status == 503 and DEFAULTS["edge_maintenance_message"].replace("'", "&#39;") in page.body, page
    assert page.header("Retry-After") == str(settings["retry_after"])
    assert page.header("Content-Type").startswith("text/html")
    assert_security_headers(page)
    for method in ("GET", "POST"):
        api = get("/api/rentals" + ("/1" if method == "GET" else ""), method=method, body="{}" if method == "POST" else None)
        assert api.status == 503 and api.header("Retry-After") == str(settings["retry_after"]), api
        assert api.json() == {"error": "maintenance", "message": DEFAULTS["edge_maintenance_message"],
                              "retry_after": settings["retry_after"]}
        assert_security_headers(api)
    health = get("/api/health")
    assert health.status == 200 and health.json()["status"] == "healthy"
    # A flag nginx tests per request: no reload happened.
    assert edge.check_output("journalctl -u nginx --no-pager | grep -c Reload || true") == reloads
    maintenance("off")
    assert get("/api/market").status == 200
    assert get("/").status == 200


def status(edge, path: str) -> str:
    return edge.check_output(f"curl -sS --max-time 5 --unix-socket {SOCKET} http://localhost{path}")


def test_the_status_socket_names_both_app_servers_and_only_root_enters(edge, lab_host, lab_address):
    servers = json.loads(status(edge, "/upstream"))["servers"].split()
    assert set(servers) == live_servers(lab_host, lab_address) and len(servers) == 2
    assert json.loads(status(edge, "/api/health"))["status"] == "healthy"
    assert "Active connections:" in status(edge, "/nginx_status")
    directory = edge.file(os.path.dirname(SOCKET))
    assert (directory.user, directory.mode) == ("root", 0o700)
    denied = edge.run(f"runuser -u www-data -- curl -sS --max-time 5 --unix-socket {SOCKET} http://localhost/upstream")
    assert denied.rc != 0


def switch(hosts: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ansible-playbook", "-i", INVENTORY, str(SCENARIO / "switch.yml"), "-e", json.dumps({"switch_hosts": hosts})],
        capture_output=True, text=True, timeout=300, check=False)


def switched(run: subprocess.CompletedProcess) -> bool:
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    return json.loads(re.search(r'"edge_switched": (true|false)', run.stdout)[1])


def test_switch_from_an_app_host_s_play_reloads_and_proves_the_new_servers(edge, get, lab_host, lab_address):
    master = edge.check_output("cat /run/nginx.pid")
    apps = RUNNER.get_hosts("app")
    try:
        assert switched(switch([CLIENT]))
        [only] = json.loads(status(edge, "/upstream"))["servers"].split()
        assert only.startswith(lab_address(lab_host(CLIENT)) + ":")
        request_id = f"switched-{uuid.uuid4().hex}"
        assert get("/api/health", headers={"X-Request-Id": request_id}).status == 200
        assert access_log(edge, request_id)[0]["upstream_addr"] == only
        assert not switched(switch([CLIENT]))
    finally:
        assert switched(switch(apps))
    assert set(json.loads(status(edge, "/upstream"))["servers"].split()) == live_servers(lab_host, lab_address)
    # Graceful reloads: the master process is the same.
    assert edge.check_output("cat /run/nginx.pid") == master


def test_a_configuration_nginx_refuses_is_never_installed(edge, get):
    before = edge.file("/etc/nginx/chajipoa/headers.conf").content_string
    edge.check_output("printf 'add_header X-Broken \"yes\" always\\n' > /var/tmp/broken-headers.conf")
    check = edge.run("/usr/local/sbin/chajipoa-nginx-check /etc/nginx/chajipoa/headers.conf /var/tmp/broken-headers.conf")
    assert check.rc == 1 and "Cannot install /etc/nginx/chajipoa/headers.conf" in check.stderr, check.stderr
    assert "/etc/nginx/chajipoa/headers.conf" in check.stderr and "/var/tmp/chajipoa-nginx-check" not in check.stderr
    assert edge.file("/etc/nginx/chajipoa/headers.conf").content_string == before
    assert get("/api/health").status == 200


def test_a_frontend_tarball_is_unpacked_once_and_served(run_playbook, get, tmp_path):
    archive = tmp_path / "frontend.tar.gz"
    extra = tmp_path / "extra-0a1b2c3d.css"
    extra.write_text("body { color: #123456; }\n")
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted((SCENARIO / "frontend").rglob("*")):
            tar.add(path, arcname=str(path.relative_to(SCENARIO / "frontend")), recursive=False)
        tar.add(extra, arcname="assets/extra-0a1b2c3d.css")
    for attempt in ("first", "again"):
        run = run_playbook("playbooks/edge.yml", "-e", f"edge_frontend_source={archive}")
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        changed = json.loads(run.stdout)["stats"][EDGE]["changed"]
        assert (changed > 0) if attempt == "first" else (changed == 0), (attempt, changed)
    css = get("/assets/extra-0a1b2c3d.css")
    assert css.status == 200 and "#123456" in css.body
    assert css.header("Cache-Control") == "public, max-age=31536000, immutable"
    assert "chajipoa-test-frontend" in get("/").body


def test_the_playbook_in_check_mode_changes_nothing(run_playbook):
    run = run_playbook("playbooks/edge.yml", "--check")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    stats = json.loads(run.stdout)["stats"]
    assert stats[EDGE]["changed"] == 0 and stats[EDGE]["failures"] == 0, stats
