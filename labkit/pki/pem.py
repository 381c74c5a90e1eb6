"""Reading and writing PEM, with errors a learner can act on.

``cryptography`` reports a bad file as ``ValueError: Unable to load PEM file``; a workshop attendee who
copied half a certificate out of a terminal needs to hear which file, what was expected and how to
get a good one. Every loader here takes a ``source`` (usually the file name) for that message.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from labkit.errors import KeyMismatchError, PemError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

_CERT_BEGIN = "-----BEGIN CERTIFICATE-----"
_REGENERATE = "Regenerate it (labkit certs mesh) or copy the whole file, BEGIN and END lines included."


def _text(data: str | bytes) -> bytes:
    return data.encode() if isinstance(data, str) else data


def read_source(path: str | Path) -> bytes:
    """Read a PEM file, turning a missing or unreadable file into a :class:`PemError`."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise PemError(f"{path}: cannot read it ({exc.strerror}).") from exc


def load_certificates(data: str | bytes, source: str = "certificate") -> list[x509.Certificate]:
    """Load every certificate of a PEM bundle, in file order.

    Args:
        data: PEM text with one or more ``CERTIFICATE`` blocks.
        source: what to call the data in errors (a file name).

    Raises:
        PemError: no certificate in it, or a block that does not decode.
    """
    raw = _text(data)
    if _CERT_BEGIN.encode() not in raw:
        found = _first_pem_label(raw)
        what = f"it holds a {found} instead" if found else "there is no PEM block in it"
        raise PemError(f"{source}: expected a PEM certificate ({_CERT_BEGIN}), but {what}. {_REGENERATE}")
    try:
        return x509.load_pem_x509_certificates(raw)
    except ValueError as exc:
        raise PemError(f"{source}: the certificate is corrupt or truncated ({exc}). {_REGENERATE}") from exc


def load_certificate(data: str | bytes, source: str = "certificate") -> x509.Certificate:
    """Load the first certificate of a PEM bundle (the leaf, by convention)."""
    return load_certificates(data, source)[0]


def load_private_key(data: str | bytes, source: str = "private key") -> PrivateKey:
    """Load an unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1).

    Raises:
        PemError: not a private key, encrypted, corrupt, or of a type labkit does not use.
    """
    raw = _text(data)
    if b"PRIVATE KEY-----" not in raw:
        found = _first_pem_label(raw)
        what = f"it holds a {found} instead" if found else "there is no PEM block in it"
        raise PemError(f"{source}: expected a PEM private key, but {what}. {_REGENERATE}")
    try:
        key = serialization.load_pem_private_key(raw, password=None)
    except TypeError as exc:
        raise PemError(f"{source}: the private key is encrypted; labkit needs it unencrypted "
                       f"(openssl pkey -in {source} -out {source}).") from exc
    except ValueError as exc:
        raise PemError(f"{source}: the private key is corrupt or truncated ({exc}). {_REGENERATE}") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise PemError(f"{source}: a {type(key).__name__} is not supported; use RSA or ECDSA keys.")
    return key


def dump_certificates(certs: Sequence[x509.Certificate]) -> str:
    """PEM text of certificates, in order."""
    return "".join(cert.public_bytes(serialization.Encoding.PEM).decode() for cert in certs)


def dump_private_key(key: PrivateKey) -> str:
    """Unencrypted PKCS#8 PEM, the form Istio and Envoy read."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_key_bytes(cert_or_key: x509.Certificate | PrivateKey) -> bytes:
    """The DER SubjectPublicKeyInfo, a stable identity for a key pair."""
    public = cert_or_key.public_key()
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def check_key_matches(cert: x509.Certificate, key: PrivateKey, cert_source: str, key_source: str) -> None:
    """Raise :class:`KeyMismatchError` unless ``key`` is the private half of ``cert``'s public key."""
    if public_key_bytes(cert) != public_key_bytes(key):
        raise KeyMismatchError(
            f"{key_source} does not match {cert_source}: the key belongs to another certificate. "
            f"Keep each certificate with the key made with it (regenerate both with labkit certs mesh)."
        )


def _first_pem_label(raw: bytes) -> str | None:
    start = raw.find(b"-----BEGIN ")
    if start < 0:
        return None
    end = raw.find(b"-----", start + 11)
    return raw[start + 11:end].decode(errors="replace") if end > 0 else None
