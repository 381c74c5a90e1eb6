"""Cluster DNS: a real DNS server (UDP and TCP) answering from :class:`ClusterNames`, as kube-dns/CoreDNS does.

DESIGN.md decision 2 wants real DNS answers, so ``dig``, ``nslookup``, curl and Envoy's ``STRICT_DNS`` clusters all
query a server on the wire; it runs on the emulator's event loop (``create_datagram_endpoint`` and
``asyncio.start_server``) rather than dnslib's threaded server, so it shares state with the controllers without locks.

Choices that differ from CoreDNS, and why:

* TTL 5 s instead of 30 s: labs delete and recreate Services and scale to zero (lab 5's failover); a learner should
  see the new answer within seconds, not half a minute.
* Names outside the cluster domain are resolved with the host's resolver (``getaddrinfo`` in a worker thread, with a
  timeout) instead of forwarding packets to ``/etc/resolv.conf``'s servers: it works offline, honours
  ``/etc/hosts`` (``localhost``), and needs no knowledge of the host's DNS setup. Only A, AAAA and PTR can be
  forwarded that way; other types outside the cluster get ``REFUSED``.
* IPv4 only, as the emulator's addresses are: AAAA questions for cluster names get NOERROR without records, which
  is what clients need to fall back to A without errors.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from dnslib import AAAA, CNAME, PTR, QTYPE, RCODE, RR, SOA, SRV, A, DNSError, DNSHeader, DNSRecord

from labkit.emulator.network import separation
from labkit.emulator.network.names import Answer, ClusterNames

log = logging.getLogger(__name__)

DEFAULT_TTL = 5
UDP_PAYLOAD = 512  # RFC 1035 limit without EDNS0; larger answers are truncated so the client retries over TCP
FORWARD_TIMEOUT = 2.0


@dataclass(frozen=True)
class BoundAddress:
    """Where the DNS server listens (UDP and TCP share the port).

    Args:
        host: the IP address.
        port: the port; 53 when the process may bind it, else the fallback.
    """

    host: str
    port: int


class ClusterDns:
    """A DNS server for one cluster.

    Args:
        names: the cluster's names, kept current by the caller.
        host: the IP to bind (``kube-dns``'s ClusterIP, or ``127.0.0.1`` in tests).
        port: the port to bind; 53 as on a real cluster.
        fallback_port: where to bind instead when ``port`` needs privileges the process lacks (``0`` = any free
            port); ``None`` makes that a ``PermissionError``.
        ttl: TTL of every answer, and of negative answers (SOA minimum).
        forward: resolve names outside the cluster domain with the host's resolver; ``False`` answers ``REFUSED``.
        forward_timeout: seconds to wait for the host's resolver before answering ``SERVFAIL``.
        host_listener: when the emulator has networks of its own (:mod:`.separation`), makes a socket bound to an
            address on the machine's network (``udp`` or TCP), so the machine can query the server too.
        host_lookup: ``(name, family) -> addresses`` and ``address -> name`` resolved where the machine's
            resolver is reachable (:class:`~.separation.HostSockets`); by default this process resolves them.
    """

    def __init__(self, names: ClusterNames, host: str = "127.0.0.1", port: int = 53, *,
                 fallback_port: int | None = None, ttl: int = DEFAULT_TTL, forward: bool = True,
                 forward_timeout: float = FORWARD_TIMEOUT,
                 host_listener: Callable[[str, int, bool], socket.socket] | None = None,
                 host_lookup: tuple[Callable[[str, int], list[str]], Callable[[str], str | None]] | None = None):
        self.names = names
        self.host = host
        self.port = port
        self.fallback_port = fallback_port
        self.ttl = ttl
        self.forward = forward
        self.forward_timeout = forward_timeout
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._address: BoundAddress | None = None
        self.host_listener = host_listener
        self._lookup, self._reverse_lookup = host_lookup or (separation.resolve, separation.resolve_address)
        self._twins: list[asyncio.BaseTransport | asyncio.Server] = []

    @property
    def address(self) -> BoundAddress:
        """Where the server listens; only valid after :meth:`start`."""
        if self._address is None:
            raise RuntimeError("the DNS server is not started: await start() first")
        return self._address

    async def start(self) -> BoundAddress:
        """Bind UDP and TCP and start answering.

        Raises:
            PermissionError: ``port`` is privileged and no ``fallback_port`` was given.
            OSError: the address is not local or the port is taken.
        """
        try:
            await self._bind(self.port)
        except PermissionError:
            if self.fallback_port is None:
                raise
            log.info("cannot bind %s:%s without privileges; DNS falls back to port %s",
                     self.host, self.port, self.fallback_port or "any")
            await self._bind(self.fallback_port)
        if self.host_listener is not None:
            await self._twin(self.host_listener)
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="labkit-dns")
        return self.address

    async def stop(self) -> None:
        """Close both sockets, every TCP connection and every pending answer (idempotent)."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        for twin in self._twins:
            twin.close()
        self._twins.clear()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
            self._tcp = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._executor is not None:
            # A getaddrinfo stuck on an unreachable upstream must not hold the emulator's shutdown.
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._address = None

    async def __aenter__(self) -> ClusterDns:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- answering -----------------------------------------------------------------------------------------------

    async def answer(self, query: bytes) -> bytes | None:
        """The wire reply to a wire query; ``None`` for packets that are not a DNS query (they get no reply)."""
        try:
            request = DNSRecord.parse(query)
        except (DNSError, struct.error, IndexError, ValueError):
            return None
        if request.header.qr:
            return None
        reply = request.reply()
        if request.header.opcode != 0 or len(request.questions) != 1:
            reply.header.rcode = RCODE.NOTIMP if request.header.opcode != 0 else RCODE.FORMERR
            return reply.pack()
        question = request.q
        qname, qtype = str(question.qname), question.qtype
        if self.names.in_domain(qname):
            self._answer_cluster(reply, qname, qtype)
        elif self.forward and qtype in (QTYPE.A, QTYPE.AAAA, QTYPE.PTR):
            reply.header.aa = 0
            await self._answer_forwarded(reply, qname, qtype)
        else:
            reply.header.aa = 0
            reply.header.rcode = RCODE.REFUSED
        return reply.pack()

    def _answer_cluster(self, reply: DNSRecord, qname: str, qtype: int) -> None:
        answer = self.names.lookup(qname)
        if answer is None:
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self._soa())
            return
        records = self._records(qname, answer, qtype)
        if not records:
            # NODATA: the name exists; the SOA lets resolvers cache the absence for the TTL.
            reply.add_auth(self._soa())
        for record in records:
            reply.add_answer(record)
        if qtype == QTYPE.SRV:
            for srv in answer.srv:
                target = self.names.lookup(srv.target)
                for ip in target.addresses if target else ():
                    reply.add_ar(RR(srv.target, QTYPE.A, rdata=A(ip), ttl=self.ttl))

    def _records(self, qname: str, answer: Answer, qtype: int) -> list[RR]:
        records: list[RR] = []
        if answer.cname:
            records.append(RR(qname, QTYPE.CNAME, rdata=CNAME(answer.cname), ttl=self.ttl))
            if qtype in (QTYPE.A, QTYPE.ANY):
                # Follow the chain inside the cluster; a target outside it is left to the client's next query, as
                # CoreDNS does without an upstream resolver in the answer path.
                for ip in self.names.resolve(answer.cname):
                    if not ip.endswith("."):
                        records.append(RR(answer.cname, QTYPE.A, rdata=A(ip), ttl=self.ttl))
            return records
        if qtype in (QTYPE.A, QTYPE.ANY):
            records.extend(RR(qname, QTYPE.A, rdata=A(ip), ttl=self.ttl) for ip in answer.addresses)
        if qtype in (QTYPE.SRV, QTYPE.ANY):
            records.extend(RR(qname, QTYPE.SRV, ttl=self.ttl,
                              rdata=SRV(priority=s.priority, weight=s.weight, port=s.port, target=s.target))
                           for s in answer.srv)
        return records

    def _soa(self) -> RR:
        zone = f"{self.names.domain}."
        return RR(zone, QTYPE.SOA, ttl=self.ttl, rdata=SOA(
            f"ns.dns.{zone}", f"hostmaster.{zone}", (1, 7200, 1800, 86400, self.ttl)))

    async def _answer_forwarded(self, reply: DNSRecord, qname: str, qtype: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            if qtype == QTYPE.PTR:
                lookup = loop.run_in_executor(self._executor, _reverse, qname, self._reverse_lookup)
                host = await asyncio.wait_for(lookup, self.forward_timeout)
                if host:
                    reply.add_answer(RR(qname, QTYPE.PTR, rdata=PTR(_absolute(host)), ttl=self.ttl))
                else:
                    reply.header.rcode = RCODE.NXDOMAIN
                return
            family = socket.AF_INET if qtype == QTYPE.A else socket.AF_INET6
            addresses = await asyncio.wait_for(loop.run_in_executor(self._executor, self._lookup, qname, family),
                                               self.forward_timeout)
        except TimeoutError:
            log.info("host resolver did not answer %s within %.1f s", qname, self.forward_timeout)
            reply.header.rcode = RCODE.SERVFAIL
            return
        except socket.gaierror as exc:
            if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)) and qtype == QTYPE.A:
                reply.header.rcode = RCODE.NXDOMAIN
            elif exc.errno in (socket.EAI_AGAIN, socket.EAI_FAIL):
                reply.header.rcode = RCODE.SERVFAIL
            # Otherwise (no address of this family) NOERROR without records: the name may well have A records.
            return
        rdata = A if qtype == QTYPE.A else AAAA
        for ip in addresses:
            reply.add_answer(RR(qname, qtype, rdata=rdata(ip), ttl=self.ttl))

    # -- transports ----------------------------------------------------------------------------------------------

    async def _bind(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        # With port 0, UDP picks the port and TCP must get the same one; another process may hold it on TCP, so retry.
        for _ in range(10 if port == 0 else 1):
            udp, _protocol = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self),
                                                                 local_addr=(self.host, port))
            bound_port = udp.get_extra_info("sockname")[1]
            try:
                tcp = await asyncio.start_server(self._serve_tcp, self.host, bound_port, reuse_address=True)
            except OSError as exc:
                udp.close()
                if port == 0 and exc.errno == errno.EADDRINUSE:
                    continue
                raise
            self._udp, self._tcp = udp, tcp
            self._address = BoundAddress(self.host, bound_port)
            return
        raise OSError(errno.EADDRINUSE, f"no port free for both UDP and TCP on {self.host}")

    async def _twin(self, host_listener: Callable[[str, int, bool], socket.socket]) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.address.host, self.address.port
        try:
            udp, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self),
                                                         sock=host_listener(host, port, True))
            self._twins.append(udp)
            self._twins.append(await asyncio.start_server(self._serve_tcp, sock=host_listener(host, port, False)))
        except OSError as exc:  # pods still query it; only this machine cannot (port 53 needs privileges here)
            log.info("this machine cannot query the cluster DNS at %s:%s: %s", host, port, exc)

    def _spawn(self, coro: object) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_datagram(self, data: bytes, peer: tuple[str, int], transport: asyncio.DatagramTransport) -> None:
        reply = await self.answer(data)
        if reply is None or transport.is_closing():
            return
        limit = max(UDP_PAYLOAD, _edns_payload(data))
        if len(reply) > limit:
            reply = _truncated(reply)
        transport.sendto(reply, peer)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
                reply = await self.answer(await reader.readexactly(length))
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: ClusterDns):
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        # One task per query: a forwarded name may take a while and must not hold the cluster's answers.
        if self.transport is not None:
            self.server._spawn(self.server._answer_datagram(data, addr, self.transport))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a client that gave up: nothing to do, keep serving.
        log.debug("DNS UDP error: %s", exc)


def _reverse(qname: str, lookup: Callable[[str], str | None]) -> str | None:
    labels = qname.rstrip(".").lower().split(".")
    if labels[-2:] != ["in-addr", "arpa"] or len(labels) != 6:
        return None
    return lookup(".".join(reversed(labels[:4])))



def _absolute(name: str) -> str:
    return name if name.endswith(".") else f"{name}."


def _edns_payload(query: bytes) -> int:
    try:
        request = DNSRecord.parse(query)
    except (DNSError, struct.error, IndexError, ValueError):
        return 0
    return max((rr.rclass for rr in request.ar if rr.rtype == QTYPE.OPT), default=0)


def _truncated(reply: bytes) -> bytes:
    record = DNSRecord.parse(reply)
    truncated = DNSRecord(DNSHeader(id=record.header.id, bitmap=record.header.bitmap, tc=1), q=record.q)
    return truncated.pack()
