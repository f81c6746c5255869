# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""The health gate's probes (http, tcp, postgres, redis, mongodb) and its rounds.

Each probe is read-only: an HTTP GET or HEAD, a TCP connect, one statement inside a READ ONLY
transaction (never a second one, which could run after a COMMIT), a Redis PING, a MongoDB ping.
The standard library serves http, tcp and redis (RESP spoken over a socket, TLS from the ssl
module, so no redis-py is needed on the host); postgres takes psycopg (3) or psycopg2, whichever
imports, and mongodb takes pymongo.
"""
from __future__ import annotations

import http.client
import json
import math
import numbers
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ansible_collections.chajipoa.platform.plugins.module_utils.health_stats import Sample, Thresholds, Window, judge

KINDS = ("http", "tcp", "postgres", "redis", "mongodb")
# Options every check takes, whatever its kind.
COMMON_OPTIONS = frozenset({"name", "kind", "timeout", "thresholds"})
# The options of each kind, with the defaults applied when a check leaves them out (None: none).
KIND_OPTIONS: dict[str, dict[str, Any]] = {
    "http": {"url": None, "method": "GET", "status": [200], "headers": {}, "expect_json": {}, "expect_headers": {},
             "validate_certs": True, "ca_file": None, "unix_socket": None},
    "tcp": {"host": None, "port": None},
    "postgres": {"host": "127.0.0.1", "port": 5432, "database": "postgres", "user": None, "password": None,
                 "sslmode": "prefer", "ca_file": None, "query": "SELECT 1", "expect": None},
    "redis": {"host": "127.0.0.1", "port": 6379, "user": None, "password": None, "tls": False,
              "validate_certs": True, "ca_file": None},
    "mongodb": {"host": "127.0.0.1", "port": 27017, "user": None, "password": None, "database": "admin",
                "tls": False, "validate_certs": True, "ca_file": None},
}
REQUIRED: dict[str, tuple[str, ...]] = {"http": ("url",), "tcp": ("host", "port")}
HTTP_METHODS = ("GET", "HEAD")
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
DEFAULT_TIMEOUT = 5.0
# A health answer is small; more than this is read no further (a JSON expectation then fails).
MAX_BODY = 1 << 20
# No probe is given less, even right at the deadline: a connect needs a moment to fail usefully.
MIN_TIMEOUT = 0.1


class CheckFailed(Exception):
    """A probe's negative answer; its text is the sample's error."""


class CheckUnusable(ValueError):
    """A check that cannot run at all (bad options, a missing driver): the gate fails before any round."""


# -- values ---------------------------------------------------------------------------------------
def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (Mapping, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def same_value(actual: Any, expected: Any) -> bool:
    """Numbers compare as numbers (1 and 1.0, a numeric column and 7); everything else as text,
    with booleans as true/false and None as null, so `expect: false` matches PostgreSQL's f and
    JSON's false alike. A boolean never equals a number."""
    if all(isinstance(v, numbers.Number) and not isinstance(v, bool) for v in (actual, expected)):
        return actual == expected
    return _text(actual) == _text(expected)


def json_path(document: Any, path: str) -> Any:
    """The value at a dotted path: keys of objects, decimal indexes of arrays (`checks.postgres.status`,
    `items.0.id`). A key holding a dot cannot be addressed."""
    node = document
    walked = []
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            where = ".".join(walked) or "the top level"
            raise CheckFailed(f"{path}: no {part!r} at {where} of the answer")
        walked.append(part)
    return node


def _excerpt(body: bytes, size: int = 300) -> str:
    text = body.decode("utf-8", "replace").strip().replace("\n", " ")
    return text if len(text) <= size else text[:size] + "..."


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def describe_error(error: BaseException, timeout: float) -> str:
    """A one-line cause for a failed probe."""
    if isinstance(error, CheckFailed):
        return str(error)
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {error.verify_message or _first_line(error)}"
    if isinstance(error, (TimeoutError, socket.timeout)):
        return f"timed out after {timeout:g} s"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return f"{type(error).__name__}: {_first_line(error)}"


def tls_context(validate_certs: bool, ca_file: str | None, what: str) -> ssl.SSLContext:
    """A client context that verifies the server (against ca_file when given) unless told not to."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as error:
        raise CheckUnusable(f"Cannot use {what}.ca_file {ca_file}: {_first_line(error)}") from error
    if not validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


# -- probes ---------------------------------------------------------------------------------------
class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP (or HTTPS, given a context) over a unix socket; `host` is only the Host header and the
    name a certificate is verified against. http.client's own connect would set TCP options a unix
    socket refuses."""

    def __init__(self, socket_path: str, host: str, port: int | None, timeout: float,
                 context: ssl.SSLContext | None = None) -> None:
        super().__init__(host, port, timeout=timeout)
        self.socket_path = socket_path
        self.context = context

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except FileNotFoundError:
            sock.close()
            raise CheckFailed(f"no socket at {self.socket_path}") from None
        except BaseException:
            sock.close()
            raise
        self.sock = self.context.wrap_socket(sock, server_hostname=self.host) if self.context else sock


@dataclass
class HttpProbe:
    url: str
    method: str
    status: list[int]
    headers: dict[str, str]
    expect_json: dict[str, Any]
    expect_headers: dict[str, str]
    context: ssl.SSLContext | None
    unix_socket: str | None = None

    @property
    def target(self) -> str:
        return f"{self.method} {self.url}" + (f" via {self.unix_socket}" if self.unix_socket else "")

    def __call__(self, timeout: float) -> None:
        parts = urlsplit(self.url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if self.unix_socket:
            conn = UnixHTTPConnection(self.unix_socket, parts.hostname, parts.port, timeout, self.context)
        elif self.context is None:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        else:
            conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=self.context)
        try:
            conn.request(self.method, path, headers=self.headers)
            response = conn.getresponse()
            body = response.read(MAX_BODY)
        finally:
            conn.close()
        if response.status not in self.status:
            expected = " or ".join(map(str, self.status))
            raise CheckFailed(f"HTTP {response.status}, expected {expected}" + (f": {_excerpt(body)}" if body else ""))
        for name, expected in self.expect_headers.items():
            actual = response.getheader(name)
            if actual is None:
                raise CheckFailed(f"header {name} missing, expected {expected!r}")
            if actual != expected:
                raise CheckFailed(f"header {name} is {actual!r}, expected {expected!r}")
        if self.expect_json:
            try:
                document = json.loads(body)
            except ValueError:
                raise CheckFailed(f"the answer is not JSON: {_excerpt(body)!r}") from None
            for path, expected in self.expect_json.items():
                actual = json_path(document, path)
                if not same_value(actual, expected):
                    raise CheckFailed(f"{path} is {_text(actual)!r}, expected {_text(expected)!r}")


@dataclass
class TcpProbe:
    host: str
    port: int

    @property
    def target(self) -> str:
        return f"tcp {self.host}:{self.port}"

    def __call__(self, timeout: float) -> None:
        socket.create_connection((self.host, self.port), timeout=timeout).close()


def _postgres_driver():
    """psycopg (3) or psycopg2: both are DB-API 2 modules taking libpq's keywords in connect()."""
    try:
        import psycopg as driver
    except ImportError:
        try:
            import psycopg2 as driver
        except ImportError:
            raise CheckUnusable("Cannot probe postgres: neither psycopg nor psycopg2 is installed "
                                "(Debian: python3-psycopg2)") from None
    return driver


@dataclass
class PostgresProbe:
    host: str
    port: int
    database: str
    user: str | None
    password: str | None
    sslmode: str
    ca_file: str | None
    query: str
    expect: Any
    driver: Any = field(repr=False, default=None)

    @property
    def target(self) -> str:
        return f"postgres {self.user or ''}{'@' if self.user else ''}{self.host}:{self.port}/{self.database}"

    def __call__(self, timeout: float) -> None:
        params = {"host": self.host, "port": self.port, "dbname": self.database, "user": self.user,
                  "password": self.password, "sslmode": self.sslmode, "sslrootcert": self.ca_file,
                  # libpq counts whole seconds (and treats 1 as 2).
                  "connect_timeout": max(1, math.ceil(timeout)), "application_name": "chajipoa-health-gate"}
        try:
            conn = self.driver.connect(**{key: value for key, value in params.items() if value is not None})
        except self.driver.Error as error:
            raise CheckFailed(f"cannot connect: {_first_line(error)}") from None
        try:
            cursor = conn.cursor()
            # Read-only whatever the query says, so the gate may run in check mode; the statement
            # timeout keeps a stuck query inside the probe's time. Both last only this transaction
            # (PgBouncer's transaction pooling keeps them to this client). set_config runs in a
            # SELECT, which takes the transaction's snapshot: after it, not even the query's own
            # SET TRANSACTION READ WRITE may make the transaction writable.
            cursor.execute("SET TRANSACTION READ ONLY")
            cursor.execute(f"SELECT set_config('statement_timeout', '{max(1, int(timeout * 1000))}', true)")
            row = self._first_row(cursor)
        except self.driver.Error as error:
            raise CheckFailed(f"query failed: {_first_line(error)}") from None
        finally:
            conn.close()
        if self.expect is not None:
            if not row:
                raise CheckFailed(f"{self.query!r} returned no row, expected {_text(self.expect)!r}")
            if not same_value(row[0], self.expect):
                raise CheckFailed(f"{self.query!r} returned {_text(row[0])!r}, expected {_text(self.expect)!r}")

    def _first_row(self, cursor) -> tuple | None:
        """The query's first row (None: no row) from one statement, which cannot leave the
        transaction: COMMIT or ROLLBACK alone ends it with nothing after, while in one string with
        a write after it they would let the write run outside (`COMMIT; CREATE TABLE ...`)."""
        if self.driver.__name__ == "psycopg2":
            # psycopg2 sends the text as it is, several statements at once; _postgres_probe
            # refused any ';' that could separate them.
            cursor.execute(self.query)
            described = cursor.description is not None
            row = cursor.fetchone() if described else None
        else:
            # stream() sends the query alone through the extended query protocol, whose Parse
            # takes a single statement (the server refuses more: "cannot insert multiple commands
            # into a prepared statement"), in an unnamed statement that PgBouncer does not keep.
            # execute() would use the simple protocol, which runs them all, even with params=().
            rows = cursor.stream(self.query)
            try:
                row = next(rows, None)
                described = True
            except self.driver.ProgrammingError as error:
                # Raised by psycopg itself (no SQLSTATE) for a statement that returns no rows.
                if getattr(error, "sqlstate", None):
                    raise
                described = False
            finally:
                rows.close()
        if not described:
            raise CheckFailed(f"{self.query!r} returns no rows: expected a query such as SELECT")
        return row


def resp_command(*args: str) -> bytes:
    """A Redis command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def resp_line(stream) -> str:
    """One reply line (AUTH and PING answer with simple strings or errors): its text with its type
    mark; raises CheckFailed when the connection closes first."""
    line = stream.readline(4096)
    if not line.endswith(b"\r\n"):
        raise CheckFailed("Redis closed the connection without an answer")
    return line[:-2].decode("utf-8", "replace")


@dataclass
class RedisProbe:
    host: str
    port: int
    user: str | None
    password: str | None
    context: ssl.SSLContext | None

    @property
    def target(self) -> str:
        scheme = "rediss" if self.context else "redis"
        return f"{scheme}://{self.user + '@' if self.user else ''}{self.host}:{self.port}"

    def __call__(self, timeout: float) -> None:
        raw = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            conn = self.context.wrap_socket(raw, server_hostname=self.host) if self.context else raw
            with conn, conn.makefile("rb") as stream:
                auth = () if self.password is None else (
                    ("AUTH", self.user, self.password) if self.user else ("AUTH", self.password))
                # Sent together: one round trip for the login and the PING.
                conn.sendall((resp_command(*auth) if auth else b"") + resp_command("PING"))
                if auth:
                    reply = resp_line(stream)
                    if reply != "+OK":
                        raise CheckFailed(f"AUTH as {self.user or 'default'} refused: {reply.lstrip('-')}")
                reply = resp_line(stream)
                if reply != "+PONG":
                    raise CheckFailed(f"PING answered {reply.lstrip('-+')!r}, expected PONG")
        finally:
            raw.close()


@dataclass
class MongodbProbe:
    host: str
    port: int
    user: str | None
    password: str | None
    database: str
    tls: bool
    validate_certs: bool
    ca_file: str | None
    pymongo: Any = field(repr=False, default=None)

    @property
    def target(self) -> str:
        return f"mongodb://{self.user + '@' if self.user else ''}{self.host}:{self.port}/{self.database}"

    def __call__(self, timeout: float) -> None:
        options: dict[str, Any] = {"serverSelectionTimeoutMS": int(timeout * 1000), "connectTimeoutMS": int(timeout * 1000),
                                   "directConnection": True, "appname": "chajipoa-health-gate"}
        if self.user:
            options.update(username=self.user, password=self.password, authSource=self.database)
        if self.tls:
            options.update(tls=True, tlsAllowInvalidCertificates=not self.validate_certs)
            if self.ca_file:
                options["tlsCAFile"] = self.ca_file
        client = self.pymongo.MongoClient(self.host, self.port, **options)
        try:
            client[self.database].command("ping")
        except self.pymongo.errors.PyMongoError as error:
            raise CheckFailed(f"ping failed: {_first_line(error)}") from None
        finally:
            client.close()


# -- building checks from their options -----------------------------------------------------------
@dataclass
class Check:
    name: str
    kind: str
    probe: Callable[[float], None]
    timeout: float
    thresholds: Thresholds
    window: Window

    @property
    def target(self) -> str:
        return getattr(self.probe, "target", self.kind)


def _options(spec: Mapping[str, Any], what: str) -> dict[str, Any]:
    kind = spec.get("kind")
    if kind not in KIND_OPTIONS:
        raise CheckUnusable(f"Cannot use {what}: kind {kind!r} is not one of {', '.join(KINDS)}")
    known = KIND_OPTIONS[kind]
    stray = sorted(key for key, value in spec.items() if value is not None and key not in known and key not in COMMON_OPTIONS)
    if stray:
        raise CheckUnusable(f"Cannot use {what}: option(s) {', '.join(stray)} do not apply to kind {kind} "
                            f"(its options: {', '.join(sorted(known))})")
    options = {key: spec.get(key) if spec.get(key) is not None else default for key, default in known.items()}
    missing = [key for key in REQUIRED.get(kind, ()) if options.get(key) in (None, "")]
    if missing:
        raise CheckUnusable(f"Cannot use {what}: kind {kind} needs {' and '.join(missing)}")
    return options


def _http_probe(options: dict[str, Any], what: str) -> HttpProbe:
    parts = urlsplit(options["url"])
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CheckUnusable(f"Cannot use {what}.url {options['url']!r}: expected http:// or https:// and a host")
    method = str(options["method"]).upper()
    if method not in HTTP_METHODS:
        # Other methods may change state; the gate must stay safe to run in check mode.
        raise CheckUnusable(f"Cannot use {what}.method {method}: only {' and '.join(HTTP_METHODS)} are read-only")
    for path in options["expect_json"]:
        if not str(path) or "" in str(path).split("."):
            raise CheckUnusable(f"Cannot use {what}.expect_json path {path!r}: expected dotted keys such as checks.postgres.status")
    if options["unix_socket"] is not None and not str(options["unix_socket"]).startswith("/"):
        raise CheckUnusable(f"Cannot use {what}.unix_socket {options['unix_socket']!r}: expected an absolute path")
    context = (tls_context(options["validate_certs"], options["ca_file"], what) if parts.scheme == "https" else None)
    return HttpProbe(unix_socket=options["unix_socket"], url=options["url"], method=method, status=[int(s) for s in options["status"]],
                     headers={str(k): str(v) for k, v in options["headers"].items()},
                     expect_json={str(k): v for k, v in options["expect_json"].items()},
                     expect_headers={str(k): str(v) for k, v in options["expect_headers"].items()}, context=context)


def _postgres_probe(options: dict[str, Any], what: str) -> PostgresProbe:
    if options["sslmode"] not in SSLMODES:
        raise CheckUnusable(f"Cannot use {what}.sslmode {options['sslmode']!r}: expected one of {', '.join(SSLMODES)}")
    driver = _postgres_driver()
    statement = options["query"].strip()
    # A trailing ';' only ends the one statement.
    statement = statement[:-1] if statement.endswith(";") else statement
    if driver.__name__ == "psycopg2" and ";" in statement:
        # Without a ';' the server's parser cannot find a second statement, whatever the quoting.
        raise CheckUnusable(f"Cannot use {what}.query {options['query']!r}: psycopg2 sends it as text, where a ';' "
                            "may start a second statement outside the read-only transaction; remove the ';' "
                            "or install psycopg (3) (Debian: python3-psycopg)")
    return PostgresProbe(driver=driver, **options)


def _redis_probe(options: dict[str, Any], what: str) -> RedisProbe:
    if options["user"] and options["password"] is None:
        raise CheckUnusable(f"Cannot use {what}.user {options['user']}: a Redis ACL user needs its password")
    context = tls_context(options["validate_certs"], options["ca_file"], what) if options["tls"] else None
    return RedisProbe(host=options["host"], port=int(options["port"]), user=options["user"],
                      password=options["password"], context=context)


def _mongodb_probe(options: dict[str, Any], what: str) -> MongodbProbe:
    try:
        import pymongo
        import pymongo.errors
    except ImportError:
        raise CheckUnusable("Cannot probe mongodb: pymongo is not installed (Debian: python3-pymongo)") from None
    return MongodbProbe(pymongo=pymongo, **options)


# Options that mean something only over TLS.
TLS_OPTIONS = ("validate_certs", "ca_file")


def _without_tls(kind: str, options: dict[str, Any]) -> str | None:
    """Why a check talks without TLS, and what would change that; None when it uses TLS (or may)."""
    if kind == "http" and urlsplit(options["url"]).scheme != "https":
        return f"url {options['url']} is not https://; use https://"
    if kind in ("redis", "mongodb") and not options["tls"]:
        return "tls is false; set tls: true"
    if kind == "postgres" and options["sslmode"] == "disable":
        return "sslmode is disable; choose another sslmode"
    return None


BUILDERS: dict[str, Callable[[dict[str, Any], str], Callable[[float], None]]] = {
    "http": _http_probe,
    "tcp": lambda options, what: TcpProbe(host=options["host"], port=int(options["port"])),
    "postgres": _postgres_probe,
    "redis": _redis_probe,
    "mongodb": _mongodb_probe,
}


def build_checks(specs: list[Mapping[str, Any]], thresholds: Thresholds, window: int) -> list[Check]:
    """Checks from the module's options; raises CheckUnusable naming the check and option at fault."""
    if not specs:
        raise CheckUnusable("Cannot run the health gate: checks is empty")
    checks: list[Check] = []
    for index, spec in enumerate(specs):
        name = spec.get("name")
        what = f"checks[{index}] ({name})" if name else f"checks[{index}]"
        if not name:
            raise CheckUnusable(f"Cannot use {what}: it has no name")
        if any(check.name == name for check in checks):
            raise CheckUnusable(f"Cannot use {what}: another check is named {name!r} already")
        options = _options(spec, what)
        try:
            own = Thresholds.from_dict(spec.get("thresholds"), base=thresholds, what=f"{what}.thresholds")
        except ValueError as error:
            raise CheckUnusable(f"Cannot use {error}") from None
        timeout = DEFAULT_TIMEOUT if spec.get("timeout") is None else float(spec["timeout"])
        if timeout <= 0:
            raise CheckUnusable(f"Cannot use {what}.timeout {timeout:g}: expected seconds above 0")
        probe = BUILDERS[spec["kind"]](options, what)
        # Only the options the check sets: the kind's defaults (validate_certs true) are no request.
        given = [key for key in TLS_OPTIONS if key in options and spec.get(key) is not None]
        why = _without_tls(spec["kind"], options) if given else None
        if why:
            # Ignored, they would leave a check that reads as verified in plain text, Redis's AUTH
            # with its password included.
            names = " and ".join(given)
            raise CheckUnusable(f"Cannot use {what}: {names} only appl{'y' if len(given) > 1 else 'ies'} over TLS, "
                                f"and {why} or remove {names}")
        checks.append(Check(name=name, kind=spec["kind"], probe=probe, timeout=timeout, thresholds=own,
                            window=Window(window)))
    return checks


# -- rounds ---------------------------------------------------------------------------------------
def measure(probe: Callable[[float], None], timeout: float, clock: Callable[[], float] = time.perf_counter) -> Sample:
    start = clock()
    try:
        probe(timeout)
    except Exception as error:  # pylint: disable=broad-except  # any failure of a probe is its sample's error
        return Sample(latency_ms=(clock() - start) * 1000, ok=False, error=describe_error(error, timeout))
    return Sample(latency_ms=(clock() - start) * 1000, ok=True)


@dataclass
class GateResult:
    passed: bool
    rounds: int
    consecutive: int
    elapsed: float
    reason: str
    checks: list[dict[str, Any]]
    settings: dict[str, Any]

    def failing(self) -> list[str]:
        return [check["name"] for check in self.checks if not check["passed"]]

    def message(self) -> str:
        settings = self.settings
        if self.passed:
            return (f"{len(self.checks)} check(s) passed {self.consecutive} consecutive round(s) within their thresholds "
                    f"({self.rounds} round(s), {self.elapsed:.1f} s)")
        why = {"deadline": f"within {settings['deadline']:g} s",
               "fail_after": f"after {settings['fail_after']} failing rounds in a row"}[self.reason]
        details = []
        for check in self.checks:
            if check["passed"]:
                continue
            text = "; ".join(check["failures"])
            # The last error explains an error rate even when the last probe passed.
            if check["last_error"] and check["window_errors"]:
                text = f"{text}; last error: {check['last_error']}" if text else f"last error: {check['last_error']}"
            details.append(f"{check['name']} ({check['target']}): {text}")
        if not details:
            details.append(f"only {self.consecutive} of {settings['consecutive']} consecutive rounds passed")
        return (f"Cannot pass the health gate {why} ({self.rounds} round(s), {self.elapsed:.1f} s): "
                + " | ".join(details))

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "rounds": self.rounds, "consecutive": self.consecutive,
                "elapsed": round(self.elapsed, 3), "reason": self.reason, "failing": self.failing(),
                "checks": self.checks, "settings": self.settings}


def _report(check: Check) -> dict[str, Any]:
    summary = check.window.summary()
    last = check.window.last
    failures = judge(summary, check.thresholds)
    last_ok = last is not None and last.ok
    stats = summary.as_dict()
    return {"name": check.name, "kind": check.kind, "target": check.target, "passed": last_ok and not failures,
            "last_ok": last_ok, "count": check.window.count, "errors": check.window.errors,
            "window": stats["count"], "window_errors": stats["errors"], "error_percent": stats["error_percent"],
            "p50_ms": stats["p50_ms"], "p95_ms": stats["p95_ms"], "p99_ms": stats["p99_ms"], "max_ms": stats["max_ms"],
            "last_latency_ms": None if last is None else round(last.latency_ms, 2), "last_error": check.window.last_error,
            "failures": failures, "thresholds": check.thresholds.as_dict()}


def run_gate(checks: list[Check], *, consecutive: int, interval: float, deadline: float, fail_after: int = 0,
             clock: Callable[[], float] = time.perf_counter, sleep: Callable[[float], None] = time.sleep) -> GateResult:
    """Probe every check once a round, a round every `interval` seconds, until `consecutive` rounds in
    a row passed and every check's window is within its thresholds (passed), `fail_after` rounds in a
    row failed (0: never), or the next round would start after `deadline` seconds. No probe is given
    more than the time left before the deadline, so the verdict comes by then (give or take
    MIN_TIMEOUT and a probe's own slack past its timeout)."""
    settings = {"consecutive": consecutive, "interval": interval, "deadline": deadline, "fail_after": fail_after,
                "window": checks[0].window.samples.maxlen if checks else 0}
    start = clock()
    rounds = passes = failures = 0
    while True:
        round_start = clock()
        rounds += 1
        unfinished = False
        for check in checks:
            given = max(MIN_TIMEOUT, min(check.timeout, deadline - (clock() - start)))
            sample = measure(check.probe, given, clock)
            # A probe the deadline cut short did not get its timeout: counted, it would turn a slow
            # check into a failing one. Only a check without any sample keeps it, to say why.
            cut_short = not sample.ok and given < check.timeout and clock() - start >= deadline
            if cut_short and check.window.count:
                unfinished = True
                break
            check.window.add(sample)
        if unfinished:
            # An unfinished round counts neither way.
            return GateResult(passed=False, rounds=rounds, consecutive=passes, elapsed=clock() - start,
                              reason="deadline", checks=[_report(check) for check in checks], settings=settings)
        round_ok = all(check.window.last.ok for check in checks)
        passes, failures = (passes + 1, 0) if round_ok else (0, failures + 1)
        reports = [_report(check) for check in checks]
        # A round that took longer than the interval is followed at once.
        next_start = max(round_start + interval, clock())
        reason = ""
        if passes >= consecutive and all(report["passed"] for report in reports):
            reason = "passed"
        elif fail_after and failures >= fail_after:
            reason = "fail_after"
        elif next_start - start >= deadline:
            reason = "deadline"
        if reason:
            return GateResult(passed=reason == "passed", rounds=rounds, consecutive=passes, elapsed=clock() - start,
                              reason=reason, checks=reports, settings=settings)
        sleep(max(0.0, next_start - clock()))
