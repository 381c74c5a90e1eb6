"""The bootstrap the agent starts Envoy with: who it is, where its agent is, how it reports readiness.

Everything that changes at run time comes over ADS from the agent's ``xds-grpc`` socket (forwarded to istiod),
and the workload's certificate over SDS from its ``sds-grpc`` socket, as in Istio's bootstrap; both are Unix
sockets in the pod's folder. Two things differ from a real istio-proxy because all pods share one loopback:

* the admin interface binds the pod IP (``<pod IP>:15000``), never ``127.0.0.1:15000``, which every
  proxy would want;
* there is no Go pilot-agent serving ``:15020``: the readiness port ``<pod IP>:15021`` is a static
  listener whose ``/healthz/ready`` is rewritten to Envoy's own admin ``/ready``, through a static
  cluster named ``agent`` as in Istio. It answers 200 only once Envoy is ``LIVE`` (istiod's first CDS and
  LDS applied: ``initial_fetch_timeout: 0s`` makes Envoy wait for them, however long istiod takes), and
  nothing listens before that, so a probe fails until then.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Istio's well-known ports (the same as labkit.emulator.mesh.model's, which sits above this layer).
ADMIN_PORT = 15000
STATUS_PORT = 15021
# Istio's paths inside a proxy's pod, relative to the pod's folder (the agent's and Envoy's working directory).
BOOTSTRAP = Path("etc/istio/proxy/envoy-rev.json")
XDS_SOCKET = Path("etc/istio/proxy/XDS")
SDS_SOCKET = Path("var/run/secrets/workload-spiffe-uds/socket")
TOKEN_PATH = Path("var/run/secrets/tokens/istio-token")
ROOT_CERT = Path("var/run/secrets/istio/root-cert.pem")
# Node metadata naming where the application behind a sidecar listens (labkit's own key: a real sidecar's
# application shares its pod IP; here it has an address of its own, DESIGN decision 5).
APP_ADDRESS_METADATA = "LABKIT_APP_ADDRESS"

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
DOWNSTREAM_CONNECTIONS = ("type.googleapis.com/"
                          "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig")
FILE_ACCESS_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
HTTP_PROTOCOL_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def node_id(proxy_type: str, ip: str, pod: str, namespace: str, domain: str = "cluster.local") -> str:
    """Istio's node id: ``sidecar~10.0.0.1~helloworld-v1-abc.sample~sample.svc.cluster.local``."""
    return f"{proxy_type}~{ip}~{pod}.{namespace}~{namespace}.svc.{domain}"


def _socket(address: tuple[str, int]) -> dict[str, Any]:
    return {"socket_address": {"address": address[0], "port_value": int(address[1])}}


def _pipe_cluster(name: str, path: Path) -> dict[str, Any]:
    """A static HTTP/2 cluster on a Unix socket, as Istio's ``xds-grpc`` and ``sds-grpc``.

    The agent creates its sockets just after Envoy starts (Envoy is forked first, before the agent's threads
    exist): the first dial may find no socket, so the gRPC streams retry after 50 ms rather than Envoy's
    default 500 ms-and-more backoff, which would be the whole of a pod's start time.
    """
    return {
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": HTTP_PROTOCOL_OPTIONS, "explicit_http_config": {"http2_protocol_options": {}}}},
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"pipe": {"path": str(path)}}}}]}]},
    }


def _grpc_service(cluster: str) -> dict[str, Any]:
    return {"envoy_grpc": {"cluster_name": cluster, "retry_policy": {
        "retry_back_off": {"base_interval": "0.05s", "max_interval": "1s"}}}}


def bootstrap(*, node_id: str, cluster: str, metadata: Mapping[str, Any], admin_address: tuple[str, int],
              sockets: tuple[Path, Path], status_address: tuple[str, int] | None, access_log: bool) -> dict[str, Any]:
    """Envoy's bootstrap for one proxy, as a dict ready for JSON.

    Args:
        node_id: Istio-style node id (:func:`node_id`).
        cluster: the node's cluster, ``<app>.<namespace>``.
        metadata: node metadata (``ISTIO_META_*`` without the prefix, and the agent's own fields).
        admin_address: where the admin interface binds: the pod IP and 15000.
        sockets: ``(XDS socket, SDS socket)``: the agent's ``xds-grpc`` (ADS, forwarded to istiod) and
            ``sds-grpc`` (the workload certificate); relative paths are taken from Envoy's working directory,
            the pod's folder (a Unix socket path holds at most 107 bytes).
        status_address: where ``/healthz/ready`` is served (pod IP, 15021); ``None`` for no readiness port.
        access_log: log every admin request (readiness probes and ``pilot-agent request`` included) to
            stdout; off as in Istio, where they would drown the traffic's access log.
    """
    admin: dict[str, Any] = {"address": _socket(admin_address)}
    if access_log:
        admin["access_log"] = [{"name": "envoy.access_loggers.file",
                                "typed_config": {"@type": FILE_ACCESS_LOG, "path": "/dev/stdout"}}]
    static: dict[str, Any] = {"listeners": [], "clusters": []}
    if status_address is not None:
        static["clusters"].append({
            "name": "agent",
            "type": "STATIC",
            "connect_timeout": "0.250s",
            "load_assignment": {"cluster_name": "agent", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": _socket(admin_address)}}]}]},
        })
        static["listeners"].append({
            "name": "agent-status",
            "address": _socket(status_address),
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": HCM,
                    "stat_prefix": "agent",
                    "codec_type": "AUTO",
                    "route_config": {"name": "agent-status", "virtual_hosts": [{
                        "name": "status", "domains": ["*"],
                        "routes": [{"match": {"path": "/healthz/ready"},
                                    "route": {"cluster": "agent", "prefix_rewrite": "/ready", "timeout": "1s"}}],
                    }]},
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
                },
            }]}],
        })
    ads = {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}
    dynamic = {"ads_config": {"api_type": "GRPC", "transport_api_version": "V3", "set_node_on_first_message_only":
                              True, "grpc_services": [_grpc_service("xds-grpc")]},
               "cds_config": ads, "lds_config": ads}
    static["clusters"] += [_pipe_cluster("xds-grpc", sockets[0]), _pipe_cluster("sds-grpc", sockets[1])]
    return {
        "node": {"id": node_id, "cluster": cluster, "metadata": dict(metadata)},
        "admin": admin,
        "static_resources": static,
        "dynamic_resources": dynamic,
        # Istio's setting: no real limit, but a configured one, so Envoy does not warn at every start.
        "overload_manager": {"resource_monitors": [{
            "name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": {"@type": DOWNSTREAM_CONNECTIONS, "max_active_downstream_connections": 2147483647},
        }]},
        "layered_runtime": {"layers": [{"name": "admin", "admin_layer": {}}]},
    }
