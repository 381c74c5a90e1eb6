"""The one place that owns the names of Envoy resources, the way istiod spells them.

Every other builder asks this module for a name and never formats one itself, so a cluster referenced
by a route, by a ``tcp_proxy`` and by an EDS file is always the same string (Istio keeps the same rule
with ``BuildSubsetKey``/``ParseSubsetKey``). The names are what learners read in
``istioctl proxy-config`` output and in access logs, so they follow Istio exactly:

- clusters: ``outbound|5000|v1|helloworld.sample.svc.cluster.local``, ``inbound|5000||``;
- SNI (and the AUTO_PASSTHROUGH clusters of a gateway): ``outbound_.5000_.v1_.helloworld.sample.svc.cluster.local``;
- listeners: ``<address>_<port>``; routes: ``http_proxy``, ``inbound|5000||``, ``http.8080``,
  ``https.443.https.gateway.istio-system``; secrets: ``default``, ``ROOTCA``, ``kubernetes://<credentialName>``.

**Config sources.** Everything but the workload's own secrets comes on the proxy's one ADS stream
(``ads: {}``): EDS by the cluster's service name, RDS by route configuration name, and a gateway's
``kubernetes://<credentialName>`` secrets, which istiod serves. ``default`` and ``ROOTCA`` come from the agent's
SDS server through the bootstrap's ``sds-grpc`` cluster, as Istio's generated configuration says
(:func:`config_source`). ``initial_fetch_timeout: 0s``: Envoy waits for them rather than warming without.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

Direction = Literal["inbound", "outbound"]
ResourceKind = Literal["eds", "rds", "sds"]

SDS_CLUSTER = "sds-grpc"

HTTP_PROXY_ROUTE = "http_proxy"
BLACKHOLE_CLUSTER = "BlackHoleCluster"
PASSTHROUGH_CLUSTER = "PassthroughCluster"
# Where PassthroughCluster (ORIGINAL_DST) reads its destination, ``IP:port`` (Envoy's default header name).
ORIGINAL_DST_HEADER = "x-envoy-original-dst-host"
ALLOW_ANY_VHOST = "allow_any"
BLOCK_ALL_VHOST = "block_all"
SDS_DEFAULT = "default"
SDS_ROOT = "ROOTCA"
_SNI_PREFIX = "outbound_"


class ClusterKey(NamedTuple):
    """The parts of a cluster name (Istio's ``ParseSubsetKey``)."""

    direction: Direction
    port: int
    subset: str
    host: str


def cluster_name(direction: Direction, port: int, subset: str = "", host: str = "") -> str:
    """``outbound|5000|v1|helloworld.sample.svc.cluster.local``; inbound clusters leave subset and host empty.

    Args:
        direction: ``outbound`` or ``inbound``.
        port: the service port (inbound: the workload's target port).
        subset: the DestinationRule subset name, ``""`` for the whole service.
        host: the service hostname.
    """
    return f"{direction}|{port}|{subset}|{host}"


def parse_cluster_name(name: str) -> ClusterKey:
    """Split a name made by :func:`cluster_name`.

    Args:
        name: e.g. ``outbound|5000||helloworld.sample.svc.cluster.local``.

    Raises:
        ValueError: not an ``inbound|…`` or ``outbound|…`` cluster name.
    """
    parts = name.split("|")
    if len(parts) != 4 or parts[0] not in ("inbound", "outbound") or not parts[1].isdigit():
        raise ValueError(f"{name!r} is not an Istio cluster name (expected outbound|<port>|<subset>|<host>)")
    return ClusterKey(parts[0], int(parts[1]), parts[2], parts[3])  # type: ignore[arg-type]


def sni(port: int, subset: str, host: str) -> str:
    """The SNI a sidecar sends (and an AUTO_PASSTHROUGH gateway routes on): ``outbound_.5000_._.<host>``.

    Args:
        port: the service port.
        subset: the subset name, ``""`` for none (spelled ``_`` then).
        host: the service hostname.
    """
    return f"{_SNI_PREFIX}.{port}_.{subset}_.{host}"


def parse_sni(name: str) -> ClusterKey:
    """Split an SNI made by :func:`sni` into an outbound :class:`ClusterKey`.

    Raises:
        ValueError: not an ``outbound_.<port>_.<subset>_.<host>`` name.
    """
    head, _, rest = name.partition("_.")
    port, sep1, rest = rest.partition("_.")
    subset, sep2, host = rest.partition("_.")
    if f"{head}_" != _SNI_PREFIX or not (sep1 and sep2 and port.isdigit() and host):
        raise ValueError(f"{name!r} is not an Istio SNI (expected outbound_.<port>_.<subset>_.<host>)")
    return ClusterKey("outbound", int(port), subset, host)


def sni_dnat_cluster_name(port: int, subset: str, host: str) -> str:
    """A gateway's AUTO_PASSTHROUGH cluster is named after the SNI it serves (Istio's ``sni-dnat`` clusters)."""
    return sni(port, subset, host)


def listener_name(address: str, port: int) -> str:
    """``127.0.10.5_15443``: Istio names listeners after their bind address and port."""
    return f"{address}_{port}"


def inbound_route_name(port: int) -> str:
    """The inbound HTTP route configuration of a port has the inbound cluster's name, as in Istio."""
    return cluster_name("inbound", port)


def gateway_http_route_name(port: int) -> str:
    """``http.8080``: the route configuration shared by every plaintext HTTP server of a gateway port."""
    return f"http.{port}"


def gateway_https_route_name(port: int, port_name: str, gateway: str, namespace: str) -> str:
    """``https.443.https.my-gateway.istio-system``: a TLS-terminating server gets a route config of its own."""
    return f"https.{port}.{port_name}.{gateway}.{namespace}"


def credential_secret_name(credential_name: str) -> str:
    """SDS name of a gateway's ``credentialName`` Secret, as istiod serves it."""
    return f"kubernetes://{credential_name}"


def domain_name(host: str, port: int) -> str:
    """``host:port``, the virtual host name Istio uses."""
    return f"{host}:{port}"


def config_source(kind: ResourceKind, name: str) -> dict[str, Any]:
    """The ``ConfigSource`` through which a proxy fetches one EDS, RDS or SDS resource, as Istio's config says.

    The agent's SDS stream retries after 50 ms (Envoy's default backoff starts at 500 ms): the agent opens its
    socket just after Envoy starts.

    Args:
        kind: ``eds``, ``rds`` or ``sds``.
        name: the resource name: ``default`` and ``ROOTCA`` come from the agent, everything else over ADS.
    """
    if kind == "sds" and name in (SDS_DEFAULT, SDS_ROOT):
        return {"api_config_source": {"api_type": "GRPC", "transport_api_version": "V3",
                                      "set_node_on_first_message_only": True,
                                      "grpc_services": [{"envoy_grpc": {"cluster_name": SDS_CLUSTER, "retry_policy": {
                                          "retry_back_off": {"base_interval": "0.05s", "max_interval": "1s"}}}}]},
                "initial_fetch_timeout": "0s", "resource_api_version": "V3"}
    return {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}
