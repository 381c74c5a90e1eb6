"""The agent's gRPC side with a real Envoy: certificate by CSR over 15012, SDS on the pod's socket, ADS proxied.

A stand-in istiod (labkit's gRPC server with fixed answers) serves one cluster whose upstream TLS uses SDS
``default`` and ``ROOTCA``; Envoy is bootstrapped as Istio's is (``xds-grpc`` and ``sds-grpc`` on Unix sockets
in the pod's folder) and only ever talks to the agent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import json
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from labkit.emulator.envoy import protocol
from labkit.emulator.envoy.binary import find_envoy
from labkit.emulator.envoy.bootstrap import SDS_SOCKET, TOKEN_PATH, XDS_SOCKET, bootstrap
from labkit.emulator.envoy.workload import (
    AdsProxy,
    Credentials,
    Istiod,
    WorkloadAgent,
    socket_served,
)
from labkit.emulator.mesh.serving import AuthenticationError, Caller, Control, XdsServer
from labkit.pki import describe, new_root, request_identities
from labkit.testing import address_plan

pytestmark = pytest.mark.slow

CA = new_root()
SERVING = CA.issue_server("istiod", dns_names=["istiod.istio-system.svc"])
TOKEN = "the-pods-istio-ca-token"
SPIFFE = "spiffe://cluster.local/ns/sample/sa/sleep"
UPSTREAM = "outbound|443||secure.sample.svc.cluster.local"
SDS = {"api_config_source": {"api_type": "GRPC", "transport_api_version": "V3",
                             "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}]},
       "resource_api_version": "V3"}


def _ips(count: int) -> list[str]:
    hosts = address_plan().pod_network(1).hosts()
    next(hosts)
    return [str(next(hosts)) for _ in range(count)]


def _resources(node_id: str, metadata: Any, types: frozenset[str]) -> Any:
    cluster = {"name": UPSTREAM, "type": "STATIC", "connect_timeout": "1s",
               "load_assignment": {"cluster_name": UPSTREAM, "endpoints": [{"lb_endpoints": [{"endpoint": {
                   "address": {"socket_address": {"address": "127.0.0.1", "port_value": 9}}}}]}]},
               "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                   "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                   "common_tls_context": {
                       "tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": SDS}],
                       "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": SDS}}}}}
    listener = {"name": "mtls", "address": {"socket_address": {"address": metadata.get("IP", "127.0.0.1"),
                                                                "port_value": 15443}},
                "filter_chains": [{"transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                    "require_client_certificate": True, "common_tls_context": {
                        "tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": SDS}],
                        "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": SDS}}}},
                    "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                                 "HttpConnectionManager",
                        "stat_prefix": "mtls", "route_config": {"virtual_hosts": [{
                            "name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"},
                                                                         "direct_response": {"status": 200}}]}]},
                        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}
    return {protocol.CLUSTER: {UPSTREAM: cluster}, protocol.LISTENER: {"mtls": listener}}


async def _authenticate(token: str, cluster: str) -> Caller:
    if token != TOKEN:
        raise AuthenticationError("failed to validate the JWT")
    return Caller(cluster, "sample", "sleep")


def _sign(csr: str, caller: Caller, ttl: int) -> list[str]:
    assert request_identities(csr) == [SPIFFE]
    return [CA.sign_request(csr, SPIFFE, validity=dt.timedelta(seconds=ttl)), CA.root_pem]


def _certs(admin: tuple[str, int]) -> list[str]:
    """Serial numbers of the certificates Envoy holds (its /certs)."""
    try:
        with urllib.request.urlopen(f"http://{admin[0]}:{admin[1]}/certs", timeout=1) as response:
            body = json.loads(response.read())
    except OSError:
        return []
    return [chain["serial_number"] for entry in body.get("certificates", [])
            for chain in entry.get("cert_chain", [])]


async def _until(check: Any, what: str, deadline: float = 15.0) -> Any:
    end = time.monotonic() + deadline
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def test_the_agent_gets_rotates_and_serves_the_certificate_and_proxies_ads(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))


async def _scenario(pod: Path) -> None:
    istiod_ip, pod_ip = _ips(2)
    server = XdsServer(Control(_authenticate, _resources, _sign), lambda: "1")
    await server.start(istiod_ip, tls=(SERVING.cert_chain_pem, SERVING.key_pem))
    (pod / TOKEN_PATH).parent.mkdir(parents=True)
    (pod / TOKEN_PATH).write_text(TOKEN)
    agent = WorkloadAgent(pod, lambda: Istiod(f"{istiod_ip}:15012", CA.root_pem),
                          Credentials(pod / TOKEN_PATH, "cluster1"), SPIFFE, lifetime=6)
    stop = asyncio.Event()
    running = asyncio.create_task(agent.run(stop))
    node = f"sidecar~{pod_ip}~sleep-abc.sample~sample.svc.cluster.local"
    config = bootstrap(node_id=node, cluster="sleep.sample", metadata={"CLUSTER_ID": "cluster1", "IP": pod_ip},
                       admin_address=(pod_ip, 15000), status_address=None, access_log=False,
                       sockets=(pod / XDS_SOCKET, pod / SDS_SOCKET))
    (pod / "bootstrap.json").write_text(json.dumps(config))
    envoy = None
    try:
        await _until(lambda: socket_served(pod / SDS_SOCKET) and socket_served(pod / XDS_SOCKET), "the sockets")
        envoy = subprocess.Popen([str(find_envoy().path), "-c", str(pod / "bootstrap.json"), "--log-level", "warning",
                                  "--disable-hot-restart"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        first = await _until(lambda: _certs((pod_ip, 15000)), "Envoy to hold the workload certificate from SDS")
        assert agent.identity is not None and describe(agent.identity.cert_chain_pem)[0].uris == (SPIFFE,)
        # ADS reached istiod through the agent: both types ACKed there.
        await _until(lambda: [(r["types"]["CDS"], r["types"]["LDS"]) for r in server.sync_status()] == [
            ("SYNCED", "SYNCED")], "CDS and LDS SYNCED at istiod")
        # Rotation at half-life: a new certificate reaches Envoy before the first one expires, and mTLS calls made
        # all along (a new handshake each) never fail.
        expires = agent.identity.not_after
        client = _client_context(pod)
        await _until(lambda: _call(client, pod_ip), "the mTLS listener to answer")
        first = _certs((pod_ip, 15000))  # the listener's certificate included now
        failures, calls = 0, 0
        end = time.monotonic() + 12
        while time.monotonic() < end and not ((now := _certs((pod_ip, 15000))) and now != first and calls > 20):
            calls += 1
            failures += not await asyncio.to_thread(_call, client, pod_ip)
            await asyncio.sleep(0.05)
        assert _certs((pod_ip, 15000)) != first, "no rotated certificate reached Envoy"
        assert dt.datetime.now(dt.UTC) < expires
        assert agent.renewals >= 2
        assert (failures, calls > 20) == (0, True)
        # Someone else serving the SDS socket (SPIRE's agent) is left alone.
        other = WorkloadAgent(pod, lambda: Istiod(f"{istiod_ip}:15012", CA.root_pem),
                              Credentials(pod / TOKEN_PATH, "cluster1"), SPIFFE)
        other.ads.start = _noop  # type: ignore[method-assign]  (only the SDS decision is under test)
        other_stop = asyncio.Event()
        other_stop.set()
        await other.run(other_stop)
        assert other.secrets is None
    finally:
        if envoy is not None:
            envoy.terminate()
            envoy.wait(5)
        stop.set()
        await running
        await server.stop()


def _client_context(folder: Path) -> ssl.SSLContext:
    peer = CA.issue_workload("spiffe://cluster.local/ns/sample/sa/client")
    (folder / "client.pem").write_text(peer.cert_chain_pem)
    (folder / "client.key").write_text(peer.key_pem)
    context = ssl.create_default_context(cadata=CA.root_pem)
    context.check_hostname = False  # workload certificates carry a SPIFFE URI, no DNS name
    context.load_cert_chain(folder / "client.pem", folder / "client.key")
    return context


def _call(context: ssl.SSLContext, ip: str) -> bool:
    connection = http.client.HTTPSConnection(ip, 15443, context=context, timeout=2)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


async def _noop(*_: Any) -> None:
    return None


class _Upstream(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    """An istiod that pushes name tables as fast as it can while it reads what comes up the stream."""

    def __init__(self, tables: int):
        self.tables = tables
        self.received: list[Any] = []

    async def StreamAggregatedResources(self, requests: Any, context: Any) -> Any:  # gRPC's name
        async def read() -> None:
            async for request in requests:
                self.received.append(request)

        reader = asyncio.create_task(read())
        for version in range(self.tables):
            yield discovery_pb2.DiscoveryResponse(type_url=protocol.NAME_TABLE, version_info=str(version),
                                                  nonce=f"nds-{version}")
        await reader


@dataclass(frozen=True)
class _PlainIstiod:
    address: str

    def channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.address)


def test_envoys_requests_and_the_agents_name_table_acks_share_the_upstream_stream_without_loss(
        tmp_path: Path) -> None:
    # Envoy's ACKs and the agent's NDS ACKs are written to one gRPC call from two tasks; gRPC ends a call that
    # is handed a second message before the first is sent, and then Envoy's ACKs and new subscriptions never
    # reach istiod again: a cluster added later stays warming for ever, and its calls fail with 503.
    asyncio.run(_sharing(tmp_path, count=400))


async def _sharing(folder: Path, *, count: int) -> None:
    upstream = _Upstream(tables=count)
    server = grpc.aio.server()
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(upstream, server)
    address = _ips(1)[0]
    port = server.add_insecure_port(f"{address}:0")
    await server.start()
    tables: list[Any] = []
    proxy = AdsProxy(lambda: _PlainIstiod(f"{address}:{port}"), Credentials(folder / "token", "cluster1"),
                     on_names=tables.append)
    (folder / "token").write_text(TOKEN)
    await proxy.start(folder / XDS_SOCKET)

    async def envoy() -> Any:
        for index in range(count):
            yield discovery_pb2.DiscoveryRequest(type_url=protocol.ENDPOINT, response_nonce=str(index),
                                                 resource_names=[f"outbound|8000||svc-{index}.bar.global"])
            await asyncio.sleep(0)
        while len(upstream.received) < 2 * count + 1:
            await asyncio.sleep(0.05)

    try:
        async with grpc.aio.insecure_channel(f"unix:{folder / XDS_SOCKET}") as channel:
            call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources(envoy())
            await asyncio.wait_for(_drain(call), 30)
    finally:
        await proxy.stop()
        await server.stop(0)
    from_envoy = [r.response_nonce for r in upstream.received if r.type_url == protocol.ENDPOINT]
    acks = [r.response_nonce for r in upstream.received if r.type_url == protocol.NAME_TABLE and r.response_nonce]
    assert from_envoy == [str(index) for index in range(count)]  # every request, in Envoy's order
    assert acks == [f"nds-{version}" for version in range(count)]  # every table ACKed
    assert len(tables) == count


async def _drain(call: Any) -> None:
    async for _ in call:  # the agent keeps name tables to itself: Envoy hears nothing on this stream
        pytest.fail("a name table reached Envoy")
