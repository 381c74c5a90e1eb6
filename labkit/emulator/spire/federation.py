"""SPIFFE federation between SPIRE servers: the bundle endpoint and the refresher of each federated bundle.

The bundle endpoint answers ``GET /`` with the server's bundle (``application/json``, no client authentication),
over TLS with the server's SVID (profile ``https_spiffe``).

A :class:`Refresher` keeps one foreign trust domain's bundle current. It fetches nothing until a first bundle is
held for that domain (``spire-server bundle set``: trust has to start out of band); from then on each fetch is
authenticated by the bundle held *for that domain* and must present ``endpoint_spiffe_id`` — an endpoint whose SVID
another domain signed fails the handshake and the held bundle stays. A fetched bundle replaces the held one (never
merged with it, never with another domain's), and the next fetch comes after the bundle's refresh hint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import urllib.parse
from collections.abc import Callable

from aiohttp import web

from labkit.emulator.spire.config import Peer
from labkit.errors import PkiError, SpireError
from labkit.pki import Credential, TrustBundle
from labkit.pki.federating import check_peer, client_context, server_context

_log = logging.getLogger("spire-server")

RETRY = 5.0  # seconds between attempts after a failed fetch (SPIRE retries well before the hint runs out)
WAIT_FIRST = 1.0  # how often to look for the first bundle before `bundle set` has given one


def endpoint_context(svid: Credential) -> ssl.SSLContext:
    """The bundle endpoint's TLS: the server's SVID, no client certificate asked."""
    return server_context(svid)


def endpoint_app(bundle: Callable[[], TrustBundle]) -> web.Application:
    """``GET /`` → the current bundle document."""
    async def serve(request: web.Request) -> web.Response:
        return web.Response(text=bundle().to_json(indent=None), content_type="application/json")

    app = web.Application()
    app.router.add_get("/", serve)
    return app


async def fetch_bundle(peer: Peer, held: TrustBundle, *, timeout: float = 10.0) -> TrustBundle:
    """Fetch ``peer``'s bundle over ``https_spiffe``, authenticated by ``held`` (the bundle of that domain).

    Raises:
        SpireError: the endpoint is unreachable, its certificate is not signed by ``held``'s authorities, it
            presents another SPIFFE ID, or it serves no bundle of that trust domain.
    """
    if held.trust_domain != peer.trust_domain:
        raise SpireError(f"refusing to authenticate {peer.trust_domain}'s bundle endpoint with the "
                         f"{held.trust_domain} bundle: each domain's endpoint is checked against its own bundle.")
    url = urllib.parse.urlsplit(peer.url)
    host, port = url.hostname or "", url.port or 443
    try:
        context = client_context(held)
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=context), timeout)
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            check_peer(ssl_object.getpeercert(binary_form=True) if ssl_object else None, peer.endpoint_spiffe_id)
            writer.write(f"GET {url.path or '/'} HTTP/1.1\r\nHost: {url.netloc}\r\nAccept: application/json\r\n"
                         f"Connection: close\r\n\r\n".encode())
            await writer.drain()
            raw = await asyncio.wait_for(reader.read(), timeout)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
    except ssl.SSLCertVerificationError as exc:
        raise SpireError(f"could not fetch bundle of {peer.trust_domain} from {peer.url}: the endpoint's "
                         f"certificate is not signed by the {peer.trust_domain} bundle held "
                         f"({exc.verify_message})") from exc
    except (TimeoutError, OSError) as exc:
        raise SpireError(f"could not fetch bundle of {peer.trust_domain} from {peer.url}: "
                         f"{type(exc).__name__}: {exc}") from exc
    except PkiError as exc:
        raise SpireError(f"could not fetch bundle of {peer.trust_domain} from {peer.url}: {exc}") from exc
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    if status_line.split()[1:2] != ["200"]:
        raise SpireError(f"unexpected status {status_line!r} fetching bundle from {peer.url}")
    text = body.decode()
    try:
        return held.replaced_by(TrustBundle.from_json(peer.trust_domain, text))
    except PkiError as exc:
        raise SpireError(f"the bundle served by {peer.url} is not usable: {exc}") from exc


class Refresher:
    """Keeps one federated bundle current.

    Args:
        peer: the ``federates_with`` block.
        held: trust domain → the bundle held for it now (None before ``bundle set``).
        store: keeps a fetched bundle.
    """

    def __init__(self, peer: Peer, held: Callable[[str], TrustBundle | None], store: Callable[[TrustBundle], None]):
        self.peer = peer
        self.held = held
        self.store = store
        self.last_error: str | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"bundle refresher {self.peer.trust_domain}")

    def wake(self) -> None:
        """Fetch now (a bundle was just set)."""
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            held = self.held(self.peer.trust_domain)
            if held is None:
                delay = WAIT_FIRST
            else:
                try:
                    fetched = await fetch_bundle(self.peer, held)
                except SpireError as exc:
                    if str(exc) != self.last_error:
                        _log.error("Error updating bundle for trust domain %s: %s", self.peer.trust_domain, exc)
                    self.last_error = str(exc)
                    delay = min(RETRY, held.refresh_hint)
                else:
                    self.last_error = None
                    if fetched != held:
                        self.store(fetched)
                        _log.info("Bundle refreshed: trust_domain=%s sequence=%d", self.peer.trust_domain,
                                  fetched.sequence)
                    delay = float(fetched.refresh_hint)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
