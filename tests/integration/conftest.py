"""Servers the integration tests run against on this host: a real PostgreSQL 15, a real Redis and a
local AWS (moto: S3, KMS, RDS and DocumentDB, ElastiCache, ...).

PostgreSQL and Redis come from the Debian packages `lab/test-deps.sh` installs (`make integration` runs
it); a missing server fails the tests rather than skipping them, so a green run always means the
backups and the reference API were tested. AWS is moto's server, in this process, on a loopback
port of its own: the code under test talks HTTP to it like to AWS, given the endpoint and the dummy
credentials below.
"""
from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field

import pytest

from tests.datasets import create_rental_dataset
from tests.pgserver import PostgresNotInstalled, PostgresServer
from tests.redisserver import RedisNotInstalled, RedisServer


def require_tools(*tools: str, packages: str) -> None:
    """Fail, never skip, when a program lab/test-deps.sh installs is missing: a green run has used it."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: run lab/test-deps.sh as root ({packages})", pytrace=False)


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
    # Prepared transactions: the one hold on a database that ending its sessions cannot take away
    # (test_verification_faults makes a restore's swap fail with one).
    server = PostgresServer(settings={"max_prepared_transactions": "4"})
    try:
        server.start()
    except PostgresNotInstalled as exc:
        pytest.fail(f"{exc}. The backup tests need a real PostgreSQL 15: run `lab/test-deps.sh` as root "
                    "or `make integration`.", pytrace=False)
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
class MotoAWS:
    """moto's server on 127.0.0.1, every AWS service on one endpoint: the endpoint and the dummy
    credentials to reach it."""

    endpoint_url: str
    region: str = AWS_REGION
    env: dict = field(default_factory=lambda: dict(AWS_DUMMY_ENV))

    def client(self, service: str = "s3"):
        """A boto3 client of the service on this server, with the dummy credentials passed explicitly."""
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=self.region,
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])

    @property
    def module_options(self) -> dict:
        """The connection options of amazon.aws's modules and ours for this server, e.g. for
        module_defaults of group/chajipoa.platform.aws (which extends group/amazon.aws.aws)."""
        return {"endpoint_url": self.endpoint_url, "region": self.region,
                "access_key": self.env["AWS_ACCESS_KEY_ID"], "secret_key": self.env["AWS_SECRET_ACCESS_KEY"]}


@pytest.fixture(scope="session")
def moto_aws():
    """moto's server for the session (a MotoAWS: .endpoint_url, .region, .env, .client(service),
    .module_options), serving every service moto has on one loopback port, in this process.

    Its resources live in this process's moto state for the whole session, so tests name theirs
    uniquely; a test using moto's in-process mock_aws would reset that state, so such tests must not
    share a session with these.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield MotoAWS(endpoint_url=f"http://{host}:{port}")
    server.stop()


@pytest.fixture(scope="session")
def moto_s3(moto_aws):
    """The moto_aws server, named for the tests that use its S3 (.endpoint_url, .env, .region, .client())."""
    return moto_aws


@pytest.fixture(scope="session")
def moto_rds_accepts_docdb(moto_aws):
    """moto_aws whose RDS backend also accepts the engine docdb, which moto lacks: DocumentDB's API is
    RDS's cluster and instance API (boto3's docdb client signs as rds and moto routes it there), so
    this is the one change made to moto, in this process, where ThreadedMotoServer serves it:

    - "docdb" joins moto's lists of cluster and instance engines;
    - a docdb cluster's allocated storage defaults to 1 (DocumentDB's storage grows by itself; moto has
      a default per engine and none for docdb) and a docdb instance's port to 27017, DocumentDB's.

    Nothing else is patched: every answer is moto's RDS answer. Undone at the end of the session.
    """
    from moto.rds import models, utils

    cluster_engines = utils.ClusterEngine.list_cluster_engines.__func__
    instance_engines = utils.DbInstanceEngine.valid_db_instance_engine.__func__
    allocated_storage = models.DBCluster.default_allocated_storage
    instance_port = models.DBInstance.default_port
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(utils.ClusterEngine, "list_cluster_engines", classmethod(lambda cls: cluster_engines(cls) + ["docdb"]))
        patch.setattr(utils.DbInstanceEngine, "valid_db_instance_engine", classmethod(lambda cls: instance_engines(cls) + ["docdb"]))
        patch.setattr(models.DBCluster, "default_allocated_storage", staticmethod(
            lambda engine, storage_type: 1 if engine == "docdb" else allocated_storage(engine, storage_type)))
        patch.setattr(models.DBInstance, "default_port", staticmethod(
            lambda engine: 27017 if engine == "docdb" else instance_port(engine)))
        yield moto_aws


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
