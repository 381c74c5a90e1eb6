"""Endpoints and EndpointSlices follow pods, readiness, headless Services and hand-written Endpoints."""

from __future__ import annotations

import re
from typing import Any

from labkit.emulator.controllers.deployments import SAFE_ALPHABET


def slices_of(cluster, name: str, namespace: str = "default") -> list[dict[str, Any]]:
    return cluster.list("discovery.k8s.io", "endpointslices", namespace, f"kubernetes.io/service-name={name}")


def test_endpoints_and_slices_follow_readiness(cluster) -> None:
    async def scenario() -> None:
        cluster.create(cluster.deployment("web", replicas=2))
        cluster.create(cluster.service("web", {"app": "web"}, ports=[{"name": "http", "port": 80,
                                                                      "targetPort": "http"}]))
        await cluster.settle()
        endpoints = cluster.get("", "endpoints", "web", "default")
        assert "subsets" not in endpoints  # pods without an IP are not endpoints yet
        (placeholder,) = slices_of(cluster, "web")
        assert placeholder["endpoints"] == []

        first, second = sorted(cluster.list("", "pods", "default"), key=lambda p: p["metadata"]["name"])
        first = cluster.set_pod_status(first, ready=True)
        second = cluster.set_pod_status(second, ready=False)
        await cluster.settle()
        (subset,) = cluster.get("", "endpoints", "web", "default")["subsets"]
        assert subset["addresses"] == [{
            "ip": first["status"]["podIP"], "nodeName": "cluster1-control-plane",
            "targetRef": {"kind": "Pod", "namespace": "default", "name": first["metadata"]["name"],
                          "uid": first["metadata"]["uid"]},
        }]
        assert [a["ip"] for a in subset["notReadyAddresses"]] == [second["status"]["podIP"]]
        # The named targetPort resolves to the container's port 5000.
        assert subset["ports"] == [{"name": "http", "port": 5000, "protocol": "TCP"}]

        (eps,) = slices_of(cluster, "web")
        assert re.fullmatch(f"web-[{SAFE_ALPHABET}]{{5}}", eps["metadata"]["name"])
        assert eps["addressType"] == "IPv4"
        assert eps["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
        assert eps["metadata"]["ownerReferences"][0]["kind"] == "Service"
        assert eps["ports"] == [{"name": "http", "port": 5000, "protocol": "TCP"}]
        by_ip = {e["addresses"][0]: e for e in eps["endpoints"]}
        assert by_ip[first["status"]["podIP"]]["conditions"] == {"ready": True, "serving": True, "terminating": False}
        assert by_ip[second["status"]["podIP"]]["conditions"] == {"ready": False, "serving": False,
                                                                  "terminating": False}
        assert by_ip[first["status"]["podIP"]]["targetRef"]["name"] == first["metadata"]["name"]
        assert by_ip[first["status"]["podIP"]]["nodeName"] == "cluster1-control-plane"

        cluster.set_pod_status(second, ready=True)
        await cluster.settle()
        (subset,) = cluster.get("", "endpoints", "web", "default")["subsets"]
        assert len(subset["addresses"]) == 2 and "notReadyAddresses" not in subset
        (eps,) = slices_of(cluster, "web")
        assert all(e["conditions"]["ready"] for e in eps["endpoints"])
        assert eps["metadata"]["name"] == placeholder["metadata"]["name"]  # updated, not replaced

    cluster.run(scenario)


def test_terminating_pods_leave_endpoints_but_stay_in_slices(cluster) -> None:
    async def scenario() -> None:
        pod = cluster.create({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "default", "labels": {"app": "web"},
                         "finalizers": ["test.labkit.io/hold"]},
            "spec": {"containers": [{"name": "app", "image": "helloworld:v1"}]},
        })
        cluster.create(cluster.service("web", {"app": "web"}))
        cluster.set_pod_status(pod, ready=True)
        await cluster.settle()
        assert cluster.get("", "endpoints", "web", "default")["subsets"][0]["addresses"]
        cluster.delete("", "pods", "web-0", "default")  # held by its finalizer: terminating
        await cluster.settle()
        assert "subsets" not in cluster.get("", "endpoints", "web", "default")
        (eps,) = slices_of(cluster, "web")
        assert eps["endpoints"][0]["conditions"] == {"ready": False, "serving": True, "terminating": True}

    cluster.run(scenario)


def test_headless_service_gets_endpoints_too(cluster) -> None:
    async def scenario() -> None:
        cluster.create(cluster.deployment("db", replicas=1))
        svc = cluster.create(cluster.service("db", {"app": "db"}, clusterIP="None"))
        assert svc["spec"]["clusterIP"] == "None"
        await cluster.settle()
        cluster.start_pods()
        await cluster.settle()
        endpoints = cluster.get("", "endpoints", "db", "default")
        assert endpoints["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
        assert len(endpoints["subsets"][0]["addresses"]) == 1
        (eps,) = slices_of(cluster, "db")
        assert eps["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
        assert eps["endpoints"][0]["conditions"]["ready"] is True

    cluster.run(scenario)


def test_hand_written_endpoints_are_kept_and_mirrored(cluster) -> None:
    """Lab 3: a selector-less headless Service whose Endpoints point at another cluster's load balancer."""

    async def scenario() -> None:
        cluster.create(cluster.service("nginx", None, clusterIP="None",
                                       ports=[{"name": "https", "port": 8443}]))
        written = cluster.create({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "nginx", "namespace": "default", "labels": {"team": "edge"}},
            "subsets": [{"addresses": [{"ip": "127.9.200.7"}], "ports": [{"name": "https", "port": 8443}]}],
        })
        await cluster.settle()
        assert cluster.get("", "endpoints", "nginx", "default")["subsets"] == written["subsets"]
        (eps,) = slices_of(cluster, "nginx")
        labels = eps["metadata"]["labels"]
        assert labels["endpointslice.kubernetes.io/managed-by"] == "endpointslicemirroring-controller.k8s.io"
        assert labels["team"] == "edge"
        assert eps["metadata"]["ownerReferences"][0]["kind"] == "Endpoints"
        assert eps["endpoints"] == [{"addresses": ["127.9.200.7"],
                                     "conditions": {"ready": True, "serving": True, "terminating": False}}]
        assert eps["ports"] == [{"name": "https", "port": 8443, "protocol": "TCP"}]

        written = cluster.get("", "endpoints", "nginx", "default")
        written["subsets"][0]["addresses"].append({"ip": "127.9.200.8"})
        cluster.update(written)
        await cluster.settle()
        (eps,) = slices_of(cluster, "nginx")
        assert [e["addresses"][0] for e in eps["endpoints"]] == ["127.9.200.7", "127.9.200.8"]

        # Deleting the Service stops the mirroring; the user's Endpoints stay theirs.
        cluster.delete("", "services", "nginx", "default")
        await cluster.settle()
        assert slices_of(cluster, "nginx") == []
        assert cluster.find("", "endpoints", "nginx", "default") is not None

    cluster.run(scenario)


def test_deleting_a_service_removes_its_endpoints(cluster) -> None:
    async def scenario() -> None:
        cluster.create(cluster.deployment("web", replicas=1))
        cluster.create(cluster.service("web", {"app": "web"}))
        await cluster.settle()
        cluster.start_pods()
        await cluster.settle()
        assert cluster.find("", "endpoints", "web", "default") is not None
        cluster.delete("", "services", "web", "default")
        await cluster.settle()
        assert cluster.find("", "endpoints", "web", "default") is None
        assert slices_of(cluster, "web") == []

    cluster.run(scenario)
