"""The agent's Workload API and SDS socket, checked with clients nobody here wrote: py-spiffe and gRPC's own stubs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc
from spiffe import WorkloadApiClient
from spiffe.spiffe_id.spiffe_id import TrustDomain

from labkit.emulator.envoy import protocol
from labkit.emulator.spire.workloadapi import (
    SERVICE,
    Svid,
    WorkloadEndpoint,
    WorkloadView,
    X509SVIDRequest,
    X509SVIDResponse,
)
from labkit.pki import CertificateAuthority, TrustBundle, describe, new_request
from labkit.pki.svids import issue_server_ca, new_upstream_root, sign_svid

SLEEP = "spiffe://foo.com/ns/sleep/sa/sleep"


class Domain:
    def __init__(self, name: str):
        self.upstream: CertificateAuthority = new_upstream_root()
        self.ca = issue_server_ca(self.upstream, name)
        self.bundle = TrustBundle(name, (self.upstream.cert_pem,), sequence=1)

    def svid(self, spiffe_id: str, federates_with: tuple[str, ...] = ()) -> Svid:
        key, csr = new_request(spiffe_id)
        return Svid(spiffe_id, sign_svid(self.ca, csr, spiffe_id, dns_names=("sleep-1",)) + self.ca.cert_pem, key,
                    federates_with)


@pytest.fixture(scope="module")
def foo() -> Domain:
    return Domain("foo.com")


@pytest.fixture(scope="module")
def bar() -> Domain:
    return Domain("bar.com")


class Serving:
    """A :class:`WorkloadEndpoint` on its own event loop in a thread, as the agent runs it."""

    def __init__(self, path: Path):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.endpoint = WorkloadEndpoint(path, "sleep/sleep-1")
        self.call(self.endpoint.start())

    def call(self, coroutine: object) -> object:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)  # type: ignore[arg-type]

    def close(self) -> None:
        self.call(self.endpoint.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Serving]:
    server = Serving(tmp_path / "uds" / "socket")
    yield server
    server.close()


def test_py_spiffe_fetches_the_svid_and_one_bundle_per_trust_domain(serving: Serving, foo: Domain,
                                                                     bar: Domain) -> None:
    serving.call(serving.endpoint.update(WorkloadView((foo.svid(SLEEP, ("bar.com",)),), foo.bundle, (bar.bundle,))))
    client = WorkloadApiClient(f"unix://{serving.endpoint.path}", default_timeout=10)
    try:
        svid = client.fetch_x509_svid()
        assert str(svid.spiffe_id) == SLEEP
        assert len(svid.cert_chain) == 2  # leaf, then the SPIRE server CA
        context = client.fetch_x509_context()
        bundles = client.fetch_x509_bundles()
    finally:
        client.close()
    for bundle_set in (context.x509_bundle_set, bundles):
        foo_bundle = bundle_set.get_bundle_for_trust_domain(TrustDomain("foo.com"))
        bar_bundle = bundle_set.get_bundle_for_trust_domain(TrustDomain("bar.com"))
        assert foo_bundle is not None and bar_bundle is not None
        assert len(foo_bundle.x509_authorities) == 1 and len(bar_bundle.x509_authorities) == 1
        assert foo_bundle.x509_authorities != bar_bundle.x509_authorities


def _raw_fetch(path: Path, metadata: tuple[tuple[str, str], ...]) -> object:
    with grpc.insecure_channel(f"unix:{path}") as channel:
        fetch = channel.unary_stream(f"/{SERVICE}/FetchX509SVID", request_serializer=X509SVIDRequest.SerializeToString,
                                     response_deserializer=X509SVIDResponse.FromString)
        return next(iter(fetch(X509SVIDRequest(), metadata=metadata, timeout=10)))


def test_a_call_without_the_security_header_is_refused(serving: Serving, foo: Domain) -> None:
    serving.call(serving.endpoint.update(WorkloadView((foo.svid(SLEEP),), foo.bundle)))
    with pytest.raises(grpc.RpcError) as refused:
        _raw_fetch(serving.endpoint.path, ())
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == "security header missing from request"
    answer = _raw_fetch(serving.endpoint.path, (("workload.spiffe.io", "true"),))
    assert answer.svids[0].spiffe_id == SLEEP  # type: ignore[attr-defined]


def test_a_workload_without_an_entry_gets_no_identity(serving: Serving, foo: Domain) -> None:
    serving.call(serving.endpoint.update(WorkloadView((), foo.bundle)))
    with pytest.raises(grpc.RpcError) as refused:
        _raw_fetch(serving.endpoint.path, (("workload.spiffe.io", "true"),))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.details() == "no identity issued"


def _sds(path: Path, names: list[str]) -> dict[str, dict[str, object]]:
    with grpc.insecure_channel(f"unix:{path}") as channel:
        stream = sds_pb2_grpc.SecretDiscoveryServiceStub(channel).StreamSecrets(
            iter([discovery_pb2.DiscoveryRequest(resource_names=names, type_url=protocol.SECRET)]), timeout=10)
        response = next(iter(stream))
    secrets = {}
    for resource in response.resources:
        message = protocol.message_class(protocol.SECRET)()
        resource.Unpack(message)
        secret = protocol.to_dict(message)
        secrets[secret["name"]] = secret
    return secrets


def test_sds_serves_the_svid_and_the_local_bundle(serving: Serving, foo: Domain) -> None:
    serving.call(serving.endpoint.update(WorkloadView((foo.svid(SLEEP),), foo.bundle)))
    secrets = _sds(serving.endpoint.path, ["default", "ROOTCA"])
    chain = secrets["default"]["tls_certificate"]["certificate_chain"]["inline_string"]  # type: ignore[index]
    leaf = describe(chain)[0]
    assert leaf.spiffe_ids == (SLEEP,) and leaf.issuer == "C=US, O=SPIFFE"
    assert secrets["ROOTCA"]["validation_context"]["trusted_ca"]["inline_string"] == foo.bundle.pem  # type: ignore[index]


def test_sds_gives_a_federating_workload_one_trust_bundle_per_domain(serving: Serving, foo: Domain,
                                                                     bar: Domain) -> None:
    serving.call(serving.endpoint.update(WorkloadView((foo.svid(SLEEP, ("bar.com",)),), foo.bundle, (bar.bundle,))))
    root = _sds(serving.endpoint.path, ["ROOTCA"])["ROOTCA"]
    validator = root["validation_context"]["custom_validator_config"]  # type: ignore[index]
    assert validator["name"] == "envoy.tls.cert_validator.spiffe"
    domains = validator["typed_config"]["trust_domains"]
    assert [d["name"] for d in domains] == ["bar.com", "foo.com"]
    assert [d["trust_bundle"]["inline_string"] for d in domains] == [bar.bundle.pem, foo.bundle.pem]
