"""A stand-in for Sentry's release API on 127.0.0.1, recording every call (a real Sentry cannot run here).

No pytest in here, so a molecule test or a benchmark can use it too:

    from tests.sentry_standin import SentryStandin
    with SentryStandin() as sentry:
        run deploy.yml with -e deploy_sentry_url={sentry.url} -e deploy_sentry_token=...
    assert [(call.method, call.path) for call in sentry.calls] == [("POST", "/api/0/organizations/acme/releases/"), ...]

It answers the two calls a deploy makes the way Sentry documents them: creating a release
(POST /api/0/organizations/<org>/releases/, body {version, projects, ...}: 201 with the release) and
recording a deploy of it (POST /api/0/organizations/<org>/releases/<version>/deploys/, body
{environment, ...}: 201 with the deploy). A release created twice answers 208, as Sentry does for
one that exists. A call without `Authorization: Bearer <token>` answers 401; anything else 404.
Each call is kept, answered or not: method, path, Authorization header, JSON body, status.
"""
from __future__ import annotations

import http.server
import json
import re
import threading
from dataclasses import dataclass
from typing import Any

RELEASES = re.compile(r"^/api/0/organizations/(?P<org>[^/]+)/releases/$")
DEPLOYS = re.compile(r"^/api/0/organizations/(?P<org>[^/]+)/releases/(?P<version>[^/]+)/deploys/$")
STAMP = "2026-12-02T00:00:00.000000Z"


@dataclass
class Call:
    method: str
    path: str
    authorization: str | None
    body: Any
    status: int


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        status, answer = self.server.owner.answer(self.path, self.headers.get("Authorization"), body)
        self.server.owner.record(Call("POST", self.path, self.headers.get("Authorization"), body, status))
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self.server.owner.record(Call("GET", self.path, self.headers.get("Authorization"), None, 404))
        self.send_error(404)

    def log_message(self, *args) -> None:
        """Quiet: a test's output is its assertions."""


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: SentryStandin


class SentryStandin:
    def __init__(self, token: str = "sentry-standin-token") -> None:
        self.token = token
        self.calls: list[Call] = []
        self.releases: dict[tuple[str, str], dict] = {}
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def answer(self, path: str, authorization: str | None, body: Any) -> tuple[int, dict]:
        if authorization != f"Bearer {self.token}":
            return 401, {"detail": "Authentication credentials were not provided."}
        if not isinstance(body, dict):
            return 400, {"detail": "a JSON object is required"}
        if match := RELEASES.match(path):
            if not body.get("version") or not isinstance(body.get("projects"), list):
                return 400, {"version": ["This field is required."], "projects": ["This field is required."]}
            key = (match["org"], body["version"])
            with self._lock:
                existed = key in self.releases
                release = self.releases.setdefault(key, {
                    "version": body["version"], "dateCreated": STAMP, "dateReleased": None,
                    "projects": [{"slug": slug, "name": slug} for slug in body["projects"]],
                    "ref": body.get("ref"), "url": body.get("url"), "deployCount": 0})
            return (208 if existed else 201), release
        if match := DEPLOYS.match(path):
            with self._lock:
                release = self.releases.get((match["org"], match["version"]))
                if release is None:
                    return 404, {"detail": "The requested resource does not exist"}
                if not body.get("environment"):
                    return 400, {"environment": ["This field is required."]}
                release["deployCount"] += 1
                deploy_id = str(release["deployCount"])
            return 201, {"id": deploy_id, "environment": body["environment"], "name": body.get("name"),
                         "url": body.get("url"), "dateStarted": body.get("dateStarted"), "dateFinished": STAMP}
        return 404, {"detail": "The requested resource does not exist"}

    def start(self) -> SentryStandin:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SentryStandin:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
