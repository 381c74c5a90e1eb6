"""Lab 1's analysis: where a sidecar's calls should go, and the path they took, on any multi-network mesh.

A sidecar's endpoint table (``istioctl proxy-config endpoints``) is the prediction. Istio lists every pod of
the caller's own network by its IP (dialled directly, whatever cluster it runs in) and replaces the pods of
each other network by that network's east-west gateway (``address:15443``), weighted by how many pods stand
behind it. Envoy then picks an endpoint with probability weight / total. So the prediction is *per route*:
each directly dialled pod gets its weight's share, each gateway its total share — never a share per pod
behind a gateway, because the sidecar does not choose those: the gateway does.

And the gateway does not choose per request. An ``AUTO_PASSTHROUGH`` gateway forwards TLS connections on
their SNI, so it balances *connections*; a caller whose sidecar keeps its upstream connection to the gateway
open sends every request on it to the same pod behind. What stands behind a gateway is therefore shown as
measured (the instances that answered through it), not predicted.

Everything is read through the lab's cluster handles, from what Istio itself uses: pods and their IPs, the
``topology.istio.io/network`` label of each ``istio-system``, and the gateways, Services labelled with a
network and holding an external address (port 15443 unless ``networking.istio.io/gatewayPort`` says
otherwise). Nothing here assumes Lab 1's shape (three clusters, one network and one gateway each).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pandas as pd

from labkit import viz
from labkit.cluster import NETWORK_LABEL

if TYPE_CHECKING:
    from labkit.lab import Lab

GATEWAY_PORT_LABEL = "networking.istio.io/gatewayPort"
GATEWAY_PORT = 15443
_HEALTHY = {"HEALTHY", ""}


@dataclass(frozen=True)
class Instance:
    """A pod of the called service.

    Args:
        cluster: the lab cluster it runs in.
        network: that cluster's network.
        name: the pod name (what helloworld answers as its ``instance``).
        ip: its pod IP.
        version: its ``version`` label.
    """

    cluster: str
    network: str
    name: str
    ip: str
    version: str = ""


@dataclass(frozen=True)
class Gateway:
    """A network's gateway: a Service labelled with the network, holding an external address (or, in
    :attr:`Mesh.pending`, still waiting for one).

    Args:
        cluster: the lab cluster whose Service it is.
        network: the network it leads into.
        name: the Service's name.
        namespace: the Service's namespace.
        address: its external address and mTLS port, as sidecars list it (``127.0.200.3:15443``); empty while
            ``<pending>``.
    """

    cluster: str
    network: str
    name: str
    namespace: str
    address: str

    @property
    def key(self) -> str:
        """How shares name this route: ``network2 gateway``."""
        return gateway_key(self.network)


@dataclass(frozen=True)
class Mesh:
    """What the analysis knows of a lab's mesh: networks, the service's pods, the gateways that exist, and the
    network gateways still waiting for an external address (``EXTERNAL-IP <pending>``; address empty)."""

    networks: dict[str, str]
    instances: tuple[Instance, ...]
    gateways: tuple[Gateway, ...]
    pending: tuple[Gateway, ...] = ()

    def instance(self, name: str) -> Instance | None:
        """The pod of that name (names are unique across a lab's clusters: they carry random suffixes)."""
        return next((i for i in self.instances if i.name == name), None)


@dataclass(frozen=True)
class Route:
    """One endpoint a caller's sidecar balances over, and what it is.

    Args:
        endpoint: the address as Envoy lists it.
        weight: its load-balancing weight.
        share: weight / the total weight of the healthy endpoints.
        kind: ``pod`` (dialled directly, same network), ``gateway`` (another network's), or ``unknown``.
        key: the pod's name, ``<network> gateway``, or the raw address for an endpoint nothing explains.
        instance: the pod, for a ``pod`` route.
        gateway: the gateway, for a ``gateway`` route.
    """

    endpoint: str
    weight: int
    share: float
    kind: Literal["pod", "gateway", "unknown"]
    key: str
    instance: Instance | None = None
    gateway: Gateway | None = None


def gateway_key(network: str) -> str:
    """The route key of a network's gateway."""
    return f"{network} gateway"


def survey(lab: Lab, *, service: str = "helloworld", namespace: str = "sample") -> Mesh:
    """Read the networks, the service's pods (``app=<service>``) and the network gateways of every lab cluster.

    Args:
        lab: the lab.
        service: the called service's ``app`` label.
        namespace: its namespace.
    """
    networks = {cluster.name: cluster.network for cluster in lab}
    instances = tuple(Instance(cluster.name, networks[cluster.name], pod.name, pod.ip, pod.labels.get("version", ""))
                      for cluster in lab for pod in cluster.pods(namespace, f"app={service}"))
    gateways, pending = [], []
    for cluster in lab:
        for service_object in cluster.list("v1", "Service", selector=NETWORK_LABEL):
            metadata = service_object.get("metadata") or {}
            labels = metadata.get("labels") or {}
            ingress = ((service_object.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            address = (ingress[0].get("ip") or ingress[0].get("hostname") or "") if ingress else ""
            gateway = Gateway(cluster.name, labels[NETWORK_LABEL], metadata.get("name", ""),
                              metadata.get("namespace", ""), "")
            if address:
                port = labels.get(GATEWAY_PORT_LABEL) or GATEWAY_PORT
                gateways.append(dataclasses.replace(gateway, address=f"{address}:{port}"))
            elif (service_object.get("spec") or {}).get("type") == "LoadBalancer":
                pending.append(gateway)
    return Mesh(networks, instances, tuple(gateways), tuple(pending))


def routes(lab: Lab, cluster: str, *, workload: str = "deploy/sleep.sample", service: str = "helloworld",
           namespace: str = "sample", port: int = 5000, mesh: Mesh | None = None) -> list[Route]:
    """The routes ``cluster``'s caller has to the service, from its sidecar's own endpoint weights.

    Args:
        lab: the lab.
        cluster: the calling cluster.
        workload: the calling proxy, as istioctl names it.
        service: the called service (``app`` label and Service name).
        namespace: its namespace.
        port: its port.
        mesh: a :func:`survey` already made (one is made otherwise).
    """
    mesh = mesh or survey(lab, service=service, namespace=namespace)
    table = lab[cluster].endpoints(workload, envoy_cluster=f"outbound|{port}||{service}.{namespace}.svc.cluster.local")
    rows = [r for r in table.rows if r.status in _HEALTHY and r.outlier_check in ("OK", "")]
    total = sum(r.weight for r in rows)
    mine = mesh.networks.get(cluster, "")
    # Pod IPs are unique only within a network (real clusters on different networks may reuse a CIDR), and a
    # sidecar dials directly only pods of its own network: look the address up there.
    direct = {f"{i.ip}:{port}": i for i in mesh.instances if i.network == mine}
    gateways = {g.address: g for g in mesh.gateways}
    found = []
    for row in rows:
        share = row.weight / total if total else 0.0
        if row.endpoint in gateways:
            gateway = gateways[row.endpoint]
            found.append(Route(row.endpoint, row.weight, share, "gateway", gateway.key, gateway=gateway))
        elif row.endpoint in direct:
            pod = direct[row.endpoint]
            found.append(Route(row.endpoint, row.weight, share, "pod", pod.name, instance=pod))
        else:
            found.append(Route(row.endpoint, row.weight, share, "unknown", row.endpoint))
    return found


def expected_shares(lab: Lab, cluster: str, *, workload: str = "deploy/sleep.sample", service: str = "helloworld",
                    namespace: str = "sample", port: int = 5000, mesh: Mesh | None = None) -> dict[str, float]:
    """What share of ``cluster``'s calls each route should carry: ``{pod name | "<network> gateway": fraction}``.

    Each pod the sidecar dials directly gets its weight's share; each gateway the total share of what stands
    behind it (see the module docstring for why not a share per pod behind it). Compare with
    :func:`measured_shares`, keyed the same way.

    Args:
        lab: the lab.
        cluster: the calling cluster.
        workload: the calling proxy, as istioctl names it.
        service: the called service.
        namespace: its namespace.
        port: its port.
        mesh: a :func:`survey` already made.
    """
    shares: dict[str, float] = {}
    for route in routes(lab, cluster, workload=workload, service=service, namespace=namespace, port=port, mesh=mesh):
        shares[route.key] = shares.get(route.key, 0.0) + route.share
    return shares


def route_of(mesh: Mesh, source: str, instance: str | None) -> str | None:
    """The route key a call from ``source`` answered by ``instance`` took (None when nobody answered).

    A pod on the caller's network was dialled directly; a pod on another network was reached through that
    network's gateway.
    """
    if not instance:
        return None
    pod = mesh.instance(instance)
    if pod is None:
        return instance
    return pod.name if pod.network == mesh.networks.get(source, "") else gateway_key(pod.network)


def with_routes(calls: pd.DataFrame, mesh: Mesh) -> pd.DataFrame:
    """``calls`` with a ``route`` column (see :func:`route_of`), to chart ``by="route"`` against the prediction."""
    routed = calls.copy()
    routed["route"] = [route_of(mesh, str(source), instance if isinstance(instance, str) else None)
                       for source, instance in zip(calls["source"], calls["instance"], strict=True)]
    return routed


def measured_shares(calls: pd.DataFrame, mesh: Mesh, source: str) -> dict[str, float]:
    """The share of ``source``'s calls each route carried, keyed as :func:`expected_shares` (failures: ``(error)``)."""
    mine = with_routes(calls[calls["source"] == source], mesh)
    if mine.empty:
        return {}
    keys = mine["route"].where(mine["route"].notna() & (mine["status"] < 400), "(error)")
    return {str(k): float(v) for k, v in keys.value_counts(normalize=True).items()}


def topology(lab: Lab, calls: pd.DataFrame, source: str, *, workload: str = "deploy/sleep.sample",
             service: str = "helloworld", namespace: str = "sample", port: int = 5000,
             mesh: Mesh | None = None) -> viz.Topology:
    """The path of ``source``'s calls: its client, the pods it dialled directly, the gateways its sidecar lists
    and, behind each, the instances measured answering through it; each edge labelled with its measured share.

    Gateways appear only where they exist and the caller's sidecar routes through them; a pod of the caller's
    network is never put behind a gateway.
    """
    mesh = mesh or survey(lab, service=service, namespace=namespace)
    found = routes(lab, source, workload=workload, service=service, namespace=namespace, port=port, mesh=mesh)
    workloads = {i.name: viz.Workload(i.cluster, namespace, i.name, i.version, "pod") for i in mesh.instances}
    gateways = {r.key: viz.Workload(r.gateway.cluster, r.gateway.namespace, r.gateway.name, kind="gateway")
                for r in found if r.gateway is not None}
    caller = workload.rsplit("/", maxsplit=1)[-1].split(".", maxsplit=1)[0]  # deploy/sleep.sample → sleep
    client = viz.Workload(source, namespace, caller, kind="client")
    mine = with_routes(calls[calls["source"] == source], mesh)
    answered = mine[mine["instance"].map(lambda i: isinstance(i, str) and i in workloads)]
    total = len(mine)
    edges = []
    for route_key, group in answered.groupby("route", sort=True):
        share = len(group) / total
        if route_key in gateways:
            gateway = gateways[str(route_key)]
            port_label = ":" + next(r.endpoint.rsplit(":", 1)[1] for r in found if r.key == route_key)
            edges.append(viz.Edge(client, gateway, share, mtls=True, label=port_label))
            for instance, behind in group.groupby("instance", sort=True):
                edges.append(viz.Edge(gateway, workloads[str(instance)], len(behind) / total, mtls=True))
        elif str(route_key) in workloads:
            edges.append(viz.Edge(client, workloads[str(route_key)], share, mtls=True))
    clusters = [viz.Cluster(name, network) for name, network in mesh.networks.items()]
    return viz.Topology(clusters, [client, *workloads.values(), *gateways.values()], edges)
