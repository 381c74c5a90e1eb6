"""Publishing a snapshot: build each proxy's resources, write its xDS files, read back ACK or NACK.

For every proxy of the cluster, istiod generates the resources (:func:`~labkit.emulator.mesh.xds.generate`)
with the proxy's current workload certificate, writes them into the proxy's xDS directory
(:class:`~labkit.emulator.envoy.files.XdsWriter`, which rewrites only what changed), and then asks that
Envoy whether it applied them (:func:`~labkit.emulator.envoy.admin.confirm`). The answer is kept per
proxy for ``/debug/syncz``: ``SYNCED``, ``NACK`` with Envoy's reason naming the resource, or ``STALE``.
A proxy whose agent has not laid out its directory yet is ``NOT CONNECTED`` and is retried at the next
push, as a proxy that has not dialled istiod yet would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from labkit.emulator.envoy import admin, files
from labkit.emulator.envoy.agent import PROXY_FILE
from labkit.emulator.mesh.ca import WorkloadCertificates
from labkit.emulator.mesh.model import ADMIN_PORT, MeshSnapshot, Proxy
from labkit.emulator.mesh.xds import ProxyCredential, generate
from labkit.emulator.mesh.xds.inlining import inline_subscriptions
from labkit.errors import LabkitError, XdsRejectedError, XdsTimeoutError

_log = logging.getLogger("istiod.push")


class Publisher:
    """Keeps every proxy of one cluster supplied with its configuration.

    Args:
        xds_root: the shared root of the proxies' xDS directories.
        cluster: the cluster whose proxies this control plane configures.
    """

    def __init__(self, xds_root: Path, cluster: str):
        self.root = xds_root
        self.cluster = cluster
        self._writers: dict[str, files.XdsWriter] = {}
        self._status: dict[str, dict[str, Any]] = {}
        self._confirming: dict[str, asyncio.Task[None]] = {}
        self.waiting = False

    def directory(self, pod_uid: str) -> Path:
        return files.xds_dir(self.root, pod_uid)

    def app_address(self, pod: dict[str, Any]) -> str:
        """Where the application behind a pod's sidecar listens, as its agent recorded it."""
        try:
            recorded = json.loads((self.directory((pod.get("metadata") or {}).get("uid", "")) / PROXY_FILE)
                                  .read_text())
        except (OSError, ValueError):
            return ""
        return str(recorded.get("app_address") or "")

    async def publish(self, snapshot: MeshSnapshot, proxies: list[Proxy], certificates: WorkloadCertificates) -> None:
        """Write every proxy's configuration; confirmations run in the background."""
        self.waiting = False
        ca = certificates.ca
        for proxy in proxies:
            directory = self.directory(proxy.uid)
            if ca is None or not (directory / files.BOOTSTRAP).exists() or \
                    (proxy.type == "sidecar" and not proxy.app_address):
                self.waiting = True
                self._status[proxy.id] = self._row(proxy, "NOT CONNECTED")
                continue
            issued = certificates.credential(proxy.service_account)
            assert issued is not None
            roots = {snapshot.mesh.trust_domain: ca.root_pem}
            credential = ProxyCredential(issued.cert_chain_pem, issued.key_pem, roots)
            try:
                config = inline_subscriptions(generate(proxy, snapshot, credential=credential))
            except LabkitError as exc:
                _log.error("%s: %s", proxy.id, exc)
                self._status[proxy.id] = self._row(proxy, "ERROR", str(exc))
                continue
            writer = self._writers.get(proxy.id)
            if writer is None or writer.directory != directory:
                writer = self._writers[proxy.id] = files.XdsWriter(directory)
            published = writer.publish(config)
            if published.changed or proxy.id not in self._status or self._status[proxy.id]["status"] != "SYNCED":
                self._confirm(proxy, directory, published)
        current = {p.id for p in proxies}
        for gone in [key for key in self._writers if key not in current]:
            self._writers.pop(gone)
            self._status.pop(gone, None)
            task = self._confirming.pop(gone, None)
            if task is not None:
                task.cancel()

    def _confirm(self, proxy: Proxy, directory: Path, published: files.Published) -> None:
        previous = self._confirming.pop(proxy.id, None)
        if previous is not None:
            previous.cancel()

        async def run() -> None:
            try:
                await admin.confirm((proxy.ip, ADMIN_PORT), directory, published, timeout=10.0)
                self._status[proxy.id] = self._row(proxy, "SYNCED", version=published.version)
            except XdsRejectedError as exc:
                _log.error("NACK from %s: %s", proxy.id, exc)
                self._status[proxy.id] = self._row(proxy, "NACK", str(exc), published.version)
            except XdsTimeoutError as exc:
                self._status[proxy.id] = self._row(proxy, "STALE", str(exc), published.version)

        self._confirming[proxy.id] = asyncio.create_task(run(), name=f"confirm {proxy.id}")

    def _row(self, proxy: Proxy, status: str, error: str = "", version: str = "") -> dict[str, Any]:
        return {"proxy": f"{proxy.name}.{proxy.namespace}", "cluster_id": self.cluster, "type": proxy.type,
                "status": status, "version": version, "error": error}

    def sync_status(self) -> list[dict[str, Any]]:
        """One row per proxy, for ``/debug/syncz``."""
        return [self._status[key] for key in sorted(self._status)]

    async def close(self) -> None:
        for task in self._confirming.values():
            task.cancel()
        for task in self._confirming.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._confirming.clear()
