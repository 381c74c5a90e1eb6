"""The pure core both sides of labkit share: the client (``labkit.kube``, ``labkit.lab`` …) and the emulator.

Some facts must mean the same thing wherever labkit reads them — how a label selector matches, how a
Kubernetes timestamp is written, which names the API accepts, which port a sidecar's HTTP proxy listens on,
which annotation asks the embedded load balancer for an address. Written twice, they drift; so they live here
once. This layer does no I/O and imports nothing beyond the standard library and :mod:`labkit.errors`, so the
emulator (a process of its own) and the notebook side can both depend on it without depending on each other.

- :mod:`labkit.core.selectors` — label and field selectors: parsing, matching, Kubernetes' string form.
- :mod:`labkit.core.kubetime` — RFC 3339 timestamps and kubectl's human durations (``AGE``).
- :mod:`labkit.core.names` — the name rules of the API (DNS-1123 labels and subdomains, DNS-1035 labels).
- :mod:`labkit.core.wire` — ``TypedDict`` shapes of the payloads labkit reads, and ``Obj`` for any object.
- :mod:`labkit.core.contract` — the contract between the client and the embedded clusters: ports,
  annotations, API groups and file names that both sides must agree on.
"""

from __future__ import annotations

__all__ = ["contract", "kubetime", "names", "selectors", "wire"]
