"""Where things live on loopback: pod IPs, ClusterIPs, load-balancer IPs, one plan per emulator.

On Linux the whole of 127.0.0.0/8 answers on ``lo`` with no configuration, so every pod, Service
and load balancer of an embedded cluster gets an address of its own and binds the ports a real one
would (helloworld on ``<pod IP>:5000``, the east-west gateway on ``<LB IP>:15443``). Addresses then
mean what they mean on a real cluster, and Envoy configs and ``kubectl get`` output read naturally.

One emulator takes one ``127.X.0.0/16`` (``X`` = :attr:`AddressPlan.block`), so two emulators (a
trainer's and a test run) never collide. Inside it, cluster ``k`` (1-based) gets::

    127.X.k.0/24          pods         (.1 is the cluster's API server)
    127.X.(100+k).0/24    Services     (.1 is ``kubernetes``, .10 is ``kube-dns``, as 10.96.0.1/.10)
    127.X.200.0/24        load balancers, shared by all clusters, as a cloud's address pool is
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from labkit.emulator.apimachinery import status
from labkit.emulator.apimachinery.status import invalid

MAX_CLUSTERS = 99


@dataclass(frozen=True)
class AddressPlan:
    """The address ranges of one emulator.

    Args:
        block: the second octet ``X`` of the emulator's ``127.X.0.0/16``.
    """

    block: int

    def __post_init__(self) -> None:
        if not 1 <= self.block <= 254:
            raise ValueError(f"address block must be 1..254, got {self.block}")

    def pod_network(self, cluster_index: int) -> ipaddress.IPv4Network:
        """Pod IPs of cluster ``cluster_index`` (1-based)."""
        return ipaddress.IPv4Network(f"127.{self.block}.{_check(cluster_index)}.0/24")

    def service_network(self, cluster_index: int) -> ipaddress.IPv4Network:
        """ClusterIPs of cluster ``cluster_index`` (1-based)."""
        return ipaddress.IPv4Network(f"127.{self.block}.{100 + _check(cluster_index)}.0/24")

    def load_balancer_network(self) -> ipaddress.IPv4Network:
        """External (LoadBalancer) IPs, one pool for the whole emulator."""
        return ipaddress.IPv4Network(f"127.{self.block}.200.0/24")

    def api_server_address(self, cluster_index: int) -> str:
        """Where cluster ``cluster_index``'s API server listens."""
        return str(self.pod_network(cluster_index).network_address + 1)

    def kubernetes_service_ip(self, cluster_index: int) -> str:
        """The ClusterIP of ``default/kubernetes``."""
        return str(self.service_network(cluster_index).network_address + 1)

    def dns_service_ip(self, cluster_index: int) -> str:
        """The ClusterIP of ``kube-system/kube-dns``."""
        return str(self.service_network(cluster_index).network_address + 10)


def _check(cluster_index: int) -> int:
    if not 1 <= cluster_index <= MAX_CLUSTERS:
        raise ValueError(f"cluster index must be 1..{MAX_CLUSTERS}, got {cluster_index}")
    return cluster_index


@dataclass
class IpPool:
    """Hands out addresses of one network, lowest free first; a requested address is honoured if free.

    Args:
        network: the range to allocate from.
        reserved: addresses never handed out automatically (the API server, ``kubernetes``, ``kube-dns``);
            they can still be requested by name.
        what: what the addresses are for, used in error messages (``ClusterIP``, ``pod IP``).
    """

    network: ipaddress.IPv4Network
    reserved: frozenset[str] = frozenset()
    what: str = "address"
    _used: set[str] = field(default_factory=set)

    def allocate(self, requested: str | None = None) -> str:
        """Take ``requested`` (if given) or the lowest free address.

        Raises:
            StatusError: 422 if ``requested`` is outside the network or taken; 500 when the pool is exhausted.
        """
        if requested:
            try:
                address = ipaddress.IPv4Address(requested)
            except ValueError as exc:
                raise status.invalid("Service", "", [("address", f"{requested!r} is not an IPv4 address")]) from exc
            if address not in self.network:
                raise status.invalid("Service", "", [("address", f"{requested} is not in the {self.what} range "
                                                                f"{self.network}; pick one inside it")])
            if requested in self._used:
                raise status.invalid("Service", "", [("address", f"{self.what} {requested} is already allocated")])
            self._used.add(requested)
            return requested
        for host in self.network.hosts():
            candidate = str(host)
            if candidate not in self._used and candidate not in self.reserved:
                self._used.add(candidate)
                return candidate
        raise status.internal(f"no free {self.what} left in {self.network}")

    def take(self, address: str) -> None:
        """Mark an address as used (when state is restored), without checks."""
        self._used.add(address)

    def release(self, address: str) -> None:
        """Give an address back (unknown addresses are ignored: releasing is idempotent)."""
        self._used.discard(address)

    def in_use(self, address: str) -> bool:
        """Whether ``address`` is currently handed out."""
        return address in self._used


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
