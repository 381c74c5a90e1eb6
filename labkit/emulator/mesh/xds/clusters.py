"""CDS: the clusters of a sidecar or gateway, shaped as istiod shapes them.

For every service port a proxy sees there is an ``outbound|<port>||<host>`` cluster, plus one per
DestinationRule subset. Defaults follow Istio: EDS, LEAST_REQUEST, 10 s connect timeout, circuit breakers
wide open, and **auto mTLS**: two ``transport_socket_matches``, so each endpoint's ``tlsMode`` metadata
decides whether this connection is mTLS (SNI = the cluster's ``outbound_.…`` name, SANs = the service's
accounts) or plaintext. A DestinationRule's ``tls.mode`` replaces the matches with one transport socket.

Two departures, both because sidecars here are HTTP proxies without iptables (DESIGN.md decision 5):

- a ``PASSTHROUGH`` (headless) service gets an EDS cluster over its endpoint addresses under Istio's name
  instead of Istio's ORIGINAL_DST cluster: with no redirected connection there is no original destination
  to dial, and the hand-written Endpoints of a headless Service (lab 3) must still be reachable, with the
  DestinationRule's TLS settings applied per endpoint;
- ``PassthroughCluster`` is ORIGINAL_DST reading the destination from a header the ``allow_any`` route sets
  from the request's ``:authority`` (port 80 when it names none), so ``ALLOW_ANY`` traffic to an ``IP[:port]``
  works while a name Envoy cannot resolve ends in ``no healthy
  upstream`` (Istio would forward the original connection).

Gateways additionally get the AUTO_PASSTHROUGH clusters ``outbound_.<port>_.<subset>_.<host>``: EDS,
no TLS of their own (the client's mTLS passes through), endpoints of the gateway's network only; one for every
service the Gateway's ``hosts`` cover, ServiceEntry hosts included (a ``*.global`` server passes
``svc-2.bar.global`` to the pods its entry selects), except ``MESH_EXTERNAL`` ones, which are not mesh traffic.
"""

from __future__ import annotations

from typing import Any

from labkit.emulator.mesh.model import MeshSnapshot, Proxy, Service, ServicePort
from labkit.emulator.mesh.xds import common, names, policies
from labkit.emulator.mesh.xds.endpoints import build_load_assignment

# PASSTHROUGH (original destination) has no counterpart without iptables: it is refused by name, not guessed.
_LB_POLICIES = {"UNSPECIFIED": "LEAST_REQUEST", "ROUND_ROBIN": "ROUND_ROBIN", "LEAST_REQUEST": "LEAST_REQUEST",
                "LEAST_CONN": "LEAST_REQUEST", "RANDOM": "RANDOM"}


def build_clusters(proxy: Proxy, snapshot: MeshSnapshot) -> list[dict[str, Any]]:
    """Every cluster of a proxy: outbound (and subset) clusters, inbound clusters of a sidecar, the
    AUTO_PASSTHROUGH clusters of a gateway, ``BlackHoleCluster`` and ``PassthroughCluster``.

    Args:
        proxy: the sidecar or gateway.
        snapshot: the mesh.
    """
    clusters: list[dict[str, Any]] = []
    for service in policies.visible_services(proxy, snapshot):
        rule = policies.destination_rule(proxy, snapshot, service)
        for port in policies.service_ports(service):
            clusters.append(_outbound(proxy, snapshot, service, port, ""))
            clusters.extend(_outbound(proxy, snapshot, service, port, subset["name"])
                            for subset in policies.subsets(rule))
    if proxy.type == "sidecar":
        clusters.extend(_inbound(proxy, port) for port in inbound_ports(proxy, snapshot))
    else:
        clusters.extend(_sni_dnat(proxy, snapshot, service, port, subset)
                        for service, port, subset in auto_passthrough_targets(proxy, snapshot))
    clusters.append(_blackhole())
    clusters.append(_passthrough())
    return clusters


def inbound_ports(proxy: Proxy, snapshot: MeshSnapshot) -> dict[int, str]:
    """Target port → protocol of every port the sidecar receives on: ports of services with an endpoint at the
    proxy's IP (in its cluster), then the pod's declared container ports (TCP when no service names them).
    """
    found: dict[int, str] = {}
    for service in snapshot.services:
        for endpoint in service.endpoints:
            if endpoint.address != proxy.ip or (proxy.cluster and endpoint.cluster not in ("", proxy.cluster)):
                continue
            for port in service.ports:
                # HTTP wins when two services disagree: an HTTP listener still carries what TCP would.
                if (policies.serves(service, port, endpoint.service_port)
                        and found.get(endpoint.port) not in ("HTTP", "HTTP2", "GRPC")):
                    found[endpoint.port] = port.protocol
    for port in proxy.container_ports:
        found.setdefault(port, "TCP")
    return dict(sorted(found.items()))


def auto_passthrough_targets(proxy: Proxy, snapshot: MeshSnapshot) -> list[tuple[Service, ServicePort, str]]:
    """(service, port, subset) triples an AUTO_PASSTHROUGH server of this gateway exposes, honouring its ``hosts``."""
    if proxy.type != "router":
        return []
    servers = [(g.namespace, s) for g in policies.gateways_for(proxy, snapshot)
               for s in g.spec.get("servers") or () if (s.get("tls") or {}).get("mode") == "AUTO_PASSTHROUGH"]
    if not servers:
        return []
    out = []
    for service in policies.visible_services(proxy, snapshot):
        if service.mesh_external:
            continue  # as Istio's buildOutboundSniDnatClusters: a gateway only passes mesh traffic through
        if not any(policies.server_covers(server, namespace, service) for namespace, server in servers):
            continue
        rule = policies.destination_rule(proxy, snapshot, service)
        for port in policies.service_ports(service):
            out.append((service, port, ""))
            out.extend((service, port, subset["name"]) for subset in policies.subsets(rule))
    return out


def _base(name: str, kind: str, *, connect_timeout: str = common.DEFAULT_CONNECT_TIMEOUT) -> dict[str, Any]:
    return {"@type": common.CLUSTER, "name": name, "type": kind, "connect_timeout": connect_timeout}


def _eds(name: str) -> dict[str, Any]:
    return {"service_name": name, "eds_config": names.config_source("eds", name)}


def _circuit_breakers(pool: dict[str, Any]) -> dict[str, Any]:
    tcp, http = pool.get("tcp") or {}, pool.get("http") or {}
    threshold = {
        "max_connections": int(tcp.get("maxConnections") or common.MAX_U32),
        "max_pending_requests": int(http.get("http1MaxPendingRequests") or common.MAX_U32),
        "max_requests": int(http.get("http2MaxRequests") or common.MAX_U32),
        "max_retries": int(http.get("maxRetries") or common.MAX_U32),
        "track_remaining": True,
    }
    return {"thresholds": [threshold]}


def _outlier_detection(outlier: dict[str, Any]) -> dict[str, Any]:
    """Istio's mapping: consecutive errors enforced at 100 %, success-rate ejection off."""
    out: dict[str, Any] = {"enforcing_success_rate": 0}
    errors = outlier.get("consecutive5xxErrors", outlier.get("consecutiveErrors"))
    if errors is not None:
        out["consecutive_5xx"] = int(errors)
        out["enforcing_consecutive_5xx"] = 100 if int(errors) > 0 else 0
    if outlier.get("consecutiveGatewayErrors") is not None:
        value = int(outlier["consecutiveGatewayErrors"])
        out["consecutive_gateway_failure"] = value
        out["enforcing_consecutive_gateway_failure"] = 100 if value > 0 else 0
    if outlier.get("interval"):
        out["interval"] = common.duration(outlier["interval"])
    if outlier.get("baseEjectionTime"):
        out["base_ejection_time"] = common.duration(outlier["baseEjectionTime"])
    if outlier.get("maxEjectionPercent"):
        out["max_ejection_percent"] = int(outlier["maxEjectionPercent"])
    if outlier.get("splitExternalLocalOriginErrors"):
        out["split_external_local_origin_errors"] = True
        if outlier.get("consecutiveLocalOriginFailures"):
            out["consecutive_local_origin_failure"] = int(outlier["consecutiveLocalOriginFailures"])
            out["enforcing_consecutive_local_origin_failure"] = 100
    return out


def _identities(service: Service, snapshot: MeshSnapshot) -> list[str]:
    accounts = [*service.subject_alt_names, *(ep.service_account for ep in service.endpoints if ep.service_account)]
    return common.expand_trust_domains(accounts, policies.trust_domains(snapshot))


def _transport(snapshot: MeshSnapshot, service: Service, port: ServicePort, subset: str,
               tls: dict[str, Any] | None, where: str = "DestinationRule") -> dict[str, Any]:
    """``transport_socket`` / ``transport_socket_matches`` keys for an outbound cluster."""
    server_name = names.sni(port.port, subset, service.hostname)
    if tls is not None:
        mode = common.enum_value(tls.get("mode"), ("DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"),
                                 f"{where}: trafficPolicy.tls.mode", "DISABLE")
        if mode == "ISTIO_MUTUAL":
            return {"transport_socket": common.istio_mutual_upstream(tls.get("sni") or server_name,
                                                                     _identities(service, snapshot))}
        if mode in ("SIMPLE", "MUTUAL"):
            return {"transport_socket": _originate_tls(service, tls, mode)}
        return {}
    auto = (snapshot.mesh.enable_auto_mtls and not service.mesh_external
            and policies.namespace_mtls_mode(snapshot, service.namespace) != "DISABLE")
    if not auto:
        return {}
    return {"transport_socket_matches": [
        {"name": "tlsMode-istio", "match": {"tlsMode": "istio"},
         "transport_socket": common.istio_mutual_upstream(server_name, _identities(service, snapshot))},
        {"name": "tlsMode-disabled", "match": {}, "transport_socket": common.raw_buffer()},
    ]}


def _originate_tls(service: Service, tls: dict[str, Any], mode: str) -> dict[str, Any]:
    """SIMPLE/MUTUAL TLS origination from files named in the DestinationRule (as on a real sidecar's filesystem).

    Without ``caCertificates`` (or ``credentialName``) the server is not verified; Istio would fall back to the
    OS roots, which embedded workloads have no use for.
    """
    context: dict[str, Any] = {"tls_params": common.tls_params()}
    validation: dict[str, Any] = {}
    if tls.get("caCertificates"):
        validation["trusted_ca"] = {"filename": tls["caCertificates"]}
    if tls.get("subjectAltNames"):
        validation["match_typed_subject_alt_names"] = [
            {"san_type": "URI" if "://" in san else "DNS", "matcher": {"exact": san}} for san in tls["subjectAltNames"]]
    if tls.get("credentialName"):
        secret = names.credential_secret_name(tls["credentialName"])
        context["tls_certificate_sds_secret_configs"] = [common.sds_secret(secret)]
        context["combined_validation_context"] = {
            "default_validation_context": validation,
            "validation_context_sds_secret_config": common.sds_secret(f"{secret}-cacert"),
        }
    else:
        if mode == "MUTUAL" and tls.get("clientCertificate") and tls.get("privateKey"):
            context["tls_certificates"] = [{"certificate_chain": {"filename": tls["clientCertificate"]},
                                            "private_key": {"filename": tls["privateKey"]}}]
        if validation:
            context["validation_context"] = validation
    return common.typed("envoy.transport_sockets.tls", common.UPSTREAM_TLS, common_tls_context=context,
                        sni=tls.get("sni") or service.hostname)


def _outbound(proxy: Proxy, snapshot: MeshSnapshot, service: Service, port: ServicePort,
              subset: str) -> dict[str, Any]:
    name = names.cluster_name("outbound", port.port, subset, service.hostname)
    rule = policies.destination_rule(proxy, snapshot, service)
    policy = policies.traffic_policy(rule, port.port, subset)
    pool = policy.get("connectionPool") or {}
    timeout = (pool.get("tcp") or {}).get("connectTimeout")
    if service.resolution == "DNS":
        cluster = _base(name, "STRICT_DNS", connect_timeout=common.duration(timeout) if timeout else
                        common.DEFAULT_CONNECT_TIMEOUT)
        cluster["dns_lookup_family"] = "V4_ONLY"
        cluster["respect_dns_ttl"] = True
        assignment = build_load_assignment(proxy, snapshot, name)
        if not assignment["endpoints"]:
            # A DNS ServiceEntry without endpoints resolves its own host name.
            assignment["endpoints"] = [{"lb_endpoints": [{"endpoint": {
                "address": common.socket_address(service.hostname, port.port)}}]}]
        assignment.pop("@type")
        cluster["load_assignment"] = assignment
    else:
        cluster = _base(name, "EDS", connect_timeout=common.duration(timeout) if timeout else
                        common.DEFAULT_CONNECT_TIMEOUT)
        cluster["eds_cluster_config"] = _eds(name)
    where = f"DestinationRule {rule.namespace}/{rule.name}" if rule is not None else "DestinationRule"
    simple = common.enum_value((policy.get("loadBalancer") or {}).get("simple"), _LB_POLICIES,
                               f"{where}: trafficPolicy.loadBalancer.simple", "UNSPECIFIED")
    cluster["lb_policy"] = _LB_POLICIES[simple]
    cluster["circuit_breakers"] = _circuit_breakers(pool)
    common_lb: dict[str, Any] = {}
    if policy.get("outlierDetection"):
        cluster["outlier_detection"] = _outlier_detection(policy["outlierDetection"])
        # Istio maps minHealthPercent (default 0) to the panic threshold: ejected hosts really get no traffic.
        common_lb["healthy_panic_threshold"] = {"value": float(policy["outlierDetection"].get("minHealthPercent", 0))}
    cluster["common_lb_config"] = common_lb
    if port.protocol in ("HTTP2", "GRPC"):
        cluster["typed_extension_protocol_options"] = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": common.HTTP_PROTOCOL_OPTIONS, "explicit_http_config": {"http2_protocol_options": {}}}}
    cluster.update(_transport(snapshot, service, port, subset, policy.get("tls"), where))
    meta: dict[str, Any] = {"services": [{"host": service.hostname, "name": service.name or service.hostname,
                                          "namespace": service.namespace}],
                            "default_original_port": port.port}
    if subset:
        meta["subset"] = subset
    if rule is not None:
        meta["config"] = f"/apis/networking.istio.io/v1/namespaces/{rule.namespace}/destination-rule/{rule.name}"
    cluster["metadata"] = common.metadata(**meta)
    return cluster


def _inbound(proxy: Proxy, port: int) -> dict[str, Any]:
    if not proxy.app_address:
        raise common.XdsError(f"sidecar {proxy.namespace}/{proxy.name} receives on port {port} but has no app_address: "
                       f"set Proxy.app_address to where the application listens")
    name = names.cluster_name("inbound", port)
    cluster = _base(name, "STATIC")
    cluster["lb_policy"] = "ROUND_ROBIN"
    cluster["circuit_breakers"] = _circuit_breakers({})
    cluster["load_assignment"] = {"cluster_name": name, "endpoints": [{"lb_endpoints": [
        {"endpoint": {"address": common.socket_address(proxy.app_address, port)}}]}]}
    cluster["metadata"] = common.metadata()
    return cluster


def _sni_dnat(proxy: Proxy, snapshot: MeshSnapshot, service: Service, port: ServicePort,
              subset: str) -> dict[str, Any]:
    name = names.sni_dnat_cluster_name(port.port, subset, service.hostname)
    cluster = _base(name, "EDS")
    cluster["eds_cluster_config"] = _eds(name)
    cluster["lb_policy"] = "LEAST_REQUEST"
    cluster["circuit_breakers"] = _circuit_breakers({})
    cluster["metadata"] = common.metadata(services=[{"host": service.hostname, "name": service.name or
                                                     service.hostname, "namespace": service.namespace}])
    return cluster


def _blackhole() -> dict[str, Any]:
    return _base(names.BLACKHOLE_CLUSTER, "STATIC")


def _passthrough() -> dict[str, Any]:
    cluster = _base(names.PASSTHROUGH_CLUSTER, "ORIGINAL_DST")
    cluster["lb_policy"] = "CLUSTER_PROVIDED"
    cluster["original_dst_lb_config"] = {"use_http_header": True, "http_header_name": names.ORIGINAL_DST_HEADER}
    cluster["circuit_breakers"] = _circuit_breakers({})
    return cluster
