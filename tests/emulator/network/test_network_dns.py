"""Cluster DNS on the wire: dnslib's client asks a running server over UDP and TCP."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from labkit.emulator.network import ClusterDns, ClusterNames


def cluster_names() -> ClusterNames:
    names = ClusterNames()
    names.update_service({"metadata": {"name": "helloworld", "namespace": "sample"},
                          "spec": {"clusterIP": "127.150.101.20", "ports": [{"name": "http", "port": 5000}]}})
    names.update_service({"metadata": {"name": "db", "namespace": "sample"},
                          "spec": {"type": "ExternalName", "externalName": "helloworld.sample.svc.cluster.local"}})
    return names


def with_server(body: Callable[[ClusterDns], Awaitable[None]], **options: object) -> None:
    async def main() -> None:
        async with ClusterDns(cluster_names(), "127.0.0.1", 0, **options) as server:  # type: ignore[arg-type]
            await body(server)

    asyncio.run(main())


async def ask(server: ClusterDns, name: str, qtype: str = "A", tcp: bool = False) -> DNSRecord:
    query = DNSRecord.question(name, qtype)
    reply = await asyncio.to_thread(query.send, server.address.host, server.address.port, tcp=tcp, timeout=3)
    return DNSRecord.parse(reply)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_a_service_name_gets_its_cluster_ip_with_a_short_ttl(tcp: bool) -> None:
    async def body(server: ClusterDns) -> None:
        reply = await ask(server, "helloworld.sample.svc.cluster.local", tcp=tcp)
        assert reply.header.rcode == RCODE.NOERROR
        assert reply.header.aa == 1
        assert [(str(rr.rdata), rr.ttl) for rr in reply.rr] == [("127.150.101.20", 5)]

    with_server(body)


def test_an_unknown_cluster_name_is_nxdomain_with_the_zone_soa() -> None:
    async def body(server: ClusterDns) -> None:
        reply = await ask(server, "nope.sample.svc.cluster.local")
        assert reply.header.rcode == RCODE.NXDOMAIN
        assert reply.rr == []
        assert [QTYPE[rr.rtype] for rr in reply.auth] == ["SOA"]

    with_server(body)


def test_aaaa_for_a_service_is_nodata_not_nxdomain() -> None:
    async def body(server: ClusterDns) -> None:
        reply = await ask(server, "helloworld.sample.svc.cluster.local", "AAAA")
        assert (reply.header.rcode, reply.rr) == (RCODE.NOERROR, [])

    with_server(body)


def test_external_name_is_a_cname_followed_inside_the_cluster() -> None:
    async def body(server: ClusterDns) -> None:
        reply = await ask(server, "db.sample.svc.cluster.local")
        assert [(QTYPE[rr.rtype], str(rr.rdata)) for rr in reply.rr] == [
            ("CNAME", "helloworld.sample.svc.cluster.local."), ("A", "127.150.101.20")]

    with_server(body)


def test_srv_for_a_named_port() -> None:
    async def body(server: ClusterDns) -> None:
        reply = await ask(server, "_http._tcp.helloworld.sample.svc.cluster.local", "SRV")
        assert [str(rr.rdata) for rr in reply.rr] == ["0 100 5000 helloworld.sample.svc.cluster.local."]
        assert [str(rr.rdata) for rr in reply.ar] == ["127.150.101.20"]

    with_server(body)


def test_names_outside_the_cluster_are_forwarded_to_the_host_resolver() -> None:
    async def body(server: ClusterDns) -> None:
        reply = await ask(server, "localhost")
        assert reply.header.rcode == RCODE.NOERROR
        assert reply.header.aa == 0
        assert "127.0.0.1" in [str(rr.rdata) for rr in reply.rr]
        unknown = await ask(server, "no-such-host.invalid")
        assert unknown.header.rcode == RCODE.NXDOMAIN

    with_server(body)


def test_without_forwarding_outside_names_are_refused() -> None:
    async def body(server: ClusterDns) -> None:
        assert (await ask(server, "localhost")).header.rcode == RCODE.REFUSED

    with_server(body, forward=False)


def test_answers_follow_updates_and_garbage_gets_no_reply() -> None:
    async def body(server: ClusterDns) -> None:
        server.names.remove_service("sample", "helloworld")
        assert (await ask(server, "helloworld.sample.svc.cluster.local")).header.rcode == RCODE.NXDOMAIN
        assert await server.answer(b"\x00garbage") is None

    with_server(body)


def test_a_privileged_port_falls_back_when_not_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        server = ClusterDns(ClusterNames(), "127.0.0.1", 53, fallback_port=0)
        bind = server._bind

        async def refuse_53(port: int) -> None:
            if port == 53:
                raise PermissionError(13, "Permission denied")
            await bind(port)

        monkeypatch.setattr(server, "_bind", refuse_53)
        address = await server.start()
        try:
            assert address.port not in (0, 53)
        finally:
            await server.stop()
        with pytest.raises(RuntimeError, match="not started"):
            _ = server.address

    asyncio.run(main())


def test_a_large_answer_is_truncated_over_udp_and_whole_over_tcp() -> None:
    async def body(server: ClusterDns) -> None:
        server.names.update_service({"metadata": {"name": "big", "namespace": "sample"}, "spec": {"clusterIP": "None"}})
        server.names.update_endpoints({"metadata": {"name": "big", "namespace": "sample"},
                                       "subsets": [{"addresses": [{"ip": f"127.150.1.{n}"} for n in range(1, 61)]}]})
        udp = await ask(server, "big.sample.svc.cluster.local")
        assert (udp.header.tc, udp.rr) == (1, [])
        tcp = await ask(server, "big.sample.svc.cluster.local", tcp=True)
        assert len(tcp.rr) == 60

    with_server(body)


def test_stop_closes_idle_tcp_clients() -> None:
    async def body(server: ClusterDns) -> None:
        reader, writer = await asyncio.open_connection(server.address.host, server.address.port)
        try:
            query = DNSRecord.question("helloworld.sample.svc.cluster.local").pack()
            writer.write(len(query).to_bytes(2, "big") + query)
            length = int.from_bytes(await reader.readexactly(2), "big")
            assert DNSRecord.parse(await reader.readexactly(length)).rr  # served, and now idle
            await server.stop()
            assert await reader.read() == b""
        finally:
            writer.close()
            await writer.wait_closed()

    with_server(body)
