"""Certificate authorities and the certificates they issue, in the profiles Istio uses.

Three profiles matter to the labs:

- a **root** like Istio's ``tools/certs`` makes: ``O=Istio, CN=Root CA``, RSA 4096, ten years;
- a per-cluster **intermediate** (the ``cacerts`` plug-in CA): ``O=Istio, CN=Intermediate CA,
  L=<cluster>``, path length 0, SAN ``DNS:istiod.istio-system.svc``, two years;
- a short-lived **workload** certificate as istiod signs it: empty subject, one critical URI SAN
  holding the SPIFFE ID, server and client EKU, 24 hours by default.

Workload keys default to ECDSA P-256 (Istio's ``ECC_SIGNATURE_ALGORITHM=ECDSA``): an RSA key takes
~50 ms to make and the embedded clusters make one per pod and renewal; CA keys stay RSA 4096 as in
Istio's tooling, since a mesh makes only a handful.

Values are frozen dataclasses holding PEM text, so the layers above pass them around, store them in
Secrets and hand them to Envoy without ever importing ``cryptography``.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from labkit.errors import PkiError
from labkit.pki.pem import (
    PrivateKey,
    check_key_matches,
    dump_certificates,
    dump_private_key,
    load_certificate,
    load_certificates,
    load_private_key,
)
from labkit.pki.spiffe import SpiffeId

KeySpec = Literal["rsa-2048", "rsa-4096", "ec-p256"]
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

ROOT_VALIDITY = dt.timedelta(days=3650)
INTERMEDIATE_VALIDITY = dt.timedelta(days=730)
WORKLOAD_VALIDITY = dt.timedelta(hours=24)
# Certificates start a little in the past so that a peer whose clock lags still accepts them.
CLOCK_SKEW = dt.timedelta(minutes=1)


def generate_key(spec: KeySpec) -> PrivateKey:
    """Make a private key of the given kind."""
    if spec == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if spec in ("rsa-2048", "rsa-4096"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(spec[4:]))
    raise PkiError(f"unknown key kind {spec!r}: use 'rsa-2048', 'rsa-4096' or 'ec-p256'.")


def _now(now: dt.datetime | None) -> dt.datetime:
    return (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)


def _name(*pairs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in pairs])


@dataclass(frozen=True)
class Credential:
    """A workload's certificate and key, with the chain that proves it.

    Args:
        cert_pem: the leaf certificate.
        key_pem: its private key (PKCS#8).
        chain_pem: the certificates above the leaf, nearest first, ending with the root.
    """

    cert_pem: str
    key_pem: str
    chain_pem: str

    @property
    def cert_chain_pem(self) -> str:
        """Leaf followed by its chain: Istio's ``cert-chain.pem`` and Envoy's ``certificate_chain``."""
        return self.cert_pem + self.chain_pem

    @property
    def root_pem(self) -> str:
        """The root certificate the chain ends in (Istio's ``root-cert.pem``)."""
        return dump_certificates(load_certificates(self.chain_pem, "chain")[-1:])

    @functools.cached_property
    def spiffe_id(self) -> SpiffeId | None:
        """The SPIFFE ID in the leaf's URI SAN, if any."""
        from labkit.pki.describing import spiffe_ids  # noqa: PLC0415 - describing imports this module

        ids = spiffe_ids(load_certificate(self.cert_pem))
        return ids[0] if ids else None


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA: its certificate, its key, and the chain above it.

    Args:
        cert_pem: the CA certificate.
        key_pem: the CA's private key.
        chain_pem: certificates above this CA, nearest first, ending with the root; empty for a root.
    """

    cert_pem: str
    key_pem: str
    chain_pem: str = ""

    @classmethod
    def load(cls, cert_pem: str, key_pem: str, chain_pem: str = "", *, source: str = "CA") -> CertificateAuthority:
        """Build a CA from PEM text, checking that the key belongs to the certificate and that it is a CA."""
        cert = load_certificate(cert_pem, f"{source} certificate")
        key = load_private_key(key_pem, f"{source} key")
        check_key_matches(cert, key, f"{source} certificate", f"{source} key")
        if not _is_ca(cert):
            raise PkiError(f"{source} certificate is not a CA certificate (basicConstraints CA:FALSE or missing); "
                           f"it cannot sign other certificates.")
        if chain_pem:
            load_certificates(chain_pem, f"{source} chain")
        return cls(cert_pem, key_pem, chain_pem)

    @property
    def is_root(self) -> bool:
        """True for a self-signed root (no chain above it)."""
        return not self.chain_pem

    @property
    def root_pem(self) -> str:
        """The root at the top of this CA's chain (itself for a root)."""
        if self.is_root:
            return self.cert_pem
        return dump_certificates(load_certificates(self.chain_pem, "chain")[-1:])

    @property
    def cert_chain_pem(self) -> str:
        """This CA's certificate followed by its chain: Istio's ``cert-chain.pem`` for a plug-in CA."""
        return self.cert_pem + self.chain_pem

    @functools.cached_property
    def _cert(self) -> x509.Certificate:
        return load_certificate(self.cert_pem, "CA certificate")

    @functools.cached_property
    def _key(self) -> PrivateKey:
        return load_private_key(self.key_pem, "CA key")

    def issue_intermediate(
        self,
        cluster: str,
        *,
        key: KeySpec = "rsa-4096",
        validity: dt.timedelta = INTERMEDIATE_VALIDITY,
        now: dt.datetime | None = None,
    ) -> CertificateAuthority:
        """Sign a per-cluster intermediate CA the way Istio's ``tools/certs`` does.

        Args:
            cluster: the cluster name, recorded as the locality ``L=<cluster>``.
            key: the intermediate's key kind.
            validity: how long it is valid.
            now: the issuing time (tests pass a fixed one).
        """
        subject = _name((NameOID.ORGANIZATION_NAME, "Istio"), (NameOID.COMMON_NAME, "Intermediate CA"),
                        (NameOID.LOCALITY_NAME, cluster))
        private = generate_key(key)
        usage = _key_usage(digital_signature=True, content_commitment=True, key_encipherment=True, key_cert_sign=True)
        extensions: list[tuple[x509.ExtensionType, bool]] = [
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (usage, True),
            (x509.SubjectAlternativeName([x509.DNSName("istiod.istio-system.svc")]), False),
        ]
        cert = self._sign(subject, private, extensions, validity, now)
        return CertificateAuthority(dump_certificates([cert]), dump_private_key(private), self.cert_chain_pem)

    def issue_workload(
        self,
        spiffe_id: SpiffeId | str,
        *,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
        subject: Sequence[tuple[str, str]] = (),
        key: KeySpec = "ec-p256",
        validity: dt.timedelta = WORKLOAD_VALIDITY,
        now: dt.datetime | None = None,
    ) -> Credential:
        """Sign a short-lived workload certificate for a SPIFFE ID.

        Args:
            spiffe_id: the identity, e.g. ``spiffe://cluster.local/ns/sample/sa/sleep``.
            dns_names: extra DNS SANs (SPIRE adds the pod name; istiod adds none).
            ip_addresses: extra IP SANs.
            subject: subject attributes as ``(short name, value)``, e.g. ``[("O", "SPIRE")]``;
                empty (as istiod issues) makes the SAN extension critical, as RFC 5280 requires.
            key: the workload key kind.
            validity: lifetime; istiod's default is 24 hours.
            now: the issuing time (tests pass a fixed one).
        """
        identity = spiffe_id if isinstance(spiffe_id, SpiffeId) else SpiffeId.parse(spiffe_id)
        private = generate_key(key)
        names = _name(*((_SUBJECT_OIDS[short], value) for short, value in subject)) if subject else x509.Name([])
        alt_names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(str(identity))]
        alt_names += [x509.DNSName(name) for name in dns_names]
        alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        extensions: list[tuple[x509.ExtensionType, bool]] = [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (_key_usage(digital_signature=True, key_encipherment=True), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False),
            (x509.SubjectAlternativeName(alt_names), not subject),
        ]
        cert = self._sign(names, private, extensions, validity, now)
        return Credential(dump_certificates([cert]), dump_private_key(private), self.cert_chain_pem)

    def issue_server(
        self,
        common_name: str,
        *,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
        key: KeySpec = "ec-p256",
        validity: dt.timedelta = INTERMEDIATE_VALIDITY,
        now: dt.datetime | None = None,
    ) -> Credential:
        """Sign a TLS server certificate (an API server's, a bundle endpoint's), with no SPIFFE ID.

        Args:
            common_name: ``CN=`` of the subject, e.g. ``kube-apiserver``.
            dns_names: DNS SANs clients connect by.
            ip_addresses: IP SANs clients connect by.
            key: the server key kind.
            validity: lifetime.
            now: the issuing time (tests pass a fixed one).
        """
        if not dns_names and not ip_addresses:
            raise PkiError(f"a server certificate for {common_name!r} needs at least one DNS name or IP address SAN")
        private = generate_key(key)
        alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        extensions: list[tuple[x509.ExtensionType, bool]] = [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (_key_usage(digital_signature=True, key_encipherment=True), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            (x509.SubjectAlternativeName(alt_names), False),
        ]
        cert = self._sign(_name((NameOID.COMMON_NAME, common_name)), private, extensions, validity, now)
        return Credential(dump_certificates([cert]), dump_private_key(private), self.cert_chain_pem)

    def sign_request(self, csr_pem: str, spiffe_id: SpiffeId | str, *, validity: dt.timedelta = WORKLOAD_VALIDITY,
                     now: dt.datetime | None = None) -> str:
        """Sign a certificate signing request as istiod's CA does: the key is the CSR's, the identity is the
        caller's (the SAN is set here, whatever the CSR asked for). Returns the leaf's PEM.

        Args:
            csr_pem: the PEM CSR.
            spiffe_id: the identity the caller was authenticated as.
            validity: lifetime.
            now: the issuing time (tests pass a fixed one).

        Raises:
            PkiError: the CSR cannot be read or its signature does not verify.
        """
        request = load_request(csr_pem)
        identity = spiffe_id if isinstance(spiffe_id, SpiffeId) else SpiffeId.parse(spiffe_id)
        extensions: list[tuple[x509.ExtensionType, bool]] = [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (_key_usage(digital_signature=True, key_encipherment=True), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False),
            (x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(identity))]), True),
        ]
        cert = _build(x509.Name([]), self._cert.subject, request.public_key(), self._key, self._cert,  # type: ignore[arg-type]
                      extensions, validity, now)
        return dump_certificates([cert])

    def _sign(
        self,
        subject: x509.Name,
        private: PrivateKey,
        extensions: list[tuple[x509.ExtensionType, bool]],
        validity: dt.timedelta,
        now: dt.datetime | None,
    ) -> x509.Certificate:
        return _build(subject, self._cert.subject, private.public_key(), self._key, self._cert, extensions, validity,
                      now)


def new_root(
    *,
    organization: str = "Istio",
    common_name: str = "Root CA",
    key: KeySpec = "rsa-4096",
    validity: dt.timedelta = ROOT_VALIDITY,
    uri: str | None = None,
    now: dt.datetime | None = None,
) -> CertificateAuthority:
    """Make a self-signed root CA, by default the one Istio's ``tools/certs`` makes.

    Args:
        organization: ``O=`` of the subject.
        common_name: ``CN=`` of the subject.
        key: the root key kind.
        validity: how long it is valid.
        uri: an optional URI SAN, e.g. ``spiffe://foo.com`` for a SPIFFE trust-domain root.
        now: the issuing time (tests pass a fixed one).
    """
    subject = _name((NameOID.ORGANIZATION_NAME, organization), (NameOID.COMMON_NAME, common_name))
    private = generate_key(key)
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (_key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), True),
    ]
    if uri:
        extensions.append((x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), False))
    cert = _build(subject, subject, private.public_key(), private, None, extensions, validity, now)
    return CertificateAuthority(dump_certificates([cert]), dump_private_key(private))


_SUBJECT_OIDS = {
    "C": NameOID.COUNTRY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "x500UniqueIdentifier": NameOID.X500_UNIQUE_IDENTIFIER,
}


def _key_usage(**flags: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{name: flags.get(name, False) for name in names})


def _build(
    subject: x509.Name,
    issuer: x509.Name,
    public: PublicKey,
    signing_key: PrivateKey,
    issuer_cert: x509.Certificate | None,
    extensions: list[tuple[x509.ExtensionType, bool]],
    validity: dt.timedelta,
    now: dt.datetime | None,
) -> x509.Certificate:
    start = _now(now) - CLOCK_SKEW
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + CLOCK_SKEW + validity)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    issuer_public = (issuer_cert.public_key() if issuer_cert else public)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False  # type: ignore[arg-type]
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    # Ed25519 signs without a separate digest; labkit never makes such keys but may be handed one.
    algorithm = None if isinstance(signing_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signing_key, algorithm)  # type: ignore[arg-type]


def new_request(spiffe_id: SpiffeId | str, key: KeySpec = "ec-p256") -> tuple[str, str]:
    """A fresh private key and a CSR asking for ``spiffe_id`` (what istio-agent sends): ``(key PEM, CSR PEM)``."""
    private = generate_key(key)
    request = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
               .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(spiffe_id))]),
                              critical=True)
               .sign(private, None if isinstance(private, ed25519.Ed25519PrivateKey) else hashes.SHA256()))  # type: ignore[arg-type]
    return dump_private_key(private), request.public_bytes(serialization.Encoding.PEM).decode()


def load_request(csr_pem: str) -> x509.CertificateSigningRequest:
    """Parse a PEM CSR and check its signature.

    Raises:
        PkiError: not a CSR, or signed by another key than the one it carries.
    """
    try:
        request = x509.load_pem_x509_csr(csr_pem.encode() if isinstance(csr_pem, str) else csr_pem)
    except ValueError as exc:
        raise PkiError(f"the certificate signing request cannot be parsed: {exc}") from exc
    if not request.is_signature_valid:
        raise PkiError("the certificate signing request's signature does not verify")
    return request


def request_identities(csr_pem: str) -> list[str]:
    """The URI SANs a CSR asks for (SPIFFE IDs)."""
    try:
        names = load_request(csr_pem).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(names.get_values_for_type(x509.UniformResourceIdentifier))


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False

