"""The mesh as istiod sees it: immutable values the Envoy builders turn into resources.

istiod watches Kubernetes (its own cluster and the remote ones its remote secrets name) and Istio's
config, and condenses them into a :class:`MeshSnapshot`; for every proxy it then calls the pure
builders in :mod:`labkit.emulator.mesh.xds` with that snapshot and the :class:`Proxy`. Keeping the
snapshot frozen and free of Kubernetes plumbing is what makes the builders testable with golden data
(as Istio's pilot tests feed YAML and check the generated config), and what lets later labs add a
trust domain per cluster, SPIRE-issued identities or a DNS view without touching the watchers.

Names follow Istio: a service is keyed by its hostname (``helloworld.sample.svc.cluster.local``);
endpoints carry the network, cluster and locality they live in and whether a sidecar terminates mTLS
there (``tls_mode`` ``istio``); Istio config objects keep their ``spec`` as written, so the builders
interpret exactly the fields a user wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from labkit.core.contract import PROXY_HTTP_PORT

DEFAULT_DOMAIN = "cluster.local"
ROOT_NAMESPACE = "istio-system"

# Istio's well-known ports.
INBOUND_PASSTHROUGH = 15006
OUTBOUND = 15001
HTTP_PROXY_PORT = PROXY_HTTP_PORT  # meshConfig.defaultConfig.proxyHttpPort: the sidecar's HTTP proxy listener
ADMIN_PORT = 15000
STATUS_PORT = 15021  # /healthz/ready
MTLS_GATEWAY_PORT = 15443
XDS_PORT = 15012
WEBHOOK_PORT = 15017
MONITORING_PORT = 15014

Protocol = Literal["HTTP", "HTTP2", "GRPC", "HTTPS", "TLS", "TCP", "UNKNOWN"]
TlsMode = Literal["istio", "disabled"]
ProxyType = Literal["sidecar", "router"]


def port_protocol(name: str, app_protocol: str | None = None) -> Protocol:
    """Istio's protocol selection: ``appProtocol`` first, then the port name's prefix (``http-web``)."""
    for candidate in (app_protocol or "", name or ""):
        prefix = candidate.lower().split("-", 1)[0]
        mapped = {"http": "HTTP", "http2": "HTTP2", "grpc": "GRPC", "grpc-web": "HTTP", "https": "HTTPS",
                  "tls": "TLS", "tcp": "TCP", "mongo": "TCP", "redis": "TCP", "mysql": "TCP"}.get(prefix)
        if mapped:
            return mapped  # type: ignore[return-value]
    return "UNKNOWN"


@dataclass(frozen=True)
class ServicePort:
    """One port of a service, with the protocol Istio infers."""

    name: str
    port: int
    protocol: Protocol = "TCP"

    @property
    def is_http(self) -> bool:
        return self.protocol in ("HTTP", "HTTP2", "GRPC")


@dataclass(frozen=True)
class Endpoint:
    """One workload instance behind one service port (Istio's ``IstioEndpoint``).

    Args:
        address: the pod IP (or a WorkloadEntry/ServiceEntry endpoint address).
        port: the port the workload listens on (the resolved targetPort).
        service_port: the name of the service port this endpoint serves.
        labels: the workload's labels (subsets select on them).
        service_account: its SPIFFE identity, e.g. ``spiffe://cluster.local/ns/sample/sa/default``.
        network: ``topology.istio.io/network`` of the workload.
        cluster: the cluster it runs in (``multiCluster.clusterName``).
        locality: ``region/zone/subzone``.
        tls_mode: ``istio`` when a sidecar terminates mTLS for it, else ``disabled``.
        healthy: ready in Kubernetes' sense.
        workload: ``namespace/pod`` for tables and logs.
    """

    address: str
    port: int
    service_port: str
    labels: Mapping[str, str] = field(default_factory=dict)
    service_account: str = ""
    network: str = ""
    cluster: str = ""
    locality: str = ""
    tls_mode: TlsMode = "disabled"
    healthy: bool = True
    workload: str = ""


@dataclass(frozen=True)
class Service:
    """A service of the mesh, merged across clusters (Istio's ``Service`` plus its endpoints).

    Args:
        hostname: the FQDN, e.g. ``helloworld.sample.svc.cluster.local`` or a ServiceEntry host.
        namespace: where it is defined (ServiceEntries: their namespace).
        name: the Kubernetes Service name (``""`` for ServiceEntries).
        ports: its ports.
        addresses: cluster → ClusterIP (VIP) in that cluster; ServiceEntry addresses under ``""``.
        endpoints: every instance, in every cluster the control plane reads.
        resolution: ``STATIC`` (EDS), ``DNS``, or ``PASSTHROUGH`` (headless / original destination).
        mesh_external: a ServiceEntry with ``location: MESH_EXTERNAL``.
        exported_to: ``exportTo`` (``*`` by default).
        subject_alt_names: identities a ServiceEntry declares (``subjectAltNames``) that its servers may present,
            besides those of its endpoints.
    """

    hostname: str
    namespace: str
    name: str
    ports: tuple[ServicePort, ...]
    addresses: Mapping[str, str] = field(default_factory=dict)
    endpoints: tuple[Endpoint, ...] = ()
    resolution: Literal["STATIC", "DNS", "PASSTHROUGH"] = "STATIC"
    mesh_external: bool = False
    exported_to: tuple[str, ...] = ("*",)
    subject_alt_names: tuple[str, ...] = ()

    def port(self, number: int) -> ServicePort | None:
        return next((p for p in self.ports if p.port == number), None)


@dataclass(frozen=True)
class NetworkGateway:
    """Where another network's workloads are reached: an east-west gateway's external address.

    Args:
        network: the network it serves.
        address: its LoadBalancer ingress IP (or externalIP).
        port: the mTLS port, 15443 unless ``networking.istio.io/gatewayPort`` says otherwise.
        cluster: the cluster the gateway Service lives in.
    """

    network: str
    address: str
    port: int = MTLS_GATEWAY_PORT
    cluster: str = ""


@dataclass(frozen=True)
class ConfigObject:
    """An Istio config resource (DestinationRule, VirtualService, Gateway, PeerAuthentication, ServiceEntry,
    Sidecar …) with its ``spec`` kept as written.
    """

    kind: str
    namespace: str
    name: str
    spec: Mapping[str, Any]
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class MeshConfig:
    """The parts of ``meshConfig`` and the install values the builders need."""

    trust_domain: str = DEFAULT_DOMAIN
    trust_domain_aliases: tuple[str, ...] = ()
    mesh_id: str = ""
    root_namespace: str = ROOT_NAMESPACE
    enable_auto_mtls: bool = True
    outbound_traffic_policy: Literal["ALLOW_ANY", "REGISTRY_ONLY"] = "ALLOW_ANY"
    proxy_metadata: Mapping[str, str] = field(default_factory=dict)
    access_log_file: str = "/dev/stdout"
    # defaultConfig.discoveryAddress: where agents dial istiod (xDS and, by default, the CA).
    discovery_address: str = "istiod.istio-system.svc:15012"


@dataclass(frozen=True)
class MeshSnapshot:
    """Everything one control plane knows at one moment; builders read nothing else.

    Args:
        mesh: mesh-wide settings.
        services: every service, with endpoints from every cluster.
        gateways: network gateways, for endpoints of other networks.
        configs: Istio config objects.
        version: the push's version (display only: what ``/debug/syncz`` and Envoy's config dump show).
    """

    mesh: MeshConfig
    services: tuple[Service, ...] = ()
    gateways: tuple[NetworkGateway, ...] = ()
    configs: tuple[ConfigObject, ...] = ()
    version: str = "0"

    def service(self, hostname: str) -> Service | None:
        return next((s for s in self.services if s.hostname == hostname), None)

    def configs_of(self, kind: str) -> tuple[ConfigObject, ...]:
        return tuple(c for c in self.configs if c.kind == kind)


@dataclass(frozen=True)
class Proxy:
    """One Envoy the control plane configures: a sidecar or a gateway (router).

    Args:
        id: Envoy's node id, Istio-style ``<type>~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local``.
        type: ``sidecar`` or ``router``.
        name: the pod name.
        namespace: the pod namespace.
        ip: the pod IP: sidecars' inbound listeners and HTTP proxy bind it.
        app_address: where the application listens behind a sidecar (inbound clusters point here).
        labels: pod labels (workload selectors of Gateways, PeerAuthentications, Sidecars match them).
        service_account: the SPIFFE identity of the pod.
        cluster: the cluster the pod runs in.
        network: its network.
        locality: ``region/zone/subzone``.
        requested_network_view: ``ISTIO_META_REQUESTED_NETWORK_VIEW``: a gateway sees only these networks'
            endpoints (empty: all).
        metadata: the proxy's ``ISTIO_META_*`` and ``proxyMetadata`` values.
        container_ports: ports the workload declares (inbound listeners even without a Service).
        uid: the pod's uid.
    """

    id: str
    type: ProxyType
    name: str
    namespace: str
    ip: str
    app_address: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    service_account: str = ""
    cluster: str = ""
    network: str = ""
    locality: str = ""
    requested_network_view: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    container_ports: tuple[int, ...] = ()
    uid: str = ""


@dataclass(frozen=True)
class ProxyConfig:
    """The Envoy resources for one proxy, by type, as lists of resource dicts (already ``@type``-tagged)."""

    listeners: tuple[Mapping[str, Any], ...]
    clusters: tuple[Mapping[str, Any], ...]
    routes: tuple[Mapping[str, Any], ...]
    endpoints: tuple[Mapping[str, Any], ...]
    secrets: tuple[Mapping[str, Any], ...] = ()
    version: str = "0"
