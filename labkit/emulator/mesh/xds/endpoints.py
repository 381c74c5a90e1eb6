"""EDS: the ClusterLoadAssignments of a proxy, where multi-network Istio shows itself.

One function decides what a proxy may dial for a service (Istio's ``EndpointsByNetworkFilter``):

- endpoints on the proxy's network keep their pod IPs (an empty network on either side counts as the same
  network, which is exactly why a missing ``topology.istio.io/network`` label makes sidecars dial remote pod
  IPs);
- endpoints of another network are replaced by that network's gateways (``address:15443``), each carrying
  ``load_balancing_weight`` = the number of healthy endpoints it stands for, split evenly when a network has
  several gateways (all weights are scaled by the LCM of the gateway counts so the split stays integral);
- such gateway endpoints are marked ``tlsMode: istio``: the client must originate mTLS with the
  ``outbound_.…`` SNI or the gateway cannot route;
- plaintext endpoints (``tls_mode: disabled``) of another network are dropped: the gateway only forwards mTLS;
  so are *all* of another network's endpoints when the caller's DestinationRule sets ``tls.mode: DISABLE`` for
  the port (Istio's ``mtlsChecker``): the caller would send plaintext, which the gateway cannot route — the
  classic "only local answers" or ``no healthy upstream`` of a plaintext DestinationRule across networks;
- a network with no gateway keeps the raw pod IPs, so the lab's failure (timeouts to unreachable IPs) shows;
- a gateway with ``ISTIO_META_REQUESTED_NETWORK_VIEW`` sees only endpoints of those networks.

Unhealthy endpoints are sent with ``health_status: UNHEALTHY`` rather than dropped (Istio drops them unless
``PILOT_SEND_UNHEALTHY_ENDPOINTS``): Envoy sends them no traffic, and ``proxy-config endpoints`` can show them.
Locality priorities (0 = same region/zone/subzone …) are set only when the DestinationRule has
``outlierDetection``, as in Istio; without it every locality is priority 0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from labkit.emulator.mesh.model import Endpoint, MeshSnapshot, NetworkGateway, Proxy, Service
from labkit.emulator.mesh.xds import common, names, policies


def build_endpoints(proxy: Proxy, snapshot: MeshSnapshot, cluster_names: Iterable[str]) -> list[dict[str, Any]]:
    """One ClusterLoadAssignment per EDS cluster name, in the order given.

    A name whose service is unknown still gets an assignment with ``endpoints: []``: Envoy ignores an EDS file
    without resources (the old endpoints would stay), so draining must be written out.

    Args:
        proxy: the proxy the assignments are for (its network, locality and network view matter).
        snapshot: the mesh.
        cluster_names: the ``eds_cluster_config.service_name`` of every EDS cluster of the proxy.
    """
    return [build_load_assignment(proxy, snapshot, name) for name in dict.fromkeys(cluster_names)]


def build_load_assignment(proxy: Proxy, snapshot: MeshSnapshot, name: str) -> dict[str, Any]:
    """The ClusterLoadAssignment of one ``outbound|…`` or ``outbound_.…`` cluster (also used inline by DNS clusters).

    Args:
        proxy: the proxy.
        snapshot: the mesh.
        name: the cluster name.
    """
    try:
        key = names.parse_cluster_name(name)
        sni_dnat = False
    except ValueError:
        key = names.parse_sni(name)  # raises for names this module does not own
        sni_dnat = True
    empty = {"@type": common.CLUSTER_LOAD_ASSIGNMENT, "cluster_name": name, "endpoints": []}
    service = snapshot.service(key.host)
    port = service.port(key.port) if service else None
    if key.direction != "outbound" or service is None or port is None:
        return empty
    rule = policies.destination_rule(proxy, snapshot, service)
    labels = policies.subset_labels(rule, key.subset)
    if labels is None:
        return empty
    selected = [ep for ep in service.endpoints if policies.serves(service, port, ep.service_port)
                and common.labels_match(labels, ep.labels)]
    policy = policies.traffic_policy(rule, key.port, key.subset)
    # An AUTO_PASSTHROUGH gateway forwards to pods of its own network only; it never hops to another gateway. A
    # caller told to speak plaintext (DISABLE) cannot cross a gateway either.
    local_only = sni_dnat or (policy.get("tls") or {}).get("mode") == "DISABLE"
    groups = network_endpoints(proxy, snapshot, service, selected, local_only=local_only)
    failover = _locality_failover(policy)
    localities: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for locality, lb_endpoint in groups:
        priority = _priority(proxy.locality, locality, failover) if failover is not None else 0
        localities[(priority, locality)].append(lb_endpoint)
    priorities = {p: i for i, p in enumerate(sorted({p for p, _ in localities}))}  # Envoy wants them contiguous
    out = []
    for (priority, locality), lb_endpoints in sorted(localities.items()):
        entry: dict[str, Any] = {}
        if common.locality(locality):
            entry["locality"] = common.locality(locality)
        entry["lb_endpoints"] = lb_endpoints
        entry["load_balancing_weight"] = sum(e["load_balancing_weight"] for e in lb_endpoints)
        if priorities[priority]:
            entry["priority"] = priorities[priority]
        out.append(entry)
    return {**empty, "endpoints": out}


def same_network(a: str, b: str) -> bool:
    """Istio's ``IsSameOrEmpty``: an unset network matches every network."""
    return not a or not b or a == b


def network_endpoints(proxy: Proxy, snapshot: MeshSnapshot, service: Service, endpoints: Sequence[Endpoint], *,
                      local_only: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """The ``(locality, LbEndpoint)`` pairs a proxy gets for some endpoints of a service (see the module docstring).

    Args:
        proxy: the proxy.
        snapshot: the mesh (for its network gateways).
        service: the service the endpoints belong to.
        endpoints: its endpoints behind one port (and subset).
        local_only: drop other networks' endpoints instead of going through their gateways.
    """
    view = proxy.requested_network_view
    gateways: dict[str, list[NetworkGateway]] = defaultdict(list)
    for gateway in snapshot.gateways:
        if gateway.address:
            gateways[gateway.network].append(gateway)
    local: list[tuple[str, Endpoint]] = []
    behind: dict[tuple[str, str], int] = defaultdict(int)  # (locality, network) → healthy endpoints
    for endpoint in endpoints:
        if view and endpoint.network and endpoint.network not in view:
            continue
        if same_network(proxy.network, endpoint.network):
            local.append((endpoint.locality, endpoint))
        elif local_only or endpoint.tls_mode != "istio":
            continue  # the gateway only forwards mTLS; plaintext across networks is silently dropped
        elif endpoint.network not in gateways:
            local.append((endpoint.locality, endpoint))  # no gateway: raw pod IPs, unreachable, as in Istio labs
        elif endpoint.healthy:
            behind[(endpoint.locality, endpoint.network)] += 1
    scale = policies.lcm(len(gateways[network]) for _, network in behind)
    out = [(loc, _lb_endpoint(endpoint, service, scale)) for loc, endpoint in local]
    for (loc, network), count in sorted(behind.items()):
        members = sorted(gateways[network], key=lambda g: (g.address, g.port))
        weight = count * scale // len(members)
        out.extend((loc, _gateway_endpoint(gateway, weight)) for gateway in members)
    return out


def _lb_endpoint(endpoint: Endpoint, service: Service, weight: int) -> dict[str, Any]:
    filter_metadata: dict[str, Any] = {"istio": {"workload": _workload(endpoint, service)}}
    if endpoint.tls_mode == "istio":
        filter_metadata["envoy.transport_socket_match"] = {"tlsMode": "istio"}
    return {
        "endpoint": {"address": common.socket_address(endpoint.address, endpoint.port)},
        "health_status": "HEALTHY" if endpoint.healthy else "UNHEALTHY",
        "metadata": {"filter_metadata": filter_metadata},
        "load_balancing_weight": weight,
    }


def _gateway_endpoint(gateway: NetworkGateway, weight: int) -> dict[str, Any]:
    return {
        "endpoint": {"address": common.socket_address(gateway.address, gateway.port)},
        "health_status": "HEALTHY",
        "metadata": {"filter_metadata": {
            "envoy.transport_socket_match": {"tlsMode": "istio"},
            "istio": {"workload": f";;;;{gateway.cluster}", "network": gateway.network},
        }},
        "load_balancing_weight": weight,
    }


def _workload(endpoint: Endpoint, service: Service) -> str:
    """Istio's endpoint metadata ``name;namespace;canonical-service;canonical-revision;cluster``."""
    namespace, _, name = endpoint.workload.rpartition("/")
    labels = endpoint.labels
    canonical = labels.get("service.istio.io/canonical-name") or labels.get("app") or service.name
    revision = labels.get("service.istio.io/canonical-revision") or labels.get("version") or "latest"
    return f"{name};{namespace or service.namespace};{canonical};{revision};{endpoint.cluster}"


def _locality_failover(policy: Mapping[str, Any]) -> list[Mapping[str, str]] | None:
    """``None`` when locality failover is off (no outlierDetection, or ``localityLbSetting.enabled: false``)."""
    setting = (policy.get("loadBalancer") or {}).get("localityLbSetting") or {}
    if not policy.get("outlierDetection") or setting.get("enabled") is False:
        return None
    return list(setting.get("failover") or ())


def _priority(proxy_locality: str, endpoint_locality: str, failover: Sequence[Mapping[str, str]]) -> int:
    """Istio's locality priorities: 0 same subzone, 1 same zone, 2 same region, then a ``failover`` target region,
    then everything else.
    """
    mine = common.locality_parts(proxy_locality)
    theirs = common.locality_parts(endpoint_locality)
    if not mine[0]:
        return 0
    if mine[0] == theirs[0]:
        if mine[1] == theirs[1]:
            return 0 if mine[2] == theirs[2] else 1
        return 2
    if any(f.get("from") == mine[0] and f.get("to") == theirs[0] for f in failover):
        return 3
    return 4
