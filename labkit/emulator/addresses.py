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
from dataclasses import dataclass, field

from labkit.emulator import status

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
