"""``openssl verify -CAfile <anchors> <cert>``, with the machine's openssl when there is one, else labkit's own check.

The articles check a hand-made CA with ``openssl verify`` and expect ``ca-cert.pem: OK``; a workshop laptop may have
no openssl (or one that prints differently), so the same question falls back to :func:`verify_certificate`, and
the answer is printed in openssl's words either way: ``<file>: OK``, or the subject, an ``error <n> at <depth>
depth lookup: <reason>`` line and ``error <file>: verification failed``. What it says is for reading; whether the
check passed is :attr:`OpensslVerdict.ok`, the exit status, never parsed from the text.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from labkit.errors import PkiError, VerificationError, VerificationReason
from labkit.pki.describing import describe, describe_certificate
from labkit.pki.pem import dump_certificates, load_certificates, read_source
from labkit.pki.verifying import verify_certificate

# openssl's X509_V_ERR codes and texts for what the walk finds.
_OPENSSL_ERRORS = {
    VerificationReason.UNKNOWN_ISSUER: (20, "unable to get local issuer certificate"),
    VerificationReason.DIFFERENT_ROOT: (20, "unable to get local issuer certificate"),
    VerificationReason.BAD_SIGNATURE: (7, "certificate signature failure"),
    VerificationReason.EXPIRED: (10, "certificate has expired"),
    VerificationReason.NOT_YET_VALID: (9, "certificate is not yet valid"),
    VerificationReason.NOT_A_CA: (24, "invalid CA certificate"),
}


@dataclass(frozen=True)
class OpensslVerdict:
    """What ``openssl verify`` said about one certificate.

    Args:
        ok: whether it verified (openssl's exit status 0).
        text: what it printed, stdout and stderr, as a terminal shows them.
        tool: ``openssl`` (the machine's, with its version) or ``labkit`` (its own check, openssl's words).
    """

    ok: bool
    text: str
    tool: str

    def __str__(self) -> str:
        return self.text


def openssl_verify(ca_file: Path, cert: Path, *, use_openssl: bool = True) -> OpensslVerdict:
    """``openssl verify -CAfile ca_file cert``, run from the certificate's folder so it names the file as given.

    Args:
        ca_file: the trust anchors (a root, or a ``cert-chain.pem`` that ends with one).
        cert: the certificate to verify.
        use_openssl: use the machine's openssl when it has one; ``False`` always uses labkit's own check.
    """
    binary = shutil.which("openssl") if use_openssl else None
    if binary is not None:
        result = subprocess.run([binary, "verify", "-CAfile", str(ca_file.resolve()), cert.name], cwd=cert.parent,
                                capture_output=True, text=True, timeout=30, check=False)
        version = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=30,
                                 check=False).stdout.split(" ")[:2]
        # openssl writes the failing subject and error to stderr before the summary on stdout.
        text = (result.stderr + result.stdout).strip()
        return OpensslVerdict(result.returncode == 0, text, " ".join(version) or "openssl")
    return _labkit_verify(ca_file, cert)


def _labkit_verify(ca_file: Path, cert: Path) -> OpensslVerdict:
    anchors = read_source(ca_file).decode()
    text = read_source(cert).decode()
    # openssl trusts only self-signed certificates of -CAfile (without -partial_chain); the others are intermediates.
    certs = load_certificates(anchors, str(ca_file))
    roots = [dump_certificates([c]) for c in certs if describe_certificate(c).self_signed]
    others = [dump_certificates([c]) for c in certs if not describe_certificate(c).self_signed]
    try:
        if not roots:
            raise VerificationError(VerificationReason.UNKNOWN_ISSUER, f"{ca_file}: no self-signed root")
        verify_certificate(text, "".join(roots), untrusted="".join(others), source=cert.name)
    except VerificationError as exc:
        code, reason = _OPENSSL_ERRORS.get(exc.reason, (79, "invalid or inconsistent certificate"))
        subject = describe(text, cert.name)[0].subject.replace("=", " = ")
        return OpensslVerdict(False, f"{subject}\nerror {code} at 0 depth lookup: {reason}\n"
                                     f"error {cert.name}: verification failed", "labkit")
    except PkiError as exc:
        return OpensslVerdict(False, f"error {cert.name}: {exc}", "labkit")
    return OpensslVerdict(True, f"{cert.name}: OK", "labkit")

