"""SPIFFE IDs: ``spiffe://<trust-domain>/<path>``, validated as the SPIFFE standard requires.

Istio names every workload ``spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>``; the trust
domain is what selects the trust bundle a peer is checked against, so a malformed ID must be refused
early and loudly rather than silently matching nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from labkit.errors import PkiError

_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]+$")
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")


def check_trust_domain(name: str) -> str:
    """Return ``name`` if it is a valid trust domain (lower-case letters, digits, ``.``, ``-``, ``_``)."""
    if not name or not _TRUST_DOMAIN.match(name):
        raise PkiError(f"{name!r} is not a valid SPIFFE trust domain: use lower-case letters, digits, "
                       f"'.', '-' and '_' only, e.g. 'cluster.local' or 'foo.com'.")
    return name


@dataclass(frozen=True, order=True)
class SpiffeId:
    """A parsed SPIFFE ID.

    Args:
        trust_domain: e.g. ``cluster.local``.
        path: e.g. ``/ns/sample/sa/sleep`` (empty for the trust domain's own ID).
    """

    trust_domain: str
    path: str = ""

    def __post_init__(self) -> None:
        check_trust_domain(self.trust_domain)
        if self.path:
            segments = self.path.split("/")
            if segments[0] != "" or any(s in ("", ".", "..") or not _SEGMENT.match(s) for s in segments[1:]):
                raise PkiError(f"{self.path!r} is not a valid SPIFFE ID path: it must start with '/', and its "
                               f"segments be non-empty, not '.' or '..', of letters, digits, '.', '-', '_'.")

    @classmethod
    def parse(cls, uri: str) -> SpiffeId:
        """Parse ``spiffe://td/path``; raise :class:`PkiError` naming what is wrong."""
        prefix = "spiffe://"
        if not uri.lower().startswith(prefix) or uri[:len(prefix)] != prefix:
            raise PkiError(f"{uri!r} is not a SPIFFE ID: it must start with 'spiffe://' (lower case).")
        rest = uri[len(prefix):]
        if any(c in rest for c in "?#@:"):
            raise PkiError(f"{uri!r} is not a SPIFFE ID: no port, user info, query or fragment is allowed.")
        domain, slash, path = rest.partition("/")
        return cls(domain, slash + path if slash else "")

    @classmethod
    def for_workload(cls, trust_domain: str, namespace: str, service_account: str) -> SpiffeId:
        """Istio's workload identity ``spiffe://<td>/ns/<ns>/sa/<sa>``."""
        return cls(trust_domain, f"/ns/{namespace}/sa/{service_account}")

    @property
    def namespace(self) -> str | None:
        """The ``ns`` segment of an Istio-style workload ID."""
        return self._segment_after("ns")

    @property
    def service_account(self) -> str | None:
        """The ``sa`` segment of an Istio-style workload ID."""
        return self._segment_after("sa")

    def _segment_after(self, key: str) -> str | None:
        segments = self.path.split("/")[1:]
        for i in range(0, len(segments) - 1, 2):
            if segments[i] == key:
                return segments[i + 1]
        return None

    def __str__(self) -> str:
        return f"spiffe://{self.trust_domain}{self.path}"
