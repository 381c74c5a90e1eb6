"""How pods find Services by name: the seam between the node and the cluster DNS.

Processes started by the node (above all the machine's curl under ``kubectl exec``) ask the cluster
DNS through the curl shim (:mod:`.programs.curl_shim`), which sends ordinary DNS queries over UDP.
That makes the seam a DNS server address, the same thing a real pod gets in its ``resolv.conf``:

* if the caller runs the cluster DNS as a real DNS server, it passes ``dns_server=(ip, port)`` and the
  node only writes that address into each pod's shim;
* if the caller has only a :class:`Resolver` object, the node serves it as a small DNS responder on
  ``127.0.0.1`` (:class:`DnsBridge`, built on dnslib), so the shim does not care which it is.

Queries arrive from the asking pod's IP, so the bridge passes the pod's namespace to
``Resolver.resolve``; the shim applies the pod's search list itself and asks fully qualified names.

A pod whose sidecar declaration names a DNS port (Istio's DNS proxy, ``dnsPort`` in ``labkit.io/sidecar``)
sends its programs' queries to ``<pod IP>:<dnsPort>`` instead (:func:`.environment.resolver_address`); the proxy
forwards what it does not know to this address, which every container gets as ``LABKIT_DNS_SERVER`` (the
pod's ``resolv.conf``), from the pod's IP too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol, cast

from dnslib import QTYPE, RCODE, RR, A, DNSRecord

logger = logging.getLogger(__name__)

DEFAULT_TTL = 5


class Resolver(Protocol):
    """What the cluster DNS answers: the IPv4 addresses of a name, as seen from a namespace."""

    def resolve(self, name: str, namespace: str) -> list[str]:
        """Addresses of ``name`` (no trailing dot) for a pod in ``namespace``; empty when it does not exist."""
        ...


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, bridge: DnsBridge):
        self.bridge = bridge
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector datagram transport does not subclass DatagramTransport: cast, do not check.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            reply = self.bridge.answer(data, addr[0])
        except Exception:  # a malformed query must not stop the responder
            logger.debug("dropped a DNS query from %s", addr[0], exc_info=True)
            return
        if self.transport is not None:
            self.transport.sendto(reply, addr)


class DnsBridge:
    """A DNS responder on loopback that answers A queries from a :class:`Resolver`.

    Args:
        resolver: the cluster DNS's answers.
        namespace_of: the namespace of the pod with a given IP (``""`` when unknown).
    """

    def __init__(self, resolver: Resolver, namespace_of: Callable[[str], str]):
        self.resolver = resolver
        self.namespace_of = namespace_of
        self.address: tuple[str, int] | None = None
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self, host: str = "127.0.0.1") -> tuple[str, int]:
        """Listen on an ephemeral UDP port of ``host``; returns the address."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), local_addr=(host, 0))
        self._transport = transport
        sockname = transport.get_extra_info("sockname")
        self.address = (sockname[0], sockname[1])
        return self.address

    def answer(self, data: bytes, source: str) -> bytes:
        """The reply to one query: A records, or NXDOMAIN when the resolver knows no addresses."""
        query = DNSRecord.parse(data)
        reply = query.reply()
        question = query.q
        name = str(question.qname).rstrip(".")
        addresses = self.resolver.resolve(name, self.namespace_of(source))
        if not addresses:
            reply.header.rcode = RCODE.NXDOMAIN
        elif question.qtype in (QTYPE.A, QTYPE.ANY):
            for address in addresses:
                reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(address), ttl=DEFAULT_TTL))
        return reply.pack()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
