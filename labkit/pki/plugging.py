"""Whether four ``cacerts`` files form a CA istiod can sign with — checked where they enter.

A plugged-in CA that does not hang together fails late and far away: istiod starts, every workload
certificate it signs is refused by peers, and the learner sees TLS errors on an unrelated call. So the
files are checked as soon as they are read — by ``labkit.istio.plug_in_ca`` before they become the
``cacerts`` Secret, and by istiod before it signs with them — and each problem names the file and the fix:

- ``ca-key.pem`` must be the key of ``ca-cert.pem``;
- ``ca-cert.pem`` must be a CA, valid now;
- ``cert-chain.pem`` must start with ``ca-cert.pem`` and verify up to ``root-cert.pem`` (a chain made
  under another root, or with an expired link, does not).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from labkit.errors import KeyMismatchError, PkiError, VerificationError, VerificationReason
from labkit.pki.authorities import CertificateAuthority
from labkit.pki.describing import describe_certificate
from labkit.pki.pem import check_key_matches, dump_certificates, load_certificate, load_certificates, load_private_key
from labkit.pki.verifying import verify_certificate

CACERTS_FILES = ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem")
_REMAKE = "make the cluster's folder again under the mesh root (delete it and run labkit certs mesh)"


def check_cacerts(files: Mapping[str, str], names: Mapping[str, str] | None = None, *,
                  at: dt.datetime | None = None) -> CertificateAuthority:
    """The CA the ``cacerts`` files describe, after checking that they belong together.

    Args:
        files: file name (``ca-cert.pem`` …) → PEM text.
        names: how to call each file in messages (a path, or ``secret istio-system/cacerts ca-key.pem``);
            the bare file name by default.
        at: the moment of the check (now by default).

    Raises:
        PkiError: a file is missing or not PEM (:class:`~labkit.errors.PemError`), the key belongs to another
            certificate (:class:`~labkit.errors.KeyMismatchError`), the chain does not verify or has expired
            (:class:`~labkit.errors.VerificationError`); the message names the file and the fix.
    """
    shown = {name: (names or {}).get(name, name) for name in CACERTS_FILES}
    missing = [name for name in CACERTS_FILES if not (files.get(name) or "").strip()]
    if missing:
        raise PkiError(f"{', '.join(shown[m] for m in missing)}: missing or empty; a plugged-in CA needs "
                       f"{', '.join(CACERTS_FILES)} (labkit certs mesh makes them).")
    cert = load_certificate(files["ca-cert.pem"], shown["ca-cert.pem"])
    key = load_private_key(files["ca-key.pem"], shown["ca-key.pem"])
    try:
        check_key_matches(cert, key, shown["ca-cert.pem"], shown["ca-key.pem"])
    except KeyMismatchError as exc:
        raise KeyMismatchError(f"{shown['ca-key.pem']} does not match {shown['ca-cert.pem']}: the key belongs to "
                               f"another certificate. Put back the ca-key.pem made with this ca-cert.pem, or "
                               f"{_REMAKE}.") from exc
    info = describe_certificate(cert)
    if not info.is_ca:
        raise PkiError(f"{shown['ca-cert.pem']} is not a CA certificate (basicConstraints CA:FALSE): istiod cannot "
                       f"sign with it. Use the intermediate CA's certificate, or {_REMAKE}.")
    moment = at or dt.datetime.now(dt.UTC)
    if info.not_after < moment:
        raise VerificationError(VerificationReason.EXPIRED,
                                f"{shown['ca-cert.pem']}: the intermediate CA expired on "
                                f"{info.not_after:%Y-%m-%d %H:%M:%S} UTC, so nothing it signs is trusted. Issue a "
                                f"new intermediate: {_REMAKE}.")
    chain = load_certificates(files["cert-chain.pem"], shown["cert-chain.pem"])
    if chain[0] != cert:
        raise PkiError(f"{shown['cert-chain.pem']} does not start with {shown['ca-cert.pem']}: it is the chain of "
                       f"another CA. cert-chain.pem holds ca-cert.pem followed by the certificates above it up to "
                       f"the root (cat ca-cert.pem root-cert.pem > cert-chain.pem for one intermediate).")
    try:
        verify_certificate(files["cert-chain.pem"], files["root-cert.pem"], source=shown["cert-chain.pem"],
                           at=moment)
    except VerificationError as exc:
        if exc.reason in (VerificationReason.EXPIRED, VerificationReason.NOT_YET_VALID):
            raise VerificationError(exc.reason, f"{exc} A CA chain is not renewed by istiod: {_REMAKE}.") from exc
        raise VerificationError(exc.reason, f"{exc} (checked against {shown['root-cert.pem']})") from exc
    above = dump_certificates(chain[1:]) if len(chain) > 1 else files["root-cert.pem"]
    return CertificateAuthority(files["ca-cert.pem"], files["ca-key.pem"], above)
