"""Cluster names: the Kubernetes DNS specification's records, the pod search path and ndots."""

from __future__ import annotations

from typing import Any

import pytest

from labkit.emulator.network import Answer, ClusterNames, Srv


def service(name: str, namespace: str = "sample", cluster_ip: str | None = "127.150.101.20", **spec: Any) -> dict:
    body: dict[str, Any] = {"ports": [{"name": "http", "port": 5000, "protocol": "TCP"}], **spec}
    if cluster_ip is not None:
        body["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": body}


def endpoints(name: str, ready: list[dict], not_ready: tuple[dict, ...] = (), namespace: str = "sample") -> dict:
    subset: dict[str, Any] = {"addresses": ready, "ports": [{"name": "http", "port": 5000, "protocol": "TCP"}]}
    if not_ready:
        subset["notReadyAddresses"] = list(not_ready)
    return {"metadata": {"name": name, "namespace": namespace}, "subsets": [subset]}


@pytest.fixture
def names() -> ClusterNames:
    names = ClusterNames()
    names.update_service(service("helloworld"))
    names.update_service(service("kubernetes", namespace="default", cluster_ip="127.150.101.1"))
    return names


@pytest.mark.parametrize("name", ["helloworld", "helloworld.sample", "helloworld.sample.svc",
                                  "helloworld.sample.svc.cluster.local", "helloworld.sample.svc.cluster.local.",
                                  "HelloWorld.Sample"])
def test_a_service_resolves_to_its_cluster_ip_from_its_namespace(names: ClusterNames, name: str) -> None:
    assert names.resolve(name, "sample") == ["127.150.101.20"]


def test_a_short_name_only_resolves_from_its_own_namespace(names: ClusterNames) -> None:
    assert names.resolve("helloworld", "other") == []
    assert names.resolve("helloworld.sample", "other") == ["127.150.101.20"]
    assert names.resolve("kubernetes.default", None) == ["127.150.101.1"]


def test_the_search_path_and_ndots_decide_the_order_of_candidates(names: ClusterNames) -> None:
    assert names.candidates("helloworld", "sample") == [
        "helloworld.sample.svc.cluster.local.", "helloworld.svc.cluster.local.", "helloworld.cluster.local.",
        "helloworld."]
    assert names.candidates("a.b.c.d.e.f", "sample")[0] == "a.b.c.d.e.f."  # five dots: tried as is first
    assert names.candidates("helloworld.", "sample") == ["helloworld."]


def test_unknown_names_are_nxdomain_and_known_parents_exist_without_records(names: ClusterNames) -> None:
    assert names.lookup("nope.sample.svc.cluster.local") is None
    assert names.lookup("helloworld.nope.svc.cluster.local") is None
    assert names.lookup("www.example.com") is None
    assert names.resolve("nope", "sample") == []
    assert names.lookup("sample.svc.cluster.local.") == Answer("sample.svc.cluster.local.")
    assert names.lookup("cluster.local") == Answer("cluster.local.")


def test_a_removed_service_no_longer_resolves(names: ClusterNames) -> None:
    names.remove_service("sample", "helloworld")
    names.remove_service("sample", "helloworld")  # idempotent
    assert names.resolve("helloworld", "sample") == []


def test_a_headless_service_resolves_to_its_ready_endpoints_and_their_hostnames() -> None:
    names = ClusterNames()
    names.update_service(service("db", cluster_ip="None"))
    assert names.resolve("db", "sample") == []  # no Endpoints yet
    names.update_endpoints(endpoints("db", [{"ip": "127.150.1.5", "hostname": "db-0"}, {"ip": "127.150.1.6"}],
                                    not_ready=[{"ip": "127.150.1.7", "hostname": "db-2"}]))
    assert names.resolve("db", "sample") == ["127.150.1.5", "127.150.1.6"]
    assert names.resolve("db-0.db", "sample") == ["127.150.1.5"]
    assert names.resolve("127-150-1-6.db.sample.svc.cluster.local.") == ["127.150.1.6"]
    assert names.resolve("db-2.db", "sample") == []  # not ready
    names.update_service(service("db", cluster_ip="None", publishNotReadyAddresses=True))
    assert names.resolve("db", "sample") == ["127.150.1.5", "127.150.1.6", "127.150.1.7"]
    names.remove_endpoints("sample", "db")
    assert names.resolve("db", "sample") == []


def test_an_external_name_service_answers_with_its_cname_chain(names: ClusterNames) -> None:
    names.update_service(service("db", cluster_ip=None, type="ExternalName", externalName="db.example.com"))
    names.update_service(service("hello", cluster_ip=None, type="ExternalName",
                                 externalName="helloworld.sample.svc.cluster.local"))
    assert names.lookup("db.sample.svc.cluster.local").cname == "db.example.com."  # type: ignore[union-attr]
    assert names.resolve("db", "sample") == ["db.example.com."]
    assert names.resolve("hello", "sample") == ["helloworld.sample.svc.cluster.local.", "127.150.101.20"]


def test_external_name_cycles_end(names: ClusterNames) -> None:
    names.update_service(service("a", cluster_ip=None, type="ExternalName", externalName="b.sample.svc.cluster.local"))
    names.update_service(service("b", cluster_ip=None, type="ExternalName", externalName="a.sample.svc.cluster.local"))
    assert names.resolve("a", "sample") == ["b.sample.svc.cluster.local.", "a.sample.svc.cluster.local."]


def test_named_ports_have_srv_records(names: ClusterNames) -> None:
    answer = names.lookup("_http._tcp.helloworld.sample.svc.cluster.local")
    assert answer is not None
    assert answer.srv == (Srv("helloworld.sample.svc.cluster.local.", 5000),)
    assert names.lookup("_grpc._tcp.helloworld.sample.svc.cluster.local") is None
    names.update_service(service("db", cluster_ip="None"))
    names.update_endpoints(endpoints("db", [{"ip": "127.150.1.5", "hostname": "db-0"}, {"ip": "127.150.1.6"}]))
    targets = {s.target for s in names.lookup("_http._tcp.db.sample.svc.cluster.local").srv}  # type: ignore[union-attr]
    assert targets == {"db-0.db.sample.svc.cluster.local.", "127-150-1-6.db.sample.svc.cluster.local."}


def test_pod_names_resolve_only_for_pods_of_that_namespace(names: ClusterNames) -> None:
    pod = {"metadata": {"name": "sleep-1", "namespace": "sample"}, "status": {"podIP": "127.150.1.9"}}
    names.update_pod(pod)
    assert names.resolve("127-150-1-9.sample.pod.cluster.local.") == ["127.150.1.9"]
    assert names.resolve("127-150-1-9.other.pod.cluster.local.") == []
    names.remove_pod("sample", "sleep-1")
    assert names.resolve("127-150-1-9.sample.pod.cluster.local.") == []


def test_another_cluster_domain() -> None:
    names = ClusterNames(domain="cluster2.local.")
    names.update_service(service("helloworld"))
    assert names.resolve("helloworld", "sample") == ["127.150.101.20"]
    assert names.lookup("helloworld.sample.svc.cluster.local") is None
