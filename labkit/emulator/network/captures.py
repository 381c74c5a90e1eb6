"""Packet captures at a Service's relay: ``PacketCapture`` objects, an add-on of every embedded cluster.

Lab 3 shows the bytes that cross the load balancer between two clusters: TLS records while the
DestinationRule says ``ISTIO_MUTUAL``, readable HTTP after it is switched to ``DISABLE``. On a real
cluster that is ngrep on the load balancer's host; here the load balancer is the service proxy's relay,
and this controller attaches a tap to it for the requested time. Asking goes through the Kubernetes API
like everything else — create a ``PacketCapture`` (``labkit.io/v1``) naming a Service, read the bytes
back from its status — so the client side never reaches into the emulator.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import logging
import time

from labkit.core.contract import CAPTURE_KIND, LABKIT_GROUP
from labkit.core.wire import Obj
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.network.proxy import ServiceProxy
from labkit.emulator.store import Store, WatchEvent

_log = logging.getLogger(__name__)

GROUP, PLURAL = LABKIT_GROUP, "packetcaptures"
MAX_SECONDS = 60.0
DEFAULT_MAX_BYTES = 256 * 1024

CRD: Obj = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "packetcapture", "kind": CAPTURE_KIND, "shortNames": ["pcap"]},
        "versions": [{
            "name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            "additionalPrinterColumns": [
                {"name": "Service", "type": "string", "jsonPath": ".spec.service"},
                {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                {"name": "Bytes", "type": "integer", "jsonPath": ".status.bytes"},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            ],
        }],
    },
}


class Captures:
    """Runs the captures asked for in one cluster.

    Args:
        store: the cluster's store (PacketCapture objects and their status).
        proxy: the cluster's service proxy, whose relays are tapped.
    """

    def __init__(self, store: Store, proxy: ServiceProxy):
        self.store = store
        self.proxy = proxy
        self._tasks: set[asyncio.Task[None]] = set()

    def observe(self, event: WatchEvent) -> None:
        """Start a capture for every new PacketCapture (called with each store event)."""
        if (event.group, event.resource) != (GROUP, PLURAL) or event.type != "ADDED":
            return
        if (event.object.get("status") or {}).get("phase"):
            return
        task = asyncio.get_running_loop().create_task(self._run(event.object))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, obj: Obj) -> None:
        try:
            await self._capture(obj)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a capture that breaks must say so, not leave its client waiting
            _log.exception("capture %s failed", obj["metadata"].get("name"))
            self._write(obj, {"phase": "Failed", "message": f"{type(exc).__name__}: {exc}"})

    async def _capture(self, obj: Obj) -> None:
        meta, spec = obj["metadata"], obj.get("spec") or {}
        namespace, service = meta.get("namespace", ""), str(spec.get("service", ""))
        seconds = min(float(spec.get("seconds") or 5), MAX_SECONDS)
        limit = int(spec.get("maxBytes") or DEFAULT_MAX_BYTES)
        if not service or self.store.find("", "services", service, namespace) is None:
            self._write(obj, {"phase": "Failed", "message": f'service "{service}" not found in namespace '
                                                            f'{namespace}: name a Service of this namespace'})
            return
        started = time.time()
        tap = self.proxy.tap(namespace, service)
        self._write(obj, {"phase": "Capturing", "startedAt": started, "seconds": seconds})
        try:
            await asyncio.sleep(seconds)
        finally:
            tap.detach()
        chunks, total, truncated = [], 0, False
        for chunk in tap.chunks:
            if total + len(chunk.data) > limit:
                truncated = True
                break
            total += len(chunk.data)
            chunks.append({"connection": chunk.connection_id, "direction": chunk.direction.name.lower(),
                           "at": round(chunk.timestamp - started, 6), "data": base64.b64encode(chunk.data).decode()})
        connections = [{"connection": c.connection_id, "client": f"{c.client[0]}:{c.client[1]}",
                        "frontend": f"{c.frontend[0]}:{c.frontend[1]}", "endpoint": f"{c.endpoint[0]}:{c.endpoint[1]}"}
                       for c in tap.connections.values()]
        self._write(obj, {"phase": "Complete", "startedAt": started, "seconds": seconds, "bytes": total,
                          "truncated": truncated, "connections": connections, "chunks": chunks})

    def _write(self, obj: Obj, status: Obj) -> None:
        live = self.store.find(GROUP, PLURAL, obj["metadata"]["name"], obj["metadata"].get("namespace", ""))
        if live is None:
            return
        updated = copy.deepcopy(live)
        updated["status"] = status
        updated["metadata"].pop("resourceVersion", None)
        with contextlib.suppress(StatusError):
            self.store.update_status(GROUP, PLURAL, updated)
