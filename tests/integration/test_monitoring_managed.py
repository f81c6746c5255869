"""A managed server's exporter as the monitoring role writes it, against real TLS servers.

RDS and ElastiCache are reached over TLS only, and the monitoring host verifies them with the CA the
inventory names (monitoring_managed_postgres_ca_file: RDS's global bundle). The role's settings file
for one server (templates/etc/default/prometheus-<kind>-exporter-managed.j2) is rendered here for a
throwaway PostgreSQL 15 and Redis 7 with certificates of their own, and Debian's exporters are started
with exactly what it holds (DATA_SOURCE_NAME or REDIS_*, and ARGS, as systemd hands them over). The
servers stand in for the managed ones: no AWS API is involved, and moto has no database servers.
"""
from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible_collections.chajipoa.platform.plugins.module_utils.pg_scratch import give_to_server_user
from tests.integration.test_monitoring_exporters import (MONITORING_PASSWORD, MONITORING_USER, PRIMARY_VIEW,
                                                         StatementsServer, exporter, monitored_server, needed, scrape)
from tests.ports import free_port
from tests.redisserver import RedisServer, make_tls_files
from tests.unit.roles import monitoring


class TlsServer(StatementsServer):
    """The exporter test's server, with TLS: a certificate for localhost and 127.0.0.1 from a CA of its own."""

    ca_file: Path

    def _write_settings(self) -> None:
        super()._write_settings()
        self.ca_file, cert, key = make_tls_files(self.dir, "server")
        for path in (cert, key):
            give_to_server_user(path)
        with (self.datadir / "postgresql.auto.conf").open("a") as settings:
            settings.write(f"ssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n")


@pytest.fixture(scope="module")
def tls_server() -> Iterator[TlsServer]:
    yield from monitored_server(TlsServer())


def settings_file(kind: str, address: str, port: int, ca_file: Path | None, **overrides) -> tuple[dict[str, str], list[str], int]:
    """The role's settings of one managed server's exporter, the role's CA path replaced by `ca_file`:
    the environment, ARGS split as systemd splits $ARGS, and the loopback port it listens on."""
    listen_port = free_port()
    server = {"kind": kind, "name": "managed-1", "address": address, "port": port, "listen_port": listen_port}
    text = monitoring.render(Path(f"etc/default/prometheus-{kind}-exporter-managed.j2"), item=server,
                             monitoring_postgres_user=MONITORING_USER, monitoring_postgres_password=MONITORING_PASSWORD,
                             **{f"monitoring_managed_{kind}_ca_file": str(ca_file or "")},
                             _monitoring_managed_ca={kind: str(ca_file)}, **overrides)
    environment = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("=", 1)
            environment[name] = shlex.split(value)[0]
    return environment, shlex.split(environment.pop("ARGS")), listen_port


def postgres_scrape(tls_server: TlsServer, address: str, ca_file: Path | None, tmp_path: Path) -> dict[str, list[str]]:
    environment, args, port = settings_file("postgres", address, tls_server.port, ca_file)
    queries = Path(args[1].split("=", 1)[1])
    assert str(queries) == monitoring.render("{{ _monitoring_postgres_queries }}")
    local_queries = tmp_path / "queries.yaml"
    local_queries.write_text(monitoring.render(monitoring.POSTGRES_QUERIES))
    args[1] = f"--extend.query-path={local_queries}"
    assert "sslmode=verify-full" in environment["DATA_SOURCE_NAME"]
    with exporter(["prometheus-postgres-exporter", *args], port, env=environment, log=tmp_path / "log"):
        return scrape(port)


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1"])
def test_postgres_exporter_verifies_the_managed_server(tmp_path, tls_server, address):
    served = postgres_scrape(tls_server, address, tls_server.ca_file, tmp_path)
    assert [line.split()[-1] for line in served["pg_up"]] == ["1"], (tmp_path / "log").read_text()
    # A server without standbys: the primary's view of them has no rows.
    assert needed("postgres") - set(served) == PRIMARY_VIEW


def test_postgres_exporter_refuses_a_server_another_ca_signed(tmp_path, tls_server):
    other_ca = make_tls_files(tmp_path, "other")[0]
    served = postgres_scrape(tls_server, "localhost", other_ca, tmp_path)
    assert [line.split()[-1] for line in served["pg_up"]] == ["0"]
    assert "certificate" in (tmp_path / "log").read_text()


def test_postgres_exporter_without_a_ca_file_trusts_only_the_system_store(tmp_path, tls_server):
    """An RDS CA the inventory forgot: the test CA is in no system store, so the server is refused."""
    served = postgres_scrape(tls_server, "localhost", None, tmp_path)
    assert [line.split()[-1] for line in served["pg_up"]] == ["0"]


def redis_scrape(redis: RedisServer, ca_file: Path, tmp_path: Path, **overrides) -> dict[str, list[str]]:
    environment, args, port = settings_file("redis", "localhost", redis.port, ca_file,
                                            monitoring_managed_redis_user=redis.user,
                                            monitoring_managed_redis_password=redis.password, **overrides)
    assert environment["REDIS_ADDR"] == f"rediss://localhost:{redis.port}"
    with exporter(["prometheus-redis-exporter", *args], port, env=environment, log=tmp_path / "log"):
        return scrape(port)


def test_redis_exporter_verifies_the_managed_server_and_skips_config(tmp_path):
    """ElastiCache refuses CONFIG: the exporter must not need it for what the rules read."""
    with RedisServer() as redis:
        served = redis_scrape(redis, redis.ca_file, tmp_path)
        assert served["redis_up"] == ["redis_up 1"], (tmp_path / "log").read_text()
        assert needed("redis") - set(served) == set()
        refused = redis_scrape(redis, make_tls_files(tmp_path, "other")[0], tmp_path)
        assert refused["redis_up"] == ["redis_up 0"]


def test_an_auth_token_alone_writes_no_user(tmp_path):
    environment, _args, _port = settings_file("redis", "master.example.cache.amazonaws.com", 6379, None,
                                              monitoring_managed_redis_user="", monitoring_managed_redis_password="token/1")
    assert "REDIS_USER" not in environment and environment["REDIS_PASSWORD"] == "token/1"
