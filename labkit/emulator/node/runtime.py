"""The node: runs pods as local processes and reports their status the way a kubelet does.

Whoever watches the store hands pods to :meth:`NodeRuntime.sync_pod` and :meth:`NodeRuntime.remove_pod`;
the node reports each pod's full ``status`` through ``on_status`` whenever it changes. It never reads
the store itself, so it can be tested (and reasoned about) with plain dicts.

What a pod becomes here:

* an IP of its own from the pod network (``127.X.k.N``, :mod:`labkit.emulator.network.addresses`), kept for
  the pod's life and released when it is removed;
* a directory ``<state_dir>/pods/<ns>_<name>_<uid>/`` holding its logs (``logs/<container>/<n>.log``,
  one file per restart, as the kubelet keeps them) and ``bin/``, which comes first on the pod's
  ``PATH`` and holds the shims that make host tools behave like the pod's own (the curl shim);
* one process per container (:mod:`.images` says which), in a process group of its own that dies
  with the emulator (:mod:`.spawning`), restarted with CrashLoopBackOff as the restart policy says.

Status must be indistinguishable from a kubelet's where clients look: ``kubectl get pods`` (READY,
STATUS, RESTARTS), ``kubectl rollout status`` and ``kubectl wait --for=condition=Ready`` read
``phase``, ``conditions`` and ``containerStatuses``, so those carry Kubernetes' reasons and messages.

The seam for sidecars: an app listens on ``<pod IP>:<containerPort>`` unless the pod says otherwise.
When the mesh injects a sidecar, Envoy takes ``<pod IP>:<port>`` (that is the address Endpoints and
other pods use) and forwards to the app, which must then listen elsewhere. The mesh says where with
the pod annotation ``labkit.io/app-address: <IP>`` (written by its injector, so the pod object alone
describes the pod and survives restarts of the emulator), or, for callers without access to the pod
object, :meth:`NodeRuntime.set_app_address` (which wins over the annotation). The app then binds
``<app address>:<port>``; readiness checks go there too. The address takes effect when a container
(re)starts, so set it before the first :meth:`~NodeRuntime.sync_pod`.

Sidecar pods (a container ``istio-proxy`` running Istio's ``proxyv2`` image as ``proxy sidecar``) need
no help from the injector: when neither of those names an address, the node takes a second address from
the pod network for the app, for the pod's life. Then, with no iptables to redirect traffic (DESIGN
decision 5):

* the agent gets ``LABKIT_APP_ADDRESS`` (where its inbound listeners forward) and keeps the pod IP for
  Envoy, so its probes (``/healthz/ready`` on 15021) go to the pod IP, as do app probes Istio rewrote to
  the agent's ports (15020/15021);
* the app containers get ``http_proxy``/``HTTP_PROXY`` = ``http://<pod IP>:15080`` (the sidecar's HTTP
  proxy listener, which routes by Host) and ``no_proxy``/``NO_PROXY`` for the pod's own addresses; the
  pod's curl shim sends known cluster names through that proxy and lets unknown ones fail in curl;
* ``pilot-agent`` in the pod's ``bin/`` runs the agent, for ``kubectl exec -c istio-proxy -- pilot-agent
  request GET clusters``.

What the kubelet mounts, the node writes into the pod directory instead: a pod cannot see
``/var/run/secrets/kubernetes.io/serviceaccount/`` (no mount namespaces here), so its projected
service-account token lives in ``<pod dir>/serviceaccount/{token,ca.crt,namespace}`` and every container
gets ``LABKIT_SERVICEACCOUNT_DIR`` naming it (unless ``automountServiceAccountToken: false``), with
``LABKIT_KUBERNETES_CA_FILE`` next to ``KUBERNETES_SERVICE_HOST``/``_PORT`` and ``LABKIT_XDS_ROOT`` (where
the mesh publishes Envoy configuration) in every container.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import logging
import os
import re
import secrets
import shlex
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from labkit.emulator.apimachinery import status as api_status
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.network.addresses import IpPool
from labkit.emulator.node import images, probing, spawning
from labkit.emulator.node.reporting import EventSink, KubeletEvents, PodRef
from labkit.emulator.node.resolving import DnsBridge, Resolver
from labkit.errors import ToolNotFoundError

logger = logging.getLogger(__name__)

APP_ADDRESS_ANNOTATION = "labkit.io/app-address"
PROXY_CONTAINER = "istio-proxy"
PROXY_HTTP_PORT = 15080  # meshConfig.defaultConfig.proxyHttpPort: the sidecar's HTTP proxy listener
# The agent's ports (status/app-probe rewrite, readiness, Prometheus): they live on the pod IP, not the app's.
AGENT_PORTS = frozenset({15020, 15021, 15090})
SERVICEACCOUNT_DIR = "serviceaccount"
MOUNT_RETRY = 0.5
MAX_MOUNT_RETRY = 5.0
PROGRAMS_DIR = images.PROGRAMS_DIR
GRACE_CAP = 2.0
CLUSTER_DOMAIN = "cluster.local"
DEFAULT_BACKOFF = 10.0
MAX_BACKOFF_FACTOR = 30  # Kubernetes: 10 s doubling, capped at 300 s
FOLLOW_POLL = 0.05
PORT_POLL = 0.005

StatusCallback = Callable[[str, str, dict[str, Any]], None]
RefResolver = Callable[[str, str, str, str], "str | None"]
TokenIssuer = Callable[[str, str], str]

INSTALL_HINTS = {
    "curl": "labkit runs the machine's curl inside pods: install it (Debian/Ubuntu: sudo apt-get install curl; "
            "Fedora: sudo dnf install curl; macOS: brew install curl).",
}


class ExecNotFoundError(ToolNotFoundError):
    """``kubectl exec`` named a program that is not on the pod's ``PATH`` (the machine's tools plus shims).

    Args:
        tool: the program as given.
        hint: what to install.
    """

    def __init__(self, tool: str, hint: str):
        super().__init__(tool, hint)
        self.args = (f'OCI runtime exec failed: exec failed: unable to start container process: exec: "{tool}": '
                     f"executable file not found in $PATH: unknown. {hint}",)


def rfc3339(when: float | None = None) -> str:
    """A Kubernetes timestamp (seconds precision, UTC)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def _format_duration(seconds: float) -> str:
    """Go's ``time.Duration`` text for whole back-offs: ``10s``, ``1m20s``, ``5m0s``."""
    whole = round(seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{whole // 60}m{whole % 60}s" if whole >= 60 else f"{whole}s"


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known variables are replaced, ``$$`` escapes, the rest stays."""
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", replace, value)


class _Container:
    """One container of a pod and the state its status is made from."""

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.name: str = spec["name"]
        self.image: str = spec.get("image", "")
        self.launch = images.plan_launch(self.image, spec.get("command"), spec.get("args"))
        self.state: dict[str, Any] = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: dict[str, Any] = {}
        self.restart_count = 0
        self.ready = False
        self.started = False
        self.ever_created = False
        self.container_id = ""
        self.env: dict[str, str] = {}
        self.process: asyncio.subprocess.Process | None = None
        self.log_path: Path | None = None
        self.task: asyncio.Task[None] | None = None

    def status(self) -> dict[str, Any]:
        image_id = ""
        if self.ever_created:
            repository = self.image.split("@", 1)[0].rsplit(":", 1)[0] if "/" in self.image or ":" in self.image \
                else self.image
            image_id = f"{repository}@sha256:{hashlib.sha256(self.image.encode()).hexdigest()}"
        status: dict[str, Any] = {}
        if self.container_id:
            status["containerID"] = self.container_id
        status.update({
            "image": self.image,
            "imageID": image_id,
            "lastState": copy.deepcopy(self.last_state),
            "name": self.name,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.started,
            "state": copy.deepcopy(self.state),
        })
        return status


class _Pod:
    """One pod on this node."""

    def __init__(self, pod: dict[str, Any], uid: str, ip: str, directory: Path, allocated: bool):
        metadata = pod["metadata"]
        self.namespace: str = metadata.get("namespace") or "default"
        self.name: str = metadata["name"]
        self.uid = uid
        self.annotations: dict[str, str] = dict(metadata.get("annotations") or {})
        self.labels: dict[str, str] = dict(metadata.get("labels") or {})
        self.spec: dict[str, Any] = pod.get("spec") or {}
        self.ip = ip
        self.allocated = allocated
        self.dir = directory
        self.containers = {spec["name"]: _Container(spec) for spec in self.spec.get("containers") or []}
        self.start_time = rfc3339()
        self.ready_transition = self.start_time
        self.was_ready = False
        self.published: dict[str, Any] | None = None
        self.removing = False
        self.execs: set[asyncio.subprocess.Process] = set()
        self.sidecar = _has_sidecar(self.spec)
        self.app_address: str | None = None  # taken from the pod network by the node for a sidecar pod
        self.account_dir: Path | None = None
        self.mounted = asyncio.Event()
        self.mounting: asyncio.Task[None] | None = None

    @property
    def restart_policy(self) -> str:
        return self.spec.get("restartPolicy") or "Always"

    @property
    def bin_dir(self) -> Path:
        return self.dir / "bin"

    def log_dir(self, container: str) -> Path:
        return self.dir / "logs" / container


class NodeRuntime:
    """Runs the pods of one node of one emulated cluster as processes.

    Args:
        cluster: the cluster's name (for messages).
        node_name: the node's name (``spec.nodeName``, the ``spec.nodeName`` fieldRef).
        state_dir: where pod directories (logs, shims) go.
        pod_ips: the pool pod IPs come from.
        on_status: called with ``(namespace, name, status)`` whenever a pod's status changes; ``status``
            is the whole ``status`` object, a fresh copy each time.
        host_ip: the node's address (``status.hostIP``); the cluster's API server address fits.
        kubernetes_service: ``(host, port)`` for ``KUBERNETES_SERVICE_HOST``/``_PORT`` in every container.
        dns_server: the cluster DNS as ``(ip, port)`` for the curl shim (see :mod:`.resolving`).
        ca_file: the cluster CA certificate (PEM file): ``ca.crt`` of the service-account directory and
            ``LABKIT_KUBERNETES_CA_FILE``.
        issue_token: ``(namespace, service account) -> token`` for the projected service-account token; without
            it pods get no service-account directory.
        xds_root: where the mesh publishes Envoy configuration (``LABKIT_XDS_ROOT`` in every container).
        resolver: the cluster DNS as an object; served on loopback for the shim when ``dns_server`` is not given.
        resolve_ref: ``(namespace, kind, name, key) -> value`` for ``secretKeyRef`` (kind ``Secret``) and
            ``configMapKeyRef`` (kind ``ConfigMap``); ``None`` for a missing key.
        restart_backoff: the first CrashLoopBackOff delay in seconds (Kubernetes: 10); it doubles up to 30 times
            this. Tests pass a fraction of a second.
        probe_period_scale: multiplies probes' ``periodSeconds`` and ``initialDelaySeconds`` (tests: 0.05).
        grace_cap: the longest a terminating container gets between SIGTERM and SIGKILL.
        python: the interpreter for labkit programs.
        record_event: where the kubelet's Events go (``Pulled``, ``Started``, ``BackOff`` …); none by default.
    """

    def __init__(self, cluster: str, node_name: str, state_dir: Path, pod_ips: IpPool, on_status: StatusCallback,
                 *, host_ip: str = "127.0.0.1", kubernetes_service: tuple[str, int] | None = None,
                 dns_server: tuple[str, int] | None = None, resolver: Resolver | None = None,
                 resolve_ref: RefResolver | None = None, ca_file: Path | None = None,
                 issue_token: TokenIssuer | None = None, xds_root: Path | None = None,
                 restart_backoff: float = DEFAULT_BACKOFF, probe_period_scale: float = 1.0,
                 grace_cap: float = GRACE_CAP, python: str = sys.executable, record_event: EventSink | None = None):
        self.cluster = cluster
        self.node_name = node_name
        self.state_dir = Path(state_dir)
        self.pod_ips = pod_ips
        self.on_status = on_status
        self.host_ip = host_ip
        self.kubernetes_service = kubernetes_service
        self.dns_server = dns_server
        self.resolver = resolver
        self.resolve_ref = resolve_ref
        self.ca_file = ca_file
        self.issue_token = issue_token
        self.xds_root = xds_root
        self.restart_backoff = restart_backoff
        self.probe_period_scale = probe_period_scale
        self.grace_cap = grace_cap
        self.python = python
        self.events = KubeletEvents(record_event)
        self._pods: dict[str, _Pod] = {}
        self._app_addresses: dict[str, str] = {}
        self._bridge: DnsBridge | None = None
        self._bridge_lock = asyncio.Lock()
        self._host_path = os.environ.get("PATH", os.defpath)

    # ---- pods -------------------------------------------------------------------------------------------------

    async def sync_pod(self, pod: dict[str, Any]) -> None:
        """Make the pod run here: start what is not running yet. Calling it again for the same uid does nothing.

        Args:
            pod: the Pod object (Kubernetes JSON shape). ``status.podIP`` is reused when still free, so a
                restarted emulator gives pods back their addresses.
        """
        metadata = pod["metadata"]
        namespace = metadata.get("namespace") or "default"
        name = metadata["name"]
        uid = metadata.get("uid") or f"{namespace}/{name}"
        if uid in self._pods or metadata.get("deletionTimestamp"):
            return
        for other in list(self._pods.values()):
            if (other.namespace, other.name) == (namespace, name):
                await self.remove_pod(other.namespace, other.name, other.uid)
        spec = pod.get("spec") or {}
        if spec.get("hostNetwork"):
            ip, allocated = self.host_ip, False
        else:
            ip, allocated = self._allocate_ip((pod.get("status") or {}).get("podIP")), True
        directory = self.state_dir / "pods" / f"{namespace}_{name}_{uid}"
        record = _Pod(pod, uid, ip, directory, allocated)
        self._pods[uid] = record
        try:
            if record.sidecar and not (self._app_addresses.get(uid) or record.annotations.get(APP_ADDRESS_ANNOTATION)):
                record.app_address = self.pod_ips.allocate()
            directory.mkdir(parents=True, exist_ok=True)
            record.bin_dir.mkdir(exist_ok=True)
            await self._write_shims(record)
        except BaseException:
            self._pods.pop(uid, None)
            self._release(record)
            raise
        if not self._mount_service_account(record):
            record.mounting = asyncio.create_task(self._retry_mount(record), name=f"mount {namespace}/{name}")
        self._publish(record)
        for container in record.containers.values():
            container.task = asyncio.create_task(self._supervise(record, container),
                                                 name=f"container {namespace}/{name}/{container.name}")

    async def remove_pod(self, namespace: str, name: str, uid: str) -> None:
        """Stop the pod's processes (SIGTERM, SIGKILL after the grace period, capped) and release its IP.

        Unknown pods are ignored: removing is idempotent.
        """
        pod = self._pods.get(uid)
        if pod is None or (pod.namespace, pod.name) != (namespace, name):
            return
        pod.removing = True
        if pod.mounting is not None:
            pod.mounting.cancel()
        grace = min(float(pod.spec.get("terminationGracePeriodSeconds", 30)), self.grace_cap)
        for container in pod.containers.values():
            if container.process is not None:
                self.events.killing(_ref(pod), container.name)
        processes = [c.process for c in pod.containers.values() if c.process is not None]
        processes += list(pod.execs)
        await asyncio.gather(*(spawning.terminate(process, grace) for process in processes))
        tasks = [c.task for c in pod.containers.values() if c.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pods.pop(uid, None)
        self._app_addresses.pop(uid, None)
        self._release(pod)
        shutil.rmtree(pod.dir, ignore_errors=True)

    async def shutdown(self) -> None:
        """Stop every pod and wait for every process to be gone."""
        await asyncio.gather(*(self.remove_pod(p.namespace, p.name, p.uid) for p in list(self._pods.values())))
        if self._bridge is not None:
            self._bridge.close()
            self._bridge = None

    def set_app_address(self, uid: str, address: str | None) -> None:
        """Make the apps of pod ``uid`` listen on ``address`` instead of the pod IP (a sidecar takes the pod IP).

        Wins over the ``labkit.io/app-address`` annotation; ``None`` goes back to it. Takes effect when a
        container (re)starts.
        """
        if address is None:
            self._app_addresses.pop(uid, None)
        else:
            self._app_addresses[uid] = address

    def pod_ip(self, uid: str) -> str | None:
        """The IP of pod ``uid``, if it runs here."""
        pod = self._pods.get(uid)
        return pod.ip if pod else None

    def pids(self, namespace: str, name: str) -> dict[str, int]:
        """The process id of each running container of a pod (for diagnostics and tests)."""
        pod = self._find(namespace, name)
        return {c.name: c.process.pid for c in pod.containers.values()
                if c.process is not None and c.process.returncode is None}

    # ---- logs and exec ----------------------------------------------------------------------------------------

    def logs(self, namespace: str, name: str, container: str | None = None, *, tail: int | None = None,
             previous: bool = False) -> bytes:
        """What ``kubectl logs`` prints: the container's stdout and stderr.

        Args:
            namespace: the pod's namespace.
            name: the pod's name.
            container: the container; may be left out when the pod has only one.
            tail: only the last ``tail`` lines.
            previous: the instance before the last restart (``kubectl logs --previous``).

        Raises:
            StatusError: 404 for an unknown pod, 400 for an unknown container or no previous instance.
        """
        pod = self._find(namespace, name)
        record = self._container(pod, container)
        path = self._log_file(pod, record, previous)
        data = path.read_bytes() if path.exists() else b""
        return _tail(data, tail)

    async def follow_logs(self, namespace: str, name: str, container: str | None = None, *,
                          tail: int | None = None) -> AsyncIterator[bytes]:
        """``kubectl logs -f``: what is there, then what comes, until the container's process ends.

        Args:
            namespace: the pod's namespace.
            name: the pod's name.
            container: the container; may be left out when the pod has only one.
            tail: start with only the last ``tail`` lines.
        """
        pod = self._find(namespace, name)
        record = self._container(pod, container)
        path = self._log_file(pod, record, previous=False)
        process = record.process
        data = path.read_bytes() if path.exists() else b""
        position = len(data)
        if data := _tail(data, tail):
            yield data
        while True:
            chunk = b""
            with contextlib.suppress(FileNotFoundError), path.open("rb") as file:
                file.seek(position)
                chunk = file.read()
            if chunk:
                position += len(chunk)
                yield chunk
                continue
            ended = (pod.removing or record.log_path != path or process is None or process.returncode is not None)
            if ended:
                return
            await asyncio.sleep(FOLLOW_POLL)

    async def exec(self, namespace: str, name: str, container: str | None, argv: list[str], *,
                   stdin: bool = False) -> asyncio.subprocess.Process:
        """Run ``argv`` as the pod (its environment, directory and shims); the caller owns the pipes and waits.

        Args:
            namespace: the pod's namespace.
            name: the pod's name.
            container: the container whose environment to use; the first one when ``None``.
            argv: the command, looked up on the pod's ``PATH`` (its ``bin/`` first, then the machine's).
            stdin: give the process a stdin pipe (``kubectl exec -i``); otherwise it reads from /dev/null.

        Raises:
            StatusError: 404 for an unknown pod, 400 for an unknown or not running container.
            ExecNotFoundError: the program is not installed (the message names what to install).
        """
        pod = self._find(namespace, name)
        record = self._container(pod, container, default_first=True)
        if record.process is None or record.process.returncode is not None:
            raise api_status.bad_request(f'unable to upgrade connection: container not found ("{record.name}")')
        if not argv:
            raise api_status.bad_request("you must specify at least one command for the container")
        env = record.env
        program = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env.get("PATH"))
        if program is None or not os.access(program, os.X_OK):
            raise ExecNotFoundError(argv[0], INSTALL_HINTS.get(argv[0], f"Install {argv[0]} on this machine."))
        pod.execs = {p for p in pod.execs if p.returncode is None}
        process = await spawning.spawn([program, *argv[1:]], env=env, cwd=pod.dir,
                                       stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL)
        pod.execs.add(process)
        return process

    # ---- internals --------------------------------------------------------------------------------------------

    def _find(self, namespace: str, name: str) -> _Pod:
        for pod in self._pods.values():
            if (pod.namespace, pod.name) == (namespace, name) and not pod.removing:
                return pod
        raise api_status.not_found("pods", name)

    @staticmethod
    def _container(pod: _Pod, name: str | None, default_first: bool = False) -> _Container:
        if name is None:
            if len(pod.containers) == 1 or (default_first and pod.containers):
                return next(iter(pod.containers.values()))
            raise api_status.bad_request(
                f"a container name must be specified for pod {pod.name}, choose one of: [{' '.join(pod.containers)}]")
        if name not in pod.containers:
            raise api_status.bad_request(f"container {name} is not valid for pod {pod.name}")
        return pod.containers[name]

    @staticmethod
    def _log_file(pod: _Pod, container: _Container, previous: bool) -> Path:
        if previous:
            if container.restart_count == 0 or not container.last_state:
                raise api_status.bad_request(
                    f'previous terminated container "{container.name}" in pod "{pod.name}" not found')
            return pod.log_dir(container.name) / f"{container.restart_count - 1}.log"
        return container.log_path or pod.log_dir(container.name) / f"{container.restart_count}.log"

    def _allocate_ip(self, requested: str | None) -> str:
        if requested:
            with contextlib.suppress(StatusError):
                return self.pod_ips.allocate(requested)
        return self.pod_ips.allocate()

    def _release(self, pod: _Pod) -> None:
        if pod.allocated:
            self.pod_ips.release(pod.ip)
        if pod.app_address is not None:
            self.pod_ips.release(pod.app_address)
            pod.app_address = None

    def _app_address(self, pod: _Pod) -> str:
        return (self._app_addresses.get(pod.uid) or pod.annotations.get(APP_ADDRESS_ANNOTATION) or pod.app_address
                or pod.ip)

    def _mount_service_account(self, pod: _Pod) -> bool:
        """Write the projected token volume as the kubelet would; ``False`` when the token cannot be had yet."""
        if self.issue_token is None or pod.spec.get("automountServiceAccountToken") is False:
            pod.mounted.set()
            return True
        account = pod.spec.get("serviceAccountName") or pod.spec.get("serviceAccount") or "default"
        try:
            token = self.issue_token(pod.namespace, account)
        except Exception as exc:  # the ServiceAccount may not exist yet: the kubelet retries the mount too
            logger.info("MountVolume.SetUp failed for pod %s/%s: %s", pod.namespace, pod.name, exc)
            return False
        folder = pod.dir / SERVICEACCOUNT_DIR
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(folder / "token", token)
        (folder / "namespace").write_text(pod.namespace)
        if self.ca_file is not None and self.ca_file.exists():
            (folder / "ca.crt").write_text(self.ca_file.read_text())
        pod.account_dir = folder
        pod.mounted.set()
        return True

    async def _retry_mount(self, pod: _Pod) -> None:
        delay = MOUNT_RETRY
        while not pod.removing and not self._mount_service_account(pod):
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_MOUNT_RETRY)

    def _namespace_of(self, ip: str) -> str:
        for pod in self._pods.values():
            if pod.ip == ip or self._app_address(pod) == ip:
                return pod.namespace
        return ""

    async def _dns_address(self) -> tuple[str, int] | None:
        if self.dns_server is not None:
            return self.dns_server
        if self.resolver is None:
            return None
        async with self._bridge_lock:
            if self._bridge is None:
                bridge = DnsBridge(self.resolver, self._namespace_of)
                await bridge.start()
                self._bridge = bridge
        return self._bridge.address

    async def _write_shims(self, pod: _Pod) -> None:
        # The binaries of Istio's images, so `kubectl exec … -- pilot-agent request GET clusters` (proxyv2) and
        # `… -- pilot-discovery request GET /debug/clusterz` (pilot) work as they do in real containers.
        for program, module in ((images.PROXY, images.AGENT_MODULE), (images.ISTIOD, images.ISTIOD_MODULE)):
            if any(images.match_image(c.image) is program for c in pod.containers.values()):
                shim = pod.bin_dir / program.name
                shim.write_text(f"#!/bin/sh\n# Written by labkit's node: {program.name} of pod "
                                f"{pod.namespace}/{pod.name}.\n"
                                f"PYTHONPATH={shlex.quote(str(images.SOURCE_ROOT))} exec {shlex.quote(self.python)} "
                                f"-s -m {module} \"$@\"\n")
                shim.chmod(0o755)
        dns = await self._dns_address()
        real_curl = shutil.which("curl", path=self._host_path)
        if dns is None or real_curl is None:
            return  # without a cluster DNS the machine's curl is the pod's curl; without curl, exec says so
        search = f"{pod.namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}"
        settings = {
            "LABKIT_SHIM_DNS": f"{dns[0]}:{dns[1]}",
            "LABKIT_SHIM_SEARCH": search,
            "LABKIT_SHIM_SOURCE": pod.ip,
            "LABKIT_SHIM_CURL": real_curl,
        }
        assignments = " ".join(f"{key}={shlex.quote(value)}" for key, value in settings.items())
        script = (f"#!/bin/sh\n# Written by labkit's node: curl as pod {pod.namespace}/{pod.name} runs it "
                  f"(cluster names resolved through the cluster DNS), then the machine's curl.\n"
                  f"{assignments} exec {shlex.quote(self.python)} -I -S "
                  f"{shlex.quote(str(PROGRAMS_DIR / 'curl_shim.py'))} \"$@\"\n")
        shim = pod.bin_dir / "curl"
        shim.write_text(script)
        shim.chmod(0o755)

    def _container_env(self, pod: _Pod, container: _Container, listen: str | None) -> dict[str, str]:
        env: dict[str, str] = {
            "PATH": f"{pod.bin_dir}{os.pathsep}{self._host_path}",
            "HOSTNAME": pod.name,
            "HOME": str(pod.dir),
            "POD_IP": pod.ip,
            "LABKIT_POD_UID": pod.uid,
        }
        if self.kubernetes_service is not None:
            host, port = self.kubernetes_service
            env.update({
                "KUBERNETES_SERVICE_HOST": host,
                "KUBERNETES_SERVICE_PORT": str(port),
                "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
                "KUBERNETES_PORT": f"tcp://{host}:{port}",
            })
        if self.ca_file is not None:
            env["LABKIT_KUBERNETES_CA_FILE"] = str(self.ca_file)
        if pod.account_dir is not None:
            env["LABKIT_SERVICEACCOUNT_DIR"] = str(pod.account_dir)
        if self.xds_root is not None:
            env["LABKIT_XDS_ROOT"] = str(self.xds_root)
        if pod.sidecar:
            app_address = self._app_address(pod)
            if _is_sidecar(container.spec):
                env["LABKIT_APP_ADDRESS"] = app_address
            else:
                proxy = f"http://{pod.ip}:{PROXY_HTTP_PORT}"
                bypass = ",".join(dict.fromkeys(["localhost", "127.0.0.1", pod.ip, app_address]))
                env.update({"http_proxy": proxy, "HTTP_PROXY": proxy, "no_proxy": bypass, "NO_PROXY": bypass})
        if container.launch is not None:
            if container.launch.program.site:
                env["PYTHONPATH"] = str(images.SOURCE_ROOT)
            env.update(dict(container.launch.program.env))
        for item in container.spec.get("env") or []:
            value = self._env_value(pod, item)
            if value is not None and item["name"] != "PATH":  # the shims must stay first on PATH
                env[item["name"]] = _expand(value, env)
        if listen:
            env["LABKIT_LISTEN"] = listen
        return env

    def _env_value(self, pod: _Pod, item: dict[str, Any]) -> str | None:
        if "value" in item:
            return str(item["value"])
        source = item.get("valueFrom") or {}
        if "fieldRef" in source:
            path = source["fieldRef"].get("fieldPath", "")
            fields = {
                "metadata.name": pod.name,
                "metadata.namespace": pod.namespace,
                "metadata.uid": pod.uid,
                "status.podIP": pod.ip,
                "status.podIPs": pod.ip,
                "status.hostIP": self.host_ip,
                "spec.serviceAccountName": pod.spec.get("serviceAccountName") or "default",
                "spec.nodeName": pod.spec.get("nodeName") or self.node_name,
            }
            match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
            if match:
                return (pod.annotations if match.group(1) == "annotations" else pod.labels).get(match.group(2), "")
            return fields.get(path, "")
        for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
            if key in source and self.resolve_ref is not None:
                ref = source[key]
                return self.resolve_ref(pod.namespace, kind, ref.get("name", ""), ref.get("key", ""))
        return None

    def _listen_port(self, container: _Container, env: dict[str, str]) -> int | None:
        launch = container.launch
        declared = [int(p["containerPort"]) for p in container.spec.get("ports") or []
                    if (p.get("protocol") or "TCP") == "TCP" and "containerPort" in p]
        if launch is None or launch.host_argv is not None or not launch.program.default_ports:
            return None
        if launch.program.name == "helloworld" and env.get("SERVICE_PORT", "").isdigit():
            return int(env["SERVICE_PORT"])
        default = launch.program.default_ports[0]
        # A manifest declaring one other port means "the app listens there": honour it rather than be unreachable.
        return declared[0] if len(declared) == 1 and default not in declared else default

    def _argv(self, pod: _Pod, container: _Container) -> list[str]:
        launch = container.launch
        assert launch is not None
        if launch.host_argv is not None:
            argv = [_expand(arg, container.env) for arg in launch.host_argv]
            program = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=container.env.get("PATH"))
            if program is None:
                raise FileNotFoundError(f'exec: "{argv[0]}": executable file not found in $PATH')
            return [program, *argv[1:]]
        # Kubernetes expands $(VAR) in args too (Istio's sidecar passes --domain $(POD_NAMESPACE).svc.cluster.local).
        expanded = images.Launch(launch.program, tuple(_expand(arg, container.env) for arg in launch.args))
        return images.python_argv(expanded, self.python)

    async def _supervise(self, pod: _Pod, container: _Container) -> None:
        """Run one container for the pod's life: start, wait, restart with back-off as the policy says."""
        if container.launch is None:
            await self._fail_pulls(pod, container)
            return
        await pod.mounted.wait()  # containers start once their volumes are there, as on a kubelet
        self.events.image_ready(_ref(pod), container.name, container.image,
                                container.spec.get("imagePullPolicy") or "IfNotPresent")
        backoff = 0.0
        cap = self.restart_backoff * MAX_BACKOFF_FACTOR
        while not pod.removing:
            started_at = time.time()
            exit_code, reason, message = await self._run_once(pod, container)
            if pod.removing:
                return
            finished = time.time()
            terminated: dict[str, Any] = {"containerID": container.container_id, "exitCode": exit_code,
                                          "finishedAt": rfc3339(finished), "reason": reason,
                                          "startedAt": rfc3339(started_at)}
            if message:
                terminated["message"] = message
            container.ready = False
            container.started = False
            container.process = None
            policy = pod.restart_policy
            if policy == "Never" or (policy == "OnFailure" and exit_code == 0):
                container.state = {"terminated": terminated}
                self._publish(pod)
                return
            container.last_state = {"terminated": terminated}
            if finished - started_at >= 2 * cap:
                backoff = 0.0  # a container that ran long enough starts over, as the kubelet's back-off does
            if backoff > 0:
                self.events.crash_backing_off(_ref(pod), container.name)
                container.state = {"waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {_format_duration(backoff)} restarting failed container={container.name} "
                               f"pod={pod.name}_{pod.namespace}({pod.uid})",
                }}
                self._publish(pod)
                await asyncio.sleep(backoff)
            else:
                container.state = {"terminated": terminated}
                self._publish(pod)
            backoff = min(max(backoff * 2, self.restart_backoff), cap)
            container.restart_count += 1

    async def _fail_pulls(self, pod: _Pod, container: _Container) -> None:
        """An image no program stands for: pull, fail, back off (doubling), and say so each time, as a kubelet."""
        delay = self.restart_backoff
        resync = self.restart_backoff / 2  # the kubelet looks at a backing-off pod again and again meanwhile
        while not pod.removing:
            self.events.pull_failed(_ref(pod), container.name, container.image)
            container.state = {"waiting": {"reason": "ErrImagePull",
                                           "message": images.pull_error_message(container.image)}}
            self._publish(pod)
            await asyncio.sleep(min(self.restart_backoff, 1.0))
            container.state = {"waiting": {"reason": "ImagePullBackOff",
                                           "message": images.pull_backoff_message(container.image)}}
            self._publish(pod)
            waited = 0.0
            while waited < delay and not pod.removing:
                self.events.pull_backing_off(_ref(pod), container.name, container.image)
                step = min(resync, delay - waited)
                await asyncio.sleep(step)
                waited += step
            delay = min(delay * 2, self.restart_backoff * MAX_BACKOFF_FACTOR)

    async def _run_once(self, pod: _Pod, container: _Container) -> tuple[int, str, str]:
        """Start the container's process and wait for it; returns ``(exitCode, reason, message)``."""
        app_address = self._app_address(pod)
        container.env = self._container_env(pod, container, None)
        port = self._listen_port(container, container.env)
        if port is not None:
            container.env["LABKIT_LISTEN"] = f"{app_address}:{port}"
        log_dir = pod.log_dir(container.name)
        log_dir.mkdir(parents=True, exist_ok=True)
        container.log_path = log_dir / f"{container.restart_count}.log"
        container.ever_created = True
        container.container_id = f"containerd://{secrets.token_hex(32)}"
        try:
            argv = self._argv(pod, container)
            with container.log_path.open("ab") as log:
                process = await spawning.spawn(argv, env=container.env, cwd=pod.dir, stdout=log,
                                               stderr=asyncio.subprocess.STDOUT)
        except OSError as exc:
            message = (f"failed to create containerd task: failed to create shim task: OCI runtime "
                       f"create failed: unable to start container process: {exc}: unknown")
            self.events.start_failed(_ref(pod), container.name, message)
            return 128, "StartError", message
        self.events.created(_ref(pod), container.name)
        self.events.started(_ref(pod), container.name)
        container.process = process
        container.started = True
        container.state = {"running": {"startedAt": rfc3339()}}
        self._publish(pod)
        probe_host = pod.ip if _probes_pod_ip(pod, container) else app_address
        readiness = asyncio.create_task(self._readiness(pod, container, process, probe_host, port))
        try:
            code = await process.wait()
        finally:
            readiness.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await readiness
        # A signal shows as 128+N, as container runtimes report it (SIGKILL → 137).
        exit_code = 128 - code if code < 0 else code
        return exit_code, "Completed" if exit_code == 0 else "Error", ""

    async def _readiness(self, pod: _Pod, container: _Container, process: asyncio.subprocess.Process,
                         host: str, listen_port: int | None) -> None:
        probe = container.spec.get("readinessProbe")
        if not probe:
            declared = [int(p["containerPort"]) for p in container.spec.get("ports") or [] if "containerPort" in p]
            port = declared[0] if declared else listen_port
            # No probe: ready once running and, if it serves, once it accepts connections (so Endpoints never
            # lead to a port nobody listens on yet).
            while port is not None and not await probing.tcp_open(host, port, 1.0):
                if process.returncode is not None:
                    return
                await asyncio.sleep(PORT_POLL)
            self._set_ready(pod, container, True)
            return
        scale = self.probe_period_scale
        started = asyncio.get_running_loop().time()

        async def run_exec(argv: list[str], timeout: float) -> bool:
            return await self._probe_exec(pod, container, argv, timeout)

        startup = container.spec.get("startupProbe")
        if startup:
            # As the kubelet: readiness is not probed until the startup probe has succeeded once; a fast startup
            # period (Istio's sidecar: 1 s) is what makes a pod Ready soon after its proxy is.
            await asyncio.sleep(float(startup.get("initialDelaySeconds") or 0) * scale)
            while not await probing.check(startup, container.spec, host, run_exec):
                if process.returncode is not None:
                    return
                await asyncio.sleep(float(startup.get("periodSeconds") or 10) * scale)
        delay = float(probe.get("initialDelaySeconds") or 0) * scale
        await asyncio.sleep(max(0.0, started + delay - asyncio.get_running_loop().time()))
        period = float(probe.get("periodSeconds") or 10) * scale
        success_threshold = int(probe.get("successThreshold") or 1)
        failure_threshold = int(probe.get("failureThreshold") or 3)
        successes = failures = 0

        while True:
            if await probing.check(probe, container.spec, host, run_exec):
                successes, failures = successes + 1, 0
                if successes >= success_threshold:
                    self._set_ready(pod, container, True)
            else:
                successes, failures = 0, failures + 1
                self.events.unhealthy(_ref(pod), container.name, probe,
                                      f"{host}:{probing.resolve_port(_action(probe).get('port'), container.spec)}")
                if failures >= failure_threshold:
                    self._set_ready(pod, container, False)
            await asyncio.sleep(period)

    async def _probe_exec(self, pod: _Pod, container: _Container, argv: list[str], timeout: float) -> bool:
        if not argv:
            return False
        program = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=container.env.get("PATH"))
        if program is None:
            return False
        process = await spawning.spawn([program, *argv[1:]], env=container.env, cwd=pod.dir,
                                       stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            return await asyncio.wait_for(process.wait(), timeout) == 0
        except TimeoutError:
            return False
        finally:
            await spawning.terminate(process, 0)

    def _set_ready(self, pod: _Pod, container: _Container, ready: bool) -> None:
        if container.ready != ready:
            container.ready = ready
            self._publish(pod)

    def _status(self, pod: _Pod) -> dict[str, Any]:
        containers = list(pod.containers.values())
        statuses = [c.status() for c in containers]
        if not all(c.ever_created for c in containers):
            phase = "Pending"
        elif pod.restart_policy != "Always" and all("terminated" in c.state for c in containers):
            phase = "Succeeded" if all(c.state["terminated"]["exitCode"] == 0 for c in containers) else "Failed"
        else:
            phase = "Running"
        all_ready = bool(containers) and all(c.ready for c in containers)
        if all_ready != pod.was_ready:
            pod.was_ready = all_ready
            pod.ready_transition = rfc3339()

        def condition(kind: str, true: bool, when: str) -> dict[str, Any]:
            item: dict[str, Any] = {"lastProbeTime": None, "lastTransitionTime": when,
                                    "status": "True" if true else "False", "type": kind}
            if not true:
                unready = " ".join(c.name for c in containers if not c.ready)
                item["reason"] = "PodCompleted" if phase in {"Succeeded", "Failed"} else "ContainersNotReady"
                item["message"] = f"containers with unready status: [{unready}]"
            return item

        return {
            "conditions": [
                condition("PodReadyToStartContainers", True, pod.start_time),
                condition("Initialized", True, pod.start_time),
                condition("Ready", all_ready, pod.ready_transition),
                condition("ContainersReady", all_ready, pod.ready_transition),
                condition("PodScheduled", True, pod.start_time),
            ],
            "containerStatuses": statuses,
            "hostIP": self.host_ip,
            "hostIPs": [{"ip": self.host_ip}],
            "phase": phase,
            "podIP": pod.ip,
            "podIPs": [{"ip": pod.ip}],
            "qosClass": _qos_class(pod.spec),
            "startTime": pod.start_time,
        }

    def _publish(self, pod: _Pod) -> None:
        if pod.removing:
            return
        status = self._status(pod)
        if status == pod.published:
            return
        pod.published = status
        try:
            self.on_status(pod.namespace, pod.name, copy.deepcopy(status))
        except Exception:  # the store's trouble must not stop the node from supervising
            logger.exception("on_status failed for pod %s/%s", pod.namespace, pod.name)


def _qos_class(spec: dict[str, Any]) -> str:
    resources = [c.get("resources") or {} for c in spec.get("containers") or []]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        (r.get("limits") or {}).get(kind) and (r.get("requests") or r.get("limits") or {}).get(kind)
        == (r.get("limits") or {}).get(kind)
        for r in resources for kind in ("cpu", "memory"))
    return "Guaranteed" if guaranteed else "Burstable"


def _ref(pod: _Pod) -> PodRef:
    return PodRef(pod.namespace, pod.name, pod.uid)


def _action(probe: dict[str, Any]) -> dict[str, Any]:
    return probe.get("httpGet") or probe.get("tcpSocket") or {}


def _tail(data: bytes, lines: int | None) -> bytes:
    if lines is None or lines < 0:
        return data
    if lines == 0:
        return b""
    kept = data.splitlines(keepends=True)[-lines:]
    return b"".join(kept)


def _is_sidecar(container: dict[str, Any]) -> bool:
    """Istio's injected sidecar: ``istio-proxy`` running the proxy image as ``proxy sidecar``."""
    if container.get("name") != PROXY_CONTAINER:
        return False
    program = images.match_image(container.get("image", ""))
    args = list(container.get("args") or [])
    return program is images.PROXY and len(args) > 1 and args[1] == "sidecar"


def _has_sidecar(spec: dict[str, Any]) -> bool:
    return any(_is_sidecar(container) for container in spec.get("containers") or [])


def _probes_pod_ip(pod: _Pod, container: _Container) -> bool:
    """Whether the container's readiness is checked at the pod IP rather than at the app's address."""
    if _is_sidecar(container.spec) or (container.launch is not None and container.launch.program.mesh_proxy):
        return True
    if not pod.sidecar:
        return False
    probe = container.spec.get("readinessProbe") or {}
    action = probe.get("httpGet") or probe.get("tcpSocket") or {}
    # Istio rewrites app probes to the agent (port 15020, /app-health/…): those are the agent's to answer.
    return probing.resolve_port(action.get("port"), container.spec) in AGENT_PORTS


def _write_private(path: Path, text: str) -> None:
    """Write a credential readable by this user only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
