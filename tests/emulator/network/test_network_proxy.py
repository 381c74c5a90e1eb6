"""The service proxy relaying real TCP from ClusterIPs and load-balancer IPs to little backend servers."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from labkit.emulator.network import Direction, ServiceProxy
from labkit.testing import address_plan

PLAN = address_plan()
PODS = PLAN.pod_network(1)
SERVICES = PLAN.service_network(1)
CLUSTER_IP = str(SERVICES.network_address + 20)
LB_IP = str(PLAN.load_balancer_network().network_address + 7)
PORT = 8080


def pod_ip(n: int) -> str:
    return str(PODS.network_address + n)


class Backend:
    """Answers ``<name>:<everything the client sent before its EOF>`` and closes."""

    def __init__(self, ip: str, name: str, port: int = 0):
        self.ip, self.name, self.port = ip, name, port
        self.handlers: set[asyncio.Task[Any]] = set()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Backend:
        self.server = await asyncio.start_server(self.handle, self.ip, self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        if self.handlers:
            await asyncio.wait(self.handlers, timeout=5)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            data = await reader.read()
            writer.write(f"{self.name}:".encode() + data)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self.handlers.discard(task)


async def call(ip: str, port: int = PORT, payload: bytes = b"ping") -> bytes:
    reader, writer = await asyncio.open_connection(ip, port)
    try:
        writer.write(payload)
        writer.write_eof()  # the backend answers after our EOF: half-closes must cross the proxy
        return await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def service(name: str = "helloworld", *, target_port: int | str, port_name: str = "http", **spec: Any) -> dict:
    return {"metadata": {"name": name, "namespace": "sample"},
            "spec": {"clusterIP": CLUSTER_IP, "ports": [{"name": port_name, "port": PORT, "targetPort": target_port,
                                                         "protocol": "TCP"}], **spec},
            "status": spec.pop("status", {})}


def endpoints(name: str = "helloworld", *, ready: list[str], port: int, port_name: str = "http",
              not_ready: tuple[str, ...] = ()) -> dict:
    subset: dict[str, Any] = {"addresses": [{"ip": ip} for ip in ready],
                              "ports": [{"name": port_name, "port": port, "protocol": "TCP"}]}
    if not_ready:
        subset["notReadyAddresses"] = [{"ip": ip} for ip in not_ready]
    return {"metadata": {"name": name, "namespace": "sample"}, "subsets": [subset]}


def run(body: Callable[[ServiceProxy], Awaitable[None]]) -> None:
    async def main() -> None:
        async with ServiceProxy(rng=random.Random(7)) as proxy:
            await body(proxy)

    asyncio.run(main())


async def two_backends(proxy: ServiceProxy, stack: contextlib.AsyncExitStack, **spec: Any) -> tuple[Backend, Backend]:
    # One port on two pod IPs, as two replicas of a Deployment listen.
    a = await stack.enter_async_context(Backend(pod_ip(11), "v1"))
    b = await stack.enter_async_context(Backend(pod_ip(12), "v2", a.port))
    await proxy.update_service(service(target_port=a.port, **spec))
    await proxy.update_endpoints(endpoints(ready=[a.ip, b.ip], port=a.port))
    return a, b


def test_connections_are_relayed_to_both_endpoints_at_random() -> None:
    async def body(proxy: ServiceProxy) -> None:
        async with contextlib.AsyncExitStack() as stack:
            await two_backends(proxy, stack)
            answers = Counter([(await call(CLUSTER_IP)).decode() for _ in range(60)])
            assert set(answers) == {"v1:ping", "v2:ping"}
            assert min(answers.values()) >= 15

    run(body)


def test_large_payloads_cross_intact() -> None:
    async def body(proxy: ServiceProxy) -> None:
        async with contextlib.AsyncExitStack() as stack:
            await two_backends(proxy, stack)
            payload = random.randbytes(3 * 1024 * 1024)
            answer = await call(CLUSTER_IP, payload=payload)
            assert answer.split(b":", 1)[1] == payload

    run(body)


def test_no_ready_endpoint_means_connection_refused_until_they_return() -> None:
    async def body(proxy: ServiceProxy) -> None:
        async with Backend(pod_ip(11), "v1") as backend:
            await proxy.update_service(service(target_port=backend.port))
            with pytest.raises(ConnectionRefusedError):
                await call(CLUSTER_IP)
            assert proxy.frontends()[0].reason == "no ready endpoints"
            await proxy.update_endpoints(endpoints(ready=[backend.ip], port=backend.port))
            assert await call(CLUSTER_IP) == b"v1:ping"
            await proxy.update_endpoints(endpoints(ready=[], not_ready=(backend.ip,), port=backend.port))
            with pytest.raises(ConnectionRefusedError):
                await call(CLUSTER_IP)
            await proxy.update_endpoints(endpoints(ready=[backend.ip], port=backend.port))
            assert await call(CLUSTER_IP) == b"v1:ping"
            await proxy.remove_endpoints("sample", "helloworld")
            with pytest.raises(ConnectionRefusedError):
                await call(CLUSTER_IP)

    run(body)


def test_an_endpoint_that_refuses_resets_the_client() -> None:
    async def body(proxy: ServiceProxy) -> None:
        async with Backend(pod_ip(11), "v1") as backend:
            closed_port = backend.port
        await proxy.update_service(service(target_port=closed_port))
        await proxy.update_endpoints(endpoints(ready=[pod_ip(11)], port=closed_port))
        with pytest.raises(ConnectionResetError):
            await call(CLUSTER_IP)

    run(body)


def test_load_balancer_and_external_ips_get_listeners_too() -> None:
    async def body(proxy: ServiceProxy) -> None:
        external_ip = str(PLAN.load_balancer_network().network_address + 8)
        async with Backend(pod_ip(11), "v1") as backend:
            await proxy.update_service(service(target_port=backend.port, type="LoadBalancer", externalIPs=[external_ip],
                                               status={"loadBalancer": {"ingress": [{"ip": LB_IP}]}}))
            await proxy.update_endpoints(endpoints(ready=[backend.ip], port=backend.port))
            for ip in (CLUSTER_IP, LB_IP, external_ip):
                assert await call(ip) == b"v1:ping"
            assert {f.ip for f in proxy.frontends() if f.listening} == {CLUSTER_IP, LB_IP, external_ip}
            # Back to ClusterIP: the load balancer's address stops answering.
            await proxy.update_service(service(target_port=backend.port))
            with pytest.raises(ConnectionRefusedError):
                await call(LB_IP)
            assert await call(CLUSTER_IP) == b"v1:ping"

    run(body)


def test_a_named_target_port_goes_to_the_endpoint_port_of_that_name() -> None:
    async def body(proxy: ServiceProxy) -> None:
        async with Backend(pod_ip(11), "web") as web, Backend(pod_ip(11), "metrics") as metrics:
            await proxy.update_service(service(target_port="web", port_name="main"))
            await proxy.update_endpoints({
                "metadata": {"name": "helloworld", "namespace": "sample"},
                "subsets": [{"addresses": [{"ip": pod_ip(11)}],
                             "ports": [{"name": "metrics", "port": metrics.port}, {"name": "web", "port": web.port}]}]})
            assert {await call(CLUSTER_IP) for _ in range(5)} == {b"web:ping"}

    run(body)


def test_session_affinity_client_ip_sticks_to_one_endpoint() -> None:
    async def body(proxy: ServiceProxy) -> None:
        async with contextlib.AsyncExitStack() as stack:
            await two_backends(proxy, stack, sessionAffinity="ClientIP")
            assert len({await call(CLUSTER_IP) for _ in range(20)}) == 1

    run(body)


def test_a_tap_sees_both_directions_until_detached() -> None:
    async def body(proxy: ServiceProxy) -> None:
        tap = proxy.tap("sample", "helloworld")  # before the Service exists
        seen = []
        tap.on_chunk = seen.append
        async with Backend(pod_ip(11), "v1") as backend:
            await proxy.update_service(service(target_port=backend.port))
            await proxy.update_endpoints(endpoints(ready=[backend.ip], port=backend.port))
            assert await call(CLUSTER_IP, payload=b"GET / HTTP/1.1\r\n\r\n") == b"v1:GET / HTTP/1.1\r\n\r\n"
            assert tap.data(Direction.TO_ENDPOINT) == b"GET / HTTP/1.1\r\n\r\n"
            assert tap.data(Direction.TO_CLIENT) == b"v1:GET / HTTP/1.1\r\n\r\n"
            (connection,) = tap.connections.values()
            assert (connection.frontend, connection.endpoint) == ((CLUSTER_IP, PORT), (backend.ip, backend.port))
            assert {c.connection_id for c in tap.chunks} == {connection.connection_id}
            assert seen == tap.chunks
            tap.detach()
            tap.detach()
            assert not tap.attached
            await call(CLUSTER_IP)
            assert len(tap.chunks) == len(seen) == 2

    run(body)


def test_updates_are_idempotent_and_headless_services_get_no_listener() -> None:
    async def body(proxy: ServiceProxy) -> None:
        async with Backend(pod_ip(11), "v1") as backend:
            await proxy.update_service(service(target_port=backend.port))
            await proxy.update_endpoints(endpoints(ready=[backend.ip], port=backend.port))
            server = proxy._listeners[(CLUSTER_IP, PORT)].server
            await proxy.update_service(service(target_port=backend.port))
            await proxy.update_endpoints(endpoints(ready=[backend.ip], port=backend.port))
            assert proxy._listeners[(CLUSTER_IP, PORT)].server is server
            headless = service(target_port=backend.port)
            headless["spec"]["clusterIP"] = "None"
            await proxy.update_service(headless)
            assert proxy.frontends() == []
            with pytest.raises(ConnectionRefusedError):
                await call(CLUSTER_IP)
            await proxy.update_service(service(target_port=backend.port))
            assert await call(CLUSTER_IP) == b"v1:ping"
            await proxy.remove_service("sample", "helloworld")
            await proxy.remove_service("sample", "helloworld")
            with pytest.raises(ConnectionRefusedError):
                await call(CLUSTER_IP)

    run(body)


def test_an_address_held_by_another_service_is_taken_over_when_released() -> None:
    async def body(proxy: ServiceProxy) -> None:
        async with Backend(pod_ip(11), "one") as one, Backend(pod_ip(12), "two") as two:
            for name, backend in (("one", one), ("two", two)):
                await proxy.update_service(service(name, target_port=backend.port))
                await proxy.update_endpoints(endpoints(name, ready=[backend.ip], port=backend.port))
            assert await call(CLUSTER_IP) == b"one:ping"
            assert proxy.frontends("sample", "two")[0].reason == "address taken by Service sample/one"
            await proxy.remove_service("sample", "one")
            assert await call(CLUSTER_IP) == b"two:ping"

    run(body)


def test_stop_closes_connections_in_flight() -> None:
    async def main() -> None:
        async with Backend(pod_ip(11), "v1") as backend:
            proxy = ServiceProxy()
            await proxy.update_service(service(target_port=backend.port))
            await proxy.update_endpoints(endpoints(ready=[backend.ip], port=backend.port))
            reader, writer = await asyncio.open_connection(CLUSTER_IP, PORT)
            try:
                writer.write(b"half a request")
                await writer.drain()
                deadline = asyncio.get_running_loop().time() + 5
                while not backend.handlers and asyncio.get_running_loop().time() < deadline:
                    await asyncio.sleep(0.01)
                await proxy.stop()
                with contextlib.suppress(ConnectionResetError):
                    assert await reader.read() == b""
                with pytest.raises(ConnectionRefusedError):
                    await call(CLUSTER_IP)
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()

    asyncio.run(main())
