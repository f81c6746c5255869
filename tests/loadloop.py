"""A request loop: client threads GET one URL again and again until stopped, and every failure is kept.

Standard library only and one file, so it runs on the controller or, copied, with any host's python3:

    from tests.loadloop import RequestLoop
    with RequestLoop("https://molecule.chajipoa.lan/api/version", address="172.18.0.4", ca_file=ca) as loop:
        ...                                      # deploy, switch, roll back
    report = loop.report                         # requests, failures (with details), latencies, versions
    assert report.failures == [], report.failures[:5]

    python3 loadloop.py URL --duration 10 [--clients 6] [--address IP[:PORT]] [--ca-file CA]   # JSON report

Half the clients (`keepalive`) keep one connection open across requests, as a browser or a proxy
does; the others open a new connection (TCP, TLS) per request, as a script does. A failure is any
answer outside 2xx, a reset, a refused or timed-out connection, a TLS error, each with the time,
client and cause. One thing is not a failure, as in browsers and urllib3 (RFC 9112 9.3.1): a kept-
alive connection the server closed before any byte of the answer (nginx closes idle ones on a
graceful reload) is reopened and the GET sent again once; such retries are counted apart in
`retries`, and a retry that fails too is a failure.

`address` sends the requests to another address than the URL's host (curl's --resolve): the URL's
host stays the Host header and the TLS name, e.g. the edge container's IP for the platform's domain.
A JSON answer's `version` field is tallied per version with when it was first and last seen, and
each answer whose version differs from the answer before it is kept in `changes` (time, version),
so a caller sees when a release started to serve again, and that the old one stopped.
"""
from __future__ import annotations

import argparse
import http.client
import json
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

# An answer larger than this is not a health or version answer; only so much is read and parsed.
MAX_BODY = 1 << 16


@dataclass
class Failure:
    at: float
    client: int
    keepalive: bool
    error: str


@dataclass
class Seen:
    count: int
    first: float
    last: float


@dataclass
class Report:
    """What the loop saw; times are seconds since the loop started."""

    elapsed: float = 0.0
    requests: int = 0
    retries: int = 0
    failures: list[Failure] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    versions: dict[str, Seen] = field(default_factory=dict)
    changes: list[tuple[float, str]] = field(default_factory=list)

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Report:
        return cls(elapsed=data["elapsed"], requests=data["requests"], retries=data["retries"],
                   failures=[Failure(**item) for item in data["failures"]], latencies_ms=data["latencies_ms"],
                   versions={key: Seen(**value) for key, value in data["versions"].items()},
                   changes=[tuple(change) for change in data["changes"]])

    def first_after(self, version: str, since: float) -> float | None:
        """When `version` first answered at or after `since` (seconds since the start), or None."""
        return next((at for at, seen in self.changes if seen == version and at >= since), None)

    def summary(self) -> dict:
        """Requests, failures, requests/s and latency percentiles, by the health gate's own statistics
        (imported here: only a caller with the collection on its path summarises)."""
        from ansible_collections.chajipoa.platform.plugins.module_utils.health_stats import percentile
        return {"requests": self.requests, "failures": len(self.failures), "retries": self.retries,
                "requests_per_second": round(self.requests_per_second, 1),
                **{f"p{q}_ms": round(percentile(self.latencies_ms, q) or 0.0, 2) for q in (50, 95, 99)},
                "versions": {version: seen.count for version, seen in self.versions.items()}}


class _Closed(Exception):
    """A kept-alive connection the server had closed before answering: reopen and send again."""


class RequestLoop:
    def __init__(self, url: str, clients: int = 6, keepalive: int | None = None, address: str | None = None,
                 ca_file: str | None = None, timeout: float = 5.0, pause: float = 0.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Cannot loop on {url!r}: expected an http:// or https:// URL with a host")
        self.url = url
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connect_host, _colon, connect_port = (address or "").partition(":")
        self.connect_to = (connect_host or self.host, int(connect_port) if connect_port else self.port)
        self.clients = clients
        self.keepalive = clients // 2 if keepalive is None else keepalive
        self.timeout = timeout
        self.pause = pause
        self.context = ssl.create_default_context(cafile=ca_file) if self.https else None
        self.report = Report()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._start = 0.0

    # -- running ----------------------------------------------------------------------------------
    def start(self) -> RequestLoop:
        self._start = time.perf_counter()
        self._threads = [threading.Thread(target=self._client, args=(number, number < self.keepalive), daemon=True)
                         for number in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> Report:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        self.report.elapsed = self.now()
        return self.report

    def __enter__(self) -> RequestLoop:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def now(self) -> float:
        return time.perf_counter() - self._start

    def wait_for(self, condition: Callable[[Report], bool], timeout: float) -> bool:
        """Whether `condition(report)` held within `timeout` seconds (checked every 50 ms)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if condition(self.report):
                    return True
            time.sleep(0.05)
        return False

    # -- one client -------------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        # Host header and TLS name from the URL, the socket to connect_to (curl's --resolve).
        if self.context is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                                           context=self.context)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        target, timeout = self.connect_to, self.timeout
        conn._create_connection = lambda _address, _timeout=None, source=None: socket.create_connection(  # noqa: SLF001
            target, timeout, source)
        return conn

    def _get(self, conn: http.client.HTTPConnection, reused: bool) -> tuple[int, bytes, bool]:
        """One GET: status, body and whether the server keeps the connection open."""
        try:
            conn.request("GET", self.path, headers={"Accept": "application/json"})
            response = conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
            # Nothing of an answer arrived on a connection that had served before: the server had
            # closed it while idle. Any other failure is the request's own.
            if reused:
                raise _Closed(error) from error
            raise
        body = response.read(MAX_BODY)
        return response.status, body, not response.will_close

    def _client(self, number: int, keepalive: bool) -> None:
        conn: http.client.HTTPConnection | None = None
        reused = False
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                if conn is None:
                    conn, reused = self._connection(), False
                try:
                    status, body, open_ = self._get(conn, reused)
                except _Closed:
                    conn.close()
                    with self._lock:
                        self.report.retries += 1
                    conn, reused = self._connection(), False
                    status, body, open_ = self._get(conn, reused)
                if not (keepalive and open_):
                    conn.close()
                    conn = None
                else:
                    reused = True
                error = None if 200 <= status < 300 else f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}"
            except (OSError, http.client.HTTPException, ssl.SSLError) as failure:
                error = f"{type(failure).__name__}: {failure}" if str(failure) else type(failure).__name__
                body = b""
                if conn is not None:
                    conn.close()
                conn = None
            self._record(number, keepalive, started, error, body)
            if self.pause:
                self._stop.wait(self.pause)
        if conn is not None:
            conn.close()

    def _record(self, number: int, keepalive: bool, started: float, error: str | None, body: bytes) -> None:
        ended = time.perf_counter()
        version = None
        if error is None and body[:1] == b"{":
            try:
                version = json.loads(body).get("version")
            except ValueError:
                version = None
        with self._lock:
            report = self.report
            report.requests += 1
            report.latencies_ms.append((ended - started) * 1000)
            at = ended - self._start
            if error is not None:
                report.failures.append(Failure(at=round(at, 3), client=number, keepalive=keepalive, error=error))
            elif isinstance(version, str):
                if not report.changes or report.changes[-1][1] != version:
                    report.changes.append((at, version))
                seen = report.versions.get(version)
                if seen is None:
                    report.versions[version] = Seen(count=1, first=at, last=at)
                else:
                    seen.count += 1
                    seen.last = at


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GET a URL from several clients for a while; print a JSON report.")
    parser.add_argument("url")
    parser.add_argument("--duration", type=float, required=True, help="seconds to run")
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--keepalive", type=int, help="clients keeping their connection open (default half)")
    parser.add_argument("--address", help="connect to this IP[:port] instead of the URL's host")
    parser.add_argument("--ca-file")
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    loop = RequestLoop(args.url, clients=args.clients, keepalive=args.keepalive, address=args.address,
                       ca_file=args.ca_file, timeout=args.timeout).start()
    time.sleep(args.duration)
    json.dump(loop.stop().as_dict(), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
