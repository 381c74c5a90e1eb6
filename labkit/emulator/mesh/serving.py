"""istiod's gRPC server: Envoy's Aggregated Discovery Service and Istio's certificate service.

Served as Istio serves them: on ``15012`` over TLS (istiod's certificate from the mesh CA) where every call
must present a bearer token (the pod's projected service-account token, audience ``istio-ca``) and say which
cluster it comes from (``ClusterID`` metadata), and on ``15010`` in plaintext without authentication.

ADS is state of the world. Each stream belongs to one proxy (its node id, sent in the first request); istiod
answers each type the proxy subscribes to — CDS, LDS, EDS, RDS, and Istio's NameTable (NDS) for proxies
with ``DNS_CAPTURE`` — with a version and a fresh nonce, and reads Envoy's next request for that type as its
verdict: the same nonce without ``error_detail`` is an ACK, with ``error_detail`` a NACK whose message is
Envoy's reason. The verdicts are kept per proxy and type for ``/debug/syncz`` and ``istioctl proxy-status``
(SYNCED, NOT SENT, STALE, and ERROR for a NACK, as istiod's ``debugSyncStatus`` says); a NACK is also logged
as :class:`~labkit.errors.XdsRejectedError`.

What each proxy gets, and who a token stands for, are istiod's business: this module asks through the
callbacks of :class:`Control`, so it knows nothing of clusters, informers or the mesh model.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from labkit.emulator.envoy import protocol
from labkit.errors import XdsRejectedError

_log = logging.getLogger("istiod.xds")

SECURE_PORT = 15012
PLAINTEXT_PORT = 15010
# istio.io/istio pilot/pkg/xds: the wording a refused caller reads.
AUTHENTICATION_FAILURE = "request authenticate failure"

Resources = Mapping[str, Mapping[str, Mapping[str, Any]]]
"""type URL → resource name → protobuf-JSON resource."""


class AuthenticationError(Exception):
    """A caller could not be authenticated; the message says why (logged, never sent: Istio's is opaque)."""


@dataclass(frozen=True)
class Caller:
    """Who a token stands for."""

    cluster: str
    namespace: str
    service_account: str


@dataclass(frozen=True)
class Control:
    """What the server asks istiod.

    Args:
        authenticate: ``(token, claimed cluster ID) → Caller``; raises :class:`AuthenticationError`.
        resources: ``(node id, node metadata, type URLs wanted) → Resources`` for that proxy (at least the wanted
            types), ``None`` if istiod knows no such proxy.
        sign: ``(CSR PEM, caller, requested lifetime in seconds) → certificate chain, leaf first, root last``.
    """

    authenticate: Callable[[str, str], Awaitable[Caller]]
    resources: Callable[[str, Mapping[str, Any], frozenset[str]], Resources | None]
    sign: Callable[[str, Caller, int], list[str]]


@dataclass
class TypeState:
    """One type on one stream: what was sent and what Envoy said about it."""

    names: tuple[str, ...] = ()
    sent_version: str = ""
    sent_nonce: str = ""
    sent_digest: str = ""
    acked_version: str = ""
    acked_nonce: str = ""
    error: str = ""
    error_nonce: str = ""  # the response the NACK was about

    @property
    def rejected(self) -> bool:
        """The last response sent was NACKed (a newer one in flight is not yet judged)."""
        return bool(self.error) and self.error_nonce == self.sent_nonce


@dataclass
class Connection:
    """One proxy's ADS stream."""

    node_id: str
    metadata: Mapping[str, Any]
    connected_at: float = field(default_factory=time.time)
    types: dict[str, TypeState] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    open: bool = True

    @property
    def cluster(self) -> str:
        return str(self.metadata.get("CLUSTER_ID", ""))

    def status(self, type_url: str) -> str:
        """istiod's word for one type (``debugSyncStatus``): a NACK is ``ERROR``; a type never asked for is
        ``IGNORED``, as istioctl proxy-status prints it."""
        state = self.types.get(type_url)
        if state is None:
            return "IGNORED"
        if state.rejected:
            return "ERROR"
        if not state.sent_nonce:
            return "NOT SENT"
        return "SYNCED" if state.acked_nonce == state.sent_nonce else "STALE"


def _pod(node_id: str) -> str:
    """``sidecar~10.0.0.1~helloworld-abc.sample~sample.svc.cluster.local`` → ``helloworld-abc.sample``."""
    parts = node_id.split("~")
    return parts[2] if len(parts) > 2 else node_id


_RESOURCE_IN_REASON = re.compile(r"(?:cluster|listener|route|secret)\(?s?\)?\s+'?([^\s:']+)'?:?")


class XdsServer:
    """The ADS and CA services over one control plane.

    Args:
        control: the callbacks into istiod.
        version: a function returning the current push version (``/debug/syncz`` shows it).
    """

    def __init__(self, control: Control, version: Callable[[], str]):
        self.control = control
        self.version = version
        self.connections: dict[str, Connection] = {}
        self.disconnected: dict[str, Connection] = {}
        self._nonces = itertools.count(1)
        self._servers: list[grpc.aio.Server] = []

    # --- lifecycle ------------------------------------------------------------------------------------------------

    async def start(self, address: str, *, tls: tuple[str, str] | None, secure_port: int = SECURE_PORT,
                    plaintext_port: int = PLAINTEXT_PORT) -> None:
        """Serve on ``address``: ``secure_port`` with ``tls`` (certificate chain PEM, key PEM), ``plaintext_port``.

        Args:
            address: the pod IP.
            tls: istiod's serving credential; ``None`` serves only the plaintext port.
            secure_port: 15012.
            plaintext_port: 15010.
        """
        for port, credential in ((secure_port, tls), (plaintext_port, None)):
            if port == secure_port and credential is None:
                continue
            server = grpc.aio.server()
            ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(
                _Ads(self, authenticated=credential is not None), server)
            server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
                "istio.v1.auth.IstioCertificateService",
                {"CreateCertificate": grpc.unary_unary_rpc_method_handler(
                    self._create_certificate, request_deserializer=protocol.IstioCertificateRequest.FromString,
                    response_serializer=protocol.IstioCertificateResponse.SerializeToString)})])
            target = f"{address}:{port}"
            if credential is not None:
                chain, key = credential
                server.add_secure_port(target, grpc.ssl_server_credentials([(key.encode(), chain.encode())]))
            else:
                server.add_insecure_port(target)
            await server.start()
            self._servers.append(server)

    async def stop(self) -> None:
        for connection in self.connections.values():
            connection.open = False
            connection.wake.set()
        for server in self._servers:
            await server.stop(grace=0.5)
        self._servers.clear()

    def push(self) -> None:
        """The configuration changed: every stream recomputes and sends what differs."""
        for connection in self.connections.values():
            connection.wake.set()

    # --- authentication -------------------------------------------------------------------------------------------

    async def _authenticate(self, context: grpc.aio.ServicerContext) -> Caller:
        metadata = {key.lower(): value for key, value in (context.invocation_metadata() or ())}
        header = str(metadata.get("authorization", ""))
        if not header.lower().startswith("bearer "):
            raise AuthenticationError("target JWT extraction error: no bearer token in the authorization header")
        return await self.control.authenticate(header[7:].strip(), str(metadata.get("clusterid", "")))

    # --- CA -------------------------------------------------------------------------------------------------------

    async def _create_certificate(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            caller = await self._authenticate(context)
        except AuthenticationError as exc:
            _log.warning("CSR from %s refused: %s", context.peer(), exc)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, AUTHENTICATION_FAILURE)
        try:
            chain = self.control.sign(request.csr, caller, int(request.validity_duration))
        except AuthenticationError as exc:
            _log.warning("CSR from %s/%s refused: %s", caller.namespace, caller.service_account, exc)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, AUTHENTICATION_FAILURE)
        except Exception as exc:  # a CSR that cannot be read or signed: the caller hears why, as from Istio
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"CSR signing error ({exc})")
        return protocol.IstioCertificateResponse(cert_chain=chain)

    # --- ADS ------------------------------------------------------------------------------------------------------

    async def stream(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext, *,
                     authenticated: bool) -> AsyncIterator[Any]:
        """One proxy's ADS stream: requests in, responses out."""
        if authenticated:
            try:
                await self._authenticate(context)
            except AuthenticationError as exc:
                _log.warning("xDS stream from %s refused: %s", context.peer(), exc)
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, AUTHENTICATION_FAILURE)
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        connection: Connection | None = None

        async def read() -> None:
            try:
                async for request in requests:
                    await inbox.put(request)
            finally:
                await inbox.put(None)

        reader = asyncio.create_task(read(), name="ads read")
        try:
            while True:
                if connection is not None:
                    waiter = asyncio.ensure_future(inbox.get())
                    wake = asyncio.ensure_future(connection.wake.wait())
                    done, _ = await asyncio.wait({waiter, wake}, return_when=asyncio.FIRST_COMPLETED)
                    if waiter not in done:
                        waiter.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await waiter
                        connection.wake.clear()
                        if not connection.open:
                            return
                        for response in self._responses(connection, None):
                            yield response
                        continue
                    wake.cancel()
                    request = waiter.result()
                else:
                    request = await inbox.get()
                if request is None:
                    return
                if connection is None:
                    node = request.node
                    metadata = protocol.to_dict(node.metadata) if node.HasField("metadata") else {}
                    connection = Connection(node.id, metadata)
                    previous = self.connections.get(node.id)
                    if previous is not None:
                        previous.open = False
                        previous.wake.set()
                    self.connections[node.id] = connection
                    self.disconnected.pop(node.id, None)
                    _log.info("ADS: new connection for node:%s", node.id)
                for response in self._responses(connection, request):
                    yield response
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            if connection is not None and self.connections.get(connection.node_id) is connection:
                del self.connections[connection.node_id]
                self.disconnected[connection.node_id] = connection
                _log.info("ADS: %s disconnected", connection.node_id)

    def _responses(self, connection: Connection, request: Any) -> list[Any]:
        """Record a request's verdict; the responses it (or a push, ``request=None``) calls for."""
        wanted: list[str]
        if request is not None:
            type_url = request.type_url
            state = connection.types.setdefault(type_url, TypeState())
            names = tuple(request.resource_names)
            if request.response_nonce:
                if request.response_nonce != state.sent_nonce:
                    return []  # a verdict on an older response: superseded
                if request.HasField("error_detail"):
                    reason = request.error_detail.message
                    if state.error != reason:
                        error = _rejection(connection, type_url, reason)
                        _log.error("NACK: %s", error)
                    state.error = reason
                    state.error_nonce = request.response_nonce
                else:
                    state.error = ""
                    state.acked_version = request.version_info
                    state.acked_nonce = request.response_nonce
                if names == state.names:
                    return []
            state.names = names
            wanted = [type_url]
        else:
            wanted = list(connection.types)
        resources = self.control.resources(connection.node_id, connection.metadata, frozenset(wanted))
        if resources is None:
            return []
        responses = []
        for type_url in wanted:
            state = connection.types[type_url]
            if type_url not in protocol.SHORT_NAMES:
                continue
            of_type = resources.get(type_url) or {}
            names = state.names if type_url in (protocol.ENDPOINT, protocol.ROUTE) and state.names else \
                tuple(sorted(of_type))
            if type_url == protocol.ENDPOINT:
                # As istiod: a ClusterLoadAssignment for every name asked, empty for a cluster it does not know
                # (yet, or any more), so no cluster of the proxy stays warming waiting for one.
                selected = [(name, of_type.get(name) or {"cluster_name": name}) for name in names]
            else:
                selected = [(name, of_type[name]) for name in names if name in of_type]
            digest = repr(selected)
            if request is None and digest == state.sent_digest:
                continue
            if type_url == protocol.NAME_TABLE and not selected:
                continue
            try:
                packed = [protocol.to_any(resource, type_url) for _, resource in selected]
            except Exception as exc:  # a resource the types refuse: a builder bug, named, the stream survives
                _log.error("%s: cannot encode %s: %s", connection.node_id, protocol.SHORT_NAMES[type_url], exc)
                continue
            state.sent_version = f"{self.version()}"
            if digest != state.sent_digest:
                state.sent_version = f"{self.version()}/{abs(hash(digest)) % 10**8:08d}"
            state.sent_digest = digest
            state.sent_nonce = str(next(self._nonces))
            responses.append(discovery_pb2.DiscoveryResponse(
                version_info=state.sent_version, resources=packed, type_url=type_url, nonce=state.sent_nonce))
        return responses

    # --- reporting ------------------------------------------------------------------------------------------------

    def sync_status(self) -> list[dict[str, Any]]:
        """One row per connected proxy: ``proxy`` (``pod.namespace``), ``cluster_id``, ``version`` (the proxy's
        ``ISTIO_VERSION``), ``types`` (short type name → status) and ``errors`` (short type name → Envoy's reason)."""
        rows = []
        for node_id, connection in sorted(self.connections.items()):
            types = {short: connection.status(url) for url, short in protocol.SHORT_NAMES.items() if short != "SDS"}
            errors = {protocol.SHORT_NAMES[url]: state.error for url, state in connection.types.items()
                      if state.rejected and url in protocol.SHORT_NAMES}
            rows.append({"proxy": _pod(node_id), "node_id": node_id, "cluster_id": connection.cluster,
                         "version": str(connection.metadata.get("ISTIO_VERSION", "")), "types": types,
                         "errors": errors})
        return rows


_NAME_IN_DUMP = re.compile(r'^name: "([^"]+)"', re.MULTILINE)


def _rejection(connection: Connection, type_url: str, reason: str) -> XdsRejectedError:
    """Envoy's NACK as labkit's error, naming the proxy, the type, the resource and the reason.

    Envoy prints the refused resource as a protobuf text dump (``goo.gle/debugstr`` then the fields, then
    ``: <why>``); the resource is named from it and the message keeps only the why, joined into one line.
    """
    kind = protocol.SHORT_NAMES.get(type_url, type_url)
    dumped = _NAME_IN_DUMP.search(reason)
    match = _RESOURCE_IN_REASON.search(reason)
    resource = dumped.group(1) if dumped else match.group(1) if match else ""
    short = reason.rpartition("\n: ")[2] if dumped else reason
    short = " ".join(short.split())
    proxy = f"{connection.cluster}/{_pod(connection.node_id)}"
    return XdsRejectedError(proxy, kind, resource, short,
                            f"{proxy} rejected {kind} {resource or '(unnamed)'}: {short}")


class _Ads(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self, server: XdsServer, *, authenticated: bool):
        self.server = server
        self.authenticated = authenticated

    async def StreamAggregatedResources(self, request_iterator: Any, context: Any) -> Any:  # gRPC's name
        async for response in self.server.stream(request_iterator, context, authenticated=self.authenticated):
            yield response
