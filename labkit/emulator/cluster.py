"""One embedded cluster: its API server, controllers, node, DNS and service proxy, wired together.

The store is the only shared state. The API server writes what clients send, through its admission
chain (:mod:`labkit.emulator.api.admission`); the controllers make the cluster react; two small loops here
connect the store to the machine:

- the **kubelet loop** hands pods bound to this cluster's node to the :class:`NodeRuntime` and writes
  the status the node reports back (what ``kubectl get pods`` shows);
- the **network loop** feeds Services, Endpoints and Pods to the cluster DNS and the service proxy.

Store listeners are synchronous and must not block, so both loops receive events through queues and
apply them in order on the emulator's event loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import functools
import logging
import os
import platform
import secrets
import socket
import ssl
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from labkit.core.contract import AddressPlan
from labkit.core.wire import Obj
from labkit.emulator.api import forwarding, proxying, streams
from labkit.emulator.api.admission import AdmissionChain
from labkit.emulator.api.auth import Authenticator, User, bootstrap_role_bindings, bootstrap_roles
from labkit.emulator.api.discovery import KUBERNETES_VERSION
from labkit.emulator.api.resources import Registry
from labkit.emulator.api.server import ApiServer
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.controllers import ResourceInfo, cluster_controllers
from labkit.emulator.events import NORMAL, EventExpiry, EventRecorder
from labkit.emulator.network import ClusterDns, ClusterNames, ServiceProxy, captures
from labkit.emulator.network.addresses import IpPool, LoadBalancerPool
from labkit.emulator.network.captures import Captures
from labkit.emulator.network.separation import HostSockets, Separation, is_ours, source_address
from labkit.emulator.node.runtime import NodeRuntime
from labkit.emulator.store import Store, WatchEvent
from labkit.emulator.store.objects import DEFAULT_HISTORY
from labkit.pki import new_root

_log = logging.getLogger(__name__)

API_PORT = 6443
REPLICASET_CONTROLLER = User("system:serviceaccount:kube-system:replicaset-controller",
                             ("system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"),
                             ("kube-system", "replicaset-controller"))
CRONJOB_CONTROLLER = User("system:serviceaccount:kube-system:cronjob-controller",
                          ("system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"),
                          ("kube-system", "cronjob-controller"))
# The kubelet asks for 3607 s projected tokens and kube-apiserver extends them to a year
# (--service-account-extend-token-expiration): a pod's token outlives any lab, so the node never refreshes it.
POD_TOKEN_SECONDS = 365 * 24 * 3600


class Cluster:
    """An embedded cluster.

    Args:
        name: the cluster (and kubeconfig context) name.
        index: its 1-based position, which picks its address ranges.
        plan: the emulator's address plan.
        state_dir: where its certificates, pod logs and shims live.
        load_balancers: the emulator-wide load-balancer pool.
        watch_history: events kept for watches resuming from a resourceVersion.
        networks: the emulator's separate networks (:mod:`~labkit.emulator.network.separation`); ``None`` when
            every pod shares the machine's loopback.
    """

    def __init__(self, name: str, index: int, plan: AddressPlan, state_dir: Path, load_balancers: LoadBalancerPool,
                 watch_history: int = DEFAULT_HISTORY, networks: Separation | None = None):
        self.name = name
        self.index = index
        self.plan = plan
        self.state_dir = state_dir
        self.node_name = f"{name}-control-plane"
        self._node_uid = str(uuid.uuid4())
        self.address = plan.api_server_address(index)
        self.url = f"https://{self.address}:{API_PORT}"
        self.admin_token = secrets.token_urlsafe(32)
        self.store = Store(history=watch_history)
        self.registry = Registry()
        self.authenticator = Authenticator(self.store, self.admin_token)
        self.ca = new_root(organization="labkit", common_name=f"{name} kubernetes CA", key="ec-p256")
        self.ca_data = base64.b64encode(self.ca.cert_pem.encode()).decode()
        service_network = plan.service_network(index)
        self.cluster_ips = IpPool(service_network, frozenset({plan.kubernetes_service_ip(index),
                                                              plan.dns_service_ip(index)}), "ClusterIP")
        self.pod_ips = IpPool(plan.pod_network(index), frozenset({self.address, source_address(plan, index)}), "pod IP")
        self.load_balancers = load_balancers
        self.admission = AdmissionChain(self.store, node_name=self.node_name, cluster_ips=self.cluster_ips,
                                        load_balancers=load_balancers, cluster=name)
        if networks is not None and networks.host is not None:
            # A webhook's URL may name the machine (a server on 127.0.0.1): dial that from the machine's network.
            self.admission.webhooks.socket_factory = functools.partial(_dial, plan, networks.host)
        self.names = ClusterNames()
        self.networks = networks if networks is not None and networks.enabled else None
        host = self.networks.host if self.networks is not None else None
        self.dns = ClusterDns(self.names, host=plan.dns_service_ip(index), port=53, fallback_port=5353,
                              host_listener=host and (lambda ip, port, udp: host.listener(ip, port, udp=udp)),
                              # names outside the cluster are the machine's resolver's to answer
                              host_lookup=host and (host.lookup, host.reverse))
        self.proxy = ServiceProxy(host_listener=host and host.listener)
        self.captures = Captures(self.store, self.proxy)
        self.runtime: NodeRuntime | None = None
        self.event_expiry = EventExpiry(self.store)
        self._scheduler_events = EventRecorder(self.store, "default-scheduler", f"default-scheduler-{self.node_name}",
                                               series=True)
        self.controllers = cluster_controllers(
            self.store, cluster=name, node_name=self.node_name, ca_pem=self.ca.cert_pem,
            issue_token=self._issue_token, load_balancers=load_balancers, resources=self._resource_infos,
            create_pod=self._create_pod, create_job=self._create_job)
        self.api = ApiServer(cluster=name, store=self.store, registry=self.registry,
                             authenticator=self.authenticator, admission=self.admission,
                             server_address=f"{self.address}:{API_PORT}")
        self._runner: web.AppRunner | None = None
        self._events: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None
        self._unsubscribe = None

    # --- lifecycle ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bootstrap the cluster's objects and start serving."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        dns_address = await self.dns.start()
        self.runtime = NodeRuntime(
            self.name, self.node_name, self.state_dir, self.pod_ips, self._on_pod_status, host_ip=self.address,
            kubernetes_service=(self.plan.kubernetes_service_ip(self.index), 443),
            dns_server=(dns_address.host, dns_address.port), resolve_ref=self._resolve_ref,
            read_data=self._read_data, ca_file=self.state_dir / "ca.crt", issue_token=self._issue_pod_token,
            record_event=EventRecorder(self.store, "kubelet", self.node_name),
            network=self.networks.namespace(self.index) if self.networks is not None else -1)
        await self.runtime.start()
        streams.install(self.api, self.runtime)
        forwarding.install(self.api, self.runtime)
        proxying.install(self.api)
        self._unsubscribe = self.store.subscribe(self._events.put_nowait)
        self._pump = asyncio.create_task(self._apply_events(), name=f"{self.name}-events")
        self._bootstrap()
        self.api.register_crd(copy.deepcopy(captures.CRD))
        await self.controllers.start()
        self.event_expiry.start()
        # A loop of calls is one exec with every URL in its argv, so request lines get long; a real API
        # server accepts up to 1 MiB of headers (Go's default), aiohttp only 8 KiB unless told.
        self._runner = web.AppRunner(self.api.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0,
                                     max_line_size=1 << 20, max_field_size=1 << 20)
        await self._runner.setup()
        tls = self._tls()
        await web.TCPSite(self._runner, self.address, API_PORT, ssl_context=tls).start()
        if self.networks is not None and self.networks.host is not None:  # kubectl is on the machine's network
            twin = self.networks.host.listener(self.address, API_PORT)
            await web.SockSite(self._runner, twin, ssl_context=tls).start()

    async def stop(self) -> None:
        """Stop serving and stop every process this cluster started."""
        if self._runner is not None:
            await self._runner.cleanup()
        await self.controllers.stop()
        await self.event_expiry.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._pump is not None:
            self._events.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._pump, 5)
        await self.captures.stop()
        if self.runtime is not None:
            await self.runtime.shutdown()
        await self.proxy.stop()
        await self.dns.stop()

    def _tls(self) -> ssl.SSLContext:
        credential = self.ca.issue_server(
            "kube-apiserver", dns_names=["kubernetes", "kubernetes.default", "kubernetes.default.svc",
                                         "kubernetes.default.svc.cluster.local", "localhost"],
            ip_addresses=[self.address, self.plan.kubernetes_service_ip(self.index), "127.0.0.1"])
        folder = self.state_dir / "pki"
        folder.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "ca.crt").write_text(self.ca.cert_pem)
        cert, key = folder / "apiserver.crt", folder / "apiserver.key"
        cert.write_text(credential.cert_chain_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(credential.key_pem)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        return context

    def _bootstrap(self) -> None:
        for namespace in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self._create("", "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        for role in bootstrap_roles():
            self.store.create("rbac.authorization.k8s.io", "clusterroles", role)
        for binding in bootstrap_role_bindings():
            self.store.create("rbac.authorization.k8s.io", "clusterrolebindings", binding)
        node = self._node()
        created = self.store.create("", "nodes", node)  # the store drops status on create, as a real server does
        self.store.update_status("", "nodes", {**created, "status": node["status"]})
        self._create("", "services", {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": self.plan.kubernetes_service_ip(self.index),
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": API_PORT}]}})
        self._create("", "endpoints", {
            "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "kubernetes", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": self.address}],
                         "ports": [{"name": "https", "port": API_PORT, "protocol": "TCP"}]}]})
        self._create("", "services", {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system",
                         "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
            "spec": {"clusterIP": self.plan.dns_service_ip(self.index),
                     "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                               {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}})

    def _create(self, group: str, plural: str, obj: Obj) -> None:
        rt = self.registry.get(group, "v1", plural)
        assert rt is not None
        self.admission.admit_builtin(rt, obj)
        self.store.create(group, plural, obj)

    def _node(self) -> Obj:
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.node_name, "labels": {
                "kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux",
                "node-role.kubernetes.io/control-plane": "", "topology.kubernetes.io/region": self.name}},
            "spec": {"podCIDR": str(self.plan.pod_network(self.index))},
            "status": {
                "addresses": [{"type": "InternalIP", "address": self.address},
                              {"type": "Hostname", "address": self.node_name}],
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "kubelet is posting ready status"}],
                "nodeInfo": {"kubeletVersion": KUBERNETES_VERSION, "kubeProxyVersion": KUBERNETES_VERSION,
                             "containerRuntimeVersion": "labkit://processes", "operatingSystem": "linux",
                             "architecture": "amd64", "osImage": "labkit embedded node",
                             "kernelVersion": platform.release(), "bootID": self._node_uid,
                             "machineID": self._node_uid.replace("-", ""), "systemUUID": self._node_uid},
            },
        }

    # --- glue -----------------------------------------------------------------------------------------------------

    async def _create_pod(self, pod: Obj) -> Obj:
        return await self.api.create_as(REPLICASET_CONTROLLER, "", "v1", "pods", pod, "kube-controller-manager")

    async def _create_job(self, job: Obj) -> Obj:
        return await self.api.create_as(CRONJOB_CONTROLLER, "batch", "v1", "jobs", job, "kube-controller-manager")

    def _issue_token(self, namespace: str, service_account: str) -> str:
        account = self.store.get("", "serviceaccounts", service_account, namespace)
        secrets_of = [s for s in self.store.list("", "secrets", namespace=namespace).items
                      if s.get("type") == "kubernetes.io/service-account-token"
                      and (s["metadata"].get("annotations") or {}).get("kubernetes.io/service-account.name")
                      == service_account and not (s.get("data") or {}).get("token")]
        secret_name = secrets_of[0]["metadata"]["name"] if secrets_of else f"{service_account}-token"
        return self.authenticator.issue_legacy_token(namespace, service_account, secret_name,
                                                     account["metadata"]["uid"])

    def _issue_pod_token(self, namespace: str, service_account: str, audiences: tuple[str, ...] = (),
                         seconds: int | None = None) -> str:
        """The node's TokenRequest: a token bound to the ServiceAccount, for ``audiences`` (the API server's if
        none), living ``seconds`` (the service-account directory's default if ``None``)."""
        account = self.store.get("", "serviceaccounts", service_account, namespace)
        token, _ = self.authenticator.issue_bound_token(namespace, service_account, account["metadata"]["uid"],
                                                        seconds or POD_TOKEN_SECONDS, audiences)
        return token

    def _resource_infos(self) -> list[ResourceInfo]:
        return [ResourceInfo(rt.group, rt.plural, rt.kind, rt.namespaced) for rt in self.registry
                if rt.storage and "delete" in rt.verbs]

    def _resolve_ref(self, namespace: str, kind: str, name: str, key: str) -> str | None:
        plural = {"Secret": "secrets", "ConfigMap": "configmaps"}[kind]
        found = self.store.find("", plural, name, namespace)
        if found is None:
            return None
        if kind == "Secret":
            value = (found.get("data") or {}).get(key)
            return base64.b64decode(value).decode(errors="replace") if value is not None else None
        return (found.get("data") or {}).get(key)

    def _read_data(self, namespace: str, kind: str, name: str) -> dict[str, str] | None:
        plural = {"Secret": "secrets", "ConfigMap": "configmaps"}[kind]
        found = self.store.find("", plural, name, namespace)
        if found is None:
            return None
        data = dict(found.get("data") or {})
        if kind == "Secret":
            return {key: base64.b64decode(value).decode(errors="replace") for key, value in data.items()}
        return data

    def _on_pod_status(self, namespace: str, name: str, pod_status: Obj) -> None:
        pod = self.store.find("", "pods", name, namespace)
        if pod is None or pod.get("status") == pod_status:
            return
        updated = copy.deepcopy(pod)
        updated["status"] = pod_status
        updated["metadata"].pop("resourceVersion", None)
        with contextlib.suppress(StatusError):
            self.store.update_status("", "pods", updated)

    async def _apply_events(self) -> None:
        while (event := await self._events.get()) is not None:
            try:
                await self._apply(event)
            except Exception:
                _log.exception("%s: applying %s %s/%s failed", self.name, event.type, event.resource,
                               event.object.get("metadata", {}).get("name"))

    async def _apply(self, event: WatchEvent) -> None:
        obj, deleted = event.object, event.type == "DELETED"
        meta = obj.get("metadata") or {}
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        self.captures.observe(event)
        if event.group != "":
            return
        if event.resource == "pods":
            if (obj.get("spec") or {}).get("nodeName") != self.node_name or self.runtime is None:
                return
            if event.type == "ADDED" and not meta.get("deletionTimestamp"):
                # Binding happens at admission here (one node); the scheduler's report of it is made now.
                self._scheduler_events(obj, NORMAL, "Scheduled", f"Successfully assigned {namespace}/{name} to "
                                       f"{self.node_name}", action="Binding")
            if deleted:
                self.names.remove_pod(namespace, name)
                await self.runtime.remove_pod(namespace, name, meta.get("uid", ""))
            elif meta.get("deletionTimestamp"):
                grace = meta.get("deletionGracePeriodSeconds")
                await self.runtime.remove_pod(namespace, name, meta.get("uid", ""), grace=grace)
                if grace:
                    # As the kubelet: once the processes are gone, the Terminating pod is deleted for good.
                    with contextlib.suppress(StatusError):
                        self.store.delete("", "pods", name, namespace, uid=meta.get("uid"))
            else:
                self.names.update_pod(obj)
                await self.runtime.sync_pod(obj)
        elif event.resource in ("configmaps", "secrets", "serviceaccounts"):
            if not deleted and self.runtime is not None:
                self.runtime.volume_sources_changed()
        elif event.resource == "services":
            if deleted:
                self.admission.deleted("", "services", obj)
                self.names.remove_service(namespace, name)
                await self.proxy.remove_service(namespace, name)
            else:
                self.names.update_service(obj)
                await self.proxy.update_service(obj)
        elif event.resource == "endpoints":
            if deleted:
                self.names.remove_endpoints(namespace, name)
                await self.proxy.remove_endpoints(namespace, name)
            else:
                self.names.update_endpoints(obj)
                await self.proxy.update_endpoints(obj)


def _dial(plan: AddressPlan, host: HostSockets, address: tuple[Any, ...]) -> socket.socket:
    """A socket for aiohttp to connect to ``address`` with: one of the machine's for an address outside the
    emulator's block, else one of the node's."""
    family, kind, proto, _name, target = address
    if family == socket.AF_INET and not is_ours(plan, target[0]):
        return host.connector()
    return socket.socket(family, kind, proto)
