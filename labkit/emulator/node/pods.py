"""The node's records of its pods and containers, and what a pod declares about its sidecar.

A record holds what the pod object says (spec, labels, annotations) and what the node has made of it
(its IP, its directory, each container's process and state); :mod:`.status` turns a record into the
``status`` a kubelet reports.

The node knows no mesh. A pod whose injector gave it a sidecar proxy says so in the annotation
``labkit.io/sidecar`` (:data:`~labkit.core.contract.SIDECAR_ANNOTATION`), a small JSON object the node
reads as :class:`SidecarDeclaration`: which container is the proxy, the port of its HTTP proxy listener the
other containers use (DESIGN decision 5: no iptables), the ports the proxy serves on the pod IP, and where it
answers the pod's DNS, if it does. What the node does with it is generic: the apps move to an address of their
own, the proxy keeps the pod IP, and the pod's resolver asks the proxy instead of the cluster DNS.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labkit.core.contract import SIDECAR_ANNOTATION
from labkit.core.kubetime import format_time
from labkit.core.wire import Obj
from labkit.emulator.node import images

if TYPE_CHECKING:
    from labkit.emulator.node.sandboxing import Sandbox
    from labkit.emulator.node.spawning import Process


@dataclass(frozen=True)
class SidecarDeclaration:
    """What an injector declared about a pod's sidecar proxy (annotation ``labkit.io/sidecar``).

    Args:
        container: the proxy container; it keeps the pod IP, the others get an address of their own.
        http_proxy_port: the proxy's HTTP proxy listener on the pod IP, which the other containers get as
            ``http_proxy``; 0 for none.
        pod_ip_ports: ports the proxy serves on the pod IP: probes aimed at them go to the pod IP, not the app.
        dns_port: where the proxy answers the pod's DNS on the pod IP (Istio's DNS proxy): the pod's programs
            send their queries there instead of to the cluster DNS; 0 for none.
    """

    container: str
    http_proxy_port: int = 0
    pod_ip_ports: frozenset[int] = frozenset()
    dns_port: int = 0

    @classmethod
    def of(cls, annotations: dict[str, str]) -> SidecarDeclaration | None:
        """The declaration in a pod's annotations, or None when there is none (or it does not parse).

        Args:
            annotations: the pod's ``metadata.annotations``.
        """
        raw = annotations.get(SIDECAR_ANNOTATION)
        if not raw:
            return None
        try:
            value = json.loads(raw)
            return cls(str(value["container"]), int(value.get("httpProxyPort") or 0),
                       frozenset(int(port) for port in value.get("podIPPorts") or ()), int(value.get("dnsPort") or 0))
        except (ValueError, KeyError, TypeError):
            return None

    def to_annotation(self) -> str:
        """The annotation's value for this declaration."""
        value: dict[str, object] = {"container": self.container, "httpProxyPort": self.http_proxy_port,
                                    "podIPPorts": sorted(self.pod_ip_ports)}
        if self.dns_port:
            value["dnsPort"] = self.dns_port
        return json.dumps(value, separators=(",", ":"))


class ContainerRecord:
    """One container of a pod and the state its status is made from."""

    def __init__(self, spec: Obj):
        self.spec = spec
        self.name: str = spec["name"]
        self.image: str = spec.get("image", "")
        self.launch = images.plan_launch(self.image, spec.get("command"), spec.get("args"))
        self.state: Obj = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: Obj = {}
        self.restart_count = 0
        self.ready = False
        self.started = False
        self.ever_created = False
        self.container_id = ""
        self.env: dict[str, str] = {}
        self.process: Process | None = None  # the container's main process, started afresh or forked
        self.log_path: Path | None = None
        self.task: asyncio.Task[None] | None = None
        # ``stdin: true``: the running instance's stdin, which attaches write to; ``tty: true``: its terminal.
        self.stdin: asyncio.StreamWriter | None = None
        self.terminal: int | None = None
        self.sandbox: Sandbox | None = None  # the sandbox its processes entered, once started
        self.stdin_claimed = False  # ``stdinOnce``: an attach has had stdin, and closing it closed it for good

    def status(self) -> Obj:
        """The container's ``containerStatuses`` entry."""
        image_id = ""
        if self.ever_created:
            repository = self.image.split("@", 1)[0].rsplit(":", 1)[0] if "/" in self.image or ":" in self.image \
                else self.image
            image_id = f"{repository}@sha256:{hashlib.sha256(self.image.encode()).hexdigest()}"
        status: Obj = {}
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


class PodRecord:
    """One pod on this node.

    Args:
        pod: the Pod object.
        uid: its uid.
        ip: the pod IP the node gave it.
        directory: its directory (logs, shims, service-account files).
        allocated: whether the IP came from the pod pool (``hostNetwork`` pods use the node's).
    """

    def __init__(self, pod: Obj, uid: str, ip: str, directory: Path, allocated: bool):
        metadata = pod["metadata"]
        self.namespace: str = metadata.get("namespace") or "default"
        self.name: str = metadata["name"]
        self.uid = uid
        self.annotations: dict[str, str] = dict(metadata.get("annotations") or {})
        self.labels: dict[str, str] = dict(metadata.get("labels") or {})
        self.spec: Obj = pod.get("spec") or {}
        self.ip = ip
        self.allocated = allocated
        self.dir = directory
        self.containers = {spec["name"]: ContainerRecord(spec) for spec in self.spec.get("containers") or []}
        self.start_time = format_time(time.time())
        self.ready_transition = self.start_time
        self.was_ready = False
        self.published: Obj | None = None
        self.removing = False
        self.execs: set[asyncio.subprocess.Process] = set()
        declared = SidecarDeclaration.of(self.annotations)
        self.sidecar = declared if declared is not None and declared.container in self.containers else None
        self.app_address: str | None = None  # taken from the pod network by the node for a sidecar pod
        self.account_dir: Path | None = None
        self.mounted = asyncio.Event()
        self.mounting: asyncio.Task[None] | None = None
        self.mount_failure = ""  # the last FailedMount reason reported
        self.network = -1  # the network namespace its processes join (-1: the node's own)

    @property
    def restart_policy(self) -> str:
        return self.spec.get("restartPolicy") or "Always"

    @property
    def bin_dir(self) -> Path:
        return self.dir / "bin"

    def log_dir(self, container: str) -> Path:
        return self.dir / "logs" / container

    def is_proxy(self, container: ContainerRecord) -> bool:
        """Whether ``container`` is the pod's declared sidecar proxy."""
        return self.sidecar is not None and container.name == self.sidecar.container

