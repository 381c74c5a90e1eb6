"""The cluster network of an embedded cluster: addresses, cluster DNS, the service proxy (kube-proxy's job).

* :mod:`.addresses`: where pods, Services and load balancers live on loopback (one plan per emulator), and the
  pools they are taken from (the load-balancer pool is shared by every cluster, as a cloud's is);
* :mod:`.names`, :mod:`.dns`: the cluster's DNS records and the server answering them;
* :mod:`.proxy`: the service proxy, which relays ClusterIP, node-port and load-balancer traffic to endpoints;
* :mod:`.captures`: ``PacketCapture`` objects, served by tapping the proxy's relay (Lab 3's capture).

DNS and the proxy are fed Service, Endpoints and Pod dicts by the cluster and never read the store themselves, so
they can be tested, and reused by the mesh's DNS proxy, without an API server; only the captures controller
watches the store (for its own objects). Everything here runs on the emulator's event loop; the only thread is the
one that asks the host's resolver about names outside the cluster.
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
