"""The servers the backup tests stand on: a real PostgreSQL with the rental dataset, and moto's S3.

If these fail, a backup test failing says nothing about the backup.
"""
from __future__ import annotations

import base64
import hashlib

import boto3
import psycopg
import pytest
from psycopg import sql

# The sizes create_rental_dataset documents for the default rows=20000.
DEFAULT_SIZES = {
    "tz_power.regions": 12,
    "tz_power.stations": 500,
    "tz_power.power_banks": 5000,
    "tz_power.customers": 10000,
    "tz_power.rentals": 20000,
    "tz_power.documents": 2,
    "Zemo Ops.vehicles": 400,
    "Zemo Ops.bookings": 10000,
    "Zemo Ops.Vehicle Photos": 2000,
}


def one(pg_server, query, params=None):
    return pg_server.execute(query, "rental", params=params)[0][0]


def test_dataset_counts_are_the_tables_counts(pg_server, rental_db):
    assert rental_db["database"] == "rental"
    tables = pg_server.execute(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind = 'r' AND n.nspname IN ('tz_power', 'Zemo Ops')", dbname="rental")
    assert sorted(rental_db["tables"]) == sorted(name for (name,) in tables)
    with pg_server.connect("rental") as conn:
        for name, rows in rental_db["tables"].items():
            schema, table = name.split(".", 1)
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
            assert conn.execute(query).fetchone()[0] == rows, name
    for name, rows in DEFAULT_SIZES.items():
        assert rental_db["tables"][name] == rows, name
    # A payment for every rental with a fee: all but the open (active, overdue) ones.
    assert rental_db["tables"]["tz_power.payments"] == one(
        pg_server, "SELECT count(*) FROM tz_power.rentals WHERE fee_tzs > 0") > 15000
    assert sum(rental_db["tables"].values()) > 50000


def test_dataset_has_every_object_kind_a_backup_must_carry(pg_server, rental_db):
    def exists(query, *params):
        return one(pg_server, f"SELECT EXISTS ({query})", params or None)

    # Names that need quoting.
    assert exists("SELECT FROM pg_namespace WHERE nspname = 'Zemo Ops'")
    assert exists("SELECT FROM pg_class WHERE oid = to_regclass('\"Zemo Ops\".\"Vehicle Photos\"')")
    assert exists("SELECT FROM pg_attribute WHERE attrelid = '\"Zemo Ops\".vehicles'::regclass AND attname = 'Plate No'")

    # A view, and a materialized view with data.
    assert one(pg_server, "SELECT relkind FROM pg_class WHERE oid = 'tz_power.station_utilisation'::regclass") == "v"
    assert one(pg_server, "SELECT ispopulated FROM pg_matviews WHERE schemaname = 'tz_power' AND matviewname = 'daily_revenue'")
    assert one(pg_server, "SELECT sum(payments) FROM tz_power.daily_revenue") == rental_db["tables"]["tz_power.payments"]

    # A plpgsql trigger function, its trigger, and that it fires.
    assert one(pg_server, """
        SELECT l.lanname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_language l ON l.oid = p.prolang
         WHERE t.tgrelid = 'tz_power.customers'::regclass AND t.tgname = 'customers_touch_updated_at'
           AND p.proname = 'touch_updated_at'""") == "plpgsql"
    with pg_server.connect("rental", autocommit=False) as conn:
        conn.execute("UPDATE tz_power.customers SET language = 'en' WHERE id = 1")
        assert conn.execute("SELECT updated_at = now() FROM tz_power.customers WHERE id = 1").fetchone()[0]
        conn.rollback()

    # SQL functions, callable.
    for function in ("tz_power.rental_fee_tzs(integer)", '"Zemo Ops".booking_days(date,date)'):
        assert one(pg_server, "SELECT l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang"
                              " WHERE p.oid = %s::regprocedure", [function]) == "sql"
    assert one(pg_server, "SELECT tz_power.rental_fee_tzs(61)") == 1000
    assert one(pg_server, "SELECT \"Zemo Ops\".booking_days('2025-03-01', '2025-03-03')") == 3

    # Contrib extensions, in use: citext compares without case, pgcrypto feeds a generated column.
    extensions = pg_server.execute("SELECT extname FROM pg_extension", dbname="rental")
    assert {"citext", "pgcrypto"} <= {name for (name,) in extensions}
    assert exists("SELECT FROM tz_power.customers WHERE email = 'HAMISI.MWAKYUSA3@EXAMPLE.CO.TZ'")
    assert one(pg_server, "SELECT attgenerated FROM pg_attribute"
                          " WHERE attrelid = '\"Zemo Ops\".\"Vehicle Photos\"'::regclass AND attname = 'image_sha256'") == "s"
    assert one(pg_server, "SELECT bool_and(image_sha256 = sha256(image)) FROM \"Zemo Ops\".\"Vehicle Photos\"")

    # Enums.
    assert one(pg_server, "SELECT enum_range(NULL::tz_power.rental_status)::text") == "{active,returned,overdue,lost}"
    assert one(pg_server, "SELECT count(*) FROM pg_type WHERE typtype = 'e'"
                          " AND typnamespace = 'tz_power'::regnamespace") == 2

    # Large objects, referenced from a table, one spanning many pages.
    assert rental_db["large_objects"] == 2
    assert one(pg_server, "SELECT count(*) FROM pg_largeobject_metadata") == 2
    assert one(pg_server, "SELECT count(*) FROM tz_power.documents d JOIN pg_largeobject_metadata m ON m.oid = d.body") == 2
    assert one(pg_server, "SELECT max(length(lo_get(body))) FROM tz_power.documents") > 100_000
    assert one(pg_server, "SELECT convert_from(lo_get(body), 'UTF8') FROM tz_power.documents WHERE language = 'sw'"
               ).startswith("Masharti ya matumizi")

    # Sequences: serial, identity and a free-standing one, each past the ids in use.
    sequences = pg_server.execute("SELECT schemaname || '.' || sequencename, last_value FROM pg_sequences"
                                  " WHERE schemaname IN ('tz_power', 'Zemo Ops')", dbname="rental")
    assert sorted(name for name, _last_value in sequences) == sorted(rental_db["sequences"])
    assert {"Zemo Ops.Vehicle Photos_id_seq", "tz_power.power_banks_id_seq", "tz_power.rentals_id_seq",
            "tz_power.receipt_no"} <= set(rental_db["sequences"])
    last = dict(sequences)
    assert last["tz_power.rentals_id_seq"] == 20000
    assert last["Zemo Ops.Vehicle Photos_id_seq"] == 2000
    assert last["tz_power.receipt_no"] == 100000 + rental_db["tables"]["tz_power.payments"]
    assert one(pg_server, "SELECT attidentity FROM pg_attribute"
                          " WHERE attrelid = 'tz_power.power_banks'::regclass AND attname = 'id'") == "a"

    # Constraints and indexes of every kind.
    constraints = dict(pg_server.execute(
        "SELECT contype, count(*) FROM pg_constraint WHERE connamespace IN ('tz_power'::regnamespace,"
        " '\"Zemo Ops\"'::regnamespace) GROUP BY 1", dbname="rental"))
    assert constraints == {"p": 10, "f": 9, "u": 10, "c": 22}
    assert exists("SELECT FROM pg_index WHERE indrelid = 'tz_power.rentals'::regclass AND indisunique"
                  " AND indpred IS NOT NULL")
    assert one(pg_server, "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
                          " WHERE c.relnamespace = 'tz_power'::regnamespace AND i.indexprs IS NOT NULL") >= 2

    # Comments.
    assert one(pg_server, "SELECT obj_description('\"Zemo Ops\"'::regnamespace, 'pg_namespace')").startswith("Vehicle rental")
    assert one(pg_server, "SELECT d.description FROM pg_description d"
                          " JOIN pg_attribute a ON a.attrelid = d.objoid AND a.attnum = d.objsubid"
                          " WHERE a.attrelid = '\"Zemo Ops\".vehicles'::regclass AND a.attname = 'Plate No'"
               ).startswith("Registration plate")
    assert exists("SELECT FROM pg_description d JOIN pg_largeobject_metadata m ON m.oid = d.objoid"
                  " WHERE d.classoid = 'pg_largeobject'::regclass")


def test_tcp_login_needs_the_password(pg_server):
    base = f"host={pg_server.host} port={pg_server.port} user={pg_server.user} dbname=postgres passfile=/nonexistent"
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(base, connect_timeout=10)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(f"{base} password=wrong", connect_timeout=10)
    with psycopg.connect(f"{base} password={pg_server.password}") as conn:
        assert conn.execute("SHOW password_encryption").fetchone()[0] == "scram-sha-256"
        methods = {row[0] for row in conn.execute("SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host'")}
        assert methods == {"scram-sha-256"}
        assert conn.execute("SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid"
                            " WHERE rolname = 'postgres'").fetchone()[0]


def test_cluster_is_a_throwaway_on_loopback(pg_server):
    settings = dict(pg_server.execute(
        "SELECT name, setting FROM pg_settings WHERE name IN ('listen_addresses', 'fsync', 'port',"
        " 'full_page_writes', 'server_version_num', 'unix_socket_directories', 'data_directory')"))
    assert settings["listen_addresses"] == "127.0.0.1"
    assert settings["port"] == str(pg_server.port)
    assert settings["fsync"] == settings["full_page_writes"] == "off"
    assert settings["server_version_num"].startswith("15")
    assert settings["unix_socket_directories"] == str(pg_server.dir)
    assert settings["data_directory"].startswith(str(pg_server.dir))


def test_s3_object_keeps_checksum_and_encryption(moto_s3, s3_bucket):
    s3 = moto_s3.client()
    assert s3.get_bucket_location(Bucket=s3_bucket)["LocationConstraint"] == "af-south-1"
    body = b"pg_dump custom-format archive stand-in\n" * 1000
    expected = base64.b64encode(hashlib.sha256(body).digest()).decode()

    put = s3.put_object(Bucket=s3_bucket, Key="rental/2025-01-01.dump", Body=body,
                        ChecksumAlgorithm="SHA256", ServerSideEncryption="AES256")
    assert put["ChecksumSHA256"] == expected
    head = s3.head_object(Bucket=s3_bucket, Key="rental/2025-01-01.dump", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == expected
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentLength"] == len(body)
    assert s3.get_object(Bucket=s3_bucket, Key="rental/2025-01-01.dump")["Body"].read() == body


def test_aws_env_reaches_moto_without_explicit_credentials(moto_s3, s3_bucket, aws_env):
    s3 = boto3.client("s3", endpoint_url=moto_s3.endpoint_url)
    assert s3_bucket in {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}
    assert aws_env["AWS_DEFAULT_REGION"] == "af-south-1"
