"""Handing out loopback addresses: pod IPs, ClusterIPs and load-balancer IPs from an emulator's plan.

Which ranges exist is :class:`~labkit.core.contract.AddressPlan` (the client needs it too, to pick a static
load-balancer address); this module allocates inside them, refusing what a real cluster refuses. The
load-balancer pool is shared by every cluster of an emulator, as a cloud account's address pool is shared by its
clusters; who holds which address is recorded here so a second request for it is refused naming the holder.

Which ``127.X.0.0/16`` an emulator takes is claimed here too, with a lock file per block that the kernel releases
when the process dies: a trainer's lab, a test run and a notebook started at the same moment can never pick the
same block (binding a probe socket cannot tell, since any loopback address accepts a bind to port 0).
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from labkit.core.contract import AddressPlan
from labkit.emulator.apimachinery import status
from labkit.emulator.apimachinery.status import invalid
from labkit.errors import EmulatorError


@dataclass
class BlockClaim:
    """An address block held by this process until :meth:`release` (or until the process dies).

    Args:
        block: the second octet ``X`` of the claimed ``127.X.0.0/16``.
        fd: the open, locked lock file that holds the claim.
    """

    block: int
    fd: int

    @property
    def plan(self) -> AddressPlan:
        """The address ranges of the claimed block."""
        return AddressPlan(self.block)

    def release(self) -> None:
        """Give the block back (idempotent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> BlockClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def block_lock_dir() -> Path:
    """Where block claims live: one world-writable folder per machine, beside the other temporary files."""
    folder = Path(tempfile.gettempdir()) / "labkit-blocks"
    folder.mkdir(mode=0o777, exist_ok=True)
    return folder


def claim_block(preferred: int | None = None) -> BlockClaim:
    """Claim a ``127.X.0.0/16`` no other emulator (or test) on this machine holds.

    Args:
        preferred: the block to take; it must be free. ``None`` picks a free one at random.

    Raises:
        EmulatorError: ``preferred`` is held by another process, or every block is taken.
    """
    candidates = [preferred] if preferred else random.sample(range(20, 250), 230)
    folder = block_lock_dir()
    for block in candidates:
        AddressPlan(block)  # validates the range
        try:
            fd = os.open(folder / f"127.{block}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        except PermissionError:  # another user's lock file (their umask kept others out): a block of theirs
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return BlockClaim(block, fd)
    if preferred:
        raise EmulatorError(f"address block 127.{preferred}.0.0/16 is held by another emulator on this machine; "
                            f"stop it (labkit down) or leave the block to labkit")
    raise EmulatorError("every 127.X.0.0/16 block is held by another emulator; stop some with `labkit down`")


def is_ipv4(text: str) -> bool:
    """Whether ``text`` is an IPv4 address (Services and Endpoints may also carry IPv6 ones, or ``None``).

    Args:
        text: the value from the object.
    """
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


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
