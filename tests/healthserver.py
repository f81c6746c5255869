"""A health endpoint on 127.0.0.1, served from a thread, whose answers a test or benchmark chooses.

No pytest in here, so a benchmark can use it too:

    from tests.healthserver import HealthServer
    with HealthServer(mode="flapping") as server:
        urllib.request.urlopen(server.url())   # 200, then 503, then 200 ...

Modes (the `mode` attribute, changeable while it runs):
  healthy     200 and the reference API's healthy answer
  unhealthy   503 and its unhealthy answer (redis down)
  flapping    healthy and unhealthy in turn, request by request
  degraded    200 "healthy" but checks.postgres.status "down" (a JSON expectation must catch it)
  slow        the healthy answer after `delay` seconds
Every answer carries the header X-App-Version. With tls=(cert, key) it serves HTTPS; with
unix_socket=<path> it listens on that unix socket instead of a loopback port (as the edge's status
server does). `headers` holds the last request's headers (`host` its Host header).
It speaks HTTP/1.1 and keeps connections open (`connections` counts those accepted); with
`drop_kept_alive` set it closes each connection after its answer without saying so, as a server
closing idle kept-alive connections does (a client's next request on it finds it closed).
"""
from __future__ import annotations

import http.server
import json
import socketserver
import ssl
import sys
import threading
import time
from pathlib import Path

VERSION = "1.4.2"
MODES = ("healthy", "unhealthy", "flapping", "degraded", "slow")


def health_body(postgres: str = "up", redis: str = "up") -> dict:
    """The reference API's /api/health answer (contract point 1) with the given dependency states."""
    def check(state: str) -> dict:
        return {"status": "up", "latency_ms": 1} if state == "up" else {"status": "down", "error": "connect ECONNREFUSED"}

    healthy = postgres == redis == "up"
    return {"status": "healthy" if healthy else "unhealthy", "timestamp": "2026-12-02T01:00:00.000Z",
            "version": VERSION, "checks": {"postgres": check(postgres), "redis": check(redis)}}


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Buffered, flushed once per answer: headers and body in one segment, or Nagle's algorithm and
    # the client's delayed ACK hold each kept-alive answer 40 ms.
    wbufsize = -1

    def setup(self) -> None:
        super().setup()
        self.server.owner.connected()

    def _answer(self, with_body: bool) -> None:
        self.server.owner.headers = dict(self.headers)
        status, body = self.server.owner.next_answer()
        # Compact, as Express's res.json() writes it.
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-App-Version", VERSION)
        self.end_headers()
        if with_body:
            self.wfile.write(data)
        if self.server.owner.drop_kept_alive:
            self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        self._answer(True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(False)

    def log_message(self, *args) -> None:
        """Quiet: a test's output is its assertions."""


class _Quiet:
    owner: HealthServer

    def handle_error(self, request, client_address) -> None:
        # A client that hung up first (a probe past its timeout, a refused certificate) is the
        # client's business; anything else is a fault of this server, printed as usual.
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError)):
            super().handle_error(request, client_address)  # type: ignore[misc]


class _Server(_Quiet, http.server.ThreadingHTTPServer):
    daemon_threads = True


# HTTPServer's bind wants a (host, port) address; a unix socket has a path.
class _UnixServer(_Quiet, socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


class HealthServer:
    def __init__(self, mode: str = "healthy", delay: float = 0.3, tls: tuple[Path, Path] | None = None,
                 unix_socket: Path | None = None) -> None:
        self.mode = mode
        self.delay = delay
        self.requests = 0
        self.connections = 0
        self.drop_kept_alive = False
        self.headers: dict[str, str] = {}
        self.unix_socket = unix_socket
        self._lock = threading.Lock()
        self._server: socketserver.BaseServer = (_UnixServer(str(unix_socket), _Handler) if unix_socket
                                                 else _Server(("127.0.0.1", 0), _Handler))
        self._server.owner = self
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self.port = None if unix_socket else self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def host(self) -> str | None:
        return self.headers.get("Host")

    def url(self, path: str = "/api/health") -> str:
        """With a unix socket the host is only the Host header: localhost, as for the edge's status server."""
        return f"{self.scheme}://localhost{path}" if self.unix_socket else f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def connected(self) -> None:
        with self._lock:
            self.connections += 1

    def next_answer(self) -> tuple[int, dict]:
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        with self._lock:
            self.requests += 1
            count = self.requests
        if self.mode == "slow":
            time.sleep(self.delay)
        if self.mode == "unhealthy" or (self.mode == "flapping" and count % 2 == 0):
            return 503, health_body(redis="down")
        if self.mode == "degraded":
            return 200, {**health_body(postgres="down"), "status": "healthy"}
        return 200, health_body()

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self.unix_socket:
            self.unix_socket.unlink(missing_ok=True)

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
