"""SPIRE's certificates: the upstream root, the server's signing CA, X509-SVIDs, the JWT key.

Lab 5 reads an SVID field by field and compares it with the article, so the profiles follow SPIRE 1.5 with
cert-manager as UpstreamAuthority (``reference/spire.md``, "SVID contents"):

- the **upstream root** a cert-manager self-signed ClusterIssuer holds: ``O=cert-manager, CN=certmanager-ca``;
  with an UpstreamAuthority it is what the trust bundle carries;
- the **SPIRE server CA**, signed by that root: subject ``ca_subject`` (``C=US, O=SPIFFE``), URI SAN
  ``spiffe://<trust domain>``, keyCertSign and cRLSign;
- an **X509-SVID**: ``C=US, O=SPIRE, CN=<first DNS name>, x500UniqueIdentifier=<hex(sha256(id))[:32]>``
  (SPIRE's unique-ID attribute, so two SVIDs for one ID share a subject), SAN the SPIFFE ID and the entry's DNS
  names, key usage digitalSignature, keyEncipherment and keyAgreement, server and client EKU. The key is the
  requester's (a CSR): the agent keeps its workloads' keys, the server never sees them;
- the **JWT signing key**: published in the bundle as a ``jwt-svid`` JWK with a ``kid``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from labkit.errors import PkiError
from labkit.pki.authorities import (
    CertificateAuthority,
    _build,
    _key_usage,
    _name,
    generate_key,
    load_request,
)
from labkit.pki.pem import dump_certificates, dump_private_key, load_certificate, load_certificates, load_private_key
from labkit.pki.spiffe import SpiffeId, check_trust_domain

UPSTREAM_VALIDITY = dt.timedelta(days=3650)
# SPIRE's defaults: ca_ttl 24h, default_x509_svid_ttl 1h.
SERVER_CA_VALIDITY = dt.timedelta(hours=24)
SVID_VALIDITY = dt.timedelta(hours=1)
DEFAULT_CA_SUBJECT: tuple[tuple[str, str], ...] = (("C", "US"), ("O", "SPIFFE"))

_OIDS = {"C": NameOID.COUNTRY_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
         "CN": NameOID.COMMON_NAME}


def unique_id(spiffe_id: SpiffeId | str) -> str:
    """SPIRE's ``x500UniqueIdentifier`` for an ID: the first 16 bytes of its SHA-256, in hex."""
    return hashlib.sha256(str(spiffe_id).encode()).hexdigest()[:32]


def new_upstream_root(*, organization: str = "cert-manager", common_name: str = "certmanager-ca",
                      now: dt.datetime | None = None) -> CertificateAuthority:
    """The self-signed root a cert-manager CA issuer signs with (ECDSA P-256, as cert-manager's default).

    Args:
        organization: ``O=`` of the subject.
        common_name: ``CN=`` of the subject.
        now: the issuing time (tests pass a fixed one).
    """
    subject = _name((NameOID.ORGANIZATION_NAME, organization), (NameOID.COMMON_NAME, common_name))
    private = generate_key("ec-p256")
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (_key_usage(digital_signature=True, key_encipherment=True, key_cert_sign=True), True),
    ]
    cert = _build(subject, subject, private.public_key(), private, None, extensions, UPSTREAM_VALIDITY, now)
    return CertificateAuthority(dump_certificates([cert]), dump_private_key(private))


def issue_server_ca(upstream: CertificateAuthority, trust_domain: str, *,
                    subject: Sequence[tuple[str, str]] = DEFAULT_CA_SUBJECT,
                    validity: dt.timedelta = SERVER_CA_VALIDITY, now: dt.datetime | None = None,
                    ) -> CertificateAuthority:
    """The SPIRE server's X.509 CA, signed by the upstream authority.

    Args:
        upstream: the UpstreamAuthority (cert-manager's root).
        trust_domain: the server's trust domain; the CA carries ``URI:spiffe://<trust domain>``.
        subject: ``ca_subject`` as ``(short name, value)`` pairs (``C``, ``O``, ``OU``, ``CN``).
        validity: ``ca_ttl``.
        now: the issuing time (tests pass a fixed one).
    """
    check_trust_domain(trust_domain)
    unknown = [short for short, _ in subject if short not in _OIDS]
    if unknown:
        raise PkiError(f"ca_subject names {unknown}: use C, O, OU and CN only.")
    names = _name(*((_OIDS[short], value) for short, value in subject if value))
    private = generate_key("ec-p256")
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (_key_usage(key_cert_sign=True, crl_sign=True), True),
        (x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]), False),
    ]
    issuer = load_certificate(upstream.cert_pem, "upstream authority certificate")
    signing = load_private_key(upstream.key_pem, "upstream authority key")
    cert = _build(names, issuer.subject, private.public_key(), signing, issuer, extensions, validity, now)
    return CertificateAuthority(dump_certificates([cert]), dump_private_key(private), upstream.cert_chain_pem)


def sign_svid(ca: CertificateAuthority, csr_pem: str, spiffe_id: SpiffeId | str, *, dns_names: Sequence[str] = (),
              validity: dt.timedelta = SVID_VALIDITY, now: dt.datetime | None = None) -> str:
    """Sign an X509-SVID for a CSR: the key is the CSR's, the identity and names are the entry's.

    Args:
        ca: the SPIRE server CA.
        csr_pem: the requester's CSR (what it asks for is ignored, as SPIRE ignores it).
        spiffe_id: the registration entry's SPIFFE ID.
        dns_names: the entry's DNS names; the first one is also the subject's ``CN``.
        validity: the SVID's lifetime (the entry's X509-SVID TTL, else the server default of an hour).
        now: the issuing time (tests pass a fixed one).

    Returns:
        The leaf's PEM (without the chain).
    """
    identity = spiffe_id if isinstance(spiffe_id, SpiffeId) else SpiffeId.parse(str(spiffe_id))
    request = load_request(csr_pem)
    pairs = [(NameOID.COUNTRY_NAME, "US"), (NameOID.ORGANIZATION_NAME, "SPIRE")]
    if dns_names:
        pairs.append((NameOID.COMMON_NAME, dns_names[0]))
    pairs.append((NameOID.X500_UNIQUE_IDENTIFIER, unique_id(identity)))
    # Go's x509 writes DNS names before URIs, so `openssl x509 -text` shows "DNS:<pod>, URI:spiffe://…" for SPIRE's.
    alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    alt_names.append(x509.UniformResourceIdentifier(str(identity)))
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (_key_usage(digital_signature=True, key_encipherment=True, key_agreement=True), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False),
        (x509.SubjectAlternativeName(alt_names), False),
    ]
    issuer = load_certificate(ca.cert_pem, "SPIRE server CA certificate")
    signing = load_private_key(ca.key_pem, "SPIRE server CA key")
    cert = _build(_name(*pairs), issuer.subject, request.public_key(), signing, issuer,  # type: ignore[arg-type]
                  extensions, validity, now)
    return dump_certificates([cert])


def new_jwt_key() -> tuple[str, dict[str, Any]]:
    """A JWT signing key and its public JWK as a bundle publishes it: ``(private key PEM, JWK)``."""
    private = generate_key("ec-p256")
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    numbers = private.public_key().public_numbers()

    def b64(value: int) -> str:
        return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode()

    kid = secrets.token_urlsafe(24)[:32]
    jwk = {"use": "jwt-svid", "kty": "EC", "kid": kid, "crv": "P-256", "x": b64(numbers.x), "y": b64(numbers.y)}
    return dump_private_key(private), jwk


def der_chain(pem: str) -> list[bytes]:
    """Certificates of a PEM text as DER, in order (the Workload API's wire form)."""
    return [cert.public_bytes(serialization.Encoding.DER) for cert in load_certificates(pem, "SVID chain")]


def der_private_key(pem: str) -> bytes:
    """A private key as PKCS#8 DER (the Workload API's ``x509_svid_key``)."""
    return load_private_key(pem, "SVID key").private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
