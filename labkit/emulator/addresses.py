"""Handing out loopback addresses: pod IPs, ClusterIPs and load-balancer IPs from an emulator's plan.

Which ranges exist is :class:`~labkit.core.contract.AddressPlan` (the client needs it too, to pick a static
load-balancer address); this module allocates inside them, refusing what a real cluster refuses.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from labkit.emulator import status


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
