"""Unit tests of the certificate_current filter on keys and certificates made here with cryptography, as the
pki role makes them (ECC secp256r1, a self-signed CA with CA:TRUE, host certificates it signs)."""
from __future__ import annotations

import datetime
import ipaddress

import pytest
from ansible.errors import AnsibleFilterError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.chajipoa.platform.plugins.filter.certificate_current import FilterModule

certificate_current = FilterModule().filters()["certificate_current"]
NOW = datetime.datetime.now(datetime.timezone.utc)
NAMES = ("DNS:db1", "DNS:db1.dev.chajipoa.lan", "DNS:localhost", "IP:127.0.0.1", "IP:172.30.80.11")


def pem_key(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def pem(certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def issue(subject_key, common_name, issuer=None, issuer_key=None, ca=False, names=NAMES, usages=(ExtendedKeyUsageOID.SERVER_AUTH,),
          not_after=NOW + datetime.timedelta(days=825)):
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer.subject if issuer else subject)
               .public_key(subject_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(not_after))
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    else:
        alternatives = [x509.DNSName(name[4:]) if name.startswith("DNS:") else x509.IPAddress(ipaddress.ip_address(name[3:])) for name in names]
        builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    return builder.sign(issuer_key or subject_key, hashes.SHA256())


@pytest.fixture(scope="module")
def authority():
    key = ec.generate_private_key(ec.SECP256R1())
    return key, issue(key, "ChajiPoa development CA", ca=True)


@pytest.fixture(scope="module")
def host(authority):
    ca_key, ca = authority
    key = ec.generate_private_key(ec.SECP256R1())
    return key, issue(key, "db1", ca, ca_key)


def current(host_pair, authority, common_name="db1", names=NAMES, usages=("serverAuth",)):
    key, certificate = host_pair
    return certificate_current(pem(certificate), pem_key(key), pem(authority[1]), common_name, list(names), list(usages))


def test_a_certificate_as_issued_is_current(host, authority):
    assert current(host, authority) is True


def test_names_compare_as_names_not_as_strings(host, authority):
    assert current(host, authority, names=["IP:172.30.80.11", "DNS:DB1", "DNS:db1.dev.chajipoa.lan", "DNS:localhost", "IP:127.0.0.1"])


@pytest.mark.parametrize("names", [NAMES[:-1], (*NAMES, "IP:172.30.80.99"), (*NAMES[:-1], "IP:172.30.80.12")])
def test_another_address_or_name_is_not_current(host, authority, names):
    assert current(host, authority, names=names) is False


@pytest.mark.parametrize("usages", [(), ("clientAuth",), ("serverAuth", "clientAuth")])
def test_other_usages_are_not_current(host, authority, usages):
    assert current(host, authority, usages=usages) is False


def test_another_common_name_is_not_current(host, authority):
    assert current(host, authority, common_name="db2") is False


def test_a_certificate_of_another_ca_is_not_current(host):
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = issue(other_key, "ChajiPoa development CA", ca=True)
    assert current(host, (other_key, other)) is False


def test_a_key_that_is_not_the_certificates_is_not_current(host, authority):
    assert current((ec.generate_private_key(ec.SECP256R1()), host[1]), authority) is False


def test_an_expired_certificate_is_not_current(authority):
    ca_key, ca = authority
    key = ec.generate_private_key(ec.SECP256R1())
    expired = issue(key, "db1", ca, ca_key, not_after=NOW - datetime.timedelta(seconds=1))
    assert current((key, expired), authority) is False


def test_a_key_of_another_type_is_not_current(authority):
    ca_key, ca = authority
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert current((key, issue(key, "db1", ca, ca_key)), authority) is False


@pytest.mark.parametrize("broken", ["", "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----"])
def test_an_unreadable_file_is_not_current(host, authority, broken):
    key, certificate = host
    assert certificate_current(broken, pem_key(key), pem(authority[1]), "db1", list(NAMES), ["serverAuth"]) is False
    assert certificate_current(pem(certificate), broken, pem(authority[1]), "db1", list(NAMES), ["serverAuth"]) is False
    assert certificate_current(pem(certificate), pem_key(key), broken, "db1", list(NAMES), ["serverAuth"]) is False


def test_the_ca_itself(authority, host):
    ca_key, ca = authority
    assert certificate_current(pem(ca), pem_key(ca_key)) is True
    assert certificate_current(pem(ca), pem_key(ec.generate_private_key(ec.SECP256R1()))) is False
    host_key, host_certificate = host
    assert certificate_current(pem(host_certificate), pem_key(host_key)) is False, "not a CA"


def test_names_and_usages_it_cannot_compare_are_refused(host, authority):
    with pytest.raises(AnsibleFilterError, match="'email:ops@example.org'"):
        current(host, authority, names=["email:ops@example.org"])
    with pytest.raises(AnsibleFilterError, match="extended key usages"):
        current(host, authority, usages=("anyExtendedKeyUsage",))
