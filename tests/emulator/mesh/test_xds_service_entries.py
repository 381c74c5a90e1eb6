"""Replicated control planes federated by ServiceEntries (Lab 4), from the Kubernetes and Istio objects each
cluster's istiod reads to the Envoy config it builds, every proxy's config validated by the real Envoy.

cluster1 (network1) and cluster2 (network2) each run their own istiod and read nothing of the other cluster:

- cluster1 declares ``svc-2.bar.global`` (address 240.0.0.2) with one endpoint, cluster2's east-west gateway on
  15443 in ``network2``; its sidecars must dial that gateway with mTLS and the SNI
  ``outbound_.8000_._.svc-2.bar.global``, verifying svc-2's identity;
- cluster2 declares the same host with a ``workloadSelector`` over svc-2's pods and exposes ``*.global`` on its
  gateway with AUTO_PASSTHROUGH, so the gateway forwards that SNI to svc-2's pod, and nothing else of ``bar``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from labkit.emulator.mesh.discovery import ClusterView, build_snapshot, proxy_of
from labkit.emulator.mesh.model import MeshConfig, MeshSnapshot, Proxy
from labkit.emulator.mesh.xds import ProxyCredential, build_endpoints, build_name_table, generate
from labkit.pki import CertificateAuthority
from tests.emulator.mesh.test_xds_multicluster import envoy_validate

HOST = "svc-2.bar.global"
CLUSTER = f"outbound|8000||{HOST}"
SNI = f"outbound_.8000_._.{HOST}"
GATEWAY_IP = "127.2.255.1"
SVC2_ID = "spiffe://cluster.local/ns/bar/sa/svc-2"
MESH = MeshConfig()


def namespace(name: str, network: str = "") -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"topology.istio.io/network": network} if network else {}}}


def pod(name: str, ns: str, ip: str, labels: Mapping[str, str], *, port: int = 8000, sa: str = "",
        router: bool = False, ready: bool = True) -> dict[str, Any]:
    proxy = {"name": "istio-proxy", "args": ["proxy", "router" if router else "sidecar"],
             "env": [{"name": "ISTIO_META_DNS_CAPTURE", "value": "true"}]}
    if router:
        proxy["env"].append({"name": "ISTIO_META_REQUESTED_NETWORK_VIEW", "value": "network2"})
    containers = [proxy] if router else [{"name": "app", "ports": [{"name": "http", "containerPort": port}]}, proxy]
    return {"metadata": {"name": name, "namespace": ns, "uid": name,
                         "labels": {**labels, **({} if router else {"security.istio.io/tlsMode": "istio"})},
                         "annotations": {"labkit.io/app-address": ip.replace(".0.", ".64.")}},
            "spec": {"containers": containers, "serviceAccountName": sa or name.rsplit("-", 1)[0]},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def service(name: str, ns: str, cluster_ip: str, port: int = 8000) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": cluster_ip, "selector": {"app": name},
                     "ports": [{"name": "http", "port": port, "targetPort": port}]}}


def endpoints(name: str, ns: str, pods: Sequence[tuple[str, str]], port: int = 8000) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns}, "subsets": [{
        "addresses": [{"ip": ip, "targetRef": {"kind": "Pod", "namespace": ns, "name": p}} for p, ip in pods],
        "ports": [{"name": "http", "port": port}]}]}


def eastwest_gateway(ip: str, network: str) -> dict[str, Any]:
    return {"metadata": {"name": "istio-eastwestgateway", "namespace": "istio-system",
                         "labels": {"topology.istio.io/network": network, "istio": "eastwestgateway"}},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.2.0.9", "ports": [{"name": "tls", "port": 15443}]},
            "status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}


def entry_in_cluster1(**spec: Any) -> dict[str, Any]:
    """The lab's ServiceEntry in cluster1: svc-2 reached through cluster2's gateway."""
    body = {"hosts": [HOST], "location": "MESH_INTERNAL", "addresses": ["240.0.0.2"], "resolution": "STATIC",
            "ports": [{"number": 8000, "name": "http", "protocol": "HTTP"}],
            "subjectAltNames": [SVC2_ID],
            "endpoints": [{"address": GATEWAY_IP, "network": "network2", "ports": {"http": 15443},
                           "labels": {"security.istio.io/tlsMode": "istio"}}]}
    body.update(spec)
    return {"kind": "ServiceEntry", "metadata": {"name": "svc-2", "namespace": "foo"}, "spec": body}


def entry_in_cluster2(**spec: Any) -> dict[str, Any]:
    """The lab's ServiceEntry in cluster2: the same host, its endpoints svc-2's own pods."""
    body = {"hosts": [HOST], "location": "MESH_INTERNAL", "resolution": "STATIC",
            "ports": [{"number": 8000, "name": "http", "protocol": "HTTP"}],
            "workloadSelector": {"labels": {"app": "svc-2"}}}
    body.update(spec)
    return {"kind": "ServiceEntry", "metadata": {"name": "svc-2", "namespace": "bar"}, "spec": body}


GLOBAL_GATEWAY = {"kind": "Gateway", "metadata": {"name": "cross-network-gateway", "namespace": "istio-system"},
                  "spec": {"selector": {"istio": "eastwestgateway"}, "servers": [{
                      "port": {"number": 15443, "name": "tls", "protocol": "TLS"},
                      "tls": {"mode": "AUTO_PASSTHROUGH"}, "hosts": ["*.global"]}]}}

SVC1 = pod("svc-1-a", "foo", "127.1.0.10", {"app": "svc-1"})
SVC2 = pod("svc-2-a", "bar", "127.2.0.10", {"app": "svc-2"})
SVC3 = pod("svc-3-a", "bar", "127.2.0.11", {"app": "svc-3"})
GATEWAY = pod("istio-eastwestgateway-a", "istio-system", "127.2.0.20",
              {"istio": "eastwestgateway", "topology.istio.io/network": "network2"}, router=True,
              sa="istio-eastwestgateway-service-account")


def cluster1(*configs: dict[str, Any]) -> MeshSnapshot:
    view = ClusterView("cluster1", namespaces=[namespace("istio-system", "network1"), namespace("foo")],
                       services=[service("svc-1", "foo", "10.1.0.10")],
                       endpoints=[endpoints("svc-1", "foo", [("svc-1-a", "127.1.0.10")])], pods=[SVC1])
    return build_snapshot([view], MESH, list(configs), local_network="network1")


def cluster2(*configs: dict[str, Any], svc2: dict[str, Any] = SVC2) -> MeshSnapshot:
    view = ClusterView("cluster2", namespaces=[namespace("istio-system", "network2"), namespace("bar")],
                       services=[service("svc-2", "bar", "10.2.0.10"), service("svc-3", "bar", "10.2.0.11"),
                                 eastwest_gateway(GATEWAY_IP, "network2")],
                       endpoints=[endpoints("svc-2", "bar", [("svc-2-a", svc2["status"]["podIP"])]),
                                  endpoints("svc-3", "bar", [("svc-3-a", "127.2.0.11")])],
                       pods=[svc2, SVC3, GATEWAY])
    return build_snapshot([view], MESH, list(configs), local_network="network2")


def proxy(pod_object: dict[str, Any], cluster: str, network: str) -> Proxy:
    found = proxy_of(pod_object, cluster, network, "cluster.local", {})
    assert found is not None
    return found


def socket_addresses(cla: Mapping[str, Any]) -> list[tuple[str, int, str]]:
    """``(ip, port, tlsMode)`` of every endpoint of a ClusterLoadAssignment."""
    found = []
    for group in cla["endpoints"]:
        for lb in group["lb_endpoints"]:
            address = lb["endpoint"]["address"]["socket_address"]
            match = lb.get("metadata", {}).get("filter_metadata", {}).get("envoy.transport_socket_match", {})
            found.append((address["address"], address["port_value"], match.get("tlsMode", "")))
    return found


@pytest.fixture(scope="module")
def credential(cluster1_ca: CertificateAuthority) -> ProxyCredential:
    issued = cluster1_ca.issue_workload("spiffe://cluster.local/ns/foo/sa/svc-1")
    return ProxyCredential(issued.cert_chain_pem, issued.key_pem, {"cluster.local": issued.root_pem})


# ----------------------------------------------------------------------------------------------- cluster1
def test_cluster1_sidecar_dials_the_other_networks_gateway_with_mtls_and_the_entry_sni(
        tmp_path: Path, credential: ProxyCredential) -> None:
    snapshot = cluster1(entry_in_cluster1())
    config = generate(proxy(SVC1, "cluster1", "network1"), snapshot, credential=credential)
    clusters = {c["name"]: c for c in config.clusters}
    assert clusters[CLUSTER]["type"] == "EDS"
    (mtls, plain) = clusters[CLUSTER]["transport_socket_matches"]
    tls = mtls["transport_socket"]["typed_config"]
    assert mtls["match"] == {"tlsMode": "istio"} and tls["sni"] == SNI
    assert tls["common_tls_context"]["combined_validation_context"]["default_validation_context"][
        "match_typed_subject_alt_names"] == [{"san_type": "URI", "matcher": {"exact": SVC2_ID}}]
    assert plain["match"] == {}
    # cluster1's istiod knows no gateway of network2: the entry's endpoint is dialled as written, marked for mTLS.
    (cla,) = [e for e in config.endpoints if e["cluster_name"] == CLUSTER]
    assert socket_addresses(cla) == [(GATEWAY_IP, 15443, "istio")]
    vhosts = {v["name"]: v for r in config.routes if r["name"] == "http_proxy" for v in r["virtual_hosts"]}
    assert vhosts[f"{HOST}:8000"]["domains"] == [f"{HOST}:8000", "240.0.0.2:8000"]
    assert vhosts[f"{HOST}:8000"]["routes"][0]["route"]["cluster"] == CLUSTER
    envoy_validate(config, tmp_path)


def test_cluster1_dns_proxy_answers_the_entry_address_and_forgets_it_with_the_entry() -> None:
    svc1 = proxy(SVC1, "cluster1", "network1")
    table = build_name_table(svc1, cluster1(entry_in_cluster1()))
    assert table.table[HOST].ips == ("240.0.0.2",) and not table.table[HOST].is_kubernetes
    assert HOST not in build_name_table(svc1, cluster1()).table


def test_an_entry_endpoint_without_mtls_on_another_network_is_dropped() -> None:
    plain = entry_in_cluster1(endpoints=[{"address": GATEWAY_IP, "network": "network2", "ports": {"http": 15443}}])
    svc1 = proxy(SVC1, "cluster1", "network1")
    (cla,) = build_endpoints(svc1, cluster1(plain), [CLUSTER])
    assert cla["endpoints"] == []  # Istio never sends plaintext across networks
    with_account = entry_in_cluster1(endpoints=[{"address": GATEWAY_IP, "network": "network2",
                                                 "ports": {"http": 15443}, "serviceAccount": "svc-2"}])
    (cla,) = build_endpoints(svc1, cluster1(with_account), [CLUSTER])
    assert socket_addresses(cla) == [(GATEWAY_IP, 15443, "istio")]  # a serviceAccount implies mTLS


# ----------------------------------------------------------------------------------------------- cluster2
def test_cluster2_gateway_passes_the_entry_sni_through_to_the_selected_pods(
        tmp_path: Path, credential: ProxyCredential) -> None:
    snapshot = cluster2(entry_in_cluster2(), GLOBAL_GATEWAY)
    service = snapshot.service(HOST)
    assert service is not None and [(e.address, e.port, e.tls_mode, e.service_account) for e in service.endpoints] \
        == [("127.2.0.10", 8000, "istio", SVC2_ID)]
    config = generate(proxy(GATEWAY, "cluster2", "network2"), snapshot, credential=credential)
    (listener,) = config.listeners
    assert listener["name"] == "127.2.0.20_15443"
    (chain,) = listener["filter_chains"]  # *.global covers the entry only, not svc-2/svc-3's cluster.local names
    assert chain["filter_chain_match"] == {"server_names": [SNI]}
    assert chain["filters"][0]["typed_config"]["cluster"] == SNI
    clusters = {c["name"]: c for c in config.clusters}
    assert "transport_socket" not in clusters[SNI] and "transport_socket_matches" not in clusters[SNI]
    (cla,) = [e for e in config.endpoints if e["cluster_name"] == SNI]
    assert socket_addresses(cla) == [("127.2.0.10", 8000, "istio")]
    envoy_validate(config, tmp_path)


def test_cluster2_gateway_exposes_nothing_without_the_entry() -> None:
    snapshot = cluster2(GLOBAL_GATEWAY)
    config = generate(proxy(GATEWAY, "cluster2", "network2"), snapshot)
    (listener,) = config.listeners
    assert [c["filter_chain_match"]["server_names"] for c in listener["filter_chains"]] == [
        ["no-service-matches-this-gateway.invalid"]]


def test_workload_selector_follows_pods_and_their_readiness() -> None:
    moved = pod("svc-2-b", "bar", "127.2.0.12", {"app": "svc-2"}, ready=False)
    service = cluster2(entry_in_cluster2(), svc2=moved).service(HOST)
    assert service is not None
    assert [(e.address, e.healthy, e.workload) for e in service.endpoints] == [("127.2.0.12", False, "bar/svc-2-b")]
    other_namespace = {**entry_in_cluster2(), "metadata": {"name": "svc-2", "namespace": "foo"}}
    assert cluster2(other_namespace).service(HOST).endpoints == ()  # a selector only reaches its own namespace


def test_mesh_external_entries_are_not_passed_through() -> None:
    snapshot = cluster2(entry_in_cluster2(location="MESH_EXTERNAL"), GLOBAL_GATEWAY)
    config = generate(proxy(GATEWAY, "cluster2", "network2"), snapshot)
    assert SNI not in {c["name"] for c in config.clusters}


def test_kubernetes_service_wins_over_an_entry_of_the_same_host_and_none_resolution_is_left_out() -> None:
    same_host = entry_in_cluster2(hosts=["svc-2.bar.svc.cluster.local"])
    snapshot = cluster2(same_host)
    (svc2,) = [s for s in snapshot.services if s.hostname == "svc-2.bar.svc.cluster.local"]
    assert svc2.name == "svc-2"
    assert cluster2(entry_in_cluster2(resolution="NONE")).service(HOST) is None
