"""The node: runs pods as local processes and reports their status the way a kubelet does.

Whoever watches the store hands pods to :meth:`NodeRuntime.sync_pod` and :meth:`NodeRuntime.remove_pod`;
the node reports each pod's full ``status`` through ``on_status`` whenever it changes. It never reads
the store itself, so it can be tested (and reasoned about) with plain dicts.

What a pod becomes here (this module keeps the pods; the parts of a pod's life are modules of their own):

* an IP of its own from the pod network (``127.X.k.N``, :mod:`labkit.emulator.network.addresses`), kept for
  the pod's life and released when it is removed;
* a directory ``<state_dir>/pods/<ns>_<name>_<uid>/`` holding its logs (``logs/<container>/<n>.log``,
  one file per restart, as the kubelet keeps them), ``bin/`` (shims first on the pod's ``PATH``,
  :mod:`.environment`), ``serviceaccount/`` (the projected token the kubelet would mount), ``tmp/`` and each
  volume at ``<mountPath>`` inside it (at ``.volumes/<name>/`` when a container mounts part of it by ``subPath``);
* on Linux, a sandbox (:mod:`.sandboxing`) that every container process and exec enters: the pod's name as
  hostname, and a filesystem view where ``/tmp``, the service-account path and each volume's ``mountPath`` are
  those folders of the pod's directory;
* one process per container (:mod:`.images` says which program plays its image), in a process group of its
  own that dies with the emulator (:mod:`.spawning`), with the environment of :mod:`.environment`, restarted
  with back-off as the restart policy says (:mod:`.supervision`) and probed for readiness (:mod:`.probing`);
* a ``status`` (:mod:`.status`) published whenever any of that changes.

The seam for sidecars: an app listens on ``<pod IP>:<containerPort>`` unless the pod says otherwise. A
pod whose injector declared a sidecar (annotation ``labkit.io/sidecar``, :class:`~.pods.SidecarDeclaration`)
leaves ``<pod IP>:<port>`` to its proxy, which forwards to the apps, so the apps listen elsewhere: at the
address named by the annotation ``labkit.io/app-address``, or by :meth:`NodeRuntime.set_app_address` (for
callers without the pod object; it wins), or else at a second address the node takes from the pod network
for the pod's life. Readiness checks follow the app. The address takes effect when a container (re)starts,
so set it before the first :meth:`~NodeRuntime.sync_pod`. The node knows nothing else of the mesh.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import secrets
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.core.contract import APP_ADDRESS_ANNOTATION
from labkit.core.kubetime import format_time
from labkit.core.wire import Obj
from labkit.emulator.apimachinery import status as api_status
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.network.addresses import IpPool
from labkit.emulator.node import attaching, forking, hooks, logfiles, probing, sandboxing, spawning, terminals
from labkit.emulator.node.environment import (
    PROGRAMS_DIR,
    ContainerConfigError,
    NodeEnvironment,
    RefResolver,
    expand,
    listen_port,
    unset_references,
)
from labkit.emulator.node.images import SOURCE_ROOT
from labkit.emulator.node.pods import ContainerRecord, PodRecord
from labkit.emulator.node.reporting import EventSink, KubeletEvents, PodRef
from labkit.emulator.node.resolving import DnsBridge, Resolver
from labkit.emulator.node.status import pod_status
from labkit.emulator.node.supervision import DEFAULT_BACKOFF, supervise
from labkit.errors import ExecNotFoundError

logger = logging.getLogger(__name__)

__all__ = ["PROGRAMS_DIR", "ExecNotFoundError", "NodeRuntime"]

SERVICEACCOUNT_DIR = "serviceaccount"
VOLUMES_DIR = ".volumes"  # a volume some container mounts by subPath lives in <pod folder>/.volumes/<name>/
MOUNT_RETRY = 0.5
MAX_MOUNT_RETRY = 5.0
GRACE_CAP = 2.0
FOLLOW_POLL = 0.05
LOG_DRAIN = 1.0  # how long an ended terminal container's output may still be on its way to the log file

StatusCallback = Callable[[str, str, dict[str, Any]], None]
# (namespace, service account, audiences, lifetime in seconds or None for the default) -> a bound token,
# what the API server's TokenRequest (serviceaccounts/<name>/token) hands a kubelet.
TokenIssuer = Callable[[str, str, tuple[str, ...], int | None], str]
DataReader = Callable[[str, str, str], "dict[str, str] | None"]

INSTALL_HINTS = {
    "curl": "labkit runs the machine's curl inside pods: install it (Debian/Ubuntu: sudo apt-get install curl; "
            "Fedora: sudo dnf install curl; macOS: brew install curl).",
}


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
        issue_token: ``(namespace, service account, audiences, seconds) -> token`` (a TokenRequest) for the
            service-account directory and for ``projected`` volumes' ``serviceAccountToken`` sources; without it
            pods get neither.
        resolver: the cluster DNS as an object; served on loopback for the shim when ``dns_server`` is not given.
        resolve_ref: ``(namespace, kind, name, key) -> value`` for ``secretKeyRef`` (kind ``Secret``) and
            ``configMapKeyRef`` (kind ``ConfigMap``); ``None`` for a missing key.
        read_data: ``(namespace, kind, name) -> data`` (Secrets decoded) for ``configMap`` and ``secret`` volumes;
            ``None`` for a missing object.
        restart_backoff: the first CrashLoopBackOff delay in seconds (Kubernetes: 10); it doubles up to 30 times
            this. Tests pass a fraction of a second.
        probe_period_scale: multiplies probes' ``periodSeconds`` and ``initialDelaySeconds`` (tests: 0.05).
        grace_cap: the longest a terminating container gets between SIGTERM and SIGKILL.
        python: the interpreter for labkit programs.
        zygote: whether labkit programs run as ``python -m`` start as forks of a zygote of this node
            (:mod:`.forking`); by default unless ``LABKIT_ZYGOTE=0``.
        record_event: where the kubelet's Events go (``Pulled``, ``Started``, ``BackOff`` …); none by default.
        sandbox: whether every container and exec runs in its pod's sandbox (:mod:`.sandboxing`: hostname,
            ``/tmp``, service-account files and volumes at their paths); by default where the OS allows it
            and ``LABKIT_SANDBOX`` is not ``0``.
        network: an open file descriptor of the network namespace this node's pods join
            (:mod:`~labkit.emulator.network.separation`); -1 keeps them on the emulator's network.
    """

    def __init__(self, cluster: str, node_name: str, state_dir: Path, pod_ips: IpPool, on_status: StatusCallback,
                 *, host_ip: str = "127.0.0.1", kubernetes_service: tuple[str, int] | None = None,
                 dns_server: tuple[str, int] | None = None, resolver: Resolver | None = None,
                 resolve_ref: RefResolver | None = None, read_data: DataReader | None = None,
                 ca_file: Path | None = None, issue_token: TokenIssuer | None = None,
                 restart_backoff: float = DEFAULT_BACKOFF, probe_period_scale: float = 1.0,
                 grace_cap: float = GRACE_CAP, python: str = sys.executable, zygote: bool | None = None,
                 record_event: EventSink | None = None, sandbox: bool | None = None, network: int = -1):
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
        self.read_data = read_data
        self.ca_file = ca_file
        self.issue_token = issue_token
        self.restart_backoff = restart_backoff
        self.probe_period_scale = probe_period_scale
        self.grace_cap = grace_cap
        self.python = python
        self.events = KubeletEvents(record_event)
        self.stamper = logfiles.Stamper()
        self.network = network
        self.zygote = forking.Zygote(python, self.state_dir / "zygote.log", network=network) \
            if (forking.enabled() if zygote is None else zygote) else None
        self.sandboxed = sandboxing.available() if sandbox is None else sandbox
        self._pods: dict[str, PodRecord] = {}
        self._app_addresses: dict[str, str] = {}
        self._sources_changed = asyncio.Event()
        self._bridge: DnsBridge | None = None
        self._bridge_lock = asyncio.Lock()
        self._host_path = os.environ.get("PATH", os.defpath)
        self.environment = NodeEnvironment(node_name, host_ip, self._host_path, kubernetes_service, ca_file,
                                           resolve_ref, python, read_data)

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
        record = PodRecord(pod, uid, ip, directory, allocated)
        record.network = self.network if allocated else -1  # a hostNetwork pod stays on the node's network
        self._pods[uid] = record
        try:
            if record.sidecar and not (self._app_addresses.get(uid) or record.annotations.get(APP_ADDRESS_ANNOTATION)):
                record.app_address = self.pod_ips.allocate()
            directory.mkdir(parents=True, exist_ok=True)
            record.bin_dir.mkdir(exist_ok=True)
            (directory / "tmp").mkdir(mode=0o1777, exist_ok=True)
            (directory / "tmp").chmod(0o1777)  # /tmp's own mode, whatever the umask
            self.environment.write_shims(record, await self._dns_address())
        except BaseException:
            self._pods.pop(uid, None)
            self._release(record)
            raise
        if not self._mount_volumes(record):
            record.mounting = asyncio.create_task(self._retry_mount(record), name=f"mount {namespace}/{name}")
        self._publish(record)
        for container in record.containers.values():
            container.task = asyncio.create_task(self._supervise(record, container),
                                                 name=f"container {namespace}/{name}/{container.name}")

    async def remove_pod(self, namespace: str, name: str, uid: str, *, grace: float | None = None) -> None:
        """Stop the pod's processes (SIGTERM, SIGKILL after the grace period, capped) and release its IP.

        Unknown pods are ignored: removing is idempotent.

        Args:
            namespace: the pod's namespace.
            name: the pod's name.
            uid: the pod's uid.
            grace: the deletion's grace period (``deletionGracePeriodSeconds``); the pod's
                ``terminationGracePeriodSeconds`` when ``None``.
        """
        pod = self._pods.get(uid)
        if pod is None or (pod.namespace, pod.name) != (namespace, name):
            return
        pod.removing = True
        if pod.mounting is not None:
            pod.mounting.cancel()
        grace = min(float(grace if grace is not None else pod.spec.get("terminationGracePeriodSeconds", 30)),
                    self.grace_cap)
        for container in pod.containers.values():
            if container.process is not None:
                self.events.killing(PodRef(pod.namespace, pod.name, pod.uid), container.name)
        # preStop hooks first, within the grace period; what is left of it separates SIGTERM from SIGKILL.
        started = time.monotonic()
        done = await asyncio.gather(*(hooks.pre_stop(pod, c, self._app_address(pod), grace)
                                      for c in pod.containers.values()))
        for container, ok in zip(pod.containers.values(), done, strict=True):
            if not ok:
                self.events.pre_stop_failed(PodRef(pod.namespace, pod.name, pod.uid), container.name)
        grace = max(grace - (time.monotonic() - started), 0.0)
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

    async def start(self) -> None:
        """Get the node ready for its first pods: start its zygote, whose imports (istiod's, the agent's) then
        overlap the cluster's set-up instead of holding the first istiod in ContainerCreating."""
        if self.zygote is not None:
            await self.zygote.prepare()

    async def shutdown(self) -> None:
        """Stop every pod and wait for every process to be gone."""
        await asyncio.gather(*(self.remove_pod(p.namespace, p.name, p.uid) for p in list(self._pods.values())))
        self.stamper.close()
        if self.zygote is not None:
            await self.zygote.close()
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
             previous: bool = False, timestamps: bool = False, since: float | None = None) -> bytes:
        """What ``kubectl logs`` prints: the container's stdout and stderr.

        Args:
            namespace: the pod's namespace.
            name: the pod's name.
            container: the container; may be left out when the pod has only one.
            tail: only the last ``tail`` lines.
            previous: the instance before the last restart (``kubectl logs --previous``).
            timestamps: start each line with the time it was written (``--timestamps``).
            since: only lines written at or after this time (seconds since the epoch; ``--since``).

        Raises:
            StatusError: 404 for an unknown pod, 400 for an unknown container or no previous instance.
        """
        pod = self._find(namespace, name)
        record = self._container(pod, container)
        path = self._log_file(pod, record, previous)
        if not timestamps and since is None:
            data = path.read_bytes() if path.exists() else b""
            return _tail(data, tail)
        entries, _ = logfiles.read(path)
        return logfiles.render(entries, timestamps=timestamps, since=since, tail=tail)

    async def follow_logs(self, namespace: str, name: str, container: str | None = None, *,
                          tail: int | None = None, timestamps: bool = False,
                          since: float | None = None) -> AsyncIterator[bytes]:
        """``kubectl logs -f``: what is there, then what comes, until the container's process ends.

        Args:
            namespace: the pod's namespace.
            name: the pod's name.
            container: the container; may be left out when the pod has only one.
            tail: start with only the last ``tail`` lines.
            timestamps: start each line with the time it was written; lines then go out whole.
            since: start with only the lines written at or after this time (seconds since the epoch).
        """
        pod = self._find(namespace, name)
        record = self._container(pod, container)
        path = self._log_file(pod, record, previous=False)
        process = record.process
        entries, position = logfiles.read(path, partial=not timestamps)
        if data := logfiles.render(entries, timestamps=timestamps, since=since, tail=tail):
            yield data
        async for chunk in self._follow(pod, record, process, path, position, timestamps=timestamps):
            yield chunk

    async def _follow(self, pod: PodRecord, record: ContainerRecord, process: spawning.Process | None, path: Path,
                      position: int, *, timestamps: bool = False) -> AsyncIterator[bytes]:
        """What the container instance ``process`` writes to ``path`` after ``position``, until it has ended."""
        while True:
            # The supervisor lets go of the process once its output has reached the file.
            ended = pod.removing or record.log_path != path or process is None or record.process is not process
            entries, after = logfiles.read(path, position, partial=not timestamps or ended)
            if entries:
                position = after
                yield logfiles.render(entries, timestamps=timestamps)
                continue
            if ended:
                return
            await asyncio.sleep(FOLLOW_POLL)

    async def attach(self, namespace: str, name: str, container: str | None) -> attaching.Attachment:
        """``kubectl attach`` (and ``run -i``): the running container's stdin, output and terminal.

        Output is what the container writes from now on; the first attach of a ``stdinOnce`` container (what
        ``kubectl run -i`` makes) gets it from the start, so a command quicker than the attach loses nothing.

        Args:
            namespace: the pod's namespace.
            name: the pod's name.
            container: the container; the first one when ``None``.

        Raises:
            StatusError: 404 for an unknown pod, 400 for an unknown or not running container.
        """
        pod = self._find(namespace, name)
        record = self._container(pod, container, default_first=True)
        process, path = record.process, record.log_path
        if process is None or process.returncode is not None or path is None:
            raise api_status.bad_request(f'unable to upgrade connection: container not found ("{record.name}")')
        once = bool(record.spec.get("stdinOnce"))
        start = 0 if once and not record.stdin_claimed else (path.stat().st_size if path.exists() else 0)
        return attaching.Attachment(record, self._follow(pod, record, process, path, start), once=once)

    async def exec(self, namespace: str, name: str, container: str | None, argv: list[str], *,
                   stdin: bool = False, tty: bool = False,
                   size: tuple[int, int] | None = None) -> asyncio.subprocess.Process | terminals.TerminalProcess:
        """Run ``argv`` as the pod (its environment, directory and shims); the caller owns the pipes and waits.

        Args:
            namespace: the pod's namespace.
            name: the pod's name.
            container: the container whose environment to use; the first one when ``None``.
            argv: the command, looked up on the pod's ``PATH`` (its ``bin/`` first, then the machine's).
            stdin: give the process a stdin pipe (``kubectl exec -i``); otherwise it reads from /dev/null.
            tty: run it on a terminal of its own (``kubectl exec -t``, :mod:`.terminals`) instead of pipes.
            size: the terminal's ``(width, height)``, the client's window, set before the command starts.

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
        if tty:
            master, slave = terminals.open_pty(*(size or (None, None)))
            try:
                process = await spawning.spawn([program, *argv[1:]], env=dict(env, TERM=env.get("TERM", "xterm")),
                                               cwd=pod.dir, stdin=slave, stdout=slave, stderr=slave, terminal=True,
                                               sandbox=self._sandbox(pod, record), network=pod.network)
            except BaseException:
                os.close(master)
                raise
            finally:
                os.close(slave)
            pod.execs.add(process)  # type: ignore[arg-type]
            writer, reader = await terminals.master_streams(master)
            return terminals.TerminalProcess(process, master, writer, reader)
        process = await spawning.spawn([program, *argv[1:]], env=env, cwd=pod.dir,
                                       stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                                       sandbox=self._sandbox(pod, record), network=pod.network)
        pod.execs.add(process)
        return process

    async def connect(self, namespace: str, name: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TCP connection to ``port`` of the pod, as a kubelet's port-forward dials ``localhost:port`` inside it.

        A pod's "localhost" here is where its programs listen: the apps' address first (a sidecar holds the pod
        IP), then the pod IP (the proxy's own ports, and pods without a sidecar).

        Args:
            namespace: the pod's namespace.
            name: the pod's name.
            port: the port inside the pod.

        Raises:
            StatusError: 404 for an unknown pod.
            OSError: nothing listens there; the message is Go's dial error, which a kubelet reports.
        """
        pod = self._find(namespace, name)
        addresses = list(dict.fromkeys((self._app_address(pod), pod.ip)))
        for address in addresses:
            with contextlib.suppress(OSError):
                return await asyncio.open_connection(address, port)
        raise ConnectionRefusedError(f"dial tcp4 {addresses[0]}:{port}: connect: connection refused")

    # ---- internals --------------------------------------------------------------------------------------------

    def _find(self, namespace: str, name: str) -> PodRecord:
        for pod in self._pods.values():
            if (pod.namespace, pod.name) == (namespace, name) and not pod.removing:
                return pod
        raise api_status.not_found("pods", name)

    @staticmethod
    def _container(pod: PodRecord, name: str | None, default_first: bool = False) -> ContainerRecord:
        if name is None:
            if len(pod.containers) == 1 or (default_first and pod.containers):
                return next(iter(pod.containers.values()))
            raise api_status.bad_request(
                f"a container name must be specified for pod {pod.name}, choose one of: [{' '.join(pod.containers)}]")
        if name not in pod.containers:
            raise api_status.bad_request(f"container {name} is not valid for pod {pod.name}")
        return pod.containers[name]

    @staticmethod
    def _log_file(pod: PodRecord, container: ContainerRecord, previous: bool) -> Path:
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

    def _release(self, pod: PodRecord) -> None:
        if pod.allocated:
            self.pod_ips.release(pod.ip)
        if pod.app_address is not None:
            self.pod_ips.release(pod.app_address)
            pod.app_address = None

    def _app_address(self, pod: PodRecord) -> str:
        return (self._app_addresses.get(pod.uid) or pod.annotations.get(APP_ADDRESS_ANNOTATION) or pod.app_address
                or pod.ip)

    def _sandbox(self, pod: PodRecord, container: ContainerRecord, *,
                 starting: bool = False) -> sandboxing.Sandbox | None:
        """What ``container``'s processes (and its execs) see, or ``None`` where pods run unsandboxed.

        ``starting``: for the container's start, which takes a new snapshot of the files it mounts by ``subPath``
        (its execs see the same ones).

        The pod's folder holds every path: its ``tmp/`` is ``/tmp``, ``serviceaccount/`` the standard
        service-account path, and each of the container's volume mounts a folder in it (where the node writes
        ConfigMaps, Secrets and tokens, and where emptyDirs start empty; :meth:`_mount_source` says which), so the
        node's updates show at once.
        """
        if not self.sandboxed:
            return None
        tmp = pod.dir / "tmp"
        if not _inside(pod.dir, tmp) or not tmp.is_dir():  # the pod's programs may have replaced it with a link
            tmp.unlink(missing_ok=True)
            tmp.mkdir(mode=0o1777)
            tmp.chmod(0o1777)
        binds = [sandboxing.Bind(str(tmp), "/tmp")]
        if pod.account_dir is not None and _inside(pod.dir, pod.account_dir):
            binds.append(sandboxing.Bind(str(pod.account_dir), sandboxing.SERVICEACCOUNT_PATH, read_only=True))
        kinds = {v.get("name"): v for v in pod.spec.get("volumes") or []}
        layout = _VolumeLayout.of(pod)
        for index, mount in enumerate(container.spec.get("volumeMounts") or []):
            path = os.path.normpath(mount.get("mountPath") or "/")
            if path == "/" or not path.startswith("/"):
                continue
            volume = kinds.get(mount.get("name")) or {}
            written = any(k in volume for k in ("configMap", "secret", "projected", "downwardAPI"))
            source = self._mount_source(pod, container, index, layout, csi="csi" in volume, written=written,
                                        starting=starting)
            binds.append(sandboxing.Bind(str(source), path, read_only=bool(mount.get("readOnly")) or written))
        workdir = os.path.normpath(container.spec.get("workingDir") or "/")
        source = self._workdir_source(pod, workdir, binds) if workdir != "/" else None
        if source is not None and not any(bind.target == workdir for bind in binds):
            binds.append(sandboxing.Bind(str(source), workdir))
        binds.sort(key=lambda bind: bind.target.count("/"))  # parents first: a child mount is not hidden
        scratch = _folder_in(pod.dir, ".sandbox")
        # The node's folder (the pods' Unix sockets, the CA), the interpreter, Envoy and labkit's source stay at
        # their own paths even when one of the pod's mounts (its /tmp) covers them.
        keep = dict.fromkeys(str(p) for p in (self.state_dir, pod.dir, Path(self.python).parent, Path(sys.prefix),
                                              SOURCE_ROOT, *((self.ca_file.parent,) if self.ca_file else ()),
                                              *(Path(os.environ[v]).parent for v in ("ENVOY_BIN",) if v in os.environ)))
        # A host-network pod shares the node's hostname, as it shares the node's network.
        hostname = self.node_name if pod.spec.get("hostNetwork") else pod.name
        return sandboxing.Sandbox(hostname, tuple(binds), tuple(keep), workdir=workdir if source else str(pod.dir),
                                  scratch=str(scratch or ""), root=str(pod.dir.resolve()))

    @staticmethod
    def _workdir_source(pod: PodRecord, workdir: str, binds: list[sandboxing.Bind]) -> Path | None:
        """The folder the working directory is: inside the deepest mount that holds it (an emptyDir's folder may lie
        elsewhere in the pod's folder), else the pod's ``<workingDir>`` folder."""
        holders = [b for b in binds if workdir == b.target or workdir.startswith(b.target.rstrip("/") + "/")]
        if not holders:
            return _folder_in(pod.dir, workdir)
        holder = max(holders, key=lambda bind: bind.target.count("/"))
        source = Path(holder.source) / os.path.relpath(workdir, holder.target)
        if not source.is_dir() and _inside(pod.dir, source) and not holder.read_only:
            source.mkdir(parents=True, exist_ok=True)
        return source if source.is_dir() and _inside(pod.dir, source) else None

    @staticmethod
    def _mount_source(pod: PodRecord, container: ContainerRecord, index: int, layout: _VolumeLayout, *, csi: bool,
                      written: bool, starting: bool) -> Path:
        """The folder (or file) in the pod's folder that a mount of the container shows (:class:`_VolumeLayout`).

        A ``subPath`` (or ``subPathExpr``, expanded with the container's environment) is taken inside the volume's
        home, made a folder when missing as the kubelet does; a file is bound through a hard link made when the
        container starts, so it keeps the content it had then when the node replaces the volume's file (the kubelet
        does not update subPath mounts either) and shows it again on a restart. A whole mount of a volume the node
        writes shows its own copy, a CSI driver's its ``mountPath`` (where the driver writes); every other whole
        mount shows the volume's home, so two containers mounting one emptyDir at different paths share it.

        Raises:
            SubPathError: the path leads out of the pod's folder (a link the pod made), as runc refuses it.
        """
        mount = (container.spec.get("volumeMounts") or [])[index]
        name, path = mount.get("name", ""), os.path.normpath(mount["mountPath"])
        sub = mount.get("subPath") or expand(mount.get("subPathExpr") or "", container.env)
        if not sub:
            place = path if csi else layout.whole(name, path) if written else layout.homes.get(name, path)
            folder = _folder_in(pod.dir, place)
            if folder is None:
                raise SubPathError(name, container.name)
            return folder
        folder = _folder_in(pod.dir, layout.homes.get(name, f"/{VOLUMES_DIR}/{name}"))
        if folder is None or not _inside(folder, folder / sub):
            raise SubPathError(name, container.name)
        source = folder / sub
        if not source.exists():
            source.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            return source
        snapshot = _folder_in(pod.dir, f"/{VOLUMES_DIR}/.subpaths/{container.name}")
        if snapshot is None:
            raise SubPathError(name, container.name)
        snapshot /= str(index)
        if starting or not snapshot.is_file():
            snapshot.unlink(missing_ok=True)
            try:
                os.link(source, snapshot)
            except OSError:  # a file the pod made and the kernel will not link: shown live instead
                return source
        return snapshot

    def _mount_volumes(self, pod: PodRecord) -> bool:
        """Write the pod's volumes as the kubelet would; ``False`` when one cannot be had yet (retried).

        The service-account token and every ``projected`` ``serviceAccountToken`` (TokenRequests), and the
        ``configMap``, ``secret`` and ``downwardAPI`` volumes (and such sources of ``projected`` ones) at their
        ``mountPath`` inside the pod's folder (Istio's agent reads the mesh root from the ``istio-ca-root-cert``
        ConfigMap there). A missing object that is not ``optional`` holds
        the pod in ContainerCreating, as on a kubelet, with a ``FailedMount`` event naming it.
        """
        try:
            files = self._volume_files(pod)
        except _MountFailed as exc:
            if pod.mount_failure != str(exc):
                pod.mount_failure = str(exc)
                self.events.failed_mount(PodRef(pod.namespace, pod.name, pod.uid), str(exc))
            return False
        if self.issue_token is None or pod.spec.get("automountServiceAccountToken") is False:
            token = None
        else:
            account = pod.spec.get("serviceAccountName") or pod.spec.get("serviceAccount") or "default"
            try:
                token = self.issue_token(pod.namespace, account, (), None)
                files += self._projected_tokens(pod, account)
            except Exception as exc:  # the ServiceAccount may not exist yet: the kubelet retries the mount too
                logger.info("MountVolume.SetUp failed for pod %s/%s: %s", pod.namespace, pod.name, exc)
                return False
        for path, value in files:
            if _inside(pod.dir, path):
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                _write_private(path, value)
        if token is not None and _inside(pod.dir, pod.dir / SERVICEACCOUNT_DIR):
            folder = pod.dir / SERVICEACCOUNT_DIR
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write_private(folder / "token", token)
            (folder / "namespace").write_text(pod.namespace)
            if self.ca_file is not None and self.ca_file.exists():
                (folder / "ca.crt").write_text(self.ca_file.read_text())
            pod.account_dir = folder
        pod.mounted.set()
        return True

    def _volume_files(self, pod: PodRecord) -> list[tuple[Path, str]]:
        """The files of the pod's ``configMap``, ``secret`` and ``downwardAPI`` volumes and of the same sources of
        ``projected`` volumes, at their mount paths (all keys, or ``items``).

        Raises:
            _MountFailed: a volume's object (or a listed key) is missing and the volume is not ``optional``.
        """
        files: list[tuple[Path, str]] = []
        mounts = _mount_paths(pod)
        csi_paths: dict[str, list[str]] = {}
        for mount in _all_mounts(pod):
            csi_paths.setdefault(mount.get("name", ""), []).append(os.path.normpath(mount["mountPath"]))
        for volume in pod.spec.get("volumes") or []:
            csi = volume.get("csi")
            if csi is not None:
                # A CSI volume is the driver's to fill (the SPIFFE CSI driver: SPIRE's agent puts the Workload API
                # socket there). The kubelet starts no container before the driver has mounted it, so a program
                # that looks for the socket once, at start (Istio's agent), finds it.
                for mount_path in csi_paths.get(volume.get("name")) or []:
                    folder = pod.dir / mount_path.lstrip("/")
                    if not folder.is_dir() or not any(folder.iterdir()):
                        raise _MountFailed(f'MountVolume.SetUp failed for volume "{volume.get("name")}" : '
                                           f"kubernetes.io/csi: mounter.SetUpAt failed to get CSI client: driver "
                                           f"name {csi.get('driver', '')} not found in the list of registered CSI "
                                           f"drivers")
            if not mounts.get(volume.get("name")):
                continue
            entries = self._volume_entries(pod, volume)
            for mount_path in mounts[volume.get("name")]:
                files += [(pod.dir / mount_path.lstrip("/") / path, value) for path, value in entries]
        return files

    def _volume_entries(self, pod: PodRecord, volume: Obj) -> list[tuple[str, str]]:
        """``(path in the volume, content)`` of one volume's files the node writes (tokens aside)."""
        entries: list[tuple[str, str]] = []
        name = volume.get("name", "")
        if volume.get("configMap") is not None:
            entries += self._object_entries(pod, name, "ConfigMap", volume["configMap"], "name")
        if volume.get("secret") is not None:
            entries += self._object_entries(pod, name, "Secret", volume["secret"], "secretName")
        if volume.get("downwardAPI") is not None:
            entries += self._downward_entries(pod, volume["downwardAPI"].get("items") or [])
        for source in (volume.get("projected") or {}).get("sources") or []:
            if source.get("configMap") is not None:
                entries += self._object_entries(pod, name, "ConfigMap", source["configMap"], "name")
            if source.get("secret") is not None:
                entries += self._object_entries(pod, name, "Secret", source["secret"], "name")
            if source.get("downwardAPI") is not None:
                entries += self._downward_entries(pod, source["downwardAPI"].get("items") or [])
        return entries

    def _object_entries(self, pod: PodRecord, volume: str, kind: str, source: Obj,
                        name_field: str) -> list[tuple[str, str]]:
        name = source.get(name_field, "")
        data = self.read_data(pod.namespace, kind, name) if self.read_data is not None else None
        if data is None:
            if source.get("optional"):
                return []
            raise _MountFailed(f'MountVolume.SetUp failed for volume "{volume}" : {kind.lower()} "{name}" not found')
        entries = []
        for item in source.get("items") or [{"key": key, "path": key} for key in sorted(data)]:
            if item.get("key") not in data:
                if source.get("optional"):
                    continue
                raise _MountFailed(f'MountVolume.SetUp failed for volume "{volume}" : '
                                   f'configmap references non-existent config key: {item.get("key")}')
            entries.append((item.get("path", item["key"]), data[item["key"]]))
        return entries

    def _downward_entries(self, pod: PodRecord, items: list[Obj]) -> list[tuple[str, str]]:
        """The Downward API's files: a field (whole ``metadata.labels``/``annotations`` as ``key="value"`` lines,
        as the kubelet writes them) or a container's resource."""
        entries = []
        for item in items:
            if not item.get("path"):
                continue
            field = (item.get("fieldRef") or {}).get("fieldPath", "")
            if field in {"metadata.labels", "metadata.annotations"}:
                values = pod.labels if field == "metadata.labels" else pod.annotations
                entries.append((item["path"], "\n".join(f"{key}={json.dumps(values[key])}" for key in sorted(values))))
            elif field or item.get("resourceFieldRef"):
                source = {"fieldRef": item["fieldRef"]} if field else {"resourceFieldRef": item["resourceFieldRef"]}
                value = self.environment.env_value(pod, {"valueFrom": source})
                entries.append((item["path"], value or ""))
        return entries

    def _projected_tokens(self, pod: PodRecord, account: str) -> list[tuple[Path, str]]:
        """The files of every ``projected`` volume's ``serviceAccountToken`` source, where containers mount them.

        A pod's containers share its folder (their working directory), so ``mountPath`` is taken inside it:
        Istio's ``istio-token`` volume at ``/var/run/secrets/tokens`` becomes ``var/run/secrets/tokens/istio-token``
        there. Each token is a TokenRequest for the volume's ``audience`` and ``expirationSeconds``.
        """
        assert self.issue_token is not None
        mounts = _mount_paths(pod)
        files: list[tuple[Path, str]] = []
        for volume in pod.spec.get("volumes") or []:
            for mount_path in mounts.get(volume.get("name")) or []:
                files += self._tokens_of(pod, account, volume, mount_path)
        return files

    def _tokens_of(self, pod: PodRecord, account: str, volume: Obj, mount_path: str) -> list[tuple[Path, str]]:
        assert self.issue_token is not None
        files: list[tuple[Path, str]] = []
        for source in (volume.get("projected") or {}).get("sources") or []:
            request = source.get("serviceAccountToken")
            if not request:
                continue
            audiences = (request["audience"],) if request.get("audience") else ()
            token = self.issue_token(pod.namespace, account, audiences, request.get("expirationSeconds") or 3600)
            files.append((pod.dir / mount_path.lstrip("/") / request.get("path", "token"), token))
        return files

    async def _retry_mount(self, pod: PodRecord) -> None:
        """Retry with back-off, and at once when a ConfigMap, Secret or ServiceAccount appears (the kubelet's
        volume manager also reacts to the objects it waits for)."""
        delay = MOUNT_RETRY
        while not pod.removing and not self._mount_volumes(pod):
            self._sources_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sources_changed.wait(), delay)
            delay = min(delay * 2, MAX_MOUNT_RETRY)

    def volume_sources_changed(self) -> None:
        """A ConfigMap, Secret or ServiceAccount changed: pods waiting for a volume try again now, and running
        pods' ``configMap`` and ``secret`` volumes are brought up to date (the kubelet syncs them too)."""
        self._sources_changed.set()
        for pod in self._pods.values():
            if not pod.mounted.is_set() or pod.removing:
                continue
            try:
                files = self._volume_files(pod)
            except _MountFailed:
                continue  # the object went away: the kubelet keeps the last content
            for path, value in files:
                with contextlib.suppress(OSError):
                    if not _inside(pod.dir, path):
                        continue
                    if not path.exists() or path.read_text() != value:
                        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                        _write_private(path, value)

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

    async def _environment(self, pod: PodRecord, container: ContainerRecord, app_address: str) -> dict[str, str]:
        """The container's environment, once what it names exists: until then the container waits in
        ``CreateContainerConfigError``, tried again when a ConfigMap or Secret changes, as on a kubelet."""
        delay = MOUNT_RETRY
        while True:
            try:
                env = self.environment.container_env(pod, container, app_address, await self._dns_address())
                problem = sub_path_problem(container.spec, env)
                if problem:
                    raise ContainerConfigError(problem)
                return env
            except ContainerConfigError as exc:
                message = str(exc)
                if container.state.get("waiting", {}).get("message") != message:
                    container.state = {"waiting": {"reason": "CreateContainerConfigError", "message": message}}
                    self.events.start_failed(PodRef(pod.namespace, pod.name, pod.uid), container.name, message)
                    self._publish(pod)
            if pod.removing:
                return {}
            self._sources_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sources_changed.wait(), delay)
            delay = min(delay * 2, MAX_MOUNT_RETRY)

    async def _supervise(self, pod: PodRecord, container: ContainerRecord) -> None:
        await supervise(pod, container, run_once=lambda: self._run_once(pod, container),
                        publish=lambda: self._publish(pod), restart_backoff=self.restart_backoff, events=self.events)

    async def _run_once(self, pod: PodRecord, container: ContainerRecord) -> tuple[int, str, str]:
        """Start the container's process and wait for it; returns ``(exitCode, reason, message)``."""
        app_address = self._app_address(pod)
        container.env = await self._environment(pod, container, app_address)
        if pod.removing:
            return 0, "", ""
        port = listen_port(container, container.env)
        if port is not None:
            container.env["LABKIT_LISTEN"] = f"{app_address}:{port}"
        log_dir = pod.log_dir(container.name)
        log_dir.mkdir(parents=True, exist_ok=True)
        container.log_path = log_dir / f"{container.restart_count}.log"
        container.ever_created = True
        container.container_id = f"containerd://{secrets.token_hex(32)}"
        try:
            process, terminal_output = await self._start(pod, container, self.environment.argv(container))
        except OSError as exc:
            message = (f"failed to create containerd task: failed to create shim task: OCI runtime "
                       f"create failed: unable to start container process: {exc}: unknown")
            self.events.start_failed(PodRef(pod.namespace, pod.name, pod.uid), container.name, message)
            return 128, "StartError", message
        ref = PodRef(pod.namespace, pod.name, pod.uid)
        self.events.created(ref, container.name)
        self.events.started(ref, container.name)
        container.process = process
        container.started = True
        container.state = {"running": {"startedAt": format_time(time.time())}}
        self._publish(pod)
        host = probing.probe_host(pod, container, app_address)
        probe = container.spec.get("readinessProbe") or {}
        action = probe.get("httpGet") or probe.get("tcpSocket") or {}
        target = f"{host}:{probing.resolve_port(action.get('port'), container.spec)}"
        readiness = asyncio.create_task(probing.readiness(
            pod, container, process, host, port, scale=self.probe_period_scale,
            set_ready=lambda ready: self._set_ready(pod, container, ready),
            failed=lambda: self.events.unhealthy(ref, container.name, probe, target)))
        try:
            code = await process.wait()
            if terminal_output is not None:
                # The last words may still be in the terminal: a restart or `logs -f` must find them in the file.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(terminal_output), LOG_DRAIN)
        finally:
            if container.stdin is not None:
                container.stdin.close()
                container.stdin, container.terminal = None, None
            if terminal_output is None and container.log_path is not None:
                self.stamper.unwatch(container.log_path)
            readiness.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await readiness
        # A signal shows as 128+N, as container runtimes report it (SIGKILL → 137).
        exit_code = 128 - code if code < 0 else code
        return exit_code, "Completed" if exit_code == 0 else "Error", ""

    async def _start(self, pod: PodRecord, container: ContainerRecord,
                     argv: list[str]) -> tuple[spawning.Process, asyncio.Future[None] | None]:
        """Start one instance of the container, its output going to its log file (:mod:`.logfiles`).

        A container with ``tty: true`` runs on a terminal (output and input through its master end; the future
        returned is done when its output has all been read); with ``stdin: true``, on a stdin pipe the node
        keeps for attaches; otherwise stdin is /dev/null.
        """
        assert container.log_path is not None
        container.stdin, container.terminal, container.stdin_claimed = None, None, False
        container.sandbox = self._sandbox(pod, container, starting=True)  # its exec probes and hooks run in it too
        loop = asyncio.get_running_loop()
        if container.spec.get("tty"):
            master, slave = terminals.open_pty()
            try:
                log_writer = await logfiles.read_into(os.dup(master), container.log_path)
                process = await spawning.spawn(argv, env=dict(container.env, TERM="xterm"), cwd=pod.dir, stdin=slave,
                                               stdout=slave, stderr=slave, terminal=True,
                                               sandbox=container.sandbox, network=pod.network)
            except BaseException:
                os.close(master)
                raise
            finally:
                os.close(slave)
            transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin,
                                                                os.fdopen(master, "wb", buffering=0))
            container.stdin = asyncio.StreamWriter(transport, protocol, None, loop)
            container.terminal = master
            return process, log_writer.closed
        read_end, write_end = os.pipe() if container.spec.get("stdin") else (None, None)
        try:
            with container.log_path.open("ab") as log:
                process = await spawning.spawn(argv, env=container.env, cwd=pod.dir,
                                               stdin=read_end if read_end is not None else asyncio.subprocess.DEVNULL,
                                               stdout=log, stderr=asyncio.subprocess.STDOUT,
                                               # the zygote lives on this node's pod network
                                               zygote=self.zygote if pod.network == self.network else None,
                                               sandbox=container.sandbox, network=pod.network)
        except BaseException:
            if write_end is not None:
                os.close(write_end)
            raise
        finally:
            if read_end is not None:
                os.close(read_end)  # the child has it
        self.stamper.watch(container.log_path)
        if write_end is not None:
            transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin,
                                                                os.fdopen(write_end, "wb", buffering=0))
            container.stdin = asyncio.StreamWriter(transport, protocol, None, loop)
        return process, None

    def _set_ready(self, pod: PodRecord, container: ContainerRecord, ready: bool) -> None:
        if container.ready != ready:
            container.ready = ready
            self._publish(pod)

    def _publish(self, pod: PodRecord) -> None:
        if pod.removing:
            return
        status = pod_status(pod, self.host_ip)
        if status == pod.published:
            return
        pod.published = status
        try:
            self.on_status(pod.namespace, pod.name, copy.deepcopy(status))
        except Exception:  # the store's trouble must not stop the node from supervising
            logger.exception("on_status failed for pod %s/%s", pod.namespace, pod.name)


def _tail(data: bytes, lines: int | None) -> bytes:
    if lines is None or lines < 0:
        return data
    if lines == 0:
        return b""
    kept = data.splitlines(keepends=True)[-lines:]
    return b"".join(kept)


class SubPathError(OSError):
    """A mount's folder leads out of the pod's folder (a link the pod's programs made): the container does not start
    (an exec is refused) rather than see the machine's path."""

    def __init__(self, volume: str, container: str):
        super().__init__(f'failed to prepare subPath for volumeMount "{volume}" of container "{container}"')


class _MountFailed(Exception):
    """A volume cannot be set up yet; the message is the kubelet's ``FailedMount`` wording."""


def _all_mounts(pod: PodRecord) -> list[Obj]:
    return [mount for container in [*(pod.spec.get("initContainers") or []), *(pod.spec.get("containers") or [])]
            for mount in container.get("volumeMounts") or [] if mount.get("mountPath")]


def _by_sub_path(mount: Obj) -> bool:
    """Whether a volume mount shows a part of its volume (``subPath`` or ``subPathExpr``)."""
    return bool(mount.get("subPath") or mount.get("subPathExpr"))


# The pod's folder is the node's too: a volume mounted at one of these paths lives under .volumes/ instead.
_NODE_FOLDERS = frozenset({"bin", "logs", "tmp", SERVICEACCOUNT_DIR, ".sandbox", VOLUMES_DIR})


@dataclass(frozen=True)
class _VolumeLayout:
    """Where a pod's volumes live in its folder.

    A volume's *home* is its one folder: where it is first mounted whole, or ``.volumes/<name>/`` when a container
    mounts part of it by ``subPath``, when that path is one of the node's own folders (``/bin``, ``/logs``, ``/tmp``
    …), or when another volume is mounted at the same path by another container. A volume the node writes
    (ConfigMap, Secret, projected, Downward API) is also written at each path it is mounted at whole.
    """

    homes: dict[str, str]
    shared_paths: frozenset[str]

    @classmethod
    def of(cls, pod: PodRecord) -> _VolumeLayout:
        mounts = _all_mounts(pod)
        users: dict[str, set[str]] = {}
        for mount in mounts:
            if not _by_sub_path(mount):
                users.setdefault(os.path.normpath(mount["mountPath"]), set()).add(mount.get("name", ""))
        layout = cls({}, frozenset(path for path, names in users.items() if len(names) > 1))
        for mount in mounts:
            name = mount.get("name", "")
            if _by_sub_path(mount):
                layout.homes[name] = f"/{VOLUMES_DIR}/{name}"
            else:
                layout.homes.setdefault(name, layout.whole(name, mount["mountPath"]))
        return layout

    def whole(self, name: str, mount_path: str) -> str:
        """Where the node puts volume ``name`` mounted whole at ``mount_path``."""
        path = os.path.normpath(mount_path)
        if path in self.shared_paths or path.lstrip("/").split("/")[0] in _NODE_FOLDERS:
            return f"/{VOLUMES_DIR}/{name}"
        return path


def _mount_paths(pod: PodRecord) -> dict[str, list[str]]:
    """Volume name → where the node writes it: each place it is mounted whole, and its home (:class:`_VolumeLayout`)."""
    layout = _VolumeLayout.of(pod)
    places: dict[str, list[str]] = {}
    for mount in _all_mounts(pod):
        name = mount.get("name", "")
        paths = places.setdefault(name, [])
        whole = () if _by_sub_path(mount) else (layout.whole(name, mount["mountPath"]),)
        for path in (*whole, layout.homes[name]):
            if path not in paths:
                paths.append(path)
    return places


def sub_path_problem(container: Obj, env: dict[str, str]) -> str:
    """Why the kubelet would not start ``container`` for its ``subPathExpr`` mounts, or ``""``: a variable it names
    has no value in the container's environment, or the expanded path is absolute or climbs out of the volume."""
    for mount in container.get("volumeMounts") or []:
        expression = mount.get("subPathExpr") or ""
        if not expression:
            continue
        missing = unset_references(expression, env)
        if missing:
            return f"missing value for {', '.join(missing)}"
        path = expand(expression, env)
        if path.startswith("/"):
            return f"error SubPath `{path}` must not be an absolute path"
        if ".." in path.split("/"):
            return f"unable to provision SubPath `{path}`: must not contain '..'"
    return ""


def _inside(folder: Path, path: Path) -> bool:
    """Whether ``path`` resolves inside ``folder``: a pod's programs can write its folder, and a symlink they put
    where a volume goes must not make the node write elsewhere on the machine."""
    return path.resolve().is_relative_to(folder.resolve())


def _folder_in(folder: Path, path: str) -> Path | None:
    """``folder/<path>``, made if missing; ``None`` when it would lead out of ``folder`` (a link the pod made)."""
    source = folder / path.lstrip("/")
    if not _inside(folder, source):
        return None
    source.mkdir(parents=True, exist_ok=True)
    return source


def _write_private(path: Path, text: str) -> None:
    """Write a credential readable by this user only, atomically (a program may be reading the old one)."""
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(partial, path)
