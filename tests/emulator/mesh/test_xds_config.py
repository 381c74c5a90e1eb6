"""xDS builders under Istio config: DestinationRule subsets, TLS modes, load balancing and outlier detection;
VirtualService weights, matches and retries; ServiceEntries; ingress Gateways (HTTP, SIMPLE, ISTIO_MUTUAL,
PASSTHROUGH); SDS secrets for one and several trust domains. The richest proxies are validated by the real Envoy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from envoy_check import envoy_validate

from labkit.emulator.mesh.model import (
    ConfigObject,
    Endpoint,
    MeshConfig,
    MeshSnapshot,
    Proxy,
    Service,
    ServicePort,
)
from labkit.emulator.mesh.xds import (
    ProxyCredential,
    build_clusters,
    build_endpoints,
    build_listeners,
    build_routes,
    build_secrets,
    generate,
)
from labkit.pki import CertificateAuthority

HELLO = "helloworld.sample.svc.cluster.local"
SA = "spiffe://cluster.local/ns/sample/sa/default"
SE_HOST = "svc-2.bar.global"


def _endpoint(version: str, index: int) -> Endpoint:
    return Endpoint(address=f"127.1.0.{index}", port=5000, service_port="http",
                    labels={"app": "helloworld", "version": version}, service_account=SA, network="network1",
                    cluster="cluster1", locality="region1/zone1/", tls_mode="istio",
                    workload=f"sample/helloworld-{version}")


HELLOWORLD = Service(HELLO, "sample", "helloworld", (ServicePort("http", 5000, "HTTP"),),
                     addresses={"cluster1": "127.1.128.5"},
                     endpoints=(_endpoint("v1", 10), _endpoint("v2", 12)))
# As istiod would condense ServiceEntry svc-2.bar.global (addresses 240.0.0.2, port 8000 http1, MESH_INTERNAL,
# resolution STATIC, endpoint = the other cluster's gateway :15443).
SERVICE_ENTRY = Service(SE_HOST, "sample", "", (ServicePort("http1", 8000, "HTTP"),), addresses={"": "240.0.0.2"},
                        endpoints=(Endpoint("127.2.255.1", 15443, "http1", tls_mode="istio"),))
EXTERNAL = Service("api.example.com", "sample", "", (ServicePort("https", 443, "TLS"), ServicePort("http", 80, "HTTP")),
                   resolution="DNS", mesh_external=True)
HEADLESS = Service("remote-nginx.sample.svc.cluster.local", "sample", "remote-nginx",
                   (ServicePort("http", 8443, "HTTP"),), resolution="PASSTHROUGH",
                   endpoints=(Endpoint("127.9.0.1", 8443, "http"),))


def snapshot(*configs: ConfigObject, services: Sequence[Service] = (HELLOWORLD, SERVICE_ENTRY, EXTERNAL, HEADLESS),
             mesh: MeshConfig | None = None) -> MeshSnapshot:
    return MeshSnapshot(mesh=mesh or MeshConfig(), services=tuple(services), configs=configs)


SLEEP = Proxy(id="sidecar~127.1.0.11~sleep.sample~sample.svc.cluster.local", type="sidecar", name="sleep",
              namespace="sample", ip="127.1.0.11", app_address="127.1.64.11", labels={"app": "sleep"},
              cluster="cluster1", network="network1", locality="region1/zone1/")
INGRESS = Proxy(id="router~127.1.0.30~istio-ingressgateway.istio-system~istio-system.svc.cluster.local",
                type="router", name="istio-ingressgateway", namespace="istio-system", ip="127.1.0.30",
                labels={"istio": "ingressgateway"}, cluster="cluster1", network="network1")


def by_name(resources: Sequence[Mapping[str, Any]], key: str = "name") -> dict[str, Mapping[str, Any]]:
    return {r[key]: r for r in resources}


def dr(spec: Mapping[str, Any], name: str = "helloworld", namespace: str = "sample") -> ConfigObject:
    return ConfigObject("DestinationRule", namespace, name, {"host": "helloworld", **spec})


def vs(spec: Mapping[str, Any], name: str = "helloworld", namespace: str = "sample") -> ConfigObject:
    return ConfigObject("VirtualService", namespace, name, spec)


SUBSETS = dr({"subsets": [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]})


# ------------------------------------------------------------------------------------------ destination rules
def test_subsets_make_clusters_and_filter_endpoints() -> None:
    clusters = by_name(build_clusters(SLEEP, snapshot(SUBSETS)))
    v1 = clusters[f"outbound|5000|v1|{HELLO}"]
    assert v1["eds_cluster_config"]["service_name"] == f"outbound|5000|v1|{HELLO}"
    tls = v1["transport_socket_matches"][0]["transport_socket"]["typed_config"]
    assert tls["sni"] == f"outbound_.5000_.v1_.{HELLO}"
    (cla,) = build_endpoints(SLEEP, snapshot(SUBSETS), [f"outbound|5000|v2|{HELLO}"])
    assert [lb["endpoint"]["address"]["socket_address"]["address"]
            for g in cla["endpoints"] for lb in g["lb_endpoints"]] == ["127.1.0.12"]


@pytest.mark.parametrize(("simple", "expected"), [("ROUND_ROBIN", "ROUND_ROBIN"), ("RANDOM", "RANDOM"),
                                                  ("LEAST_REQUEST", "LEAST_REQUEST"), (None, "LEAST_REQUEST")])
def test_load_balancer(simple: str | None, expected: str) -> None:
    policy = {"trafficPolicy": {"loadBalancer": {"simple": simple}}} if simple else {}
    assert by_name(build_clusters(SLEEP, snapshot(dr(policy))))[f"outbound|5000||{HELLO}"]["lb_policy"] == expected


def test_outlier_detection_and_connection_pool() -> None:
    rule = dr({"trafficPolicy": {
        "outlierDetection": {"consecutive5xxErrors": 2, "interval": "500ms", "baseEjectionTime": "1m",
                             "maxEjectionPercent": 100},
        "connectionPool": {"tcp": {"maxConnections": 10, "connectTimeout": "250ms"},
                           "http": {"http1MaxPendingRequests": 5}}}})
    cluster = by_name(build_clusters(SLEEP, snapshot(rule)))[f"outbound|5000||{HELLO}"]
    assert cluster["outlier_detection"] == {"enforcing_success_rate": 0, "consecutive_5xx": 2,
                                           "enforcing_consecutive_5xx": 100, "interval": "0.5s",
                                           "base_ejection_time": "60s", "max_ejection_percent": 100}
    assert cluster["common_lb_config"] == {"healthy_panic_threshold": {"value": 0.0}}
    assert cluster["connect_timeout"] == "0.25s"
    threshold = cluster["circuit_breakers"]["thresholds"][0]
    assert threshold["max_connections"] == 10 and threshold["max_pending_requests"] == 5


def test_tls_modes() -> None:
    def cluster(tls: Mapping[str, Any], subset_tls: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
        spec: dict[str, Any] = {"trafficPolicy": {"tls": dict(tls)}}
        if subset_tls is not None:
            spec["subsets"] = [{"name": "v1", "labels": {"version": "v1"}, "trafficPolicy": {"tls": subset_tls}}]
        return by_name(build_clusters(SLEEP, snapshot(dr(spec))))

    mutual = cluster({"mode": "ISTIO_MUTUAL"})[f"outbound|5000||{HELLO}"]
    assert "transport_socket_matches" not in mutual
    assert mutual["transport_socket"]["typed_config"]["sni"] == f"outbound_.5000_._.{HELLO}"
    disabled = cluster({"mode": "DISABLE"})[f"outbound|5000||{HELLO}"]
    assert "transport_socket" not in disabled and "transport_socket_matches" not in disabled
    simple = cluster({"mode": "SIMPLE", "sni": "hello.example.com", "caCertificates": "/etc/ca.pem"})[
        f"outbound|5000||{HELLO}"]["transport_socket"]["typed_config"]
    assert simple["sni"] == "hello.example.com"
    assert simple["common_tls_context"]["validation_context"] == {"trusted_ca": {"filename": "/etc/ca.pem"}}
    by_subset = cluster({"mode": "DISABLE"}, {"mode": "ISTIO_MUTUAL", "sni": "outbound_.5000_._.x"})
    assert "transport_socket" not in by_subset[f"outbound|5000||{HELLO}"]
    assert by_subset[f"outbound|5000|v1|{HELLO}"]["transport_socket"]["typed_config"]["sni"] == "outbound_.5000_._.x"


def test_destination_rule_precedence_proxy_namespace_first() -> None:
    local = dr({"trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}}}, namespace="sample")
    root = dr({"host": HELLO, "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}}}, namespace="istio-system")
    assert by_name(build_clusters(SLEEP, snapshot(local, root)))[f"outbound|5000||{HELLO}"]["lb_policy"] == "RANDOM"
    assert by_name(build_clusters(SLEEP, snapshot(root)))[f"outbound|5000||{HELLO}"]["lb_policy"] == "ROUND_ROBIN"


# ------------------------------------------------------------------------------------------ virtual services
def test_virtual_service_weights_and_matches() -> None:
    rule = vs({"hosts": ["helloworld"], "http": [
        {"name": "canary", "match": [{"headers": {"end-user": {"exact": "jason"}}, "uri": {"prefix": "/hello"}}],
         "route": [{"destination": {"host": "helloworld", "subset": "v2"}}],
         "fault": {"abort": {"httpStatus": 500, "percentage": {"value": 50}}}},
        {"route": [{"destination": {"host": "helloworld", "subset": "v1"}, "weight": 90},
                   {"destination": {"host": "helloworld", "subset": "v2"}, "weight": 10}],
         "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "gateway-error,503"}, "timeout": "5s"},
    ]})
    route = by_name(build_routes(SLEEP, snapshot(SUBSETS, rule)))["http_proxy"]
    canary, split = by_name(route["virtual_hosts"])[f"{HELLO}:5000"]["routes"]
    assert canary["name"] == "canary"
    assert canary["match"] == {"prefix": "/hello",
                               "headers": [{"name": "end-user", "string_match": {"exact": "jason"}}]}
    assert canary["route"]["cluster"] == f"outbound|5000|v2|{HELLO}"
    assert canary["typed_per_filter_config"]["envoy.filters.http.fault"]["abort"] == {
        "http_status": 500, "percentage": {"numerator": 500000, "denominator": "MILLION"}}
    assert split["match"] == {"prefix": "/"}
    assert split["route"]["weighted_clusters"] == {"clusters": [{"name": f"outbound|5000|v1|{HELLO}", "weight": 90},
                                                                {"name": f"outbound|5000|v2|{HELLO}", "weight": 10}]}
    assert split["route"]["timeout"] == "5s"
    retry = split["route"]["retry_policy"]
    assert retry["num_retries"] == 3 and retry["per_try_timeout"] == "2s"
    assert retry["retry_on"] == "gateway-error,retriable-status-codes" and retry["retriable_status_codes"] == [503]


def test_virtual_service_to_an_unknown_subset_answers_503() -> None:
    rule = vs({"hosts": ["helloworld"], "http": [{"route": [{"destination": {"host": "helloworld", "subset": "v9"}}]}]})
    route = by_name(build_routes(SLEEP, snapshot(rule)))["http_proxy"]
    (only,) = by_name(route["virtual_hosts"])[f"{HELLO}:5000"]["routes"]
    assert only["direct_response"]["status"] == 503
    assert "helloworld" in only["direct_response"]["body"]["inline_string"]
    generate(SLEEP, snapshot(rule))  # consistent: no route names a missing cluster


# -------------------------------------------------------------------------------------------- service entries
def test_service_entry_static_and_dns() -> None:
    clusters = by_name(build_clusters(SLEEP, snapshot(
        ConfigObject("DestinationRule", "sample", "global", {"host": "*.global", "trafficPolicy": {"tls": {
            "mode": "ISTIO_MUTUAL", "sni": "outbound_.8000_._.svc-2.bar.svc.cluster.local"}}}))))
    se = clusters[f"outbound|8000||{SE_HOST}"]
    assert se["type"] == "EDS"
    assert se["transport_socket"]["typed_config"]["sni"] == "outbound_.8000_._.svc-2.bar.svc.cluster.local"
    (cla,) = build_endpoints(SLEEP, snapshot(), [f"outbound|8000||{SE_HOST}"])
    assert cla["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] == {
        "address": "127.2.255.1", "port_value": 15443}
    external = clusters["outbound|443||api.example.com"]
    assert external["type"] == "STRICT_DNS" and "transport_socket_matches" not in external
    assert external["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
        "socket_address"] == {"address": "api.example.com", "port_value": 443}
    vhosts = by_name(by_name(build_routes(SLEEP, snapshot()))["http_proxy"]["virtual_hosts"])
    assert vhosts[f"{SE_HOST}:8000"]["domains"] == [f"{SE_HOST}:8000", "240.0.0.2:8000"]
    assert vhosts["api.example.com:80"]["domains"] == ["api.example.com", "api.example.com:80"]
    assert "api.example.com:443" not in vhosts  # a TLS port is not an HTTP route


def test_headless_service_is_load_balanced_over_its_endpoints() -> None:
    cluster = by_name(build_clusters(SLEEP, snapshot()))["outbound|8443||remote-nginx.sample.svc.cluster.local"]
    assert cluster["type"] == "EDS"
    vhosts = by_name(by_name(build_routes(SLEEP, snapshot()))["http_proxy"]["virtual_hosts"])
    domains = vhosts["remote-nginx.sample.svc.cluster.local:8443"]["domains"]
    assert "remote-nginx:8443" in domains and "*.remote-nginx.sample.svc.cluster.local:8443" in domains


def test_registry_only_blocks_unknown_hosts() -> None:
    route = by_name(build_routes(SLEEP, snapshot(mesh=MeshConfig(outbound_traffic_policy="REGISTRY_ONLY"))))
    last = route["http_proxy"]["virtual_hosts"][-1]
    assert last["name"] == "block_all" and last["routes"][0]["direct_response"]["status"] == 502


def test_sidecar_resource_limits_visible_services() -> None:
    sidecar = ConfigObject("Sidecar", "sample", "default", {"egress": [{"hosts": ["./*"]}]})
    names_seen = set(by_name(build_clusters(SLEEP, snapshot(sidecar))))
    assert f"outbound|5000||{HELLO}" in names_seen
    exported = Service("private.other.svc.cluster.local", "other", "private", (ServicePort("http", 80, "HTTP"),),
                       exported_to=(".",))
    names_seen = set(by_name(build_clusters(SLEEP, snapshot(services=(HELLOWORLD, exported)))))
    assert "outbound|80||private.other.svc.cluster.local" not in names_seen


# ------------------------------------------------------------------------------------------- ingress gateways
INGRESS_GATEWAY = ConfigObject("Gateway", "istio-system", "ingress", {
    "selector": {"istio": "ingressgateway"},
    "servers": [
        {"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]},
        {"port": {"number": 8443, "name": "https-mesh", "protocol": "HTTPS"}, "hosts": ["*"],
         "tls": {"mode": "ISTIO_MUTUAL"}},
        {"port": {"number": 9443, "name": "https", "protocol": "HTTPS"}, "hosts": ["hello.example.com"],
         "tls": {"mode": "SIMPLE", "credentialName": "hello-cred"}},
        {"port": {"number": 15012, "name": "tls-istiod", "protocol": "TLS"}, "hosts": ["*"],
         "tls": {"mode": "PASSTHROUGH"}},
    ],
})
INGRESS_VS = vs({"hosts": ["*"], "gateways": ["istio-system/ingress"], "http": [
    {"match": [{"uri": {"prefix": "/hello"}}], "route": [{"destination": {"host": HELLO, "port": {"number": 5000}}}]}],
    "tls": [{"match": [{"port": 15012, "sniHosts": ["*"]}],
             "route": [{"destination": {"host": HELLO, "port": {"number": 5000}}}]}]}, name="ingress")


def test_ingress_gateway_servers() -> None:
    mesh = snapshot(INGRESS_GATEWAY, INGRESS_VS)
    listeners = by_name(build_listeners(INGRESS, mesh))
    assert set(listeners) == {"127.1.0.30_8080", "127.1.0.30_8443", "127.1.0.30_9443", "127.1.0.30_15012"}
    http = listeners["127.1.0.30_8080"]["filter_chains"][0]["filters"][0]["typed_config"]
    assert http["rds"]["route_config_name"] == "http.8080" and http["use_remote_address"] is True
    mutual = listeners["127.1.0.30_8443"]["filter_chains"][0]
    assert mutual["transport_socket"]["typed_config"]["require_client_certificate"] is True
    mutual_route = mutual["filters"][0]["typed_config"]["rds"]["route_config_name"]
    assert mutual_route == "https.8443.https-mesh.ingress.istio-system"
    simple = listeners["127.1.0.30_9443"]["filter_chains"][0]
    assert simple["filter_chain_match"] == {"server_names": ["hello.example.com"]}
    context = simple["transport_socket"]["typed_config"]["common_tls_context"]
    assert context["tls_certificate_sds_secret_configs"][0]["name"] == "kubernetes://hello-cred"
    passthrough = listeners["127.1.0.30_15012"]["filter_chains"][0]
    assert "filter_chain_match" not in passthrough
    assert passthrough["filters"][0]["typed_config"]["cluster"] == f"outbound|5000||{HELLO}"
    routes = by_name(build_routes(INGRESS, mesh))
    assert set(routes) == {"http.8080", "https.8443.https-mesh.ingress.istio-system",
                           "https.9443.https.ingress.istio-system"}
    (vhost,) = routes["http.8080"]["virtual_hosts"]
    assert vhost["domains"] == ["*"] and vhost["routes"][0]["route"]["cluster"] == f"outbound|5000||{HELLO}"
    (named,) = routes["https.9443.https.ingress.istio-system"]["virtual_hosts"]
    assert named["domains"] == ["hello.example.com", "hello.example.com:*"]


def test_a_gateway_listens_on_its_services_target_port_for_a_server_port() -> None:
    # istioctl's default ingress gateway: Service port 80 → targetPort 8080, which is where its load balancer
    # forwards; a Gateway server on port 80 must be served there (its route keeps the server's number).
    gateway_service = Service("istio-ingressgateway.istio-system.svc.cluster.local", "istio-system",
                              "istio-ingressgateway", (ServicePort("http2", 80, "HTTP"),),
                              endpoints=(Endpoint(INGRESS.ip, 8080, "http2", cluster="cluster1",
                                                  network="network1"),))
    server = ConfigObject("Gateway", "istio-system", "web", {"selector": {"istio": "ingressgateway"}, "servers": [
        {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]},
        {"port": {"number": 8443, "name": "https-mesh", "protocol": "HTTPS"}, "hosts": ["*"],
         "tls": {"mode": "ISTIO_MUTUAL"}}]})
    mesh = snapshot(server, services=(HELLOWORLD, gateway_service))
    listeners = by_name(build_listeners(INGRESS, mesh))
    assert set(listeners) == {"127.1.0.30_8080", "127.1.0.30_8443"}  # 8443: no Service port of that number
    http = listeners["127.1.0.30_8080"]["filter_chains"][0]["filters"][0]["typed_config"]
    assert http["rds"]["route_config_name"] == "http.80"
    assert "http.80" in by_name(build_routes(INGRESS, mesh))


def test_passthrough_dials_the_host_and_port_80_when_the_host_names_no_port() -> None:
    # curl http://10.0.0.1/hello sends Host: 10.0.0.1; Istio would dial the original destination, port 80.
    cluster = by_name(build_clusters(SLEEP, snapshot()))["PassthroughCluster"]
    assert cluster["original_dst_lb_config"] == {"use_http_header": True,
                                                 "http_header_name": "x-envoy-original-dst-host"}
    allow_any = by_name(build_routes(SLEEP, snapshot()))["http_proxy"]["virtual_hosts"][-1]
    with_port, without = allow_any["routes"]
    assert with_port["match"]["headers"][0]["string_match"] == {"safe_regex": {"regex": ".*:[0-9]+"}}
    assert [h["header"]["value"] for h in (*with_port["request_headers_to_add"], *without["request_headers_to_add"])] \
        == ["%REQ(:authority)%", "%REQ(:authority)%:80"]
    assert without["match"] == {"prefix": "/"} and without["route"]["cluster"] == "PassthroughCluster"


def test_every_gateway_listener_logs_connections_no_filter_chain_matches() -> None:
    # Istio's listener-level access log, filtered on NR: how a gateway tells why it reset a connection (an SNI its
    # Gateway hosts do not name, plaintext on a TLS-only port), on TLS chains as on plain ones.
    listeners = by_name(build_listeners(INGRESS, snapshot(INGRESS_GATEWAY, INGRESS_VS)))
    for listener in listeners.values():
        (log,) = listener["access_log"]
        assert log["typed_config"]["path"] == "/dev/stdout"
        assert log["filter"] == {"response_flag_filter": {"flags": ["NR"]}}
    quiet = snapshot(INGRESS_GATEWAY, INGRESS_VS, mesh=MeshConfig(access_log_file=""))
    assert not any("access_log" in listener for listener in build_listeners(INGRESS, quiet))


def test_gateway_port_without_virtual_service_answers_404() -> None:
    routes = by_name(build_routes(INGRESS, snapshot(INGRESS_GATEWAY)))
    (vhost,) = routes["http.8080"]["virtual_hosts"]
    assert vhost["name"] == "blackhole:8080" and vhost["routes"][0]["direct_response"]["status"] == 404


# ---------------------------------------------------------------------------------------------------- secrets
def test_secrets_for_one_and_several_trust_domains() -> None:
    default, root = build_secrets("CHAIN", "KEY", {"cluster.local": "ROOT"})
    assert default == {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
                       "name": "default", "tls_certificate": {"certificate_chain": {"inline_string": "CHAIN"},
                                                              "private_key": {"inline_string": "KEY"}}}
    assert root["name"] == "ROOTCA" and root["validation_context"] == {"trusted_ca": {"inline_string": "ROOT"}}
    _, federated = build_secrets("CHAIN", "KEY", {"foo.com": "FOO", "bar.com": "BAR"})
    validator = federated["validation_context"]["custom_validator_config"]
    assert validator["name"] == "envoy.tls.cert_validator.spiffe"
    assert validator["typed_config"]["trust_domains"] == [
        {"name": "bar.com", "trust_bundle": {"inline_string": "BAR"}},
        {"name": "foo.com", "trust_bundle": {"inline_string": "FOO"}}]
    with pytest.raises(ValueError, match="roots is empty"):
        build_secrets("CHAIN", "KEY", {})


# -------------------------------------------------------------------------------------------- envoy validates
@pytest.fixture(scope="module")
def credential(cluster1_ca: CertificateAuthority, root: CertificateAuthority) -> ProxyCredential:
    issued = cluster1_ca.issue_workload(SA)
    server = cluster1_ca.issue_workload("spiffe://cluster.local/ns/istio-system/sa/ingress")
    return ProxyCredential(issued.cert_chain_pem, issued.key_pem, {"cluster.local": root.cert_pem,
                                                                   "foo.com": root.cert_pem},
                           gateway_credentials={"hello-cred": (server.cert_chain_pem, server.key_pem)})


def test_envoy_accepts_the_ingress_gateway(tmp_path: Path, credential: ProxyCredential) -> None:
    config = generate(INGRESS, snapshot(INGRESS_GATEWAY, INGRESS_VS), credential=credential)
    assert "kubernetes://hello-cred" in {s["name"] for s in config.secrets}
    envoy_validate(config, tmp_path)


def test_envoy_accepts_a_sidecar_with_rules_and_entries(tmp_path: Path, credential: ProxyCredential) -> None:
    rules = (
        dr({"trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN", "localityLbSetting": {"enabled": True}},
                              "outlierDetection": {"consecutive5xxErrors": 1, "consecutiveGatewayErrors": 2,
                                                   "interval": "1s", "baseEjectionTime": "30s"},
                              "connectionPool": {"tcp": {"connectTimeout": "1s"}}},
            "subsets": [{"name": "v1", "labels": {"version": "v1"}, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}},
                        {"name": "v2", "labels": {"version": "v2"},
                         "trafficPolicy": {"tls": {"mode": "SIMPLE", "sni": "v2.example.com"}}}]}),
        vs({"hosts": ["helloworld"], "http": [
            {"match": [{"uri": {"regex": "/hel+o"}, "method": {"exact": "GET"}, "queryParams": {"x": {"exact": "1"}}},
                       {"withoutHeaders": {"x-skip": {}}, "ignoreUriCase": True, "uri": {"exact": "/Hello"}}],
             "route": [{"destination": {"host": "helloworld", "subset": "v1"}, "weight": 50},
                       {"destination": {"host": "helloworld", "subset": "v2"}, "weight": 50}],
             "fault": {"delay": {"fixedDelay": "100ms", "percentage": {"value": 10}}},
             "headers": {"request": {"set": {"x-a": "1"}, "remove": ["x-b"]}, "response": {"add": {"x-c": "2"}}},
             "rewrite": {"uri": "/hello", "authority": "hello"}},
            {"match": [{"uri": {"prefix": "/old"}}], "redirect": {"uri": "/new", "redirectCode": 302}},
            {"match": [{"uri": {"prefix": "/teapot"}}], "directResponse": {"status": 418, "body": {"string": "tea"}}},
            {"route": [{"destination": {"host": "helloworld"}}], "retries": {"attempts": 0}}]}),
    )
    config = generate(SLEEP, snapshot(*rules, mesh=MeshConfig(outbound_traffic_policy="REGISTRY_ONLY")),
                      credential=credential)
    envoy_validate(config, tmp_path)


# ------------------------------------------------------------------------------------------- expose-istiod
ISTIOD_HOST = "istiod.istio-system.svc.cluster.local"
# istiod as the primary's istiod sees itself: no sidecar (plaintext endpoints), 15012 and the webhook's 443 → 15017.
ISTIOD = Service(ISTIOD_HOST, "istio-system", "istiod",
                 (ServicePort("https-dns", 15012, "TCP"), ServicePort("https-webhook", 443, "TCP")),
                 endpoints=(Endpoint("127.1.0.2", 15012, "https-dns", network="network1", cluster="cluster1"),
                            Endpoint("127.1.0.2", 15017, "https-webhook", network="network1", cluster="cluster1")))
EASTWEST = Proxy(id="router~127.1.0.31~istio-eastwestgateway.istio-system~istio-system.svc.cluster.local",
                 type="router", name="istio-eastwestgateway", namespace="istio-system", ip="127.1.0.31",
                 labels={"istio": "eastwestgateway"}, cluster="cluster1", network="network1")
ISTIOD_GATEWAY = ConfigObject("Gateway", "istio-system", "istiod-gateway", {
    "selector": {"istio": "eastwestgateway"},
    "servers": [{"port": {"name": "tls-istiod", "number": 15012, "protocol": "tls"}, "tls": {"mode": "PASSTHROUGH"},
                 "hosts": ["*"]},
                {"port": {"name": "tls-istiodwebhook", "number": 15017, "protocol": "tls"},
                 "tls": {"mode": "PASSTHROUGH"}, "hosts": ["*"]}]})
ISTIOD_VS = ConfigObject("VirtualService", "istio-system", "istiod-vs", {
    "hosts": ["*"], "gateways": ["istiod-gateway"],
    "tls": [{"match": [{"port": 15012, "sniHosts": ["*"]}],
             "route": [{"destination": {"host": ISTIOD_HOST, "port": {"number": 15012}}}]},
            {"match": [{"port": 15017, "sniHosts": ["*"]}],
             "route": [{"destination": {"host": ISTIOD_HOST, "port": {"number": 443}}}]}]})


def test_expose_istiod_passes_15012_and_15017_through_to_istiod(tmp_path: Path, credential: ProxyCredential) -> None:
    """Lab 2's expose-istiod: the east-west gateway forwards the remote's TLS to istiod untouched (its own
    certificate reaches the caller), 15012 to istiod's 15012 and 15017 to the webhook's Service port 443."""
    mesh = snapshot(ISTIOD_GATEWAY, ISTIOD_VS, services=(HELLOWORLD, ISTIOD))
    listeners = by_name(build_listeners(EASTWEST, mesh))
    for port, cluster in ((15012, f"outbound|15012||{ISTIOD_HOST}"), (15017, f"outbound|443||{ISTIOD_HOST}")):
        (chain,) = listeners[f"127.1.0.31_{port}"]["filter_chains"]
        assert "transport_socket" not in chain  # passthrough: nothing terminated
        assert chain["filters"][0]["typed_config"]["cluster"] == cluster
    clusters = by_name(build_clusters(EASTWEST, mesh))
    assert "transport_socket" not in clusters[f"outbound|443||{ISTIOD_HOST}"]  # istiod has no sidecar: no mTLS
    envoy_validate(generate(EASTWEST, mesh, credential=credential), tmp_path)
    # Without the VirtualService the ports stay open but match nothing: new connections are reset.
    bare = by_name(build_listeners(EASTWEST, snapshot(ISTIOD_GATEWAY, services=(HELLOWORLD, ISTIOD))))
    (chain,) = bare["127.1.0.31_15012"]["filter_chains"]
    assert chain["filter_chain_match"]["server_names"] == ["no-service-matches-this-gateway.invalid"]
