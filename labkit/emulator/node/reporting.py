"""What the kubelet says about a pod's containers, in the kubelet's words.

``kubectl describe pod`` is where attendees learn why a pod is not running; its Events section must read
as on a real node: ``Pulled``, ``Created``, ``Started`` on the happy path, ``Failed``/``ErrImagePull`` and a
counted ``BackOff`` for an image the node cannot run (naming the images it can), ``Unhealthy`` for a
failing readiness probe, ``Killing`` when a pod goes. The node runtime calls :class:`KubeletEvents` at
those points; the wording lives here, so the runtime keeps only the call sites.

Each Event concerns the pod, with ``fieldPath`` ``spec.containers{<name>}`` as the kubelet sets it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from labkit.emulator.events import NORMAL, WARNING, EventSink
from labkit.emulator.node import images

__all__ = ["EventSink", "KubeletEvents", "PodRef"]


@dataclass(frozen=True)
class PodRef:
    """The pod an Event concerns."""

    namespace: str
    name: str
    uid: str

    def reference(self) -> dict[str, str]:
        return {"apiVersion": "v1", "kind": "Pod", "namespace": self.namespace, "name": self.name, "uid": self.uid}


def _field_path(container: str) -> str:
    return f"spec.containers{{{container}}}"


def _seconds(duration: float) -> str:
    # Go's time.Duration printing, as the kubelet's "Successfully pulled image … in 1.234s".
    return f"{duration * 1000:.0f}ms" if duration < 1 else f"{duration:.3f}s"


class KubeletEvents:
    """The kubelet's Events for the containers of pods on one node.

    Args:
        sink: records one Event (``None``: report nothing, e.g. a node under unit test).
        clock: seconds since the epoch, for pull durations.
    """

    def __init__(self, sink: EventSink | None, clock: Callable[[], float] = time.monotonic):
        self._sink = sink
        self._clock = clock

    def _emit(self, pod: PodRef, container: str, type: str, reason: str, message: str) -> None:
        if self._sink is not None:
            self._sink(pod.reference(), type, reason, message, field_path=_field_path(container) if container else "")

    def image_ready(self, pod: PodRef, container: str, image: str, pull_policy: str) -> None:
        """The image is there: pulled (``Always``) or already present (``IfNotPresent``)."""
        if pull_policy == "Always":
            started = self._clock()
            self._emit(pod, container, NORMAL, "Pulling", f'Pulling image "{image}"')
            took = _seconds(self._clock() - started)
            self._emit(pod, container, NORMAL, "Pulled",
                       f'Successfully pulled image "{image}" in {took} ({took} including waiting). '
                       f"Image size: 0 bytes.")
        else:
            self._emit(pod, container, NORMAL, "Pulled", f'Container image "{image}" already present on machine')

    def pull_failed(self, pod: PodRef, container: str, image: str) -> None:
        """An image no program stands for: what the kubelet says when a registry has no such image."""
        self._emit(pod, container, NORMAL, "Pulling", f'Pulling image "{image}"')
        self._emit(pod, container, WARNING, "Failed", images.pull_error_message(image))
        self._emit(pod, container, WARNING, "Failed", "Error: ErrImagePull")

    def pull_backing_off(self, pod: PodRef, container: str, image: str) -> None:
        """Each look at a pod whose image pull is backing off."""
        self._emit(pod, container, NORMAL, "BackOff", images.pull_backoff_message(image))
        self._emit(pod, container, WARNING, "Failed", "Error: ImagePullBackOff")

    def created(self, pod: PodRef, container: str) -> None:
        self._emit(pod, container, NORMAL, "Created", f"Created container: {container}")

    def started(self, pod: PodRef, container: str) -> None:
        self._emit(pod, container, NORMAL, "Started", f"Started container {container}")

    def start_failed(self, pod: PodRef, container: str, message: str) -> None:
        self._emit(pod, container, WARNING, "Failed", f"Error: {message}")

    def crash_backing_off(self, pod: PodRef, container: str) -> None:
        self._emit(pod, container, WARNING, "BackOff",
                   f"Back-off restarting failed container {container} in pod {pod.name}_{pod.namespace}({pod.uid})")

    def failed_mount(self, pod: PodRef, message: str) -> None:
        """A volume that cannot be set up yet (the kubelet retries, and says so once per reason)."""
        self._emit(pod, "", "Warning", "FailedMount", message)

    def killing(self, pod: PodRef, container: str) -> None:
        self._emit(pod, container, NORMAL, "Killing", f"Stopping container {container}")

    def unhealthy(self, pod: PodRef, container: str, probe: Mapping[str, Any], target: str) -> None:
        """A readiness probe failed; ``target`` is where it looked (``host:port``)."""
        if "httpGet" in probe:
            action = probe["httpGet"]
            scheme = str(action.get("scheme") or "HTTP").lower()
            detail = f'Get "{scheme}://{target}{action.get("path", "/")}": no successful response'
        elif "tcpSocket" in probe:
            detail = f"dial tcp {target}: connect: connection refused"
        elif "exec" in probe:
            detail = f"command {list(probe['exec'].get('command') or [])} exited with a non-zero code"
        else:
            detail = "probe failed"
        self._emit(pod, container, WARNING, "Unhealthy", f"Readiness probe failed: {detail}")

    def pre_stop_failed(self, pod: PodRef, container: str) -> None:
        """The kubelet's words: the hook's output stays out of the Event, so secrets do not leak through it."""
        self._emit(pod, container, WARNING, "FailedPreStopHook", "PreStopHook failed")
