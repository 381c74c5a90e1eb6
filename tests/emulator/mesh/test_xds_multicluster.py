"""xDS builders against Istio's multicluster verification (helloworld v1 in cluster1 and cluster2, v2 in
cluster3, three networks, east-west gateways, sleep everywhere), and every representative ProxyConfig
validated by the real Envoy (``--mode validate --reject-unknown-dynamic-fields``).
"""

from __future__ import annotations

import dataclasses
import json
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
    NetworkGateway,
    Proxy,
    Service,
    ServicePort,
)
from labkit.emulator.mesh.xds import (
    ProxyCredential,
    XdsError,
    build_clusters,
    build_endpoints,
    build_listeners,
    build_routes,
    check_consistency,
    gateway_conflicts,
    generate,
    names,
)
from labkit.pki import CertificateAuthority

HELLO = "helloworld.sample.svc.cluster.local"
SLEEP = "sleep.sample.svc.cluster.local"
HELLO_5000 = f"outbound|5000||{HELLO}"
HELLO_SNI = f"outbound_.5000_._.{HELLO}"
GATEWAY_IPS = {"cluster1": "127.1.255.1", "cluster2": "127.2.255.1", "cluster3": "127.3.255.1"}
SA_HELLO = "spiffe://cluster.local/ns/sample/sa/default"
SA_SLEEP = "spiffe://cluster.local/ns/sample/sa/sleep"


# ---------------------------------------------------------------------------------------------------- the world
def _n(cluster: str) -> int:
    return int(cluster[-1])


def hello_endpoint(cluster: str, version: str, index: int = 10, **changes: Any) -> Endpoint:
    ep = Endpoint(address=f"127.{_n(cluster)}.0.{index}", port=5000, service_port="http",
                  labels={"app": "helloworld", "version": version}, service_account=SA_HELLO,
                  network=f"network{_n(cluster)}", cluster=cluster, locality=f"region{_n(cluster)}/zone1/",
                  tls_mode="istio", workload=f"sample/helloworld-{version}-{index}")
    return dataclasses.replace(ep, **changes)


def sleep_endpoint(cluster: str) -> Endpoint:
    return Endpoint(address=f"127.{_n(cluster)}.0.11", port=80, service_port="http", labels={"app": "sleep"},
                    service_account=SA_SLEEP, network=f"network{_n(cluster)}", cluster=cluster,
                    locality=f"region{_n(cluster)}/zone1/", tls_mode="istio", workload="sample/sleep")


CROSS_NETWORK_GATEWAY = ConfigObject("Gateway", "istio-system", "cross-network-gateway", {
    "selector": {"istio": "eastwestgateway"},
    "servers": [{"port": {"number": 15443, "name": "tls", "protocol": "TLS"},
                 "tls": {"mode": "AUTO_PASSTHROUGH"}, "hosts": ["*.local"]}],
})


def world(*, hello: Sequence[Endpoint] | None = None, gateways: Sequence[NetworkGateway] | None = None,
          configs: Sequence[ConfigObject] = (CROSS_NETWORK_GATEWAY,), services: Sequence[Service] = (),
          mesh: MeshConfig | None = None) -> MeshSnapshot:
    if hello is None:
        hello = [hello_endpoint("cluster1", "v1"), hello_endpoint("cluster2", "v1"), hello_endpoint("cluster3", "v2")]
    if gateways is None:
        gateways = [NetworkGateway(f"network{_n(c)}", ip, cluster=c) for c, ip in GATEWAY_IPS.items()]
    helloworld = Service(HELLO, "sample", "helloworld", (ServicePort("http", 5000, "HTTP"),),
                         addresses={c: f"127.{_n(c)}.128.5" for c in GATEWAY_IPS}, endpoints=tuple(hello))
    sleep = Service(SLEEP, "sample", "sleep", (ServicePort("http", 80, "HTTP"),),
                    addresses={c: f"127.{_n(c)}.128.6" for c in GATEWAY_IPS},
                    endpoints=tuple(sleep_endpoint(c) for c in GATEWAY_IPS))
    return MeshSnapshot(mesh=mesh or MeshConfig(), services=(helloworld, sleep, *services), gateways=tuple(gateways),
                        configs=tuple(configs), version="7")


def sleep_proxy(cluster: str = "cluster1", **changes: Any) -> Proxy:
    n = _n(cluster)
    proxy = Proxy(id=f"sidecar~127.{n}.0.11~sleep-1.sample~sample.svc.cluster.local", type="sidecar", name="sleep-1",
                  namespace="sample", ip=f"127.{n}.0.11", app_address=f"127.{n}.64.11", labels={"app": "sleep"},
                  service_account=SA_SLEEP, cluster=cluster, network=f"network{n}", locality=f"region{n}/zone1/")
    return dataclasses.replace(proxy, **changes)


def hello_proxy(cluster: str = "cluster1", **changes: Any) -> Proxy:
    n = _n(cluster)
    proxy = Proxy(id=f"sidecar~127.{n}.0.10~helloworld-v1.sample~sample.svc.cluster.local", type="sidecar",
                  name="helloworld-v1-10", namespace="sample", ip=f"127.{n}.0.10", app_address=f"127.{n}.64.10",
                  labels={"app": "helloworld", "version": "v1"}, service_account=SA_HELLO, cluster=cluster,
                  network=f"network{n}", locality=f"region{n}/zone1/")
    return dataclasses.replace(proxy, **changes)


def eastwest_proxy(cluster: str = "cluster1", **changes: Any) -> Proxy:
    n = _n(cluster)
    proxy = Proxy(id=f"router~127.{n}.0.20~istio-eastwestgateway-1.istio-system~istio-system.svc.cluster.local",
                  type="router", name="istio-eastwestgateway-1", namespace="istio-system", ip=f"127.{n}.0.20",
                  labels={"istio": "eastwestgateway", "app": "istio-eastwestgateway",
                          "topology.istio.io/network": f"network{n}"},
                  service_account="spiffe://cluster.local/ns/istio-system/sa/istio-eastwestgateway-service-account",
                  cluster=cluster, network=f"network{n}", locality=f"region{n}/zone1/",
                  requested_network_view=(f"network{n}",))
    return dataclasses.replace(proxy, **changes)


def by_name(resources: Sequence[Mapping[str, Any]], key: str = "name") -> dict[str, Mapping[str, Any]]:
    return {r[key]: r for r in resources}


def assignment(proxy: Proxy, snapshot: MeshSnapshot, name: str = HELLO_5000) -> Mapping[str, Any]:
    return build_endpoints(proxy, snapshot, [name])[0]


def addresses(cla: Mapping[str, Any]) -> dict[str, int]:
    """``ip:port`` → weight, over every locality and priority."""
    out = {}
    for group in cla["endpoints"]:
        for lb in group["lb_endpoints"]:
            sock = lb["endpoint"]["address"]["socket_address"]
            out[f"{sock['address']}:{sock['port_value']}"] = lb["load_balancing_weight"]
    return out


# ------------------------------------------------------------------------------------------ envoy validation
@pytest.fixture(scope="module")
def credential(cluster1_ca: CertificateAuthority) -> ProxyCredential:
    issued = cluster1_ca.issue_workload(SA_SLEEP)
    return ProxyCredential(issued.cert_chain_pem, issued.key_pem, {"cluster.local": issued.root_pem})


# ------------------------------------------------------------------------------------------------- names
def test_cluster_and_sni_names_round_trip() -> None:
    assert names.cluster_name("outbound", 5000, "", HELLO) == HELLO_5000
    assert names.cluster_name("inbound", 5000) == "inbound|5000||"
    assert names.parse_cluster_name(f"outbound|5000|v1|{HELLO}") == ("outbound", 5000, "v1", HELLO)
    assert names.sni(5000, "", HELLO) == HELLO_SNI
    assert names.sni(5000, "v1", HELLO) == f"outbound_.5000_.v1_.{HELLO}"
    assert names.parse_sni(f"outbound_.5000_.v1_.{HELLO}") == ("outbound", 5000, "v1", HELLO)
    assert names.parse_sni(HELLO_SNI).subset == ""
    with pytest.raises(ValueError, match="not an Istio cluster name"):
        names.parse_cluster_name("helloworld")
    with pytest.raises(ValueError, match="not an Istio SNI"):
        names.parse_sni("helloworld.sample")


def test_config_sources_are_ads_but_the_workload_secrets_come_from_the_agent() -> None:
    ads = {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}
    assert names.config_source("eds", HELLO_5000) == ads
    assert names.config_source("rds", "http.8080") == ads
    assert names.config_source("sds", "kubernetes://cred") == ads  # istiod serves a gateway's credentials
    for secret in ("default", "ROOTCA"):
        grpc = names.config_source("sds", secret)["api_config_source"]["grpc_services"][0]["envoy_grpc"]
        assert grpc["cluster_name"] == "sds-grpc"


# ------------------------------------------------------------------------------------------------ clusters
def test_sleep_sidecar_gets_istio_named_clusters_with_auto_mtls() -> None:
    clusters = by_name(build_clusters(sleep_proxy(), world()))
    assert {HELLO_5000, f"outbound|80||{SLEEP}", "inbound|80||", "BlackHoleCluster",
            "PassthroughCluster"} <= set(clusters)
    hello = clusters[HELLO_5000]
    assert hello["@type"] == "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    assert hello["type"] == "EDS" and hello["lb_policy"] == "LEAST_REQUEST" and hello["connect_timeout"] == "10s"
    assert hello["eds_cluster_config"]["service_name"] == HELLO_5000
    assert hello["eds_cluster_config"]["eds_config"]["ads"] == {}
    assert hello["circuit_breakers"]["thresholds"][0]["max_connections"] == 4294967295
    istio, disabled = hello["transport_socket_matches"]
    assert (istio["name"], istio["match"]) == ("tlsMode-istio", {"tlsMode": "istio"})
    assert (disabled["name"], disabled["match"]) == ("tlsMode-disabled", {})
    assert disabled["transport_socket"]["name"] == "envoy.transport_sockets.raw_buffer"
    tls = istio["transport_socket"]["typed_config"]
    assert tls["sni"] == HELLO_SNI
    common = tls["common_tls_context"]
    assert common["alpn_protocols"] == ["istio-peer-exchange", "istio"]
    assert common["tls_params"] == {"tls_minimum_protocol_version": "TLSv1_2",
                                    "tls_maximum_protocol_version": "TLSv1_3"}
    assert common["tls_certificate_sds_secret_configs"][0]["name"] == "default"
    validation = common["combined_validation_context"]
    assert validation["validation_context_sds_secret_config"]["name"] == "ROOTCA"
    assert validation["default_validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "URI", "matcher": {"exact": SA_HELLO}}]
    inbound = clusters["inbound|80||"]
    assert inbound["type"] == "STATIC"
    assert inbound["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] == {
        "socket_address": {"address": "127.1.64.11", "port_value": 80}}


def test_trust_domain_aliases_widen_the_san_match() -> None:
    snapshot = world(mesh=MeshConfig(trust_domain="cluster.local", trust_domain_aliases=("foo.com",)))
    hello = by_name(build_clusters(sleep_proxy(), snapshot))[HELLO_5000]
    sans = hello["transport_socket_matches"][0]["transport_socket"]["typed_config"]["common_tls_context"][
        "combined_validation_context"]["default_validation_context"]["match_typed_subject_alt_names"]
    assert [m["matcher"]["exact"] for m in sans] == [SA_HELLO, "spiffe://foo.com/ns/sample/sa/default"]


# ----------------------------------------------------------------------------------------------- endpoints
def test_local_pod_plus_one_gateway_per_remote_network() -> None:
    cla = assignment(sleep_proxy(), world())
    assert cla["@type"] == "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
    assert addresses(cla) == {"127.1.0.10:5000": 1, "127.2.255.1:15443": 1, "127.3.255.1:15443": 1}
    gateway = next(lb for g in cla["endpoints"] for lb in g["lb_endpoints"]
                   if lb["endpoint"]["address"]["socket_address"]["address"] == "127.2.255.1")
    assert gateway["metadata"]["filter_metadata"]["envoy.transport_socket_match"] == {"tlsMode": "istio"}
    local = next(g for g in cla["endpoints"] if g["locality"]["region"] == "region1")
    pod = local["lb_endpoints"][0]
    assert pod["metadata"]["filter_metadata"]["istio"]["workload"] == "helloworld-v1-10;sample;helloworld;v1;cluster1"
    assert pod["health_status"] == "HEALTHY"
    assert local["locality"] == {"region": "region1", "zone": "zone1"}


def test_gateway_weight_counts_the_endpoints_behind_it() -> None:
    hello = [hello_endpoint("cluster1", "v1"), hello_endpoint("cluster2", "v1"),
             hello_endpoint("cluster2", "v1", index=12), hello_endpoint("cluster3", "v2")]
    assert addresses(assignment(sleep_proxy(), world(hello=hello))) == {
        "127.1.0.10:5000": 1, "127.2.255.1:15443": 2, "127.3.255.1:15443": 1}


def test_weight_is_split_across_several_gateways_of_a_network() -> None:
    hello = [hello_endpoint("cluster1", "v1"), hello_endpoint("cluster2", "v1"), hello_endpoint("cluster2", "v1", 12),
             hello_endpoint("cluster2", "v1", 13)]
    gateways = [NetworkGateway("network2", "127.2.255.1"), NetworkGateway("network2", "127.2.255.2")]
    # Three endpoints over two gateways: everything is scaled by 2 so each gateway carries 3.
    assert addresses(assignment(sleep_proxy(), world(hello=hello, gateways=gateways))) == {
        "127.1.0.10:5000": 2, "127.2.255.1:15443": 3, "127.2.255.2:15443": 3}


def test_network_without_gateway_keeps_raw_pod_ips() -> None:
    gateways = [NetworkGateway("network2", GATEWAY_IPS["cluster2"])]
    assert addresses(assignment(sleep_proxy(), world(gateways=gateways))) == {
        "127.1.0.10:5000": 1, "127.2.255.1:15443": 1, "127.3.0.10:5000": 1}


def test_missing_network_label_means_same_network() -> None:
    cla = assignment(sleep_proxy(network=""), world())
    assert addresses(cla) == {"127.1.0.10:5000": 1, "127.2.0.10:5000": 1, "127.3.0.10:5000": 1}


def test_plaintext_remote_endpoints_are_dropped() -> None:
    hello = [hello_endpoint("cluster1", "v1", tls_mode="disabled"),
             hello_endpoint("cluster2", "v1", tls_mode="disabled"), hello_endpoint("cluster3", "v2")]
    cla = assignment(sleep_proxy(), world(hello=hello))
    assert addresses(cla) == {"127.1.0.10:5000": 1, "127.3.255.1:15443": 1}
    local = next(lb for g in cla["endpoints"] for lb in g["lb_endpoints"])
    assert "envoy.transport_socket_match" not in local["metadata"]["filter_metadata"]


def test_a_plaintext_destination_rule_drops_the_other_networks() -> None:
    # Istio's mtlsChecker: a caller whose DestinationRule disables TLS would reach a gateway in plaintext, which it
    # cannot route on SNI; istiod leaves the other networks out instead (only local answers).
    plaintext = ConfigObject("DestinationRule", "sample", "sample-plaintext", {
        "host": "*.sample.svc.cluster.local", "trafficPolicy": {"tls": {"mode": "DISABLE"}}})
    cla = assignment(sleep_proxy(), world(configs=(CROSS_NETWORK_GATEWAY, plaintext)))
    assert addresses(cla) == {"127.1.0.10:5000": 1}
    mutual = dataclasses.replace(plaintext, spec={**plaintext.spec, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}})
    cla = assignment(sleep_proxy(), world(configs=(CROSS_NETWORK_GATEWAY, mutual)))
    assert addresses(cla) == {"127.1.0.10:5000": 1, "127.2.255.1:15443": 1, "127.3.255.1:15443": 1}


def test_unhealthy_endpoints_are_marked_and_not_counted_behind_gateways() -> None:
    hello = [hello_endpoint("cluster1", "v1", healthy=False), hello_endpoint("cluster2", "v1"),
             hello_endpoint("cluster2", "v1", 12, healthy=False)]
    cla = assignment(sleep_proxy(), world(hello=hello))
    assert addresses(cla) == {"127.1.0.10:5000": 1, "127.2.255.1:15443": 1}
    statuses = {lb["endpoint"]["address"]["socket_address"]["address"]: lb["health_status"]
                for g in cla["endpoints"] for lb in g["lb_endpoints"]}
    assert statuses == {"127.1.0.10": "UNHEALTHY", "127.2.255.1": "HEALTHY"}


def test_empty_assignment_is_written_out() -> None:
    snapshot = world(hello=[])
    cla = assignment(sleep_proxy(), snapshot)
    assert cla == {"@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
                   "cluster_name": HELLO_5000, "endpoints": []}
    assert build_endpoints(sleep_proxy(), snapshot, ["outbound|9|v9|nowhere.local"])[0]["endpoints"] == []


def test_locality_priorities_only_with_outlier_detection() -> None:
    dr = ConfigObject("DestinationRule", "sample", "helloworld", {
        "host": "helloworld", "trafficPolicy": {"outlierDetection": {"consecutive5xxErrors": 1, "interval": "1s",
                                                                     "baseEjectionTime": "1m"}}})
    cla = assignment(sleep_proxy(), world(configs=(CROSS_NETWORK_GATEWAY, dr)))
    priorities = {g["locality"]["region"]: g.get("priority", 0) for g in cla["endpoints"]}
    assert priorities == {"region1": 0, "region2": 1, "region3": 1}
    no_outlier = assignment(sleep_proxy(), world())
    assert all("priority" not in g for g in no_outlier["endpoints"])
    failover = dataclasses.replace(dr, spec={**dr.spec, "trafficPolicy": {
        **dr.spec["trafficPolicy"],
        "loadBalancer": {"localityLbSetting": {"enabled": True, "failover": [{"from": "region1", "to": "region3"}]}}}})
    cla = assignment(sleep_proxy(), world(configs=(CROSS_NETWORK_GATEWAY, failover)))
    assert {g["locality"]["region"]: g.get("priority", 0) for g in cla["endpoints"]} == {
        "region1": 0, "region3": 1, "region2": 2}


# -------------------------------------------------------------------------------------------------- routers
def test_router_with_network_view_sees_only_its_network() -> None:
    router = eastwest_proxy("cluster1")
    snapshot = world()
    assert addresses(assignment(router, snapshot, HELLO_SNI)) == {"127.1.0.10:5000": 1}
    assert addresses(assignment(router, snapshot)) == {"127.1.0.10:5000": 1}
    clusters = by_name(build_clusters(router, snapshot))
    dnat = clusters[HELLO_SNI]
    assert dnat["type"] == "EDS" and "transport_socket_matches" not in dnat and "transport_socket" not in dnat
    assert not any(name.startswith("inbound|") for name in clusters)


def test_auto_passthrough_chains_are_keyed_by_sni() -> None:
    router = eastwest_proxy("cluster2")
    (listener,) = build_listeners(router, world())
    assert listener["name"] == "127.2.0.20_15443"
    assert listener["address"] == {"socket_address": {"address": "127.2.0.20", "port_value": 15443}}
    assert listener["listener_filters"][0]["name"] == "envoy.filters.listener.tls_inspector"
    chains = {c["filter_chain_match"]["server_names"][0]: c for c in listener["filter_chains"]}
    assert set(chains) == {HELLO_SNI, f"outbound_.80_._.{SLEEP}"}
    proxy_filter = chains[HELLO_SNI]["filters"][0]
    assert proxy_filter["typed_config"]["cluster"] == HELLO_SNI
    assert "transport_socket" not in chains[HELLO_SNI]


def test_auto_passthrough_honours_gateway_hosts() -> None:
    narrow = dataclasses.replace(CROSS_NETWORK_GATEWAY, spec={**CROSS_NETWORK_GATEWAY.spec, "servers": [
        {**CROSS_NETWORK_GATEWAY.spec["servers"][0], "hosts": ["sample/helloworld.sample.svc.cluster.local"]}]})
    (listener,) = build_listeners(eastwest_proxy(), world(configs=(narrow,)))
    assert [c["filter_chain_match"]["server_names"] for c in listener["filter_chains"]] == [[HELLO_SNI]]
    wrong = dataclasses.replace(CROSS_NETWORK_GATEWAY, spec={**CROSS_NETWORK_GATEWAY.spec, "servers": [
        {**CROSS_NETWORK_GATEWAY.spec["servers"][0], "hosts": ["helloworld.example.com"]}]})
    (listener,) = build_listeners(eastwest_proxy(), world(configs=(wrong,)))
    # Still a listener (so the client's connection is reset with NR filter_chain_not_found), but no chain matches.
    assert [c["filter_chain_match"]["server_names"] for c in listener["filter_chains"]] == [
        ["no-service-matches-this-gateway.invalid"]]
    assert HELLO_SNI not in by_name(build_clusters(eastwest_proxy(), world(configs=(wrong,))))
    everything = dataclasses.replace(CROSS_NETWORK_GATEWAY, spec={**CROSS_NETWORK_GATEWAY.spec, "servers": [
        {**CROSS_NETWORK_GATEWAY.spec["servers"][0], "hosts": ["*"]}]})
    (listener,) = build_listeners(eastwest_proxy(), world(configs=(everything,)))
    assert len(listener["filter_chains"]) == 2


def test_two_gateways_on_one_port_merge_and_report(tmp_path: Path, credential: ProxyCredential) -> None:
    twin = dataclasses.replace(CROSS_NETWORK_GATEWAY, name="cross-network-gateway-2")
    snapshot = world(configs=(CROSS_NETWORK_GATEWAY, twin))
    (listener,) = build_listeners(eastwest_proxy(), snapshot)
    assert len(listener["filter_chains"]) == 2
    conflicts = gateway_conflicts(eastwest_proxy(), snapshot)
    assert len(conflicts) == 2
    assert "cross-network-gateway-2" in conflicts[0] and "cross-network-gateway server tls" in conflicts[0]
    assert gateway_conflicts(eastwest_proxy(), world()) == []
    envoy_validate(generate(eastwest_proxy(), snapshot, credential=credential), tmp_path)


# ----------------------------------------------------------------------------------------- sidecar listeners
def test_http_proxy_listener_and_route() -> None:
    listeners = by_name(build_listeners(sleep_proxy(), world()))
    listener = listeners["127.1.0.11_15080"]
    assert listener["address"]["socket_address"] == {"address": "127.1.0.11", "port_value": 15080}
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["rds"]["route_config_name"] == "http_proxy"
    assert hcm["rds"]["config_source"]["ads"] == {}
    assert hcm["http_protocol_options"] == {"allow_absolute_url": True}
    log_format = hcm["access_log"][0]["typed_config"]["log_format"]["text_format_source"]["inline_string"]
    assert "%RESPONSE_FLAGS%" in log_format and "%UPSTREAM_TRANSPORT_FAILURE_REASON%" in log_format
    route = by_name(build_routes(sleep_proxy(), world()))["http_proxy"]
    vhosts = by_name(route["virtual_hosts"])
    hello = vhosts[f"{HELLO}:5000"]
    assert hello["domains"] == [f"{HELLO}:5000", "helloworld:5000", "helloworld.sample:5000",
                                "helloworld.sample.svc:5000", "127.1.128.5:5000"]
    # Port 80 also answers to names without a port.
    assert vhosts[f"{SLEEP}:80"]["domains"] == [
        SLEEP, f"{SLEEP}:80", "sleep", "sleep:80", "sleep.sample", "sleep.sample:80", "sleep.sample.svc",
        "sleep.sample.svc:80", "127.1.128.6", "127.1.128.6:80"]
    default = hello["routes"][0]
    assert default["route"]["cluster"] == HELLO_5000
    retry = default["route"]["retry_policy"]
    assert retry["num_retries"] == 2 and retry["retriable_status_codes"] == [503]
    assert retry["retry_on"] == "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    assert retry["retry_host_predicate"][0]["name"] == "envoy.retry_host_predicates.previous_hosts"
    assert retry["host_selection_retry_max_attempts"] == 5
    assert route["virtual_hosts"][-1]["name"] == "allow_any"


def test_short_names_only_in_the_same_namespace() -> None:
    other = sleep_proxy(namespace="other")
    route = by_name(build_routes(other, world()))["http_proxy"]
    hello = by_name(route["virtual_hosts"])[f"{HELLO}:5000"]
    assert "helloworld:5000" not in hello["domains"] and "helloworld.sample:5000" in hello["domains"]


def test_inbound_listener_permissive_by_default() -> None:
    listeners = by_name(build_listeners(hello_proxy(), world()))
    inbound = listeners["127.1.0.10_5000"]
    assert inbound["traffic_direction"] == "INBOUND"
    mtls, plain = inbound["filter_chains"]
    assert mtls["filter_chain_match"] == {"transport_protocol": "tls"}
    assert plain["filter_chain_match"] == {"transport_protocol": "raw_buffer"}
    tls = mtls["transport_socket"]["typed_config"]
    assert tls["require_client_certificate"] is True
    assert tls["common_tls_context"]["alpn_protocols"] == ["istio-peer-exchange", "istio", "h2", "http/1.1"]
    assert tls["common_tls_context"]["combined_validation_context"]["default_validation_context"] == {
        "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"prefix": "spiffe://cluster.local/"}}]}
    hcm = mtls["filters"][0]["typed_config"]
    assert hcm["forward_client_cert_details"] == "APPEND_FORWARD"
    assert hcm["set_current_client_cert_details"] == {"subject": True, "dns": True, "uri": True}
    assert hcm["rds"]["route_config_name"] == "inbound|5000||"
    routes = by_name(build_routes(hello_proxy(), world()))
    assert routes["inbound|5000||"]["virtual_hosts"][0]["routes"][0]["route"]["cluster"] == "inbound|5000||"


def _modes(proxy: Proxy, *configs: ConfigObject) -> dict[int, list[str]]:
    out = {}
    for listener in build_listeners(proxy, world(configs=(CROSS_NETWORK_GATEWAY, *configs))):
        port = listener["address"]["socket_address"]["port_value"]
        if port != 15080:
            out[port] = [c.get("filter_chain_match", {}).get("transport_protocol", "any")
                         for c in listener["filter_chains"]]
    return out


def _pa(namespace: str, name: str, mode: str, selector: Mapping[str, str] | None = None,
        ports: Mapping[str, str] | None = None) -> ConfigObject:
    spec: dict[str, Any] = {"mtls": {"mode": mode}}
    if selector:
        spec["selector"] = {"matchLabels": dict(selector)}
    if ports:
        spec["portLevelMtls"] = {port: {"mode": m} for port, m in ports.items()}
    return ConfigObject("PeerAuthentication", namespace, name, spec)


def test_peer_authentication_precedence() -> None:
    proxy = hello_proxy(container_ports=(5000, 9000))
    mesh_strict = _pa("istio-system", "default", "STRICT")
    ns_permissive = _pa("sample", "default", "PERMISSIVE")
    workload_disable = _pa("sample", "hello", "DISABLE", {"app": "helloworld"})
    assert _modes(proxy) == {5000: ["tls", "raw_buffer"], 9000: ["tls", "raw_buffer"]}
    assert _modes(proxy, mesh_strict) == {5000: ["tls"], 9000: ["tls"]}
    assert _modes(proxy, mesh_strict, ns_permissive) == {5000: ["tls", "raw_buffer"], 9000: ["tls", "raw_buffer"]}
    assert _modes(proxy, mesh_strict, ns_permissive, workload_disable) == {5000: ["any"], 9000: ["any"]}
    other_workload = _pa("sample", "other", "DISABLE", {"app": "other"})
    assert _modes(proxy, mesh_strict, other_workload) == {5000: ["tls"], 9000: ["tls"]}
    unset = _pa("sample", "hello", "UNSET", {"app": "helloworld"}, {"9000": "DISABLE"})
    assert _modes(proxy, mesh_strict, unset) == {5000: ["tls"], 9000: ["any"]}
    # A PeerAuthentication in another namespace does not apply.
    assert _modes(proxy, _pa("other", "default", "STRICT")) == {5000: ["tls", "raw_buffer"],
                                                                9000: ["tls", "raw_buffer"]}


def test_namespace_disable_turns_auto_mtls_off_for_clients() -> None:
    snapshot = world(configs=(CROSS_NETWORK_GATEWAY, _pa("sample", "default", "DISABLE")))
    hello = by_name(build_clusters(sleep_proxy(), snapshot))[HELLO_5000]
    assert "transport_socket_matches" not in hello and "transport_socket" not in hello


def test_tcp_inbound_port_uses_tcp_proxy() -> None:
    listeners = by_name(build_listeners(hello_proxy(container_ports=(9000,)), world()))
    chain = listeners["127.1.0.10_9000"]["filter_chains"][0]
    assert chain["filters"][0]["typed_config"]["cluster"] == "inbound|9000||"
    assert chain["transport_socket"]["typed_config"]["common_tls_context"]["alpn_protocols"] == [
        "istio-peer-exchange", "istio"]


def test_sidecar_without_app_address_is_an_error() -> None:
    with pytest.raises(XdsError, match="app_address"):
        build_clusters(hello_proxy(app_address=""), world())


# ----------------------------------------------------------------------------------------------- consistency
def test_generate_checks_references() -> None:
    config = generate(sleep_proxy(), world())
    assert config.version == "7" and config.secrets == ()
    listeners = [dict(r) for r in config.listeners]
    broken = json.loads(json.dumps(listeners[0]))
    broken["filter_chains"][0]["filters"][0]["typed_config"]["rds"]["route_config_name"] = "nowhere"
    with pytest.raises(XdsError, match="RDS 'nowhere'"):
        check_consistency(sleep_proxy(), [broken], list(config.clusters), list(config.routes),
                          list(config.endpoints), None)
    with pytest.raises(XdsError, match="has no ClusterLoadAssignment"):
        check_consistency(sleep_proxy(), listeners, list(config.clusters), list(config.routes), [], None)
    with pytest.raises(XdsError, match="SDS secret 'default'"):
        check_consistency(sleep_proxy(), listeners, list(config.clusters), list(config.routes),
                          list(config.endpoints), [])
    with pytest.raises(XdsError, match="targets cluster"):
        check_consistency(sleep_proxy(), listeners, [c for c in config.clusters if c["name"] != HELLO_5000],
                          list(config.routes), list(config.endpoints), None)


# ------------------------------------------------------------------------------------------ envoy validates
def test_envoy_accepts_the_sleep_sidecar(tmp_path: Path, credential: ProxyCredential) -> None:
    config = generate(sleep_proxy(), world(), credential=credential)
    assert [s["name"] for s in config.secrets] == ["default", "ROOTCA"]
    envoy_validate(config, tmp_path)


def test_envoy_accepts_a_strict_helloworld_sidecar_and_the_eastwest_gateway(tmp_path: Path,
                                                                            credential: ProxyCredential) -> None:
    dr = ConfigObject("DestinationRule", "sample", "helloworld", {
        "host": "helloworld", "trafficPolicy": {"outlierDetection": {"consecutive5xxErrors": 1}},
        "subsets": [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]})
    snapshot = world(configs=(CROSS_NETWORK_GATEWAY, _pa("istio-system", "default", "STRICT"), dr))
    sidecar = generate(hello_proxy(container_ports=(9000,)), snapshot, credential=credential)
    envoy_validate(sidecar, tmp_path / "sidecar")
    gateway = generate(eastwest_proxy("cluster2"), snapshot, credential=credential)
    chains = [c["filter_chain_match"]["server_names"][0] for c in gateway.listeners[0]["filter_chains"]]
    assert f"outbound_.5000_.v1_.{HELLO}" in chains and f"outbound_.5000_.v2_.{HELLO}" in chains
    assert addresses(by_name(gateway.endpoints, "cluster_name")[f"outbound_.5000_.v1_.{HELLO}"]) == {
        "127.2.0.10:5000": 1}
    assert by_name(gateway.endpoints, "cluster_name")[f"outbound_.5000_.v2_.{HELLO}"]["endpoints"] == []
    envoy_validate(gateway, tmp_path / "gateway")
