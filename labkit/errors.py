"""Every error labkit raises, in one tree.

Notebook cells catch ``LabkitError`` (or one of its branches) and print its message, so each
message names the object it is about and the fix, in one or two sentences::

    LabkitError
    ├── ToolNotFoundError        a program labkit needs (envoy, kubectl …) is not installed
    ├── EmulatorError            the embedded clusters did not start, or another set is running
    └── PkiError                 certificates and keys
        ├── PemError             a file that is not the PEM it should be
        ├── KeyMismatchError     a private key that does not belong to its certificate
        └── VerificationError    a chain that does not verify; ``reason`` says why

Lower-level exceptions (``ValueError`` from a parser, ``OSError`` from a file) are re-raised as one of
these with ``raise … from exc``, so the original stays visible in tracebacks.

This module imports nothing from labkit: every layer, the emulator included, may raise these.
"""

from __future__ import annotations

import enum


class LabkitError(Exception):
    """Base of every error labkit raises on purpose."""


class ToolNotFoundError(LabkitError):
    """A program labkit needs is not installed where labkit looks for it.

    Args:
        tool: the program's name, e.g. ``envoy``.
        hint: how to install it on this machine.
    """

    def __init__(self, tool: str, hint: str):
        super().__init__(f"{tool} not found. {hint}")
        self.tool = tool
        self.hint = hint


class EmulatorError(LabkitError):
    """The embedded clusters could not be started, found or stopped."""


class PkiError(LabkitError):
    """Something is wrong with a certificate, key or trust bundle."""


class PemError(PkiError):
    """A file or string that should hold PEM data does not (corrupt, truncated, wrong type)."""


class KeyMismatchError(PkiError):
    """A private key that does not belong to the certificate it is paired with."""


class VerificationReason(enum.Enum):
    """Why a certificate chain failed to verify (the value is what a learner reads)."""

    DIFFERENT_ROOT = "issued under a different root"
    UNKNOWN_ISSUER = "issuer not found"
    EXPIRED = "expired"
    NOT_YET_VALID = "not yet valid"
    WRONG_SAN = "wrong SAN"
    NO_TRUST_BUNDLE = "no trust bundle for its trust domain"
    NOT_A_CA = "issuer is not a CA"
    BAD_SIGNATURE = "bad signature"
    POLICY = "rejected by X.509 path validation"


class VerificationError(PkiError):
    """A certificate chain that does not verify.

    Args:
        reason: the kind of failure, for code that branches on it.
        message: the full explanation, naming the certificate and what to do.
    """

    def __init__(self, reason: VerificationReason, message: str):
        super().__init__(message)
        self.reason = reason
