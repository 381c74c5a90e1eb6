"""Supervision: one container run for its pod's life, restarted as the restart policy says, with back-off.

As the kubelet: ``Always`` restarts whatever the exit code, ``OnFailure`` only a failure, ``Never`` nothing.
Restarts wait a back-off that starts at ``restart_backoff`` (Kubernetes: 10 s) and doubles up to 30 times
that (300 s), shown as ``CrashLoopBackOff`` with the kubelet's message; a container that ran for twice the cap
starts over from no back-off. An image no program plays shows ``ErrImagePull`` then ``ImagePullBackOff``,
retried with the same back-off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from labkit.core.kubetime import format_time
from labkit.emulator.node import images
from labkit.emulator.node.pods import ContainerRecord, PodRecord
from labkit.emulator.node.reporting import KubeletEvents, PodRef

DEFAULT_BACKOFF = 10.0
MAX_BACKOFF_FACTOR = 30  # Kubernetes: 10 s doubling, capped at 300 s

RunOnce = Callable[[], Awaitable[tuple[int, str, str]]]


def format_duration(seconds: float) -> str:
    """Go's ``time.Duration`` text for whole back-offs: ``10s``, ``1m20s``, ``5m0s``.

    Args:
        seconds: the back-off.
    """
    whole = round(seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{whole // 60}m{whole % 60}s" if whole >= 60 else f"{whole}s"


async def supervise(pod: PodRecord, container: ContainerRecord, *, run_once: RunOnce, publish: Callable[[], None],
                    restart_backoff: float, events: KubeletEvents | None = None) -> None:
    """Run one container until its pod goes: start, wait, restart with back-off as the policy says.

    Args:
        pod: the pod's record.
        container: the container's record; its ``state``, ``last_state`` and ``restart_count`` are kept here.
        run_once: starts the container's process and waits for it: ``(exitCode, reason, message)``.
        publish: reports the pod's status after a change.
        restart_backoff: the first back-off in seconds.
        events: where the kubelet's Events about the container go (``Pulled``, ``BackOff`` …).
    """
    events = events or KubeletEvents(None)
    ref = PodRef(pod.namespace, pod.name, pod.uid)
    if container.launch is None:
        await _fail_pulls(pod, container, publish, restart_backoff, events, ref)
        return
    await pod.mounted.wait()  # containers start once their volumes are there, as on a kubelet
    events.image_ready(ref, container.name, container.image, container.spec.get("imagePullPolicy") or "IfNotPresent")
    backoff = 0.0
    cap = restart_backoff * MAX_BACKOFF_FACTOR
    while not pod.removing:
        started_at = time.time()
        exit_code, reason, message = await run_once()
        if pod.removing:
            return
        finished = time.time()
        terminated: dict[str, Any] = {"containerID": container.container_id, "exitCode": exit_code,
                                      "finishedAt": format_time(finished), "reason": reason,
                                      "startedAt": format_time(started_at)}
        if message:
            terminated["message"] = message
        container.ready = False
        container.started = False
        container.process = None
        policy = pod.restart_policy
        if policy == "Never" or (policy == "OnFailure" and exit_code == 0):
            container.state = {"terminated": terminated}
            publish()
            return
        container.last_state = {"terminated": terminated}
        if finished - started_at >= 2 * cap:
            backoff = 0.0  # a container that ran long enough starts over, as the kubelet's back-off does
        if backoff > 0:
            events.crash_backing_off(ref, container.name)
            container.state = {"waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {format_duration(backoff)} restarting failed container={container.name} "
                           f"pod={pod.name}_{pod.namespace}({pod.uid})",
            }}
            publish()
            await asyncio.sleep(backoff)
        else:
            container.state = {"terminated": terminated}
            publish()
        backoff = min(max(backoff * 2, restart_backoff), cap)
        container.restart_count += 1


async def _fail_pulls(pod: PodRecord, container: ContainerRecord, publish: Callable[[], None], restart_backoff: float,
                      events: KubeletEvents, ref: PodRef) -> None:
    """An image no program plays: pull, fail, back off (doubling), and say so each time, as a kubelet does."""
    delay = restart_backoff
    resync = restart_backoff / 2  # the kubelet looks at a backing-off pod again and again meanwhile
    while not pod.removing:
        events.pull_failed(ref, container.name, container.image)
        container.state = {"waiting": {"reason": "ErrImagePull",
                                       "message": images.pull_error_message(container.image)}}
        publish()
        await asyncio.sleep(min(restart_backoff, 1.0))
        container.state = {"waiting": {"reason": "ImagePullBackOff",
                                       "message": images.pull_backoff_message(container.image)}}
        publish()
        waited = 0.0
        while waited < delay and not pod.removing:
            events.pull_backing_off(ref, container.name, container.image)
            step = min(resync, delay - waited)
            await asyncio.sleep(step)
            waited += step
        delay = min(delay * 2, restart_backoff * MAX_BACKOFF_FACTOR)
