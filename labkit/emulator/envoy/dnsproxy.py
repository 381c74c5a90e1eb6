"""The agent's DNS proxy (``ISTIO_META_DNS_CAPTURE: "true"``): the pod's DNS answered from istiod's name table.

Istio's agent (``pkg/dns/client``) listens on ``127.0.0.1:15053`` in the pod, and iptables sends the pod's port-53
traffic there. Names in its name table (NDS, :mod:`.nametables`) get answers from the table; everything else is
forwarded as is to the upstream resolvers of the pod's ``resolv.conf`` (the cluster DNS). That is what lets a pod
resolve a service that exists only in another cluster, or a ServiceEntry host with an auto-allocated address.

Here pods share the machine's network, so every pod's ``127.0.0.1:15053`` would be one socket: the proxy listens
on ``<pod IP>:15053`` instead, the one address that is the pod's own, and the node points the pod's resolver
there (DESIGN decision 5: resolver configuration instead of iptables). UDP and TCP, like Istio's.

What it answers, as Istio's ``LocalDNSServer`` does:

- a host in the table, and for Kubernetes services also ``name.namespace``, ``name.namespace.svc`` and (in the
  proxy's own namespace) ``name`` (``generateAltHosts``): A records, authoritative, in random order (DNS load
  balancing for headless services); AAAA and other types for such a name: NOERROR without records (never
  NXDOMAIN, which would make a client give up on the A answer too);
- the host with the pod's first search domain appended (``helloworld.sample.sample.svc.cluster.local``, the query a
  resolver with ``ndots:5`` sends first): a CNAME to the host plus its A records, so the search ends in one query;
- ``*.example.com`` rows answer any name under them;
- before the first table arrives: SERVFAIL (Istio's agent does the same until NDS syncs);
- everything else: forwarded to the upstream from the pod's own address, its reply returned unchanged (NXDOMAIN
  stays NXDOMAIN); no reply within the timeout → SERVFAIL.

The server is dnslib's threaded one, so the agent can run it whether it is synchronous or asyncio-based; a new
table is swapped in with one reference assignment (:meth:`DnsProxy.update`), which a query in flight never sees
half done.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import struct
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dnslib import CNAME, QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

from labkit.emulator.envoy.nametables import NameTable
from labkit.errors import AgentError

log = logging.getLogger(__name__)

DNS_PROXY_PORT = 15053
TTL = 30  # Istio's agent answers with a 30 s TTL
UPSTREAM_TIMEOUT = 2.0  # Istio's DefaultUpstreamTimeout is 5 s; the cluster DNS here answers in microseconds
CLUSTER_DOMAIN = "svc.cluster.local"
POLL = 0.05


@dataclass(frozen=True)
class LookupTable:
    """The name table expanded into every name the proxy answers (Istio's ``LookupTable``), lower case, dotted.

    Args:
        addresses: name → IPv4 addresses.
        cnames: name → the name it is an alias of (host + first search domain → host).
    """

    addresses: dict[str, tuple[str, ...]] = field(default_factory=dict)
    cnames: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, table: NameTable, namespace: str, search: Sequence[str] = (),
           domain: str = CLUSTER_DOMAIN) -> LookupTable:
        """Expand ``table`` for a proxy in ``namespace`` whose pod searches ``search``.

        Args:
            table: istiod's name table.
            namespace: the proxy's namespace (``name`` alone answers only for its own services).
            search: the pod's search domains; the first one gets the CNAME shortcut.
            domain: the proxy's domain without the namespace (``svc.cluster.local``).
        """
        addresses: dict[str, tuple[str, ...]] = {}
        cnames: dict[str, str] = {}
        first = search[0].strip(".").lower() if search else ""
        svc = domain.split(".", 1)[0]
        for host, info in table.table.items():
            ips = tuple(ip for ip in info.ips if ":" not in ip)  # IPv4 only, like the emulator's addresses
            names = {f"{host.lower()}."}
            if info.shortname and info.namespace and host.lower().endswith(f".{domain}"):
                names.add(f"{info.shortname}.{info.namespace}.".lower())
                names.add(f"{info.shortname}.{info.namespace}.{svc}.".lower())
                if info.namespace == namespace:
                    names.add(f"{info.shortname}.".lower())
            for name in names:
                addresses[name] = ips
                if first and not name.endswith(f"{first}."):
                    expanded = f"{name}{first}."
                    if expanded not in names:
                        cnames[expanded] = name
        return cls(addresses, cnames)

    def lookup(self, qname: str) -> tuple[str, str, tuple[str, ...]] | None:
        """``(alias or "", name answered, addresses)`` for a dotted, lower-case name; ``None`` when not ours."""
        alias = ""
        name = qname
        if name in self.cnames:
            alias, name = name, self.cnames[name]
        if name in self.addresses:
            return alias, name, self.addresses[name]
        labels = name.rstrip(".").split(".")
        for index in range(1, len(labels)):
            wildcard = "*." + ".".join(labels[index:]) + "."
            if wildcard in self.addresses:
                return alias, name, self.addresses[wildcard]
        return None


class _Resolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, proxy: DnsProxy):
        self.proxy = proxy

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        return self.proxy.answer(request, tcp=handler.protocol == "tcp")


class _QuietLogger(DNSLogger):  # type: ignore[misc]
    """dnslib prints every query to stdout by default; the agent's log is Envoy's and its own."""

    def __init__(self) -> None:
        super().__init__(log="-recv,-send,-request,-reply,-truncated,-data", prefix=False)

    def log_error(self, handler: DNSHandler, e: Exception) -> None:
        log.debug("DNS proxy: %s", e)


class DnsProxy:
    """The agent's DNS server for one pod.

    Args:
        host: the pod IP, where the pod's resolver is pointed.
        namespace: the pod's namespace.
        upstream: the pod's upstream resolver ``(ip, port)`` (the cluster DNS, from its ``resolv.conf``).
        search: the pod's search domains (``<ns>.svc.cluster.local svc.cluster.local cluster.local``).
        port: the port; 15053 as Istio's, ``0`` for any free one (tests).
        domain: the proxy's domain without the namespace.
        upstream_timeout: seconds to wait for the upstream before answering SERVFAIL.
    """

    def __init__(self, host: str, namespace: str, upstream: tuple[str, int], search: Sequence[str] = (), *,
                 port: int = DNS_PROXY_PORT, domain: str = CLUSTER_DOMAIN,
                 upstream_timeout: float = UPSTREAM_TIMEOUT):
        self.host = host
        self.namespace = namespace
        self.upstream = upstream
        self.search = tuple(search)
        self.port = port
        self.domain = domain
        self.upstream_timeout = upstream_timeout
        self._lookup: LookupTable | None = None
        self._servers: list[DNSServer] = []

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (after :meth:`start`)."""
        return self.host, self.port

    @property
    def ready(self) -> bool:
        """Whether a name table has arrived (before that, names get SERVFAIL)."""
        return self._lookup is not None

    def update(self, table: NameTable) -> None:
        """Answer from ``table`` from now on (atomic: a query sees the old table or the new one).

        Args:
            table: the name table istiod sent (NDS), e.g. ``nametables.from_wire(resource)``.
        """
        self._lookup = LookupTable.of(table, self.namespace, self.search, self.domain)

    def start(self) -> tuple[str, int]:
        """Listen on UDP and TCP (one port for both) in background threads; returns the address.

        Raises:
            OSError: the address is not local or the port is taken.
        """
        resolver, logger = _Resolver(self), _QuietLogger()
        for _ in range(10 if self.port == 0 else 1):
            udp = DNSServer(resolver, address=self.host, port=self.port, logger=logger)
            port = udp.server.server_address[1]
            try:
                tcp = DNSServer(resolver, address=self.host, port=port, tcp=True, logger=logger)
            except OSError:
                udp.server.server_close()
                if self.port == 0:
                    continue
                raise
            self.port = port
            self._servers = [udp, tcp]
            for server in self._servers:
                server.server.daemon_threads = True
                # A short poll, so stopping (on every pod's exit) takes milliseconds rather than half a second.
                threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": POLL},
                                 name=f"dns-proxy-{server.server.socket_type}", daemon=True).start()
            return self.address
        raise OSError(f"no port free for both UDP and TCP on {self.host}")

    def stop(self) -> None:
        """Stop both servers (idempotent)."""
        for server in self._servers:
            with contextlib.suppress(OSError):
                server.server.shutdown()
                server.server.server_close()
        self._servers = []

    # -- answering -----------------------------------------------------------------------------------------------

    def answer(self, request: DNSRecord, *, tcp: bool = False) -> DNSRecord:
        """The reply to one query (table, or upstream as is).

        Args:
            request: the query.
            tcp: it came over TCP (the upstream is then asked over TCP too).
        """
        reply = request.reply()
        if not request.questions:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        lookup = self._lookup
        if lookup is None:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        question = request.q
        qname = str(question.qname).lower()
        found = lookup.lookup(qname) if question.qtype in (QTYPE.A, QTYPE.AAAA) else None
        if found is None:
            return self._forward(request, tcp)
        alias, name, addresses = found
        reply.header.aa = 1  # the table is the authority for the names it holds
        if question.qtype == QTYPE.A and addresses:
            if alias:
                reply.add_answer(RR(question.qname, QTYPE.CNAME, rdata=CNAME(name), ttl=TTL))
            owner = name if alias else question.qname
            for ip in random.sample(addresses, len(addresses)):
                reply.add_answer(RR(owner, QTYPE.A, rdata=A(ip), ttl=TTL))
        return reply

    def _forward(self, request: DNSRecord, tcp: bool) -> DNSRecord:
        """Ask the upstream from the pod's own address (as the pod would) and return its reply unchanged."""
        packet = request.pack()
        try:
            data = _exchange(packet, self.upstream, self.host, self.upstream_timeout, tcp)
            reply = DNSRecord.parse(data)
            if reply.header.tc and not tcp:
                reply = DNSRecord.parse(_exchange(packet, self.upstream, self.host, self.upstream_timeout, True))
        except (OSError, ValueError, struct.error) as exc:
            log.info("upstream %s:%s did not answer %s: %s", *self.upstream, request.q.qname, exc)
            reply = request.reply()
            reply.header.rcode = RCODE.SERVFAIL
        return reply


def _exchange(packet: bytes, upstream: tuple[str, int], source: str, timeout: float, tcp: bool) -> bytes:
    family_type = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, family_type) as sock:
        sock.settimeout(timeout)
        with contextlib.suppress(OSError):
            sock.bind((source, 0))  # the pod's address: a resolver that tells pods apart still can
        if tcp:
            sock.connect(upstream)
            sock.sendall(struct.pack("!H", len(packet)) + packet)
            length = struct.unpack("!H", _read(sock, 2))[0]
            return _read(sock, length)
        sock.sendto(packet, upstream)
        query_id = packet[:2]
        while True:
            data, _ = sock.recvfrom(65535)
            if data[:2] == query_id:
                return data


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError("upstream closed the connection")
        data += chunk
    return data


def dns_capture(env: Mapping[str, str]) -> bool:
    """Whether the proxy's metadata asks for the DNS proxy (``ISTIO_META_DNS_CAPTURE: "true"``)."""
    return env.get("ISTIO_META_DNS_CAPTURE", "").lower() == "true"


def from_environment(env: Mapping[str, str], proxy_type: str = "sidecar") -> DnsProxy | None:
    """The pod's DNS proxy as the agent's environment describes it, or ``None`` when DNS capture is off.

    Only sidecars run it, as Istio's agent (``isDNSServerEnabled``): gateways resolve nothing for applications.

    Reads ``ISTIO_META_DNS_CAPTURE``, ``INSTANCE_IP`` and ``POD_NAMESPACE`` (the injector's) and the pod's
    ``resolv.conf`` as labkit's node hands it over: ``LABKIT_DNS_SERVER`` (``ip:port`` of the cluster DNS, the
    upstream) and ``LABKIT_DNS_SEARCH``.

    Args:
        env: the agent's environment.
        proxy_type: ``sidecar`` or ``router`` (the agent's ``proxy`` argument).

    Raises:
        AgentError: capture is on but the node named no upstream resolver.
    """
    if not dns_capture(env) or proxy_type != "sidecar":
        return None
    server = env.get("LABKIT_DNS_SERVER", "")
    host, _, port = server.rpartition(":")
    if not host or not port.isdigit():
        raise AgentError(f"ISTIO_META_DNS_CAPTURE is on but LABKIT_DNS_SERVER is {server!r}: labkit's node sets it "
                         "to the cluster DNS (ip:port) the DNS proxy forwards to; run the proxy in a labkit pod")
    return DnsProxy(env.get("INSTANCE_IP", ""), env.get("POD_NAMESPACE", ""), (host, int(port)),
                    env.get("LABKIT_DNS_SEARCH", "").split())


__all__ = ["DNS_PROXY_PORT", "DnsProxy", "LookupTable", "dns_capture", "from_environment"]
