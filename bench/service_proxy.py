"""What the service proxy costs: sequential keep-alive HTTP requests straight to a pod versus through a ClusterIP.

Run: .venv/bin/python bench/service_proxy.py

Pods without a sidecar reach Services through the emulator's user-space proxy (no iptables, DESIGN.md decision 5),
so every request crosses one more process than on a real cluster. This measures that hop the way a call loop
meets it: one client, one keep-alive connection, 2,000 requests one after the other. The backend, the proxy and the
client are three processes, as a workload, the emulator and ``curl`` are. A third run goes through a Service with a
tap attached (lab 3's capture at the load-balancer hop) to show what observing costs.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import socket
import statistics
import time
from multiprocessing.connection import Connection

from labkit.core.contract import AddressPlan
from labkit.emulator.network import ServiceProxy

REQUESTS = 2_000
ROUNDS = 3
BODY = b"Hello version: v1, instance: helloworld-v1-bench\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n" % len(BODY)) + BODY
REQUEST = b"GET /hello HTTP/1.1\r\nHost: helloworld.sample:5000\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"


class _HttpBackend(asyncio.Protocol):
    """Just enough HTTP/1.1 keep-alive to answer one fixed response per request head."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            _, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            self.transport.write(RESPONSE)  # type: ignore[union-attr]


def _serve_backend(ip: str, conn: Connection) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_HttpBackend, ip, 0)
        conn.send(server.sockets[0].getsockname()[1])
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        server.close()

    asyncio.run(main())


def _serve_proxy(plan: AddressPlan, backend: tuple[str, int], conn: Connection) -> None:
    async def main() -> None:
        async with ServiceProxy() as proxy:
            services = {"plain": str(plan.service_network(1).network_address + 20),
                        "tapped": str(plan.service_network(1).network_address + 21)}
            for name, cluster_ip in services.items():
                await proxy.update_service({"metadata": {"name": name, "namespace": "bench"}, "spec": {
                    "clusterIP": cluster_ip, "ports": [{"name": "http", "port": 5000, "targetPort": backend[1]}]}})
                await proxy.update_endpoints({"metadata": {"name": name, "namespace": "bench"}, "subsets": [{
                    "addresses": [{"ip": backend[0]}], "ports": [{"name": "http", "port": backend[1]}]}]})
            tap = proxy.tap("bench", "tapped", max_chunks=REQUESTS * 2 * ROUNDS)
            conn.send(services)
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)
            conn.send(len(tap.chunks))
            tap.detach()

    asyncio.run(main())


def _rate(address: tuple[str, int]) -> float:
    with socket.create_connection(address) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(100):  # warm up: connection setup and first allocations are not what is measured
            _exchange(sock)
        started = time.perf_counter()
        for _ in range(REQUESTS):
            _exchange(sock)
        return REQUESTS / (time.perf_counter() - started)


def _exchange(sock: socket.socket) -> None:
    sock.sendall(REQUEST)
    received = 0
    while received < len(RESPONSE):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection mid-benchmark")
        received += len(chunk)


def main() -> None:
    plan = AddressPlan(block=random.randint(150, 250))
    backend_ip = str(plan.pod_network(1).network_address + 11)
    context = multiprocessing.get_context("spawn")
    backend_conn, backend_child = context.Pipe()
    proxy_conn, proxy_child = context.Pipe()
    backend_process = context.Process(target=_serve_backend, args=(backend_ip, backend_child))
    backend_process.start()
    try:
        backend = (backend_ip, backend_conn.recv())
        proxy_process = context.Process(target=_serve_proxy, args=(plan, backend, proxy_child))
        proxy_process.start()
        try:
            services = proxy_conn.recv()
            targets = {"direct to the pod": backend, "through the proxy": (services["plain"], 5000),
                       "through the proxy, tapped": (services["tapped"], 5000)}
            rates: dict[str, list[float]] = {name: [] for name in targets}
            for _ in range(ROUNDS):  # interleaved, so drift in machine load hits every path alike
                for name, address in targets.items():
                    rates[name].append(_rate(address))
            proxy_conn.send("stop")
            chunks = proxy_conn.recv()
        finally:
            proxy_process.join(timeout=10)
    finally:
        backend_conn.send("stop")
        backend_process.join(timeout=10)

    direct = statistics.median(rates["direct to the pod"])
    print(f"{REQUESTS} sequential keep-alive HTTP requests, median of {ROUNDS} rounds:")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"  {name:<27} {rate:8,.0f} req/s   {rate / direct:5.0%} of direct")
    print(f"  (the tap kept {chunks:,} chunks)")


if __name__ == "__main__":
    main()
