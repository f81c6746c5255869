"""The edge role's nginx configuration, rendered from the role's templates and run by Debian's nginx
(the package the role installs, from lab/test-deps.sh) on loopback, in front of app servers that are
HTTP servers in this process recording every request they receive: what the app would see.

nginx runs in a mount namespace of its own where a temporary directory stands for /run (its pid
file) and /var/log/nginx; every other path the role fixes (state, pages, status socket) is moved into
that directory through the role's own variables, so the configuration is otherwise the role's.

Covered: the deploy's live-path gate (playbooks/tasks/switch-edges.yml's own task, run against this
nginx's status socket) fails when one switched server is unreachable or unhealthy; the rate limits
hold for every spelling of a limited route an app may route as it; during maintenance only a
request the app sees as /api/health reaches it.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.integration.conftest import require_tools
from tests.ports import free_port

ROLE = ROOT / "roles" / "edge"
RATE_BURST = 2
# The rendered files: template (under the role's templates) -> path under the directory given.
CONF_TEMPLATES = {
    "etc/nginx/nginx.conf.j2": "etc/nginx.conf",
    "etc/nginx/chajipoa/headers.conf.j2": "etc/chajipoa/headers.conf",
    "etc/nginx/chajipoa/proxy.conf.j2": "etc/chajipoa/proxy.conf",
    "var/www/chajipoa-edge/pages/maintenance.html.j2": "www/pages/maintenance.html",
    "var/www/chajipoa-edge/pages/maintenance.json.j2": "www/pages/maintenance.json",
    "var/www/chajipoa-edge/pages/too-many-requests.json.j2": "www/pages/too-many-requests.json",
    "var/www/chajipoa-edge/frontend/index.html.j2": "www/frontend/index.html",
}
UPSTREAM_TEMPLATES = {
    "etc/nginx/chajipoa/upstream-servers.conf.j2": "etc/chajipoa/upstream-servers.conf",
    "etc/nginx/chajipoa/upstream-generation.conf.j2": "etc/chajipoa/upstream-generation.conf",
}


def ansible(playbook: list, tmp: Path, extra: dict | None = None) -> subprocess.CompletedProcess:
    path = tmp / f"play-{time.monotonic_ns()}.yml"
    path.write_text(yaml.safe_dump(playbook, sort_keys=False))
    variables = path.with_suffix(".json")
    variables.write_text(json.dumps(extra or {}))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_CACHE_PLUGIN="memory",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    return subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", "-e", f"@{variables}", str(path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


class AppServer:
    """An app server's stand-in: answers every request as the API's /api/health would, healthy or
    not, and records the request's method and path as received."""

    def __init__(self, healthy: bool = True):
        self.healthy = healthy
        self.requests: list[tuple[str, str]] = []
        app = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                app.requests.append((self.command, self.path))
                body = json.dumps({"status": "healthy" if app.healthy else "unhealthy"}).encode()
                self.send_response(200 if app.healthy else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def upstream(self) -> dict:
        host, port = self.address.split(":")
        return {"name": self.address, "address": host, "port": int(port)}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Edge:
    def __init__(self, base: Path):
        self.base = base
        self.socket = base / "status" / "status.sock"
        self.flag = base / "state" / "maintenance"
        self.https_port = free_port()
        self.settings = {
            "edge_server_name": "edge.test", "edge_listen_addresses": ["127.0.0.1"],
            "edge_http_port": free_port(), "edge_https_port": self.https_port, "edge_stub_status_port": free_port(),
            # Every test its own client address, through X-Forwarded-For: rate limits start afresh.
            "edge_real_ip_from": ["127.0.0.1"],
            "edge_rate_limit": "1r/m", "edge_rate_limit_burst": RATE_BURST,
            "_edge_state_dir": str(base / "state"), "_edge_www_dir": str(base / "www"), "_edge_status_socket": str(self.socket),
        }
        self.process: subprocess.Popen | None = None

    def render(self, templates: dict[str, str], upstreams: list[dict]) -> None:
        tasks = [{"name": dest, "ansible.builtin.template": {"src": str(ROLE / "templates" / src), "dest": str(self.base / dest)}}
                 for src, dest in templates.items()]
        # Extra vars: over the role's defaults and vars, as an inventory's and the role's would be.
        run = ansible([{"hosts": "localhost", "gather_facts": False,
                        "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")], "tasks": tasks}],
                      self.base, {**self.settings, "edge_app_upstreams": upstreams})
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]

    def start(self, upstreams: list[dict]) -> None:
        for directory in ("etc/chajipoa/tls", "www/pages", "www/frontend", "state", "status", "run", "log"):
            (self.base / directory).mkdir(parents=True, exist_ok=True)
        shutil.copy("/etc/nginx/mime.types", self.base / "etc")
        shutil.copy(ROLE / "files" / "etc" / "nginx" / "chajipoa" / "ffdhe2048.pem", self.base / "etc" / "chajipoa")
        tls = self.base / "etc" / "chajipoa" / "tls"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                        "-subj", "/CN=edge.test", "-keyout", str(tls / "edge.key"), "-out", str(tls / "edge.crt")],
                       check=True, capture_output=True)
        self.render({**CONF_TEMPLATES, **UPSTREAM_TEMPLATES}, upstreams)
        # The workers run as www-data, as on the edge: they read the pages and test the flag file.
        for path in [self.base, *self.base.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        mounts = " && ".join(f"mount --bind {self.base / source} {target}" for source, target in (("run", "/run"), ("log", "/var/log/nginx")))
        self.process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             f"{mounts} && exec nginx -c {self.base / 'etc' / 'nginx.conf'} -g 'daemon off;'"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.wait_for_servers(upstreams)

    def switch(self, upstreams: list[dict]) -> None:
        """As the role's `switch` entry point: new upstream files, a graceful reload, and the wait
        until the workers proxy to the new servers."""
        self.render(UPSTREAM_TEMPLATES, upstreams)
        os.kill(self.process.pid, signal.SIGHUP)
        self.wait_for_servers(upstreams)

    def wait_for_servers(self, upstreams: list[dict]) -> None:
        expected = " ".join(f"{server['address']}:{server['port']}" for server in upstreams)
        deadline = time.monotonic() + 15
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"nginx exited: {self.process.stdout.read()}\n{self.error_log()}")
            try:
                if json.loads(self.status("/upstream")[1])["servers"] == expected:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"nginx never proxied to {expected}:\n{self.error_log()}")
            time.sleep(0.1)

    def status(self, path: str) -> tuple[int, str]:
        connection = http.client.HTTPConnection("localhost", timeout=10)
        connection.sock = socket.socket(socket.AF_UNIX)
        connection.sock.connect(str(self.socket))
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()

    def request(self, path: str, client: str, method: str = "GET") -> int:
        """The status of a request over TLS for this path exactly as written, from the client address given."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection("127.0.0.1", self.https_port, timeout=10, context=context)
        connection.request(method, path, body="{}" if method == "POST" else None,
                           headers={"Host": "edge.test", "X-Forwarded-For": client, "Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        connection.close()
        return response.status

    def error_log(self) -> str:
        log = self.base / "log" / "error.log"
        return log.read_text()[-3000:] if log.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)


@pytest.fixture(scope="module")
def apps():
    servers = [AppServer(), AppServer()]
    yield servers
    for server in servers:
        server.close()


@pytest.fixture(scope="module")
def edge(apps):
    require_tools("nginx", "unshare", "openssl", packages="nginx, util-linux, openssl")
    # Under /tmp, not pytest's tmp_path: www-data must enter it.
    base = Path(tempfile.mkdtemp(prefix="chajipoa-edge-", dir="/tmp"))
    server = Edge(base)
    try:
        server.start([app.upstream() for app in apps])
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


_clients = iter(range(1, 1 << 16))


def client() -> str:
    """A client address no other test used: a rate limit's counters of its own."""
    number = next(_clients)
    return f"198.18.{number >> 8}.{number & 0xFF}"


# --- The deploy's live-path gate ------------------------------------------------------------------

def gate_task() -> dict:
    """The gate task of playbooks/tasks/switch-edges.yml, as the deploy runs it."""
    tasks = yaml.safe_load((ROOT / "playbooks" / "tasks" / "switch-edges.yml").read_text())
    block = next(task for task in tasks if "block" in task)
    return next(task for task in block["block"] if "chajipoa.platform.health_gate" in task)


def run_gate(edge: Edge, servers: list[dict]) -> tuple[int, str]:
    run = ansible([{"hosts": "localhost", "gather_facts": False, "vars": {
        "_deploy_edges": ["localhost"], "_deploy_edge_status_socket": str(edge.socket), "deploy_switch_to": servers,
        "_deploy_gate": {"consecutive": 2, "interval": 0.2, "deadline": 6, "window": 5,
                         "thresholds": {"p95_ms": 2000, "p99_ms": 3000, "error_percent": 0}},
        "_deploy_live_fail_after": 2}, "tasks": [gate_task()]}], edge.base)
    try:
        result = json.loads(run.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (json.JSONDecodeError, KeyError, IndexError):
        pytest.fail(f"ansible-playbook gave no result (rc {run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-2000:]}")
    messages = [item.get("msg", "") for item in result.get("results", [result])]
    return run.returncode, " | ".join(messages)


@pytest.fixture
def switched(edge, apps):
    """Switches the edge to the servers given for one test, and back to the apps afterwards."""
    yield edge.switch
    for app in apps:
        app.healthy = True
    edge.switch([app.upstream() for app in apps])


def test_the_gate_passes_when_every_switched_server_is_healthy(edge, apps, switched):
    rc, message = run_gate(edge, [app.upstream() for app in apps])
    assert rc == 0, message


@pytest.mark.parametrize("fault", ["unreachable", "unhealthy"])
def test_the_gate_fails_when_one_switched_server_of_two_is_down(edge, apps, switched, fault):
    """nginx's /api/health passes a request on to the other server when one refuses it or answers
    503, so the pooled live path answers healthy: the gate must ask each server itself."""
    healthy, broken = apps
    if fault == "unhealthy":
        broken.healthy = False
        target = broken.upstream()
    else:
        target = {"name": "nothing", "address": "127.0.0.1", "port": free_port()}
    servers = [target, healthy.upstream()]
    switched(servers)
    rc, message = run_gate(edge, servers)
    assert rc != 0, message
    assert f"{target['address']}:{target['port']}" in message, message


def test_the_status_socket_proxies_only_to_the_servers_it_has(edge, apps):
    """The per-server check is no open proxy: a server the workers do not proxy to is refused."""
    assert edge.status(f"/servers/127.0.0.1:{free_port()}/api/health")[0] == 404
    status, body = edge.status(f"/servers/{apps[0].address}/api/health")
    assert (status, json.loads(body)) == (200, {"status": "healthy"})


# --- Rate limits ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/api/auth/login",
    "/api/AUTH/login",             # Express routes paths whatever their case
    "/API/Auth/LOGIN",
    "/api/auth/login/",            # and with a trailing slash
    "//api/auth/login",
    "/api//auth/login",
    "/api/auth/%6Cogin",           # percent-encoded letters
    "/api/auth/%4Cogin",           # ... of the other case
    "/api/auth/REGISTER",
    "/api/Payments/initiate",
])
def test_a_limited_route_is_limited_however_it_is_spelt(edge, apps, path):
    address = client()
    received = sum(len(app.requests) for app in apps)
    statuses = [edge.request(path, address, method="POST") for _attempt in range(RATE_BURST + 3)]
    # The first request and the burst pass, then 429s, and none of those reach the app.
    assert statuses[:RATE_BURST + 1] == [200] * (RATE_BURST + 1), statuses
    assert statuses[RATE_BURST + 1:] == [429, 429], statuses
    assert sum(len(app.requests) for app in apps) == received + RATE_BURST + 1


def test_the_spellings_of_a_route_share_its_limit(edge):
    address = client()
    statuses = [edge.request(path, address, method="POST") for path in ("/api/auth/login", "/api/AUTH/login", "/Api/auth/Login")]
    assert statuses == [200, 200, 200]
    assert edge.request("/API/AUTH/LOGIN", address, method="POST") == 429


def test_an_unlisted_route_is_not_limited(edge):
    address = client()
    assert [edge.request("/api/market", address) for _attempt in range(RATE_BURST + 3)] == [200] * (RATE_BURST + 3)


# --- Maintenance ----------------------------------------------------------------------------------

@pytest.fixture
def maintenance(edge):
    edge.flag.touch()
    yield
    edge.flag.unlink()


@pytest.mark.parametrize("path", [
    "/api/rentals/1",
    "/api/rentals/x%2F..%2F..%2Fhealth",   # nginx decodes and resolves it to /api/health, the app does not
    "/api/rentals/x/../../health",
    "/api/rentals/%2e%2e/../health",
    "//api/health",
    "/api//health",
    "/api/health/",
    "/API/health",
    "/api/%68ealth",
    "/api/health%2F",
    "/",
])
def test_during_maintenance_only_api_health_as_the_app_sees_it_gets_through(edge, apps, maintenance, path):
    for app in apps:
        app.requests.clear()
    assert edge.request(path, client()) == 503
    assert [request for app in apps for request in app.requests] == []
    assert edge.request("/api/health?from=operators", client()) == 200
    assert [request for app in apps for request in app.requests] == [("GET", "/api/health?from=operators")]
