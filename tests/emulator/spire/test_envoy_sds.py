"""A real Envoy takes its certificate and trust from SPIRE's SDS: one bundle per trust domain, never merged.

Envoy is bootstrapped with a static mTLS listener whose certificate (``default``) and validation (``ROOTCA``) come
over SDS from the agent's socket, as an Istio sidecar's do. The workload federates with bar.com, so ``ROOTCA`` is
Envoy's SPIFFE validator: a bar.com client is accepted, and a client whose SVID claims foo.com but was signed by
bar.com's CA is refused — with the two roots merged into one CA list it would have been let in.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.emulator.envoy.binary import find_envoy
from labkit.emulator.spire.workloadapi import Svid, WorkloadEndpoint, WorkloadView
from labkit.pki import CertificateAuthority, TrustBundle, describe, new_request
from labkit.pki.svids import issue_server_ca, new_upstream_root, sign_svid
from labkit.testing import address_plan, eventually

pytestmark = pytest.mark.slow

SDS = {"api_config_source": {"api_type": "GRPC", "transport_api_version": "V3",
                             "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}]},
       "resource_api_version": "V3"}
PORT = 15443


class Domain:
    def __init__(self, name: str):
        self.upstream: CertificateAuthority = new_upstream_root()
        self.ca = issue_server_ca(self.upstream, name)
        self.bundle = TrustBundle(name, (self.upstream.cert_pem,), sequence=1)

    def svid(self, spiffe_id: str, federates_with: tuple[str, ...] = ()) -> Svid:
        key, csr = new_request(spiffe_id)
        return Svid(spiffe_id, sign_svid(self.ca, csr, spiffe_id) + self.ca.cert_pem, key, federates_with)


def _bootstrap(ip: str, socket: Path) -> dict[str, object]:
    tls = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "require_client_certificate": True, "common_tls_context": {
            "tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": SDS}],
            "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": SDS}}}}
    manager = {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                 "HttpConnectionManager",
        "stat_prefix": "mtls", "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "direct_response": {"status": 200}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}
    return {
        "node": {"id": f"sidecar~{ip}~sleep-1.sleep~sleep.svc.cluster.local", "cluster": "sleep.sleep"},
        "admin": {"address": {"socket_address": {"address": ip, "port_value": 15000}}},
        "static_resources": {
            "listeners": [{"name": "mtls", "address": {"socket_address": {"address": ip, "port_value": PORT}},
                           "filter_chains": [{"transport_socket": tls, "filters": [manager]}]}],
            "clusters": [{"name": "sds-grpc", "type": "STATIC", "connect_timeout": "1s",
                          "typed_extension_protocol_options": {
                              "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                                  "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3."
                                           "HttpProtocolOptions",
                                  "explicit_http_config": {"http2_protocol_options": {}}}},
                          "load_assignment": {"cluster_name": "sds-grpc", "endpoints": [{"lb_endpoints": [{
                              "endpoint": {"address": {"pipe": {"path": str(socket)}}}}]}]}}],
        },
    }


@pytest.fixture
def envoy(tmp_path: Path) -> Iterator[tuple[str, Domain, Domain]]:
    foo, bar = Domain("foo.com"), Domain("bar.com")
    hosts = address_plan().pod_network(1).hosts()
    next(hosts)
    ip = str(next(hosts))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    endpoint = WorkloadEndpoint(tmp_path / "uds" / "socket", "sleep/sleep-1")

    def call(coroutine: object) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, loop).result(10)  # type: ignore[arg-type]

    call(endpoint.start())
    call(endpoint.update(WorkloadView((foo.svid("spiffe://foo.com/ns/sleep/sa/sleep", ("bar.com",)),), foo.bundle,
                                      (bar.bundle,))))
    (tmp_path / "bootstrap.json").write_text(json.dumps(_bootstrap(ip, endpoint.path)))
    process = subprocess.Popen([str(find_envoy().path), "-c", str(tmp_path / "bootstrap.json"), "--log-level",
                                "warning", "--disable-hot-restart"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        yield ip, foo, bar
    finally:
        process.terminate()
        process.wait(5)
        call(endpoint.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def _certs(ip: str) -> list[str]:
    try:
        with urllib.request.urlopen(f"http://{ip}:15000/certs", timeout=1) as response:
            body = json.loads(response.read())
    except OSError:
        return []
    return [san["uri"] for entry in body.get("certificates", []) for chain in entry.get("cert_chain", [])
            for san in chain.get("subject_alt_names", []) if "uri" in san]


def _call(ip: str, client: Svid, server_root: str, folder: Path) -> bool:
    (folder / "client.pem").write_text(client.cert_chain_pem)
    (folder / "client.key").write_text(client.key_pem)
    context = ssl.create_default_context(cadata=server_root)
    context.check_hostname = False  # SVIDs name a SPIFFE ID, not a host
    context.load_cert_chain(folder / "client.pem", folder / "client.key")
    connection = http.client.HTTPSConnection(ip, PORT, context=context, timeout=2)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def test_envoy_trusts_each_domain_only_for_its_own_identities(envoy: tuple[str, Domain, Domain],
                                                              tmp_path: Path) -> None:
    ip, foo, bar = envoy
    eventually(lambda: "spiffe://foo.com/ns/sleep/sa/sleep" in _certs(ip), 15, "Envoy holding the SVID from SDS")
    assert describe(foo.svid("spiffe://foo.com/x").cert_chain_pem)[0].issuer == "C=US, O=SPIFFE"
    bar_client = bar.svid("spiffe://bar.com/ns/sleep/sa/sleep")
    assert eventually(lambda: _call(ip, bar_client, foo.bundle.pem, tmp_path), 15, "a bar.com client accepted")
    impostor = bar.svid("spiffe://foo.com/ns/sleep/sa/sleep")  # bar.com's CA minting a foo.com identity
    assert not _call(ip, impostor, foo.bundle.pem, tmp_path)
    assert _call(ip, foo.svid("spiffe://foo.com/ns/other/sa/other"), foo.bundle.pem, tmp_path)
