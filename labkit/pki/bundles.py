"""SPIFFE trust bundles: the JWK Set format trust domains exchange when they federate.

A bundle names one trust domain and holds the CA certificates that may sign its identities
(``use: "x509-svid"``, one certificate in ``x5c``) and the keys that sign its JWTs
(``use: "jwt-svid"``, with a ``kid``). Bundles of different trust domains are never merged: a
verifier picks the bundle by the peer's trust domain (see :mod:`labkit.pki.verifying`), otherwise a
bar.com CA could mint foo.com identities.

JWT keys are carried through unchanged (labkit does not sign JWTs) so a bundle read and written back
loses nothing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from labkit.errors import PkiError
from labkit.pki.pem import dump_certificates, load_certificates
from labkit.pki.spiffe import check_trust_domain

DEFAULT_REFRESH_HINT = 300


@dataclass(frozen=True)
class TrustBundle:
    """The trust anchors of one trust domain.

    Args:
        trust_domain: e.g. ``foo.com``.
        x509_authorities: PEM certificates, one per CA that may sign X.509-SVIDs.
        jwt_authorities: JWK dicts (``use: jwt-svid``) kept as they were read.
        sequence: ``spiffe_sequence``, bumped by the issuer on every change.
        refresh_hint: ``spiffe_refresh_hint`` in seconds.
    """

    trust_domain: str
    x509_authorities: tuple[str, ...]
    jwt_authorities: tuple[Mapping[str, Any], ...] = field(default=())
    sequence: int = 0
    refresh_hint: int = DEFAULT_REFRESH_HINT

    def __post_init__(self) -> None:
        check_trust_domain(self.trust_domain)

    @classmethod
    def from_pem(cls, trust_domain: str, pem: str, *, sequence: int = 0) -> TrustBundle:
        """A bundle holding every certificate of a PEM file (e.g. a ``root-cert.pem``)."""
        certs = load_certificates(pem, f"{trust_domain} bundle")
        return cls(trust_domain, tuple(dump_certificates([c]) for c in certs), sequence=sequence)

    @property
    def pem(self) -> str:
        """All X.509 authorities as one PEM text, the form Envoy's ``trusted_ca`` takes."""
        return "".join(self.x509_authorities)

    @property
    def x509_der(self) -> list[bytes]:
        """The X.509 authorities as DER, in order (the Workload API's bundle fields concatenate them)."""
        return [load_certificates(pem, f"{self.trust_domain} bundle")[0].public_bytes(serialization.Encoding.DER)
                for pem in self.x509_authorities]

    def merged(self, other: TrustBundle) -> TrustBundle:
        """This bundle with ``other``'s authorities added (a CA rotation: old and new root both trusted for a
        while), its sequence bumped past both.

        Raises:
            PkiError: ``other`` is another trust domain's bundle. One trust store holding two domains' CAs would
                let either CA mint identities of the other, so bundles of different domains are kept apart (a
                verifier picks one by the peer's trust domain).
        """
        if other.trust_domain != self.trust_domain:
            raise PkiError(f"refusing to merge the {other.trust_domain} bundle into the {self.trust_domain} bundle: "
                           f"a {other.trust_domain} CA could then sign {self.trust_domain} identities; keep one "
                           f"bundle per trust domain and choose it by the peer's SPIFFE ID.")
        x509 = tuple(dict.fromkeys(self.x509_authorities + other.x509_authorities))
        kids = {key.get("kid") for key in self.jwt_authorities}
        jwt = self.jwt_authorities + tuple(key for key in other.jwt_authorities if key.get("kid") not in kids)
        return TrustBundle(self.trust_domain, x509, jwt, max(self.sequence, other.sequence) + 1, self.refresh_hint)

    def replaced_by(self, fetched: TrustBundle) -> TrustBundle:
        """The bundle to keep after fetching ``fetched`` from this domain's bundle endpoint.

        Raises:
            PkiError: the endpoint served another trust domain's bundle.
        """
        if fetched.trust_domain != self.trust_domain:
            raise PkiError(f"the bundle endpoint of {self.trust_domain} served a bundle for "
                           f"{fetched.trust_domain}; bundles are kept per trust domain, so it is refused.")
        return fetched

    def to_json(self, *, indent: int | None = 2) -> str:
        """The SPIFFE bundle document (what ``spire-server bundle show -format spiffe`` prints)."""
        keys: list[Mapping[str, Any]] = [_x509_jwk(pem) for pem in self.x509_authorities]
        keys += list(self.jwt_authorities)
        document = {"keys": keys, "spiffe_sequence": self.sequence, "spiffe_refresh_hint": self.refresh_hint}
        return json.dumps(document, indent=indent)

    @classmethod
    def from_json(cls, trust_domain: str, text: str | bytes) -> TrustBundle:
        """Parse a SPIFFE bundle document; keys of unknown ``use`` are ignored, as the standard says.

        Raises:
            PkiError: not JSON, no ``keys`` array, or an ``x509-svid`` key without exactly one certificate.
        """
        source = f"the {trust_domain} bundle"
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise PkiError(f"{source} is not JSON ({exc}); a SPIFFE bundle is a JWK Set: {{\"keys\": [...]}}.") \
                from exc
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise PkiError(f"{source} has no \"keys\" array; a SPIFFE bundle is a JWK Set: {{\"keys\": [...]}}.")
        authorities, jwt = [], []
        for index, key in enumerate(document["keys"]):
            if not isinstance(key, dict):
                raise PkiError(f"{source}: keys[{index}] is not a JSON object.")
            use = key.get("use")
            if use == "x509-svid":
                chain = key.get("x5c")
                if not isinstance(chain, list) or len(chain) != 1:
                    raise PkiError(f"{source}: keys[{index}] (x509-svid) must hold exactly one certificate in "
                                   f"\"x5c\", found {len(chain) if isinstance(chain, list) else 'none'}.")
                try:
                    der = base64.b64decode(chain[0], validate=True)
                except (ValueError, TypeError) as exc:
                    raise PkiError(f"{source}: keys[{index}].x5c[0] is not standard base64 DER.") from exc
                pem = _der_to_pem(der)
                load_certificates(pem, f"{source} keys[{index}]")
                authorities.append(pem)
            elif use == "jwt-svid":
                if "kid" not in key:
                    raise PkiError(f"{source}: keys[{index}] (jwt-svid) has no \"kid\".")
                jwt.append(key)
        return cls(
            trust_domain,
            tuple(authorities),
            tuple(jwt),
            sequence=int(document.get("spiffe_sequence", 0)),
            refresh_hint=int(document.get("spiffe_refresh_hint", DEFAULT_REFRESH_HINT)),
        )


def _der_to_pem(der: bytes) -> str:
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def _b64url(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _x509_jwk(pem: str) -> dict[str, Any]:
    cert = load_certificates(pem, "bundle authority")[0]
    der = cert.public_bytes(serialization.Encoding.DER)
    key = cert.public_key()
    jwk: dict[str, Any] = {"use": "x509-svid"}
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        jwk |= {"kty": "RSA", "n": _b64url(numbers.n), "e": _b64url(numbers.e)}
    elif isinstance(key, ec.EllipticCurvePublicKey):
        numbers = key.public_numbers()
        size = (key.curve.key_size + 7) // 8
        curve = {"secp256r1": "P-256", "secp384r1": "P-384"}.get(key.curve.name, key.curve.name)
        jwk |= {"kty": "EC", "crv": curve,
                "x": base64.urlsafe_b64encode(numbers.x.to_bytes(size, "big")).rstrip(b"=").decode(),
                "y": base64.urlsafe_b64encode(numbers.y.to_bytes(size, "big")).rstrip(b"=").decode()}
    else:
        raise PkiError(f"bundle authority with unsupported key type {type(key).__name__}")
    jwk["x5c"] = [base64.b64encode(der).decode()]
    return jwk
