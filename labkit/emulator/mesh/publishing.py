"""Publishing a snapshot: build each proxy's resources, write its xDS files, read back ACK or NACK.

For every proxy of the cluster, istiod generates the resources (:func:`~labkit.emulator.mesh.xds.generate`)
with the proxy's current workload certificate, writes them into the proxy's xDS directory
(:class:`~labkit.emulator.envoy.files.XdsWriter`, which rewrites only what changed), and then asks that
Envoy whether it applied them (:func:`~labkit.emulator.envoy.admin.confirm`). The answer is kept per
proxy for ``/debug/syncz``: ``SYNCED``, ``NACK`` with Envoy's reason naming the resource, or ``STALE``.
A proxy whose agent has not laid out its directory yet is ``NOT CONNECTED`` and is retried at the next
push, as a proxy that has not dialled istiod yet would be.

One object that cannot be translated never stops a push (as in istiod): when a proxy's build fails, the
Istio config object whose removal lets it succeed is found, logged by kind, namespace and name with the
reason, and left out — of this push and of every later one until it changes — while everything else flows.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from labkit.emulator.envoy import admin, files
from labkit.emulator.envoy.agent import PROXY_FILE
from labkit.emulator.mesh.ca import WorkloadCertificates
from labkit.emulator.mesh.model import ADMIN_PORT, ConfigObject, MeshSnapshot, Proxy, ProxyConfig
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
        # kind/namespace/name → (the spec that could not be translated, why): left out until the spec changes.
        self.untranslatable: dict[str, tuple[str, str]] = {}
        # proxy id → the configs with which its build failed though no single object was to blame: not searched
        # again until they change (the search builds the proxy once per object).
        self._blameless: dict[str, str] = {}

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
        snapshot = self._without_untranslatable(snapshot)
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
                config = self._generate(proxy, snapshot, credential)
            except Exception as exc:  # one object's failure is isolated below, whatever it raised
                snapshot = self._isolate(proxy, snapshot, credential, exc)
                try:
                    config = self._generate(proxy, snapshot, credential)
                except Exception as again:  # not caused by one config object: this proxy only
                    _log.error("%s: %s", proxy.id, again)
                    self._status[proxy.id] = self._row(proxy, "ERROR", str(again))
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
            self._blameless.pop(gone, None)
            task = self._confirming.pop(gone, None)
            if task is not None:
                task.cancel()

    @staticmethod
    def _generate(proxy: Proxy, snapshot: MeshSnapshot, credential: ProxyCredential) -> ProxyConfig:
        return inline_subscriptions(generate(proxy, snapshot, credential=credential))

    def _without_untranslatable(self, snapshot: MeshSnapshot) -> MeshSnapshot:
        current = {c.key: c for c in snapshot.configs}
        for key in [k for k, (spec, _) in self.untranslatable.items()
                    if k not in current or _fingerprint(current[k]) != spec]:
            del self.untranslatable[key]  # changed or deleted: give it another chance
        if not self.untranslatable:
            return snapshot
        return dataclasses.replace(snapshot, configs=tuple(c for c in snapshot.configs
                                                           if c.key not in self.untranslatable))

    def _isolate(self, proxy: Proxy, snapshot: MeshSnapshot, credential: ProxyCredential,
                 error: Exception) -> MeshSnapshot:
        """The snapshot without the config objects that make this proxy's build fail (each logged once)."""
        configs = json.dumps([[c.key, _fingerprint(c)] for c in snapshot.configs])
        if self._blameless.get(proxy.id) == configs:
            return snapshot
        for _ in range(len(snapshot.configs)):
            culprit = _culprit(proxy, snapshot, credential, self._generate)
            if culprit is None:
                self._blameless[proxy.id] = configs
                break
            reason = f"{type(error).__name__}: {error}" if not isinstance(error, LabkitError) else str(error)
            _log.error("%s %s/%s cannot be translated and is left out of the push: %s", culprit.kind,
                       culprit.namespace, culprit.name, reason)
            self.untranslatable[culprit.key] = (_fingerprint(culprit), reason)
            snapshot = dataclasses.replace(snapshot, configs=tuple(c for c in snapshot.configs if c is not culprit))
            try:
                self._generate(proxy, snapshot, credential)
                break
            except Exception as exc:  # a second culprit
                error = exc
        return snapshot

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

    def untranslatable_configs(self) -> dict[str, str]:
        """kind/namespace/name → why it is left out of pushes, for ``/debug/configz``."""
        return {key: reason for key, (_, reason) in sorted(self.untranslatable.items())}

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


def _fingerprint(config: ConfigObject) -> str:
    return json.dumps(config.spec, sort_keys=True, default=str)


def _culprit(proxy: Proxy, snapshot: MeshSnapshot, credential: ProxyCredential, build: Any) -> ConfigObject | None:
    """The first config object without which ``build`` succeeds for ``proxy`` (``None``: no single one)."""
    for config in snapshot.configs:
        trial = dataclasses.replace(snapshot, configs=tuple(c for c in snapshot.configs if c is not config))
        try:
            build(proxy, trial, credential)
        except Exception:  # still failing: not this one
            continue
        return config
    return None
