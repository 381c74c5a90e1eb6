"""A cluster without HTTP for controller tests: a real Store, the controllers, and a hand-driven kubelet.

``Cluster.create``/``Cluster.delete`` do what the API layer will do around the store (defaulting,
Service allocation, propagation finalizers), so the tests see what a kubectl user would see.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from labkit.core import kubetime
from labkit.emulator.api.admission import ServiceAllocator, default_object, finalizers_for_delete
from labkit.emulator.apimachinery import BUILTIN_KINDS, kind_key_of
from labkit.emulator.controllers import cluster_controllers
from labkit.emulator.network.addresses import IpPool, LoadBalancerPool
from labkit.emulator.store import Store

CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB-test-ca\n-----END CERTIFICATE-----\n"
NODE = "cluster1-control-plane"


def shared_load_balancers() -> LoadBalancerPool:
    return LoadBalancerPool(IpPool(ipaddress.IPv4Network("127.9.200.0/24"), what="load-balancer IP"))


class Cluster:
    """One emulated cluster's store and controllers, plus what the API layer and kubelet would do."""

    def __init__(self, name: str = "cluster1", load_balancers: LoadBalancerPool | None = None, index: int = 1):
        self.name = name
        self.store = Store()
        self.load_balancers = load_balancers or shared_load_balancers()
        services = ipaddress.IPv4Network(f"127.9.{100 + index}.0/24")
        self.allocator = ServiceAllocator(
            IpPool(services, reserved=frozenset({str(services.network_address + 1)}), what="ClusterIP"),
            self.load_balancers,
            name,
        )
        self.manager = cluster_controllers(
            self.store,
            cluster=name,
            node_name=NODE,
            ca_pem=CA_PEM,
            issue_token=lambda namespace, account: f"token-for-{namespace}-{account}",
            load_balancers=self.load_balancers,
        )
        self._pod_ips: Iterator[int] = iter(range(2, 255))
        self._index = index

    # --- what the API layer does -----------------------------------------------------------------

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        group, resource = resource_of(obj)
        obj = default_object(obj)
        if resource == "services":
            obj = self.allocator.allocate(obj)
        return self.store.create(group, resource, obj)

    def update(self, obj: dict[str, Any]) -> dict[str, Any]:
        group, resource = resource_of(obj)
        obj = default_object(obj)
        if resource == "services":
            old = self.store.get(group, resource, obj["metadata"]["name"], obj["metadata"].get("namespace", ""))
            obj = self.allocator.allocate(obj, old)
        return self.store.update(group, resource, obj)

    def delete(self, group: str, resource: str, name: str, namespace: str = "", policy: str | None = None) -> None:
        live = self.store.get(group, resource, name, namespace)
        marked = finalizers_for_delete(live, policy)
        if marked is not None:
            self.store.update(group, resource, marked)
        gone = self.store.delete(group, resource, name, namespace)
        if resource == "services" and self.store.find(group, resource, name, namespace) is None:
            self.allocator.release(gone)

    def get(self, group: str, resource: str, name: str, namespace: str = "") -> dict[str, Any]:
        return self.store.get(group, resource, name, namespace)

    def find(self, group: str, resource: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        return self.store.find(group, resource, name, namespace)

    def list(self, group: str, resource: str, namespace: str | None = None, selector: str = "") -> list[dict]:
        return self.store.list(group, resource, namespace=namespace, label_selector=selector).items

    # --- what the kubelet does -------------------------------------------------------------------

    def start_pods(self, namespace: str = "default", *, ready: bool = True, limit: int | None = None) -> list[str]:
        """Mark pods Running (with a pod IP) and Ready; returns the names changed, oldest first."""
        changed = []
        pods = sorted(self.list("", "pods", namespace), key=lambda p: p["metadata"]["creationTimestamp"])
        for pod in pods:
            if limit is not None and len(changed) >= limit:
                break
            status = pod.get("status") or {}
            is_ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])
            if pod["metadata"].get("deletionTimestamp") or (is_ready == ready and status.get("podIP")):
                continue
            self.set_pod_status(pod, ready=ready)
            changed.append(pod["metadata"]["name"])
        return changed

    def set_pod_status(self, pod: dict[str, Any], *, ready: bool) -> dict[str, Any]:
        pod = self.get("", "pods", pod["metadata"]["name"], pod["metadata"]["namespace"])
        status = pod.get("status") or {}
        ip = status.get("podIP") or f"127.9.{self._index}.{next(self._pod_ips)}"
        now = kubetime.now()
        flag = "True" if ready else "False"
        pod["status"] = {
            **status,
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "hostIP": "127.0.0.1",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
                {"type": "Ready", "status": flag, "lastTransitionTime": now},
            ],
        }
        return self.store.update_status("", "pods", pod)

    # --- running ---------------------------------------------------------------------------------

    async def settle(self) -> None:
        await self.manager.wait_idle(timeout=5)

    def run(self, scenario: Callable[[], Awaitable[None]], *others: Cluster) -> None:
        """Run an async scenario with this cluster's (and ``others``') controllers started."""
        run([self, *others], scenario)

    # --- manifests -------------------------------------------------------------------------------

    @staticmethod
    def deployment(name: str = "helloworld-v1", image: str = "helloworld:v1", replicas: int = 1,
                   namespace: str = "default", **spec: Any) -> dict[str, Any]:
        labels = {"app": name}
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": image,
                                             "ports": [{"name": "http", "containerPort": 5000}]}]},
                },
                **spec,
            },
        }

    @staticmethod
    def service(name: str, selector: dict[str, str] | None, namespace: str = "default", **spec: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"ports": [{"name": "http", "port": 5000}], **spec}
        if selector is not None:
            body["selector"] = selector
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": body}

    @staticmethod
    def namespace(name: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def resource_of(obj: dict[str, Any]) -> tuple[str, str]:
    group, kind = kind_key_of(obj)
    return group, BUILTIN_KINDS[(group, kind)].plural


def run(clusters: list[Cluster], scenario: Callable[[], Awaitable[None]]) -> None:
    """Run ``scenario`` with the clusters' controllers started, then stop them and check for leaks."""

    async def main() -> None:
        for cluster in clusters:
            await cluster.manager.start()
        try:
            await scenario()
        finally:
            for cluster in clusters:
                await cluster.manager.stop()
        leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not leftover, f"tasks leaked: {leftover}"

    asyncio.run(main())


@pytest.fixture
def cluster() -> Cluster:
    return Cluster()


@pytest.fixture
def two_clusters() -> tuple[Cluster, Cluster]:
    """Two clusters sharing one load-balancer pool, as the clusters of one emulator do."""
    pool = shared_load_balancers()
    return Cluster("cluster1", pool, 1), Cluster("cluster2", pool, 2)
