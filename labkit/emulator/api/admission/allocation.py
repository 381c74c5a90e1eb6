"""Admission, allocation stage: ClusterIPs and node ports inside the request, and a node for bare pods.

A real API server allocates ``spec.clusterIP`` and ``nodePort`` inside the create request, so the
response (and ``kubectl expose``'s output) already carries them; :class:`ServiceAllocator` is that
allocator, called on create, update and (once a Service is gone) release. A static load-balancer address
is only *checked* here (taken, malformed or outside the pool: a 422 naming the holder); the address
itself arrives later from the cloud controller (:mod:`labkit.emulator.controllers.services`).

The emulated cluster has one node, so "scheduling" a pod that names none is binding it to that node
(:func:`schedule`), which a real cluster's scheduler would do right after the create.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from labkit.core.wire import Obj
from labkit.emulator.apimachinery.status import StatusError, invalid
from labkit.emulator.controllers.services import requested_load_balancer_ip
from labkit.emulator.network.addresses import IpPool, LoadBalancerPool, ServiceRef

NODE_PORT_RANGE = range(30000, 32768)
"""``--service-node-port-range`` default: 30000–32767."""

_NEEDS_CLUSTER_IP = ("ClusterIP", "NodePort", "LoadBalancer")
_NEEDS_NODE_PORTS = ("NodePort", "LoadBalancer")



def schedule(pod: Obj, node_name: str) -> None:
    """Bind a pod that names no node to the cluster's only node (in place).

    Args:
        pod: the pod about to be stored.
        node_name: the cluster's node.
    """
    if not (pod.get("spec") or {}).get("nodeName"):
        pod.setdefault("spec", {})["nodeName"] = node_name


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
