"""Load-balancer IPs from the pool every cluster shares, published by the cloud controller."""

from __future__ import annotations

import ipaddress

import pytest

from labkit.core.contract import LOAD_BALANCER_IP_ANNOTATION
from labkit.emulator.api.admission import default_object
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.network.addresses import ServiceRef


def svc(name: str, **spec) -> dict:
    return default_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
                           "spec": {"ports": [{"name": "http", "port": 80}], **spec}})


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


def test_a_service_of_another_load_balancer_class_stays_pending(two_clusters) -> None:
    cluster1, cluster2 = two_clusters

    async def scenario() -> None:
        cluster1.create(cluster1.service("nlb", None, type="LoadBalancer", loadBalancerClass="service.k8s.aws/nlb"))
        cluster1.create(cluster1.service("plain", None, type="LoadBalancer"))
        await cluster1.settle()
        assert cluster1.get("", "services", "plain", "default")["status"]["loadBalancer"]["ingress"]
        # No controller of that class runs here: EXTERNAL-IP <pending>, and no address taken from the pool.
        nlb = cluster1.get("", "services", "nlb", "default")
        assert not ((nlb.get("status") or {}).get("loadBalancer") or {}).get("ingress")
        assert cluster1.load_balancers.held_by(ServiceRef("cluster1", "default", "nlb")) is None

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
        # Events go only into namespaces that exist, as on a real cluster.
        cluster2.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
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
