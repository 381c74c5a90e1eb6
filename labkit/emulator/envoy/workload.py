"""What istio-agent does for its Envoy over gRPC: the workload certificate, SDS, and the ADS proxy.

- :class:`CertificateClient` generates a key and a CSR for the pod's SPIFFE identity and asks istiod's
  ``IstioCertificateService/CreateCertificate`` on 15012, presenting the pod's projected service-account token
  (audience ``istio-ca``, re-read at every call: the kubelet refreshes it) and the ``ClusterID`` it belongs to;
- :class:`SecretServer` serves that certificate to Envoy over SDS (``default``: chain and key; ``ROOTCA``: the
  mesh root) on a Unix socket, and pushes a renewed one on the open streams;
- :class:`AdsProxy` accepts Envoy's ADS stream on a Unix socket and forwards it to istiod with the token, as
  istio-agent's xDS proxy does, so Envoy itself holds no credential for istiod;
- :class:`WorkloadAgent` ties them together: certificate first, rotation at half-life, and — if the SDS socket is
  already served by someone else (SPIRE's agent, Lab 5) — SDS left to it ("Workload SDS socket found").
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc

from labkit.emulator.envoy import protocol
from labkit.emulator.envoy.bootstrap import SDS_SOCKET, XDS_SOCKET
from labkit.emulator.envoy.nametables import NameTable, from_wire
from labkit.errors import LabkitError
from labkit.pki import describe, new_request

_log = logging.getLogger("pilot-agent")

DEFAULT_SECRET = "default"
ROOT_SECRET = "ROOTCA"
DEFAULT_LIFETIME = 24 * 3600
RETRY, MAX_RETRY = 0.2, 5.0  # back-off while istiod cannot sign (Istio's agent backs off the same way)


@dataclass(frozen=True)
class WorkloadIdentity:
    """A workload certificate as the agent holds it."""

    cert_chain_pem: str
    key_pem: str
    root_pem: str
    not_before: dt.datetime
    not_after: dt.datetime
    received: dt.datetime

    @property
    def renew_at(self) -> dt.datetime:
        """Half-life: when istio-agent asks for the next one. Counted from when it arrived, not from
        ``not_before``, which CAs backdate for clock skew (that would make a short-lived certificate due at once).
        """
        return self.received + (self.not_after - self.received) / 2


@dataclass(frozen=True)
class Istiod:
    """Where and how to reach istiod: address, the root to verify it by, the name its certificate carries."""

    address: str
    root_pem: str
    server_name: str = "istiod.istio-system.svc"

    def channel(self) -> grpc.aio.Channel:
        credentials = grpc.ssl_channel_credentials(root_certificates=self.root_pem.encode())
        return grpc.aio.secure_channel(self.address, credentials,
                                       options=[("grpc.ssl_target_name_override", self.server_name)])


@dataclass(frozen=True)
class Credentials:
    """What the agent presents: the token file and the cluster the pod belongs to."""

    token_path: Path
    cluster_id: str

    def metadata(self) -> list[tuple[str, str]]:
        token = self.token_path.read_text().strip()
        return [("authorization", f"Bearer {token}"), ("clusterid", self.cluster_id)]


class CertificateClient:
    """istio-agent's CA client.

    Args:
        istiod: where istiod is.
        credentials: the pod's token and cluster.
        spiffe_id: the identity asked for, ``spiffe://<trust domain>/ns/<ns>/sa/<sa>``.
        lifetime: requested lifetime in seconds (``SECRET_TTL``; istiod's default 24 h).
    """

    def __init__(self, istiod: Istiod, credentials: Credentials, spiffe_id: str, lifetime: int = DEFAULT_LIFETIME):
        self.istiod = istiod
        self.credentials = credentials
        self.spiffe_id = spiffe_id
        self.lifetime = lifetime

    async def fetch(self) -> WorkloadIdentity:
        """A new key, a CSR, istiod's signature.

        Raises:
            grpc.aio.AioRpcError: istiod refused (``request authenticate failure``) or cannot be reached.
        """
        key_pem, csr_pem = new_request(self.spiffe_id)
        async with self.istiod.channel() as channel:
            create = channel.unary_unary(protocol.CREATE_CERTIFICATE,
                                         request_serializer=protocol.IstioCertificateRequest.SerializeToString,
                                         response_deserializer=protocol.IstioCertificateResponse.FromString)
            response = await create(protocol.IstioCertificateRequest(csr=csr_pem, validity_duration=self.lifetime),
                                    metadata=self.credentials.metadata(), timeout=10)
        chain = list(response.cert_chain)
        leaf = describe(chain[0])[0]
        return WorkloadIdentity("".join(chain[:-1]) if len(chain) > 1 else chain[0], key_pem, chain[-1],
                                leaf.not_before, leaf.not_after, dt.datetime.now(dt.UTC))


def secrets_of(identity: WorkloadIdentity) -> dict[str, dict[str, Any]]:
    """The SDS resources Istio's agent serves: ``default`` and ``ROOTCA``."""
    return {
        DEFAULT_SECRET: {"name": DEFAULT_SECRET, "tls_certificate": {
            "certificate_chain": {"inline_string": identity.cert_chain_pem},
            "private_key": {"inline_string": identity.key_pem}}},
        ROOT_SECRET: {"name": ROOT_SECRET, "validation_context": {
            "trusted_ca": {"inline_string": identity.root_pem}}},
    }


@dataclass
class _SdsStream:
    names: tuple[str, ...] = ()
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class SecretServer(sds_pb2_grpc.SecretDiscoveryServiceServicer):
    """SDS for one Envoy, state of the world, on a Unix socket."""

    def __init__(self) -> None:
        self.identity: WorkloadIdentity | None = None
        self._streams: list[_SdsStream] = []
        self._version = 0
        self.server: grpc.aio.Server | None = None

    def update(self, identity: WorkloadIdentity) -> None:
        self.identity = identity
        self._version += 1
        for stream in self._streams:
            stream.wake.set()

    async def start(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self.server = grpc.aio.server()
        sds_pb2_grpc.add_SecretDiscoveryServiceServicer_to_server(self, self.server)
        self.server.add_insecure_port(f"unix:{path}")
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=0.2)

    async def StreamSecrets(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:  # gRPC's name
        stream = _SdsStream()
        self._streams.append(stream)
        inbox: asyncio.Queue[Any] = asyncio.Queue()

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await inbox.put(request)
            finally:
                await inbox.put(None)

        reader = asyncio.create_task(read())
        sent = -1
        try:
            while True:
                getter = asyncio.ensure_future(inbox.get())
                waker = asyncio.ensure_future(stream.wake.wait())
                done, _ = await asyncio.wait({getter, waker}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    waker.cancel()
                    request = getter.result()
                    if request is None:
                        return
                    if request.response_nonce and tuple(request.resource_names) == stream.names and sent == \
                            self._version:
                        continue  # an ACK (or NACK) of what we sent
                    stream.names = tuple(request.resource_names)
                else:
                    getter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await getter
                    stream.wake.clear()
                if self.identity is None:
                    continue
                secrets = secrets_of(self.identity)
                packed = [protocol.to_any(secrets[name], protocol.SECRET) for name in stream.names if name in secrets]
                sent = self._version
                yield discovery_pb2.DiscoveryResponse(version_info=str(sent), resources=packed,
                                                      type_url=protocol.SECRET, nonce=f"{sent}-{id(stream)}")
        finally:
            reader.cancel()
            self._streams.remove(stream)


class AdsProxy(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    """Envoy's ADS stream forwarded to istiod with the pod's token.

    With the DNS proxy on, the agent also subscribes to istiod's name table (NDS) on that same upstream stream, as
    Istio's xDS proxy does: those responses are the agent's (handed to ``on_names`` and ACKed), never Envoy's.
    """

    def __init__(self, istiod: Callable[[], Istiod], credentials: Credentials,
                 on_names: Callable[[NameTable], None] | None = None):
        self.istiod = istiod
        self.credentials = credentials
        self.on_names = on_names
        self.tables = 0
        self.server: grpc.aio.Server | None = None

    async def start(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self.server = grpc.aio.server()
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self, self.server)
        self.server.add_insecure_port(f"unix:{path}")
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=0.2)

    async def StreamAggregatedResources(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        try:
            istiod = await asyncio.to_thread(self.istiod)
        except LabkitError as exc:  # Envoy keeps its last configuration and dials again
            _log.warning("XDS proxy: cannot reach istiod: %s", exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        async with istiod.channel() as channel:
            upstream = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources(
                metadata=self.credentials.metadata())
            # Envoy's requests and the agent's NDS ACKs share the upstream stream, and gRPC takes one message at a
            # time: a second write while one is in flight ends the call (GRPC_CALL_ERROR_TOO_MANY_OPERATIONS), after
            # which Envoy's ACKs and new subscriptions would never reach istiod (a cluster warming for ever).
            writing = asyncio.Lock()

            async def send(request: Any) -> None:
                async with writing:
                    await upstream.write(request)

            async def forward() -> None:
                first = True
                async for request in request_iterator:
                    await send(request)
                    if first and self.on_names is not None:
                        await send(discovery_pb2.DiscoveryRequest(type_url=protocol.NAME_TABLE))
                    first = False
                async with writing:
                    await upstream.done_writing()

            forwarding = asyncio.create_task(forward())
            try:
                async for response in upstream:
                    if response.type_url == protocol.NAME_TABLE and self.on_names is not None:
                        await self._take_names(response, send)
                        continue
                    yield response
            except grpc.aio.AioRpcError as exc:
                _log.warning("XDS proxy: upstream %s: %s", istiod.address, exc.details())
                await context.abort(exc.code(), exc.details() or "")
            finally:
                forwarding.cancel()
                with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                    await forwarding

    async def _take_names(self, response: Any, send: Callable[[Any], Awaitable[None]]) -> None:
        assert self.on_names is not None
        table = protocol.NameTable()
        for resource in response.resources:
            table = protocol.NameTable.FromString(resource.value)
        self.on_names(from_wire(protocol.to_dict(table)))
        self.tables += 1
        await send(discovery_pb2.DiscoveryRequest(type_url=protocol.NAME_TABLE, version_info=response.version_info,
                                                  response_nonce=response.nonce))


def socket_served(path: Path) -> bool:
    """Whether someone already listens on a Unix socket (SPIRE's agent on the SDS socket)."""
    if not path.exists():
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


class WorkloadAgent:
    """Certificate, SDS, the ADS proxy and (with the DNS proxy) the name table, for one pod.

    Args:
        root: the pod's folder (Istio's absolute paths live under it).
        istiod: where istiod is (a callable: re-resolved at every connection, through the pod's DNS view).
        credentials: the token and cluster.
        spiffe_id: the pod's identity.
        lifetime: requested certificate lifetime in seconds.
        on_names: where istiod's name tables go (the DNS proxy); ``None`` without DNS capture.
        sockets: ``(XDS socket, SDS socket)`` relative to ``root``.
    """

    def __init__(self, root: Path, istiod: Callable[[], Istiod], credentials: Credentials, spiffe_id: str,
                 lifetime: int = DEFAULT_LIFETIME, on_names: Callable[[NameTable], None] | None = None,
                 sockets: tuple[Path, Path] = (XDS_SOCKET, SDS_SOCKET)):
        self.root = root
        self.istiod = istiod
        self.credentials = credentials
        self.spiffe_id = spiffe_id
        self.lifetime = lifetime
        self.sockets = sockets
        self.secrets: SecretServer | None = None
        self.ads = AdsProxy(istiod, credentials, on_names)
        self.identity: WorkloadIdentity | None = None
        self.renewals = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop``: SDS and the ADS proxy at once, the certificate as soon as istiod signs it (retried
        with back-off while istiod cannot be reached), renewed at half-life."""
        xds_path, sds_path = (self.root / path for path in self.sockets)
        if socket_served(sds_path):
            _log.info("Workload SDS socket found. Istio SDS Server won't be started")
        else:
            self.secrets = SecretServer()
            await self.secrets.start(sds_path)
        await self.ads.start(xds_path)
        retry = RETRY
        try:
            while not stop.is_set():
                delay = 3600.0
                if self.secrets is not None:
                    due = self.identity is None or dt.datetime.now(dt.UTC) >= self.identity.renew_at
                    if due:
                        try:
                            await self._renew()
                            retry = RETRY
                        except (grpc.aio.AioRpcError, LabkitError, OSError) as exc:  # keep the current one
                            reason = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
                            _log.warning("failed to get a workload certificate from istiod: %s", reason)
                            delay, retry = retry, min(retry * 2, MAX_RETRY)
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(stop.wait(), delay)
                            continue
                    assert self.identity is not None
                    delay = max(0.05, (self.identity.renew_at - dt.datetime.now(dt.UTC)).total_seconds())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            await self.ads.stop()
            if self.secrets is not None:
                await self.secrets.stop()

    async def _renew(self) -> None:
        istiod = await asyncio.to_thread(self.istiod)
        client = CertificateClient(istiod, self.credentials, self.spiffe_id, self.lifetime)
        self.identity = await client.fetch()
        self.renewals += 1
        assert self.secrets is not None
        self.secrets.update(self.identity)
        _log.info("workload certificate for %s valid until %s", self.spiffe_id, self.identity.not_after.isoformat())
