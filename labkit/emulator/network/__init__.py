"""The cluster network of an embedded cluster: cluster DNS and the service proxy (kube-proxy's job).

Both are fed Service, Endpoints and Pod dicts by the emulator's controllers and never read the store themselves, so
they can be tested, and reused by the mesh's DNS proxy, without an API server. Everything here runs on the emulator's
event loop; the only thread is the one that asks the host's resolver about names outside the cluster.
"""

from __future__ import annotations

from labkit.emulator.network.dns import DEFAULT_TTL, BoundAddress, ClusterDns
from labkit.emulator.network.names import Answer, ClusterNames, Srv
from labkit.emulator.network.proxy import Direction, Frontend, ServiceProxy, Tap, TapChunk, TappedConnection

__all__ = [
    "DEFAULT_TTL",
    "Answer",
    "BoundAddress",
    "ClusterDns",
    "ClusterNames",
    "Direction",
    "Frontend",
    "ServiceProxy",
    "Srv",
    "Tap",
    "TapChunk",
    "TappedConnection",
]
