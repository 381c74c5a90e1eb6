"""Every error labkit raises, in one tree.

Notebook cells catch ``LabkitError`` (or one of its branches) and print its message, so each
message names the object it is about and the fix, in one or two sentences::

    LabkitError
    ├── ToolNotFoundError        a program labkit needs (envoy, kubectl …) is not installed
    │   └── ExecNotFoundError    ``kubectl exec`` named a program an embedded pod does not have
    ├── EmulatorError            the embedded clusters did not start, or another set is running
    ├── CheckpointFailed         a lab's teaching point does not hold (what was measured is shown)
    ├── NotebookRunError         ``labkit run`` cannot find or start a notebook (a failing cell is a result)
    ├── MeshError                the embedded mesh: istiod and the Envoys it configures
    │   ├── XdsError             a mesh that cannot become a consistent config for a proxy (names both)
    │   ├── XdsInconsistentError a proxy config referring to resources it does not contain
    │   ├── XdsRejectedError     Envoy refused a published config (NACK); ``reason`` is Envoy's
    │   ├── XdsTimeoutError      Envoy did not apply a published config in time
    │   └── AgentError           an embedded proxy's agent cannot start (names the variable or file)
    ├── SpireError               the embedded SPIRE server or agent: config, entries, federation (SPIRE's words)
    ├── KubeApiError             an API server refused a request; carries its Status (code, reason, message)
    │   └── StatusError          raised inside an embedded API server; it answers with that Status
    ├── ManifestError            a manifest or IstioOperator labkit cannot apply (bad YAML, unknown kind, …)
    ├── InvalidSelectorError     a label or field selector that does not parse (also a ValueError)
    ├── WaitTimeoutError         something did not become ready in time; ``not_ready`` lists what
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


class ExecNotFoundError(ToolNotFoundError):
    """``kubectl exec`` named a program that is not on an embedded pod's ``PATH`` (the machine's tools and shims).

    The message is the one a container runtime gives (``OCI runtime exec failed: … executable file not found in
    $PATH``), followed by what to install.

    Args:
        tool: the program as given.
        hint: what to install.
    """

    def __init__(self, tool: str, hint: str):
        super().__init__(tool, hint)
        self.args = (f'OCI runtime exec failed: exec failed: unable to start container process: exec: "{tool}": '
                     f"executable file not found in $PATH: unknown. {hint}",)


class EmulatorError(LabkitError):
    """The embedded clusters could not be started, found or stopped."""


class MeshError(LabkitError):
    """The embedded mesh could not configure a proxy."""


class XdsError(MeshError):
    """The mesh cannot be turned into a consistent Envoy configuration for a proxy; the message names the proxy
    and the missing or conflicting resource.
    """


class AgentError(MeshError):
    """An embedded proxy's agent (``pilot-agent``) cannot start: the message says which variable or file is missing."""


class XdsInconsistentError(MeshError):
    """A proxy config that cannot be published: a nameless or duplicate resource, or a reference to a route
    config or secret the config does not contain (Envoy would wait for it forever).
    """


class XdsRejectedError(MeshError):
    """Envoy refused a published update (a NACK); the last accepted configuration keeps serving.

    Args:
        proxy: the proxy, ``cluster/namespace/pod``.
        kind: the xDS type, ``LDS``, ``CDS``, ``RDS``, ``EDS`` or ``SDS``.
        resource: the resource's name when it is known, else ``""``.
        reason: Envoy's words.
        message: the full explanation.
    """

    def __init__(self, proxy: str, kind: str, resource: str, reason: str, message: str):
        super().__init__(message)
        self.proxy = proxy
        self.kind = kind
        self.resource = resource
        self.reason = reason


class XdsTimeoutError(MeshError):
    """Envoy did not apply a published update in time (not running, or stuck); the message says what is missing."""


class SpireError(LabkitError):
    """The embedded SPIRE server or agent: a config it cannot use, an entry it refuses, a federation failure.

    Messages are SPIRE's own where it has one (``entry already exists``), since the CLI prints them.
    """


class CheckpointFailed(LabkitError):
    """A lab's teaching point does not hold on these clusters (the message shows what was measured)."""


class NotebookRunError(LabkitError):
    """A notebook that could not be found or started (a failing cell is a result, not this error)."""


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


class KubeApiError(LabkitError):
    """A Kubernetes API server refused a request.

    The Status the server sent is kept, so code can branch on ``code``/``reason`` (``NotFound``,
    ``Forbidden``, ``AlreadyExists`` …) while a learner reads ``message`` as kubectl would print it.

    Args:
        code: the HTTP status code (404, 403 …).
        reason: the Status ``reason``, e.g. ``Forbidden``.
        message: the Status ``message``, prefixed with what labkit was doing when useful.
        status: the whole Status object when the server sent one.
    """

    def __init__(self, code: int, reason: str, message: str, status: dict | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.status = status or {}


class StatusError(KubeApiError):
    """A refusal raised inside an embedded API server, which answers with its ``Status`` (code, reason, details).

    Every layer of the emulator (store, patches, admission, handlers) raises it; the API server turns it into the
    ``meta/v1 Status`` body and HTTP code a real server sends. Clients branch on ``reason`` (``AlreadyExists``
    versus ``Conflict``), so ``reason``, ``code`` and the ``details`` block are Kubernetes' own; the builders in
    ``labkit.emulator.apimachinery.status`` keep them so.

    Args:
        code: HTTP status code.
        reason: machine-readable ``StatusReason`` (``NotFound``, ``Conflict`` …).
        message: what kubectl prints verbatim; name the object and what to do.
        details: the ``details`` block (``name``, ``group``, ``kind``, ``causes``).
    """

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        self.details = details or {}
        super().__init__(code, reason, message, _failure(code, reason, message, self.details))

    def to_status(self) -> dict:
        """The ``Status`` object as the API server sends it."""
        return _failure(self.code, self.reason, self.message, self.details)

    def __repr__(self) -> str:
        return f"StatusError({self.code}, {self.reason!r}, {self.message!r})"


def _failure(code: int, reason: str, message: str, details: dict) -> dict:
    status: dict = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                    "reason": reason, "code": code}
    if details:
        status["details"] = details
    return status


class ManifestError(LabkitError):
    """A manifest labkit will not apply: bad YAML, an unknown kind, a missing namespace, an unsupported field.

    Every problem found is listed (not only the first), each naming the object, the field and the fix.

    Args:
        message: the explanation as a learner reads it.
        problems: one line per problem, for code that wants them separately.
    """

    def __init__(self, message: str, problems: list[str] | tuple[str, ...] = ()):
        super().__init__(message)
        self.problems = tuple(problems) or (message,)


class InvalidSelectorError(LabkitError, ValueError):
    """A label or field selector that does not parse; the message quotes it and says what was expected.

    The emulator's API server answers it as ``400 BadRequest`` with this message, as a real one does.
    """


class WaitTimeoutError(LabkitError):
    """Objects that did not become ready before a deadline.

    Args:
        message: what was awaited and for how long, and what is still not ready.
        not_ready: one line per object still not ready, with why (``ErrImagePull``, ``0/1 available`` …).
    """

    def __init__(self, message: str, not_ready: list[str] | tuple[str, ...] = ()):
        super().__init__(message)
        self.not_ready = tuple(not_ready)
