"""A pod's ``status`` as a kubelet reports it, built from the node's record.

Status must be indistinguishable from a kubelet's where clients look: ``kubectl get pods`` (READY, STATUS,
RESTARTS), ``kubectl rollout status`` and ``kubectl wait --for=condition=Ready`` read ``phase``, ``conditions``
and ``containerStatuses``, so those carry Kubernetes' reasons and messages.
"""

from __future__ import annotations

import time

from labkit.core.kubetime import format_time
from labkit.core.wire import Obj
from labkit.emulator.node.pods import PodRecord


def pod_status(pod: PodRecord, host_ip: str) -> Obj:
    """The whole ``status`` object of a pod (a fresh dict; the record's ready transition is updated).

    Args:
        pod: the node's record of the pod.
        host_ip: the node's address (``status.hostIP``).
    """
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
        pod.ready_transition = format_time(time.time())

    def condition(kind: str, true: bool, when: str) -> Obj:
        item: Obj = {"lastProbeTime": None, "lastTransitionTime": when,
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
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "phase": phase,
        "podIP": pod.ip,
        "podIPs": [{"ip": pod.ip}],
        "qosClass": qos_class(pod.spec),
        "startTime": pod.start_time,
    }


def qos_class(spec: Obj) -> str:
    """``BestEffort``, ``Burstable`` or ``Guaranteed`` from the containers' requests and limits.

    Args:
        spec: the pod's spec.
    """
    resources = [c.get("resources") or {} for c in spec.get("containers") or []]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        (r.get("limits") or {}).get(kind) and (r.get("requests") or r.get("limits") or {}).get(kind)
        == (r.get("limits") or {}).get(kind)
        for r in resources for kind in ("cpu", "memory"))
    return "Guaranteed" if guaranteed else "Burstable"
