"""The agent's DNS proxy on the wire: answers from the name table, forwards the rest, as Istio's agent does."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from labkit.core.contract import AddressPlan
from labkit.emulator.envoy.dnsproxy import DnsProxy, LookupTable, from_environment
from labkit.emulator.envoy.nametables import NameInfo, NameTable
from labkit.errors import AgentError
from labkit.testing import address_plan

SEARCH = ("sample.svc.cluster.local", "svc.cluster.local", "cluster.local")
TABLE = NameTable({
    "helloworld.sample.svc.cluster.local": NameInfo(("127.1.101.20",), "Kubernetes", "helloworld", "sample"),
    "profile.demo.svc.cluster.local": NameInfo(("127.1.102.7",), "Kubernetes", "profile", "demo"),
    "svc-2.bar.global": NameInfo(("240.240.3.4",), "External"),
    "*.wild.example.com": NameInfo(("240.240.0.9",), "External"),
    "db.sample.svc.cluster.local": NameInfo(("127.1.1.20", "127.1.1.21"), "Kubernetes", "db", "sample"),
})


class _Upstream(BaseResolver):  # type: ignore[misc]
    """The cluster DNS: knows one outside name, records who asked."""

    def __init__(self) -> None:
        self.sources: list[str] = []

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        self.sources.append(handler.client_address[0])  # type: ignore[attr-defined]
        reply = request.reply()
        if str(request.q.qname) == "kubernetes.default.svc.cluster.local." and request.q.qtype == QTYPE.A:
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A("127.1.101.1"), ttl=5))
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


@pytest.fixture(scope="module")
def plan() -> AddressPlan:
    """Addresses of a block of this module's own: nothing else binds there, so port 0 is free on UDP and TCP."""
    return address_plan()


@pytest.fixture
def upstream(plan: AddressPlan) -> Iterator[tuple[_Upstream, tuple[str, int]]]:
    resolver, quiet = _Upstream(), DNSLogger("-recv,-send,-request,-reply,-truncated,-data,-error", prefix=False)
    host = plan.dns_service_ip(1)
    udp = DNSServer(resolver, address=host, port=0, logger=quiet)
    tcp = DNSServer(resolver, address=host, port=udp.server.server_address[1], tcp=True, logger=quiet)
    for server in (udp, tcp):
        threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield resolver, (host, udp.server.server_address[1])
    finally:
        for server in (udp, tcp):
            server.server.shutdown()
            server.server.server_close()


@pytest.fixture
def proxy(plan: AddressPlan, upstream: tuple[_Upstream, tuple[str, int]]) -> Iterator[DnsProxy]:
    dns = DnsProxy(str(plan.pod_network(1).network_address + 5), "sample", upstream[1], SEARCH, port=0)
    dns.start()
    try:
        yield dns
    finally:
        dns.stop()


def _ask(proxy: DnsProxy, name: str, qtype: str = "A", tcp: bool = False) -> DNSRecord:
    return DNSRecord.parse(DNSRecord.question(name, qtype).send(*proxy.address, tcp=tcp, timeout=3))


def _a(reply: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A)


def test_before_the_first_table_names_get_servfail(proxy: DnsProxy) -> None:
    assert not proxy.ready
    assert _ask(proxy, "helloworld.sample.svc.cluster.local").header.rcode == RCODE.SERVFAIL


def test_answers_table_names_and_their_kubernetes_short_forms(proxy: DnsProxy) -> None:
    proxy.update(TABLE)
    for name in ("helloworld.sample.svc.cluster.local", "helloworld.sample.svc", "helloworld.sample", "helloworld"):
        reply = _ask(proxy, name)
        assert (reply.header.rcode, reply.header.aa, _a(reply)) == (RCODE.NOERROR, 1, ["127.1.101.20"]), name
    # A short name only for the proxy's own namespace; another namespace's service needs name.namespace.
    assert _a(_ask(proxy, "profile.demo")) == ["127.1.102.7"]
    assert _ask(proxy, "profile").header.rcode == RCODE.NXDOMAIN  # forwarded: the upstream does not know it
    assert _a(_ask(proxy, "svc-2.bar.global", tcp=True)) == ["240.240.3.4"]
    assert _a(_ask(proxy, "anything.wild.example.com")) == ["240.240.0.9"]
    assert _a(_ask(proxy, "db.sample")) == ["127.1.1.20", "127.1.1.21"]


def test_the_first_search_domain_query_gets_a_cname_to_the_name(proxy: DnsProxy) -> None:
    proxy.update(TABLE)
    reply = _ask(proxy, "profile.demo.sample.svc.cluster.local")
    assert [(QTYPE[rr.rtype], str(rr.rname), str(rr.rdata)) for rr in reply.rr] == [
        ("CNAME", "profile.demo.sample.svc.cluster.local.", "profile.demo."),
        ("A", "profile.demo.", "127.1.102.7")]


def test_aaaa_for_a_table_name_is_nodata_not_nxdomain(proxy: DnsProxy) -> None:
    proxy.update(TABLE)
    reply = _ask(proxy, "helloworld.sample", "AAAA")
    assert (reply.header.rcode, reply.rr) == (RCODE.NOERROR, [])


def test_other_names_are_forwarded_from_the_pod_address(proxy: DnsProxy,
                                                        upstream: tuple[_Upstream, tuple[str, int]]) -> None:
    proxy.update(NameTable())
    assert _a(_ask(proxy, "kubernetes.default.svc.cluster.local")) == ["127.1.101.1"]
    assert _a(_ask(proxy, "kubernetes.default.svc.cluster.local", tcp=True)) == ["127.1.101.1"]
    assert _ask(proxy, "nowhere.sample.svc.cluster.local").header.rcode == RCODE.NXDOMAIN
    assert set(upstream[0].sources) == {proxy.host}


def test_a_new_table_replaces_the_old_one(proxy: DnsProxy) -> None:
    proxy.update(TABLE)
    assert _a(_ask(proxy, "svc-2.bar.global")) == ["240.240.3.4"]
    proxy.update(NameTable({"svc-2.bar.global": NameInfo(("240.240.3.5",), "External")}))
    assert _a(_ask(proxy, "svc-2.bar.global")) == ["240.240.3.5"]
    assert _ask(proxy, "helloworld.sample").header.rcode == RCODE.NXDOMAIN


def test_an_upstream_that_does_not_answer_gives_servfail(plan: AddressPlan) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind((plan.dns_service_ip(1), 0))
        dns = DnsProxy(str(plan.pod_network(1).network_address + 6), "sample", silent.getsockname(), SEARCH,
                       port=0, upstream_timeout=0.2)
        dns.start()
        try:
            dns.update(NameTable())
            assert _ask(dns, "example.com").header.rcode == RCODE.SERVFAIL
        finally:
            dns.stop()


def test_lookup_table_generates_istios_alt_hosts() -> None:
    table = LookupTable.of(TABLE, "sample", SEARCH)
    assert {"helloworld.", "helloworld.sample.", "helloworld.sample.svc.", "helloworld.sample.svc.cluster.local.",
            "profile.demo.", "profile.demo.svc.", "svc-2.bar.global."} <= set(table.addresses)
    assert "profile." not in table.addresses
    assert table.cnames["svc-2.bar.global.sample.svc.cluster.local."] == "svc-2.bar.global."
    # A name already under the first search domain gets no alias (Istio checks the suffix, not the name).
    assert "helloworld.sample.svc.cluster.local.sample.svc.cluster.local." not in table.cnames


def test_only_a_capturing_sidecar_runs_it_and_it_needs_the_pods_resolver() -> None:
    env = {"ISTIO_META_DNS_CAPTURE": "true", "INSTANCE_IP": "127.1.1.5", "POD_NAMESPACE": "sample",
           "LABKIT_DNS_SERVER": "127.1.101.10:53", "LABKIT_DNS_SEARCH": " ".join(SEARCH)}
    dns = from_environment(env)
    assert dns is not None
    assert (dns.address, dns.upstream, dns.search, dns.namespace) == (
        ("127.1.1.5", 15053), ("127.1.101.10", 53), SEARCH, "sample")
    assert from_environment(env, "router") is None
    assert from_environment({**env, "ISTIO_META_DNS_CAPTURE": "false"}) is None
    with pytest.raises(AgentError, match="LABKIT_DNS_SERVER"):
        from_environment({**env, "LABKIT_DNS_SERVER": ""})
