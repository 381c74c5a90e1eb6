"""RDS: the route configurations of a proxy — where a Host header and a VirtualService pick a cluster.

A sidecar here is an explicit HTTP proxy (no iptables), so all its outbound HTTP routing lives in one route
configuration, ``http_proxy``, exactly the one Istio builds for ``proxyHttpPort``: one virtual host per
service port, named ``<host>:<port>``, with the domains Istio generates for the proxy's namespace (short
names only inside the same namespace; names without a port only for port 80, since a client sends
``Host: name:port`` for any other port), then ``allow_any`` or ``block_all`` for everything else. Inbound
HTTP ports get ``inbound|<port>||``; gateways get ``http.<port>`` per plaintext port and
``https.<port>.<portName>.<gateway>.<namespace>`` per TLS-terminating server.

Routes without a VirtualService carry Istio's default retry policy (2 retries on connect failures,
refused streams and 503s, never the same host twice), which is why one bad remote endpoint stays
invisible while a healthy one exists. A VirtualService destination that names no known service or
subset becomes a ``503`` direct response naming it, where Istio would point at a cluster Envoy lacks
(``503 NC``): same outcome for the caller, but every referenced cluster exists (:mod:`.snapshot` checks).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from labkit.emulator.mesh.model import DEFAULT_DOMAIN, ConfigObject, MeshSnapshot, Proxy, Service
from labkit.emulator.mesh.xds import common, names, policies
from labkit.emulator.mesh.xds.clusters import inbound_ports

_REDIRECT_CODES = {301: "MOVED_PERMANENTLY", 302: "FOUND", 303: "SEE_OTHER", 307: "TEMPORARY_REDIRECT",
                   308: "PERMANENT_REDIRECT"}
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"


def build_routes(proxy: Proxy, snapshot: MeshSnapshot) -> list[dict[str, Any]]:
    """Every RouteConfiguration the proxy's listeners name.

    Args:
        proxy: the sidecar or gateway.
        snapshot: the mesh.
    """
    if proxy.type == "sidecar":
        routes = [_http_proxy(proxy, snapshot)]
        routes += [_inbound(proxy, snapshot, port) for port, protocol in inbound_ports(proxy, snapshot).items()
                   if protocol in ("HTTP", "HTTP2", "GRPC")]
        return routes
    return _gateway_routes(proxy, snapshot)


def default_retry_policy() -> dict[str, Any]:
    """Istio's retry policy for routes without ``retries``."""
    return {
        "retry_on": DEFAULT_RETRY_ON,
        "num_retries": 2,
        "retry_host_predicate": [common.typed("envoy.retry_host_predicates.previous_hosts", common.PREVIOUS_HOSTS)],
        "host_selection_retry_max_attempts": 5,
        "retriable_status_codes": [503],
    }


class DestinationResolver:
    """Turns VirtualService destinations into the outbound cluster names the proxy has (``None``: no such
    service, port or subset), for HTTP routes here and TCP/TLS routes in :mod:`.listeners`.
    """

    def __init__(self, proxy: Proxy, snapshot: MeshSnapshot):
        self.proxy, self.snapshot = proxy, snapshot
        self.services = {s.hostname: s for s in policies.visible_services(proxy, snapshot)}

    def cluster(self, destination: Mapping[str, Any], namespace: str, port: int | None) -> str | None:
        host = policies.resolve_host(str(destination.get("host", "")), namespace)
        service = self.services.get(host)
        if service is None or not service.ports:
            return None
        number = (destination.get("port") or {}).get("number")
        if number is None:
            ports = [p.port for p in service.ports]
            number = ports[0] if len(ports) == 1 else (port if port in ports else None)
        if number is None or service.port(int(number)) is None:
            return None
        subset = str(destination.get("subset") or "")
        if subset:
            rule = policies.destination_rule(self.proxy, self.snapshot, service)
            if policies.subset_labels(rule, subset) is None:
                return None
        return names.cluster_name("outbound", int(number), subset, host)


def _route_action(clusters: list[tuple[str, int]], route: Mapping[str, Any] | None) -> dict[str, Any]:
    action: dict[str, Any] = {}
    if len(clusters) == 1:
        action["cluster"] = clusters[0][0]
    else:
        action["weighted_clusters"] = {"clusters": [{"name": name, "weight": weight} for name, weight in clusters]}
    route = route or {}
    action["timeout"] = common.duration(route["timeout"]) if route.get("timeout") else "0s"
    retries = route.get("retries")
    if retries is None:
        action["retry_policy"] = default_retry_policy()
    elif int(retries.get("attempts", 0)) > 0:
        action["retry_policy"] = _retry_policy(retries)
    rewrite = route.get("rewrite") or {}
    if rewrite.get("uri"):
        action["prefix_rewrite"] = rewrite["uri"]
    if rewrite.get("authority"):
        action["host_rewrite_literal"] = rewrite["authority"]
    action["max_stream_duration"] = {"max_stream_duration": "0s", "grpc_timeout_header_max": "0s"}
    return action


def _retry_policy(retries: Mapping[str, Any]) -> dict[str, Any]:
    policy = default_retry_policy()
    policy["num_retries"] = int(retries["attempts"])
    if retries.get("retryOn"):
        words = [w.strip() for w in str(retries["retryOn"]).split(",") if w.strip()]
        codes = [int(w) for w in words if w.isdigit()]
        conditions = [w for w in words if not w.isdigit()]
        if codes and "retriable-status-codes" not in conditions:
            conditions.append("retriable-status-codes")
        policy["retry_on"] = ",".join(conditions)
        if codes:
            policy["retriable_status_codes"] = codes
        else:
            policy.pop("retriable_status_codes")
    if retries.get("perTryTimeout"):
        policy["per_try_timeout"] = common.duration(retries["perTryTimeout"])
    return policy


def _percentage(value: Any) -> dict[str, Any]:
    percent = float((value or {}).get("value", 100.0)) if isinstance(value, Mapping) else float(value or 100.0)
    return {"numerator": round(percent * 10_000), "denominator": "MILLION"}


def _fault(fault: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {"@type": common.FAULT}
    delay = fault.get("delay") or {}
    if delay.get("fixedDelay"):
        config["delay"] = {"fixed_delay": common.duration(delay["fixedDelay"]),
                           "percentage": _percentage(delay.get("percentage", delay.get("percent")))}
    abort = fault.get("abort") or {}
    if abort.get("httpStatus"):
        config["abort"] = {"http_status": int(abort["httpStatus"]),
                           "percentage": _percentage(abort.get("percentage", abort.get("percent")))}
    return config


def _string_match(spec: Mapping[str, Any]) -> dict[str, Any] | None:
    if "exact" in spec:
        return {"exact": str(spec["exact"])}
    if "prefix" in spec:
        return {"prefix": str(spec["prefix"])}
    if "regex" in spec:
        return {"safe_regex": {"regex": str(spec["regex"])}}
    return None


def _header_matcher(name: str, spec: Mapping[str, Any], *, invert: bool = False) -> dict[str, Any]:
    matcher: dict[str, Any] = {"name": name}
    string_match = _string_match(spec or {})
    if string_match is None:
        matcher["present_match"] = True
    else:
        matcher["string_match"] = string_match
    if invert:
        matcher["invert_match"] = True
    return matcher


def _route_match(match: Mapping[str, Any]) -> dict[str, Any]:
    """An Istio ``HTTPMatchRequest`` as an Envoy ``RouteMatch``."""
    out: dict[str, Any] = {}
    uri = match.get("uri") or {}
    if "exact" in uri:
        out["path"] = str(uri["exact"])
    elif "regex" in uri:
        out["safe_regex"] = {"regex": str(uri["regex"])}
    else:
        out["prefix"] = str(uri.get("prefix", "/"))
    if match.get("ignoreUriCase"):
        out["case_sensitive"] = False
    headers = [_header_matcher(name, spec) for name, spec in sorted((match.get("headers") or {}).items())]
    headers += [_header_matcher(name, spec, invert=True)
                for name, spec in sorted((match.get("withoutHeaders") or {}).items())]
    for field, header in (("method", ":method"), ("authority", ":authority"), ("scheme", ":scheme")):
        if match.get(field):
            headers.append(_header_matcher(header, match[field]))
    if headers:
        out["headers"] = headers
    queries = []
    for name, spec in sorted((match.get("queryParams") or {}).items()):
        string_match = _string_match(spec or {})
        queries.append({"name": name, **({"string_match": string_match} if string_match else {"present_match": True})})
    if queries:
        out["query_parameters"] = queries
    return out


def _headers(spec: Mapping[str, Any], direction: str) -> dict[str, Any]:
    section = spec.get(direction) or {}
    out: dict[str, Any] = {}
    add = [{"header": {"key": k, "value": str(v)}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
           for k, v in sorted((section.get("set") or {}).items())]
    add += [{"header": {"key": k, "value": str(v)}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}
            for k, v in sorted((section.get("add") or {}).items())]
    if add:
        out[f"{direction}_headers_to_add"] = add
    if section.get("remove"):
        out[f"{direction}_headers_to_remove"] = list(section["remove"])
    return out


def _vs_routes(vs: ConfigObject, clusters: DestinationResolver, *, port: int, gateway: str, proxy: Proxy,
               operation: str) -> list[dict[str, Any]]:
    """The Envoy routes of one VirtualService for one virtual host (port) of one gateway (``mesh`` or ns/name)."""
    routes = []
    meta = common.metadata(config=f"/apis/networking.istio.io/v1/namespaces/{vs.namespace}/virtual-service/{vs.name}")
    for index, http in enumerate(vs.spec.get("http") or ()):
        matches = []
        for match in http.get("match") or [{}]:
            if match.get("port") is not None and int(match["port"]) != port:
                continue
            bound = policies.match_gateways(match, vs.namespace)
            if bound and gateway not in bound:
                continue
            if match.get("sourceLabels") and not common.labels_match(match["sourceLabels"], proxy.labels):
                continue
            matches.append(match)
        base: dict[str, Any] = {"metadata": meta, "decorator": {"operation": operation}}
        if http.get("fault"):
            base["typed_per_filter_config"] = {"envoy.filters.http.fault": _fault(http["fault"])}
        base.update(_headers(http.get("headers") or {}, "request"))
        base.update(_headers(http.get("headers") or {}, "response"))
        body = _route_body(http, vs, clusters, port)
        for match_index, match in enumerate(matches):
            name = match.get("name") or http.get("name") or f"{vs.name}.{vs.namespace}.{index}"
            if len(matches) > 1 and not match.get("name"):
                name = f"{name}.{match_index}"
            routes.append({"name": name, "match": _route_match(match), **body, **base})
    return routes


def _route_body(http: Mapping[str, Any], vs: ConfigObject, clusters: DestinationResolver, port: int) -> dict[str, Any]:
    if http.get("redirect"):
        redirect = http["redirect"]
        out: dict[str, Any] = {}
        if redirect.get("uri"):
            out["path_redirect"] = redirect["uri"]
        if redirect.get("authority"):
            out["host_redirect"] = redirect["authority"]
        code = int(redirect.get("redirectCode", 301))
        if code not in _REDIRECT_CODES:
            raise common.XdsError(f"VirtualService {vs.namespace}/{vs.name}: redirect.redirectCode {code} is not a "
                                  f"redirect code; use one of {', '.join(map(str, _REDIRECT_CODES))}")
        out["response_code"] = _REDIRECT_CODES[code]
        return {"redirect": out}
    if http.get("directResponse"):
        direct = http["directResponse"]
        response: dict[str, Any] = {"status": int(direct.get("status", 200))}
        if (direct.get("body") or {}).get("string") is not None:
            response["body"] = {"inline_string": direct["body"]["string"]}
        return {"direct_response": response}
    weighted: list[tuple[str, int]] = []
    destinations = list(http.get("route") or ())
    for destination in destinations:
        weight = int(destination.get("weight", 100 if len(destinations) == 1 else 0))
        if len(destinations) > 1 and weight == 0:
            continue
        name = clusters.cluster(destination.get("destination") or {}, vs.namespace, port)
        if name is None:
            missing = (destination.get("destination") or {}).get("host", "?")
            return {"direct_response": {"status": 503, "body": {"inline_string": (
                f"VirtualService {vs.namespace}/{vs.name}: destination {missing} (port/subset) is not a known "
                f"service of the mesh\n")}}}
        weighted.append((name, max(weight, 1)))
    if not weighted:
        return {"direct_response": {"status": 503, "body": {"inline_string": (
            f"VirtualService {vs.namespace}/{vs.name}: http route without destinations\n")}}}
    return {"route": _route_action(weighted, http)}


def _default_route(cluster: str, operation: str) -> dict[str, Any]:
    return {"name": "default", "match": {"prefix": "/"}, "route": _route_action([(cluster, 100)], None),
            "decorator": {"operation": operation}}


def _vs_for_host(virtual_services: Iterable[ConfigObject], host: str) -> ConfigObject | None:
    candidates = [(policies.resolve_host(str(h), vs.namespace), vs)
                  for vs in virtual_services for h in vs.spec.get("hosts") or ()]
    exact = [vs for h, vs in candidates if h == host]
    if exact:
        return exact[0]
    wildcard = sorted(((h, vs) for h, vs in candidates if "*" in h and policies.host_matches(h, host)),
                      key=lambda item: -len(item[0]))
    return wildcard[0][1] if wildcard else None


def virtual_host_domains(proxy: Proxy, service: Service, port: int) -> list[str]:
    """Istio's ``generateVirtualHostDomains`` for the ``http_proxy`` route (ports appended, then only the
    ``:port`` forms kept unless the port is 80).

    Args:
        proxy: the client proxy; its namespace decides the short names.
        service: the destination service.
        port: the service port.
    """
    host = service.hostname
    domains = [host, names.domain_name(host, port)]
    domains += _alt_hosts(host, port, f"{proxy.namespace}.svc.{DEFAULT_DOMAIN}")
    if service.resolution == "PASSTHROUGH" and not service.mesh_external and host.endswith(f".svc.{DEFAULT_DOMAIN}"):
        domains += [f"*.{d}" for d in domains]
    for address in _addresses(proxy, service):
        domains += [address, names.domain_name(address, port)]
    if port != 80:
        domains = [d for d in domains if ":" in d]
    return list(dict.fromkeys(domains))


def _alt_hosts(host: str, port: int, proxy_domain: str) -> list[str]:
    """Short forms of a Kubernetes service name: ``name``/``name.ns``/``name.ns.svc`` (with and without port)."""
    suffix = f".svc.{DEFAULT_DOMAIN}"
    if not host.endswith(suffix):
        return []
    stem = host[: -len(suffix)]  # name.namespace
    name, _, namespace = stem.partition(".")
    if not name or not namespace or "." in namespace:
        return []
    forms = [stem, f"{stem}.svc"]
    if proxy_domain.split(".", 1)[0] == namespace:
        forms.insert(0, name)
    out = []
    for form in forms:
        out += [form, names.domain_name(form, port)]
    return out


def _addresses(proxy: Proxy, service: Service) -> list[str]:
    """The service's VIPs as the proxy sees them: its own cluster's ClusterIP and ServiceEntry addresses; a
    service with no VIP in the proxy's cluster is reached by the other clusters' ones (the DNS proxy hands them out).
    """
    local = [a for key, a in service.addresses.items() if key in (proxy.cluster, "") and a and a != "0.0.0.0"]
    if local:
        return sorted(set(local))
    return sorted({a for a in service.addresses.values() if a and a != "0.0.0.0"})


def _http_proxy(proxy: Proxy, snapshot: MeshSnapshot) -> dict[str, Any]:
    clusters = DestinationResolver(proxy, snapshot)
    mesh_vs = policies.virtual_services(snapshot, policies.MESH_GATEWAY, proxy.namespace)
    seen: set[str] = set()
    vhosts = []
    for service in clusters.services.values():
        vs = _vs_for_host(mesh_vs, service.hostname)
        # Inside the mesh, every port, not only HTTP-named ones: whatever reaches the sidecar's HTTP proxy speaks
        # HTTP (without iptables a TCP port has no other way into the mesh), and the port's cluster still applies
        # its TLS settings — a DestinationRule's ISTIO_MUTUAL to a `https`-named port originates mTLS (Lab 3).
        # An external service's TLS port is the client's own TLS: no plaintext route to it.
        for port in policies.service_ports(service, http_only=service.mesh_external):
            name = names.domain_name(service.hostname, port.port)
            domains = [d for d in virtual_host_domains(proxy, service, port.port) if d.lower() not in seen]
            if not domains:
                continue
            seen.update(d.lower() for d in domains)
            operation = f"{name}/*"
            if vs is not None:
                routes = _vs_routes(vs, clusters, port=port.port, gateway=policies.MESH_GATEWAY, proxy=proxy,
                                    operation=operation)
            else:
                routes = [_default_route(names.cluster_name("outbound", port.port, "", service.hostname), operation)]
            vhosts.append({"name": name, "domains": domains, "routes": routes, "include_request_attempt_count": True})
    vhosts.append(_catch_all(snapshot))
    return {"@type": common.ROUTE_CONFIGURATION, "name": names.HTTP_PROXY_ROUTE, "virtual_hosts": vhosts,
            "validate_clusters": False}


def _catch_all(snapshot: MeshSnapshot) -> dict[str, Any]:
    mode = common.enum_value(snapshot.mesh.outbound_traffic_policy, ("ALLOW_ANY", "REGISTRY_ONLY"),
                             "meshConfig.outboundTrafficPolicy.mode", "ALLOW_ANY")
    if mode == "REGISTRY_ONLY":
        return {"name": names.BLOCK_ALL_VHOST, "domains": ["*"], "routes": [
            {"name": names.BLOCK_ALL_VHOST, "match": {"prefix": "/"}, "direct_response": {"status": 502}}],
            "include_request_attempt_count": True}
    # PassthroughCluster dials the address in ORIGINAL_DST_HEADER, which must carry a port. An HTTP client leaves
    # the default port out of Host (curl http://10.0.0.1/ sends Host: 10.0.0.1), where Istio would have the
    # connection's original destination, port 80 included: a Host without a port means port 80.
    passthrough = {"cluster": names.PASSTHROUGH_CLUSTER, "timeout": "0s",
                   "max_stream_duration": {"max_stream_duration": "0s", "grpc_timeout_header_max": "0s"}}
    return {"name": names.ALLOW_ANY_VHOST, "domains": ["*"], "routes": [
        {"name": names.ALLOW_ANY_VHOST, "match": {"prefix": "/", "headers": [
            {"name": ":authority", "string_match": {"safe_regex": {"regex": r".*:[0-9]+"}}}]},
         "route": passthrough, "request_headers_to_add": [_original_dst("%REQ(:authority)%")]},
        {"name": names.ALLOW_ANY_VHOST, "match": {"prefix": "/"},
         "route": passthrough, "request_headers_to_add": [_original_dst("%REQ(:authority)%:80")]}],
        "include_request_attempt_count": True}


def _original_dst(value: str) -> dict[str, Any]:
    """The header PassthroughCluster takes its destination from, set by the route (never the client's own)."""
    return {"header": {"key": names.ORIGINAL_DST_HEADER, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def _inbound(proxy: Proxy, snapshot: MeshSnapshot, port: int) -> dict[str, Any]:
    name = names.inbound_route_name(port)
    route = {"name": "default", "match": {"prefix": "/"},
             "route": {"cluster": names.cluster_name("inbound", port), "timeout": "0s",
                       "max_stream_duration": {"max_stream_duration": "0s", "grpc_timeout_header_max": "0s"}},
             "decorator": {"operation": f"{proxy.name}.{proxy.namespace}:{port}/*"}}
    return {"@type": common.ROUTE_CONFIGURATION, "name": name, "validate_clusters": False,
            "virtual_hosts": [{"name": f"inbound|http|{port}", "domains": ["*"], "routes": [route]}]}


def gateway_route_name(gateway: ConfigObject, server: Mapping[str, Any]) -> str | None:
    """The RDS name of a Gateway server that terminates HTTP, ``None`` for TLS/TCP passthrough servers."""
    port = server.get("port") or {}
    protocol = str(port.get("protocol", "")).upper()  # Istio parses protocols case-insensitively, not TLS modes
    mode = server_tls_mode(gateway, server)
    if protocol in ("HTTP", "HTTP2", "GRPC") and mode in ("", "PASSTHROUGH"):
        return names.gateway_http_route_name(int(port["number"]))
    if protocol == "HTTPS" and mode in ("SIMPLE", "MUTUAL", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"):
        return names.gateway_https_route_name(int(port["number"]), str(port.get("name", "https")), gateway.name,
                                              gateway.namespace)
    return None


SERVER_TLS_MODES = ("PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL")


def server_tls_mode(gateway: ConfigObject, server: Mapping[str, Any]) -> str:
    """A Gateway server's ``tls.mode`` (``""`` without ``tls``; PASSTHROUGH when ``tls`` names no mode)."""
    tls = server.get("tls")
    if tls is None:
        return ""
    name = (server.get("port") or {}).get("name", "")
    return common.enum_value(tls.get("mode"), SERVER_TLS_MODES,
                             f"Gateway {gateway.namespace}/{gateway.name}: server {name} tls.mode", "PASSTHROUGH")


def _gateway_routes(proxy: Proxy, snapshot: MeshSnapshot) -> list[dict[str, Any]]:
    servers: dict[str, list[tuple[ConfigObject, Mapping[str, Any]]]] = {}
    for gateway in policies.gateways_for(proxy, snapshot):
        for server in gateway.spec.get("servers") or ():
            name = gateway_route_name(gateway, server)
            if name is not None:
                servers.setdefault(name, []).append((gateway, server))
    clusters = DestinationResolver(proxy, snapshot)
    return [_gateway_route(proxy, snapshot, clusters, name, members) for name, members in servers.items()]


def _gateway_route(proxy: Proxy, snapshot: MeshSnapshot, clusters: DestinationResolver, name: str,
                   members: list[tuple[ConfigObject, Mapping[str, Any]]]) -> dict[str, Any]:
    vhosts: list[dict[str, Any]] = []
    seen: set[str] = set()
    port = int(members[0][1]["port"]["number"])
    for gateway, server in members:
        key = f"{gateway.namespace}/{gateway.name}"
        server_hosts = [policies.split_namespaced_host(str(h), gateway.namespace) for h in server.get("hosts") or ()]
        for vs in policies.virtual_services(snapshot, key, proxy.namespace):
            for vs_host in vs.spec.get("hosts") or ():
                host = _intersect(str(vs_host), vs.namespace, server_hosts)
                if host is None:
                    continue
                domains = ["*"] if host == "*" else [host, f"{host}:*"]
                domains = [d for d in domains if d not in seen]
                if not domains:
                    continue
                seen.update(domains)
                routes = _vs_routes(vs, clusters, port=port, gateway=key, proxy=proxy,
                                    operation=f"{host}:{port}/*")
                vhost: dict[str, Any] = {"name": names.domain_name(host, port), "domains": domains, "routes": routes,
                                         "include_request_attempt_count": True}
                if (server.get("tls") or {}).get("httpsRedirect"):
                    vhost["require_tls"] = "ALL"
                vhosts.append(vhost)
    if not vhosts:
        vhosts.append({"name": f"blackhole:{port}", "domains": ["*"], "routes": [
            {"name": "default", "match": {"prefix": "/"}, "direct_response": {"status": 404}}]})
    return {"@type": common.ROUTE_CONFIGURATION, "name": name, "virtual_hosts": vhosts, "validate_clusters": False}


def _intersect(vs_host: str, vs_namespace: str, server_hosts: list[tuple[str, str]]) -> str | None:
    """The more specific of a VirtualService host and the Gateway server host it falls under (Istio's rule)."""
    vs_host = vs_host if "*" in vs_host or "." in vs_host else policies.resolve_host(vs_host, vs_namespace)
    for namespace, host in server_hosts:
        if namespace not in ("*", vs_namespace):
            continue
        if policies.host_matches(host, vs_host):
            return vs_host
        if policies.host_matches(vs_host, host):
            return host
    return None
