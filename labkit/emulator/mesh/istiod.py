"""istiod for the embedded clusters: the program behind the ``pilot`` image.

It runs as the ``discovery`` container of the ``istiod`` pod and does what istiod does, through the same
doors:

- it reads its own cluster with its service account's token, and every cluster named by a remote secret
  (``istio/multiCluster: "true"`` Secrets in istio-system) with that secret's kubeconfig — so a wrong
  server address or a revoked token really fails, shows as ``timeout`` in ``/debug/clusterz`` (what
  ``istioctl remote-clusters`` reads) and takes that cluster's endpoints out of the mesh;
- it signs workload certificates with the plugged-in ``cacerts`` or its self-signed ``istio-ca-secret``;
- it serves the sidecar-injection webhook and the ``validation.istio.io`` webhook on 15017 (HTTPS,
  certificate from the mesh CA), and switches the validating webhook to fail-closed once it answers;
- it serves the mesh over gRPC (:mod:`.serving`): ADS and the CA service on 15012 (TLS, callers
  authenticated by a TokenReview of their projected ``istio-ca`` token against their own cluster — its own,
  or one named by a remote secret) and 15010 (plaintext). Every proxy's agent gets its workload certificate by
  CSR and forwards its Envoy's ADS stream here; each proxy gets CDS, EDS, LDS and RDS built for it, and the
  DNS proxy's name table (NDS) when it captures DNS. Envoy's ACK or NACK comes back on the stream, which
  ``/debug/syncz`` reports (as ``istioctl proxy-status`` shows);
- it writes the mesh root into an ``istio-ca-root-cert`` ConfigMap in every namespace, where agents read it to
  verify istiod; with ``EXTERNAL_ISTIOD`` (a primary serving remote clusters) also in every namespace of each
  remote cluster it is the control plane of, and into that cluster's injection webhook's ``caBundle``, through
  the remote secret. A remote's injection path (``/inject/cluster/<c>/net/<n>``) names the cluster and network
  of the proxies it injects.

Scale it to 0 and proxies keep their last configuration but learn nothing new — as with a real istiod.
Run: ``python -m labkit.emulator.mesh.istiod discovery …`` (container args) or
``python -m labkit.emulator.mesh.istiod request GET /debug/clusterz`` (what ``pilot-discovery request``
prints, for ``kubectl exec``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import signal
import ssl
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from labkit.core.contract import ISTIOD_CA_PROBLEM as CA_PROBLEM
from labkit.core.wire import Obj
from labkit.emulator.envoy.bootstrap import APP_ADDRESS_METADATA
from labkit.emulator.envoy.protocol import CLUSTER, NAME_TABLE
from labkit.emulator.mesh import ca as mesh_ca
from labkit.emulator.mesh.discovery import ClusterView, build_snapshot, parse_mesh_config, proxy_of
from labkit.emulator.mesh.generating import ConfigGenerator
from labkit.emulator.mesh.injection import sidecar_patch
from labkit.emulator.mesh.kubeclient import Credentials, Informer, KubeClient
from labkit.emulator.mesh.model import MONITORING_PORT, WEBHOOK_PORT, MeshConfig, MeshSnapshot, Proxy
from labkit.emulator.mesh.serving import AuthenticationError, Caller, Control, XdsServer
from labkit.emulator.mesh.validating import WEBHOOK_CONFIGURATIONS, Screen, WebhookArming, review
from labkit.emulator.mesh.xds.ads import ads_resources
from labkit.emulator.mesh.xds.nametable import build_name_table, dns_capture, to_wire
from labkit.errors import KubeApiError
from labkit.pki import request_identities

_log = logging.getLogger("istiod")

ROOT = "istio-system"
REMOTE_SECRET_LABEL = "istio/multiCluster"
READY_PORT = 8080
CORE_RESOURCES = {
    "namespaces": "/api/v1/namespaces",
    "services": "/api/v1/services",
    "endpoints": "/api/v1/endpoints",
    "pods": "/api/v1/pods",
    "nodes": "/api/v1/nodes",
}
CONFIG_RESOURCES = {
    "virtualservices": "/apis/networking.istio.io/v1/virtualservices",
    "destinationrules": "/apis/networking.istio.io/v1/destinationrules",
    "gateways": "/apis/networking.istio.io/v1/gateways",
    "serviceentries": "/apis/networking.istio.io/v1/serviceentries",
    "sidecars": "/apis/networking.istio.io/v1/sidecars",
    "workloadentries": "/apis/networking.istio.io/v1/workloadentries",
    "peerauthentications": "/apis/security.istio.io/v1/peerauthentications",
    "authorizationpolicies": "/apis/security.istio.io/v1/authorizationpolicies",
}
# A remote cluster whose informers have not synced (or keep failing) this long is reported as timed out.
SYNC_TIMEOUT = 10.0
# The audience of the projected token a proxy presents to istiod (istio-agent's default).
TOKEN_AUDIENCE = "istio-ca"
ROOT_CERT_CONFIGMAP = "istio-ca-root-cert"
CONTROL_PLANE_CLUSTERS = "topology.istio.io/controlPlaneClusters"
INJECTOR_WEBHOOK = "istio-sidecar-injector"
MUTATING_WEBHOOK_CONFIGURATIONS = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
# Namespaces Istio's namespace controller leaves alone.
IGNORED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "local-path-storage"})
PROBE_PERIOD = 3.0


@dataclass
class WatchedCluster:
    """Informers over one cluster's core resources."""

    name: str
    client: KubeClient
    informers: dict[str, Informer] = field(default_factory=dict)
    secret_name: str = ""
    started: float = field(default_factory=time.monotonic)
    probe_error: str | None = None
    _probe: asyncio.Task[None] | None = None

    def start(self, on_change: Any) -> None:
        for resource, path in CORE_RESOURCES.items():
            self.informers[resource] = Informer(self.client, path, on_change, f"{self.name}/{resource}")
            self.informers[resource].start()

    def start_probe(self, on_change: Any) -> None:
        """Check the credentials periodically: an open watch survives a revoked token, a new request does not."""
        async def probe() -> None:
            while True:
                before = self.probe_error
                try:
                    await self.client.request("GET", "/api/v1/namespaces/kube-system")
                    self.probe_error = None
                except KubeApiError as exc:
                    self.probe_error = exc.message
                if before != self.probe_error:
                    on_change()
                await asyncio.sleep(PROBE_PERIOD)
        self._probe = asyncio.create_task(probe(), name=f"probe {self.name}")

    async def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        for informer in self.informers.values():
            await informer.stop()
        await self.client.close()

    @property
    def status(self) -> str:
        """``synced``, ``syncing`` or ``timeout`` (istioctl remote-clusters' words)."""
        if self.probe_error:
            return "timeout"
        if all(i.synced.is_set() for i in self.informers.values()):
            return "synced"
        return "timeout" if time.monotonic() - self.started > SYNC_TIMEOUT else "syncing"

    def view(self) -> ClusterView:
        return ClusterView(self.name, *(self.informers[r].values() for r in CORE_RESOURCES))


class Istiod:
    """One control plane.

    Args:
        cluster_id: ``CLUSTER_ID`` (``values.global.multiCluster.clusterName``).
        credentials: its own API server and service-account token.
        pod_ip: where it serves gRPC, the webhook, debug and readiness endpoints.
    """

    def __init__(self, cluster_id: str, credentials: Credentials, pod_ip: str):
        self.cluster_id = cluster_id
        self.pod_ip = pod_ip
        self.local = WatchedCluster(cluster_id, KubeClient(credentials))
        self.remotes: dict[str, WatchedCluster] = {}
        self.config_informers: dict[str, Informer] = {}
        self.certificates = mesh_ca.CurrentCa()
        self.generator = ConfigGenerator()
        # (cluster, namespace) → the root written into its istio-ca-root-cert (and (cluster, "webhook/…") → the root
        # patched into a remote injection webhook's caBundle).
        self._root_certs: dict[tuple[str, str], str] = {}
        self.snapshot: MeshSnapshot | None = None
        self.mesh = MeshConfig()
        self.values: Obj = {}
        self._dirty = asyncio.Event()
        self._ready = False
        self._version = 0
        self._runners: list[web.AppRunner] = []
        self._ca_problem: str | None = None
        self._ca_changed = False
        self._tls_context: ssl.SSLContext | None = None
        self._screen = Screen()
        self._arm_wanted = asyncio.Event()
        self.proxies: dict[str, Proxy] = {}
        self._ads_cache: dict[str, tuple[MeshSnapshot, Any]] = {}
        self.xds = XdsServer(Control(self._authenticate, self._ads_resources, self._sign), lambda: str(self._version))

    # --- lifecycle ------------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self.local.start(self._changed)
        self._secrets = Informer(self.local.client, f"/api/v1/namespaces/{ROOT}/secrets", self._changed,
                                 "secrets")
        self._configmaps = Informer(self.local.client, f"/api/v1/namespaces/{ROOT}/configmaps", self._changed,
                                    "configmaps")
        self._secrets.start()
        self._configmaps.start()
        self._webhook_configurations = Informer(self.local.client, WEBHOOK_CONFIGURATIONS, self._arm_wanted.set,
                                                "validatingwebhookconfigurations")
        self._webhook_configurations.start()
        self._arming = WebhookArming(self.local.client, ROOT, self._webhook_configurations)
        for resource, path in CONFIG_RESOURCES.items():
            self.config_informers[resource] = Informer(self.local.client, path, self._changed, resource)
            self.config_informers[resource].start()
        await asyncio.wait_for(asyncio.gather(*(i.synced.wait() for i in self.local.informers.values()),
                                              self._secrets.synced.wait(), self._configmaps.synced.wait()), 60)
        await self._ensure_ca()
        await self._serve()
        pusher = asyncio.create_task(self._push_loop(), name="push")
        arming = asyncio.create_task(self._arming_loop(), name="arm validation")
        self._ready = True
        _log.info("istiod %s ready", self.cluster_id)
        try:
            await stop.wait()
        finally:
            for task in (pusher, arming):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for runner in self._runners:
                await runner.cleanup()
            await self.xds.stop()
            for remote in list(self.remotes.values()):
                await remote.stop()
            for informer in [*self.config_informers.values(), self._secrets, self._configmaps,
                             self._webhook_configurations]:
                await informer.stop()
            await self.local.stop()

    def _changed(self) -> None:
        self._dirty.set()

    # --- CA -------------------------------------------------------------------------------------------------------

    def _secret(self, name: str) -> Obj | None:
        return self._secrets.items.get((ROOT, name))

    async def _ensure_ca(self) -> None:
        if self._secret(mesh_ca.CACERTS) is None and self._secret(mesh_ca.SELF_SIGNED) is None:
            _log.info("no cacerts secret: creating the self-signed %s", mesh_ca.SELF_SIGNED)
            with contextlib.suppress(KubeApiError):  # another istiod may have won the race: fine
                await self.local.client.request("POST", f"/api/v1/namespaces/{ROOT}/secrets",
                                                body=mesh_ca.new_self_signed_secret(ROOT))
            await self._wait_for(lambda: self._secret(mesh_ca.SELF_SIGNED) is not None, 10)
        self._load_ca()

    def _load_ca(self) -> None:
        try:
            loaded = mesh_ca.load_ca(self._secret(mesh_ca.CACERTS), self._secret(mesh_ca.SELF_SIGNED))
        except Exception as exc:  # labkit.errors.PkiError and friends: report and keep the previous CA
            if self._ca_problem != str(exc):
                # Without a CA istiod cannot sign, so it stays not Ready (as a real istiod with a broken cacerts
                # never becomes Ready); the log line names the file, and labkit.istio.install quotes it.
                _log.error("%s %s", CA_PROBLEM, exc)
            self._ca_problem = str(exc)
            return
        self._ca_problem = None
        if self.certificates.set_ca(loaded) and loaded is not None:
            _log.info("signing workload certificates with %s", loaded.source)
            self._ca_changed = True

    async def _wait_for(self, check: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    # --- remote clusters ------------------------------------------------------------------------------------------

    async def _sync_remotes(self) -> None:
        wanted: dict[str, tuple[str, str]] = {}
        for (namespace, name), secret in self._secrets.items.items():
            if (secret["metadata"].get("labels") or {}).get(REMOTE_SECRET_LABEL) != "true":
                continue
            for cluster, encoded in (secret.get("data") or {}).items():
                if cluster != self.cluster_id:  # a secret naming our own cluster is ignored, as istiod does
                    wanted[cluster] = (f"{namespace}/{name}", base64.b64decode(encoded).decode(errors="replace"))
        for cluster in [c for c in self.remotes if c not in wanted]:
            _log.info("remote cluster %s removed", cluster)
            await self.remotes.pop(cluster).stop()
        for cluster, (secret_name, kubeconfig) in wanted.items():
            current = self.remotes.get(cluster)
            if current is not None and current.secret_name == secret_name and \
                    current.client.credentials == _credentials_or_none(kubeconfig):
                continue
            if current is not None:
                await self.remotes.pop(cluster).stop()
            credentials = _credentials_or_none(kubeconfig)
            if credentials is None:
                _log.error("remote secret %s: the kubeconfig for %s cannot be read", secret_name, cluster)
                credentials = Credentials("https://invalid.invalid", "", "")
            remote = WatchedCluster(cluster, KubeClient(credentials), secret_name=secret_name)
            _log.info("remote cluster %s added from %s (%s)", cluster, secret_name, credentials.server)
            remote.start(self._changed)
            remote.start_probe(self._changed)
            self.remotes[cluster] = remote

    def cluster_status(self) -> list[Obj]:
        """``/debug/clusterz``: every cluster this istiod reads and whether it is synced."""
        rows = [{"ID": self.cluster_id, "SecretName": "", "SyncStatus": self.local.status}]
        rows += [{"ID": name, "SecretName": remote.secret_name, "SyncStatus": remote.status}
                 for name, remote in sorted(self.remotes.items())]
        return rows

    # --- pushing --------------------------------------------------------------------------------------------------

    async def _push_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(0.05)  # debounce: a rollout changes many objects at once
            self._dirty.clear()
            try:
                await self._sync_remotes()
                self._load_ca()
                if self._ca_changed:
                    self._ca_changed = False
                    await self._reissue_serving_certificate()
                await self.push()
                await self._publish_root_cert()
            except Exception:
                _log.exception("push failed")

    async def _arming_loop(self) -> None:
        """Keep ``validation.istio.io`` fail-closed, apart from pushes: waiting for the webhook to answer (istiod's
        own pod must be Ready first) retries with backoff and never costs a push."""
        delay = 1.0
        self._arm_wanted.set()
        while True:
            await self._arm_wanted.wait()
            self._arm_wanted.clear()
            ca = self.certificates.ca
            try:
                done = await self._arming.reconcile(ca.root_pem if ca else "")
            except Exception:
                _log.exception("updating the validating webhook failed")
                done = False
            if done:
                delay = 1.0
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
            self._arm_wanted.set()

    def _configmap(self, name: str) -> Obj:
        return self._configmaps.items.get((ROOT, name)) or {}

    async def push(self) -> None:
        """Rebuild the snapshot and publish every proxy's configuration."""
        self.values = json.loads((self._configmap("istio-sidecar-injector").get("data") or {}).get("values") or "{}")
        self.mesh = parse_mesh_config((self._configmap("istio").get("data") or {}).get("mesh"))
        network = ((self.values.get("global") or {}).get("network")) or ""
        local = self.local.view()
        views = [local] + [r.view() for _, r in sorted(self.remotes.items()) if r.status == "synced"]
        for resource, informer in self.config_informers.items():
            kind = _KINDS[resource]
            api_version = CONFIG_RESOURCES[resource].removeprefix("/apis/").rpartition("/")[0]
            for obj in informer.values():
                obj.setdefault("kind", kind)
                obj.setdefault("apiVersion", api_version)
        configs = self._screen.admit([obj for informer in self.config_informers.values() for obj in informer.values()])
        self._version += 1
        self.snapshot = self.generator.screen(build_snapshot(views, self.mesh, configs, local_network=network,
                                                             version=str(self._version)))
        proxies: dict[str, Proxy] = {}
        # Remote clusters' proxies too: in a primary-remote mesh their agents dial this istiod (through the
        # east-west gateway); in a multi-primary one they never do, and cost nothing but this entry.
        for view in views:
            nodes = {n["metadata"]["name"]: n for n in view.nodes}
            view_network = view.network(network) if view is local else view.network("")
            for pod in view.pods:
                if (pod.get("metadata") or {}).get("deletionTimestamp"):
                    continue
                proxy = proxy_of(pod, view.name, view_network, self.mesh.trust_domain, nodes)
                if proxy is not None:
                    proxies[proxy.id] = proxy
        self.proxies = proxies
        self.generator.forget(set(proxies))
        self._ads_cache = {key: value for key, value in self._ads_cache.items() if key in proxies}
        self.xds.push()

    async def _publish_root_cert(self) -> None:
        """Istio's namespace controller: the mesh root in an ``istio-ca-root-cert`` ConfigMap in every namespace of
        its own cluster, and, with ``EXTERNAL_ISTIOD``, of every remote cluster it is the control plane of (through
        that cluster's remote secret), together with the caBundle of each such cluster's injection webhook (its own
        included: a plugged-in ``cacerts`` changes the root its serving certificate chains to)."""
        ca = self.certificates.ca
        if ca is None:
            return
        clusters = [self.local]
        if os.environ.get("EXTERNAL_ISTIOD", "").lower() == "true":
            clusters += [r for _, r in sorted(self.remotes.items()) if r.status == "synced" and self._controls(r)]
        for cluster in clusters:
            await self._write_root_certs(cluster, ca.root_pem)
            await self._patch_injector_bundle(cluster, ca.root_pem)

    def _controls(self, cluster: WatchedCluster) -> bool:
        """Whether this istiod is a control plane of ``cluster``: its ``istio-system`` names us (or ``*``) in
        ``topology.istio.io/controlPlaneClusters``, or names no control plane at all."""
        for namespace in cluster.informers["namespaces"].values():
            if namespace["metadata"]["name"] == ROOT:
                named = ((namespace["metadata"].get("annotations") or {}).get(CONTROL_PLANE_CLUSTERS) or "").strip()
                return not named or bool({"*", self.cluster_id} & {c.strip() for c in named.split(",")})
        return False

    async def _write_root_certs(self, cluster: WatchedCluster, root_pem: str) -> None:
        for namespace in cluster.informers["namespaces"].values():
            name = namespace["metadata"]["name"]
            key = (cluster.name, f"{name}/{namespace['metadata'].get('uid', '')}")
            if name in IGNORED_NAMESPACES or namespace["metadata"].get("deletionTimestamp") or \
                    self._root_certs.get(key) == root_pem:
                continue
            body = {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": ROOT_CERT_CONFIGMAP, "namespace": name, "labels": {"istio.io/config": "true"}},
                    "data": {"root-cert.pem": root_pem}}
            path = f"/api/v1/namespaces/{name}/configmaps"
            try:
                try:
                    await cluster.client.request("POST", path, body=body)
                except KubeApiError as exc:
                    if exc.code != 409:
                        raise
                    await cluster.client.request("PUT", f"{path}/{ROOT_CERT_CONFIGMAP}", body=body)
            except KubeApiError as exc:
                _log.warning("cannot write %s in %s/%s: %s", ROOT_CERT_CONFIGMAP, cluster.name, name, exc.message)
                continue
            self._root_certs[key] = root_pem

    async def _patch_injector_bundle(self, cluster: WatchedCluster, root_pem: str) -> None:
        """Istio's webhook cert patcher: the cluster's API server must trust this istiod's certificate when it calls
        the injection webhook (directly, or for a remote cluster through the east-west gateway)."""
        key = (cluster.name, f"webhook/{INJECTOR_WEBHOOK}")
        if self._root_certs.get(key) == root_pem:
            return
        path = f"{MUTATING_WEBHOOK_CONFIGURATIONS}/{INJECTOR_WEBHOOK}"
        bundle = base64.b64encode(root_pem.encode()).decode()
        try:
            live = await cluster.client.request("GET", path)
            hooks = live.get("webhooks") or []
            if any((h.get("clientConfig") or {}).get("caBundle") != bundle for h in hooks):
                for hook in hooks:
                    hook.setdefault("clientConfig", {})["caBundle"] = bundle
                await cluster.client.request("PUT", path, body=live)
                _log.info("patched the caBundle of %s in %s", INJECTOR_WEBHOOK, cluster.name)
        except KubeApiError as exc:
            _log.warning("cannot patch %s in %s: %s", INJECTOR_WEBHOOK, cluster.name, exc.message)
            return
        self._root_certs[key] = root_pem

    # --- gRPC: ADS and the CA service (see labkit.emulator.mesh.serving) ------------------------------------------

    async def _authenticate(self, token: str, cluster: str) -> Caller:
        """Istio's Kubernetes JWT authenticator: a TokenReview against the caller's own cluster."""
        cluster = cluster or self.cluster_id
        watched = self.local if cluster in (self.cluster_id, "Kubernetes") else self.remotes.get(cluster)
        if watched is None:
            raise AuthenticationError(
                f'client claims to be in cluster "{cluster}", but we only know about local cluster '
                f'"{self.cluster_id}" and remote clusters {sorted(self.remotes)}')
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                  "spec": {"token": token, "audiences": [TOKEN_AUDIENCE]}}
        try:
            answer = await watched.client.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body=review)
        except KubeApiError as exc:
            raise AuthenticationError(f'failed to validate the JWT from cluster "{cluster}": {exc.message}') from exc
        status = answer.get("status") or {}
        if not status.get("authenticated"):
            raise AuthenticationError(f'failed to validate the JWT from cluster "{cluster}": the token is not '
                                      f'authenticated ({status.get("error") or "invalid"})')
        parts = str((status.get("user") or {}).get("username", "")).split(":")
        if len(parts) != 4 or parts[:2] != ["system", "serviceaccount"]:
            raise AuthenticationError("failed to parse the JWT; service account required")
        return Caller(cluster, parts[2], parts[3])

    def _sign(self, csr: str, caller: Caller, ttl: int) -> list[str]:
        ca = self.certificates.ca
        if ca is None:
            raise RuntimeError("Istio CA is not ready")
        path = f"/ns/{caller.namespace}/sa/{caller.service_account}"
        identity = f"spiffe://{self.mesh.trust_domain}{path}"
        asked = request_identities(csr)
        # The certificate names the authenticated caller in this mesh's trust domain, as Istio's CA does: a gateway
        # installed by an IstioOperator of its own (the east-west gateway's sets no meshConfig) has an agent whose
        # TRUST_DOMAIN is still cluster.local, and it gets its identity all the same. A CSR for another workload is
        # still refused.
        if len(asked) != 1 or not asked[0].startswith("spiffe://") or not asked[0].endswith(path) \
                or "/" in asked[0].removeprefix("spiffe://").removesuffix(path):
            raise AuthenticationError(f"the CSR asks for {asked}, but the caller is {identity}")
        if asked != [identity]:
            _log.info("CSR from %s/%s asks for %s; signing %s", caller.namespace, caller.service_account, asked[0],
                      identity)
        lifetime = dt.timedelta(seconds=ttl) if ttl > 0 else mesh_ca.WORKLOAD_LIFETIME
        leaf = ca.authority.sign_request(csr, identity, validity=lifetime)
        chain = [c for c in ca.authority.cert_chain_pem.split("-----END CERTIFICATE-----") if c.strip()]
        return [leaf, *(c.strip() + "\n-----END CERTIFICATE-----\n" for c in chain)]

    def _ads_resources(self, node_id: str, metadata: Any, types: frozenset[str]) -> Any:
        proxy = self.proxies.get(node_id)
        if proxy is None or self.snapshot is None:
            return None
        # Where the application behind this sidecar listens: the agent says so in its node metadata (a real
        # sidecar's application shares its pod IP; here it has an address of its own, see DESIGN decision 5).
        app_address = str((metadata or {}).get(APP_ADDRESS_METADATA) or "")
        if app_address and app_address != proxy.app_address:
            proxy = dataclasses.replace(proxy, app_address=app_address)
        cached = self._ads_cache.get(node_id)
        if cached is None or cached[0] is not self.snapshot:
            cached = self._ads_cache[node_id] = (self.snapshot, {})
        resources = cached[1]
        if types - {NAME_TABLE} and CLUSTER not in resources:  # the mesh's resources only for a proxy that asks
            config = self.generator.generate(proxy, self.snapshot)
            if config is None:
                return None
            resources.update(ads_resources(config))
        if NAME_TABLE in types and NAME_TABLE not in resources:
            # Istio sends the name table only to agents that answer DNS.
            resources[NAME_TABLE] = {"": to_wire(build_name_table(proxy, self.snapshot))} if dns_capture(proxy) \
                else {}
        return resources

    # --- HTTP: webhook, debug, readiness --------------------------------------------------------------------------

    async def _serve(self) -> None:
        webhook = web.Application()
        webhook.router.add_post("/inject", self._inject)
        webhook.router.add_post("/inject/{tail:.*}", self._inject)
        webhook.router.add_post("/validate", self._validate)
        webhook.router.add_post("/validate/{tail:.*}", self._validate)
        monitoring = web.Application()
        monitoring.router.add_get("/debug/clusterz", self._clusterz)
        monitoring.router.add_get("/debug/syncz", self._syncz)
        monitoring.router.add_get("/debug/configz", self._configz)
        monitoring.router.add_get("/ready", self._readiness)
        readiness = web.Application()
        readiness.router.add_get("/ready", self._readiness)
        monitoring.router.add_get("/debug/connections", self._connections)
        webhook_tls = self._webhook_tls()
        for app, port, tls in ((webhook, WEBHOOK_PORT, webhook_tls), (monitoring, MONITORING_PORT, None),
                               (readiness, READY_PORT, None)):
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, self.pod_ip, port, ssl_context=tls).start()
            self._runners.append(runner)
        await self.xds.start(self.pod_ip, tls=self._serving_credential)

    async def _connections(self, request: web.Request) -> web.Response:
        """The proxies connected over ADS and, per type, what was sent and acknowledged (nonces, versions)."""
        return web.json_response(self.xds.connection_details())

    def _webhook_tls(self) -> ssl.SSLContext | None:
        self._serving_credential: tuple[str, str] | None = None
        self._tls_context: ssl.SSLContext | None = None
        if self.certificates.ca is None:
            return None
        self._tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._issue_serving_certificate()
        self._ca_changed = False  # issued with the CA just loaded
        return self._tls_context

    def _issue_serving_certificate(self) -> None:
        """istiod's own certificate (webhook on 15017, gRPC on 15012) from the mesh CA, under the names it is
        reached by; loaded into the webhook's TLS context, which later handshakes use."""
        ca = self.certificates.ca
        assert ca is not None and self._tls_context is not None
        credential = ca.authority.issue_server(
            "istiod", dns_names=["istiod.istio-system.svc", "istiod.istio-system.svc.cluster.local", "istiod",
                                 "istiod.istio-system"], ip_addresses=[self.pod_ip])
        folder = Path(os.environ.get("LABKIT_SERVICEACCOUNT_DIR", "/tmp")).parent / "istiod-certs"
        folder.mkdir(parents=True, exist_ok=True)
        cert, key = folder / "webhook.crt", folder / "webhook.key"
        cert.write_text(credential.cert_chain_pem)
        key.touch(mode=0o600)
        key.write_text(credential.key_pem)
        self._tls_context.load_cert_chain(cert, key)
        self._serving_credential = (credential.cert_chain_pem, credential.key_pem)

    async def _reissue_serving_certificate(self) -> None:
        """The CA changed (a plugged-in ``cacerts``): a new serving certificate, and the gRPC server restarted with
        it (open streams drop; agents dial again and verify istiod with the new root)."""
        if self._tls_context is None or self.certificates.ca is None:
            return
        _log.info("the CA changed: re-issuing istiod's serving certificate")
        self._issue_serving_certificate()
        await self.xds.stop()
        await self.xds.start(self.pod_ip, tls=self._serving_credential)

    async def _inject(self, request: web.Request) -> web.Response:
        review = await request.json()
        admission = review.get("request") or {}
        pod = admission.get("object") or {}
        if not (pod.get("metadata") or {}).get("namespace"):
            pod.setdefault("metadata", {})["namespace"] = admission.get("namespace", "")
        # ``/inject/cluster/<c>/net/<n>``: the remote install names its own cluster and network in the path, so a
        # sidecar injected for a remote cluster says where it runs (Istio's injection path parameters).
        cluster, network = injection_target(request.match_info.get("tail", ""))
        network = network or (self.values.get("global") or {}).get("network", "")
        cluster = cluster or (self.values.get("global") or {}).get("multiCluster", {}).get("clusterName") or \
            self.cluster_id
        ops = sidecar_patch(pod, cluster=cluster, network=network, mesh=self.mesh, values=self.values)
        response: Obj = {"uid": admission.get("uid", ""), "allowed": True}
        if ops:
            response |= {"patchType": "JSONPatch", "patch": base64.b64encode(json.dumps(ops).encode()).decode()}
            _log.info("injected %s/%s", admission.get("namespace"), (pod.get("metadata") or {}).get("generateName")
                      or (pod.get("metadata") or {}).get("name"))
        return web.json_response({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                  "response": response})

    async def _validate(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return web.Response(status=415, text="invalid Content-Type, want `application/json`")
        try:
            body = await request.json()
        except ValueError as exc:
            return web.Response(status=400, text=f"could not decode body: {exc}")
        return web.json_response(review(body))

    async def _clusterz(self, request: web.Request) -> web.Response:
        return web.json_response(self.cluster_status())

    async def _configz(self, request: web.Request) -> web.Response:
        """The Istio config this istiod is using, and any informer that is failing."""
        configs = [c.key for c in self.snapshot.configs] if self.snapshot else []
        failing = {name: informer.error for name, informer in self.config_informers.items() if informer.error}
        skipped = {**self._screen.rejected, **self.generator.untranslatable_configs()}
        return web.json_response({"configs": configs, "failing": failing, "skipped": skipped})

    async def _syncz(self, request: web.Request) -> web.Response:
        return web.json_response(self.sync_status())

    def sync_status(self) -> list[Obj]:
        """``/debug/syncz``: one row per connected proxy, per type, as ``istioctl proxy-status`` reads it.

        Rows: ``proxy`` (``pod.namespace``), ``cluster_id``, ``istiod``, ``version``, ``types`` (CDS, LDS, EDS, RDS,
        ECDS, NDS → SYNCED, STALE, NOT SENT, ERROR for a NACK, IGNORED when not subscribed) and ``errors``.
        """
        istiod = os.environ.get("POD_NAME", f"istiod.{ROOT}")
        return [{**row, "istiod": istiod} for row in self.xds.sync_status()]

    async def _readiness(self, request: web.Request) -> web.Response:
        if not self._ready:
            return web.Response(status=503, text="not ready")
        if self.certificates.ca is None:
            return web.Response(status=503, text=f"{CA_PROBLEM} {self._ca_problem or 'no CA loaded'}")
        return web.Response(text="ok")


_KINDS = {"virtualservices": "VirtualService", "destinationrules": "DestinationRule", "gateways": "Gateway",
          "serviceentries": "ServiceEntry", "sidecars": "Sidecar", "workloadentries": "WorkloadEntry",
          "peerauthentications": "PeerAuthentication", "authorizationpolicies": "AuthorizationPolicy"}


def injection_target(tail: str) -> tuple[str, str]:
    """The cluster and network named by an injection path's tail (``cluster/cluster2/net/network2``), each ``""``
    when absent.

    Args:
        tail: what follows ``/inject/`` in the webhook's path.
    """
    parts = [p for p in tail.split("/") if p]
    found = {parts[i]: parts[i + 1] for i in range(0, len(parts) - 1, 2)}
    return found.get("cluster", ""), found.get("net", "")


def _credentials_or_none(kubeconfig: str) -> Credentials | None:
    try:
        return Credentials.from_kubeconfig(kubeconfig)
    except (KubeApiError, ValueError, KeyError, TypeError):
        return None


def _request(argv: list[str]) -> int:
    """``pilot-discovery request GET /debug/clusterz``: print what istiod's debug endpoint answers."""
    if len(argv) < 2 or argv[0].upper() != "GET":
        print("usage: pilot-discovery request GET <path>", file=sys.stderr)
        return 2
    path = argv[1] if argv[1].startswith("/") else "/" + argv[1]
    address = os.environ.get("POD_IP") or os.environ.get("INSTANCE_IP") or "127.0.0.1"
    with urllib.request.urlopen(f"http://{address}:{MONITORING_PORT}{path}", timeout=10) as response:
        sys.stdout.write(response.read().decode())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "request":
        return _request(args[1:])
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s\t%(levelname)s\t%(name)s\t%(message)s")
    account = Path(os.environ.get("LABKIT_SERVICEACCOUNT_DIR", "/var/run/secrets/kubernetes.io/serviceaccount"))
    credentials = Credentials.in_cluster(account, os.environ.get("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
                                         os.environ.get("KUBERNETES_SERVICE_PORT", "443"))
    istiod = Istiod(os.environ.get("CLUSTER_ID", "Kubernetes"), credentials,
                    os.environ.get("POD_IP") or os.environ.get("INSTANCE_IP", "127.0.0.1"))

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await istiod.run(stop)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
