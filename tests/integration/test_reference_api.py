"""The reference API's own tests (apps/reference-api, `npm test`) against a real PostgreSQL and a
real Redis, and the Redis test server they stand on.

The API's dependencies are installed with `npm ci` from its lockfile once per lockfile, into a
cache directory (~/.cache/chajipoa, or $XDG_CACHE_HOME), and the app's sources are copied next to
them in a temporary directory, so the checkout stays clean and a rerun costs no install. The Node
tests stop, kill and restart Redis through REDIS_CONTROL_URL, a small HTTP server in this process
that drives the RedisServer fixture.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ansible_collections.chajipoa.platform.plugins.module_utils.pg_scratch import give_to_server_user
from tests.pgserver import PostgresServer
from tests.redisserver import RedisError, RedisServer, make_tls_files

APP = Path(__file__).resolve().parents[2] / "apps" / "reference-api"
# Behind a TLS-intercepting proxy the machine trusts the proxy's CA in the system store; Debian's
# node reads that store, an upstream build (NodeSource, nvm) reads only its own bundle unless told.
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
NPM_TIMEOUT = 600
# Fewer and the suite lost tests without failing: the count npm test reports must not drop below it.
MIN_NODE_TESTS = 53


# Only these reach npm and the API: a developer's own DATABASE_URL, MONGODB_URL, NODE_ENV, PG* ...
# must not change what the tests run against.
PASSED_ENV = {"PATH", "HOME", "USER", "LANG", "TMPDIR", "NODE_EXTRA_CA_CERTS",
              "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"}
PASSED_ENV_PREFIXES = ("LC_", "npm_config_", "NPM_CONFIG_")


def _node_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k in PASSED_ENV or k.startswith(PASSED_ENV_PREFIXES)}
    if "NODE_EXTRA_CA_CERTS" not in env and Path(SYSTEM_CA_BUNDLE).exists():
        env["NODE_EXTRA_CA_CERTS"] = SYSTEM_CA_BUNDLE
    return env


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} not found: the reference API's tests need Node.js 18+ and npm; run "
                    "lab/test-deps.sh as root (or `make integration`, which runs it)", pytrace=False)
    return path


def _installed_modules() -> Path:
    """node_modules for the app's lockfile, installed by `npm ci` unless an earlier run did."""
    npm = _require("npm")
    lock = (APP / "package-lock.json").read_bytes()
    cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "chajipoa"
    target = cache_root / f"reference-api-{hashlib.sha256(lock + (APP / 'package.json').read_bytes()).hexdigest()[:16]}"
    if (target / "node_modules").is_dir():
        return target / "node_modules"
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = cache_root / f".{target.name}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(APP / name, staging / name)
    result = subprocess.run([npm, "ci", "--omit=dev", "--no-audit", "--no-fund"], cwd=staging, env=_node_env(),
                            capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        pytest.fail(f"npm ci failed ({result.returncode}):\n{result.stdout}{result.stderr}", pytrace=False)
    try:
        # Whole or not at all: an interrupted install never passes for a finished one.
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another run finished first; its copy serves
    return target / "node_modules"


@pytest.fixture(scope="module")
def app_copy(tmp_path_factory) -> Path:
    """The app's sources in a temporary directory, with the cached node_modules linked in."""
    modules = _installed_modules()
    copy = tmp_path_factory.mktemp("reference-api")
    shutil.copytree(APP, copy, dirs_exist_ok=True, ignore=shutil.ignore_patterns("node_modules"))
    (copy / "node_modules").symlink_to(modules, target_is_directory=True)
    return copy


@pytest.fixture
def api_database(pg_server):
    name = f"reference_api_{uuid.uuid4().hex[:8]}"
    pg_server.create_database(name)
    yield f"postgresql://{pg_server.user}:{pg_server.password}@{pg_server.host}:{pg_server.port}/{name}"
    pg_server.drop_database(name)


class _RedisControl(BaseHTTPRequestHandler):
    """POST /stop, /kill or /start: the RedisServer of the server's `redis` attribute."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        action = self.path.strip("/")
        if action not in ("stop", "kill", "start"):
            self.send_error(404)
            return
        try:
            getattr(self.server.redis, action)()
        except Exception as exc:  # the Node test prints the reason with the status
            self.send_error(500, str(exc))
            return
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        """Quiet: the Node test reports what it asked for."""


@pytest.fixture
def redis_control(redis_server):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RedisControl)
    server.redis = redis_server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_reference_api_npm_test(app_copy, api_database, redis_server, redis_control):
    env = {**_node_env(), "DATABASE_URL": api_database, **redis_server.env(), "REDIS_CONTROL_URL": redis_control,
           # The metrics test checks the names against the contract, which the app's copy lacks.
           "MONITORING_DOC": str(APP.parents[1] / "docs" / "monitoring.md")}
    started = time.monotonic()
    result = subprocess.run([_require("npm"), "test"], cwd=app_copy, env=env, capture_output=True, text=True,
                            timeout=NPM_TIMEOUT, check=False)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        pytest.fail(f"npm test failed ({result.returncode}) after {time.monotonic() - started:.1f} s:\n{output}",
                    pytrace=False)
    summary = dict(re.findall(r"^# (tests|pass|fail|skipped|cancelled) (\d+)$", result.stdout, re.MULTILINE))
    assert summary.get("fail") == "0" and summary.get("cancelled") == "0", output
    # A skipped test is one that could not fail: the Redis outage tests skip without REDIS_CONTROL_URL.
    assert summary.get("skipped") == "0", output
    assert int(summary.get("tests", 0)) >= MIN_NODE_TESTS, output
    assert summary["tests"] == summary["pass"], output
    assert redis_server.running, "the outage tests left Redis running"


def test_redis_server_is_tls_only_with_an_acl_user(redis_server: RedisServer):
    assert redis_server.command("ACL", "WHOAMI") == b"chajipoa"
    assert redis_server.command("CONFIG", "GET", "port") == [b"port", b"0"]
    # Plain TCP on the TLS port: the server drops the connection without a Redis reply.
    with socket.create_connection((redis_server.host, redis_server.port), timeout=5) as plain:
        plain.sendall(b"PING\r\n")
        plain.settimeout(5)
        try:
            reply = plain.recv(64)
        except (ConnectionResetError, TimeoutError):
            reply = b""
        assert not reply.startswith(b"+PONG")
    # A client that does not trust the server's CA is refused by its own verification.
    with socket.create_connection((redis_server.host, redis_server.port), timeout=5) as raw, \
            pytest.raises(ssl.SSLCertVerificationError):
        ssl.create_default_context().wrap_socket(raw, server_hostname=redis_server.host)
    # The default user is off; a wrong password is refused.
    with pytest.raises(RedisError, match="WRONGPASS"):
        redis_server.command("PING", user="default", password="")
    with pytest.raises(RedisError, match="WRONGPASS"):
        redis_server.command("PING", password="wrong")


def test_redis_server_stops_and_comes_back_on_the_same_port(redis_server: RedisServer):
    port = redis_server.port
    redis_server.command("SET", "k", "v")
    for take_away in (redis_server.stop, redis_server.kill):
        take_away()
        assert not redis_server.running
        with pytest.raises(ConnectionRefusedError):
            redis_server.command("PING")
        redis_server.start()
        assert redis_server.port == port
        assert redis_server.command("PING") == "PONG"
        # Nothing persisted: a restarted server starts empty.
        assert redis_server.command("GET", "k") is None


@pytest.fixture(scope="module")
def tls_postgres():
    """A PostgreSQL of its own serving TLS with a certificate from a throwaway CA: (server, ca_file)."""
    server = PostgresServer().start()
    try:
        tls = server.dir / "tls"
        tls.mkdir()
        files = make_tls_files(tls, stem="postgres")
        for path in (tls, *files):
            give_to_server_user(path)
        # ALTER SYSTEM takes no parameters; the paths are ours (a temporary directory), quoted anyway.
        for setting, value in (("ssl_cert_file", files[1]), ("ssl_key_file", files[2]), ("ssl", "on")):
            literal = str(value).replace("'", "''")
            server.execute(f"ALTER SYSTEM SET {setting} = '{literal}'")
        server.execute("SELECT pg_reload_conf()")
        yield server, files[0]
    finally:
        server.stop()


# The pool the API builds from DATABASE_URL, asked whether its connection is encrypted.
POOL_PROBE = """
const { database } = require('./src/config');
const { createPool } = require('./src/db');
const pool = createPool(database(process.env));
pool.query('SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()').then(
  (r) => { console.log(JSON.stringify(r.rows[0])); return pool.end(); },
  (e) => { console.log(JSON.stringify({ error: e.message })); process.exit(1); });
"""


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_database_url_verify_full_against_the_ca(app_copy, tls_postgres, tmp_path, host):
    server, ca_file = tls_postgres
    other_ca = make_tls_files(tmp_path)[0]

    def probe(ca: Path) -> subprocess.CompletedProcess:
        # As the app role renders it, the guide's pool parameters included.
        url = (f"postgresql://{server.user}:{server.password}@{host}:{server.port}/postgres"
               f"?sslmode=verify-full&sslrootcert={ca}&connection_limit=5&pool_timeout=5")
        return subprocess.run([_require("node"), "-e", POOL_PROBE], cwd=app_copy, env={**_node_env(), "DATABASE_URL": url},
                              capture_output=True, text=True, timeout=60, check=False)

    trusted = probe(ca_file)
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert '"ssl":true' in trusted.stdout and '"version":"TLSv1.3"' in trusted.stdout
    untrusted = probe(other_ca)
    assert untrusted.returncode == 1, untrusted.stdout + untrusted.stderr
    assert "certificate" in untrusted.stdout, untrusted.stdout
