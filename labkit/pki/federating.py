"""The ``https_spiffe`` bundle endpoint profile: TLS authenticated by SPIFFE bundles instead of Web PKI.

A SPIRE server publishes its trust bundle on a bundle endpoint; a federated server fetches it. With the
``https_spiffe`` profile the endpoint presents an X509-SVID (``spiffe://<td>/spire/server``) and the fetcher checks
it against the bundle it already holds *for that trust domain only* — the first one handed over out of band
(``spire-server bundle set``), each later one authenticated by its predecessor. So an endpoint whose certificate
another domain signed is refused, even if the fetcher trusts that other domain for other purposes.

Python's ``ssl`` does the handshake and the chain check (OpenSSL accepts URI-only SANs once host name checking
is off); the SPIFFE ID of the peer is then compared here, as go-spiffe's ``tlsconfig.AuthorizeID`` does.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path

from cryptography import x509

from labkit.errors import PkiError
from labkit.pki.authorities import Credential
from labkit.pki.bundles import TrustBundle
from labkit.pki.describing import spiffe_ids


def server_context(credential: Credential, *, directory: Path | None = None) -> ssl.SSLContext:
    """A TLS server context presenting ``credential`` (leaf, chain and key), asking no client certificate.

    Args:
        credential: the endpoint's SVID.
        directory: where the PEM files ``ssl`` needs are written for a moment (a private temporary one if None).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # ssl loads a certificate chain only from files: write them for the load, then remove them.
    with tempfile.TemporaryDirectory(dir=directory) as folder:
        cert, key = Path(folder) / "svid.pem", Path(folder) / "svid.key"
        cert.write_text(credential.cert_chain_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(credential.key_pem)
        context.load_cert_chain(cert, key)
    return context


def client_context(bundle: TrustBundle, credential: Credential | None = None) -> ssl.SSLContext:
    """A TLS client context that trusts ``bundle``'s X.509 authorities and nothing else.

    Host names are not checked (SVIDs name SPIFFE IDs, not hosts): call :func:`check_peer` on the
    certificate the server presented.

    Args:
        bundle: the bundle of the trust domain the server belongs to.
        credential: a client SVID to present (mutual TLS), or None.

    Raises:
        PkiError: the bundle holds no X.509 authority (nothing could be verified).
    """
    if not bundle.x509_authorities:
        raise PkiError(f"the {bundle.trust_domain} bundle holds no X.509 authority: no certificate of that trust "
                       f"domain can be verified (set a bundle with 'spire-server bundle set').")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=bundle.pem)
    if credential is not None:
        with tempfile.TemporaryDirectory() as folder:
            cert, key = Path(folder) / "svid.pem", Path(folder) / "svid.key"
            cert.write_text(credential.cert_chain_pem)
            key.write_text(credential.key_pem)
            context.load_cert_chain(cert, key)
    return context


def mutual_server_context(credential: Credential, bundle: TrustBundle) -> ssl.SSLContext:
    """A server context presenting ``credential`` and requiring a client certificate from ``bundle``'s domain.

    Args:
        credential: the server's SVID.
        bundle: the trust domain's own bundle (clients are its agents).
    """
    context = server_context(credential)
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(cadata=bundle.pem)
    return context


def peer_id(der: bytes | None) -> str | None:
    """The SPIFFE ID in a peer certificate (DER, as ``SSLSocket.getpeercert(True)`` gives it), or None."""
    if not der:
        return None
    ids = spiffe_ids(x509.load_der_x509_certificate(der))
    return str(ids[0]) if ids else None


def check_peer(der: bytes | None, expected: str) -> None:
    """Refuse a peer whose certificate does not carry the expected SPIFFE ID.

    Args:
        der: the peer's leaf certificate (DER).
        expected: e.g. ``spiffe://bar.com/spire/server`` (``endpoint_spiffe_id``).

    Raises:
        PkiError: no certificate, or another ID.
    """
    presented = peer_id(der)
    if presented != expected:
        raise PkiError(f"unexpected ID {presented!r} presented by the bundle endpoint: expected {expected!r} "
                       f"(endpoint_spiffe_id in federates_with).")
