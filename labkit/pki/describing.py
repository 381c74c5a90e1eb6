"""What a learner needs to read off a certificate, without ``openssl x509 -text``'s wall of hex.

:class:`CertificateInfo` is a plain value (strings, dates, tuples): notebooks display it, the
emulator puts it in tables, tests compare it, and none of them import ``cryptography``.
Names print in certificate order with short labels (``O=Istio, CN=Root CA``), as ``openssl`` does.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from labkit.errors import PkiError
from labkit.pki.pem import load_certificates
from labkit.pki.spiffe import SpiffeId

_SHORT_NAMES = {
    NameOID.COUNTRY_NAME: "C",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COMMON_NAME: "CN",
    NameOID.X500_UNIQUE_IDENTIFIER: "x500UniqueIdentifier",
    NameOID.SERIAL_NUMBER: "serialNumber",
}
_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
}
_KEY_USAGES = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
               "key_agreement", "key_cert_sign", "crl_sign")
_KEY_USAGE_NAMES = {"digital_signature": "digitalSignature", "content_commitment": "nonRepudiation",
                    "key_encipherment": "keyEncipherment", "data_encipherment": "dataEncipherment",
                    "key_agreement": "keyAgreement", "key_cert_sign": "keyCertSign", "crl_sign": "cRLSign"}


def format_name(name: x509.Name) -> str:
    """``O=Istio, CN=Root CA``: attributes in certificate order, with short labels."""
    parts = []
    for attribute in name:
        label = _SHORT_NAMES.get(attribute.oid, attribute.oid.dotted_string)
        value = attribute.value if isinstance(attribute.value, str) else attribute.value.hex()
        parts.append(f"{label}={value}")
    return ", ".join(parts) or "(empty)"


def spiffe_ids(cert: x509.Certificate) -> list[SpiffeId]:
    """The SPIFFE IDs among a certificate's URI SANs."""
    return [SpiffeId.parse(uri) for uri in _sans(cert, x509.UniformResourceIdentifier)
            if uri.startswith("spiffe://")]


@dataclass(frozen=True)
class CertificateInfo:
    """The fields of a certificate a learner looks at."""

    subject: str
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    is_ca: bool
    path_length: int | None
    key: str
    dns_names: tuple[str, ...]
    uris: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    key_usage: tuple[str, ...]
    extended_key_usage: tuple[str, ...]
    sha256: str

    @property
    def self_signed(self) -> bool:
        """Subject equals issuer: a root (or a self-signed leaf)."""
        return self.subject == self.issuer

    @property
    def spiffe_ids(self) -> tuple[str, ...]:
        """URI SANs that are SPIFFE IDs."""
        return tuple(uri for uri in self.uris if uri.startswith("spiffe://"))

    def validity_at(self, at: dt.datetime | None = None) -> str:
        """``valid``, ``expired`` or ``not yet valid`` at a moment (now by default)."""
        moment = at or dt.datetime.now(dt.UTC)
        if moment < self.not_before:
            return "not yet valid"
        if moment > self.not_after:
            return "expired"
        return "valid"

    def render(self, at: dt.datetime | None = None) -> str:
        """A short, aligned text block, as ``labkit certs show`` prints it."""
        role = "CA" + (f" (path length {self.path_length})" if self.path_length is not None else "")
        lines = [
            ("Subject", self.subject),
            ("Issuer", self.issuer + ("  (self-signed)" if self.self_signed else "")),
            ("Role", role if self.is_ca else "end entity (not a CA)"),
            ("Key", self.key),
            ("Valid from", _when(self.not_before)),
            ("Valid until", f"{_when(self.not_after)}  ({self.validity_at(at)})"),
        ]
        sans = [f"URI:{u}" for u in self.uris] + [f"DNS:{d}" for d in self.dns_names]
        sans += [f"IP:{i}" for i in self.ip_addresses]
        if sans:
            lines.append(("SANs", ", ".join(sans)))
        if self.key_usage:
            lines.append(("Key usage", ", ".join(self.key_usage)))
        if self.extended_key_usage:
            lines.append(("Ext. key usage", ", ".join(self.extended_key_usage)))
        lines += [("Serial", self.serial), ("SHA-256", self.sha256)]
        return "\n".join(f"{label + ':':<16}{value}" for label, value in lines)


def describe_certificate(cert: x509.Certificate) -> CertificateInfo:
    """The :class:`CertificateInfo` of a parsed certificate."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca, path_length = constraints.ca, constraints.path_length
    except x509.ExtensionNotFound:
        is_ca, path_length = False, None
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        key_usage = tuple(_KEY_USAGE_NAMES[name] for name in _KEY_USAGES if getattr(usage, name))
    except x509.ExtensionNotFound:
        key_usage = ()
    try:
        ekus = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        extended = tuple(_EKU_NAMES.get(oid, oid.dotted_string) for oid in ekus)
    except x509.ExtensionNotFound:
        extended = ()
    return CertificateInfo(
        subject=format_name(cert.subject),
        issuer=format_name(cert.issuer),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        is_ca=is_ca,
        path_length=path_length,
        key=_describe_key(cert),
        dns_names=tuple(_sans(cert, x509.DNSName)),
        uris=tuple(_sans(cert, x509.UniformResourceIdentifier)),
        ip_addresses=tuple(str(ip) for ip in _sans(cert, x509.IPAddress)),
        key_usage=key_usage,
        extended_key_usage=extended,
        sha256=cert.fingerprint(hashes.SHA256()).hex(":").upper(),
    )


def describe(data: str | bytes, source: str = "certificate") -> list[CertificateInfo]:
    """Describe every certificate in PEM text (a chain gives one entry per certificate, leaf first)."""
    return [describe_certificate(cert) for cert in load_certificates(data, source)]


def _sans(cert: x509.Certificate, kind: type) -> list:
    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                    .get_values_for_type(kind))
    except x509.ExtensionNotFound:
        return []


def _describe_key(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "EC P-256", "secp384r1": "EC P-384"}.get(key.curve.name, f"EC {key.curve.name}")
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    raise PkiError(f"certificate with an unsupported key type {type(key).__name__}")


def _when(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
