# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
name: certificate_current
short_description: Whether the development CA's certificate for a host is still what the pki role would issue
version_added: 0.7.0
author: ChajiPoa Infrastructure engineers
description:
  - The pki role issues development certificates on the controller with
    M(community.crypto.openssl_privatekey), M(community.crypto.openssl_csr_pipe) and
    M(community.crypto.x509_certificate), three module calls per host and service on every run, and
    the CA's own four once a run; on a run with nothing to change they all find the files as wanted.
    This filter reads the files on the controller, without a module call, and says whether those
    modules would leave them as they are, so the role runs them only when it would not.
  - A host certificate is current when its key is an ECC secp256r1 key whose public key the certificate
    holds; the certificate was signed by the CA given (its signature verifies with the CA's key); its
    common name is the host's, its subject alternative names are exactly O(names) and its extended key
    usages exactly O(extended_key_usage); and it has not expired.
  - With O(names) omitted, the input is checked as the CA itself, as C(authority.yml) makes it, that is
    a self-signed ECC secp256r1 certificate with C(CA:TRUE) whose key is O(key), not expired.
  - Anything that cannot be read (a missing or malformed file) counts as not current, so the modules run
    and say what is wrong.
positional: key, ca, common_name, names, extended_key_usage
options:
  _input:
    description: The certificate, PEM.
    type: str
    required: true
  key:
    description: Its private key, PEM (unencrypted, as the role writes it).
    type: str
    required: true
  ca:
    description: The CA certificate, PEM. The input itself when checking the CA.
    type: str
  common_name:
    description: The common name the certificate must have.
    type: str
  names:
    description: The subject alternative names, as the role passes them to the signing request
      (C(DNS:db1), C(IP:172.30.80.11)). Omitted when checking the CA.
    type: list
    elements: str
  extended_key_usage:
    description: The extended key usages by their OpenSSL short names (C(serverAuth), C(clientAuth)).
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: Issue only what is not current
  ansible.builtin.debug:
    msg: >-
      {{ lookup('ansible.builtin.file', 'db1-postgres.crt') | chajipoa.platform.certificate_current(
           lookup('ansible.builtin.file', 'db1-postgres.key'), lookup('ansible.builtin.file', 'ca.crt'),
           'db1', ['DNS:db1', 'IP:172.30.80.11'], ['serverAuth']) }}
"""

RETURN = r"""
_value:
  description: True when the modules would leave the files as they are.
  type: bool
"""

import datetime
import ipaddress
from typing import Any

from ansible.errors import AnsibleFilterError

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError:
    # ansible-core requires cryptography on every controller; the message is for one that lacks it.
    x509 = None
else:
    USAGES = {"serverAuth": ExtendedKeyUsageOID.SERVER_AUTH, "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
              "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING, "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
              "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING, "OCSPSigning": ExtendedKeyUsageOID.OCSP_SIGNING}


def wanted_names(names: list[str]) -> set:
    wanted = set()
    for name in names:
        kind, value = name.split(":", 1) if ":" in name else (name, "")
        if kind == "DNS":
            wanted.add(("DNS", value.lower()))
        elif kind == "IP":
            wanted.add(("IP", ipaddress.ip_address(value)))
        else:
            raise AnsibleFilterError(f"certificate_current: cannot compare the name {name!r} (DNS: or IP: only)")
    return wanted


def certificate_names(certificate: x509.Certificate) -> set:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return ({("DNS", name.lower()) for name in extension.get_values_for_type(x509.DNSName)}
            | {("IP", address) for address in extension.get_values_for_type(x509.IPAddress)})


def certificate_usages(certificate: x509.Certificate) -> set:
    try:
        return set(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return set()


def is_ca(certificate: x509.Certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def certificate_current(certificate_pem: Any, key_pem: Any, ca_pem: Any = None, common_name: Any = None,
                        names: Any = None, extended_key_usage: Any = None) -> bool:
    if x509 is None:
        raise AnsibleFilterError("certificate_current needs the Python library cryptography on the controller")
    if names is not None and not isinstance(names, list):
        raise AnsibleFilterError(f"certificate_current: names must be a list, got {names!r}")
    try:
        certificate = x509.load_pem_x509_certificate(str(certificate_pem).encode())
        key = serialization.load_pem_private_key(str(key_pem).encode(), password=None)
    except (ValueError, TypeError):
        return False
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if not (isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
            and key.public_key().public_bytes(serialization.Encoding.DER, public)
            == certificate.public_key().public_bytes(serialization.Encoding.DER, public)):
        return False
    if certificate.not_valid_after_utc <= datetime.datetime.now(datetime.timezone.utc):
        return False
    if names is None:
        return is_ca(certificate) and signed_by(certificate, certificate)
    try:
        ca = x509.load_pem_x509_certificate(str(ca_pem).encode())
    except (ValueError, TypeError):
        return False
    unknown = [usage for usage in extended_key_usage or [] if usage not in USAGES]
    if unknown:
        raise AnsibleFilterError(f"certificate_current: cannot compare the extended key usages {unknown}")
    subject_names = [attribute.value for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return (signed_by(certificate, ca) and subject_names == [common_name]
            and certificate_names(certificate) == wanted_names(names)
            and certificate_usages(certificate) == {USAGES[usage] for usage in extended_key_usage or []})


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"certificate_current": certificate_current}
