"""One proxy's complete, consistent Envoy configuration: the builders' output checked as go-control-plane
checks a snapshot before serving it.

Envoy accepts resources one type at a time, so a listener naming a route configuration that was never
written, or a route to a cluster that does not exist, is not rejected: it fails later, per request, with
``NR``/``NC`` flags that are hard to trace back to istiod. Checking the references here turns such a
builder bug into an error naming the missing resource before anything reaches a proxy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from labkit.emulator.mesh.model import MeshSnapshot, Proxy, ProxyConfig
from labkit.emulator.mesh.xds import common, names
from labkit.emulator.mesh.xds.clusters import build_clusters
from labkit.emulator.mesh.xds.endpoints import build_endpoints
from labkit.emulator.mesh.xds.listeners import build_listeners
from labkit.emulator.mesh.xds.routes import build_routes
from labkit.emulator.mesh.xds.secrets import build_root_secret, build_secrets, build_tls_secret
from labkit.errors import XdsError


@dataclass(frozen=True)
class ProxyCredential:
    """What the agent would serve over SDS for one proxy.

    Args:
        cert_chain_pem: the workload certificate followed by its chain.
        key_pem: its private key.
        roots: trust domain → PEM roots (one entry unless trust domains are federated).
        gateway_credentials: ``credentialName`` → (certificate chain, key) for TLS-terminating gateway servers.
        gateway_ca_certificates: ``credentialName`` → PEM CA bundle, for MUTUAL gateway servers (``…-cacert``).
    """

    cert_chain_pem: str
    key_pem: str
    roots: Mapping[str, str]
    gateway_credentials: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    gateway_ca_certificates: Mapping[str, str] = field(default_factory=dict)


def generate(proxy: Proxy, snapshot: MeshSnapshot, *, credential: ProxyCredential | None = None) -> ProxyConfig:
    """Build and check every resource of one proxy.

    Args:
        proxy: the sidecar or gateway.
        snapshot: the mesh.
        credential: the proxy's certificates; without it no secrets are built and SDS references are not checked
            (the agent may serve them separately).

    Raises:
        XdsError: a resource references one that was not built; the message names both.
    """
    clusters = build_clusters(proxy, snapshot)
    eds_names = [c["eds_cluster_config"]["service_name"] for c in clusters if c.get("type") == "EDS"]
    endpoints = build_endpoints(proxy, snapshot, eds_names)
    listeners = build_listeners(proxy, snapshot)
    routes = build_routes(proxy, snapshot)
    secrets: list[dict[str, Any]] = []
    if credential is not None:
        secrets = build_secrets(credential.cert_chain_pem, credential.key_pem, credential.roots)
        for name, (chain, key) in sorted(credential.gateway_credentials.items()):
            secrets.append(build_tls_secret(names.credential_secret_name(name), chain, key))
        for name, pem in sorted(credential.gateway_ca_certificates.items()):
            secrets.append(build_root_secret({name: pem}, f"{names.credential_secret_name(name)}-cacert"))
    check_consistency(proxy, listeners, clusters, routes, endpoints, secrets if credential is not None else None)
    return ProxyConfig(listeners=tuple(listeners), clusters=tuple(clusters), routes=tuple(routes),
                       endpoints=tuple(endpoints), secrets=tuple(secrets), version=snapshot.version)


def check_consistency(proxy: Proxy, listeners: list[dict[str, Any]], clusters: list[dict[str, Any]],
                      routes: list[dict[str, Any]], endpoints: list[dict[str, Any]],
                      secrets: list[dict[str, Any]] | None) -> None:
    """Raise :class:`XdsError` unless every name a resource references exists and names are unique per type.

    Args:
        proxy: for the message.
        listeners: LDS resources.
        clusters: CDS resources.
        routes: RDS resources.
        endpoints: EDS resources.
        secrets: SDS resources, or ``None`` to skip checking SDS references.
    """
    who = f"{proxy.type} {proxy.namespace}/{proxy.name}"
    for kind, resources, key in (("listener", listeners, "name"), ("cluster", clusters, "name"),
                                 ("route configuration", routes, "name"),
                                 ("ClusterLoadAssignment", endpoints, "cluster_name")):
        seen: set[str] = set()
        for resource in resources:
            if "@type" not in resource:
                raise XdsError(f"{who}: {kind} {resource.get(key)!r} has no @type")
            if resource[key] in seen:
                raise XdsError(f"{who}: two {kind}s named {resource[key]!r}")
            seen.add(resource[key])
    addresses = [_json_key(listener["address"]) for listener in listeners]
    if len(set(addresses)) != len(addresses):
        raise XdsError(f"{who}: two listeners bind the same address")
    cluster_names = {c["name"] for c in clusters}
    assignments = {e["cluster_name"] for e in endpoints}
    route_names = {r["name"] for r in routes}
    for cluster in clusters:
        if cluster.get("type") == "EDS":
            service_name = cluster["eds_cluster_config"]["service_name"]
            if service_name not in assignments:
                raise XdsError(f"{who}: cluster {cluster['name']} reads EDS {service_name!r}, which has no "
                               f"ClusterLoadAssignment")
    for listener in listeners:
        for chain in listener.get("filter_chains", ()):
            for network_filter in chain.get("filters", ()):
                config = network_filter.get("typed_config", {})
                if config.get("@type") == common.HCM and "rds" in config:
                    name = config["rds"]["route_config_name"]
                    if name not in route_names:
                        raise XdsError(f"{who}: listener {listener['name']} uses RDS {name!r}, which was not built")
                if config.get("@type") == common.TCP_PROXY:
                    for name in _targets(config):
                        if name not in cluster_names:
                            raise XdsError(f"{who}: listener {listener['name']} tcp_proxy targets cluster {name!r}, "
                                           f"which does not exist")
    for route_config in routes:
        for vhost in route_config.get("virtual_hosts", ()):
            for route in vhost.get("routes", ()):
                for name in _targets(route.get("route") or {}):
                    if name not in cluster_names:
                        raise XdsError(f"{who}: route {route_config['name']} / {vhost['name']} / {route.get('name')} "
                                       f"targets cluster {name!r}, which does not exist")
    if secrets is not None:
        secret_names = {s["name"] for s in secrets}
        for resource in (*listeners, *clusters):
            for name in _sds_names(resource):
                if name not in secret_names:
                    raise XdsError(f"{who}: {resource['name']} needs SDS secret {name!r}, which was not provided")


def _json_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _targets(action: Mapping[str, Any]) -> list[str]:
    if "cluster" in action:
        return [action["cluster"]]
    return [c["name"] for c in (action.get("weighted_clusters") or {}).get("clusters", ())]


def _sds_names(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == "tls_certificate_sds_secret_configs":
                yield from (entry["name"] for entry in item)
            elif key == "validation_context_sds_secret_config":
                yield item["name"]
            else:
                yield from _sds_names(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _sds_names(item)
