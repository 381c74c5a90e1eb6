"""LDS: where each proxy accepts connections, and what it does with their first bytes.

Sidecars here have no iptables (DESIGN.md decision 5), so instead of Istio's ``virtualOutbound``/
``virtualInbound`` pair a sidecar gets:

- the **HTTP proxy listener** on ``<pod IP>:15080`` (Istio's ``proxyHttpPort``): workloads use it as
  ``http_proxy``; it routes on the Host header through RDS ``http_proxy``;
- one **inbound listener per workload port** on ``<pod IP>:<port>``, with the filter chains Istio puts in
  ``virtualInbound`` for that port: an mTLS chain (``transport_protocol: tls``, client certificate
  required, SPIFFE trust domain checked) and, unless PeerAuthentication says STRICT, a plaintext chain;
  HTTP ports end in an HCM that hands the caller's identity to the app as ``x-forwarded-client-cert``.

Gateways get one listener per Gateway server port on ``<pod IP>:<target port>`` (the gateway Service's
``targetPort`` for that port, as Istio translates it). AUTO_PASSTHROUGH is the
east-west gateway: one filter chain per exposed service/port/subset keyed on the ``outbound_.…`` SNI,
``tcp_proxy`` to the matching cluster, nothing terminated. Two Gateways on one port are merged; filter
chains with identical matches are kept once (the first Gateway by namespace/name wins) and reported by
:func:`gateway_conflicts`, where Istio would ship a listener Envoy rejects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from labkit.emulator.mesh.model import HTTP_PROXY_PORT, ConfigObject, MeshSnapshot, Proxy
from labkit.emulator.mesh.xds import common, names, policies
from labkit.emulator.mesh.xds.clusters import auto_passthrough_targets, inbound_ports
from labkit.emulator.mesh.xds.routes import DestinationResolver, gateway_route_name, server_tls_mode

_HTTP = ("HTTP", "HTTP2", "GRPC")
_SERVER_ALPN = ("h2", "http/1.1")
# Never sent by any client: keeps a gateway listener valid (Envoy refuses one without filter chains) while every
# connection still ends in NR filter_chain_not_found, as it does on an Istio gateway exposing nothing.
UNMATCHABLE_SNI = "no-service-matches-this-gateway.invalid"


def build_listeners(proxy: Proxy, snapshot: MeshSnapshot) -> list[dict[str, Any]]:
    """Every listener of a proxy (see the module docstring).

    Args:
        proxy: the sidecar or gateway.
        snapshot: the mesh.
    """
    if proxy.type == "sidecar":
        listeners = [_http_proxy_listener(proxy, snapshot)]
        listeners += [_inbound_listener(proxy, snapshot, port, protocol)
                      for port, protocol in inbound_ports(proxy, snapshot).items()]
        return listeners
    listeners, _ = _gateway_listeners(proxy, snapshot)
    return listeners


def gateway_conflicts(proxy: Proxy, snapshot: MeshSnapshot) -> list[str]:
    """What :func:`build_listeners` dropped for a gateway because two servers claim the same traffic, one message
    each (empty for sidecars and for gateways without conflicts).

    Args:
        proxy: the gateway.
        snapshot: the mesh.
    """
    if proxy.type != "router":
        return []
    return _gateway_listeners(proxy, snapshot)[1]


def _hcm(stat_prefix: str, route_name: str, snapshot: MeshSnapshot, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "stat_prefix": stat_prefix,
        "codec_type": "AUTO",
        "rds": {"route_config_name": route_name, "config_source": names.config_source("rds", route_name)},
        "http_filters": [
            common.typed("envoy.filters.http.fault", common.FAULT),
            common.typed("envoy.filters.http.cors", common.CORS),
            common.typed("envoy.filters.http.router", common.ROUTER),
        ],
        "access_log": common.access_log(snapshot.mesh.access_log_file),
        "server_name": "istio-envoy",
        "normalize_path": True,
        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "stream_idle_timeout": "0s",
        **extra,
    }
    if not config["access_log"]:
        config.pop("access_log")
    return common.typed("envoy.filters.network.http_connection_manager", common.HCM, **config)


def _tcp_proxy(stat_prefix: str, snapshot: MeshSnapshot, clusters: list[tuple[str, int]]) -> dict[str, Any]:
    config: dict[str, Any] = {"stat_prefix": stat_prefix}
    if len(clusters) == 1:
        config["cluster"] = clusters[0][0]
    else:
        config["weighted_clusters"] = {"clusters": [{"name": n, "weight": w} for n, w in clusters]}
    log = common.access_log(snapshot.mesh.access_log_file)
    if log:
        config["access_log"] = log
    return common.typed("envoy.filters.network.tcp_proxy", common.TCP_PROXY, **config)


def _listener(proxy: Proxy, port: int, direction: str, chains: list[dict[str, Any]],
              snapshot: MeshSnapshot) -> dict[str, Any]:
    listener: dict[str, Any] = {
        "@type": common.LISTENER,
        "name": names.listener_name(proxy.ip, port),
        "address": common.socket_address(proxy.ip, port),
        "traffic_direction": direction,
        "filter_chains": chains,
    }
    if any("transport_protocol" in c.get("filter_chain_match", {}) or "server_names" in c.get("filter_chain_match", {})
           or "transport_socket" in c for c in chains):
        listener["listener_filters"] = [common.typed("envoy.filters.listener.tls_inspector", common.TLS_INSPECTOR)]
    log = common.access_log(snapshot.mesh.access_log_file, listener=True)
    if log:
        listener["access_log"] = log
    return listener


def _http_proxy_listener(proxy: Proxy, snapshot: MeshSnapshot) -> dict[str, Any]:
    prefix = f"outbound_{proxy.ip}_{HTTP_PROXY_PORT}"
    # Clients of an explicit proxy send absolute URLs (GET http://helloworld.sample:5000/hello).
    hcm = _hcm(prefix, names.HTTP_PROXY_ROUTE, snapshot, use_remote_address=False,
               http_protocol_options={"allow_absolute_url": True})
    chain = {"name": prefix, "filters": [hcm]}
    return _listener(proxy, HTTP_PROXY_PORT, "OUTBOUND", [chain], snapshot)


def _inbound_listener(proxy: Proxy, snapshot: MeshSnapshot, port: int, protocol: str) -> dict[str, Any]:
    mode = policies.peer_authentication_mode(proxy, snapshot, port)
    prefix = f"inbound_{proxy.ip}_{port}"
    http = protocol in _HTTP
    if http:
        def filters() -> list[dict[str, Any]]:
            return [_hcm(prefix, names.inbound_route_name(port), snapshot, use_remote_address=False,
                         forward_client_cert_details="APPEND_FORWARD",
                         set_current_client_cert_details={"subject": True, "dns": True, "uri": True})]
    else:
        def filters() -> list[dict[str, Any]]:
            return [_tcp_proxy(names.cluster_name("inbound", port), snapshot,
                               [(names.cluster_name("inbound", port), 1)])]
    chains = []
    if mode != "DISABLE":
        alpn = (*common.MTLS_ALPN, *_SERVER_ALPN) if http else common.MTLS_ALPN
        chains.append({"name": f"{prefix}_mtls", "filter_chain_match": {"transport_protocol": "tls"},
                       "transport_socket": common.istio_mutual_downstream(alpn, policies.trust_domains(snapshot)),
                       "filters": filters()})
    if mode != "STRICT":
        match = {"transport_protocol": "raw_buffer"} if chains else {}
        chain: dict[str, Any] = {"name": f"{prefix}_plaintext", "filters": filters()}
        if match:
            chain["filter_chain_match"] = match
        chains.append(chain)
    return _listener(proxy, port, "INBOUND", chains, snapshot)


def _gateway_listeners(proxy: Proxy, snapshot: MeshSnapshot) -> tuple[list[dict[str, Any]], list[str]]:
    by_port: dict[int, list[tuple[ConfigObject, Mapping[str, Any]]]] = {}
    for gateway in policies.gateways_for(proxy, snapshot):
        for server in gateway.spec.get("servers") or ():
            by_port.setdefault(int(server["port"]["number"]), []).append((gateway, server))
    listeners, conflicts = [], []
    targets = auto_passthrough_targets(proxy, snapshot)
    for port, servers in sorted(by_port.items()):
        chains: list[dict[str, Any]] = []
        owners: dict[str, str] = {}
        plain_http_done = False
        for gateway, server in servers:
            owner = f"Gateway {gateway.namespace}/{gateway.name} server {server['port'].get('name', port)}"
            new, plain_http_done = _server_chains(proxy, snapshot, gateway, server, targets, plain_http_done)
            for chain in new:
                key = json.dumps(chain.get("filter_chain_match", {}), sort_keys=True)
                if key in owners:
                    conflicts.append(f"{proxy.namespace}/{proxy.name} port {port}: {owner} repeats the filter chain "
                                     f"match {key} of {owners[key]}; kept the first (Istio would send Envoy a "
                                     f"listener it rejects: multiple filter chains with the same matching rules)")
                    continue
                owners[key] = owner
                chains.append(chain)
        if not chains:
            chains.append({"name": "no_matching_service", "filter_chain_match": {"server_names": [UNMATCHABLE_SNI]},
                           "filters": [_tcp_proxy(names.BLACKHOLE_CLUSTER, snapshot,
                                                  [(names.BLACKHOLE_CLUSTER, 1)])]})
        listeners.append(_listener(proxy, gateway_target_port(proxy, snapshot, port), "OUTBOUND", chains, snapshot))
    return listeners, conflicts


def gateway_target_port(proxy: Proxy, snapshot: MeshSnapshot, number: int) -> int:
    """Where a gateway listens for a Gateway server's ``port.number``: as Istio does, the number is the port of the
    gateway's Service, and the listener binds that port's ``targetPort`` on the pod (``80`` → ``8080`` for the
    default ingress gateway, which is what its Service forwards to); the number itself when no Service of the
    gateway has that port."""
    for service in snapshot.services:
        for port in service.ports:
            if port.port != number:
                continue
            for endpoint in service.endpoints:
                if endpoint.address == proxy.ip and endpoint.cluster == proxy.cluster \
                        and policies.serves(service, port, endpoint.service_port):
                    return endpoint.port
    return number


def _server_chains(proxy: Proxy, snapshot: MeshSnapshot, gateway: ConfigObject, server: Mapping[str, Any],
                   targets: list, plain_http_done: bool) -> tuple[list[dict[str, Any]], bool]:
    """The filter chains one Gateway server contributes (and whether the port's plaintext HTTP chain exists)."""
    port = int(server["port"]["number"])
    protocol = str(server["port"].get("protocol", "")).upper()
    tls = server.get("tls") or {}
    mode = server_tls_mode(gateway, server)
    hosts = [policies.split_namespaced_host(str(h), gateway.namespace)[1] for h in server.get("hosts") or ()]
    server_names = sorted({h for h in hosts if h != "*"}) if "*" not in hosts else []
    if mode == "AUTO_PASSTHROUGH":
        chains = []
        for service, service_port, subset in targets:
            if not policies.server_covers(server, gateway.namespace, service):
                continue
            name = names.sni(service_port.port, subset, service.hostname)
            chains.append({"name": name, "filter_chain_match": {"server_names": [name]},
                           "filters": [_tcp_proxy(name, snapshot, [(name, 1)])]})
        return chains, plain_http_done
    route = gateway_route_name(gateway, server)
    if route is not None and protocol == "HTTPS":
        socket = _gateway_tls(snapshot, tls, mode)
        match = {"server_names": server_names} if server_names else {}
        chain: dict[str, Any] = {"name": route, "transport_socket": socket,
                                 "filters": [_hcm(f"outbound_{proxy.ip}_{port}", route, snapshot,
                                                  use_remote_address=True)]}
        if match:
            chain["filter_chain_match"] = match
        return [chain], plain_http_done
    if route is not None:
        if plain_http_done:
            return [], True
        return [{"name": route, "filters": [_hcm(f"outbound_{proxy.ip}_{port}", route, snapshot,
                                                 use_remote_address=True)]}], True
    return _tcp_chains(proxy, snapshot, gateway, server, server_names), plain_http_done


def _gateway_tls(snapshot: MeshSnapshot, tls: Mapping[str, Any], mode: str) -> dict[str, Any]:
    if mode == "ISTIO_MUTUAL":
        return common.istio_mutual_downstream(_SERVER_ALPN, policies.trust_domains(snapshot))
    secret = names.credential_secret_name(str(tls.get("credentialName", "")))
    context: dict[str, Any] = {"tls_params": common.tls_params(), "alpn_protocols": list(_SERVER_ALPN),
                               "tls_certificate_sds_secret_configs": [common.sds_secret(secret)]}
    extra: dict[str, Any] = {}
    if mode in ("MUTUAL", "OPTIONAL_MUTUAL"):
        context["validation_context_sds_secret_config"] = common.sds_secret(f"{secret}-cacert")
        extra["require_client_certificate"] = mode == "MUTUAL"
    return common.typed("envoy.transport_sockets.tls", common.DOWNSTREAM_TLS, common_tls_context=context, **extra)


def _tcp_chains(proxy: Proxy, snapshot: MeshSnapshot, gateway: ConfigObject, server: Mapping[str, Any],
                server_names: list[str]) -> list[dict[str, Any]]:
    """TLS PASSTHROUGH (VirtualService ``tls`` routes by SNI) and TCP (``tcp`` routes) servers."""
    port = int(server["port"]["number"])
    key = f"{gateway.namespace}/{gateway.name}"
    clusters = DestinationResolver(proxy, snapshot)
    chains = []
    for vs in policies.virtual_services(snapshot, key, proxy.namespace):
        for section in ("tls", "tcp"):
            for index, rule in enumerate(vs.spec.get(section) or ()):
                for match in rule.get("match") or [{}]:
                    if match.get("port") is not None and int(match["port"]) != port:
                        continue
                    bound = policies.match_gateways(match, vs.namespace)
                    if bound and key not in bound:
                        continue
                    destinations = []
                    for destination in rule.get("route") or ():
                        cluster = clusters.cluster(destination.get("destination") or {}, vs.namespace, port)
                        destinations.append((cluster or names.BLACKHOLE_CLUSTER, int(destination.get("weight", 100))))
                    if not destinations:
                        continue
                    sni_hosts = [h for h in match.get("sniHosts") or () if h != "*" and _covered(h, server_names)]
                    chain_match = {"server_names": sorted(sni_hosts)} if sni_hosts else {}
                    stat = destinations[0][0] if len(destinations) == 1 else f"{vs.name}.{vs.namespace}.{index}"
                    chain: dict[str, Any] = {"name": f"{vs.namespace}/{vs.name}/{section}/{index}",
                                             "filters": [_tcp_proxy(stat, snapshot, destinations)]}
                    if chain_match:
                        chain["filter_chain_match"] = chain_match
                    chains.append(chain)
    return chains


def _covered(sni_host: str, server_names: list[str]) -> bool:
    """An SNI host of a ``tls`` route counts only where the server's ``hosts`` allow it (all, when ``*``)."""
    return not server_names or any(policies.host_matches(h, sni_host) or policies.host_matches(sni_host, h)
                                   for h in server_names)
