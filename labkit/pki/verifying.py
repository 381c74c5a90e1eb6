"""Verify certificate chains and say precisely why one fails.

``openssl verify`` answers ``unable to get local issuer certificate``; a learner whose clusters were
given two different roots needs to read *different root*. The walk below follows the chain from the
leaf upwards and stops at the first problem, naming it (:class:`~labkit.errors.VerificationReason`):
an issuer that is missing, one that carries the right name but another key (the classic "two roots
both called ``O=Istio, CN=Root CA``"), an expired link, a wrong SPIFFE ID.

The trust store is chosen by the leaf's trust domain, as Envoy's SPIFFE validator does, so a
foo.com certificate is only ever checked against foo.com's bundle. End-entity certificates that pass
the walk are also put through ``cryptography``'s RFC 5280 path validation, so nothing the walk does
not know about slips through.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509 import verification

from labkit.errors import VerificationError, VerificationReason
from labkit.pki.bundles import TrustBundle
from labkit.pki.describing import CertificateInfo, describe_certificate, format_name, spiffe_ids
from labkit.pki.pem import load_certificates
from labkit.pki.spiffe import SpiffeId

Trust = TrustBundle | Sequence[TrustBundle] | str | bytes


@dataclass(frozen=True)
class VerifiedChain:
    """A chain that verified: the path from the leaf to a trusted root, and the leaf's identity."""

    path: tuple[CertificateInfo, ...]
    trust_domain: str | None
    spiffe_id: str | None


def verify_certificate(
    cert: str | bytes,
    trust: Trust,
    *,
    untrusted: str | bytes = b"",
    expected_spiffe_id: SpiffeId | str | None = None,
    at: dt.datetime | None = None,
    source: str = "certificate",
) -> VerifiedChain:
    """Verify a certificate against trust anchors.

    Args:
        cert: PEM text; the first certificate is verified, any that follow serve as intermediates
            (so a whole ``cert-chain.pem`` verifies on its own).
        trust: the anchors: a root PEM (like ``openssl verify -CAfile``), or SPIFFE bundles, of which the
            one for the leaf's trust domain is used.
        untrusted: more intermediates (like ``openssl verify -untrusted``).
        expected_spiffe_id: when given, the leaf must carry exactly this SPIFFE ID.
        at: the moment of verification (now by default).
        source: what to call the certificate in messages, usually its file name.

    Raises:
        VerificationError: with ``reason`` and a message naming the certificate and the fix.
    """
    moment = at or dt.datetime.now(dt.UTC)
    certs = load_certificates(cert, source)
    leaf, pool = certs[0], certs[1:] + (load_certificates(untrusted, "untrusted") if untrusted else [])
    ids = spiffe_ids(leaf)
    roots, trust_label, trust_domain = _choose_roots(trust, ids, source)

    path = _walk(leaf, pool, roots, trust_label, moment, source)
    if not describe_certificate(leaf).is_ca:
        _check_policy(leaf, path, roots, moment, source)

    if expected_spiffe_id is not None:
        expected = str(expected_spiffe_id)
        found = [str(i) for i in ids]
        if expected not in found:
            raise VerificationError(
                VerificationReason.WRONG_SAN,
                f"{source}: wrong SAN: it identifies {', '.join(found) or 'no SPIFFE ID'}, expected {expected}. "
                f"The peer is not the workload you meant to reach (check its namespace and service account).",
            )
    return VerifiedChain(tuple(describe_certificate(c) for c in path), trust_domain,
                         str(ids[0]) if ids else None)


def _choose_roots(
    trust: Trust, ids: list[SpiffeId], source: str
) -> tuple[list[x509.Certificate], str, str | None]:
    if isinstance(trust, str | bytes):
        return load_certificates(trust, "trust anchors"), "the trusted roots", (ids[0].trust_domain if ids else None)
    bundles = [trust] if isinstance(trust, TrustBundle) else list(trust)
    by_domain = {bundle.trust_domain: bundle for bundle in bundles}
    if ids:
        domain = ids[0].trust_domain
    elif len(bundles) == 1:
        domain = bundles[0].trust_domain
    else:
        raise VerificationError(VerificationReason.NO_TRUST_BUNDLE,
                                f"{source}: it has no SPIFFE ID, so there is no trust domain to pick a bundle by.")
    bundle = by_domain.get(domain)
    if bundle is None or not bundle.x509_authorities:
        have = ", ".join(sorted(by_domain)) or "none"
        raise VerificationError(
            VerificationReason.NO_TRUST_BUNDLE,
            f"{source}: no trust bundle for its trust domain {domain} (bundles held: {have}). "
            f"Federate with {domain} (exchange bundles) or add it to trustDomainAliases' bundles.",
        )
    return load_certificates(bundle.pem, f"{domain} bundle"), f"the {domain} bundle", domain


def _walk(
    leaf: x509.Certificate,
    pool: list[x509.Certificate],
    roots: list[x509.Certificate],
    trust_label: str,
    moment: dt.datetime,
    source: str,
) -> list[x509.Certificate]:
    path = [leaf]
    current = leaf
    while True:
        _check_time(current, moment, source, len(path) - 1)
        if current in roots:
            return path
        candidates = [c for c in pool + roots if c.subject == current.issuer and c not in path]
        if not candidates:
            name = format_name(current.issuer)
            if _signed_by(current, current):
                raise VerificationError(
                    VerificationReason.DIFFERENT_ROOT,
                    f"{source}: it chains up to the root '{name}', which is not among {trust_label}: it was "
                    f"issued under a different root. Every cluster of a mesh needs certificates from one root.",
                )
            raise VerificationError(
                VerificationReason.UNKNOWN_ISSUER,
                f"{source}: issuer not found: '{name}' is neither among {trust_label} nor among the "
                f"intermediates given. Pass the intermediate too (openssl's -untrusted ca-cert.pem, or verify "
                f"the whole cert-chain.pem).",
            )
        signers = [c for c in candidates if _signed_by(current, c)]
        if not signers:
            name = format_name(current.issuer)
            if any(c in roots for c in candidates):
                raise VerificationError(
                    VerificationReason.DIFFERENT_ROOT,
                    f"{source}: its issuer is named '{name}' like the root in {trust_label}, but it was signed "
                    f"with another key: it was issued under a different root. Every cluster of a mesh needs "
                    f"certificates from one root (labkit certs mesh makes all intermediates under one root).",
                )
            raise VerificationError(
                VerificationReason.BAD_SIGNATURE,
                f"{source}: bad signature: the certificate named '{name}' that was given did not sign it; it is "
                f"another CA with the same name. Use the chain it was issued with.",
            )
        issuer = signers[0]
        info = describe_certificate(issuer)
        if not info.is_ca:
            raise VerificationError(
                VerificationReason.NOT_A_CA,
                f"{source}: its issuer '{info.subject}' is not a CA (basicConstraints CA:FALSE) and may not sign "
                f"certificates.",
            )
        intermediates_below = sum(1 for c in path[1:] if describe_certificate(c).is_ca)
        if info.path_length is not None and intermediates_below > info.path_length:
            raise VerificationError(
                VerificationReason.POLICY,
                f"{source}: '{info.subject}' allows {info.path_length} CA(s) below it (path length), "
                f"found {intermediates_below}.",
            )
        path.append(issuer)
        current = issuer


def _check_time(cert: x509.Certificate, moment: dt.datetime, source: str, depth: int) -> None:
    who = "it" if depth == 0 else f"its issuer '{format_name(cert.subject)}'"
    if moment > cert.not_valid_after_utc:
        raise VerificationError(
            VerificationReason.EXPIRED,
            f"{source}: {who} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC. Issue a new one "
            f"(workload certificates are short-lived and renewed before they expire).",
        )
    if moment < cert.not_valid_before_utc:
        raise VerificationError(
            VerificationReason.NOT_YET_VALID,
            f"{source}: {who} is not yet valid (from {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC); "
            f"check this machine's clock.",
        )


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_policy(
    leaf: x509.Certificate,
    path: list[x509.Certificate],
    roots: list[x509.Certificate],
    moment: dt.datetime,
    source: str,
) -> None:
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store(roots))
        .time(moment)
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, path[1:-1])
    except verification.VerificationError as exc:
        raise VerificationError(VerificationReason.POLICY, f"{source}: rejected by X.509 path validation: {exc}") \
            from exc
