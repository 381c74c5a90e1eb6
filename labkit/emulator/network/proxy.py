"""The service proxy: kube-proxy's job done with sockets, since the emulator may not touch iptables.

For every TCP port of every Service it listens on the ClusterIP (and on ``spec.externalIPs`` and, for
``type: LoadBalancer``, on ``status.loadBalancer.ingress[].ip``) and relays each accepted connection to one ready
endpoint, picked at random as kube-proxy's iptables mode does (``sessionAffinity: ClientIP`` sticks per client IP).

What a client sees is kept as close to kube-proxy as a user-space relay allows:

* A Service port without ready endpoints has **no listener**, so connecting is refused at once (kube-proxy installs a
  REJECT rule: ``curl: (7) Failed to connect``); the listener comes back with the first ready endpoint.
* An endpoint that refuses the relayed connection makes the proxy reset the client's connection (``SO_LINGER 0``),
  as the endpoint's own RST would reach the client through kube-proxy's NAT.
* Half-closes travel through (EOF one way becomes ``shutdown(SHUT_WR)`` the other way), so request/response tools
  that close their sending side still get their answer.

The relay is made of two :class:`asyncio.Protocol` objects per connection that write into each other's transport and
pause reading on the other side when a write buffer fills: no task per connection and no copy beyond the kernel's.
A :class:`Tap` attached to a Service sees every relayed chunk (lab 3 shows TLS records versus cleartext HTTP at the
load balancer hop); with no tap attached the cost is one truth test of an empty list per chunk.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import itertools
import logging
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labkit.emulator.network.addresses import is_ipv4

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
AFFINITY_TIMEOUT = 10800  # seconds, Kubernetes' default for sessionAffinityConfig.clientIP.timeoutSeconds
BUFFER_HIGH_WATER = 256 * 1024  # bytes queued for a slow peer before the fast side stops reading


class Direction(enum.Enum):
    """Which way a tapped chunk travelled."""

    TO_ENDPOINT = "to_endpoint"
    TO_CLIENT = "to_client"


@dataclass(frozen=True)
class TapChunk:
    """Bytes that crossed a Service's relay.

    Args:
        direction: client → endpoint or back.
        data: the bytes as read from the socket (chunk boundaries are the kernel's, not the protocol's).
        connection_id: numbers the proxy's connections, so chunks of one connection can be grouped.
        timestamp: wall-clock seconds (``time.time()``), as a capture tool prints them.
    """

    direction: Direction
    data: bytes
    connection_id: int
    timestamp: float


@dataclass(frozen=True)
class TappedConnection:
    """Who talked to whom over one tapped connection.

    Args:
        connection_id: the id its chunks carry.
        client: the client's ``(ip, port)``.
        frontend: the ``(ip, port)`` the client connected to (ClusterIP or load-balancer IP).
        endpoint: the ``(ip, port)`` the proxy relayed to.
    """

    connection_id: int
    client: tuple[str, int]
    frontend: tuple[str, int]
    endpoint: tuple[str, int]


class Tap:
    """Receives the bytes of every connection relayed for one Service, until :meth:`detach` is called.

    Chunks are kept (the most recent ``max_chunks``) and, if given, passed to ``on_chunk`` as they arrive, on the
    proxy's event loop: the callback must be quick and must not raise.

    Args:
        namespace: the Service's namespace.
        name: the Service's name.
        on_chunk: called with each :class:`TapChunk`.
        max_chunks: how many chunks to keep; older ones are dropped first.
    """

    def __init__(self, namespace: str, name: str, *, on_chunk: Callable[[TapChunk], None] | None = None,
                 max_chunks: int = 10_000):
        self.namespace = namespace
        self.name = name
        self.on_chunk = on_chunk
        self.connections: dict[int, TappedConnection] = {}
        self._chunks: collections.deque[TapChunk] = collections.deque(maxlen=max_chunks)
        self._detach: Callable[[], None] | None = None

    @property
    def chunks(self) -> list[TapChunk]:
        """The chunks received so far (a copy)."""
        return list(self._chunks)

    def data(self, direction: Direction, connection_id: int | None = None) -> bytes:
        """All kept bytes of one direction, joined (of one connection when ``connection_id`` is given)."""
        return b"".join(c.data for c in self._chunks
                        if c.direction is direction and connection_id in (None, c.connection_id))

    def clear(self) -> None:
        """Forget the chunks and connections received so far."""
        self._chunks.clear()
        self.connections.clear()

    @property
    def attached(self) -> bool:
        """Whether the tap still receives chunks."""
        return self._detach is not None

    def detach(self) -> None:
        """Stop receiving (idempotent); what was received stays readable."""
        if self._detach is not None:
            self._detach()
            self._detach = None

    def __enter__(self) -> Tap:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.detach()

    def _record(self, direction: Direction, data: bytes, connection_id: int) -> None:
        chunk = TapChunk(direction, data, connection_id, time.time())
        self._chunks.append(chunk)
        if self.on_chunk is not None:
            try:
                self.on_chunk(chunk)
            except Exception:
                # A broken observer must never break the traffic it observes.
                log.exception("tap on %s/%s failed; chunk dropped by the callback", self.namespace, self.name)


@dataclass(frozen=True)
class Frontend:
    """One address a Service port is (or should be) reachable at.

    Args:
        namespace: the Service's namespace.
        service: the Service's name.
        port_name: the Service port's name (``""`` for a single unnamed port).
        ip: ClusterIP, external IP or load-balancer IP.
        port: the Service port.
        endpoints: the ready endpoints ``(ip, port)`` connections go to.
        listening: whether the proxy listens now.
        reason: why it does not listen (``no ready endpoints``, or the bind error).
    """

    namespace: str
    service: str
    port_name: str
    ip: str
    port: int
    endpoints: tuple[tuple[str, int], ...]
    listening: bool
    reason: str = ""


@dataclass
class _Target:
    """What one listener relays to; mutated in place so updates reach a listener without reopening it."""

    key: tuple[str, str]
    port_name: str
    endpoints: tuple[tuple[str, int], ...]
    affinity_timeout: float | None
    taps: list[Tap]
    affinity: dict[str, tuple[tuple[str, int], float]] = field(default_factory=dict)

    def choose(self, client_ip: str, rng: random.Random) -> tuple[str, int]:
        if self.affinity_timeout is None:
            return rng.choice(self.endpoints)
        now = time.monotonic()
        sticky = self.affinity.get(client_ip)
        if sticky and sticky[0] in self.endpoints and now - sticky[1] < self.affinity_timeout:
            endpoint = sticky[0]
        else:
            endpoint = rng.choice(self.endpoints)
        self.affinity[client_ip] = (endpoint, now)
        return endpoint


@dataclass
class _Listener:
    address: tuple[str, int]
    target: _Target
    server: asyncio.Server | None = None
    reason: str = ""
    twin: asyncio.Server | None = None  # the same address on the machine's own network, when networks are separate


@dataclass(frozen=True)
class _ServicePort:
    name: str
    port: int
    target_port: int | str


@dataclass(frozen=True)
class _Service:
    addresses: tuple[str, ...]
    ports: tuple[_ServicePort, ...]
    affinity_timeout: float | None


class ServiceProxy:
    """kube-proxy for one cluster, fed Services and Endpoints by the caller (it has no access to the store).

    Updates are incremental and idempotent: each call reconciles the listeners of one Service, opening, closing or
    retargeting only what changed; re-sending an unchanged object changes nothing.

    Args:
        rng: the source of endpoint choices (seed it for reproducible runs).
        connect_timeout: seconds to wait for an endpoint to accept before resetting the client.
        host_listener: when the emulator has networks of its own (:mod:`.separation`), makes the listening socket
            of an address on the machine's network too, so kubectl's machine reaches load balancers (and
            ClusterIPs, as from a node) as before.
    """

    def __init__(self, *, rng: random.Random | None = None, connect_timeout: float = CONNECT_TIMEOUT,
                 host_listener: Callable[[str, int], socket.socket] | None = None):
        self.rng = rng or random.Random()
        self.connect_timeout = connect_timeout
        self.host_listener = host_listener
        self._services: dict[tuple[str, str], _Service] = {}
        self._endpoints: dict[tuple[str, str], dict[str, Any]] = {}
        self._listeners: dict[tuple[str, int], _Listener] = {}
        self._taps: dict[tuple[str, str], list[Tap]] = {}
        self._connections: set[_Side] = set()
        self._connecting: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self._stopped = False

    # -- feeding -------------------------------------------------------------------------------------------------

    async def update_service(self, svc: dict[str, Any]) -> None:
        """Add or replace a core/v1 Service; headless and ``ExternalName`` Services get no listener."""
        meta, spec = svc.get("metadata", {}), svc.get("spec") or {}
        key = (meta.get("namespace") or "default", meta["name"])
        self._services[key] = _parse_service(svc) if _proxied(spec) else _Service((), (), None)
        await self._reconcile(key)

    async def remove_service(self, namespace: str, name: str) -> None:
        """Forget a Service and close its listeners (connections already relayed carry on, as with conntrack)."""
        self._services.pop((namespace, name), None)
        await self._reconcile((namespace, name))

    async def update_endpoints(self, ep: dict[str, Any]) -> None:
        """Add or replace the core/v1 Endpoints of a Service (same namespace and name)."""
        meta = ep.get("metadata", {})
        key = (meta.get("namespace") or "default", meta["name"])
        self._endpoints[key] = ep
        await self._reconcile(key)

    async def remove_endpoints(self, namespace: str, name: str) -> None:
        """Forget a Service's Endpoints: its ports stop listening, so clients are refused."""
        self._endpoints.pop((namespace, name), None)
        await self._reconcile((namespace, name))

    # -- observing -----------------------------------------------------------------------------------------------

    def tap(self, namespace: str, name: str, *, on_chunk: Callable[[TapChunk], None] | None = None,
            max_chunks: int = 10_000) -> Tap:
        """Attach a :class:`Tap` to a Service's relay (the Service need not exist yet).

        The tap sees every chunk of every connection of the Service, including connections accepted before it was
        attached, until :meth:`Tap.detach`.
        """
        tap = Tap(namespace, name, on_chunk=on_chunk, max_chunks=max_chunks)
        taps = self._taps.setdefault((namespace, name), [])
        taps.append(tap)
        tap._detach = lambda: taps.remove(tap)
        return tap

    def frontends(self, namespace: str | None = None, name: str | None = None) -> list[Frontend]:
        """Every address the proxy serves or would serve, with why it does not listen when it does not."""
        result = []
        for key in sorted(self._services):
            if namespace not in (None, key[0]) or name not in (None, key[1]):
                continue
            for address, target in self._desired(key).items():
                listener = self._listeners.get(address)
                listening, reason = False, ""
                if not target.endpoints:
                    reason = "no ready endpoints"
                elif listener is None:
                    reason = "not reconciled yet"
                elif listener.target.key != key:
                    reason = f"address taken by Service {'/'.join(listener.target.key)}"
                else:
                    listening, reason = listener.server is not None, listener.reason
                result.append(Frontend(key[0], key[1], target.port_name, address[0], address[1], target.endpoints,
                                       listening, reason))
        return result

    async def stop(self) -> None:
        """Close every listener and connection; the proxy cannot be used afterwards."""
        self._stopped = True
        async with self._lock:
            for listener in self._listeners.values():
                await _close(listener)
            self._listeners.clear()
        for task in list(self._connecting):
            task.cancel()
        await asyncio.gather(*self._connecting, return_exceptions=True)
        sides = list(self._connections)
        for side in sides:
            side.abort()
        await asyncio.gather(*(side.closed for side in sides), return_exceptions=True)

    async def __aenter__(self) -> ServiceProxy:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- reconciling ---------------------------------------------------------------------------------------------

    def _desired(self, key: tuple[str, str]) -> dict[tuple[str, int], _Target]:
        service = self._services.get(key)
        if service is None:
            return {}
        ep = self._endpoints.get(key)
        desired = {}
        taps = self._taps.setdefault(key, [])
        for service_port in service.ports:
            target = _Target(key, service_port.name, _ready_endpoints(ep, service_port), service.affinity_timeout, taps)
            for ip in service.addresses:
                desired[(ip, service_port.port)] = target
        return desired

    async def _reconcile(self, key: tuple[str, str]) -> None:
        async with self._lock:
            if self._stopped:
                return
            freed = await self._apply(key)
            # A Service that was refused an address another one held gets it once that one lets go.
            for other in [k for k in self._services if k != key and freed & self._desired(k).keys()]:
                await self._apply(other)

    async def _apply(self, key: tuple[str, str]) -> set[tuple[str, int]]:
        desired = {address: target for address, target in self._desired(key).items() if target.endpoints}
        freed = set()
        for address, listener in list(self._listeners.items()):
            if listener.target.key == key and address not in desired:
                del self._listeners[address]
                await _close(listener)
                freed.add(address)
        for address, target in desired.items():
            listener = self._listeners.get(address)
            if listener is not None and listener.target.key != key:
                log.warning("%s:%s is served for Service %s; Service %s/%s cannot listen there too",
                            *address, "/".join(listener.target.key), *key)
                continue
            if listener is None:
                listener = self._listeners[address] = _Listener(address, target)
            else:
                _retarget(listener.target, target)
            if listener.server is None:
                await self._open(listener)
        return freed

    async def _open(self, listener: _Listener) -> None:
        loop = asyncio.get_running_loop()
        ip, port = listener.address
        try:
            listener.server = await loop.create_server(lambda: _ClientSide(self, listener), ip, port,
                                                       reuse_address=True, backlog=512)
            listener.reason = ""
        except OSError as exc:
            # Not fatal for the cluster: the Service is refused at this address, and `frontends()` says why.
            listener.reason = f"cannot listen: {exc.strerror or exc}"
            log.warning("Service %s/%s: cannot listen on %s:%s: %s", *listener.target.key, ip, port, exc)
            return
        if self.host_listener is not None:
            try:
                listener.twin = await loop.create_server(lambda: _ClientSide(self, listener),
                                                         sock=self.host_listener(ip, port), backlog=512)
            except OSError as exc:  # pods still reach it; only this machine cannot (a privileged port, say)
                log.warning("Service %s/%s: this machine cannot reach %s:%s: %s", *listener.target.key, ip, port,
                            exc)

    # -- relaying ------------------------------------------------------------------------------------------------

    async def _connect(self, client: _ClientSide, endpoint: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                await loop.create_connection(lambda: _EndpointSide(self, client), *endpoint)
        except (OSError, TimeoutError) as exc:
            log.debug("endpoint %s:%s of %s/%s failed: %s", *endpoint, *client.target.key, exc)
            client.reset()


class _Side(asyncio.Protocol):
    """One socket of a relayed connection; ``peer`` is the other one."""

    direction: Direction

    def __init__(self, proxy: ServiceProxy):
        self.proxy = proxy
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.read_eof = False
        self.taps: list[Tap] = []
        self.connection_id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.proxy._connections.add(self)
        transport.set_write_buffer_limits(high=BUFFER_HIGH_WATER)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.taps:
            for tap in self.taps:
                tap._record(self.direction, data, self.connection_id)
        self.peer.transport.write(data)  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        self.read_eof = True
        peer = self.peer
        if peer is not None and peer.transport is not None:
            if peer.read_eof:
                peer.transport.close()
                self.transport.close()  # type: ignore[union-attr]
                return True
            peer.transport.write_eof()
        return True  # keep the transport open: the other direction may still be talking

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.read_eof and not peer.transport.is_closing():
            peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy._connections.discard(self)
        if not self.closed.done():
            self.closed.set_result(None)
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            if exc is None:
                peer.transport.close()
            else:
                # The other end was reset (or we gave up on it): pass the reset on, as NAT would.
                peer.reset()

    def reset(self) -> None:
        """Close with an RST instead of a FIN, so the far end sees ``Connection reset by peer``."""
        if self.transport is None or self.transport.is_closing():
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class _ClientSide(_Side):
    direction = Direction.TO_ENDPOINT

    def __init__(self, proxy: ServiceProxy, listener: _Listener):
        super().__init__(proxy)
        self.target = listener.target
        self.frontend = listener.address
        self.connecting: asyncio.Task[None] | None = None
        self.early: list[bytes] = []  # read before the endpoint accepted (see data_received)

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            # Some Python 3.11 releases start reading before the pause made in connection_made takes effect.
            self.early.append(data)
            return
        super().data_received(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # Nothing to relay to until the endpoint accepts: leave the client's bytes in the kernel until then.
        transport.pause_reading()  # type: ignore[attr-defined]
        client = transport.get_extra_info("peername")
        target = self.target
        if not target.endpoints or self.proxy._stopped or not client:
            self.reset()
            return
        endpoint = target.choose(client[0], self.proxy.rng)
        self.connection_id = next(self.proxy._ids)
        self.taps = target.taps
        for tap in self.taps:
            tap.connections[self.connection_id] = TappedConnection(
                self.connection_id, (client[0], client[1]), self.frontend, endpoint)
        task = self.connecting = asyncio.get_running_loop().create_task(self.proxy._connect(self, endpoint))
        self.proxy._connecting.add(task)
        task.add_done_callback(self.proxy._connecting.discard)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.connecting is not None and not self.connecting.done():
            # Gone before the endpoint answered: the pending connect has nobody to relay for.
            self.connecting.cancel()


class _EndpointSide(_Side):
    direction = Direction.TO_CLIENT

    def __init__(self, proxy: ServiceProxy, client: _ClientSide):
        super().__init__(proxy)
        self.peer = client
        self.connection_id = client.connection_id
        self.taps = client.taps

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        client = self.peer
        assert client is not None
        if client.transport is None or client.transport.is_closing():
            transport.close()
            return
        client.peer = self
        early, client.early = client.early, []
        for chunk in early:
            client.data_received(chunk)
        if client.read_eof:
            transport.write_eof()  # type: ignore[attr-defined]
        else:
            client.transport.resume_reading()


async def _close(listener: _Listener) -> None:
    for server in (listener.server, listener.twin):
        if server is not None:
            server.close()
            await server.wait_closed()
    listener.server = listener.twin = None


def _retarget(current: _Target, new: _Target) -> None:
    current.port_name = new.port_name
    current.endpoints = new.endpoints
    if current.affinity_timeout != new.affinity_timeout:
        current.affinity.clear()
    current.affinity_timeout = new.affinity_timeout


def _proxied(spec: dict[str, Any]) -> bool:
    return spec.get("type") != "ExternalName" and spec.get("clusterIP") not in (None, "", "None")


def _parse_service(svc: dict[str, Any]) -> _Service:
    spec, status = svc.get("spec") or {}, svc.get("status") or {}
    addresses = [*(spec.get("clusterIPs") or [spec.get("clusterIP")]), *(spec.get("externalIPs") or ())]
    if spec.get("type") == "LoadBalancer":
        addresses += [ingress.get("ip") for ingress in (status.get("loadBalancer") or {}).get("ingress") or ()]
    ports = tuple(
        _ServicePort(p.get("name") or "", int(p["port"]), p.get("targetPort", p["port"]))
        # UDP and SCTP are not relayed: the emulator's workloads and Envoy speak TCP (cluster DNS serves UDP itself).
        for p in spec.get("ports") or () if "port" in p and (p.get("protocol") or "TCP") == "TCP")
    affinity = None
    if spec.get("sessionAffinity") == "ClientIP":
        config = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
        affinity = float(config.get("timeoutSeconds") or AFFINITY_TIMEOUT)
    return _Service(tuple(dict.fromkeys(ip for ip in addresses if ip and is_ipv4(ip))), ports, affinity)


def _ready_endpoints(ep: dict[str, Any] | None, service_port: _ServicePort) -> tuple[tuple[str, int], ...]:
    """The ready ``(ip, port)`` pairs for one Service port, the way kube-proxy matches them.

    The Endpoints controller names each endpoint port after the Service port it serves and puts the pod's resolved
    ``targetPort`` in it, so the name decides; Endpoints written by hand often leave names out, so an unnamed
    Service port also matches a subset port equal to its numeric ``targetPort``, or the only port of a subset.
    """
    if not ep:
        return ()
    result: list[tuple[str, int]] = []
    for subset in ep.get("subsets") or ():
        port = _subset_port(subset.get("ports") or [], service_port)
        if port is None:
            continue
        result.extend((a["ip"], port) for a in subset.get("addresses") or () if a.get("ip") and is_ipv4(a["ip"]))
    return tuple(dict.fromkeys(result))


def _subset_port(ports: list[dict[str, Any]], service_port: _ServicePort) -> int | None:
    tcp = [p for p in ports if (p.get("protocol") or "TCP") == "TCP" and "port" in p]
    by_name = {p.get("name") or "": int(p["port"]) for p in tcp}
    if service_port.name in by_name:
        return by_name[service_port.name]
    if isinstance(service_port.target_port, str) and service_port.target_port in by_name:
        return by_name[service_port.target_port]
    if isinstance(service_port.target_port, int) and any(int(p["port"]) == service_port.target_port for p in tcp):
        return service_port.target_port
    if not service_port.name and len(tcp) == 1:
        return int(tcp[0]["port"])
    return None


