"""The scram_verifier filter against PostgreSQL itself (tests/pgserver.py, a real PostgreSQL 15):
a verifier set with ALTER ROLE lets the password log in over TCP with scram-sha-256 and refuses
others, and the keys equal those the server and libpq compute for the same salt and password."""
from __future__ import annotations

import base64
import uuid

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from ansible_collections.chajipoa.platform.plugins.filter.scram_verifier import VERIFIER, FilterModule, build_verifier, saslprep

scram_verifier = FilterModule().filters()["scram_verifier"]

# Anything a libpq connection string and a SQL literal carry: every code point but NUL and surrogates.
PASSWORDS = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=40)


@pytest.fixture
def role(pg_server):
    name = f"scram_{uuid.uuid4().hex[:10]}"
    pg_server.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)).as_string())
    yield name
    pg_server.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)).as_string())


def set_password(pg_server, role: str, value: str) -> None:
    # A literal, not a parameter: utility statements take none. For a verifier this is the very
    # statement the role's logins task sends.
    pg_server.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(value)).as_string())


def stored(pg_server, role: str) -> str:
    return pg_server.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", params=(role,))[0][0]


def login(pg_server, role: str, password: str) -> None:
    with psycopg.connect(host=pg_server.host, port=pg_server.port, dbname="postgres", user=role,
                         password=password, connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == role


@pytest.mark.parametrize(
    "password",
    ["app-Secret-1", "repl:Secret\\2", "ñandú Ⅸ", "\u0627\u0031", "x" * 200],
    ids=["ascii", "backslash-colon", "normalised", "saslprep-refused", "long"],
)
def test_verifier_lets_the_password_log_in_and_no_other(pg_server, role, password):
    verifier = scram_verifier(password, role)
    set_password(pg_server, role, verifier)
    assert stored(pg_server, role) == verifier  # kept as sent: the server never saw the password
    login(pg_server, role, password)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        login(pg_server, role, password + "x")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=PASSWORDS)
def test_keys_equal_the_servers_for_its_own_salt(pg_server, role, password):
    # The server hashes a clear-text password with a random salt of its own (PostgreSQL 15's
    # backend SASLprep); the same salt given to us must give the same keys.
    with pg_server.connect() as conn:
        conn.execute("SET password_encryption = 'scram-sha-256'")
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
        server = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()[0]
    iterations, salt, _stored_key, _server_key = VERIFIER.match(server).groups()
    assert build_verifier(saslprep(password), base64.b64decode(salt), int(iterations)) == server


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=PASSWORDS)
def test_keys_equal_libpqs_for_its_own_salt(pg_server, password):
    # libpq's PQencryptPasswordConn (the client side of the same code) as a second reference.
    with pg_server.connect() as conn:
        theirs = conn.pgconn.encrypt_password(password.encode(), b"anyone", b"scram-sha-256").decode()
    iterations, salt, _stored_key, _server_key = VERIFIER.match(theirs).groups()
    assert build_verifier(saslprep(password), base64.b64decode(salt), int(iterations)) == theirs
