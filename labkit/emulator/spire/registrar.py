"""``k8s-workload-registrar``: registration entries made from the cluster's pods, as the article's SPIRE 1.5 did.

Usage (a container next to the server in its pod; they share the pod's folder, hence the server's socket)::

    python -m labkit.emulator.spire.registrar -config /run/spire/config/k8s-workload-registrar.conf

It watches pods through the API server with its service-account token and keeps, through the server's private
API, one entry per node and one per pod:

- node: ``spiffe://<td>/k8s-workload-registrar/<cluster>/node/<node>``, parent ``spiffe://<td>/spire/server``,
  selectors ``k8s_psat:agent_node_name:<node>`` and ``k8s_psat:cluster:<cluster>`` — the alias that makes every
  agent attested on that node the parent of its pods' entries;
- pod: ``spiffe://<td>/ns/<namespace>/sa/<service account>`` (``identity_template``), parent the node entry,
  selectors ``k8s:node-name``, ``k8s:ns`` and ``k8s:pod-uid``, DNS name the pod's name, FederatesWith the trust
  domains listed in the pod's ``spiffe.io/federatesWith`` annotation (comma-separated).

Pods in ``ignore_namespaces`` (kube-system, kube-public, spire) get none. An entry whose pod is gone is deleted; one
whose pod changed (its annotation, say) is replaced. SPIRE 1.6 removed this registrar; spire-controller-manager's
``ClusterSPIFFEID`` does the same job today.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sys
import urllib.parse
from typing import Any

import aiohttp

from labkit.emulator.mesh.kubeclient import Informer
from labkit.emulator.spire.config import RegistrarConfig
from labkit.emulator.spire.entries import Entry, Selector, trust_domain_name
from labkit.emulator.spire.pods import PodContext
from labkit.emulator.spire.programs import run_program, stop_event
from labkit.emulator.spire.sockets import unix_address
from labkit.errors import SpireError

_log = logging.getLogger("k8s-workload-registrar")

_TEMPLATE = re.compile(r"\{\{\s*\.Pod\.(\w+)\s*\}\}")


def node_id(config: RegistrarConfig, node: str) -> str:
    return f"spiffe://{config.trust_domain}/k8s-workload-registrar/{config.cluster}/node/{node}"


def pod_spiffe_id(config: RegistrarConfig, pod: dict[str, Any]) -> str:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    fields = {"Namespace": meta.get("namespace", ""), "Name": meta.get("name", ""),
              "ServiceAccount": spec.get("serviceAccountName") or "default", "NodeName": spec.get("nodeName", "")}
    path = _TEMPLATE.sub(lambda m: str(fields.get(m.group(1), "")), config.identity_template).strip("/")
    return f"spiffe://{config.trust_domain}/{path}"


def desired_entries(config: RegistrarConfig, pods: list[dict[str, Any]]) -> list[Entry]:
    """The entries the registrar keeps for these pods (without IDs)."""
    server = f"spiffe://{config.trust_domain}/spire/server"
    wanted: dict[tuple[str, str], Entry] = {}
    for pod in pods:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        node = spec.get("nodeName")
        if not node or meta.get("namespace") in config.ignore_namespaces or meta.get("deletionTimestamp"):
            continue
        parent = node_id(config, node)
        wanted[(parent, server)] = Entry("", parent, server, (Selector("k8s_psat", f"agent_node_name:{node}"),
                                                               Selector("k8s_psat", f"cluster:{config.cluster}")),
                                         node=True)
        annotation = (meta.get("annotations") or {}).get(config.federates_with_annotation, "")
        federates = tuple(sorted({trust_domain_name(d.strip()) for d in annotation.split(",") if d.strip()}))
        selectors = (Selector("k8s", f"node-name:{node}"), Selector("k8s", f"ns:{meta.get('namespace')}"),
                     Selector("k8s", f"pod-uid:{meta.get('uid')}"))
        spiffe_id = pod_spiffe_id(config, pod)
        wanted[(spiffe_id, str(meta.get("uid")))] = Entry("", spiffe_id, parent, selectors, federates,
                                                          (str(meta.get("name")),))
    return list(wanted.values())


def _same(a: Entry, b: Entry) -> bool:
    return (a.spiffe_id, a.parent_id, sorted(a.selectors), sorted(a.federates_with), a.dns_names) == \
        (b.spiffe_id, b.parent_id, sorted(b.selectors), sorted(b.federates_with), b.dns_names)


def _ours(config: RegistrarConfig, entry: Entry) -> bool:
    prefix = f"spiffe://{config.trust_domain}/k8s-workload-registrar/{config.cluster}/node/"
    return entry.spiffe_id.startswith(prefix) or entry.parent_id.startswith(prefix)


class Registrar:
    """The reconcile loop.

    Args:
        config: the registrar's config.
        pod: the pod it runs in (the server's).
    """

    def __init__(self, config: RegistrarConfig, pod: PodContext):
        self.config = config
        self.pod = pod
        self._changed = asyncio.Event()
        self._fd: int | None = None
        self._informer: Informer | None = None

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        address, fd = unix_address(self.pod.path(self.config.server_socket_path))
        try:
            connector = aiohttp.UnixConnector(path=address)
            async with aiohttp.ClientSession(connector=connector) as session, \
                    session.request(method, "http://spire-server" + path,
                                    data=json.dumps(body) if body is not None else None,
                                    timeout=aiohttp.ClientTimeout(total=10)) as response:
                data = await response.json(content_type=None)
                if response.status >= 400:
                    raise SpireError(str((data or {}).get("error")))
                return data
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise SpireError(f"the server's API is not reachable: {exc}") from exc
        finally:
            if fd is not None:
                os.close(fd)

    async def reconcile(self, pods: list[dict[str, Any]]) -> None:
        existing = [Entry.from_dict(e) for e in (await self._call("GET", "/entries"))["entries"]]
        ours = [e for e in existing if _ours(self.config, e)]
        wanted = desired_entries(self.config, pods)
        for entry in ours:
            if not any(_same(entry, w) for w in wanted):
                await self._call("DELETE", f"/entries/{urllib.parse.quote(entry.entry_id)}")
                _log.info("Deleted entry: entry_id=%s spiffe_id=%s", entry.entry_id, entry.spiffe_id)
        missing = [w for w in wanted if not any(_same(w, e) for e in ours)]
        if missing:
            body = {"entries": [{k: v for k, v in w.to_dict().items() if k not in ("entry_id", "revision")}
                                for w in missing]}
            answer = await self._call("POST", "/entries", body)
            for result in answer["results"]:
                _log.info("Created entry: spiffe_id=%s status=%s", result["entry"].get("spiffe_id"),
                          result["status"]["code"])

    async def run(self, stop: asyncio.Event) -> None:
        async with self.pod.client() as client:
            self._informer = Informer(client, "/api/v1/pods", self._changed.set, "pods")
            self._informer.start()
            try:
                delay = 0.2
                while not stop.is_set():
                    waiter = asyncio.ensure_future(self._changed.wait())
                    stopper = asyncio.ensure_future(stop.wait())
                    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    stopper.cancel()
                    if stop.is_set():
                        break
                    self._changed.clear()
                    try:
                        await self.reconcile(self._informer.values())
                        delay = 0.2
                    except SpireError as exc:
                        _log.warning("reconcile failed: %s; retrying in %.1fs", exc, delay)
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 5.0)
                        self._changed.set()
            finally:
                with contextlib.suppress(Exception):
                    await self._informer.stop()


async def run(config_path: str) -> None:
    pod = PodContext.from_environment()
    config = RegistrarConfig.parse(await pod.read_file(config_path), config_path)
    await Registrar(config, pod).run(stop_event())


def main(argv: list[str] | None = None) -> int:
    return run_program(list(sys.argv[1:] if argv is None else argv), "/run/spire/config/k8s-workload-registrar.conf",
                       run)


if __name__ == "__main__":
    sys.exit(main())
