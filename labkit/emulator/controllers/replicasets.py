"""The ReplicaSet controller: keep ``spec.replicas`` pods alive, report how many are ready.

Pods are named ``<replicaset>-<5 chars>`` (``generateName``), carry the template's labels and a
controller ownerReference, and are *scheduled* at creation by setting ``spec.nodeName`` to the
cluster's only node: an emulated cluster has one node, so a scheduler would have nothing to decide.
The node runtime then starts the pod's processes and reports ``Running``/``Ready`` through
``/status``, which wakes this controller again.

When there are too many pods, the ones deleted first are those Kubernetes deletes first
(``controller.ActivePodsWithRanks``): unscheduled before scheduled, Pending before Running, not
ready before ready, ready for less time before ready for longer, more restarts first, newest first.
So a scale-down during a rollout removes the pods that serve no traffic yet.

Pods matching the selector without a controller are adopted; owned pods whose labels no longer
match are released, as the real ``PodControllerRefManager`` does.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from labkit.core import kubetime
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.events import NORMAL, WARNING, EventRecorder
from labkit.emulator.store import Store

from .framework import (
    Key,
    OwnerController,
    controller_ref,
    epoch,
    is_deleting,
    namespace_terminating,
    new_controller_ref,
    pod_active,
    pod_condition,
    pod_ready,
    spec_selector,
)

_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}

BURST = 500
"""Pods created or deleted per reconcile at most (the real controller's ``burstReplicas``)."""


class ReplicaSetController(OwnerController):
    """Creates and deletes pods to match each ReplicaSet, and writes its status.

    Args:
        store: the cluster's store.
        node_name: the cluster's single node; every created pod is bound to it.
        clock: the current time in seconds since the epoch (``minReadySeconds``); injectable for tests.
        create_pod: creates a pod through the API server's admission chain (webhooks included).
    """

    name = "replicaset"
    resource = ("apps", "replicasets", "ReplicaSet")

    def __init__(self, store: Store, node_name: str, *, clock: Callable[[], float] = time.time,
                 create_pod: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None = None):
        super().__init__(store)
        self.node_name = node_name
        self._clock = clock
        # A real controller creates pods through the API server, so admission (defaulting, sidecar
        # injection webhooks, validation) sees them; without the seam (unit tests) the store is written directly.
        self._admit_and_create = create_pod
        self.events = EventRecorder(store, "replicaset-controller")

    async def reconcile(self, key: Key) -> None:
        namespace, name = key  # type: ignore[misc]
        rs = self.store.find("apps", "replicasets", name, namespace)
        if rs is None:
            return  # its pods are the garbage collector's
        pods = self._claim_pods(rs)
        active = [pod for pod in pods if pod_active(pod)]
        if not is_deleting(rs):
            want = int((rs.get("spec") or {}).get("replicas", 1))
            diff = len(active) - want
            if diff < 0 and not namespace_terminating(self.store, namespace):
                for _ in range(min(-diff, BURST)):
                    active.append(await self._create_pod(rs))
            elif diff > 0:
                doomed = sorted(active, key=self._deletion_rank)[: min(diff, BURST)]
                for pod in doomed:
                    try:
                        self.store.delete("", "pods", pod["metadata"]["name"], namespace)
                    except StatusError as exc:
                        if exc.code != 404:
                            raise
                    else:
                        self.events(rs, NORMAL, "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}")
                gone = {pod["metadata"]["uid"] for pod in doomed}
                active = [pod for pod in active if pod["metadata"]["uid"] not in gone]
        self._write_status(rs, active)

    # --- pods --------------------------------------------------------------------------------------

    def _claim_pods(self, rs: dict[str, Any]) -> list[dict[str, Any]]:
        """The pods this ReplicaSet controls, after adopting orphans and releasing mismatches."""
        namespace = rs["metadata"].get("namespace", "")
        uid = rs["metadata"]["uid"]
        selector = spec_selector(rs)
        owned = []
        for pod in self.store.list("", "pods", namespace=namespace).items:
            ref = controller_ref(pod)
            matches = selector.matches_object(pod)
            if ref is not None and ref.get("uid") == uid:
                if matches:
                    owned.append(pod)
                elif not is_deleting(pod):
                    refs = [r for r in pod["metadata"]["ownerReferences"] if r.get("uid") != uid]
                    pod["metadata"]["ownerReferences"] = refs
                    if not refs:
                        del pod["metadata"]["ownerReferences"]
                    self.store.update("", "pods", pod)
            elif ref is None and matches and not is_deleting(rs) and not is_deleting(pod):
                pod["metadata"].setdefault("ownerReferences", []).append(new_controller_ref(rs))
                owned.append(self.store.update("", "pods", pod))
        return owned

    async def _create_pod(self, rs: dict[str, Any]) -> dict[str, Any]:
        template = rs["spec"].get("template") or {}
        template_meta = template.get("metadata") or {}
        metadata: dict[str, Any] = {
            "generateName": f"{rs['metadata']['name']}-",
            "namespace": rs["metadata"].get("namespace", ""),
        }
        for field in ("labels", "annotations", "finalizers"):
            if template_meta.get(field):
                metadata[field] = dict(template_meta[field]) if field != "finalizers" else list(template_meta[field])
        metadata["ownerReferences"] = [new_controller_ref(rs)]
        spec = dict(template.get("spec") or {})
        spec["nodeName"] = self.node_name
        # The template was defaulted when its ReplicaSet was stored, so the pod needs no defaulting of its own.
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
        try:
            if self._admit_and_create is not None:
                created = await self._admit_and_create(pod)
            else:
                created = self.store.create("", "pods", pod)
        except StatusError as exc:
            # The reason a pod never appears (a dead injection webhook) belongs where users look: on the RS.
            self.events(rs, WARNING, "FailedCreate", f"Error creating: {exc.message}")
            raise
        self.events(rs, NORMAL, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")
        # What the API server's pod strategy and the scheduler's binding would have written.
        created["status"] = {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                 "lastTransitionTime": kubetime.now()},
            ],
            "qosClass": qos_class(created["spec"]),
        }
        return self.store.update_status("", "pods", created)

    def _deletion_rank(self, pod: dict[str, Any]) -> tuple[Any, ...]:
        """Smaller ranks are deleted first (``ActivePodsWithRanks``)."""
        status = pod.get("status") or {}
        ready = pod_ready(pod)
        ready_since = epoch((pod_condition(pod, "Ready") or {}).get("lastTransitionTime")) if ready else 0.0
        restarts = sum(int(c.get("restartCount", 0)) for c in status.get("containerStatuses") or [])
        return (
            bool((pod.get("spec") or {}).get("nodeName")),
            _PHASE_RANK.get(status.get("phase", "Pending"), 0),
            ready,
            -ready_since,
            -restarts,
            -epoch(pod["metadata"].get("creationTimestamp")),
        )

    # --- status ------------------------------------------------------------------------------------

    def _write_status(self, rs: dict[str, Any], active: list[dict[str, Any]]) -> None:
        spec = rs.get("spec") or {}
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        now = self._clock()
        ready = available = labelled = 0
        wake_in: float | None = None
        for pod in active:
            labels = pod["metadata"].get("labels") or {}
            if all(labels.get(k) == v for k, v in template_labels.items()):
                labelled += 1
            if not pod_ready(pod):
                continue
            ready += 1
            since = epoch((pod_condition(pod, "Ready") or {}).get("lastTransitionTime"))
            remaining = since + min_ready - now if min_ready else 0.0
            if remaining <= 0:
                available += 1
            else:
                wake_in = remaining if wake_in is None else min(wake_in, remaining)
        if wake_in is not None:
            self.enqueue((rs["metadata"].get("namespace", ""), rs["metadata"]["name"]), after=wake_in + 0.01)
        old = rs.get("status") or {}
        status: dict[str, Any] = {"replicas": len(active)}
        # Zero counts are omitted on the wire (omitempty), as a real server sends them.
        for field, value in (
            ("fullyLabeledReplicas", labelled),
            ("readyReplicas", ready),
            ("availableReplicas", available),
        ):
            if value:
                status[field] = value
        status["observedGeneration"] = rs["metadata"].get("generation", 1)
        if old.get("conditions"):
            status["conditions"] = old["conditions"]
        if status != old:
            fresh = self.store.get("apps", "replicasets", rs["metadata"]["name"], rs["metadata"].get("namespace", ""))
            fresh["status"] = status
            self.store.update_status("apps", "replicasets", fresh)



def qos_class(spec: dict[str, Any]) -> str:
    """The pod's QoS class from its containers' requests and limits (``Guaranteed``/``Burstable``/``BestEffort``).

    Args:
        spec: a PodSpec.
    """
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    for r in resources:
        limits = r.get("limits") or {}
        # Requests default to limits; Guaranteed needs both set and equal for cpu and memory.
        requests = {**limits, **(r.get("requests") or {})}
        if any(not limits.get(name) or requests.get(name) != limits.get(name) for name in ("cpu", "memory")):
            return "Burstable"
    return "Guaranteed"
