"""The agent's NDS subscription: istiod's name table for the DNS proxy, over an ADS stream.

Istio's agent asks istiod for ``type.googleapis.com/istio.networking.nds.v1.NameTable`` on its xDS stream and
hands each table to its DNS server. Here the agent keeps a stream of its own for that type, to istiod's
``discoveryAddress`` from the mesh config (``PROXY_CONFIG``), its host resolved through the pod's own DNS view
(the cluster DNS in the pod's ``resolv.conf``): in a remote cluster ``istiod.istio-system.svc`` is the
selector-less Service whose Endpoints name the primary's east-west gateway, so the table arrives only by a path
that exists. The stream uses istiod's plaintext port 15010 (no credential needed there, as in Istio); every
table is ACKed with its version and nonce, and a broken stream is redialled with back-off, keeping the last
table meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
from dnslib import QTYPE, DNSRecord
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from labkit.emulator.envoy import protocol
from labkit.emulator.envoy.nametables import NameTable, from_wire

_log = logging.getLogger("pilot-agent")

PLAINTEXT_PORT = 15010
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
    """A background thread keeping the DNS proxy's table current.

    Args:
        node_id: the proxy's node id (istiod finds the proxy by it).
        metadata: node metadata (``DNS_CAPTURE`` among it).
        address: ``discoveryAddress`` as ``(host, port)``.
        resolver: the cluster DNS ``(ip, port)`` and the search list.
        on_table: called with every table istiod sends.
    """

    def __init__(self, node_id: str, metadata: Mapping[str, Any], address: tuple[str, int],
                 resolver: tuple[tuple[str, int], Sequence[str]], on_table: Callable[[NameTable], None]):
        self.node_id = node_id
        self.metadata = metadata
        self.address = address
        self.resolver = resolver
        self.on_table = on_table
        self.received = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="nds", daemon=True)
        self._started = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._started.wait(5)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=3)

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._started.set()
        delay = 0.2
        while not self._stop.is_set():
            stream = asyncio.create_task(self._stream())
            stopper = asyncio.create_task(self._stop.wait())
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
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(delay * 2, 5.0)

    async def _stream(self) -> None:
        host, _ = self.address
        ip = await asyncio.to_thread(resolve, host, *self.resolver)
        async with grpc.aio.insecure_channel(f"{ip}:{PLAINTEXT_PORT}") as channel:
            call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
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
