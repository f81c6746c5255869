"""Unit tests of the scram_verifier filter: the RFC 7677 exchange, determinism, PostgreSQL's SASLprep,
bad input. Its agreement with a real server and with libpq is tests/integration/test_scram_verifier.py."""
from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.chajipoa.platform.plugins.filter import scram_verifier as plugin
from ansible_collections.chajipoa.platform.plugins.filter.scram_verifier import VERIFIER, FilterModule, build_verifier, saslprep

scram_verifier = FilterModule().filters()["scram_verifier"]


def parts(verifier: str) -> tuple[int, bytes, bytes, bytes]:
    match = VERIFIER.match(verifier)
    assert match, verifier
    iterations, salt, stored_key, server_key = match.groups()
    return int(iterations), base64.b64decode(salt), base64.b64decode(stored_key), base64.b64decode(server_key)


def test_rfc7677_exchange_is_verified_by_the_keys():
    # RFC 7677 section 3: user "user", password "pencil". The client's proof must check against the
    # stored key and the server's signature must come from the server key, as in a real login.
    verifier = build_verifier(b"pencil", base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096)
    _iterations, _salt, stored_key, server_key = parts(verifier)
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth_message = (f"n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
                    f"c=biws,r={nonce}").encode()
    proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client_signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
    client_key = bytes(a ^ b for a, b in zip(proof, client_signature))
    assert hashlib.sha256(client_key).digest() == stored_key
    server_signature = hmac.new(server_key, auth_message, hashlib.sha256).digest()
    assert base64.b64encode(server_signature).decode() == "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_postgresql_format_with_a_16_byte_salt_and_4096_iterations():
    iterations, salt, stored_key, server_key = parts(scram_verifier("app-Secret-1", "chajipoa"))
    assert (iterations, len(salt), len(stored_key), len(server_key)) == (4096, 16, 32, 32)


def test_same_password_and_role_give_the_same_verifier():
    assert scram_verifier("app-Secret-1", "chajipoa") == scram_verifier("app-Secret-1", "chajipoa")


@pytest.mark.parametrize(
    ("password", "role", "iterations"),
    [("app-Secret-2", "chajipoa", 4096), ("app-Secret-1", "analyst", 4096), ("app-Secret-1", "chajipoa", 8192)],
    ids=["other-password", "other-role", "other-iterations"],
)
def test_any_change_of_input_changes_the_salt_and_keys(password, role, iterations):
    base = parts(scram_verifier("app-Secret-1", "chajipoa"))
    other = parts(scram_verifier(password, role, iterations=iterations))
    assert other[0] == iterations
    assert other[1] != base[1] and other[2:] != base[2:]


def test_salt_is_an_iterated_derivation_not_a_fast_hash_of_the_password():
    # Reading the salt must not give a cheaper test of a guessed password than the keys do.
    _iterations, salt, _stored_key, _server_key = parts(scram_verifier("app-Secret-1", "chajipoa"))
    assert salt == hashlib.pbkdf2_hmac("sha256", b"app-Secret-1", plugin.SALT_LABEL + b"chajipoa", 4096, 16)
    assert salt not in {hmac.new(b"app-Secret-1", b"chajipoa", hashlib.sha256).digest()[:16],
                        hmac.new(b"chajipoa", b"app-Secret-1", hashlib.sha256).digest()[:16]}


def test_keys_are_those_of_the_password_and_salt():
    iterations, salt, stored_key, server_key = parts(scram_verifier("app-Secret-1", "chajipoa"))
    salted = hashlib.pbkdf2_hmac("sha256", b"app-Secret-1", salt, iterations)
    assert stored_key == hashlib.sha256(hmac.new(salted, b"Client Key", hashlib.sha256).digest()).digest()
    assert server_key == hmac.new(salted, b"Server Key", hashlib.sha256).digest()


def test_community_postgresql_recognises_the_password_in_the_verifier():
    # postgresql_user's own check (ServerKey from the password and the stored salt) must accept what we
    # store, so a clear-text password given to it later is not taken for a change.
    from ansible_collections.community.postgresql.plugins.module_utils.saslprep import saslprep as community_saslprep

    for password in ("repl:Secret\\2", "Kilimanjaro 5895 m", "ñandú-Ⅸ"):
        iterations, salt, _stored_key, server_key = parts(scram_verifier(password, "replicator"))
        salted = hashlib.pbkdf2_hmac("sha256", community_saslprep(password).encode(), salt, iterations)
        assert hmac.new(salted, b"Server Key", hashlib.sha256).digest() == server_key


def test_a_verifier_is_returned_unchanged():
    verifier = scram_verifier("app-Secret-1", "chajipoa")
    assert scram_verifier(verifier, "analyst") == verifier


def test_documented_sample_is_the_filters_output():
    sample = plugin.RETURN.split("sample:")[1].strip()
    # The sample is the verifier of password app-Secret-1 for role chajipoa.
    assert sample == scram_verifier("app-Secret-1", "chajipoa")


@pytest.mark.parametrize(
    ("password", "prepared"),
    [
        ("user", b"user"),
        ("a\tb\x7f", b"a\tb\x7f"),  # ASCII is used as it is, control characters included
        ("I\u00adX", b"IX"),  # RFC 4013 examples: soft hyphen mapped to nothing
        ("\u00aa", b"a"),  # compatibility character normalised
        ("\u2168", b"IX"),
        ("a\u00a0b\u3000c", b"a b c"),  # non-ASCII spaces become spaces
        ("\u200bx", b" x"),  # in both C.1.2 and B.1: PostgreSQL maps it to a space
        ("caf\u0065\u0301", "caf\u00e9".encode()),  # NFKC composes
        ("\u0627\u0031\u0628", "\u0627\u0031\u0628".encode()),  # right-to-left, first and last RandALCat
    ],
)
def test_saslprep_as_postgresql_prepares(password, prepared):
    assert saslprep(password) == prepared


@pytest.mark.parametrize(
    "password",
    [
        "\u00ad",  # nothing left after mapping
        "\u00e9\u0007",  # control character in a non-ASCII password
        "\u00e9\ue000",  # private use
        "\u00e9\u0221",  # unassigned in Unicode 3.2
        "\u0627\u0031",  # right-to-left string not ending with a RandALCat character
        "\u0627a\u0628",  # right-to-left and left-to-right mixed
        "\u2168\u0341",  # the check is on the mapped characters, before normalisation
    ],
)
def test_saslprep_refusal_falls_back_to_the_raw_bytes(password):
    assert saslprep(password) == password.encode("utf-8")


@pytest.mark.parametrize(
    ("password", "role", "iterations", "message"),
    [
        ("", "chajipoa", 4096, "password must be a non-empty string"),
        (None, "chajipoa", 4096, "password must be a non-empty string"),
        (1234, "chajipoa", 4096, "password must be a non-empty string"),
        ("pw", "", 4096, "role name must be a non-empty string"),
        ("pw", None, 4096, "role name must be a non-empty string"),
        ("pw", "chajipoa", 0, "iterations must be an integer >= 1"),
        ("pw", "chajipoa", True, "iterations must be an integer >= 1"),
        ("pw", "chajipoa", "4096", "iterations must be an integer >= 1"),
        ("p\x00w", "chajipoa", 4096, "holds a NUL character"),
        ("p\ud800w", "chajipoa", 4096, "is not valid Unicode"),
    ],
    ids=["empty", "none", "int", "empty-role", "no-role", "zero-iterations", "bool-iterations", "str-iterations",
         "nul", "lone-surrogate"],
)
def test_bad_input_is_refused(password, role, iterations, message):
    with pytest.raises(AnsibleFilterError, match=message):
        scram_verifier(password, role, iterations=iterations)


def test_errors_never_show_the_password():
    with pytest.raises(AnsibleFilterError) as raised:
        scram_verifier("Secret\x00Part", "chajipoa")
    assert "Secret" not in str(raised.value) and "Part" not in str(raised.value)
