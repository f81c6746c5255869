#!/usr/bin/python
# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: health_gate
short_description: Gate on health checks passing in a row, within latency and error-rate thresholds
description:
  - Runs a set of checks (kinds V(http), V(tcp), V(postgres), V(redis), V(mongodb)) once a round, one
    round every O(interval) seconds, until O(consecutive) rounds in a row passed and, over each check's
    sliding window of its last O(window) probes, the p95 and p99 latency and the error rate are within
    the thresholds (by default the operator guide's targets, p95 200 ms, p99 500 ms, error rate 0.1 %).
  - Fails when no round may start before O(deadline) seconds have passed (or after O(fail_after)
    failing rounds in a row), with each check's statistics (probe and error counts, p50, p95, p99,
    last error) and a message naming the failing checks. Either way the result carries C(passed), so a
    deploy can decide to switch traffic or to switch back (see the examples).
  - Written because nothing bundled gates on percentiles over rounds; M(ansible.builtin.uri) and
    M(ansible.builtin.wait_for) (with C(retries)/C(until)) check one answer at a time and pass on the
    first good one, so a flapping or slow service passes them. Argo Rollouts and Flagger gate
    Kubernetes rollouts this way; this module does it for hosts driven by Ansible.
  - A round probes its checks one after the other; every probe opens a connection of its own, so a
    connection that cannot be made is seen. Latency is measured around the whole probe (connect, TLS,
    request, answer) and failed probes count in the percentiles too.
  - Percentiles are nearest-rank over the window, never interpolated; over fewer than 20 samples the
    p95, and over fewer than 100 the p99, is the slowest probe of the window. An error anywhere in a
    window of fewer than 1000 samples exceeds the default 0.1 %, so after a failure the gate passes
    only once that failure has left the window (O(window) probes later).
  - The statistics are the same code as the P(chajipoa.platform.health_verdict#filter) filter's.
version_added: 0.3.0
# The form validate-modules accepts without a GitHub handle; the team's address is in galaxy.yml.
author: ChajiPoa Infrastructure engineers (!UNKNOWN)
options:
  checks:
    description:
      - The checks, probed in this order every round. Options of one kind given to a check of another
        are refused. Defaults below marked per kind apply only to that kind.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: What the check is called in messages and results; unique.
        type: str
        required: true
      kind:
        description: How to probe.
        type: str
        required: true
        choices: [http, tcp, postgres, redis, mongodb]
      timeout:
        description:
          - Seconds a probe may take (connect and each read, for V(postgres) also the query through
            its C(statement_timeout)); it fails after that. Never more than what is left before the deadline.
        type: float
        default: 5.0
      thresholds:
        description: This check's own thresholds, overriding those of O(thresholds) key by key.
        type: dict
        suboptions:
          p95_ms:
            description: Most p95 latency in milliseconds.
            type: float
          p99_ms:
            description: Most p99 latency in milliseconds.
            type: float
          error_percent:
            description: Most failed probes, in percent of the window.
            type: float
      url:
        description:
          - V(http) (required). The URL to request, C(http://) or C(https://). No proxy is used, whatever
            the environment says, since a health check asks the service itself.
        type: str
      method:
        description: V(http). The request method (default V(GET)); only read-only methods are offered.
        type: str
        choices: [GET, HEAD]
      status:
        description: V(http). Status codes that pass (default V([200])).
        type: list
        elements: int
      headers:
        description:
          - V(http). Request headers.
          - Not logged, as they may carry a token (C(Authorization)); Ansible then masks each header value
            wherever it appears in the result, so a header V(X-Forwarded-Proto=https) also turns the check's
            target into C(GET ********://...).
        type: dict
      expect_json:
        description:
          - V(http). Values the JSON answer must hold, by dotted path (V(status), V(checks.postgres.status),
            V(items.0.id), that is object keys and decimal array indexes; a key with a dot in it cannot be addressed).
          - Numbers compare as numbers; anything else as text, with booleans as V(true)/V(false) and null
            as V(null).
        type: dict
      expect_headers:
        description: V(http). Answer headers and the exact value each must have (names are case-insensitive).
        type: dict
      validate_certs:
        description:
          - V(http) with an C(https://) URL, V(redis) and V(mongodb) with O(checks[].tls). Verify the server's
            certificate and its name (default V(true)). V(false) is for throwaway setups only.
          - Set on a check without TLS, it is refused, as is O(checks[].ca_file), rather than ignored.
        type: bool
      ca_file:
        description:
          - V(http) with an C(https://) URL, V(redis) and V(mongodb) with O(checks[].tls). The CA certificates
            (PEM) to verify the server against, instead of the system's.
          - V(postgres). C(sslrootcert), read by libpq.
          - Set on a check without TLS (an C(http://) URL, O(checks[].tls=false), O(checks[].sslmode=disable)),
            it is refused rather than ignored, which would probe in plain text (Redis's AUTH with its password
            included).
        type: path
      unix_socket:
        description:
          - V(http). Path of a unix socket to send the request over instead of connecting to the URL's
            host and port, which then only make the C(Host) header (and, for C(https://), the name the
            certificate is verified against), as with M(ansible.builtin.uri)'s O(ansible.builtin.uri#module:unix_socket).
          - For a status server that listens only on a socket root can reach, such as the edge's
            C(/run/chajipoa-edge/status.sock).
        type: path
      host:
        description:
          - V(tcp) (required), V(postgres), V(redis), V(mongodb) (default V(127.0.0.1)). The server's
            address or name; with TLS, the name its certificate is verified against.
        type: str
      port:
        description:
          - V(tcp) (required). V(postgres) (default V(5432)), V(redis) (default V(6379)), V(mongodb)
            (default V(27017)).
        type: int
      database:
        description:
          - V(postgres). The database to connect to (default V(postgres)).
          - V(mongodb). The database pinged and authenticated against (default V(admin)).
        type: str
      user:
        description:
          - V(postgres) and V(mongodb). The login. V(redis). The ACL user (without it, AUTH sends only
            the password, as the C(default) user; without a password, no AUTH).
        type: str
      password:
        description: V(postgres), V(redis), V(mongodb). The login's password.
        type: str
      sslmode:
        description: V(postgres). libpq's C(sslmode) (default V(prefer)); V(verify-full) with O(checks[].ca_file) in production.
        type: str
        choices: [disable, allow, prefer, require, verify-ca, verify-full]
      query:
        description:
          - V(postgres). The query to run (default V(SELECT 1)), one statement that returns rows, inside a
            C(READ ONLY) transaction that is rolled back. It cannot leave that transaction (C(COMMIT),
            C(SET TRANSACTION READ WRITE) and procedures that commit fail), so it cannot change the
            database, in check mode or not.
          - With psycopg (3) it is sent alone through the extended query protocol, and the server refuses a
            second statement. psycopg2 sends it as text, where a C(;) may start another statement, so under
            psycopg2 a query with a C(;) other than a trailing one is refused.
          - The transaction stops writes to the database, not what a superuser's function may do outside
            it; probe as a login without superuser rights, such as the monitoring login.
        type: str
      expect:
        description:
          - V(postgres). The value the first column of the first row must have (compared like
            O(checks[].expect_json)'s values). Unset, any answer passes.
        type: raw
      tls:
        description: V(redis), V(mongodb). Connect over TLS (default V(false)).
        type: bool
  consecutive:
    description: Rounds in a row in which every probe passed, needed to pass.
    type: int
    default: 3
  interval:
    description:
      - Seconds from the start of one round to the start of the next. A round that takes longer is
        followed at once.
    type: float
    default: 1.0
  deadline:
    description:
      - Seconds after which the gate fails if it has not passed; no round starts after it, and no
        probe is given more time than is left.
    type: float
    default: 60.0
  window:
    description: Probes per check the percentiles and the error rate are computed over (the most recent).
    type: int
    default: 10
  fail_after:
    description:
      - Fail as soon as this many rounds in a row had a failing probe, without waiting for the
        deadline; a deploy then switches back sooner. V(0) waits for the deadline (a service still
        starting fails its first rounds).
    type: int
    default: 0
  thresholds:
    description: The most each check's window may show and still pass; a value above its threshold fails.
    type: dict
    suboptions:
      p95_ms:
        description: Most p95 latency in milliseconds.
        type: float
        default: 200.0
      p99_ms:
        description: Most p99 latency in milliseconds.
        type: float
        default: 500.0
      error_percent:
        description: Most failed probes, in percent of the window.
        type: float
        default: 0.1
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Every probe only reads (HTTP GET or HEAD, a TCP connect, one statement in a read-only transaction, PING,
        ping), so the gate runs in check mode exactly as otherwise; a check-mode deploy sees the real verdict.
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - psycopg (3) or psycopg2 on the host for V(postgres) checks (Debian's python3-psycopg2 will do).
  - pymongo on the host for V(mongodb) checks; without it such a check fails at once, saying so.
notes:
  - The module runs on the managed host, so V(127.0.0.1) is that host's loopback; delegate to another
    host to probe from there.
  - The result is never C(changed).
seealso:
  - plugin: chajipoa.platform.health_verdict
    plugin_type: filter
  - module: ansible.builtin.uri
  - module: ansible.builtin.wait_for
"""

EXAMPLES = r"""
- name: Gate on the API's health and its database
  chajipoa.platform.health_gate:
    checks:
      - name: api
        kind: http
        url: http://127.0.0.1:3001/api/health
        expect_json:
          status: healthy
          checks.postgres.status: up
      - name: postgres
        kind: postgres
        user: monitoring
        password: "{{ postgres_monitoring_password }}"
        sslmode: verify-full
        ca_file: /etc/postgresql/15/main/ca.crt
        query: SELECT pg_is_in_recovery()
        expect: false
    consecutive: 5
    deadline: 120

- name: Redis answers PING as the monitoring user over TLS
  chajipoa.platform.health_gate:
    checks:
      - name: redis
        kind: redis
        user: monitoring
        password: "{{ redis_monitoring_password }}"
        tls: true
        ca_file: /etc/redis/ca.crt

- name: The edge's workers use the new upstream servers and the live path answers healthy
  chajipoa.platform.health_gate:
    checks:
      - name: edge upstream
        kind: http
        url: http://localhost/upstream
        unix_socket: /run/chajipoa-edge/status.sock
        expect_json: {servers: "10.20.2.11:3002 10.20.2.12:3001"}
      - name: live path
        kind: http
        url: http://localhost/api/health
        unix_socket: /run/chajipoa-edge/status.sock
        expect_json: {status: healthy}
  delegate_to: edge1

- name: Gate a release after the switch, and keep the verdict for the rollback decision
  chajipoa.platform.health_gate:
    checks:
      - name: api-green
        kind: http
        url: https://api.chajipoa.co.tz/api/health
        ca_file: /etc/chajipoa/ca.crt
        thresholds: {p95_ms: 150}
    fail_after: 5
    deadline: 90
  register: gate
  failed_when: false

- name: Say why the release is switched back
  ansible.builtin.debug:
    msg: "{{ gate.msg }}; slowest: {{ gate.checks | map(attribute='p95_ms') | max }} ms"
  when: not gate.passed
"""

RETURN = r"""
passed:
  description: Whether the gate passed.
  returned: always
  type: bool
  sample: false
reason:
  description: Why it stopped, V(passed), V(deadline) or V(fail_after).
  returned: always
  type: str
  sample: deadline
failing:
  description: The names of the checks that do not pass (empty when passed).
  returned: always
  type: list
  elements: str
  sample: [api]
rounds:
  description: Rounds run.
  returned: always
  type: int
  sample: 12
consecutive:
  description: Rounds in a row, up to the last, in which every probe passed.
  returned: always
  type: int
  sample: 0
elapsed:
  description: Seconds from the first round's start to the verdict.
  returned: always
  type: float
  sample: 11.02
settings:
  description: O(consecutive), O(interval), O(deadline), O(fail_after) and O(window) as used.
  returned: always
  type: dict
  sample: {consecutive: 3, interval: 1.0, deadline: 12.0, fail_after: 0, window: 10}
checks:
  description:
    - One entry per check, in the order given. Latencies in milliseconds; percentiles and error rate over
      the window; C(count) and C(errors) over the whole run.
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: The check's name., type: str}
    kind: {description: Its kind., type: str}
    target: {description: What was probed (no password)., type: str, sample: GET http://127.0.0.1:3001/api/health}
    passed: {description: Its last probe passed and its window is within its thresholds., type: bool}
    last_ok: {description: Its last probe passed., type: bool}
    count: {description: Probes run., type: int, sample: 12}
    errors: {description: Probes failed., type: int, sample: 6}
    window: {description: Probes in the window., type: int, sample: 10}
    window_errors: {description: Failed probes in the window., type: int, sample: 5}
    error_percent: {description: Failed probes in percent of the window., type: float, sample: 50.0}
    p50_ms: {description: Median latency over the window., type: float, sample: 1.9}
    p95_ms: {description: p95 latency over the window., type: float, sample: 3.4}
    p99_ms: {description: p99 latency over the window., type: float, sample: 3.4}
    max_ms: {description: Slowest probe of the window., type: float, sample: 3.4}
    last_latency_ms: {description: The last probe's latency., type: float, sample: 1.7}
    last_error: {description: "The last failed probe's cause; null when none failed.", type: str, sample: 'HTTP 503, expected 200: {"status":"unhealthy"}'}
    failures: {description: Each threshold the window breaks., type: list, elements: str, sample: ["error rate 50 % (5 of 10) above 0.1 %"]}
    thresholds: {description: The thresholds this check was judged by., type: dict, sample: {p95_ms: 200.0, p99_ms: 500.0, error_percent: 0.1}}
msg:
  description: The verdict in a sentence; on failure it names each failing check, what it breaks and its last error.
  returned: always
  type: str
  sample: "Cannot pass the health gate within 12 s (12 round(s), 11.0 s): api (GET http://127.0.0.1:3001/api/health): error rate 50 % (5 of 10) above 0.1 %"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.chajipoa.platform.plugins.module_utils.health_checks import CheckUnusable, build_checks, run_gate
from ansible_collections.chajipoa.platform.plugins.module_utils.health_stats import Thresholds

THRESHOLD_OPTIONS = {"p95_ms": {"type": "float"}, "p99_ms": {"type": "float"}, "error_percent": {"type": "float"}}

ARGUMENT_SPEC = {
    "checks": {"type": "list", "elements": "dict", "required": True, "options": {
        "name": {"type": "str", "required": True},
        "kind": {"type": "str", "required": True, "choices": ["http", "tcp", "postgres", "redis", "mongodb"]},
        "timeout": {"type": "float", "default": 5.0},
        "thresholds": {"type": "dict", "options": THRESHOLD_OPTIONS},
        "url": {"type": "str"},
        "method": {"type": "str", "choices": ["GET", "HEAD"]},
        "status": {"type": "list", "elements": "int"},
        # A bearer token or an API key rides here.
        "headers": {"type": "dict", "no_log": True},
        "expect_json": {"type": "dict"},
        "expect_headers": {"type": "dict"},
        "validate_certs": {"type": "bool"},
        "ca_file": {"type": "path"},
        "unix_socket": {"type": "path"},
        "host": {"type": "str"},
        "port": {"type": "int"},
        "database": {"type": "str"},
        "user": {"type": "str"},
        "password": {"type": "str", "no_log": True},
        "sslmode": {"type": "str", "choices": ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]},
        "query": {"type": "str"},
        "expect": {"type": "raw"},
        "tls": {"type": "bool"},
    }},
    "consecutive": {"type": "int", "default": 3},
    "interval": {"type": "float", "default": 1.0},
    "deadline": {"type": "float", "default": 60.0},
    "window": {"type": "int", "default": 10},
    "fail_after": {"type": "int", "default": 0},
    "thresholds": {"type": "dict", "options": {
        "p95_ms": {"type": "float", "default": 200.0},
        "p99_ms": {"type": "float", "default": 500.0},
        "error_percent": {"type": "float", "default": 0.1},
    }},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    for name, least in (("consecutive", 1), ("window", 1), ("fail_after", 0)):
        if params[name] < least:
            module.fail_json(msg=f"Cannot run the health gate: {name} is {params[name]}, expected at least {least}")
    for name in ("interval", "deadline"):
        if params[name] < 0:
            module.fail_json(msg=f"Cannot run the health gate: {name} is {params[name]:g}, expected seconds >= 0")
    try:
        thresholds = Thresholds.from_dict(params["thresholds"])
        checks = build_checks(params["checks"], thresholds, params["window"])
    except CheckUnusable as error:
        module.fail_json(msg=str(error))
    except ValueError as error:
        module.fail_json(msg=f"Cannot use {error}")
    result = run_gate(checks, consecutive=params["consecutive"], interval=params["interval"],
                      deadline=params["deadline"], fail_after=params["fail_after"])
    if not result.passed:
        module.fail_json(msg=result.message(), changed=False, **result.as_dict())
    module.exit_json(msg=result.message(), changed=False, **result.as_dict())


if __name__ == "__main__":
    main()
