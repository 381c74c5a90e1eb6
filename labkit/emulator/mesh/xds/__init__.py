"""Pure xDS builders: a :class:`~labkit.emulator.mesh.model.MeshSnapshot` and a proxy in, Envoy v3 resource dicts
out, named as Istio names them.

One builder per resource type, as in Istio's pilot: :func:`build_clusters`, :func:`build_endpoints`,
:func:`build_listeners`, :func:`build_routes`, :func:`build_secrets`, and the DNS proxy's
:func:`build_name_table` (NDS); :func:`generate` runs them all for one
proxy and checks that every reference resolves. Names and config sources live in :mod:`.names` only. Nothing
here does I/O: istiod's gRPC server (:mod:`labkit.emulator.mesh.serving`) carries what they build.
"""

from labkit.emulator.mesh.xds.clusters import build_clusters
from labkit.emulator.mesh.xds.endpoints import build_endpoints, build_load_assignment
from labkit.emulator.mesh.xds.listeners import build_listeners, gateway_conflicts
from labkit.emulator.mesh.xds.nametable import NameInfo, NameTable, build_name_table
from labkit.emulator.mesh.xds.routes import build_routes
from labkit.emulator.mesh.xds.secrets import build_root_secret, build_secrets, build_tls_secret
from labkit.emulator.mesh.xds.snapshot import ProxyCredential, check_consistency, generate
from labkit.errors import XdsError

__all__ = [
    "NameInfo",
    "NameTable",
    "ProxyCredential",
    "XdsError",
    "build_clusters",
    "build_endpoints",
    "build_listeners",
    "build_load_assignment",
    "build_name_table",
    "build_root_secret",
    "build_routes",
    "build_secrets",
    "build_tls_secret",
    "check_consistency",
    "gateway_conflicts",
    "generate",
]
