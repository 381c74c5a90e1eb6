"""The agent's NDS subscription: istiod's name table for the DNS proxy, over an ADS stream.

Istio's agent asks istiod for ``type.googleapis.com/istio.networking.nds.v1.NameTable`` on its xDS stream and
hands each table to its DNS server. Here the agent keeps a stream of its own for that type, on the same
authenticated port as everything else (15012, TLS, the pod's ``istio-ca`` token), to istiod's
``discoveryAddress`` resolved through the pod's own DNS view: in a remote cluster ``istiod.istio-system.svc`` is
the selector-less Service whose Endpoints name the primary's east-west gateway, so the table arrives only by a
path that exists. Every table is ACKed with its version and nonce, and a broken stream is redialled with
back-off, keeping the last table meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import grpc
from dnslib import QTYPE, DNSRecord
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from labkit.emulator.envoy import protocol
from labkit.emulator.envoy.nametables import NameTable, from_wire

if TYPE_CHECKING:
    from labkit.emulator.envoy.workload import Credentials, Istiod

_log = logging.getLogger("pilot-agent")

DEFAULT_DISCOVERY = "istiod.istio-system.svc:15012"


def discovery_address(env: Mapping[str, str]) -> tuple[str, int]:
    """``defaultConfig.discoveryAddress`` from ``PROXY_CONFIG`` (Istio's default when absent)."""
    try:
        config = json.loads(env.get("PROXY_CONFIG") or "{}")
    except ValueError:
        config = {}
    host, _, port = str(config.get("discoveryAddress") or DEFAULT_DISCOVERY).rpartition(":")
    return host, int(port) if port.isdigit() else 15012


def resolve(host: str, server: tuple[str, int], search: Sequence[str], timeout: float = 2.0) -> str:
    """The first A record of ``host`` from the pod's resolver, with its search list as ``resolv.conf`` would.

    Raises:
        OSError: no answer (the message names the host and the resolver).
    """
    candidates = [host] if host.endswith(".") else [f"{host}.{domain}" for domain in search] + [host]
    for name in candidates:
        answer = DNSRecord.parse(DNSRecord.question(name.rstrip("."), "A").send(server[0], server[1],
                                                                                 timeout=timeout))
        for record in answer.rr:
            if record.rtype == QTYPE.A:
                return str(record.rdata)
    raise OSError(f"{host} does not resolve through {server[0]}:{server[1]}")


class NameTableSubscription:
    """Keeps the DNS proxy's table current from istiod, in the agent's event loop.

    Args:
        node_id: the proxy's node id (istiod finds the proxy by it).
        metadata: node metadata (``DNS_CAPTURE`` among it).
        istiod: where istiod is (re-resolved at every dial).
        credentials: the pod's token and cluster.
        on_table: called with every table istiod sends.
    """

    def __init__(self, node_id: str, metadata: Mapping[str, Any], istiod: Callable[[], Istiod],
                 credentials: Credentials, on_table: Callable[[NameTable], None]):
        self.node_id = node_id
        self.metadata = metadata
        self.istiod = istiod
        self.credentials = credentials
        self.on_table = on_table
        self.received = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Follow istiod's tables until ``stop`` is set, redialling a broken stream with back-off."""
        delay = 0.2
        while not stop.is_set():
            stream = asyncio.create_task(self._stream())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({stream, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not stream.done():
                stream.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stream
                return
            error = stream.exception()
            if error is not None:
                reason = error.details() if isinstance(error, grpc.aio.AioRpcError) else str(error)
                _log.warning("NDS stream to istiod: %s", reason)
            else:
                delay = 0.2
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 5.0)

    async def _stream(self) -> None:
        istiod = await asyncio.to_thread(self.istiod)
        async with istiod.channel() as channel:
            call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources(
                metadata=self.credentials.metadata())
            first = discovery_pb2.DiscoveryRequest(type_url=protocol.NAME_TABLE)
            first.node.id = self.node_id
            first.node.metadata.CopyFrom(protocol.struct(
                {k: v for k, v in self.metadata.items() if isinstance(v, str)}))
            await call.write(first)
            async for response in call:
                table = protocol.NameTable()
                for resource in response.resources:
                    table = protocol.NameTable.FromString(resource.value)
                self.on_table(from_wire(protocol.to_dict(table)))
                self.received += 1
                await call.write(discovery_pb2.DiscoveryRequest(
                    type_url=protocol.NAME_TABLE, version_info=response.version_info,
                    response_nonce=response.nonce))
