"""istiod's ADS server pushing to many real Envoys: time from a change to every proxy's ACK, and memory per Envoy.

Run: .venv/bin/python bench/ads_push.py [PROXIES] [CHANGES]

Starts labkit's gRPC server (:mod:`labkit.emulator.mesh.serving`, the one istiod runs on 15010/15012) with a
fixed mesh of 40 services (one EDS cluster and its endpoints each, per proxy), PROXIES real Envoys (default 120:
3 clusters × 40) bootstrapped on ADS, then makes CHANGES (default 20) Service changes — one more endpoint for one
service — and times each from the push until every Envoy has ACKed it (the server's per-stream state, as
``/debug/syncz`` reports it). Prints p50/p95, and the private memory (RSS − shared) per Envoy.

This measures the transport alone: istiod's informers and builders and the agents are not in the loop (their time
is in bench/lab_ready.py, an agent's memory in bench/envoy_start.py).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from labkit.emulator.envoy import protocol
from labkit.emulator.envoy.binary import find_envoy
from labkit.emulator.mesh.serving import Caller, Control, XdsServer
from labkit.testing import address_plan

SERVICES = 40


class Mesh:
    def __init__(self) -> None:
        self.version = 1
        self.endpoints = {f"outbound|80||svc{i}.sample.svc.cluster.local": ["10.0.0.1"] for i in range(SERVICES)}

    def resources(self, node_id: str, metadata: Any, types: frozenset[str]) -> Any:
        clusters = {name: {"name": name, "type": "EDS", "connect_timeout": "1s",
                           "eds_cluster_config": {"service_name": name,
                                                  "eds_config": {"ads": {}, "resource_api_version": "V3"}}}
                    for name in self.endpoints}
        assignments = {name: {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": ip, "port_value": 80}}}} for ip in ips]}]}
            for name, ips in self.endpoints.items()}
        return {protocol.CLUSTER: clusters, protocol.ENDPOINT: assignments, protocol.LISTENER: {}}


async def _refuse(token: str, cluster: str) -> Caller:
    raise AssertionError("the plaintext port asks for no token")


def _bootstrap(node: str, admin_ip: str, server_ip: str) -> dict[str, Any]:
    return {
        "node": {"id": node, "cluster": "bench.sample", "metadata": {"CLUSTER_ID": "cluster1"}},
        "admin": {"address": {"socket_address": {"address": admin_ip, "port_value": 15000}}},
        "dynamic_resources": {
            "ads_config": {"api_type": "GRPC", "transport_api_version": "V3", "set_node_on_first_message_only": True,
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"}},
        "static_resources": {"clusters": [{
            "name": "xds-grpc", "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}},
            "load_assignment": {"cluster_name": "xds-grpc", "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": server_ip, "port_value": 15010}}}}]}]}}]},
    }


def _private_mb(pid: int) -> float:
    fields = Path(f"/proc/{pid}/statm").read_text().split()
    page = 4096
    return (int(fields[1]) - int(fields[2])) * page / 2**20


async def main(proxies: int, changes: int) -> None:
    hosts = address_plan().pod_network(1).hosts()
    next(hosts)
    server_ip = str(next(hosts))
    mesh = Mesh()
    server = XdsServer(Control(_refuse, mesh.resources, lambda *_: []), lambda: str(mesh.version))
    await server.start(server_ip, tls=None)
    envoys: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as folder:
        try:
            started = time.perf_counter()
            for number in range(proxies):
                ip = str(next(hosts))
                node = f"sidecar~{ip}~bench-{number}.sample~sample.svc.cluster.local"
                path = Path(folder) / f"{number}.json"
                path.write_text(json.dumps(_bootstrap(node, ip, server_ip)))
                envoys.append(subprocess.Popen([str(find_envoy().path), "-c", str(path), "--concurrency", "1",
                                                "--disable-hot-restart", "--log-level", "error"],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

            def all_synced() -> bool:
                rows = server.sync_status()
                return len(rows) == proxies and all(r["types"]["CDS"] == r["types"]["EDS"] == "SYNCED" for r in rows)

            while not all_synced():
                await asyncio.sleep(0.02)

            def acked(version: str) -> bool:
                """Every proxy ACKed the EDS response of this push version (versions are ``<push>/<digest>``)."""
                states = [c.types.get(protocol.ENDPOINT) for c in server.connections.values()]
                return len(states) == proxies and all(
                    s is not None and s.acked_version.split("/")[0] == version and s.acked_nonce == s.sent_nonce
                    for s in states)
            print(f"{proxies} Envoys started and SYNCED over ADS in {time.perf_counter() - started:.1f} s")
            timings = []
            for change in range(changes):
                name = f"outbound|80||svc{change % SERVICES}.sample.svc.cluster.local"
                mesh.endpoints[name] = [*mesh.endpoints[name], f"10.0.1.{change + 1}"]
                mesh.version += 1
                begun = time.perf_counter()
                server.push()
                while not acked(str(mesh.version)):
                    await asyncio.sleep(0.005)
                timings.append(time.perf_counter() - begun)
            timings.sort()
            p95 = timings[min(len(timings) - 1, round(0.95 * (len(timings) - 1)))]
            print(f"change → every proxy's ACK over {changes} changes: p50 {statistics.median(timings) * 1000:.0f} ms, "
                  f"p95 {p95 * 1000:.0f} ms")
            memory = [_private_mb(e.pid) for e in envoys]
            print(f"private memory per Envoy: median {statistics.median(memory):.1f} MB")
        finally:
            for envoy in envoys:
                envoy.terminate()
            for envoy in envoys:
                envoy.wait(10)
            await server.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 120, int(sys.argv[2]) if len(sys.argv) > 2 else 20))
