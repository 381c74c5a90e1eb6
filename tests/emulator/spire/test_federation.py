"""``https_spiffe``: a bundle endpoint is trusted only through the bundle held for its own trust domain."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from labkit.emulator.spire import federation
from labkit.emulator.spire.config import Peer
from labkit.errors import SpireError
from labkit.pki import CertificateAuthority, Credential, TrustBundle, new_request
from labkit.pki.svids import issue_server_ca, new_upstream_root, sign_svid


class Domain:
    """A trust domain's upstream root, server CA and server SVID."""

    def __init__(self, name: str):
        self.name = name
        self.upstream: CertificateAuthority = new_upstream_root()
        self.ca = issue_server_ca(self.upstream, name)
        self.bundle = TrustBundle(name, (self.upstream.cert_pem,), sequence=1, refresh_hint=60)

    def svid(self, spiffe_id: str, signer: CertificateAuthority | None = None) -> Credential:
        ca = signer or self.ca
        key, csr = new_request(spiffe_id)
        return Credential(sign_svid(ca, csr, spiffe_id), key, ca.cert_pem)


@pytest.fixture(scope="module")
def foo() -> Domain:
    return Domain("foo.com")


@pytest.fixture(scope="module")
def bar() -> Domain:
    return Domain("bar.com")


async def _serving(svid: Credential, bundle: Callable[[], TrustBundle], body: Callable[[Any], Any]) -> Any:
    runner = web.AppRunner(federation.endpoint_app(bundle), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=federation.endpoint_context(svid))
    await site.start()
    port = runner.addresses[0][1]
    try:
        return await body(f"https://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


def _fetch(svid: Credential, served: TrustBundle, held: TrustBundle, endpoint_id: str) -> TrustBundle:
    async def body(url: str) -> TrustBundle:
        return await federation.fetch_bundle(Peer(held.trust_domain, url, endpoint_id), held)
    return asyncio.run(_serving(svid, lambda: served, body))


def test_a_bundle_is_fetched_with_the_previous_one_and_keeps_its_sequence_and_hint(bar: Domain) -> None:
    newer = TrustBundle("bar.com", bar.bundle.x509_authorities, sequence=2, refresh_hint=30)
    fetched = _fetch(bar.svid("spiffe://bar.com/spire/server"), newer, bar.bundle, "spiffe://bar.com/spire/server")
    assert fetched == newer
    assert json.loads(fetched.to_json())["spiffe_refresh_hint"] == 30


def test_an_endpoint_signed_by_another_domain_is_refused(foo: Domain, bar: Domain) -> None:
    # The endpoint claims to be bar.com's server, but foo.com's CA signed its SVID.
    impostor = foo.svid("spiffe://bar.com/spire/server")
    with pytest.raises(SpireError, match="not signed by the bar.com bundle held"):
        _fetch(impostor, foo.bundle, bar.bundle, "spiffe://bar.com/spire/server")


def test_an_endpoint_presenting_another_id_is_refused(bar: Domain) -> None:
    workload = bar.svid("spiffe://bar.com/ns/default/sa/default")
    with pytest.raises(SpireError, match="unexpected ID 'spiffe://bar.com/ns/default/sa/default'"):
        _fetch(workload, bar.bundle, bar.bundle, "spiffe://bar.com/spire/server")


def test_a_peer_is_never_checked_with_another_domains_bundle(foo: Domain) -> None:
    peer = Peer("bar.com", "https://127.0.0.1:1", "spiffe://bar.com/spire/server")
    with pytest.raises(SpireError, match="refusing to authenticate bar.com's bundle endpoint with the foo.com"):
        asyncio.run(federation.fetch_bundle(peer, foo.bundle))


def test_the_refresher_fetches_again_after_the_refresh_hint(bar: Domain) -> None:
    """Each bundle served names a 1 s hint: the refresher keeps fetching, each new sequence replaces the last."""
    served = [TrustBundle("bar.com", bar.bundle.x509_authorities, sequence=2, refresh_hint=1)]
    stored: list[TrustBundle] = []

    async def body(url: str) -> None:
        held = {"bar.com": bar.bundle}
        twice = asyncio.Event()

        def keep(bundle: TrustBundle) -> None:
            held["bar.com"] = bundle
            stored.append(bundle)
            served[0] = TrustBundle("bar.com", bundle.x509_authorities, sequence=bundle.sequence + 1, refresh_hint=1)
            if len(stored) == 2:
                twice.set()

        refresher = federation.Refresher(Peer("bar.com", url, "spiffe://bar.com/spire/server"), held.get, keep)
        refresher.start()
        try:
            await asyncio.wait_for(twice.wait(), 10)
        finally:
            await refresher.stop()

    asyncio.run(_serving(bar.svid("spiffe://bar.com/spire/server"), lambda: served[0], body))
    assert [bundle.sequence for bundle in stored[:2]] == [2, 3]
