"""istiod's gRPC server against a plain gRPC client and a real Envoy: ADS state of the world, ACK/NACK, the CA."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request
from collections.abc import Mapping
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from labkit.emulator.envoy import protocol
from labkit.emulator.envoy.binary import find_envoy
from labkit.emulator.mesh.serving import AuthenticationError, Caller, Control, XdsServer
from labkit.pki import describe, new_request, new_root
from labkit.testing import address_plan

pytestmark = pytest.mark.slow

TOKEN = "valid-token"
CA = new_root()
SERVING = CA.issue_server("istiod", dns_names=["istiod.istio-system.svc"])
NODE = "sidecar~10.0.0.9~sleep-abc.sample~sample.svc.cluster.local"
A_CLUSTER = "outbound|80||a.sample.svc.cluster.local"
OTHER = "sidecar~10.0.0.10~httpbin-def.sample~sample.svc.cluster.local"


def _ip() -> str:
    hosts = address_plan().pod_network(1).hosts()
    next(hosts)
    return str(next(hosts))


def _cluster(name: str, **extra: Any) -> dict[str, Any]:
    return {"@type": protocol.CLUSTER, "name": name, "type": "EDS", "connect_timeout": "1s",
            "eds_cluster_config": {"service_name": name, "eds_config": {"ads": {}, "resource_api_version": "V3"}},
            **extra}


class World:
    """What the fake istiod serves: mutable, pushed on change."""

    def __init__(self) -> None:
        self.clusters: dict[str, dict[str, Any]] = {"outbound|80||a.sample.svc.cluster.local":
                                                    _cluster("outbound|80||a.sample.svc.cluster.local")}
        self.version = 1
        self.broken: dict[str, dict[str, Any]] = {}  # only NODE gets these

    def resources(self, node_id: str, metadata: Mapping[str, Any], types: frozenset[str]) -> Any:
        if node_id.split("~")[2].split(".", maxsplit=1)[0] == "unknown":
            return None
        return {protocol.CLUSTER: {**self.clusters, **(self.broken if node_id == NODE else {})},
                protocol.ENDPOINT: {name: {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 9}}}}]}]}
                    for name in self.clusters},
                protocol.LISTENER: {}}


async def _authenticate(token: str, cluster: str) -> Caller:
    if token != TOKEN:
        raise AuthenticationError("failed to validate the JWT")
    if cluster not in ("cluster1", ""):
        raise AuthenticationError(f"client claims to be in cluster {cluster!r}")
    return Caller("cluster1", "sample", "sleep")


def _sign(csr: str, caller: Caller, ttl: int) -> list[str]:
    from labkit.pki import request_identities

    identity = f"spiffe://cluster.local/ns/{caller.namespace}/sa/{caller.service_account}"
    if request_identities(csr) != [identity]:
        raise AuthenticationError("the CSR asks for another identity")
    return [CA.sign_request(csr, identity), CA.root_pem]


def _envoy_bootstrap(ip: str, admin_port: int, node: str) -> dict[str, Any]:
    return {
        "node": {"id": node, "cluster": "sleep.sample", "metadata": {"CLUSTER_ID": "cluster1"}},
        "admin": {"address": {"socket_address": {"address": ip, "port_value": admin_port}}},
        "dynamic_resources": {
            "ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": [{
            "name": "xds-grpc", "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}},
            "load_assignment": {"cluster_name": "xds-grpc", "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": ip, "port_value": 15010}}}}]}]},
        }]},
    }


async def _until(check: Any, what: str, deadline: float = 10.0) -> Any:
    end = time.monotonic() + deadline
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _clusters(ip: str, port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}/clusters", timeout=1) as response:
            return response.read().decode()
    except OSError:
        return ""


def test_istiod_serves_ads_and_ca_over_grpc(tmp_path):
    asyncio.run(_scenario(tmp_path))


async def _scenario(tmp_path) -> None:
    ip = _ip()
    world = World()
    server = XdsServer(Control(_authenticate, world.resources, _sign), lambda: str(world.version))
    await server.start(ip, tls=(SERVING.cert_chain_pem, SERVING.key_pem))
    envoy: list[subprocess.Popen[bytes]] | None = None
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=CA.root_pem.encode())
        options = [("grpc.ssl_target_name_override", "istiod.istio-system.svc")]
        async with grpc.aio.secure_channel(f"{ip}:15012", credentials, options=options) as channel:
            # A plain client with a valid token gets the proxy's CDS.
            ads = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            call = ads.StreamAggregatedResources(metadata=[("authorization", f"Bearer {TOKEN}"),
                                                            ("clusterid", "cluster1")])
            request = discovery_pb2.DiscoveryRequest(type_url=protocol.CLUSTER)
            request.node.id = NODE
            await call.write(request)
            response = await asyncio.wait_for(call.read(), 5)
            assert response.type_url == protocol.CLUSTER and response.nonce
            names = [protocol.to_dict(protocol.message_class(r.type_url).FromString(r.value))["name"]
                     for r in response.resources]
            assert names == ["outbound|80||a.sample.svc.cluster.local"]
            await call.write(discovery_pb2.DiscoveryRequest(type_url=protocol.CLUSTER, response_nonce=response.nonce,
                                                            version_info=response.version_info))
            await call.write(discovery_pb2.DiscoveryRequest(type_url=protocol.ENDPOINT, resource_names=[A_CLUSTER]))
            endpoints = await asyncio.wait_for(call.read(), 5)
            assert endpoints.type_url == protocol.ENDPOINT
            await call.write(discovery_pb2.DiscoveryRequest(type_url=protocol.ENDPOINT, resource_names=[A_CLUSTER],
                                                            response_nonce=endpoints.nonce,
                                                            version_info=endpoints.version_info))
            # A changed cluster is a new one for Envoy, warming until its endpoints come, and Envoy asks for no
            # new name: the push that carries it carries the (unchanged) endpoints too, after it, as istiod's does.
            world.clusters[A_CLUSTER] = _cluster(A_CLUSTER, connect_timeout="2s")
            world.version += 1
            server.push()
            pushed = [await asyncio.wait_for(call.read(), 5) for _ in range(2)]
            assert [r.type_url for r in pushed] == [protocol.CLUSTER, protocol.ENDPOINT]
            assert [r.value for r in pushed[1].resources] == [r.value for r in endpoints.resources]
            call.cancel()

            create = channel.unary_unary(protocol.CREATE_CERTIFICATE,
                                         request_serializer=protocol.IstioCertificateRequest.SerializeToString,
                                         response_deserializer=protocol.IstioCertificateResponse.FromString)
            _, csr = new_request("spiffe://cluster.local/ns/sample/sa/sleep")
            issued = await create(protocol.IstioCertificateRequest(csr=csr, validity_duration=120),
                                  metadata=[("authorization", f"Bearer {TOKEN}"), ("clusterid", "cluster1")])
            assert describe(issued.cert_chain[0])[0].uris == ("spiffe://cluster.local/ns/sample/sa/sleep",)
            assert issued.cert_chain[-1] == CA.root_pem
            # Refused with Istio's words: a bad token, another cluster, a CSR for someone else, no token.
            _, other = new_request("spiffe://cluster.local/ns/sample/sa/admin")
            for metadata, body in (([("authorization", "Bearer forged")], csr),
                                   ([("authorization", f"Bearer {TOKEN}"), ("clusterid", "cluster9")], csr),
                                   ([("authorization", f"Bearer {TOKEN}")], other), ([], csr)):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await create(protocol.IstioCertificateRequest(csr=body), metadata=metadata)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert refused.value.details() == "request authenticate failure"

        # Two real Envoys over ADS (plaintext 15010): CDS + EDS applied and ACKed; a bad cluster sent to one is
        # NACKed and named, while the other keeps taking updates.
        envoys = []
        for number, (node, port) in enumerate(((NODE, 15000), (OTHER, 15001))):
            bootstrap = tmp_path / f"bootstrap{number}.json"
            bootstrap.write_text(json.dumps(_envoy_bootstrap(ip, port, node)))
            envoys.append(subprocess.Popen([str(find_envoy().path), "-c", str(bootstrap), "--log-level", "warning",
                                            "--disable-hot-restart"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        envoy = envoys
        for port in (15000, 15001):
            await _until(lambda port=port: f"{A_CLUSTER}::127.0.0.1:9" in _clusters(ip, port),
                         "Envoy to apply the EDS cluster with its endpoint")
        await _until(lambda: len([r for r in server.sync_status()
                                  if r["types"]["CDS"] == r["types"]["EDS"] == r["types"]["LDS"] == "SYNCED"]) == 2,
                     "CDS, EDS and LDS ACKed by both")
        world.broken["bad"] = _cluster("bad", lb_policy="CLUSTER_PROVIDED")
        world.version += 1
        server.push()
        row = await _until(lambda: [r for r in server.sync_status() if r["types"]["CDS"] == "ERROR"], "the NACK")
        assert row[0]["proxy"] == "sleep-abc.sample" and "bad" in row[0]["errors"]["CDS"]
        world.clusters["outbound|81||b.sample.svc.cluster.local"] = _cluster("outbound|81||b.sample.svc.cluster.local")
        world.version += 1
        server.push()
        await _until(lambda: "outbound|81||b.sample.svc.cluster.local::127.0.0.1:9" in _clusters(ip, 15001),
                     "the other proxy to keep updating")
        assert [r["types"]["CDS"] for r in server.sync_status() if r["proxy"] == "httpbin-def.sample"] == ["SYNCED"]
        del world.broken["bad"]
        world.version += 1
        server.push()
        await _until(lambda: "outbound|81||b.sample.svc.cluster.local::127.0.0.1:9" in _clusters(ip, 15000),
                     "the next good update to be applied after the NACK")
        await _until(lambda: all(r["types"]["CDS"] == "SYNCED" and not r["errors"] for r in server.sync_status()),
                     "SYNCED again")
    finally:
        for process in envoy or []:
            process.terminate()
            process.wait(5)
        await server.stop()
