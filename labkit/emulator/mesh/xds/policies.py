"""How istiod reads Istio config for one proxy: which services it sees, which DestinationRule,
VirtualService, PeerAuthentication and Gateway apply, and with what precedence.

The builders never walk ``snapshot.configs`` themselves: they ask here, so a precedence rule (workload
PeerAuthentication over namespace over mesh; DestinationRule in the proxy's namespace over the
service's over the root namespace) is written once. Specs are read as the user wrote them (camelCase
Istio fields), which is why the code reads ``spec.get("trafficPolicy")`` rather than a typed model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from labkit.core.selectors import labels_match
from labkit.emulator.mesh.model import DEFAULT_DOMAIN, ConfigObject, MeshSnapshot, Proxy, Service, ServicePort
from labkit.emulator.mesh.xds.common import enum_value

MESH_GATEWAY = "mesh"
_POLICY_KEYS = ("loadBalancer", "connectionPool", "outlierDetection", "tls")


def resolve_host(host: str, namespace: str) -> str:
    """Istio's short-name rule: a host without dots is a service of the config's namespace; anything with a dot
    (``helloworld.sample``) is taken as written.

    Args:
        host: the host as written in a DestinationRule, VirtualService or Gateway.
        namespace: the namespace of that config.
    """
    host = host.strip()
    if "*" in host or "." in host:
        return host
    return f"{host}.{namespace}.svc.{DEFAULT_DOMAIN}"


def host_matches(pattern: str, host: str) -> bool:
    """Istio host matching: ``*`` matches everything, ``*.local`` any host ending in ``.local``."""
    if pattern == "*":
        return True
    if pattern.startswith("*"):
        return host.endswith(pattern[1:])
    return pattern == host


def split_namespaced_host(entry: str, default_namespace: str) -> tuple[str, str]:
    """A Gateway/Sidecar host ``ns/host`` (``./host``, ``*/host``) into namespace and host."""
    namespace, sep, host = entry.partition("/")
    if not sep:
        return "*", entry
    return (default_namespace if namespace == "." else namespace), host


def exported_to(service: Service, namespace: str) -> bool:
    """Whether ``exportTo`` lets a proxy in ``namespace`` see the service."""
    for entry in service.exported_to or ("*",):
        if entry in ("*", namespace) or (entry == "." and service.namespace == namespace):
            return True
    return False


def sidecar_resource(proxy: Proxy, snapshot: MeshSnapshot) -> ConfigObject | None:
    """The Sidecar config that applies: one selecting the workload, else the namespace's, else the root's."""
    sidecars = sorted(snapshot.configs_of("Sidecar"), key=lambda c: c.name)
    local = [c for c in sidecars if c.namespace == proxy.namespace]
    for config in local:
        selector = (config.spec.get("workloadSelector") or {}).get("labels") or {}
        if selector and labels_match(selector, proxy.labels):
            return config
    for config in local:
        if not (config.spec.get("workloadSelector") or {}).get("labels"):
            return config
    return next((c for c in sidecars if c.namespace == snapshot.mesh.root_namespace
                 and not (c.spec.get("workloadSelector") or {}).get("labels")), None)


def visible_services(proxy: Proxy, snapshot: MeshSnapshot) -> list[Service]:
    """The services a proxy gets clusters and routes for: ``exportTo``, then the Sidecar's ``egress.hosts``.

    Gateways see every exported service (Istio does not apply Sidecar resources to them).
    """
    services = [s for s in snapshot.services if exported_to(s, proxy.namespace)]
    sidecar = sidecar_resource(proxy, snapshot) if proxy.type == "sidecar" else None
    if sidecar is not None and sidecar.spec.get("egress"):
        patterns = [split_namespaced_host(h, sidecar.namespace)
                    for egress in sidecar.spec["egress"] for h in egress.get("hosts", ())]
        patterns = [(proxy.namespace if ns == "." else ns, host) for ns, host in patterns]

        def allowed(service: Service) -> bool:
            return any((ns in ("*", service.namespace)) and ns != "~" and host_matches(host, service.hostname)
                       for ns, host in patterns)

        services = [s for s in services if allowed(s)]
    return sorted(services, key=lambda s: s.hostname)


def destination_rule(proxy: Proxy, snapshot: MeshSnapshot, service: Service) -> ConfigObject | None:
    """The DestinationRule for a service as seen from a proxy.

    Istio looks in the proxy's namespace first, then the service's, then the root namespace; an exact host beats
    a wildcard one, and among equals the oldest (here: the first by name) wins.
    """
    rules = sorted(snapshot.configs_of("DestinationRule"), key=lambda c: (c.namespace, c.name))
    for namespace in dict.fromkeys((proxy.namespace, service.namespace, snapshot.mesh.root_namespace)):
        candidates = [(resolve_host(str(r.spec.get("host", "")), r.namespace), r)
                      for r in rules if r.namespace == namespace]
        exact = [r for host, r in candidates if host == service.hostname]
        if exact:
            return exact[0]
        wildcard = sorted(((h, r) for h, r in candidates if "*" in h and host_matches(h, service.hostname)),
                          key=lambda item: -len(item[0]))
        if wildcard:
            return wildcard[0][1]
    return None


def subsets(rule: ConfigObject | None) -> list[Mapping[str, Any]]:
    return [s for s in (rule.spec.get("subsets") or ()) if s.get("name")] if rule else []


def subset_labels(rule: ConfigObject | None, subset: str) -> Mapping[str, str] | None:
    """The labels a subset selects, ``{}`` for the whole service, ``None`` for an unknown subset."""
    if not subset:
        return {}
    found = next((s for s in subsets(rule) if s["name"] == subset), None)
    return None if found is None else (found.get("labels") or {})


def _port_level(policy: Mapping[str, Any], port: int) -> Mapping[str, Any]:
    for entry in policy.get("portLevelSettings") or ():
        if int((entry.get("port") or {}).get("number", -1)) == port:
            return entry
    return {}


def traffic_policy(rule: ConfigObject | None, port: int, subset: str = "") -> dict[str, Any]:
    """The effective traffic policy of one cluster: rule-wide, then its port level, then the subset's (and the
    subset's port level); each of loadBalancer/connectionPool/outlierDetection/tls is taken whole from the most
    specific level that sets it, as Istio's ``MergeTrafficPolicy`` does.
    """
    if rule is None:
        return {}
    levels: list[Mapping[str, Any]] = []
    base = rule.spec.get("trafficPolicy") or {}
    levels += [base, _port_level(base, port)]
    if subset:
        found = next((s for s in subsets(rule) if s["name"] == subset), {})
        sub = found.get("trafficPolicy") or {}
        levels += [sub, _port_level(sub, port)]
    merged: dict[str, Any] = {}
    for level in levels:
        for key in _POLICY_KEYS:
            if level.get(key) is not None:
                merged[key] = level[key]
    return merged


_PEER_MODES = ("UNSET", "DISABLE", "PERMISSIVE", "STRICT")


def _peer_mode(config: ConfigObject | None, port: int | None) -> str:
    if config is None:
        return "UNSET"
    where = f"PeerAuthentication {config.namespace}/{config.name}"
    if port is not None:
        for key, value in (config.spec.get("portLevelMtls") or {}).items():
            if str(key) == str(port):
                mode = enum_value((value or {}).get("mode"), _PEER_MODES, f"{where}: portLevelMtls[{key}].mode",
                                  "UNSET")
                if mode != "UNSET":
                    return mode
    return enum_value((config.spec.get("mtls") or {}).get("mode"), _PEER_MODES, f"{where}: mtls.mode", "UNSET")


def _has_selector(config: ConfigObject) -> bool:
    return bool((config.spec.get("selector") or {}).get("matchLabels"))


def namespace_mtls_mode(snapshot: MeshSnapshot, namespace: str) -> str:
    """The PeerAuthentication mode of a namespace (or the mesh), ignoring workload selectors: what a client can
    infer about a service it calls (Istio's ``BestEffortInferServiceMTLSMode``).
    """
    peers = sorted(snapshot.configs_of("PeerAuthentication"), key=lambda c: c.name)
    mode = "PERMISSIVE"
    for scope in (snapshot.mesh.root_namespace, namespace):
        config = next((c for c in peers if c.namespace == scope and not _has_selector(c)), None)
        found = _peer_mode(config, None)
        if found != "UNSET":
            mode = found
    return mode


def peer_authentication_mode(proxy: Proxy, snapshot: MeshSnapshot, port: int) -> str:
    """``STRICT``, ``PERMISSIVE`` or ``DISABLE`` for one inbound port of a workload.

    Precedence as in Istio: a PeerAuthentication selecting the workload (in its namespace, port level first)
    over the namespace-wide one over the mesh-wide one in the root namespace; ``UNSET`` inherits.

    Args:
        proxy: the workload's sidecar.
        snapshot: the mesh.
        port: the workload (target) port.
    """
    mode = namespace_mtls_mode(snapshot, proxy.namespace)
    peers = sorted(snapshot.configs_of("PeerAuthentication"), key=lambda c: c.name)
    workload = next((c for c in peers if c.namespace == proxy.namespace and _has_selector(c)
                     and labels_match(c.spec["selector"]["matchLabels"], proxy.labels)), None)
    found = _peer_mode(workload, port)
    return mode if found == "UNSET" else found


def virtual_services(snapshot: MeshSnapshot, gateway: str, proxy_namespace: str) -> list[ConfigObject]:
    """VirtualServices bound to a gateway: ``mesh`` (sidecars; the default when ``gateways`` is empty) or a
    Gateway's ``namespace/name``.
    """
    bound = []
    for config in sorted(snapshot.configs_of("VirtualService"), key=lambda c: (c.namespace, c.name)):
        exported = config.spec.get("exportTo") or ["*"]
        if gateway == MESH_GATEWAY and not any(e in ("*", proxy_namespace) or (e == "." and
                                               config.namespace == proxy_namespace) for e in exported):
            continue
        gateways = [_gateway_key(g, config.namespace) for g in (config.spec.get("gateways") or [MESH_GATEWAY])]
        if gateway in gateways:
            bound.append(config)
    return bound


def _gateway_key(name: str, namespace: str) -> str:
    if name == MESH_GATEWAY or "/" in name:
        return name
    return f"{namespace}/{name}"


def match_gateways(match: Mapping[str, Any], namespace: str) -> list[str]:
    return [_gateway_key(g, namespace) for g in match.get("gateways") or ()]


def gateways_for(proxy: Proxy, snapshot: MeshSnapshot) -> list[ConfigObject]:
    """The Gateway configs whose ``selector`` matches the proxy's labels, oldest (first by name) first."""
    found = []
    for config in sorted(snapshot.configs_of("Gateway"), key=lambda c: (c.namespace, c.name)):
        selector = config.spec.get("selector") or {}
        if selector and labels_match(selector, proxy.labels):
            found.append(config)
    return found


def server_covers(server: Mapping[str, Any], gateway_namespace: str, service: Service) -> bool:
    """Whether a Gateway server's ``hosts`` (``*.local``, ``ns/*``, ``*``) cover a service."""
    for entry in server.get("hosts") or ():
        namespace, host = split_namespaced_host(str(entry), gateway_namespace)
        if namespace not in ("*", service.namespace):
            continue
        if host_matches(host, service.hostname):
            return True
    return False


def service_ports(service: Service, *, http_only: bool = False) -> list[ServicePort]:
    ports = sorted(service.ports, key=lambda p: p.port)
    if http_only:
        return [p for p in ports if p.is_http or p.protocol == "UNKNOWN"]
    return ports


def serves(service: Service, port: ServicePort, endpoint_port_name: str) -> bool:
    """Whether an endpoint (by its ``service_port`` name) backs a service port; an unnamed endpoint of a
    single-port service backs that port.
    """
    if endpoint_port_name:
        return endpoint_port_name == port.name
    return len(service.ports) == 1


def trust_domains(snapshot: MeshSnapshot) -> list[str]:
    return list(dict.fromkeys((snapshot.mesh.trust_domain, *snapshot.mesh.trust_domain_aliases)))


def lcm(values: Iterable[int]) -> int:
    result = 1
    for value in values:
        result = result * value // math.gcd(result, value)
    return result
