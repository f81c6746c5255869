"""Servers the integration tests run against on this host: a real PostgreSQL 15, a real Redis and a
local S3.

PostgreSQL and Redis come from the Debian packages `lab/test-deps.sh` installs (`make unit` runs
it); a missing server fails the tests rather than skipping them, so a green run always means the
backups and the reference API were tested. S3 is moto's server, in this process, on a loopback port of its own: the code under
test talks HTTP to it like to AWS, given the endpoint and the dummy credentials below.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest

from tests.datasets import create_rental_dataset
from tests.pgserver import PostgresNotInstalled, PostgresServer
from tests.redisserver import RedisNotInstalled, RedisServer

AWS_REGION = "af-south-1"
# Dummy, and only ever passed explicitly (or through the aws_env fixture), so nothing here can
# reach a real AWS account whatever credentials the developer's environment holds.
AWS_DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": AWS_REGION,
    # The SDKs otherwise probe the EC2 metadata address for credentials, which hangs off AWS.
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(scope="session")
def pg_server():
    """A running PostgresServer (tests/pgserver.py): .host, .port, .user, .password, .conninfo(),
    .env(), .connect(), .execute(), .create_database(), .drop_database(); removed after the session."""
    server = PostgresServer()
    try:
        server.start()
    except PostgresNotInstalled as exc:
        pytest.fail(f"{exc}. The backup tests need a real PostgreSQL 15: run `lab/test-deps.sh` as root "
                    "or `make unit`.", pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def redis_server():
    """A running RedisServer (tests/redisserver.py), TLS only with an ACL user: .url, .ca_file, .env(),
    .command(), and .stop()/.kill()/.start() to take it away and bring it back on the same port;
    removed after the test."""
    server = RedisServer()
    try:
        server.start()
    except RedisNotInstalled as exc:
        pytest.fail(f"{exc}.", pytrace=False)
    yield server
    server.remove()


@pytest.fixture(scope="session")
def rental_db(pg_server) -> dict:
    """Database `rental` on pg_server with the default dataset, built once per session. The dict of
    tests.datasets.create_rental_dataset: database, tables {"schema.table": rows}, sequences,
    large_objects, size_bytes. Tests must leave it unchanged (restore into a database of their own)."""
    return create_rental_dataset(pg_server, "rental")


@dataclass
class MotoS3:
    """moto's S3 on 127.0.0.1: its endpoint and the dummy credentials to reach it."""

    endpoint_url: str
    region: str = AWS_REGION
    env: dict = field(default_factory=lambda: dict(AWS_DUMMY_ENV))

    def client(self):
        """A boto3 S3 client for this server, with the dummy credentials passed explicitly."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region,
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])


@pytest.fixture(scope="session")
def moto_s3():
    """moto's S3 server for the session (a MotoS3: .endpoint_url, .env, .region, .client()).

    Its buckets live in this process's moto state; a test using moto's in-process mock_aws would
    reset that state, so such tests must not share a session with these.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield MotoS3(endpoint_url=f"http://{host}:{port}")
    server.stop()


@pytest.fixture
def s3_bucket(moto_s3) -> str:
    """A new, empty bucket on moto_s3 (in af-south-1), named uniquely; emptied and removed after the test."""
    s3 = moto_s3.client()
    name = f"chajipoa-test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": moto_s3.region})
    yield name
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
        for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
            s3.delete_object(Bucket=name, Key=item["Key"], VersionId=item["VersionId"])
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def aws_env(moto_s3, monkeypatch) -> dict:
    """The dummy AWS credentials (and region) in os.environ for one test, for code that reads them
    from the environment rather than taking them as arguments; undone after the test."""
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    for key, value in moto_s3.env.items():
        monkeypatch.setenv(key, value)
    return dict(moto_s3.env)
