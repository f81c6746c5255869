"""The app role on an application host in front of a PostgreSQL and Redis host: the reference API
as a sandboxed systemd service per colour, probed over HTTP on the host as the health gate and a
proxy would, and through real failures (Redis stopped), real writes (a psql client reads them) and
releases on the idle colour through the role's `release` entry point (release.yml): a tarball npm
itself packed, then directories."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

# The project's shared test helpers (tests/*.py), which testinfra's import path does not reach.
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.releases import make_release, npm_pack  # noqa: E402  # pylint: disable=wrong-import-position

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
SCENARIO = Path(__file__).resolve().parent.parent
API = SCENARIO.parent.parent / "apps" / "reference-api"
RUNNER = AnsibleRunner(INVENTORY)
APP = "reference-api"
PORTS = {"blue": 3001, "green": 3002}

pytestmark = pytest.mark.journal(f"{APP}@blue.service", f"{APP}@green.service", "redis-server.service")

# Does one request on the host and prints status, X-Cache and body as JSON.
_REQUEST = """
import json, sys, urllib.request, urllib.error
method, url, body = sys.argv[1], sys.argv[2], sys.argv[3]
request = urllib.request.Request(url, method=method, data=body.encode() or None, headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=10) as answer:
        status, headers, text = answer.status, answer.headers, answer.read().decode()
except urllib.error.HTTPError as error:
    status, headers, text = error.code, error.headers, error.read().decode()
except OSError as error:
    status, headers, text = 0, {}, str(error)
print(json.dumps({"status": status, "cache": headers.get("X-Cache"), "body": text}))
"""


def group_host(lab_host, group: str):
    return lab_host(RUNNER.get_hosts(group)[0])


@pytest.fixture(scope="module")
def web(lab_host):
    return group_host(lab_host, "app")


@pytest.fixture(scope="module")
def db(lab_host):
    return group_host(lab_host, "postgres")


def request(host, path: str, method: str = "GET", body: dict | None = None, colour: str = "blue") -> dict:
    url = f"http://127.0.0.1:{PORTS[colour]}{path}"
    out = host.check_output(f"python3 -c {shlex.quote(_REQUEST)} {method} {url} {shlex.quote(json.dumps(body) if body else '')}")
    answer = json.loads(out)
    try:
        answer["json"] = json.loads(answer["body"])
    except ValueError:
        answer["json"] = None
    return answer


def wait_for(host, path: str, status: int, colour: str = "blue", timeout: float = 60) -> dict:
    """The first answer with `status` within `timeout` (a condition, not a sleep), else fail with the last."""
    deadline = time.monotonic() + timeout
    while True:
        answer = request(host, path, colour=colour)
        if answer["status"] == status or time.monotonic() > deadline:
            assert answer["status"] == status, answer
            return answer
        time.sleep(0.5)


def live_colour(web) -> str:
    return web.file(f"/etc/chajipoa/apps/{APP}/live").content_string.strip()


def test_fresh_host_is_live_on_blue(web):
    assert live_colour(web) == "blue"


def test_health_answers_200_on_the_live_colour(web):
    answer = wait_for(web, "/api/health", 200, colour=live_colour(web))
    checks = answer["json"]["checks"]
    assert answer["json"]["status"] == "healthy"
    assert checks["postgres"]["status"] == "up" and checks["redis"]["status"] == "up"
    assert "mongodb" not in checks


def test_version_is_the_release(web):
    release = web.file(f"/opt/{APP}/blue").linked_to.rsplit("/", 1)[1]
    answer = request(web, "/api/version")
    assert answer["json"]["version"] == release
    assert release.startswith(json.loads((API / "package.json").read_text())["version"] + "-")


def test_market_settings_reach_the_app(web):
    market = request(web, "/api/market")["json"]
    assert market["currency"] == "TZS" and market["vat_percent"] == 18 and market["locale"] == "sw_TZ"
    assert market["payment_gateway"] == "azampay"
    assert market["mobile_money_providers"] == ["M-Pesa", "Tigo Pesa", "Airtel Money", "Halopesa"]


def test_rental_written_through_the_api_is_read_by_psql(web, db):
    body = {"station_code": "DAR-001", "power_bank_serial": "PB-" + os.urandom(4).hex(), "customer_phone": "+255712345678",
            "payment_provider": "M-Pesa"}
    created = request(web, "/api/rentals", method="POST", body=body)
    assert created["status"] == 201, created
    rental = created["json"]["id"]
    row = db.check_output(f"runuser -u postgres -- psql -d chajipoa -tAc "
                          f"\"SELECT power_bank_serial FROM rentals WHERE id = {int(rental)}\"")
    assert row == body["power_bank_serial"]
    first = request(web, f"/api/rentals/{rental}")
    second = request(web, f"/api/rentals/{rental}")
    assert (first["status"], first["cache"]) == (200, "miss")
    assert (second["status"], second["cache"]) == (200, "hit")
    assert second["json"]["power_bank_serial"] == body["power_bank_serial"]


def test_health_503_naming_redis_while_redis_is_stopped(web, db):
    db.check_output("systemctl stop redis-server")
    try:
        answer = wait_for(web, "/api/health", 503, timeout=30)
        assert answer["json"]["status"] == "unhealthy"
        # Why is in the app's log, not in the answer the edge serves to anyone.
        assert answer["json"]["checks"]["redis"] == {"status": "down", "latency_ms": answer["json"]["checks"]["redis"]["latency_ms"]}
        assert answer["json"]["checks"]["postgres"]["status"] == "up"
    finally:
        db.check_output("systemctl start redis-server")
    assert wait_for(web, "/api/health", 200, timeout=60)["json"]["checks"]["redis"]["status"] == "up"


def show(host, unit: str) -> dict[str, str]:
    text = host.check_output(f"systemctl show --all {unit}")
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_runs_unprivileged_in_a_sandbox(web):
    unit = show(web, f"{APP}@blue.service")
    assert unit["ActiveState"] == "active" and unit["User"] == APP
    assert web.check_output(f"ps -o user= -p {unit['MainPID']}") == APP
    assert unit["NoNewPrivileges"] == "yes"
    assert unit["ProtectSystem"] == "strict" and unit["ProtectHome"] == "yes" and unit["PrivateTmp"] == "yes"
    assert unit["CapabilityBoundingSet"] == "" and unit["RestrictAddressFamilies"] == "AF_INET AF_INET6 AF_UNIX"
    assert unit["SystemCallFilter"] and unit["MemoryMax"] == str(512 * 1024 * 1024)
    assert unit["Restart"] == "on-failure" and unit["TimeoutStopUSec"] == "30s"
    # The sandbox holds: the service cannot write its own release or /etc.
    probe = web.run(f"runuser -u {APP} -- test -w /opt/{APP}/releases")
    assert probe.rc != 0
    # Its effective capabilities are none (CapEff of its status).
    status = web.file(f"/proc/{unit['MainPID']}/status").content_string
    assert "CapEff:\t0000000000000000" in status


def test_environment_file_protected_and_no_secret_in_systemctl_show(web):
    env = web.file(f"/etc/chajipoa/apps/{APP}/blue.env")
    assert (env.user, env.group, env.mode) == ("root", APP, 0o640)
    variables = RUNNER.get_variables(RUNNER.get_hosts("app")[0])
    content = env.content_string
    assert "sslmode=verify-full" in content and "connection_limit=20" in content and "rediss://" in content
    # Through PgBouncer on the host, verified against the CA that signed its certificate.
    assert "@127.0.0.1:6432/chajipoa?" in content
    assert "APP_CURRENCY=\"TZS\"" in content and "CACHE_TTL_SECONDS=\"120\"" in content
    shown = web.check_output(f"systemctl show {APP}@blue.service")
    secrets = ("app_jwt_secret", "app_jwt_refresh_secret", "postgres_app_password", "redis_app_password",
               "app_payment_client_secret", "app_sms_api_key")
    for secret in secrets:
        assert variables[secret] not in shown
    assert show(web, f"{APP}@blue.service")["Environment"] == ""


def test_the_named_providers_credentials_reach_the_running_api(web):
    """The market names AzamPay and the inventory an SMS provider: the API's process holds their
    settings; no email provider is named, so none of its settings are there."""
    variables = RUNNER.get_variables(RUNNER.get_hosts("app")[0])
    pid = show(web, f"{APP}@blue.service")["MainPID"]
    environ = dict(item.split("=", 1) for item in web.file(f"/proc/{pid}/environ").content_string.split("\0") if "=" in item)
    assert environ["PAYMENT_GATEWAY"] == "azampay"
    assert environ["PAYMENT_CLIENT_ID"] == variables["app_payment_client_id"]
    assert environ["PAYMENT_CLIENT_SECRET"] == variables["app_payment_client_secret"]
    assert environ["SMS_PROVIDER"] == "africastalking" and environ["SMS_USERNAME"] == "chajipoa-sandbox"
    assert environ["SMS_API_KEY"] == variables["app_sms_api_key"]
    assert not {"EMAIL_PROVIDER", "EMAIL_API_KEY", "EMAIL_FROM"} & set(environ)


def test_migration_ran_once_and_marked(web):
    release = web.file(f"/opt/{APP}/blue").linked_to
    assert web.file(f"{release}/.chajipoa-migrated").exists


def release(source: Path, colour: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ansible-playbook", "-i", INVENTORY, str(SCENARIO / "release.yml"), "-e", f"app_release_colour={colour}",
         "-e", f"app_source={source}"],
        capture_output=True, text=True, timeout=600, check=False)


def test_release_on_green_leaves_blue_serving(web, tmp_path):
    blue_pid = show(web, f"{APP}@blue.service")["MainPID"]
    blue_version = request(web, "/api/version")["json"]["version"]
    packed = npm_pack(make_release(tmp_path, "1.0.1", postinstall="id -un > installed-by"), tmp_path)
    run = release(packed, "green")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    # Its install script ran as the app's user, not root, and all of it is root's again.
    installed = web.file(f"/opt/{APP}/green").linked_to
    assert web.file(f"{installed}/installed-by").content_string.strip() == APP
    assert web.check_output(f"find {installed} ! -user root -o ! -group root") == ""
    green = wait_for(web, "/api/version", 200, colour="green")
    assert green["json"]["version"].startswith("1.0.1-")
    assert wait_for(web, "/api/health", 200, colour="green")["json"]["status"] == "healthy"
    assert request(web, "/api/version")["json"]["version"] == blue_version
    assert show(web, f"{APP}@blue.service")["MainPID"] == blue_pid
    assert live_colour(web) == "blue"
    # The same release again changes nothing.
    again = release(packed, "green")
    recap = again.stdout.split("PLAY RECAP", 1)[1]
    assert again.returncode == 0 and set(re.findall(r"changed=(\d+)", recap)) == {"0"}, again.stdout[-3000:]


def test_releases_pruned_to_the_newest_and_the_colours(web, tmp_path):
    blue = web.file(f"/opt/{APP}/blue").linked_to
    for version in ("1.0.2", "1.0.3"):
        run = release(make_release(tmp_path, version), "green")
        assert run.returncode == 0, run.stdout[-4000:]
    green = web.file(f"/opt/{APP}/green").linked_to
    releases = sorted(web.check_output(f"ls /opt/{APP}/releases").split())
    # app_releases_kept is 2: the two newest (1.0.3 on green, 1.0.2), and blue's, whatever its age.
    assert len(releases) == 3, releases
    assert {blue.rsplit("/", 1)[1], green.rsplit("/", 1)[1]} <= set(releases)
    assert any(name.startswith("1.0.2-") for name in releases)
    assert not any(name.startswith("1.0.1-") for name in releases)
    assert wait_for(web, "/api/version", 200, colour="green")["json"]["version"].startswith("1.0.3-")
