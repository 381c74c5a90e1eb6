"""``networking.istio.io``: the shapes and rules of VirtualService, DestinationRule, Gateway, ServiceEntry,
WorkloadEntry and Sidecar, following Istio's ``pkg/config/validation``.

Rules run only on specs whose shape checked out, so they may read fields by type. The phrases are Istio's
(``weight -1 < 0``, ``total destination weight = 0``, ``gateway must have at least one server``); the
path says where, and the fix says what to write when Istio's phrase alone would leave a learner guessing.
"""

from __future__ import annotations

from typing import Any

from labkit.core.wire import Obj
from labkit.emulator.mesh.validation import common
from labkit.emulator.mesh.validation.common import PORT_RANGE_FIX, port_error
from labkit.emulator.mesh.validation.shapes import (
    BOOL,
    DOUBLE,
    DURATION,
    INT32,
    LABELS,
    STRING,
    STRINGS,
    UINT32,
    UINT64,
    Enum,
    ListOf,
    MapOf,
    Message,
    Problem,
)

# --- shapes (istio.io/api networking/v1) ------------------------------------------------------------------------

STRING_MATCH = Message("StringMatch", {"exact": STRING, "prefix": STRING, "regex": STRING},
                       oneofs=(("exact", "prefix", "regex"),))
PERCENT = Message("Percent", {"value": DOUBLE})
PORT_SELECTOR = Message("PortSelector", {"number": UINT32})
DESTINATION = Message("Destination", {"host": STRING, "subset": STRING, "port": PORT_SELECTOR})
HEADER_OPERATIONS = Message("HeaderOperations", {"set": MapOf(STRING), "add": MapOf(STRING), "remove": STRINGS})
HEADERS = Message("Headers", {"request": HEADER_OPERATIONS, "response": HEADER_OPERATIONS})
WORKLOAD_SELECTOR = Message("WorkloadSelector", {"labels": LABELS})

HTTP_MATCH = Message("HTTPMatchRequest", {
    "name": STRING, "uri": STRING_MATCH, "scheme": STRING_MATCH, "method": STRING_MATCH,
    "authority": STRING_MATCH, "headers": MapOf(STRING_MATCH), "port": UINT32, "sourceLabels": LABELS,
    "gateways": STRINGS, "queryParams": MapOf(STRING_MATCH), "ignoreUriCase": BOOL,
    "withoutHeaders": MapOf(STRING_MATCH), "sourceNamespace": STRING, "statPrefix": STRING})
HTTP_ROUTE_DESTINATION = Message("HTTPRouteDestination", {"destination": DESTINATION, "weight": INT32,
                                                          "headers": HEADERS})
ROUTE_DESTINATION = Message("RouteDestination", {"destination": DESTINATION, "weight": INT32})
HTTP_REDIRECT = Message("HTTPRedirect", {
    "uri": STRING, "authority": STRING, "port": UINT32,
    "derivePort": Enum("HTTPRedirect.RedirectPortSelection", ("FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT")),
    "scheme": STRING, "redirectCode": UINT32})
HTTP_DIRECT_RESPONSE = Message("HTTPDirectResponse", {
    "status": UINT32, "body": Message("HTTPBody", {"string": STRING, "bytes": STRING}, oneofs=(("string", "bytes"),))})
HTTP_REWRITE = Message("HTTPRewrite", {
    "uri": STRING, "authority": STRING,
    "uriRegexRewrite": Message("RegexRewrite", {"match": STRING, "rewrite": STRING})})
HTTP_RETRY = Message("HTTPRetry", {"attempts": INT32, "perTryTimeout": DURATION, "retryOn": STRING,
                                   "retryRemoteLocalities": BOOL, "retryIgnorePreviousHosts": BOOL,
                                   "backoff": DURATION})
HTTP_FAULT = Message("HTTPFaultInjection", {
    "delay": Message("Delay", {"fixedDelay": DURATION, "exponentialDelay": DURATION, "percentage": PERCENT,
                               "percent": INT32}, oneofs=(("fixedDelay", "exponentialDelay"),)),
    "abort": Message("Abort", {"httpStatus": INT32, "grpcStatus": STRING, "http2Error": STRING,
                               "percentage": PERCENT}, oneofs=(("httpStatus", "grpcStatus", "http2Error"),))})
CORS_POLICY = Message("CorsPolicy", {
    "allowOrigins": ListOf(STRING_MATCH), "allowOrigin": STRINGS, "allowMethods": STRINGS, "allowHeaders": STRINGS,
    "exposeHeaders": STRINGS, "maxAge": DURATION, "allowCredentials": BOOL,
    "unmatchedPreflights": Enum("CorsPolicy.UnmatchedPreflights", ("UNSPECIFIED", "FORWARD", "IGNORE"))})
MIRROR = Message("HTTPMirrorPolicy", {"destination": DESTINATION, "percentage": PERCENT})
HTTP_ROUTE = Message("HTTPRoute", {
    "name": STRING, "match": ListOf(HTTP_MATCH), "route": ListOf(HTTP_ROUTE_DESTINATION),
    "redirect": HTTP_REDIRECT, "directResponse": HTTP_DIRECT_RESPONSE,
    "delegate": Message("Delegate", {"name": STRING, "namespace": STRING}), "rewrite": HTTP_REWRITE,
    "timeout": DURATION, "retries": HTTP_RETRY, "fault": HTTP_FAULT, "mirror": DESTINATION,
    "mirrors": ListOf(MIRROR), "mirrorPercentage": PERCENT, "mirrorPercent": UINT32, "corsPolicy": CORS_POLICY,
    "headers": HEADERS})
TLS_MATCH = Message("TLSMatchAttributes", {"sniHosts": STRINGS, "destinationSubnets": STRINGS, "port": UINT32,
                                           "sourceLabels": LABELS, "gateways": STRINGS, "sourceNamespace": STRING})
L4_MATCH = Message("L4MatchAttributes", {"destinationSubnets": STRINGS, "port": UINT32, "sourceSubnet": STRING,
                                         "sourceLabels": LABELS, "gateways": STRINGS, "sourceNamespace": STRING})
VIRTUAL_SERVICE = Message("VirtualService", {
    "hosts": STRINGS, "gateways": STRINGS, "http": ListOf(HTTP_ROUTE),
    "tls": ListOf(Message("TLSRoute", {"match": ListOf(TLS_MATCH), "route": ListOf(ROUTE_DESTINATION)})),
    "tcp": ListOf(Message("TCPRoute", {"match": ListOf(L4_MATCH), "route": ListOf(ROUTE_DESTINATION)})),
    "exportTo": STRINGS})

TLS_MODE = Enum("ClientTLSSettings.TLSmode", ("DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"))
CLIENT_TLS = Message("ClientTLSSettings", {
    "mode": TLS_MODE, "clientCertificate": STRING, "privateKey": STRING, "caCertificates": STRING,
    "credentialName": STRING, "subjectAltNames": STRINGS, "sni": STRING, "insecureSkipVerify": BOOL,
    "caCrl": STRING})
LOCALITY_LB = Message("LocalityLoadBalancerSetting", {
    "distribute": ListOf(Message("Distribute", {"from": STRING, "to": MapOf(UINT32)})),
    "failover": ListOf(Message("Failover", {"from": STRING, "to": STRING})),
    "failoverPriority": STRINGS, "enabled": BOOL})
LOAD_BALANCER = Message("LoadBalancerSettings", {
    "simple": Enum("LoadBalancerSettings.SimpleLB",
                   ("UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST")),
    "consistentHash": Message("ConsistentHashLB", {
        "httpHeaderName": STRING,
        "httpCookie": Message("HTTPCookie", {"name": STRING, "path": STRING, "ttl": DURATION}),
        "useSourceIp": BOOL, "httpQueryParameterName": STRING,
        "ringHash": Message("RingHash", {"minimumRingSize": UINT64}),
        "maglev": Message("MagLev", {"tableSize": UINT64}), "minimumRingSize": UINT64},
        oneofs=(("httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName"),
                ("ringHash", "maglev"))),
    "localityLbSetting": LOCALITY_LB, "warmupDurationSecs": DURATION},
    oneofs=(("simple", "consistentHash"),))
CONNECTION_POOL = Message("ConnectionPoolSettings", {
    "tcp": Message("TCPSettings", {
        "maxConnections": INT32, "connectTimeout": DURATION,
        "tcpKeepalive": Message("TcpKeepalive", {"probes": UINT32, "time": DURATION, "interval": DURATION}),
        "maxConnectionDuration": DURATION, "idleTimeout": DURATION}),
    "http": Message("HTTPSettings", {
        "http1MaxPendingRequests": INT32, "http2MaxRequests": INT32, "maxRequestsPerConnection": INT32,
        "maxRetries": INT32, "idleTimeout": DURATION,
        "h2UpgradePolicy": Enum("HTTPSettings.H2UpgradePolicy", ("DEFAULT", "DO_NOT_UPGRADE", "UPGRADE")),
        "useClientProtocol": BOOL, "maxConcurrentStreams": INT32})})
OUTLIER_DETECTION = Message("OutlierDetection", {
    "splitExternalLocalOriginErrors": BOOL, "consecutiveLocalOriginFailures": UINT32,
    "consecutiveGatewayErrors": UINT32, "consecutive5xxErrors": UINT32, "interval": DURATION,
    "baseEjectionTime": DURATION, "maxEjectionPercent": INT32, "minHealthPercent": INT32,
    "consecutiveErrors": INT32})
_POLICY_FIELDS = {"loadBalancer": LOAD_BALANCER, "connectionPool": CONNECTION_POOL,
                  "outlierDetection": OUTLIER_DETECTION, "tls": CLIENT_TLS}
PORT_TRAFFIC_POLICY = Message("PortTrafficPolicy", {"port": PORT_SELECTOR, **_POLICY_FIELDS})
TRAFFIC_POLICY = Message("TrafficPolicy", {
    **_POLICY_FIELDS, "portLevelSettings": ListOf(PORT_TRAFFIC_POLICY),
    "tunnel": Message("TunnelSettings", {"protocol": STRING, "targetHost": STRING, "targetPort": UINT32}),
    "proxyProtocol": Message("ProxyProtocol", {"version": Enum("ProxyProtocol.VERSION", ("V1", "V2"))})})
DESTINATION_RULE = Message("DestinationRule", {
    "host": STRING, "trafficPolicy": TRAFFIC_POLICY,
    "subsets": ListOf(Message("Subset", {"name": STRING, "labels": LABELS, "trafficPolicy": TRAFFIC_POLICY})),
    "exportTo": STRINGS, "workloadSelector": WORKLOAD_SELECTOR})

SERVER_TLS_MODE = Enum("ServerTLSSettings.TLSmode", ("PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH",
                                                     "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"))
TLS_VERSION = Enum("ServerTLSSettings.TLSProtocol", ("TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"))
SERVER_TLS = Message("ServerTLSSettings", {
    "httpsRedirect": BOOL, "mode": SERVER_TLS_MODE, "serverCertificate": STRING, "privateKey": STRING,
    "caCertificates": STRING, "caCrl": STRING, "credentialName": STRING, "credentialNames": STRINGS,
    "tlsCertificates": ListOf(Message("TLSCertificate", {"serverCertificate": STRING, "privateKey": STRING,
                                                         "caCertificates": STRING})),
    "subjectAltNames": STRINGS, "verifyCertificateSpki": STRINGS, "verifyCertificateHash": STRINGS,
    "minProtocolVersion": TLS_VERSION, "maxProtocolVersion": TLS_VERSION, "cipherSuites": STRINGS})
PORT = Message("Port", {"number": UINT32, "protocol": STRING, "name": STRING, "targetPort": UINT32})
GATEWAY = Message("Gateway", {
    "servers": ListOf(Message("Server", {"port": PORT, "bind": STRING, "hosts": STRINGS, "tls": SERVER_TLS,
                                         "defaultEndpoint": STRING, "name": STRING})),
    "selector": LABELS})

WORKLOAD_ENTRY = Message("WorkloadEntry", {
    "address": STRING, "ports": MapOf(UINT32), "labels": LABELS, "network": STRING, "locality": STRING,
    "weight": UINT32, "serviceAccount": STRING})
SERVICE_ENTRY = Message("ServiceEntry", {
    "hosts": STRINGS, "addresses": STRINGS, "ports": ListOf(PORT),
    "location": Enum("ServiceEntry.Location", ("MESH_EXTERNAL", "MESH_INTERNAL")),
    "resolution": Enum("ServiceEntry.Resolution", ("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS")),
    "endpoints": ListOf(WORKLOAD_ENTRY), "workloadSelector": WORKLOAD_SELECTOR, "exportTo": STRINGS,
    "subjectAltNames": STRINGS})

CAPTURE_MODE = Enum("CaptureMode", ("DEFAULT", "IPTABLES", "NONE"))
SIDECAR = Message("Sidecar", {
    "workloadSelector": WORKLOAD_SELECTOR,
    "ingress": ListOf(Message("IstioIngressListener", {
        "port": PORT, "bind": STRING, "captureMode": CAPTURE_MODE, "defaultEndpoint": STRING, "tls": SERVER_TLS,
        "connectionPool": CONNECTION_POOL})),
    "egress": ListOf(Message("IstioEgressListener", {"port": PORT, "bind": STRING, "captureMode": CAPTURE_MODE,
                                                     "hosts": STRINGS})),
    "outboundTrafficPolicy": Message("OutboundTrafficPolicy", {
        "mode": Enum("OutboundTrafficPolicy.Mode", ("REGISTRY_ONLY", "ALLOW_ANY")), "egressProxy": DESTINATION}),
    "inboundConnectionPool": CONNECTION_POOL})

SHAPES = {"VirtualService": VIRTUAL_SERVICE, "DestinationRule": DESTINATION_RULE, "Gateway": GATEWAY,
          "ServiceEntry": SERVICE_ENTRY, "WorkloadEntry": WORKLOAD_ENTRY, "Sidecar": SIDECAR}


# --- rules ----------------------------------------------------------------------------------------------------------


def _problem(path: str, message: str | None, fix: str = "") -> list[Problem]:
    return [Problem(path, message, fix)] if message else []


def _protocol_problems(protocol: Any, path: str) -> list[Problem]:
    if str(protocol or "").upper() in common.PROTOCOLS:
        return []
    return [Problem(path, f'invalid protocol "{protocol or ""}", supported protocols are HTTP, HTTP2, GRPC, '
                          f"GRPC-WEB, MONGO, REDIS, MYSQL, TCP", "HTTPS and TLS are valid too")]


def _destination_problems(destination: Obj | None, path: str) -> list[Problem]:
    if not destination:
        return []
    problems = []
    host = str(destination.get("host") or "")
    if host == "*":
        problems += _problem(f"{path}.host", f"invalid destination host {host}", "name one service")
    else:
        problems += _problem(f"{path}.host", common.wildcard_domain_error(host),
                             "name a service: helloworld, helloworld.sample or a fully qualified host")
    subset = destination.get("subset")
    if subset is not None and not common.is_dns1123_label(str(subset)):
        problems.append(Problem(f"{path}.subset", f"subset name is invalid: {subset}"))
    number = (destination.get("port") or {}).get("number")
    if number is not None:
        problems += _problem(f"{path}.port.number", port_error(number), PORT_RANGE_FIX)
    return problems


def _weights_problems(routes: list[Obj], path: str) -> list[Problem]:
    problems = []
    total = 0
    for index, route in enumerate(routes):
        where = f"{path}[{index}]"
        if not route.get("destination"):
            problems.append(Problem(f"{where}.destination", "destination is required"))
        problems += _destination_problems(route.get("destination"), f"{where}.destination")
        weight = int(route.get("weight") or 0)
        if weight < 0:
            problems.append(Problem(f"{where}.weight", f"weight {weight} < 0", "weights are relative shares >= 0"))
        total += weight
    if len(routes) > 1 and total == 0:
        problems.append(Problem(path, "total destination weight = 0",
                                "give each destination a weight, e.g. 50 and 50"))
    return problems


def _gateway_names_problems(names: list[Any] | None, path: str) -> list[Problem]:
    problems = []
    for index, name in enumerate(names or ()):
        namespace, slash, gateway = str(name).partition("/")
        where = f"{path}[{index}]"
        if not slash:
            problems += _problem(where, common.fqdn_error(str(name)))
            continue
        if not namespace or not gateway:
            problems.append(Problem(where, "config namespace and gateway name cannot be empty"))
        elif not common.is_dns1123_label(namespace):
            problems.append(Problem(where, f'invalid value for namespace: "{namespace}"'))
        elif not common.is_dns1123_label(gateway):
            problems.append(Problem(where, f'invalid value for gateway name: "{gateway}"'))
    return problems


def _http_route_problems(http: Obj, path: str, delegate: bool) -> list[Problem]:
    problems: list[Problem] = []
    routes = http.get("route") or []
    if http.get("delegate") is None:
        if http.get("redirect") is not None:
            if routes:
                problems.append(Problem(path, "HTTP route cannot contain both route and redirect"))
            if http.get("fault") is not None:
                problems.append(Problem(path, "HTTP route cannot contain both fault and redirect"))
            if http.get("directResponse") is not None:
                problems.append(Problem(path, "HTTP route rule cannot contain both direct_response and redirect"))
        elif http.get("directResponse") is not None:
            if routes:
                problems.append(Problem(path, "HTTP route cannot contain both route and direct_response"))
        elif not routes:
            problems.append(Problem(path, "HTTP route, redirect or direct_response is required",
                                    "add route: [{destination: {host: …}}]"))
    elif routes or http.get("redirect") is not None:
        problems.append(Problem(path, f"root HTTP route {http.get('name', '')} must not specify route or redirect"))
    if delegate and http.get("delegate") is not None:
        problems.append(Problem(path, "delegate HTTP route cannot contain delegate"))
    for index, match in enumerate(http.get("match") or ()):
        where = f"{path}.match[{index}]"
        if match.get("port") is not None:
            problems += _problem(f"{where}.port", port_error(match["port"]), PORT_RANGE_FIX)
        problems += common.labels_problems(match.get("sourceLabels"), f"{where}.sourceLabels")
        problems += _gateway_names_problems(match.get("gateways"), f"{where}.gateways")
        for name in ("uri", "scheme", "method", "authority"):
            if (match.get(name) or {}).get("prefix") == "":
                problems.append(Problem(f"{where}.{name}", f'"{name}": prefix string match should not be empty',
                                        'use prefix: "/" to match everything'))
    problems += _weights_problems(routes, f"{path}.route")
    if http.get("timeout") is not None:
        problems += common.duration_problems(http["timeout"], f"{path}.timeout")
    retries = http.get("retries")
    if retries is not None:
        attempts = int(retries.get("attempts") or 0)
        if attempts < 0:
            problems.append(Problem(f"{path}.retries.attempts", "attempts cannot be negative"))
        if attempts == 0 and (retries.get("perTryTimeout") or retries.get("retryOn")):
            problems.append(Problem(f"{path}.retries", "http retry policy configured when attempts are set to 0 "
                                                       "(disabled)", "set attempts above 0 or remove the policy"))
        if retries.get("perTryTimeout") is not None:
            problems += common.duration_problems(retries["perTryTimeout"], f"{path}.retries.perTryTimeout")
    fault = http.get("fault")
    if fault is not None:
        if not fault.get("delay") and not fault.get("abort"):
            problems.append(Problem(f"{path}.fault", "HTTP fault injection must have an abort and/or a delay"))
        abort = fault.get("abort") or {}
        status = abort.get("httpStatus")
        if status is not None and not 200 <= int(status) <= 599:
            problems.append(Problem(f"{path}.fault.abort.httpStatus", "http status must be in range 200..599"))
        for part in ("delay", "abort"):
            percentage = ((fault.get(part) or {}).get("percentage") or {}).get("value")
            if percentage is not None and not 0 <= float(percentage) <= 100:
                problems.append(Problem(f"{path}.fault.{part}.percentage.value",
                                        f"percentage {percentage} is neither 0.0, nor in range [0.0001, 100.0]"))
    problems += _destination_problems(http.get("mirror"), f"{path}.mirror")
    direct = http.get("directResponse")
    if direct is not None:
        status = direct.get("status")
        if status is None or not 200 <= int(status) <= 599:
            problems.append(Problem(f"{path}.directResponse.status", "status must be in the range 200 - 599"))
    redirect = http.get("redirect")
    if redirect is not None:
        if not redirect.get("uri") and not redirect.get("authority") and not redirect.get("scheme") \
                and not redirect.get("port") and not redirect.get("derivePort"):
            problems.append(Problem(f"{path}.redirect", "redirect must specify URI, authority, scheme, or port"))
        code = redirect.get("redirectCode")
        if code is not None and int(code) not in (301, 302, 303, 307, 308):
            problems.append(Problem(f"{path}.redirect.redirectCode", f"{code} is not a valid redirect code, must be "
                                                                     "3xx"))
    return problems


def virtual_service(spec: Obj, namespace: str) -> list[Problem]:
    """Istio's ``ValidateVirtualService``."""
    problems: list[Problem] = []
    hosts = [str(h) for h in spec.get("hosts") or ()]
    gateways = [str(g) for g in spec.get("gateways") or ()]
    delegate = not hosts
    if delegate and (gateways or spec.get("tls") or spec.get("tcp")):
        problems.append(Problem("spec.hosts", "delegate virtual service must have no gateways, tls or tcp routes",
                                "list the hosts this VirtualService routes"))
    problems += _gateway_names_problems(gateways, "spec.gateways")
    applies_to_mesh = not gateways or "mesh" in gateways
    for index, host in enumerate(hosts):
        where = f"spec.hosts[{index}]"
        error = common.wildcard_domain_error(host)
        if error and common.ip_error(host) is None:
            error = None
        if error:
            problems.append(Problem(where, error, "use a service name (helloworld), helloworld.sample or an FQDN"))
        elif host == "*" and applies_to_mesh:
            problems.append(Problem(where, "wildcard host * is not allowed for virtual services bound to the mesh "
                                           "gateway", "name the service, or bind the VirtualService to a Gateway"))
    for i, first in enumerate(hosts):
        for second in hosts[i + 1:]:
            if first == second:
                problems.append(Problem("spec.hosts", f"duplicate hosts in virtual service: {first} & {second}"))
    if not spec.get("http") and not spec.get("tcp") and not spec.get("tls"):
        problems.append(Problem("spec", "http, tcp or tls must be provided in virtual service",
                                "add an http: list of routes"))
    for index, http in enumerate(spec.get("http") or ()):
        problems += _http_route_problems(http, f"spec.http[{index}]", delegate)
    for index, tls in enumerate(spec.get("tls") or ()):
        where = f"spec.tls[{index}]"
        matches = tls.get("match") or []
        if not matches:
            problems.append(Problem(where, "TLS route must have at least one match condition",
                                    'add match: [{sniHosts: ["…"]}]'))
        for m_index, match in enumerate(matches):
            if not match.get("sniHosts"):
                problems.append(Problem(f"{where}.match[{m_index}].sniHosts",
                                        "TLS match must have at least one SNI host"))
            if match.get("port") is not None:
                problems += _problem(f"{where}.match[{m_index}].port", port_error(match["port"]), PORT_RANGE_FIX)
        if not tls.get("route"):
            problems.append(Problem(where, "TLS route is required"))
        problems += _weights_problems(tls.get("route") or [], f"{where}.route")
    for index, tcp in enumerate(spec.get("tcp") or ()):
        where = f"spec.tcp[{index}]"
        for m_index, match in enumerate(tcp.get("match") or ()):
            if match.get("port") is not None:
                problems += _problem(f"{where}.match[{m_index}].port", port_error(match["port"]), PORT_RANGE_FIX)
        if not tcp.get("route"):
            problems.append(Problem(where, "TCP route is required"))
        problems += _weights_problems(tcp.get("route") or [], f"{where}.route")
    problems += common.export_to_problems(namespace, spec.get("exportTo"), "spec.exportTo")
    return problems


def _client_tls_problems(tls: Obj | None, path: str) -> list[Problem]:
    if not tls:
        return []
    problems = []
    mode = tls.get("mode")
    if mode == "ISTIO_MUTUAL":
        for name in ("clientCertificate", "privateKey", "caCertificates", "credentialName"):
            if tls.get(name):
                problems.append(Problem(f"{path}.{name}", f"ISTIO_MUTUAL TLS cannot have associated {name}",
                                        "istiod provides the mesh certificates; remove it"))
    if mode in ("SIMPLE", "MUTUAL") and tls.get("credentialName"):
        if tls.get("clientCertificate") or tls.get("caCertificates") or tls.get("privateKey"):
            problems.append(Problem(path, "cannot specify client certificates or CA certificate If credentialName "
                                          "is set"))
    elif mode == "MUTUAL":
        if not tls.get("clientCertificate"):
            problems.append(Problem(f"{path}.clientCertificate", "client certificate required for mutual tls"))
        if not tls.get("privateKey"):
            problems.append(Problem(f"{path}.privateKey", "private key required for mutual tls"))
    return problems


def _traffic_policy_problems(policy: Obj | None, path: str, *, port_level: bool = False) -> list[Problem]:
    if policy is None:
        return []
    problems: list[Problem] = []
    shape = PORT_TRAFFIC_POLICY if port_level else TRAFFIC_POLICY
    if not any(policy.get(name) is not None for name in shape.fields if name != "port"):
        phrase = "port traffic policy must have at least one field" if port_level else \
            "traffic policy must have at least one field"
        problems.append(Problem(path, phrase, "set loadBalancer, connectionPool, outlierDetection or tls"))
    pool = policy.get("connectionPool")
    if pool is not None:
        if pool.get("tcp") is None and pool.get("http") is None:
            problems.append(Problem(f"{path}.connectionPool", "connection pool must have at least one field"))
        for section, names in (("http", ("http1MaxPendingRequests", "http2MaxRequests", "maxRequestsPerConnection",
                                         "maxRetries", "maxConcurrentStreams")), ("tcp", ("maxConnections",))):
            for name in names:
                value = (pool.get(section) or {}).get(name)
                if value is not None and int(value) < 0:
                    problems.append(Problem(f"{path}.connectionPool.{section}.{name}", f"{name} must be non-negative"))
        for section, name in (("tcp", "connectTimeout"), ("http", "idleTimeout"), ("tcp", "maxConnectionDuration")):
            value = (pool.get(section) or {}).get(name)
            if value is not None:
                problems += common.duration_problems(value, f"{path}.connectionPool.{section}.{name}")
    outlier = policy.get("outlierDetection")
    if outlier is not None:
        for name in ("interval", "baseEjectionTime"):
            if outlier.get(name) is not None:
                problems += common.duration_problems(outlier[name], f"{path}.outlierDetection.{name}")
        for name in ("maxEjectionPercent", "minHealthPercent"):
            value = outlier.get(name)
            if value is not None and not 0 <= int(value) <= 100:
                problems.append(Problem(f"{path}.outlierDetection.{name}",
                                        f"percentage {value} is not in range 0..100"))
        if not outlier.get("splitExternalLocalOriginErrors") and int(outlier.get("consecutiveLocalOriginFailures")
                                                                     or 0) > 0:
            problems.append(Problem(f"{path}.outlierDetection", "outlier detection consecutive local origin failures "
                                                                "is specified, but split external local origin "
                                                                "errors is set to false"))
    problems += _client_tls_problems(policy.get("tls"), f"{path}.tls")
    for index, level in enumerate(policy.get("portLevelSettings") or ()):
        where = f"{path}.portLevelSettings[{index}]"
        if (level.get("port") or {}).get("number") is None:
            problems.append(Problem(f"{where}.port", "portTrafficPolicy must have valid port"))
        else:
            problems += _problem(f"{where}.port.number", port_error(level["port"]["number"]), PORT_RANGE_FIX)
        problems += _traffic_policy_problems(level, where, port_level=True)
    return problems


def destination_rule(spec: Obj, namespace: str) -> list[Problem]:
    """Istio's ``ValidateDestinationRule``."""
    problems = _problem("spec.host", common.wildcard_domain_error(str(spec.get("host") or "")),
                        "name the service the rule is for, e.g. helloworld.sample.svc.cluster.local")
    problems += _traffic_policy_problems(spec.get("trafficPolicy"), "spec.trafficPolicy")
    seen: set[str] = set()
    for index, subset in enumerate(spec.get("subsets") or ()):
        where = f"spec.subsets[{index}]"
        name = str(subset.get("name") or "")
        if not name:
            problems.append(Problem(f"{where}.name", "subset name cannot be empty"))
        elif not common.is_dns1123_label(name):
            problems.append(Problem(f"{where}.name", f"subset name is invalid: {name}"))
        if name in seen:
            problems.append(Problem(f"{where}.name", f"duplicate subset names: {name}"))
        seen.add(name)
        problems += common.labels_problems(subset.get("labels"), f"{where}.labels")
        problems += _traffic_policy_problems(subset.get("trafficPolicy"), f"{where}.trafficPolicy")
    problems += common.export_to_problems(namespace, spec.get("exportTo"), "spec.exportTo")
    return problems


def _server_host_problems(entry: str, path: str) -> list[Problem]:
    namespace, slash, host = entry.partition("/")
    if not slash:
        host, namespace = entry, ""
    problems = []
    if slash and namespace not in ("*", ".", "~") and not common.is_dns1123_label(namespace):
        problems.append(Problem(path, f'invalid namespace value "{namespace}" in host "{entry}"',
                                "write <namespace>/<host>, ./<host> or */<host>"))
    if host != "*" and common.wildcard_domain_error(host):
        problems.append(Problem(path, str(common.wildcard_domain_error(host))))
    return problems


def _server_tls_problems(tls: Obj | None, path: str) -> list[Problem]:
    if not tls:
        return []
    mode = tls.get("mode")
    problems = []
    if mode == "ISTIO_MUTUAL":
        for name in ("serverCertificate", "privateKey", "caCertificates", "credentialName"):
            if tls.get(name):
                problems.append(Problem(f"{path}.{name}", f"ISTIO_MUTUAL TLS cannot have associated {name}"))
    if mode in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL") and not tls.get("credentialName") \
            and not tls.get("credentialNames") and not tls.get("tlsCertificates"):
        prefix = "SIMPLE TLS" if mode == "SIMPLE" else "MUTUAL TLS"
        if not tls.get("serverCertificate"):
            problems.append(Problem(f"{path}.serverCertificate", f"{prefix} requires a server certificate",
                                    "or name a Secret in credentialName"))
        if not tls.get("privateKey"):
            problems.append(Problem(f"{path}.privateKey", f"{prefix} requires a private key"))
        if prefix == "MUTUAL TLS" and not tls.get("caCertificates"):
            problems.append(Problem(f"{path}.caCertificates", "MUTUAL TLS requires a client CA bundle"))
    return problems


def gateway(spec: Obj, namespace: str) -> list[Problem]:
    """Istio's ``ValidateGateway``."""
    servers = spec.get("servers") or []
    if not servers:
        return [Problem("spec.servers", "gateway must have at least one server",
                        "add a server with port, hosts (and tls for HTTPS/TLS ports)")]
    problems: list[Problem] = []
    names: set[str] = set()
    for index, server in enumerate(servers):
        where = f"spec.servers[{index}]"
        hosts = server.get("hosts") or []
        if not hosts:
            problems.append(Problem(f"{where}.hosts", "server config must contain at least one host",
                                    'e.g. hosts: ["*"]'))
        for h_index, host in enumerate(hosts):
            problems += _server_host_problems(str(host), f"{where}.hosts[{h_index}]")
        port = server.get("port")
        if port is None:
            problems.append(Problem(f"{where}.port", "port is required"))
            continue
        problems += _protocol_problems(port.get("protocol"), f"{where}.port.protocol")
        problems += _problem(f"{where}.port.number", port_error(port.get("number", 0)), PORT_RANGE_FIX)
        if port.get("targetPort"):
            problems.append(Problem(f"{where}.port.targetPort", "targetPort has no impact on Gateways",
                                    "remove it; the Gateway's Service maps ports"))
        name = str(port.get("name") or "")
        if not name:
            problems.append(Problem(f"{where}.port.name", "port name must be set", "e.g. name: tls"))
        elif name in names:
            problems.append(Problem(f"{where}.port.name",
                                    f"port names in servers must be unique: duplicate name {name}"))
        names.add(name)
        protocol = str(port.get("protocol") or "").upper()
        tls = server.get("tls")
        if protocol in ("HTTPS", "TLS") and tls is None:
            problems.append(Problem(f"{where}.tls", "server must have TLS settings for HTTPS/TLS protocols",
                                    "add tls: {mode: …}"))
        elif protocol in common.PROTOCOLS and protocol not in ("HTTPS", "TLS") and tls is not None:
            only_redirect = set(tls) <= {"httpsRedirect"}
            if protocol.startswith("HTTP") and not only_redirect:
                problems.append(Problem(f"{where}.tls", "server cannot have TLS settings for plain text HTTP ports"))
            elif not protocol.startswith("HTTP"):
                problems.append(Problem(f"{where}.tls", "server cannot have TLS settings for non HTTPS/TLS ports"))
        problems += _server_tls_problems(tls, f"{where}.tls")
    return problems


def _workload_entry_problems(entry: Obj, path: str, service_ports: set[str] | None, *,
                             allow_fqdn: bool) -> list[Problem]:
    problems = []
    address = str(entry.get("address") or "")
    if not address:
        if not entry.get("network"):
            return [Problem(f"{path}.address", "address is required", "the workload's IP address or DNS name")]
    elif common.ip_error(address) and not address.startswith("unix://"):
        if not allow_fqdn:
            problems.append(Problem(f"{path}.address", f'endpoint address "{address}" is not a valid IP address'))
        elif common.fqdn_error(address):
            problems.append(Problem(f"{path}.address",
                                    f'endpoint address "{address}" is not a valid FQDN or an IP address'))
    for name, port in (entry.get("ports") or {}).items():
        if service_ports is not None and name not in service_ports:
            problems.append(Problem(f"{path}.ports[{name}]", f"endpoint port {port} is not defined by the service "
                                                             "entry", "name a port of spec.ports"))
        problems += _problem(f"{path}.ports[{name}]", port_error(port), PORT_RANGE_FIX)
    problems += common.labels_problems(entry.get("labels"), f"{path}.labels")
    return problems


def workload_entry(spec: Obj, namespace: str) -> list[Problem]:
    """Istio's ``ValidateWorkloadEntry``."""
    return _workload_entry_problems(spec, "spec", None, allow_fqdn=True)


def service_entry(spec: Obj, namespace: str) -> list[Problem]:
    """Istio's ``ValidateServiceEntry``."""
    problems: list[Problem] = []
    hosts = [str(h) for h in spec.get("hosts") or ()]
    if not hosts:
        problems.append(Problem("spec.hosts", "service entry must have at least one host"))
    for index, host in enumerate(hosts):
        if host == "*":
            problems.append(Problem(f"spec.hosts[{index}]", f"invalid host {host}"))
        else:
            problems += _problem(f"spec.hosts[{index}]", common.wildcard_domain_error(host))
    addresses = [str(a) for a in spec.get("addresses") or ()]
    for index, address in enumerate(addresses):
        problems += _problem(f"spec.addresses[{index}]", common.subnet_error(address))
    resolution = spec.get("resolution") or "NONE"
    if any("/" in a for a in addresses) and resolution not in ("NONE", "STATIC"):
        problems.append(Problem("spec.addresses", "CIDR addresses are allowed only for NONE/STATIC resolution types"))
    if spec.get("workloadSelector") is not None and spec.get("endpoints") is not None:
        problems.append(Problem("spec", "only one of WorkloadSelector or Endpoints is allowed in Service Entry"))
    names: set[str] = set()
    numbers: set[int] = set()
    for index, port in enumerate(spec.get("ports") or ()):
        where = f"spec.ports[{index}]"
        name, number = str(port.get("name") or ""), port.get("number", 0)
        if name in names:
            problems.append(Problem(f"{where}.name", f'service entry port name "{name}" already defined'))
        if number in numbers:
            problems.append(Problem(f"{where}.number", f"service entry port {number} already defined"))
        names.add(name)
        numbers.add(number)
        if not name:
            problems.append(Problem(f"{where}.name", f'invalid port name: "{name}"', "e.g. name: http"))
        problems += _protocol_problems(port.get("protocol"), f"{where}.protocol")
        problems += _problem(f"{where}.number", port_error(number), PORT_RANGE_FIX)
        if port.get("targetPort"):
            problems += _problem(f"{where}.targetPort", port_error(port["targetPort"]), PORT_RANGE_FIX)
    endpoints = spec.get("endpoints") or []
    if resolution == "NONE" and endpoints:
        problems.append(Problem("spec.endpoints", "no endpoints should be provided for resolution type none",
                                "set resolution: STATIC (or DNS) to use endpoints"))
    for index, endpoint in enumerate(endpoints):
        problems += _workload_entry_problems(endpoint, f"spec.endpoints[{index}]", names,
                                             allow_fqdn=resolution != "STATIC")
    if resolution in ("DNS", "DNS_ROUND_ROBIN") and not endpoints:
        for index, host in enumerate(hosts):
            error = common.fqdn_error(host.removeprefix("*."))
            if error:
                problems.append(Problem(f"spec.hosts[{index}]", "hosts must be FQDN or contain only prefix wildcards "
                                                                f"if no endpoints are provided for resolution mode "
                                                                f"{resolution}, {error}"))
                break
    problems += common.export_to_problems(namespace, spec.get("exportTo"), "spec.exportTo", service_entry=True)
    return problems


def sidecar(spec: Obj, namespace: str) -> list[Problem]:
    """Istio's ``ValidateSidecar`` (the parts the labs meet)."""
    problems: list[Problem] = []
    selector = spec.get("workloadSelector")
    if selector is not None:
        labels = selector.get("labels") or {}
        if not labels:
            problems.append(Problem("spec.workloadSelector.labels", "sidecar: workloadSelector labels cannot be "
                                                                    "empty"))
        problems += common.labels_problems(labels, "spec.workloadSelector.labels")
    egress = spec.get("egress") or []
    if not egress and not spec.get("ingress") and spec.get("outboundTrafficPolicy") is None \
            and spec.get("inboundConnectionPool") is None:
        problems.append(Problem("spec", "sidecar: empty configuration provided"))
    for index, listener in enumerate(egress):
        where = f"spec.egress[{index}]"
        hosts = listener.get("hosts") or []
        if not hosts:
            problems.append(Problem(f"{where}.hosts", "sidecar: egress listener must contain at least one host",
                                    'e.g. hosts: ["./*", "istio-system/*"]'))
        for h_index, host in enumerate(hosts):
            entry = str(host)
            if "/" not in entry:
                problems.append(Problem(f"{where}.hosts[{h_index}]", f"sidecar: host must be of form "
                                                                     f"namespace/dnsName, found {entry!r}",
                                        f"write ./{entry} or */{entry}"))
            else:
                problems += _server_host_problems(entry, f"{where}.hosts[{h_index}]")
        port = listener.get("port")
        if port is not None:
            problems += _protocol_problems(port.get("protocol"), f"{where}.port.protocol")
            problems += _problem(f"{where}.port.number", port_error(port.get("number", 0)), PORT_RANGE_FIX)
    for index, listener in enumerate(spec.get("ingress") or ()):
        where = f"spec.ingress[{index}]"
        port = listener.get("port")
        if port is None:
            problems.append(Problem(f"{where}.port", "sidecar: port is required for ingress listeners"))
        else:
            problems += _protocol_problems(port.get("protocol"), f"{where}.port.protocol")
            problems += _problem(f"{where}.port.number", port_error(port.get("number", 0)), PORT_RANGE_FIX)
    return problems


RULES = {"VirtualService": virtual_service, "DestinationRule": destination_rule, "Gateway": gateway,
         "ServiceEntry": service_entry, "WorkloadEntry": workload_entry, "Sidecar": sidecar}
