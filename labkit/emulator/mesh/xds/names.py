"""The one place that owns the names of Envoy resources, the way istiod spells them.

Every other builder asks this module for a name and never formats one itself, so a cluster referenced
by a route, by a ``tcp_proxy`` and by an EDS file is always the same string (Istio keeps the same rule
with ``BuildSubsetKey``/``ParseSubsetKey``). The names are what learners read in
``istioctl proxy-config`` output and in access logs, so they follow Istio exactly:

- clusters: ``outbound|5000|v1|helloworld.sample.svc.cluster.local``, ``inbound|5000||``;
- SNI (and the AUTO_PASSTHROUGH clusters of a gateway): ``outbound_.5000_.v1_.helloworld.sample.svc.cluster.local``;
- listeners: ``<address>_<port>``; routes: ``http_proxy``, ``inbound|5000||``, ``http.8080``,
  ``https.443.https.gateway.istio-system``; secrets: ``default``, ``ROOTCA``, ``kubernetes://<credentialName>``.

**Config sources and the ``{xds_dir}`` token.** The builders are pure and do not know where a proxy's files
will live, so every config source they emit (EDS, RDS, SDS) is a ``path_config_source`` whose path starts
with the literal token ``{xds_dir}``; the writer replaces it with the proxy's directory
(:func:`with_xds_dir`) before publishing. Envoy's filesystem subscriptions hand the *whole* file to each
subscriber and EDS, RDS and SDS refuse a file holding more than one resource ("Unexpected EDS resource
length: 2"), so each of those resources gets a file of its own, named by :func:`resource_file`:
``{xds_dir}/eds/<name>.json``, ``{xds_dir}/rds/<name>.json``, ``{xds_dir}/sds/<name>.json``, the name
percent-encoded (``|``, ``/`` and ``:`` do not belong in file names). LDS and CDS stay one file each
(``lds.json``, ``cds.json``), state of the world, referenced from the bootstrap.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

Direction = Literal["inbound", "outbound"]
ResourceKind = Literal["eds", "rds", "sds"]

XDS_DIR = "{xds_dir}"

HTTP_PROXY_ROUTE = "http_proxy"
BLACKHOLE_CLUSTER = "BlackHoleCluster"
PASSTHROUGH_CLUSTER = "PassthroughCluster"
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


def resource_file(kind: ResourceKind, name: str) -> str:
    """Where, relative to the proxy's xDS directory, the writer puts one EDS/RDS/SDS resource.

    Args:
        kind: ``eds``, ``rds`` or ``sds``.
        name: the resource name (cluster/EDS service name, route configuration name, secret name).
    """
    return f"{kind}/{urllib.parse.quote(name, safe='._-')}.json"


def config_source(kind: ResourceKind, name: str) -> dict[str, Any]:
    """A filesystem ``ConfigSource`` for one resource, with the ``{xds_dir}`` token the writer replaces."""
    return {"path_config_source": {"path": f"{XDS_DIR}/{resource_file(kind, name)}"}, "resource_api_version": "V3"}


def with_xds_dir(value: Any, xds_dir: str) -> Any:
    """A copy of a resource (or any JSON-like value) with every ``{xds_dir}`` token replaced.

    Args:
        value: a resource dict, a list of them, or any JSON-like value.
        xds_dir: the proxy's xDS directory, without a trailing slash.
    """
    if isinstance(value, str):
        return value.replace(XDS_DIR, xds_dir)
    if isinstance(value, Mapping):
        return {key: with_xds_dir(item, xds_dir) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [with_xds_dir(item, xds_dir) for item in value]
    return value
