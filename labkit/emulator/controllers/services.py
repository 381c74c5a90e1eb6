"""The cloud controller of an emulated cluster: load-balancer addresses of ``type: LoadBalancer`` Services.

A load-balancer address is the cloud's business and arrives after the create request, in
``status.loadBalancer``: the :class:`ServiceController` plays the cloud controller, asynchronously, from a
:class:`~labkit.emulator.network.addresses.LoadBalancerPool` shared by every cluster of the emulator, as a
cloud account's address pool is shared by its clusters. That is what lab 1's east-west gateways and lab 3's
"remote load balancer" rely on: distinct, stable external IPs that the other cluster can reach. (ClusterIPs
and node ports, by contrast, are allocated inside the request: :mod:`labkit.emulator.api.admission.allocation`.)

A static address is requested with ``spec.loadBalancerIP`` (deprecated upstream but still what most
charts set) or the annotation ``labkit.io/load-balancer-ip``. A request for an address another
Service holds is refused at admission with a 422 naming the holder; should two requests still race,
the loser keeps an empty ingress and gets a Warning Event ``SyncLoadBalancerFailed`` that
``kubectl describe svc`` shows, as with a cloud provider.

A Service naming a ``spec.loadBalancerClass`` asks for another load-balancer controller (the AWS Load Balancer
Controller's ``service.k8s.aws/nlb``, MetalLB …): the default cloud controller leaves it alone, as Kubernetes'
does, and with no such controller here its ``EXTERNAL-IP`` stays ``<pending>`` — istio.md's failure 5.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from labkit.core.contract import LOAD_BALANCER_IP_ANNOTATION
from labkit.core.wire import Obj
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.events import NORMAL, WARNING, EventRecorder
from labkit.emulator.network.addresses import LoadBalancerPool, ServiceRef
from labkit.emulator.store import Store, WatchEvent

from .framework import Controller, Key, is_deleting


def requested_load_balancer_ip(service: Obj) -> str | None:
    """The static address a Service asks for: the labkit annotation, else ``spec.loadBalancerIP``."""
    annotations = (service.get("metadata") or {}).get("annotations") or {}
    requested = annotations.get(LOAD_BALANCER_IP_ANNOTATION) or (service.get("spec") or {}).get("loadBalancerIP")
    return str(requested) if requested else None


class ServiceController(Controller):
    """The cloud controller of an emulated cluster: ``status.loadBalancer`` of LoadBalancer Services.

    Args:
        store: the cluster's store.
        load_balancers: the pool shared by all clusters of the emulator.
        cluster: this cluster's name (holders in the shared pool are named by it).
    """

    name = "service"

    def __init__(self, store: Store, load_balancers: LoadBalancerPool, cluster: str):
        super().__init__(store)
        self.load_balancers = load_balancers
        self.cluster = cluster
        self.events = EventRecorder(store, "service-controller")
        self._blocked: set[Key] = set()
        self._stop_listening: Callable[[], None] | None = None

    def start(self) -> None:
        super().start()
        self._stop_listening = self.load_balancers.on_release(self._address_released)

    async def stop(self) -> None:
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        await super().stop()

    def _address_released(self, address: str) -> None:
        # Services refused an address (possibly this one, possibly in another cluster) try again.
        for key in list(self._blocked):
            self.enqueue(key)

    def keys_for(self, event: WatchEvent) -> Iterable[Key]:
        if (event.group, event.resource) != ("", "services"):
            return []
        metadata = event.object["metadata"]
        return [(metadata.get("namespace", ""), metadata["name"])]

    def initial_keys(self) -> Iterable[Key]:
        services = self.store.list("", "services").items
        # Addresses already published (state restored from disk) are claimed before any new request.
        for service in services:
            ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            address = ingress[0].get("ip") if ingress else None
            namespace, name = service["metadata"].get("namespace", ""), service["metadata"]["name"]
            if address:
                self.load_balancers.adopt(ServiceRef(self.cluster, namespace, name), address)
        return [(s["metadata"].get("namespace", ""), s["metadata"]["name"]) for s in services]

    async def reconcile(self, key: Key) -> None:
        namespace, name = key  # type: ignore[misc]
        ref = ServiceRef(self.cluster, namespace, name)
        self._blocked.discard(key)
        service = self.store.find("", "services", name, namespace)
        if service is not None and (service.get("spec") or {}).get("loadBalancerClass"):
            # Another controller's Service: no address from this pool, and its status is not ours to write.
            self.load_balancers.release(ref)
            return
        if service is None or is_deleting(service) or (service.get("spec") or {}).get("type") != "LoadBalancer":
            self.load_balancers.release(ref)
            if service is not None and not is_deleting(service):
                self._publish(service, None)
            return
        published = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        try:
            address = self.load_balancers.acquire(ref, requested_load_balancer_ip(service))
        except StatusError as exc:
            self.events(service, NORMAL, "EnsuringLoadBalancer", "Ensuring load balancer")
            self.events(service, WARNING, "SyncLoadBalancerFailed",
                        f"Error syncing load balancer: failed to ensure load balancer: {exc.message}")
            self._publish(service, None)
            # Not retried on a timer: a changed Service or a released address wakes it again.
            self._blocked.add(key)
            return
        if published != [{"ip": address}]:
            self.events(service, NORMAL, "EnsuringLoadBalancer", "Ensuring load balancer")
            self.events(service, NORMAL, "EnsuredLoadBalancer", "Ensured load balancer")
        self._publish(service, address)

    def _publish(self, service: Obj, address: str | None) -> None:
        status = dict(service.get("status") or {})
        ingress = [{"ip": address}] if address else []
        current = (status.get("loadBalancer") or {}).get("ingress") or []
        if current == ingress and "loadBalancer" in status:
            return
        status["loadBalancer"] = {"ingress": ingress} if ingress else {}
        service["status"] = status
        self.store.update_status("", "services", service)
