"""ClusterIPs and node ports at admission; load-balancer IPs from the pool every cluster shares."""

from __future__ import annotations

import ipaddress

import pytest

from labkit.emulator.addresses import IpPool
from labkit.emulator.controllers import LOAD_BALANCER_IP_ANNOTATION, ServiceAllocator, default_object
from labkit.emulator.status import StatusError


def svc(name: str, **spec) -> dict:
    return default_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
                           "spec": {"ports": [{"name": "http", "port": 80}], **spec}})


@pytest.fixture
def allocator() -> ServiceAllocator:
    network = ipaddress.IPv4Network("127.9.101.0/24")
    return ServiceAllocator(IpPool(network, reserved=frozenset({"127.9.101.1"}), what="ClusterIP"))


def test_cluster_ip_is_allocated_and_released(allocator) -> None:
    first = allocator.allocate(svc("a"))
    assert first["spec"]["clusterIP"] == "127.9.101.2"
    assert first["spec"]["clusterIPs"] == ["127.9.101.2"]
    assert "nodePort" not in first["spec"]["ports"][0]
    assert allocator.allocate(svc("b"))["spec"]["clusterIP"] == "127.9.101.3"
    allocator.release(first)
    assert allocator.allocate(svc("c"))["spec"]["clusterIP"] == "127.9.101.2"


def test_requested_cluster_ip_is_honoured_and_conflicts_are_refused(allocator) -> None:
    assert allocator.allocate(svc("dns", clusterIP="127.9.101.10"))["spec"]["clusterIP"] == "127.9.101.10"
    with pytest.raises(StatusError) as taken:
        allocator.allocate(svc("other", clusterIP="127.9.101.10"))
    assert taken.value.code == 422
    assert "failed to allocate IP 127.9.101.10: provided IP is already allocated" in taken.value.message
    with pytest.raises(StatusError, match="not in the valid range"):
        allocator.allocate(svc("far", clusterIP="10.0.0.1"))


def test_headless_and_external_name_get_no_address(allocator) -> None:
    headless = allocator.allocate(svc("h", clusterIP="None"))
    assert headless["spec"]["clusterIPs"] == ["None"]
    external = allocator.allocate(svc("e", type="ExternalName", externalName="example.com"))
    assert "clusterIP" not in external["spec"]


def test_update_keeps_the_cluster_ip_and_refuses_to_change_it(allocator) -> None:
    old = allocator.allocate(svc("a"))
    update = svc("a")  # a PUT without clusterIP keeps the allocated one
    assert allocator.allocate(update, old)["spec"]["clusterIP"] == old["spec"]["clusterIP"]
    with pytest.raises(StatusError, match="may not change once set"):
        allocator.allocate(svc("a", clusterIP="127.9.101.50"), old)


def test_node_ports_are_allocated_kept_and_conflicts_refused(allocator) -> None:
    node_port = allocator.allocate(svc("np", type="NodePort"))
    port = node_port["spec"]["ports"][0]["nodePort"]
    assert 30000 <= port <= 32767
    again = allocator.allocate(svc("np", type="NodePort"), node_port)
    assert again["spec"]["ports"][0]["nodePort"] == port
    wanted = svc("fixed", type="NodePort", ports=[{"port": 80, "nodePort": port}])
    with pytest.raises(StatusError, match="provided port is already allocated"):
        allocator.allocate(wanted)
    # A refused request leaves nothing allocated behind it.
    assert allocator.allocate(svc("next"))["spec"]["clusterIP"] == "127.9.101.3"


def test_load_balancer_gets_an_address_from_the_shared_pool(two_clusters) -> None:
    cluster1, cluster2 = two_clusters

    async def scenario() -> None:
        gw1 = cluster1.create(cluster1.service("eastwest", None, type="LoadBalancer"))
        gw2 = cluster2.create(cluster2.service("eastwest", None, type="LoadBalancer"))
        assert gw1["spec"]["ports"][0]["nodePort"] >= 30000
        await cluster1.settle()
        await cluster2.settle()
        ip1 = cluster1.get("", "services", "eastwest", "default")["status"]["loadBalancer"]["ingress"][0]["ip"]
        ip2 = cluster2.get("", "services", "eastwest", "default")["status"]["loadBalancer"]["ingress"][0]["ip"]
        assert ip1 != ip2
        assert ipaddress.IPv4Address(ip1) in ipaddress.IPv4Network("127.9.200.0/24")
        clusterip = cluster1.get("", "services", "eastwest", "default")
        assert clusterip["spec"]["clusterIP"] == gw1["spec"]["clusterIP"]
        assert cluster2.get("", "services", "eastwest", "default")["spec"]["clusterIP"] == gw2["spec"]["clusterIP"]

    cluster1.run(scenario, cluster2)


def test_requested_load_balancer_ip_is_honoured_and_a_conflict_refused(two_clusters) -> None:
    cluster1, cluster2 = two_clusters

    async def scenario() -> None:
        wanted = "127.9.200.50"
        cluster1.create(cluster1.service("ingress", None, type="LoadBalancer", loadBalancerIP=wanted))
        annotated = cluster2.service("ingress", None, type="LoadBalancer")
        annotated["metadata"]["annotations"] = {LOAD_BALANCER_IP_ANNOTATION: "127.9.200.51"}
        cluster2.create(annotated)
        await cluster1.settle()
        await cluster2.settle()
        ingress = cluster1.get("", "services", "ingress", "default")["status"]["loadBalancer"]["ingress"]
        assert ingress == [{"ip": wanted}]
        ingress = cluster2.get("", "services", "ingress", "default")["status"]["loadBalancer"]["ingress"]
        assert ingress == [{"ip": "127.9.200.51"}]

        # The other cluster asking for the same address is refused at admission, naming the holder.
        with pytest.raises(StatusError) as refused:
            cluster2.create(cluster2.service("thief", None, type="LoadBalancer", loadBalancerIP=wanted))
        assert refused.value.code == 422
        assert "already allocated to Service default/ingress in cluster cluster1" in refused.value.message

    cluster1.run(scenario, cluster2)


def test_a_racing_request_waits_with_a_warning_until_the_address_is_free(two_clusters) -> None:
    cluster1, cluster2 = two_clusters

    async def scenario() -> None:
        wanted = "127.9.200.60"
        cluster1.create(cluster1.service("a", None, type="LoadBalancer", loadBalancerIP=wanted))
        # Both admitted before the cloud controller ran (the store is written directly here).
        cluster2.store.create("", "services", cluster2.allocator.allocate(
            svc("b", type="LoadBalancer", loadBalancerIP=wanted)))
        await cluster1.settle()
        await cluster2.settle()
        b = cluster2.get("", "services", "b", "default")
        assert b["status"]["loadBalancer"] == {}
        (event,) = [e for e in cluster2.list("", "events", "default") if e["type"] == "Warning"]
        assert event["type"] == "Warning" and event["reason"] == "SyncLoadBalancerFailed"
        assert wanted in event["message"] and "cluster1" in event["message"]

        cluster1.delete("", "services", "a", "default")
        await cluster1.settle()
        await cluster2.settle()
        ingress = cluster2.get("", "services", "b", "default")["status"]["loadBalancer"]["ingress"]
        assert ingress == [{"ip": wanted}]

    cluster1.run(scenario, cluster2)


def test_changing_type_away_from_load_balancer_releases_the_address(cluster) -> None:
    async def scenario() -> None:
        cluster.create(cluster.service("gw", None, type="LoadBalancer"))
        await cluster.settle()
        address = cluster.get("", "services", "gw", "default")["status"]["loadBalancer"]["ingress"][0]["ip"]
        assert cluster.load_balancers.pool.in_use(address)
        gw = cluster.get("", "services", "gw", "default")
        gw["spec"]["type"] = "ClusterIP"
        cluster.update(gw)
        await cluster.settle()
        gw = cluster.get("", "services", "gw", "default")
        assert gw["status"]["loadBalancer"] == {}
        assert "nodePort" not in gw["spec"]["ports"][0]
        assert not cluster.load_balancers.pool.in_use(address)

    cluster.run(scenario)
