"""The SPIFFE Workload API and Envoy SDS that SPIRE's agent serves on one Unix socket.

**Workload API.** gRPC service ``SpiffeWorkloadAPI`` (the proto has no package): ``FetchX509SVID`` and
``FetchX509Bundles`` stream the caller's SVIDs and bundles and send again whenever they change; JWT calls answer
``Unimplemented`` here (no lab signs JWTs). Every call must carry the metadata ``workload.spiffe.io: true``, or it is
refused with ``InvalidArgument`` and SPIRE's message, so a client that forgot it fails as it would on a real agent.
A workload with no registration entry gets ``PermissionDenied: no identity issued``, as SPIRE answers.

The messages are built in code, field for field as go-spiffe's ``workload.proto`` declares them (as
:mod:`labkit.emulator.envoy.protocol` does for Istio's), in a private descriptor pool: a process may also hold a
client's generated copy of the same proto (py-spiffe's), and the default pool would refuse the second definition.

**SDS.** ``StreamSecrets`` on the same socket, configured as Istio's SPIRE integration configures the agent
(``default_svid_name = "default"``, ``default_bundle_name = "null"``, ``default_all_bundles_name = "ROOTCA"``):
``default`` is the SVID chain and key; ``ROOTCA`` holds the trust domain's own bundle, and for a workload whose
entry federates, one bundle per trust domain behind Envoy's SPIFFE validator (never one merged CA list).

**Who is calling.** A real agent learns the caller's PID from the socket (``SO_PEERCRED``) and asks the kubelet
which pod it belongs to. Here every pod's processes run as the same user on one machine, so the PID says little;
instead each pod gets its *own* socket (the way the SPIFFE CSI driver mounts the agent's socket directory into the
pods that ask for it), and the socket a call arrives on names the pod. :class:`WorkloadEndpoint` is one such socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from labkit.emulator.envoy import protocol
from labkit.emulator.mesh.xds import secrets as xds_secrets
from labkit.emulator.spire.sockets import unix_address
from labkit.pki import TrustBundle
from labkit.pki.svids import der_chain, der_private_key

_log = logging.getLogger("spire-agent")

SERVICE = "SpiffeWorkloadAPI"
HEADER = "workload.spiffe.io"
MISSING_HEADER = "security header missing from request"
NO_IDENTITY = "no identity issued"
DEFAULT_SVID = "default"
ALL_BUNDLES = "ROOTCA"

_F = descriptor_pb2.FieldDescriptorProto


def _field(name: str, number: int, kind: int, *, repeated: bool = False, type_name: str = "") -> _F:
    label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    result = _F(name=name, number=number, type=kind, label=label)  # type: ignore[arg-type]
    if type_name:
        result.type_name = type_name
    return result


def _map_entry(name: str, value_kind: int, value_type: str = "") -> descriptor_pb2.DescriptorProto:
    entry = descriptor_pb2.DescriptorProto(name=name)
    entry.options.map_entry = True
    entry.field.extend([_field("key", 1, _F.TYPE_STRING), _field("value", 2, value_kind, type_name=value_type)])
    return entry


def _message(name: str, *fields: _F, nested: tuple[descriptor_pb2.DescriptorProto, ...] = ()
             ) -> descriptor_pb2.DescriptorProto:
    message = descriptor_pb2.DescriptorProto(name=name)
    message.field.extend(fields)
    message.nested_type.extend(nested)
    return message


def _build() -> dict[str, Any]:
    """go-spiffe's ``proto/spiffe/workload/workload.proto``, the X.509 half (what SPIRE's agent serves here)."""
    proto = descriptor_pb2.FileDescriptorProto(name="labkit/spiffe/workload.proto", syntax="proto3")
    proto.message_type.extend([
        _message("X509SVIDRequest"),
        _message("X509SVIDResponse",
                 _field("svids", 1, _F.TYPE_MESSAGE, repeated=True, type_name=".X509SVID"),
                 _field("crl", 2, _F.TYPE_BYTES, repeated=True),
                 _field("federated_bundles", 3, _F.TYPE_MESSAGE, repeated=True,
                        type_name=".X509SVIDResponse.FederatedBundlesEntry"),
                 nested=(_map_entry("FederatedBundlesEntry", _F.TYPE_BYTES),)),
        _message("X509SVID", _field("spiffe_id", 1, _F.TYPE_STRING), _field("x509_svid", 2, _F.TYPE_BYTES),
                 _field("x509_svid_key", 3, _F.TYPE_BYTES), _field("bundle", 4, _F.TYPE_BYTES),
                 _field("hint", 5, _F.TYPE_STRING)),
        _message("X509BundlesRequest"),
        _message("X509BundlesResponse", _field("crl", 1, _F.TYPE_BYTES, repeated=True),
                 _field("bundles", 2, _F.TYPE_MESSAGE, repeated=True, type_name=".X509BundlesResponse.BundlesEntry"),
                 nested=(_map_entry("BundlesEntry", _F.TYPE_BYTES),)),
    ])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
            for name in ("X509SVIDRequest", "X509SVIDResponse", "X509SVID", "X509BundlesRequest",
                         "X509BundlesResponse")}


_CLASSES = _build()
X509SVIDRequest = _CLASSES["X509SVIDRequest"]
X509SVIDResponse = _CLASSES["X509SVIDResponse"]
X509SVID = _CLASSES["X509SVID"]
X509BundlesRequest = _CLASSES["X509BundlesRequest"]
X509BundlesResponse = _CLASSES["X509BundlesResponse"]


@dataclass(frozen=True)
class Svid:
    """One X509-SVID the agent holds for a workload.

    Args:
        spiffe_id: the entry's SPIFFE ID.
        cert_chain_pem: leaf first, then the server CA (SPIRE hands out the chain up to, not including, the root).
        key_pem: the private key (made by the agent; the server never sees it).
        federates_with: trust domain names of the entry's FederatesWith.
        hint: the entry's hint (empty in the labs).
    """

    spiffe_id: str
    cert_chain_pem: str
    key_pem: str
    federates_with: tuple[str, ...] = ()
    hint: str = ""


@dataclass(frozen=True)
class WorkloadView:
    """Everything one workload may see: its SVIDs, its trust domain's bundle, the federated bundles it may use."""

    svids: tuple[Svid, ...]
    bundle: TrustBundle
    federated: tuple[TrustBundle, ...] = ()

    def bundles(self) -> dict[str, TrustBundle]:
        """Trust domain → bundle, the local one first; kept apart, one per domain."""
        result = {self.bundle.trust_domain: self.bundle}
        for bundle in self.federated:
            result.setdefault(bundle.trust_domain, bundle)
        return result

    def x509_svid_response(self) -> Any:
        bundle_der = b"".join(self.bundle.x509_der)
        response = X509SVIDResponse()
        for svid in self.svids:
            response.svids.add(spiffe_id=svid.spiffe_id, x509_svid=b"".join(der_chain(svid.cert_chain_pem)),
                               x509_svid_key=der_private_key(svid.key_pem), bundle=bundle_der, hint=svid.hint)
        for bundle in self.federated:
            response.federated_bundles[f"spiffe://{bundle.trust_domain}"] = b"".join(bundle.x509_der)
        return response

    def x509_bundles_response(self) -> Any:
        response = X509BundlesResponse()
        for domain, bundle in self.bundles().items():
            response.bundles[f"spiffe://{domain}"] = b"".join(bundle.x509_der)
        return response

    def secrets(self) -> dict[str, dict[str, Any]]:
        """The SDS resources: ``default`` (the first SVID) and ``ROOTCA`` (one bundle per trust domain)."""
        result: dict[str, dict[str, Any]] = {}
        if self.svids:
            first = self.svids[0]
            result[DEFAULT_SVID] = xds_secrets.build_tls_secret(DEFAULT_SVID, first.cert_chain_pem, first.key_pem)
        roots = {domain: bundle.pem for domain, bundle in self.bundles().items() if bundle.x509_authorities}
        if roots:
            result[ALL_BUNDLES] = xds_secrets.build_root_secret(roots, ALL_BUNDLES)
        return result


def _has_header(context: Any) -> bool:
    return any(key == HEADER and value == "true" for key, value in context.invocation_metadata() or ())


class WorkloadEndpoint(sds_pb2_grpc.SecretDiscoveryServiceServicer):
    """The Workload API and SDS for one workload, on its own Unix socket.

    Args:
        path: the socket file.
        describe: who the workload is, for logs (``namespace/pod``).
    """

    def __init__(self, path: Path, describe: str = ""):
        self.path = path
        self.describe = describe or str(path)
        self.view: WorkloadView | None = None
        self._changed = asyncio.Condition()
        self._version = 0
        self.server: grpc.aio.Server | None = None
        self._dir_fd: int | None = None

    async def update(self, view: WorkloadView | None) -> None:
        """Publish what the workload may see now; open streams send it at once."""
        if view == self.view:
            return
        self.view = view
        async with self._changed:
            self._version += 1
            self._changed.notify_all()

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.server = grpc.aio.server()
        handlers = {
            "FetchX509SVID": grpc.unary_stream_rpc_method_handler(
                self.FetchX509SVID, request_deserializer=X509SVIDRequest.FromString,
                response_serializer=X509SVIDResponse.SerializeToString),
            "FetchX509Bundles": grpc.unary_stream_rpc_method_handler(
                self.FetchX509Bundles, request_deserializer=X509BundlesRequest.FromString,
                response_serializer=X509BundlesResponse.SerializeToString),
        }
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        sds_pb2_grpc.add_SecretDiscoveryServiceServicer_to_server(self, self.server)
        address, self._dir_fd = unix_address(self.path)
        self.server.add_insecure_port(f"unix:{address}")
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=0.2)
            self.server = None
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _views(self, context: Any) -> AsyncIterator[WorkloadView]:
        """The workload's view now and after every change, for as long as the call lasts."""
        if not _has_header(context):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, MISSING_HEADER)
        sent = -1
        while True:
            await self._wait_change(sent)
            sent, view = self._version, self.view
            if view is None or not view.svids:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, NO_IDENTITY)
            assert view is not None
            yield view

    async def FetchX509SVID(self, request: Any, context: Any) -> AsyncIterator[Any]:  # gRPC's name
        async for view in self._views(context):
            yield view.x509_svid_response()

    async def FetchX509Bundles(self, request: Any, context: Any) -> AsyncIterator[Any]:  # gRPC's name
        async for view in self._views(context):
            yield view.x509_bundles_response()

    async def StreamSecrets(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:  # gRPC's name
        """State-of-the-world SDS: answer the names asked for, again on every change of the view."""
        names: tuple[str, ...] | None = None  # nothing asked yet
        events: asyncio.Queue[Any] = asyncio.Queue()
        changed = object()

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await events.put(request)
            finally:
                await events.put(None)

        async def watch() -> None:
            seen = self._version
            while True:
                await self._wait_change(seen)
                seen = self._version
                await events.put(changed)

        tasks = [asyncio.create_task(read()), asyncio.create_task(watch())]
        sent = -1
        try:
            while True:
                event = await events.get()
                if event is None:
                    return
                if event is not changed:
                    asked = tuple(event.resource_names)
                    if event.response_nonce and asked == names and sent == self._version:
                        continue  # an ACK or NACK of what was sent
                    names = asked
                view = self.view
                if names is None or view is None:
                    continue
                found = view.secrets()
                resources = [protocol.to_any(found[name], protocol.SECRET) for name in names if name in found]
                sent = self._version
                yield discovery_pb2.DiscoveryResponse(version_info=str(sent), resources=resources,
                                                      type_url=protocol.SECRET, nonce=f"{sent}-{id(events)}")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _wait_change(self, seen: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._version != seen)
