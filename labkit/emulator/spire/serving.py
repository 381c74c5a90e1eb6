"""The SPIRE server itself (``spire-server run``): its CA, datastore, APIs and federation.

What it serves, each where SPIRE serves it:

- the **private API** on a Unix socket (``socket_path``, default ``/tmp/spire-server/private/api.sock`` in the
  pod), which the CLI and the registrar use: entries, bundles, health (JSON over HTTP here; gRPC in SPIRE);
- the **node API** on ``bind_port`` (8081), TLS with the server's SVID ``spiffe://<td>/spire/server``: agents attest
  with a projected service-account token (``k8s_psat``: a TokenReview against the cluster, then the agent's pod
  and node read from the API server), then sync their authorized entries and have their CSRs signed over mutual
  TLS with the agent SVID they were given;
- the **bundle endpoint** (``federation.bundle_endpoint``, profile ``https_spiffe``) and, for each
  ``federates_with``, a refresher that fetches the peer's bundle authenticated by the one held for that domain
  (:mod:`.federation`);
- the ``k8sbundle`` notifier: the trust bundle written to a ConfigMap, where agents find it to trust the server.

The CA: an UpstreamAuthority root in cert-manager's style (``O=cert-manager, CN=certmanager-ca``) made once and
kept in ``data_dir``, the server CA (``ca_subject``, ``C=US, O=SPIFFE``) signed by it, X509-SVIDs signed by that
(:mod:`labkit.pki.svids`). The trust bundle holds the upstream root, as SPIRE's does with an UpstreamAuthority.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web

from labkit.emulator.spire import federation, health
from labkit.emulator.spire.config import ServerConfig, bind_host
from labkit.emulator.spire.entries import Datastore, Entry, Selector, trust_domain_name
from labkit.emulator.spire.pods import PodContext
from labkit.emulator.spire.programs import stop_event
from labkit.emulator.spire.sockets import unix_address
from labkit.errors import KubeApiError, PkiError, SpireError
from labkit.pki import CertificateAuthority, Credential, TrustBundle, describe, new_request
from labkit.pki.federating import mutual_server_context, peer_id
from labkit.pki.svids import issue_server_ca, new_jwt_key, new_upstream_root, sign_svid

_log = logging.getLogger("spire-server")

PSAT_AUDIENCE = "spire-server"


class ServerCa:
    """The server's keys and certificates, made once and kept in ``data_dir/keys.json``."""

    def __init__(self, config: ServerConfig, data_dir: Path):
        path = data_dir / "keys.json"
        if path.exists():
            data = json.loads(path.read_text())
        else:
            upstream = new_upstream_root()
            jwt_key, jwk = new_jwt_key()
            data = {"upstream": [upstream.cert_pem, upstream.key_pem], "ca": None, "jwt": [jwt_key, jwk],
                    "sequence": 1}
        self.trust_domain = config.trust_domain
        self.upstream = CertificateAuthority(*data["upstream"])
        # The server CA lives ca_ttl (24 h); a server started after it ran out signs with a fresh one. The bundle
        # holds the upstream root, which stays, so federated peers and agents keep trusting the server.
        ca = CertificateAuthority(*data["ca"]) if data["ca"] else None
        if ca is None or describe(ca.cert_pem)[0].not_after - dt.datetime.now(dt.UTC) < dt.timedelta(hours=1):
            ca = issue_server_ca(self.upstream, config.trust_domain, subject=config.ca_subject)
            data["ca"] = [ca.cert_pem, ca.key_pem, ca.chain_pem]
            data_dir.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(json.dumps(data))
        self.ca = ca
        self.jwk: dict[str, Any] = data["jwt"][1]
        self.sequence: int = data["sequence"]
        self.refresh_hint = config.refresh_hint
        self.svid_ttl = config.default_x509_svid_ttl
        self.server_id = f"spiffe://{config.trust_domain}/spire/server"
        key_pem, csr = new_request(self.server_id)
        leaf = sign_svid(self.ca, csr, self.server_id)
        self.server_svid = Credential(leaf, key_pem, self.ca.cert_pem)

    @property
    def bundle(self) -> TrustBundle:
        return TrustBundle(self.trust_domain, (self.upstream.cert_pem,), (self.jwk,), self.sequence,
                           self.refresh_hint)

    def sign(self, csr: str, spiffe_id: str, dns_names: tuple[str, ...] = (), ttl: int = 0) -> str:
        """An X509-SVID followed by the server CA (SPIRE's chain stops below the bundle's root)."""
        leaf = sign_svid(self.ca, csr, spiffe_id, dns_names=dns_names,
                         validity=dt.timedelta(seconds=ttl or self.svid_ttl))
        return leaf + self.ca.cert_pem


class SpireServer:
    """One SPIRE server.

    Args:
        config: its ``server.conf``.
        pod: the pod it runs in.
    """

    def __init__(self, config: ServerConfig, pod: PodContext):
        self.config = config
        self.pod = pod
        data_dir = pod.path(config.data_dir)
        self.keys = ServerCa(config, data_dir)
        self.store = Datastore.open(data_dir / "datastore.json")
        self.agents: dict[str, dict[str, Any]] = self.store.agents
        self.runners: list[web.AppRunner] = []
        self.refreshers: list[federation.Refresher] = []
        self._fds: list[int] = []
        self._tasks: list[asyncio.Task[None]] = []

    # ---- bundles ------------------------------------------------------------------------------------------------

    def federated(self, trust_domain: str) -> TrustBundle | None:
        text = self.store.federated.get(trust_domain)
        return TrustBundle.from_json(trust_domain, text) if text else None

    def set_federated(self, bundle: TrustBundle) -> None:
        if bundle.trust_domain == self.config.trust_domain:
            raise SpireError("setting a federated bundle for the server's own trust domain is not allowed")
        self.store.federated[bundle.trust_domain] = bundle.to_json(indent=None)
        self.store.save()

    # ---- private API (Unix socket) ------------------------------------------------------------------------------

    def private_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/entries", self._list_entries)
        app.router.add_post("/entries", self._create_entries)
        app.router.add_delete("/entries/{id}", self._delete_entry)
        app.router.add_get("/agents", self._list_agents)
        app.router.add_get("/bundle", self._show_bundle)
        app.router.add_get("/bundles", self._list_bundles)
        app.router.add_put("/bundles/{domain}", self._set_bundle)
        app.router.add_delete("/bundles/{domain}", self._delete_bundle)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "SERVING"})

    async def _list_entries(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            selectors = [Selector.parse(s) for s in query.getall("selector", [])]
        except SpireError as exc:
            return _error(400, str(exc))
        if query.get("entryID"):
            entry = self.store.entries.get(query["entryID"])
            if entry is None:
                return _error(404, "entry not found")
            return web.json_response({"entries": [entry.to_dict()]})
        found = self.store.find(spiffe_id=query.get("spiffeID", ""), parent_id=query.get("parentID", ""),
                                selectors=selectors, federates_with=query.getall("federatesWith", []))
        return web.json_response({"entries": [e.to_dict() for e in found]})

    async def _create_entries(self, request: web.Request) -> web.Response:
        body = await request.json()
        results = []
        for raw in body.get("entries") or []:
            try:
                entry = Entry.from_dict({"entry_id": "", **raw})
                entry = replace(entry, federates_with=tuple(trust_domain_name(d) for d in entry.federates_with))
                created = self.store.create(entry)
                results.append({"status": {"code": "OK", "message": "OK"}, "entry": created.to_dict()})
            except SpireError as exc:
                results.append({"status": {"code": "AlreadyExists", "message": str(exc)}, "entry": raw})
            except (TypeError, ValueError) as exc:
                results.append({"status": {"code": "InvalidArgument", "message": str(exc)}, "entry": raw})
        return web.json_response({"results": results})

    async def _delete_entry(self, request: web.Request) -> web.Response:
        if request.match_info["id"] not in self.store.entries:
            return _error(404, "entry not found")
        self.store.delete(request.match_info["id"])
        return web.json_response({})

    async def _list_agents(self, request: web.Request) -> web.Response:
        return web.json_response({"agents": self.agents})

    async def _show_bundle(self, request: web.Request) -> web.Response:
        return web.json_response({"trust_domain": self.config.trust_domain,
                                  "bundle": self.keys.bundle.to_json(indent=None)})

    async def _list_bundles(self, request: web.Request) -> web.Response:
        return web.json_response({"bundles": [{"trust_domain": d, "bundle": b}
                                              for d, b in sorted(self.store.federated.items())]})

    async def _set_bundle(self, request: web.Request) -> web.Response:
        domain = trust_domain_name(request.match_info["domain"])
        try:
            bundle = TrustBundle.from_json(domain, await request.text())
            self.set_federated(bundle)
        except (PkiError, SpireError) as exc:
            return _error(400, str(exc))
        _log.info("Bundle set for trust domain %s (sequence %d)", domain, bundle.sequence)
        for refresher in self.refreshers:
            if refresher.peer.trust_domain == domain:
                refresher.wake()
        return web.json_response({})

    async def _delete_bundle(self, request: web.Request) -> web.Response:
        """SPIRE's three modes: ``restrict`` refuses while entries federate with the domain, ``dissociate``
        removes the domain from their FederatesWith, ``delete`` deletes them."""
        domain = trust_domain_name(request.match_info["domain"])
        mode = request.query.get("mode") or "restrict"
        if mode not in ("restrict", "dissociate", "delete"):
            return _error(400, f'unsupported mode "{mode}"')
        if domain not in self.store.federated:
            return _error(404, "rpc error: code = NotFound desc = no such bundle")
        federating = [e for e in self.store.entries.values() if domain in e.federates_with]
        if federating and mode == "restrict":
            return _error(409, f"datastore-sql: cannot delete bundle; federated with {len(federating)} "
                               f"registration entries")
        for entry in federating:
            if mode == "delete":
                self.store.delete(entry.entry_id)
            else:
                self.store.update(replace(entry, federates_with=tuple(d for d in entry.federates_with
                                                                      if d != domain)))
        del self.store.federated[domain]
        self.store.save()
        _log.info("Bundle deleted: trust_domain=%s mode=%s", domain, mode)
        return web.json_response({})

    # ---- node API (TLS) -----------------------------------------------------------------------------------------

    def node_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/agent/attest", self._attest)
        app.router.add_post("/agent/sync", self._sync)
        return app

    async def _attest(self, request: web.Request) -> web.Response:
        """``k8s_psat``: the token is reviewed by the cluster, the agent's pod and node read from it."""
        body = await request.json()
        try:
            agent_id, selectors = await self._review_agent(str(body.get("token", "")), str(body.get("pod", "")),
                                                           str(body.get("cluster", "")))
        except SpireError as exc:
            _log.warning("Agent attestation request rejected: %s", exc)
            return _error(403, f"failed to attest: {exc}")
        svid = self.keys.sign(str(body.get("csr", "")), agent_id)
        leaf = describe(svid)[0]
        self.agents[agent_id] = {"selectors": selectors, "attestation_type": "k8s_psat",
                                 "serial": str(int(leaf.serial, 16)), "expires_at": int(leaf.not_after.timestamp())}
        self.store.save()
        _log.info("Agent attestation request completed: agent_id=%s", agent_id)
        return web.json_response({"agent_id": agent_id, "svid": svid, "bundle": self.keys.bundle.to_json(indent=None)})

    async def _review_agent(self, token: str, pod_name: str, cluster: str) -> tuple[str, list[str]]:
        if self.config.clusters and cluster not in self.config.clusters:
            raise SpireError(f'k8s-psat: not configured for cluster "{cluster}"')
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                  "spec": {"token": token, "audiences": [PSAT_AUDIENCE]}}
        try:
            async with self.pod.client() as client:
                answer = await client.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body=review)
                status = answer.get("status") or {}
                if not status.get("authenticated"):
                    raise SpireError(f"k8s-psat: token not authenticated ({status.get('error') or 'invalid'})")
                user = str((status.get("user") or {}).get("username", ""))
                parts = user.split(":")
                if len(parts) != 4 or parts[:2] != ["system", "serviceaccount"]:
                    raise SpireError(f"k8s-psat: {user!r} is not a service account")
                namespace, account = parts[2], parts[3]
                if f"{namespace}:{account}" not in self.config.allowed_agents:
                    raise SpireError(f'k8s-psat: "{namespace}:{account}" is not an allowed service account')
                extra = (status.get("user") or {}).get("extra") or {}
                pod_name = (extra.get("authentication.kubernetes.io/pod-name") or [pod_name])[0]
                pod = await client.get(f"/api/v1/namespaces/{namespace}/pods/{pod_name}")
                if pod is None or (pod.get("spec") or {}).get("serviceAccountName", "default") != account:
                    raise SpireError(f"k8s-psat: pod {namespace}/{pod_name} of service account {account} not found")
                node_name = str((pod.get("spec") or {}).get("nodeName", ""))
                node = await client.get(f"/api/v1/nodes/{node_name}") if node_name else None
        except KubeApiError as exc:
            raise SpireError(f"k8s-psat: unable to validate token with TokenReview API: {exc.message}") from exc
        node_uid = str(((node or {}).get("metadata") or {}).get("uid") or node_name)
        pod_uid = str((pod.get("metadata") or {}).get("uid", ""))
        agent_id = f"spiffe://{self.config.trust_domain}/spire/agent/k8s_psat/{cluster}/{node_uid}"
        selectors = [f"k8s_psat:cluster:{cluster}", f"k8s_psat:agent_ns:{namespace}",
                     f"k8s_psat:agent_sa:{account}", f"k8s_psat:agent_pod_name:{pod_name}",
                     f"k8s_psat:agent_pod_uid:{pod_uid}", f"k8s_psat:agent_node_name:{node_name}",
                     f"k8s_psat:agent_node_uid:{node_uid}"]
        return agent_id, selectors

    def authorized_entries(self, agent_id: str) -> list[Entry]:
        """The entries an agent may issue: parented by it, by a node entry its selectors match, and so on down."""
        node_selectors = {Selector.parse(s) for s in (self.agents.get(agent_id) or {}).get("selectors", [])}
        parents = {agent_id}
        parents |= {e.spiffe_id for e in self.store.entries.values()
                    if e.parent_id == self.keys.server_id and e.selectors and set(e.selectors) <= node_selectors}
        found: dict[str, Entry] = {}
        while True:
            more = {e.entry_id: e for e in self.store.entries.values()
                    if e.parent_id in parents and e.entry_id not in found}
            if not more:
                break
            found.update(more)
            parents |= {e.spiffe_id for e in more.values()}
        return sorted(found.values(), key=Entry.sort_key)

    async def _sync(self, request: web.Request) -> web.Response:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        agent_id = peer_id(ssl_object.getpeercert(binary_form=True)) if ssl_object is not None else None
        if agent_id is None or agent_id not in self.agents:
            return _error(403, "agent is not attested or no longer valid")
        body = await request.json()
        entries = self.authorized_entries(agent_id)
        by_id = {e.entry_id: e for e in entries}
        svids = {}
        for entry_id, csr in (body.get("csrs") or {}).items():
            entry = by_id.get(entry_id)
            if entry is None:
                continue  # not (or no longer) this agent's to issue
            svids[entry_id] = self.keys.sign(csr, entry.spiffe_id, entry.dns_names, entry.x509_svid_ttl)
        domains = sorted({d for e in entries for d in e.federates_with})
        bundles = {self.config.trust_domain: self.keys.bundle.to_json(indent=None)}
        for domain in domains:
            if domain in self.store.federated:
                bundles[domain] = self.store.federated[domain]
        return web.json_response({"entries": [e.to_dict() for e in entries], "svids": svids, "bundles": bundles})

    # ---- running ------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        socket_path = self.pod.path(self.config.socket_path)
        socket_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        address, fd = unix_address(socket_path)
        if fd is not None:
            self._fds.append(fd)
        await self._serve(self.private_app(), web.UnixSite, address)
        context = mutual_server_context(self.keys.server_svid, self.keys.bundle)
        await self._serve(self.node_app(), web.TCPSite, bind_host(self.config.bind_address), self.config.bind_port,
                          ssl_context=context)
        if self.config.bundle_endpoint is not None:
            host, port = self.config.bundle_endpoint
            app = federation.endpoint_app(lambda: self.keys.bundle)
            await self._serve(app, web.TCPSite, bind_host(host), port,
                              ssl_context=federation.endpoint_context(self.keys.server_svid))
            _log.info("Serving bundle endpoint on %s:%d (profile https_spiffe)", bind_host(host), port)
        for peer in self.config.peers:
            refresher = federation.Refresher(peer, self.federated, self.set_federated)
            refresher.start()
            self.refreshers.append(refresher)
        if self.config.bundle_config_map is not None:
            self._tasks.append(asyncio.create_task(self._notify_bundle(), name="k8sbundle"))
        if self.config.health_checks is not None:
            self.runners.append(await health.serve(self.config.health_checks, lambda: True))
        _log.info("Starting Server APIs: trust_domain=%s address=%s:%d", self.config.trust_domain,
                  bind_host(self.config.bind_address), self.config.bind_port)

    async def _serve(self, app: web.Application, site: Any, *args: Any, **kwargs: Any) -> None:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await site(runner, *args, **kwargs).start()
        self.runners.append(runner)

    async def _notify_bundle(self) -> None:
        """The ``k8sbundle`` notifier: the bundle's X.509 authorities in a ConfigMap, retried until it lands."""
        assert self.config.bundle_config_map is not None
        namespace, name, key = self.config.bundle_config_map
        path = f"/api/v1/namespaces/{namespace}/configmaps/{name}"
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
                "data": {key: self.keys.bundle.pem}}
        delay = 0.2
        while True:
            try:
                async with self.pod.client() as client:
                    if await client.get(path) is None:
                        await client.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", body=body)
                    else:
                        await client.request("PATCH", path, body={"data": body["data"]},
                                             content_type="application/merge-patch+json")
                _log.info("Bundle published to ConfigMap %s/%s", namespace, name)
                return
            except (KubeApiError, SpireError) as exc:
                _log.warning("k8sbundle: could not write ConfigMap %s/%s: %s", namespace, name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for refresher in self.refreshers:
            await refresher.stop()
        for runner in self.runners:
            await runner.cleanup()
        for fd in self._fds:
            os.close(fd)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def run(config_path: str) -> None:
    pod = PodContext.from_environment()
    config = ServerConfig.parse(await pod.read_file(config_path), config_path)
    server = SpireServer(config, pod)
    stop = stop_event()
    await server.start()
    try:
        await stop.wait()
    finally:
        await server.stop()
