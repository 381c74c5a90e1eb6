"""``spire-agent``: the program behind SPIRE's agent image, one per node (its DaemonSet).

Usage (the image's entrypoint is ``spire-agent run``; a container's args are its flags)::

    python -m labkit.emulator.spire.agent [run] -config /run/spire/config/agent.conf

1. **Node attestation** (``k8s_psat``): the agent sends its projected service-account token (audience
   ``spire-server``) to the server's node API over TLS, trusting the server by the bundle the server's ``k8sbundle``
   notifier published (``trust_bundle_path``, a ConfigMap volume) — or by nothing the first time with
   ``insecure_bootstrap``. It receives its agent SVID ``spiffe://<td>/spire/agent/k8s_psat/<cluster>/<node uid>``.
2. **Sync**, every second (SPIRE: every 5 s), over mutual TLS with that SVID: the entries the agent may issue and
   the bundles they need; a key and CSR for each entry without a current SVID, signed by the server.
3. **Workload API and SDS** per pod (:mod:`.workloadapi`). Workload attestation (the ``k8s`` attestor) needs to
   know who calls; the agent watches the pods of its node through the API server and gives every pod that mounts
   the SPIFFE CSI driver's volume (``csi.spiffe.io``, as Istio's ``spire`` injection template does) a socket of its
   own, in that pod's folder at the volume's ``mountPath``. The socket a call arrives on is the pod: its selectors
   (``k8s:ns``, ``k8s:sa``, ``k8s:pod-uid``, ``k8s:pod-name``, ``k8s:node-name``, ``k8s:pod-label``) pick the entries
   whose selectors they include. Sockets are placed as soon as the pod is bound to the node, before its containers
   start, as the CSI driver's mount is; the same socket answers under ``/var/run`` and ``/run``, which a container
   sees as one directory. The agent's own ``socket_path`` is therefore not served: on a real node it is the
   directory the CSI driver shares, here each pod's socket stands in for it.

RBAC: besides ``get`` on pods and nodes, the agent needs ``list``/``watch`` on pods (it learns of them from the API
server, where a real agent asks its kubelet) and ``get`` on ConfigMaps in its namespace (its config and the trust
bundle, which the embedded node does not mount).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import ssl
import sys
from dataclasses import dataclass
from typing import Any

import aiohttp

from labkit.emulator.mesh.kubeclient import Informer
from labkit.emulator.node.programs.curl_shim import resolve
from labkit.emulator.spire import health
from labkit.emulator.spire.config import AgentConfig
from labkit.emulator.spire.entries import Entry, Selector
from labkit.emulator.spire.pods import PodContext
from labkit.emulator.spire.programs import run_program, stop_event
from labkit.emulator.spire.workloadapi import Svid, WorkloadEndpoint, WorkloadView
from labkit.errors import KubeApiError, PkiError, SpireError
from labkit.pki import Credential, TrustBundle, describe, new_request
from labkit.pki.federating import client_context

_log = logging.getLogger("spire-agent")

SYNC_INTERVAL = 1.0
RESOLVE_TTL = 30.0  # seconds a resolved server address is reused
CSI_DRIVER = "csi.spiffe.io"
SOCKET_NAME = "socket"


@dataclass(frozen=True)
class Issued:
    """An SVID the agent holds for an entry, with what it was issued for."""

    entry: Entry
    svid: Svid
    renew_at: dt.datetime


def pod_selectors(pod: dict[str, Any]) -> set[Selector]:
    """What the ``k8s`` workload attestor says about a pod."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    values = [f"ns:{meta.get('namespace', '')}", f"sa:{spec.get('serviceAccountName') or 'default'}",
              f"pod-uid:{meta.get('uid', '')}", f"pod-name:{meta.get('name', '')}",
              f"node-name:{spec.get('nodeName', '')}"]
    values += [f"pod-label:{key}:{value}" for key, value in (meta.get("labels") or {}).items()]
    values += [f"container-name:{c.get('name')}" for c in spec.get("containers") or []]
    return {Selector("k8s", value) for value in values}


def socket_mounts(pod: dict[str, Any]) -> list[str]:
    """The container paths of the pod's SPIFFE CSI volume (the agent's socket directory), de-duplicated."""
    spec = pod.get("spec") or {}
    csi = {v.get("name") for v in spec.get("volumes") or [] if (v.get("csi") or {}).get("driver") == CSI_DRIVER}
    paths = {str(m.get("mountPath", "")).rstrip("/") for c in spec.get("containers") or []
             for m in c.get("volumeMounts") or [] if m.get("name") in csi}
    twins = set()
    for path in paths:  # /var/run is /run in a container
        if path.startswith("/var/run/"):
            twins.add(path.removeprefix("/var"))
        elif path.startswith("/run/"):
            twins.add("/var" + path)
    return sorted(p for p in paths | twins if p)


class SpireAgent:
    """One node's agent.

    Args:
        config: its ``agent.conf``.
        pod: the pod it runs in.
        node_name: the node it serves.
    """

    def __init__(self, config: AgentConfig, pod: PodContext, node_name: str):
        self.config = config
        self.pod = pod
        self.node_name = node_name
        self.svid: Credential | None = None
        self.agent_id = ""
        # k8s_psat agents attest again to renew their own SVID (at half-life), as SPIRE's do.
        self.reattest_at: dt.datetime | None = None
        self.bundle: TrustBundle | None = None
        self.bundles: dict[str, TrustBundle] = {}
        self.entries: list[Entry] = []
        self.issued: dict[str, Issued] = {}
        self.endpoints: dict[str, tuple[WorkloadEndpoint, ...]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self._changed = asyncio.Event()
        self._informer: Informer | None = None
        self._client: Any = None
        self._resolved: tuple[str, float] | None = None
        self._context: tuple[tuple[TrustBundle, Credential], ssl.SSLContext] | None = None

    # ---- the server ---------------------------------------------------------------------------------------------

    def _server_url(self) -> str:
        """``https://<server address>:<port>``, the name resolved through the pod's DNS (kept for 30 s)."""
        now = asyncio.get_running_loop().time()
        if self._resolved is not None and now - self._resolved[1] < RESOLVE_TTL:
            return self._resolved[0]
        host = self.config.server_address
        if not all(part.isdigit() for part in host.split(".")):
            server = os.environ.get("LABKIT_DNS_SERVER", "")
            if server:
                ip, _, port = server.rpartition(":")
                search = os.environ.get("LABKIT_DNS_SEARCH", "").split()
                found = resolve(host, (ip, int(port)), search, os.environ.get("POD_IP", ""))
                if not found:
                    raise SpireError(f"could not resolve server address {host!r} through the cluster DNS")
                host = found[0]
        url = f"https://{host}:{self.config.server_port}"
        self._resolved = (url, now)
        return url

    async def _post(self, path: str, body: dict[str, Any], context: ssl.SSLContext) -> dict[str, Any]:
        connector = aiohttp.TCPConnector(ssl=context, force_close=True)
        try:
            async with aiohttp.ClientSession(connector=connector) as session, \
                    session.post(self._server_url() + path, json=body,
                                 timeout=aiohttp.ClientTimeout(total=10)) as response:
                data = await response.json(content_type=None)
                if response.status >= 400:
                    raise SpireError(str((data or {}).get("error", f"status {response.status}")))
                return data
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise SpireError(f"could not reach the server at {self.config.server_address}:"
                             f"{self.config.server_port}: {type(exc).__name__}: {exc}") from exc

    async def _bootstrap_context(self) -> ssl.SSLContext:
        if self.config.trust_bundle_path:
            pem = await self.pod.read_file(self.config.trust_bundle_path)
            return client_context(TrustBundle.from_pem(self.config.trust_domain, pem))
        if not self.config.insecure_bootstrap:
            raise SpireError("agent.conf: set trust_bundle_path (the spire-bundle ConfigMap) or insecure_bootstrap.")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # insecure_bootstrap: the first contact trusts the server blindly
        return context

    async def attest(self) -> None:
        """Node attestation with the projected token; keeps the agent SVID and the trust bundle."""
        token = self.pod.path(self.config.token_path).read_text().strip()
        key_pem, csr = new_request(f"spiffe://{self.config.trust_domain}/spire/agent")
        answer = await self._post("/agent/attest", {"token": token, "pod": self.pod.name,
                                                    "cluster": self.config.cluster, "csr": csr},
                                  await self._bootstrap_context())
        chain = answer["svid"]
        certs = chain.split("-----END CERTIFICATE-----\n")
        self.svid = Credential(certs[0] + "-----END CERTIFICATE-----\n", key_pem, "".join(
            c + "-----END CERTIFICATE-----\n" for c in certs[1:] if c.strip()))
        self.agent_id = answer["agent_id"]
        self.bundle = TrustBundle.from_json(self.config.trust_domain, answer["bundle"])
        now = dt.datetime.now(dt.UTC)
        self.reattest_at = now + (describe(chain)[0].not_after - now) / 2
        _log.info("Node attestation was successful: spiffe_id=%s", self.agent_id)

    async def sync(self) -> None:
        """One sync: entries and bundles, then SVIDs for the entries that need one."""
        assert self.svid is not None and self.bundle is not None
        key = (self.bundle, self.svid)
        if self._context is None or self._context[0] != key:
            self._context = (key, client_context(self.bundle, self.svid))  # ssl loads keys from files: once
        context = self._context[1]
        answer = await self._post("/agent/sync", {"csrs": {}}, context)
        self._absorb(answer)
        now = dt.datetime.now(dt.UTC)
        keys: dict[str, str] = {}
        csrs: dict[str, str] = {}
        for entry in self.entries:
            if entry.node:
                continue
            held = self.issued.get(entry.entry_id)
            if held is None or held.entry != entry or held.renew_at <= now:
                keys[entry.entry_id], csrs[entry.entry_id] = new_request(entry.spiffe_id)
        if csrs:
            answer = await self._post("/agent/sync", {"csrs": csrs}, context)
            self._absorb(answer)
            entries = {e.entry_id: e for e in self.entries}
            for entry_id, chain in (answer.get("svids") or {}).items():
                entry = entries.get(entry_id)
                if entry is None:
                    continue
                leaf = describe(chain)[0]
                half = leaf.not_after - (leaf.not_after - now) / 2
                svid = Svid(entry.spiffe_id, chain, keys[entry_id], entry.federates_with)
                self.issued[entry_id] = Issued(entry, svid, half)
                _log.info("Creating X509-SVID: spiffe_id=%s entry_id=%s", entry.spiffe_id, entry_id)
        for entry_id in set(self.issued) - {e.entry_id for e in self.entries}:
            _log.info("Entry removed, SVID dropped: entry_id=%s", entry_id)
            del self.issued[entry_id]

    def _absorb(self, answer: dict[str, Any]) -> None:
        self.entries = [Entry.from_dict(e) for e in answer.get("entries") or []]
        bundles: dict[str, TrustBundle] = {}
        for domain, text in (answer.get("bundles") or {}).items():
            try:
                bundles[domain] = TrustBundle.from_json(domain, text)
            except PkiError as exc:
                _log.warning("ignoring the bundle of %s: %s", domain, exc)
        if self.config.trust_domain in bundles:
            self.bundle = bundles[self.config.trust_domain]
        self.bundles = bundles

    # ---- workloads ----------------------------------------------------------------------------------------------

    def view_for(self, pod: dict[str, Any]) -> WorkloadView | None:
        """What a pod may see: the SVIDs of the entries its selectors match, and the bundles they federate with."""
        if self.bundle is None:
            return None
        selectors = pod_selectors(pod)
        held = [issued for issued in self.issued.values()
                if issued.entry.selectors and set(issued.entry.selectors) <= selectors]
        held.sort(key=lambda issued: issued.entry.sort_key())
        domains = sorted({d for issued in held for d in issued.entry.federates_with})
        federated = tuple(self.bundles[d] for d in domains if d in self.bundles and d != self.bundle.trust_domain)
        return WorkloadView(tuple(issued.svid for issued in held), self.bundle, federated)

    def _on_pods(self) -> None:
        assert self._informer is not None
        self.pods = {str((p.get("metadata") or {}).get("uid")): p for p in self._informer.values()
                     if (p.get("spec") or {}).get("nodeName") == self.node_name and socket_mounts(p)
                     and not (p.get("metadata") or {}).get("deletionTimestamp")}
        self._changed.set()

    async def reconcile(self) -> None:
        """Sockets for the pods that mount the CSI volume, none for the others; every view brought up to date."""
        for uid in set(self.endpoints) - set(self.pods):
            for endpoint in self.endpoints.pop(uid):
                await endpoint.stop()
        for uid, pod in self.pods.items():
            if uid not in self.endpoints:
                meta = pod.get("metadata") or {}
                folder = self.pod.pod_folder(str(meta.get("namespace")), str(meta.get("name")), uid)
                endpoints = []
                for mount in socket_mounts(pod):
                    endpoint = WorkloadEndpoint(folder / mount.lstrip("/") / SOCKET_NAME,
                                                f"{meta.get('namespace')}/{meta.get('name')}")
                    try:
                        await endpoint.start()
                    except (OSError, RuntimeError) as exc:
                        _log.warning("could not serve the Workload API to pod %s: %s", endpoint.describe, exc)
                        continue
                    endpoints.append(endpoint)
                self.endpoints[uid] = tuple(endpoints)
            for endpoint in self.endpoints[uid]:
                await endpoint.update(self.view_for(pod))

    async def run(self, stop: asyncio.Event) -> None:
        checks = None
        if self.config.health_checks is not None:
            checks = await health.serve(self.config.health_checks, lambda: self.svid is not None)
        try:
            await self._run(stop)
        finally:
            if checks is not None:
                await checks.cleanup()

    async def _run(self, stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                await self.attest()
                break
            except (SpireError, OSError, PkiError, KubeApiError) as exc:
                _log.warning("Agent failed to attest: %s; retrying in %.1fs", exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 5.0)
        if stop.is_set():
            return
        self._client = self.pod.client()
        self._informer = Informer(self._client, "/api/v1/pods", self._on_pods, "pods")
        self._informer.start()
        last_sync = 0.0
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                if loop.time() - last_sync >= SYNC_INTERVAL:
                    try:
                        if self.reattest_at is not None and dt.datetime.now(dt.UTC) >= self.reattest_at:
                            await self.attest()
                        await self.sync()
                    except (SpireError, PkiError, OSError, KubeApiError) as exc:
                        _log.warning("Agent sync failed: %s", exc)
                        if "not attested" in str(exc):  # the server forgot this agent: attest again
                            self.reattest_at = dt.datetime.now(dt.UTC)
                    last_sync = loop.time()
                self._changed.clear()
                await self.reconcile()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), SYNC_INTERVAL)
        finally:
            await self._informer.stop()
            await self._client.close()
            for endpoints in self.endpoints.values():
                for endpoint in endpoints:
                    await endpoint.stop()


async def _node_name(pod: PodContext) -> str:
    for variable in ("MY_NODE_NAME", "NODE_NAME"):
        if os.environ.get(variable):
            return os.environ[variable]
    async with pod.client() as client:
        found = await client.get(f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}") or {}
    return str((found.get("spec") or {}).get("nodeName", ""))


async def run(config_path: str) -> None:
    pod = PodContext.from_environment()
    config = AgentConfig.parse(await pod.read_file(config_path), config_path)
    agent = SpireAgent(config, pod, await _node_name(pod))
    stop = stop_event()
    _log.info("Starting agent: trust_domain=%s node=%s", config.trust_domain, agent.node_name)
    await agent.run(stop)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    return run_program(args[1:] if args[:1] == ["run"] else args, "/run/spire/config/agent.conf", run)


if __name__ == "__main__":
    sys.exit(main())

