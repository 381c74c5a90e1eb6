"""Service addresses: ClusterIPs and node ports at admission, load-balancer IPs like a cloud controller.

A real API server allocates ``spec.clusterIP`` and ``nodePort`` inside the create request, so the
response (and ``kubectl expose``'s output) already carries them; :class:`ServiceAllocator` is that
allocator, a synchronous object the API layer calls on create, update and delete. A load-balancer
address, by contrast, is the cloud's business and arrives later in ``status.loadBalancer``: the
:class:`ServiceController` plays the cloud controller, asynchronously, from a
:class:`LoadBalancerPool` shared by every cluster of the emulator, as a cloud account's address
pool is shared by its clusters. That is what lab 1's east-west gateways and lab 3's "remote load
balancer" rely on: distinct, stable external IPs that the other cluster can reach.

A static address is requested with ``spec.loadBalancerIP`` (deprecated upstream but still what most
charts set) or the annotation ``labkit.io/load-balancer-ip``. A request for an address another
Service holds is refused at admission with a 422 naming the holder; should two requests still race,
the loser keeps an empty ingress and gets a Warning Event ``SyncLoadBalancerFailed`` that
``kubectl describe svc`` shows, as with a cloud provider.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from labkit.emulator.addresses import IpPool
from labkit.emulator.events import NORMAL, WARNING, EventRecorder
from labkit.emulator.status import StatusError, invalid
from labkit.emulator.store import Store, WatchEvent

from .framework import Controller, Key, is_deleting

LOAD_BALANCER_IP_ANNOTATION = "labkit.io/load-balancer-ip"
"""Requests a static load-balancer address (the MetalLB/cloud-annotation equivalent)."""

NODE_PORT_RANGE = range(30000, 32768)
"""``--service-node-port-range`` default: 30000–32767."""

_NEEDS_CLUSTER_IP = ("ClusterIP", "NodePort", "LoadBalancer")
_NEEDS_NODE_PORTS = ("NodePort", "LoadBalancer")

Obj = dict[str, Any]


@dataclass(frozen=True)
class ServiceRef:
    """Which Service holds a load-balancer address.

    Args:
        cluster: the cluster's name (the pool is shared by all clusters).
        namespace: the Service's namespace.
        name: the Service's name.
    """

    cluster: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name} in cluster {self.cluster}"


@dataclass
class LoadBalancerPool:
    """External addresses for ``type: LoadBalancer`` Services, shared by every cluster of an emulator.

    Args:
        pool: the address range (``AddressPlan.load_balancer_network()``).
    """

    pool: IpPool
    _holders: dict[str, ServiceRef] = field(default_factory=dict)
    _listeners: list[Callable[[str], None]] = field(default_factory=list)

    def on_release(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(address)`` whenever an address is given back (Services waiting for it retry).

        Args:
            callback: synchronous and cheap; it may only enqueue work.

        Returns:
            A function that removes the callback.
        """
        self._listeners.append(callback)

        def remove() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return remove

    def adopt(self, service: ServiceRef, address: str) -> bool:
        """Record that ``service`` already holds ``address`` (state restored); false if someone else does."""
        if self._holders.get(address, service) != service or (
            address not in self._holders and self.pool.in_use(address)
        ):
            return False
        self.pool.take(address)
        self._holders[address] = service
        return True

    def holder(self, address: str) -> ServiceRef | None:
        """Which Service holds ``address``."""
        return self._holders.get(address)

    def held_by(self, service: ServiceRef) -> str | None:
        """The address ``service`` holds, if any."""
        for address, holder in self._holders.items():
            if holder == service:
                return address
        return None

    def check(self, service: ServiceRef, requested: str) -> None:
        """Refuse a requested address that is malformed, outside the pool or held by another Service.

        Args:
            service: who asks.
            requested: the requested address.

        Raises:
            StatusError: 422 naming the field and, for a taken address, its holder.
        """
        field_path = "spec.loadBalancerIP"
        try:
            address = ipaddress.IPv4Address(requested)
        except ValueError:
            raise invalid("Service", service.name, [(field_path, f'Invalid value: "{requested}": '
                                                                 "must be a valid IPv4 address")]) from None
        if address not in self.pool.network:
            raise invalid("Service", service.name, [(field_path, f'Invalid value: "{requested}": outside the '
                                                                 f"load-balancer range {self.pool.network}; "
                                                                 "pick an address inside it")])
        holder = self._holders.get(requested)
        if holder is not None and holder != service:
            raise invalid("Service", service.name, [(field_path, f'Invalid value: "{requested}": load-balancer IP '
                                                                 f"is already allocated to Service {holder}; "
                                                                 "request another address or delete that "
                                                                 "Service first")])
        if holder is None and self.pool.in_use(requested):
            raise invalid("Service", service.name, [(field_path, f'Invalid value: "{requested}": load-balancer IP '
                                                                 "is already allocated")])

    def acquire(self, service: ServiceRef, requested: str | None = None) -> str:
        """The address of ``service``: the one it holds, the requested one, or the lowest free one.

        Args:
            service: who asks.
            requested: a static address, or ``None``.

        Raises:
            StatusError: 422 for a refused request (see :meth:`check`); 500 when the pool is exhausted.
        """
        current = self.held_by(service)
        if current is not None and (not requested or requested == current):
            return current
        if requested:
            self.check(service, requested)
        if current is not None:
            self.release(service)
        address = self.pool.allocate(requested or None)
        self._holders[address] = service
        return address

    def release(self, service: ServiceRef) -> None:
        """Give back the address of ``service`` (idempotent)."""
        address = self.held_by(service)
        if address is not None:
            del self._holders[address]
            self.pool.release(address)
            for listener in list(self._listeners):
                listener(address)


def requested_load_balancer_ip(service: Obj) -> str | None:
    """The static address a Service asks for: the labkit annotation, else ``spec.loadBalancerIP``."""
    annotations = (service.get("metadata") or {}).get("annotations") or {}
    requested = annotations.get(LOAD_BALANCER_IP_ANNOTATION) or (service.get("spec") or {}).get("loadBalancerIP")
    return str(requested) if requested else None


class ServiceAllocator:
    """ClusterIPs and node ports of one cluster, allocated inside create and update requests.

    The API layer calls :meth:`allocate` on create (``old=None``) and update (after defaulting,
    before storing) and :meth:`release` once a Service is gone; :meth:`restore` marks the addresses of
    Services already in the store as used when the emulator restarts from saved state.

    Args:
        cluster_ips: the cluster's Service range (``AddressPlan.service_network``), with the
            ``kubernetes`` and ``kube-dns`` addresses reserved.
        load_balancers: the emulator-wide load-balancer pool, to refuse taken static addresses
            at admission.
        cluster: the cluster's name, as load-balancer holders are named.
    """

    def __init__(self, cluster_ips: IpPool, load_balancers: LoadBalancerPool | None = None, cluster: str = ""):
        self.cluster_ips = cluster_ips
        self.load_balancers = load_balancers
        self.cluster = cluster
        self._node_ports: set[int] = set()

    def allocate(self, service: Obj, old: Obj | None = None) -> Obj:
        """A copy of ``service`` with ``clusterIP(s)`` and ``nodePort``\\ s filled in.

        All-or-nothing: if any allocation is refused, whatever this call took is given back.

        Args:
            service: the defaulted Service about to be stored.
            old: the stored Service on update; ``None`` on create.

        Raises:
            StatusError: 422 Invalid for a taken or out-of-range ``clusterIP`` or ``nodePort``, a
                changed ``clusterIP``, or a taken load-balancer address; 500 when a range is exhausted.
        """
        result = copy.deepcopy(service)
        name = str((result.get("metadata") or {}).get("name") or "")
        spec = result.setdefault("spec", {})
        old_spec = (old or {}).get("spec") or {}
        service_type = spec.get("type", "ClusterIP")
        taken_ips: list[str] = []
        taken_ports: list[int] = []
        try:
            if service_type in _NEEDS_CLUSTER_IP:
                self._allocate_cluster_ip(name, spec, old_spec, taken_ips)
            else:
                spec.pop("clusterIP", None)
                spec.pop("clusterIPs", None)
            if service_type in _NEEDS_NODE_PORTS:
                self._allocate_node_ports(name, spec, old_spec, taken_ports)
            else:
                for port in spec.get("ports") or []:
                    port.pop("nodePort", None)
                spec.pop("healthCheckNodePort", None)
            requested = requested_load_balancer_ip(result)
            if service_type == "LoadBalancer" and requested and self.load_balancers is not None:
                namespace = str((result.get("metadata") or {}).get("namespace") or "")
                self.load_balancers.check(ServiceRef(self.cluster, namespace, name), requested)
        except StatusError:
            for address in taken_ips:
                self.cluster_ips.release(address)
            self._node_ports.difference_update(taken_ports)
            raise
        # What the update dropped goes back to the pools once the new state is decided.
        if old is not None:
            self._release_unused(old_spec, spec)
        return result

    def release(self, service: Obj) -> None:
        """Give back a deleted Service's ClusterIPs and node ports (idempotent)."""
        self._release_unused((service.get("spec") or {}), {})

    def restore(self, services: Iterable[Obj]) -> None:
        """Mark the addresses and ports of stored Services as used."""
        for service in services:
            spec = service.get("spec") or {}
            for address in _cluster_ips(spec):
                self.cluster_ips.take(address)
            self._node_ports.update(_node_ports(spec))

    def _allocate_cluster_ip(self, name: str, spec: Obj, old_spec: Obj, taken: list[str]) -> None:
        old_ips = _cluster_ips(old_spec, include_none=True)
        requested = spec.get("clusterIP") or (spec.get("clusterIPs") or [None])[0]
        if old_ips:
            if requested and requested != old_ips[0]:
                raise invalid("Service", name, [("spec.clusterIPs[0]", f'Invalid value: "{requested}": '
                                                                        "may not change once set")])
            spec["clusterIP"], spec["clusterIPs"] = old_ips[0], list(old_ips)
            return
        if requested == "None":
            spec["clusterIP"], spec["clusterIPs"] = "None", ["None"]
            return
        try:
            address = self.cluster_ips.allocate(requested or None)
        except StatusError as exc:
            if exc.code != 422:
                raise
            why = "provided IP is already allocated" if self.cluster_ips.in_use(str(requested)) else (
                f"the provided IP ({requested}) is not in the valid range. The range of valid IPs is "
                f"{self.cluster_ips.network}"
            )
            message = f'Invalid value: ["{requested}"]: failed to allocate IP {requested}: {why}'
            raise invalid("Service", name, [("spec.clusterIPs", message)]) from None
        taken.append(address)
        spec["clusterIP"], spec["clusterIPs"] = address, [address]

    def _allocate_node_ports(self, name: str, spec: Obj, old_spec: Obj, taken: list[int]) -> None:
        old_by_port = {
            (p.get("port"), p.get("protocol", "TCP")): p.get("nodePort") for p in old_spec.get("ports") or []
        }
        old_ports = set(_node_ports(old_spec))
        wants_ports = spec.get("type") == "NodePort" or spec.get("allocateLoadBalancerNodePorts", True)
        for index, port in enumerate(spec.get("ports") or []):
            requested = port.get("nodePort")
            if not requested:
                if not wants_ports:
                    continue
                requested = old_by_port.get((port.get("port"), port.get("protocol", "TCP")))
            if requested:
                requested = int(requested)
                if requested in old_ports and requested not in taken:
                    port["nodePort"] = requested
                    continue
                if requested not in NODE_PORT_RANGE:
                    raise invalid("Service", name, [(f"spec.ports[{index}].nodePort", f"Invalid value: {requested}: "
                                                    "provided port is not in the valid range. The range of valid "
                                                    "ports is 30000-32767")])
                if requested in self._node_ports:
                    raise invalid("Service", name, [(f"spec.ports[{index}].nodePort", f"Invalid value: {requested}: "
                                                    "provided port is already allocated")])
                port["nodePort"] = self._take_port(requested, taken)
            else:
                port["nodePort"] = self._take_port(None, taken)
        local = spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"
        if local and not spec.get("healthCheckNodePort"):
            spec["healthCheckNodePort"] = old_spec.get("healthCheckNodePort") or self._take_port(None, taken)
        elif not local:
            spec.pop("healthCheckNodePort", None)

    def _take_port(self, requested: int | None, taken: list[int]) -> int:
        if requested is None:
            # The lowest free port: deterministic output makes notebooks reproducible.
            requested = next((p for p in NODE_PORT_RANGE if p not in self._node_ports), None)
            if requested is None:
                raise StatusError(500, "InternalError", "no free node port left in 30000-32767")
        self._node_ports.add(requested)
        taken.append(requested)
        return requested

    def _release_unused(self, old_spec: Obj, new_spec: Obj) -> None:
        keep_ips = set(_cluster_ips(new_spec))
        for address in _cluster_ips(old_spec):
            if address not in keep_ips:
                self.cluster_ips.release(address)
        self._node_ports.difference_update(set(_node_ports(old_spec)) - set(_node_ports(new_spec)))


def _cluster_ips(spec: Obj, *, include_none: bool = False) -> list[str]:
    ips = list(spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else []))
    return [ip for ip in ips if ip and (include_none or ip != "None")]


def _node_ports(spec: Obj) -> list[int]:
    ports = [int(p["nodePort"]) for p in spec.get("ports") or [] if p.get("nodePort")]
    if spec.get("healthCheckNodePort"):
        ports.append(int(spec["healthCheckNodePort"]))
    return ports


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
