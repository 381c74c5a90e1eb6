"""The DNS proxy's name table (NDS) as istiod builds it per proxy, from a mesh snapshot."""

from __future__ import annotations

import ipaddress

from labkit.emulator.mesh.model import ConfigObject, Endpoint, MeshConfig, MeshSnapshot, Proxy, Service, ServicePort
from labkit.emulator.mesh.xds.nametable import (
    NAME_TABLE_TYPE,
    NameInfo,
    NameTable,
    auto_allocated_address,
    build_name_table,
    from_wire,
    to_wire,
)

HTTP = (ServicePort("http", 5000, "HTTP"),)


def _proxy(cluster: str = "cluster1", capture: bool = True, network: str = "network1") -> Proxy:
    return Proxy(id="sidecar~127.1.1.5~curl-1.sample~sample.svc.cluster.local", type="sidecar", name="curl-1",
                 namespace="sample", ip="127.1.1.5", cluster=cluster, network=network,
                 metadata={"DNS_CAPTURE": "true"} if capture else {})


def _entry(name: str, spec: dict, namespace: str = "sample", labels: dict | None = None) -> ConfigObject:
    return ConfigObject("ServiceEntry", namespace, name, spec, labels or {})


def _snapshot(*services: Service, configs: tuple[ConfigObject, ...] = ()) -> MeshSnapshot:
    return MeshSnapshot(MeshConfig(), services, configs=configs)


def test_local_service_answers_with_the_proxy_clusters_cluster_ip() -> None:
    helloworld = Service("helloworld.sample.svc.cluster.local", "sample", "helloworld", HTTP,
                         addresses={"cluster1": "127.1.101.20", "cluster2": "127.1.102.20"})
    table = build_name_table(_proxy(), _snapshot(helloworld))
    assert table.table == {"helloworld.sample.svc.cluster.local": NameInfo(
        ("127.1.101.20",), "Kubernetes", "helloworld", "sample")}
    assert build_name_table(_proxy("cluster2"), _snapshot(helloworld)).addresses(
        "helloworld.sample.svc.cluster.local.") == ("127.1.102.20",)


def test_remote_only_service_answers_with_the_remote_cluster_ip() -> None:
    remote = Service("profile.demo.svc.cluster.local", "demo", "profile", HTTP, addresses={"cluster2": "127.1.102.7"})
    table = build_name_table(_proxy("cluster1"), _snapshot(remote))
    assert table.addresses("profile.demo.svc.cluster.local") == ("127.1.102.7",)
    assert table.table["profile.demo.svc.cluster.local"].is_kubernetes


def test_service_entry_with_addresses_answers_with_them() -> None:
    entry = _entry("svc-2", {"hosts": ["svc-2.bar.global"], "addresses": ["240.0.0.2"], "resolution": "DNS",
                             "location": "MESH_INTERNAL", "ports": [{"number": 8000, "name": "http"}]})
    table = build_name_table(_proxy(), _snapshot(configs=(entry,)))
    assert table.table == {"svc-2.bar.global": NameInfo(("240.0.0.2",), "External")}


def test_service_entry_without_addresses_gets_a_stable_address_from_240_240() -> None:
    entry = _entry("httpbin", {"hosts": ["httpbin.example.com"], "resolution": "DNS",
                               "ports": [{"number": 80, "name": "http"}]})
    other = _entry("other", {"hosts": ["a.example.com", "b.example.com"], "resolution": "STATIC"})
    table = build_name_table(_proxy(), _snapshot(configs=(entry,)))
    (address,) = table.addresses("httpbin.example.com")
    assert ipaddress.ip_address(address) in ipaddress.ip_network("240.240.0.0/16")
    # Stable: another entry coming along does not move it; hosts of one entry get different addresses.
    both = build_name_table(_proxy(), _snapshot(configs=(entry, other)))
    assert both.addresses("httpbin.example.com") == (address,)
    assert len({*both.addresses("a.example.com"), *both.addresses("b.example.com"), address}) == 3


def test_auto_allocation_only_for_capturing_proxies_and_allocatable_entries() -> None:
    entry = _entry("httpbin", {"hosts": ["httpbin.example.com"], "resolution": "DNS"})
    none = _entry("passthrough", {"hosts": ["none.example.com"], "resolution": "NONE"})
    opted_out = _entry("out", {"hosts": ["out.example.com"], "resolution": "DNS"},
                       labels={"networking.istio.io/enable-autoallocate-ip": "false"})
    wildcard = _entry("wild", {"hosts": ["*.wild.example.com"], "resolution": "DNS"})
    snapshot = _snapshot(configs=(entry, none, opted_out, wildcard))
    assert list(build_name_table(_proxy(), snapshot).table) == ["httpbin.example.com"]
    assert build_name_table(_proxy(capture=False), snapshot).table == {}


def test_collisions_probe_to_the_next_address() -> None:
    first = auto_allocated_address("sample", "x.example.com")
    taken = {first}
    assert auto_allocated_address("sample", "x.example.com", taken) != first
    assert len(taken) == 2


def test_kubernetes_service_wins_over_a_service_entry_for_the_same_host_and_entries_merge() -> None:
    kube = Service("helloworld.sample.svc.cluster.local", "sample", "helloworld", HTTP,
                   addresses={"cluster1": "127.1.101.20"})
    decorator = _entry("decorate", {"hosts": ["helloworld.sample.svc.cluster.local"], "addresses": ["240.0.0.9"]})
    one = _entry("one", {"hosts": ["db.example.com"], "addresses": ["240.0.0.1"]})
    two = _entry("two", {"hosts": ["db.example.com"], "addresses": ["240.0.0.2", "240.0.0.3"]})
    table = build_name_table(_proxy(), _snapshot(kube, configs=(decorator, one, two)))
    assert table.table["helloworld.sample.svc.cluster.local"] == NameInfo(("127.1.101.20",), "Kubernetes",
                                                                          "helloworld", "sample")
    assert table.addresses("db.example.com") == ("240.0.0.1", "240.0.0.2", "240.0.0.3")


def test_headless_service_answers_with_healthy_same_network_pod_ips() -> None:
    endpoints = (Endpoint("127.1.1.20", 5000, "http", network="network1", cluster="cluster1"),
                 Endpoint("127.1.2.20", 5000, "http", network="network1", cluster="cluster2"),
                 Endpoint("127.1.3.20", 5000, "http", network="network3", cluster="cluster3"),
                 Endpoint("127.1.1.21", 5000, "http", network="network1", cluster="cluster1", healthy=False))
    headless = Service("db.sample.svc.cluster.local", "sample", "db", HTTP, endpoints=endpoints,
                       resolution="PASSTHROUGH")
    table = build_name_table(_proxy(), _snapshot(headless))
    assert table.table == {"db.sample.svc.cluster.local": NameInfo(("127.1.1.20", "127.1.2.20"), "Kubernetes",
                                                                   "db", "sample")}
    empty = Service("none.sample.svc.cluster.local", "sample", "none", HTTP, resolution="PASSTHROUGH")
    assert build_name_table(_proxy(), _snapshot(empty)).table == {}


def test_export_to_hides_services_from_other_namespaces() -> None:
    private = Service("secret.other.svc.cluster.local", "other", "secret", HTTP, addresses={"cluster1": "127.1.101.9"},
                      exported_to=(".",))
    entry = _entry("private", {"hosts": ["private.example.com"], "addresses": ["240.0.0.5"], "exportTo": ["."]},
                   namespace="other")
    assert build_name_table(_proxy(), _snapshot(private, configs=(entry,))).table == {}


def test_wire_form_round_trips() -> None:
    table = NameTable({"helloworld.sample.svc.cluster.local": NameInfo(("127.1.101.20",), "Kubernetes",
                                                                       "helloworld", "sample"),
                       "svc-2.bar.global": NameInfo(("240.0.0.2",), "External")})
    wire = to_wire(table)
    assert wire == {"@type": NAME_TABLE_TYPE, "table": {
        "helloworld.sample.svc.cluster.local": {"ips": ["127.1.101.20"], "registry": "Kubernetes",
                                                "shortname": "helloworld", "namespace": "sample"},
        "svc-2.bar.global": {"ips": ["240.0.0.2"], "registry": "External"}}}
    assert from_wire(wire) == table
    assert from_wire({"table": {"x.example.com": {"ips": ["1.2.3.4"], "registry": "External",
                                                  "altHosts": ["y"]}}}).addresses("x.example.com") == ("1.2.3.4",)
