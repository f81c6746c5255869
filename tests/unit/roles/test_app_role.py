"""The app role offline: the environment its template renders from real inventories (the Tanzania
overlay on production) through ansible-playbook with no host contacted, and the controller-side
release builder (roles/app/files/app_release.py) on real directories and tarballs.
molecule/app runs the role for real."""
from __future__ import annotations

import importlib.util
import json
import tarfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, load_yaml
from tests.unit.roles import inventory_play, rendering

PLAY = Path(__file__).with_name("app_environment.yml")
PGBOUNCER_PLAY = Path(__file__).with_name("pgbouncer_config.yml")
MIGRATION_PLAY = Path(__file__).with_name("app_migration.yml")

spec = importlib.util.spec_from_file_location("app_release", ROOT / "roles/app/files/app_release.py")
app_release = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app_release)


def environments(*inventories: str) -> dict[str, dict[str, str]]:
    """Each app host's rendered environment file, parsed, as ansible-playbook printed it."""
    return {host: parse(text) for host, text in inventory_play.last_task_messages(PLAY, *inventories).items()}


def parse(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, quoted = line.split("=", 1)
            assert quoted.startswith('"') and quoted.endswith('"'), line
            values[name] = quoted[1:-1].replace('\\"', '"').replace("\\$", "$").replace("\\\\", "\\")
    return values


def test_tanzania_market_and_the_managed_endpoints_reach_the_environment():
    """The endpoints are those playbooks/aws-production.yml recorded in production's aws_endpoints.yml."""
    endpoints = load_yaml(ROOT / "inventories/production/group_vars/all/aws_endpoints.yml")["aws_endpoints"]
    hosts = environments("production", "tanzania")
    assert set(hosts) == {"app1.prod.chajipoa.internal", "app2.prod.chajipoa.internal"}
    for env in hosts.values():
        assert env["TZ"] == "Africa/Dar_es_Salaam"
        assert env["APP_LOCALE"] == "sw_TZ" and env["APP_LANGUAGES"] == "sw,en" and env["APP_COUNTRY"] == "TZ"
        assert env["APP_CURRENCY"] == "TZS" and env["APP_VAT_PERCENT"] == "18"
        assert env["PAYMENT_GATEWAY"] == "azampay"
        # AzamPay's credentials, from the vault (the validation play refuses them blank: the market names a gateway).
        assert env["PAYMENT_CLIENT_ID"].startswith("test-app_payment_client_id-")
        assert env["PAYMENT_CLIENT_SECRET"].startswith("test-app_payment_client_secret-")
        assert env["EMAIL_FROM"] == "noreply@chajipoa.co.tz"
        assert env["MOBILE_MONEY_PROVIDERS"] == "M-Pesa,Tigo Pesa,Airtel Money,Halopesa"
        assert env["DATABASE_URL"] == (
            "postgresql://chajipoa:test-postgres_app_password-0123456789abcdef0123456789abcdef@127.0.0.1:6432/chajipoa"
            "?sslmode=verify-full&sslrootcert=/etc/chajipoa/apps/reference-api/database-ca.crt"
            "&connection_limit=20&pool_timeout=20")
        # The app connects to PgBouncer on this host: sslrootcert is the CA that signed PgBouncer's
        # certificate (test_the_app_verifies_pgbouncer_with_the_ca_that_signed_its_certificate), not RDS's.
        # ElastiCache's AUTH token is the default user's password (production's group_vars/app/managed.yml).
        assert env["REDIS_URL"].startswith("rediss://default:test-redis_app_password-")
        assert env["REDIS_URL"].endswith(f"@{endpoints['redis']['address']}:{endpoints['redis']['port']}")
        assert f"@{endpoints['documentdb']['address']}:{endpoints['documentdb']['port']}/chajipoa?" in env["MONGODB_URL"]
        assert env["MONGODB_URL"].endswith("&replicaSet=rs0&authSource=admin&retryWrites=false")
        assert env["REDIS_CA_FILE"] == "/etc/chajipoa/apps/reference-api/redis-ca.crt"
        assert env["JWT_SECRET"].startswith("test-app_jwt_secret-")
        assert env["PORT"] == "3001" and env["HOST"] == "127.0.0.1" and env["APP_VERSION"] == "1.0.0-0123456789ab"
        assert "SENTRY_DSN" not in env


def test_the_app_verifies_pgbouncer_with_the_ca_that_signed_its_certificate():
    """DATABASE_URL names 127.0.0.1:6432 with verify-full: the database CA the app installs must be the
    one that signed PgBouncer's certificate. RDS's bundle signs RDS's certificate only, and is what
    PgBouncer itself verifies RDS with."""
    inventory = ROOT / "inventories/production"
    for wiring in inventory_play.last_task_messages(PGBOUNCER_PLAY, "production", "tanzania").values():
        assert wiring["app_database_ca"] == wiring["client_ca"] == f"{inventory}/files/pki/ca.crt"
        assert wiring["server_ca"] == f"{inventory}/files/rds-global-bundle.pem"


def test_production_alone_has_no_market_but_its_providers():
    for env in environments("production").values():
        assert env["TZ"] == "Etc/UTC"
        assert not {"APP_CURRENCY", "APP_LOCALE", "PAYMENT_GATEWAY", "MOBILE_MONEY_PROVIDERS"} & set(env)
        # No gateway named, so its credentials stay out even though the vault holds them.
        assert not {"PAYMENT_CLIENT_ID", "PAYMENT_CLIENT_SECRET"} & set(env)
        assert env["SMS_PROVIDER"] == "africastalking" and env["SMS_USERNAME"] and env["SMS_SENDER_ID"]
        assert env["SMS_API_KEY"].startswith("test-app_sms_api_key-")
        assert env["EMAIL_PROVIDER"] == "sendgrid" and env["EMAIL_FROM"] == "noreply@chajipoa.example.com"
        assert env["EMAIL_API_KEY"].startswith("test-app_email_api_key-")


def render_env(**overrides) -> str:
    variables = {
        **rendering.role_variables("app"),
        "role_path": str(ROOT / "roles/app"),
        "__app_colour": "green",
        "__app_build": {"stdout": '{"version": "2.0.0-abcdefabcdef"}'},
        "app_redis_host": "fd00::13",
        "postgres_app_password": "p/w:@?#%",
        "redis_app_password": "r/w",
        "app_jwt_secret": "j" * 32,
        "app_jwt_refresh_secret": "k" * 32,
        **overrides,
    }
    return rendering.render("app", "etc/chajipoa/apps/app.env.j2", variables)


def test_passwords_are_url_encoded_and_ipv6_bracketed():
    env = parse(render_env())
    assert env["DATABASE_URL"].startswith("postgresql://chajipoa:p%2Fw%3A%40%3F%23%25@127.0.0.1:6432/")
    assert env["REDIS_URL"] == "rediss://app:r%2Fw@[fd00::13]:6379"
    assert env["PORT"] == "3002" and env["APP_COLOUR"] == "green"


def test_quotes_backslashes_and_dollars_stay_literal():
    text = render_env(app_sentry_dsn='https://k"e\\y$HOME@sentry.example/1')
    assert 'SENTRY_DSN="https://k\\"e\\\\y\\$HOME@sentry.example/1"' in text
    assert parse(text)["SENTRY_DSN"] == 'https://k"e\\y$HOME@sentry.example/1'


def test_extra_variables_join_and_optional_ones_stay_out():
    env = parse(render_env(app_environment_extra={"FEATURE_FLAGS": "ussd"}, app_mongodb_hosts=["10.0.0.1:27017"],
                           mongodb_app_password="m", app_mongodb_replica_set="rs0"))
    assert env["FEATURE_FLAGS"] == "ussd"
    assert env["MONGODB_URL"] == ("mongodb://chajipoa:m@10.0.0.1:27017/chajipoa?tls=true"
                                  "&tlsCAFile=/etc/chajipoa/apps/reference-api/ca.crt&replicaSet=rs0")
    assert "SMS_API_KEY" not in env and "PAYMENT_CLIENT_SECRET" not in env
    options = parse(render_env(app_mongodb_hosts=["10.0.0.1:27017"], mongodb_app_password="m",
                               app_mongodb_url_options={"authSource": "admin", "readPreference": "secondaryPreferred"}))
    assert options["MONGODB_URL"].endswith("/chajipoa?tls=true&tlsCAFile=/etc/chajipoa/apps/reference-api/ca.crt"
                                           "&authSource=admin&readPreference=secondaryPreferred")


def test_the_preflight_knows_every_name_the_role_sets():
    variables = rendering.role_variables("app")
    rendered = rendering.render("app", "{{ _app_environment_role.keys() | list }}", {
        **variables, "__app_colour": "blue", "__app_build": {"stdout": '{"version": "1"}'}, "app_redis_host": "h",
        "postgres_app_password": "p", "redis_app_password": "r", "app_jwt_secret": "j", "app_jwt_refresh_secret": "k"})
    assert list(rendered) == variables["_app_environment_names"]


# What a skipped task registers, and a command that ran and succeeded.
SKIPPED = {"skipped": True, "changed": False}
SUCCEEDED = {"changed": True, "rc": 0}


@pytest.mark.parametrize(("command", "migration", "expected"), [
    (None, SKIPPED, []),
    ("npm run migrate", SUCCEEDED, ["Environment of the migration", "Migration of the release {{ _app_version }}",
                                    "Record that the release is migrated"]),
])
def test_no_migration_runs_unless_a_command_is_configured(command, migration, expected):
    """The default app_migration_command (empty) skips every migration task of a release; the same
    conditions with a command run them, so that the first case cannot pass for a broken evaluation."""
    variables = {**rendering.role_variables("app"), "__app_colour": "blue", "__app_migration": migration}
    if command is not None:
        variables["app_migration_command"] = command
    tasks = [task for task in load_yaml(ROOT / "roles/app/tasks/deploy.yml") if "migrat" in task["name"].lower()]
    assert len(tasks) == 4, [task["name"] for task in tasks]
    running = []
    for task in tasks:
        conditions = task["when"] if isinstance(task["when"], list) else [task["when"]]
        if all(rendering.render("app", f"{{{{ ({condition}) | bool }}}}", variables) for condition in conditions):
            running.append(task["name"])
    assert running == expected


@pytest.mark.parametrize("inventories", [("production",), ("production", "tanzania")])
def test_production_app_hosts_migrate_each_release(inventories):
    """The reference API production deploys creates its tables in its migrations: without the
    command every release would start on a database without them."""
    commands = inventory_play.last_task_messages(MIGRATION_PLAY, *inventories)
    assert set(commands) == {"app1.prod.chajipoa.internal", "app2.prod.chajipoa.internal"}
    assert set(commands.values()) == {"npm run migrate"}


# --- The release builder -----------------------------------------------------------------------

def make_app(path: Path, version: str = "1.2.3", code: str = "console.log(1)\n") -> Path:
    path.mkdir(parents=True)
    (path / "package.json").write_text(json.dumps({"name": "demo", "version": version}))
    (path / "package-lock.json").write_text("{}")
    (path / "index.js").write_text(code)
    (path / "node_modules" / "left-pad").mkdir(parents=True)
    (path / "node_modules" / "left-pad" / "index.js").write_text("junk")
    return path


def test_same_content_same_release_and_archive(tmp_path):
    first = app_release.build(make_app(tmp_path / "a"), tmp_path / "out")
    second = app_release.build(make_app(tmp_path / "b"), tmp_path / "out2")
    assert first["version"] == second["version"] and first["version"].startswith("1.2.3-")
    assert Path(first["archive"]).read_bytes() == Path(second["archive"]).read_bytes()


def test_changed_code_is_a_new_release_under_the_same_version(tmp_path):
    first = app_release.build(make_app(tmp_path / "a"), tmp_path / "out")
    second = app_release.build(make_app(tmp_path / "b", code="console.log(2)\n"), tmp_path / "out")
    assert first["version"] != second["version"] and second["version"].startswith("1.2.3-")


def test_archive_holds_one_release_directory_without_node_modules(tmp_path):
    built = app_release.build(make_app(tmp_path / "a"), tmp_path / "out")
    with tarfile.open(built["archive"]) as archive:
        names = archive.getnames()
        assert all(name.split("/", 1)[0] == built["version"] for name in names)
        assert not any("node_modules" in name for name in names)
        assert all(member.uid == 0 and member.mtime == 0 for member in archive.getmembers())


def test_npm_pack_tarball_is_the_same_release_as_its_directory(tmp_path):
    # As npm pack lays it out: under package/, the lockfile as npm-shrinkwrap.json (it never packs
    # package-lock.json; molecule/app deploys a tarball npm itself packed).
    source = make_app(tmp_path / "a")
    (source / "package-lock.json").rename(source / "npm-shrinkwrap.json")
    packed = tmp_path / "demo-1.2.3.tgz"
    with tarfile.open(packed, "w:gz") as archive:
        for name in ("package.json", "npm-shrinkwrap.json", "index.js"):
            archive.add(source / name, arcname=f"package/{name}")
    built = app_release.build(packed, tmp_path / "o1")
    assert built["version"] == app_release.build(source, tmp_path / "o2")["version"]
    with tarfile.open(built["archive"]) as archive:
        assert f"{built['version']}/npm-shrinkwrap.json" in archive.getnames()


def test_a_tarball_keeps_its_top_level_dotfiles(tmp_path):
    """tar's ./ prefix is taken off the names, not the leading dot of a dotfile (./.npmrc is .npmrc,
    the npm configuration npm ci reads), at the top of the tarball and under one top directory."""
    source = make_app(tmp_path / "a")
    (source / ".npmrc").write_text("engine-strict=true\n")
    built = {}
    for layout, prefix in (("flat", "./"), ("packed", "./package/")):
        tarball = tmp_path / f"{layout}.tgz"
        with tarfile.open(tarball, "w:gz") as archive:
            for name in (".npmrc", "package.json", "package-lock.json", "index.js"):
                archive.add(source / name, arcname=f"{prefix}{name}")
        built[layout] = app_release.build(tarball, tmp_path / layout)
        with tarfile.open(built[layout]["archive"]) as archive:
            names = archive.getnames()
        assert f"{built[layout]['version']}/.npmrc" in names and f"{built[layout]['version']}/npmrc" not in names, names
    assert built["flat"]["version"] == built["packed"]["version"] == app_release.build(source, tmp_path / "dir")["version"]


def test_a_source_without_lockfile_is_refused(tmp_path):
    source = make_app(tmp_path / "a")
    (source / "package-lock.json").unlink()
    with pytest.raises(app_release.ReleaseError, match="has neither npm-shrinkwrap.json nor package-lock.json"):
        app_release.build(source, tmp_path / "out")


# --- The validation gate's rules for the role's inputs -----------------------------------------

@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("app_environment_extra", {"feature_flags": "x"}, "app_environment_extra key 'feature_flags' is not an environment variable name"),
    ("app_environment_extra", {"FLAGS": "a\nDATABASE_URL=x"}, "app_environment_extra.FLAGS holds a newline"),
    ("app_ports", {"blue": 3001, "green": 70000}, "app_ports.green 70000 is out of range"),
    ("app_name", "Reference API", "app_name 'Reference API' is not an application name"),
    ("app_git_version", "v1;rm -rf /", "is not a git tag, branch or commit"),
    ("app_exec_start", "node server.js", "is not an absolute program path"),
    ("app_database_host", "db host", "is not a host name or address"),
    ("app_memory_max", "lots", "is not a systemd size"),
    ("platform_market", {"currency": "tzs", "vat_percent": 18}, "platform_market.currency 'tzs' is not an ISO 4217 currency code"),
    ("platform_market", {"mobile_money": ["M-Pesa", "Tigo\rPesa"]}, "platform_market.mobile_money[1] holds a newline"),
])
def test_the_gate_refuses_bad_app_inputs(variable, value, expected):
    from tests.unit.plugins.filter.test_inventory_faults import faults

    found = faults("app1", app1={variable: value})
    assert any(expected in fault for fault in found), found


def test_the_gate_accepts_the_tanzania_market_and_the_role_defaults():
    from tests.unit.plugins.filter.test_inventory_faults import faults

    market = load_market()
    defaults = {name: value for name, value in rendering.LOADER.load_from_file(str(ROOT / "roles/app/defaults/main.yml")).items()
                if "{{" not in str(value)}
    assert faults("app1", app1={"platform_market": market, **defaults}) == []


def load_market() -> dict:
    return rendering.LOADER.load_from_file(str(ROOT / "inventories/tanzania/group_vars/all/market.yml"))["platform_market"]


def test_the_completion_marker_is_the_archives_last_member(tmp_path):
    built = app_release.build(make_app(tmp_path / "a"), tmp_path / "out")
    with tarfile.open(built["archive"]) as archive:
        assert archive.getnames()[-1] == f"{built['version']}/.chajipoa-release"


@pytest.mark.parametrize("stop_timeout, shutdown_ms", [(30, "29000"), (2, "1000"), (1, "1000")])
def test_the_app_ends_its_stop_before_systemd_kills_it(stop_timeout, shutdown_ms):
    """systemd sends SIGKILL app_stop_timeout seconds after SIGTERM; the API gives up on in-flight
    requests after SHUTDOWN_TIMEOUT_MS (10 s when unset), so a longer app_stop_timeout alone would
    not let long requests finish."""
    env = parse(render_env(app_stop_timeout=stop_timeout))
    assert env["SHUTDOWN_TIMEOUT_MS"] == shutdown_ms
