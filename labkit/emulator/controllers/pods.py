"""Pods made from a workload's template: what every workload controller does the same way.

Jobs, StatefulSets and DaemonSets create their pods as the ReplicaSet controller does: through the API server's
admission chain when the seam is given (so sidecar injection sees them), bound at once to a node (the emulated
cluster has no scheduler to decide), with a controller ownerReference, and with the ``Pending``/``PodScheduled``
status the API server's pod strategy and the scheduler's binding would have written. Each controller adds what is
its own: a Job's ``job-name`` labels come from its template, a StatefulSet's ordinal name and hostname, a
DaemonSet's node affinity.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

from labkit.core import kubetime
from labkit.core.wire import Obj
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.events import NORMAL, WARNING, EventRecorder
from labkit.emulator.store import Store

from .framework import new_controller_ref
from .replicasets import qos_class

CreatePod = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""Creates a pod through the API server's admission chain (webhooks included)."""


def pod_from_template(owner: Obj, *, node_name: str, name: str | None = None, labels: dict[str, str] | None = None,
                      spec: dict[str, Any] | None = None) -> Obj:
    """A new pod for ``owner`` from its ``spec.template``, not yet stored.

    Args:
        owner: the workload (its template was defaulted when it was stored).
        node_name: the node the pod is bound to.
        name: a fixed name (a StatefulSet's ``web-0``); ``generateName`` ``<owner>-`` otherwise.
        labels: labels added to the template's.
        spec: fields set on the pod's spec over the template's (``hostname``, ``affinity`` …).
    """
    template = copy.deepcopy((owner.get("spec") or {}).get("template") or {})
    template_meta = template.get("metadata") or {}
    metadata: dict[str, Any] = {"namespace": owner["metadata"].get("namespace", "")}
    if name:
        metadata["name"] = name
    else:
        metadata["generateName"] = f"{owner['metadata']['name']}-"
    for field in ("labels", "annotations", "finalizers"):
        if template_meta.get(field):
            metadata[field] = template_meta[field]
    if labels:
        metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
    metadata["ownerReferences"] = [new_controller_ref(owner)]
    pod_spec = dict(template.get("spec") or {})
    pod_spec.update(spec or {})
    pod_spec["nodeName"] = node_name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


async def create_pod(store: Store, owner: Obj, pod: Obj, events: EventRecorder,
                     admit_and_create: CreatePod | None) -> Obj:
    """Store ``pod`` for ``owner``, record the Event kubectl describe shows, and write its first status.

    Args:
        store: the cluster's store.
        owner: the workload (where Events go).
        pod: from :func:`pod_from_template`.
        events: the controller's Event recorder.
        admit_and_create: the API server's create (admission included); the store directly when ``None``.

    Raises:
        StatusError: the API server refused the pod (a ``FailedCreate`` Event says why).
    """
    try:
        created = await admit_and_create(pod) if admit_and_create is not None else store.create("", "pods", pod)
    except StatusError as exc:
        what = pod["metadata"].get("name")
        events(owner, WARNING, "FailedCreate", f"create Pod {what} in {owner['kind']} {owner['metadata']['name']} "
                                               f"failed error: {exc.message}" if what else
               f"Error creating: {exc.message}")
        raise
    name = created["metadata"]["name"]
    message = (f"create Pod {name} in StatefulSet {owner['metadata']['name']} successful"
               if owner.get("kind") == "StatefulSet" else f"Created pod: {name}")
    events(owner, NORMAL, "SuccessfulCreate", message)
    created["status"] = {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                        "lastTransitionTime": kubetime.now()}],
        "qosClass": qos_class(created["spec"]),
    }
    return store.update_status("", "pods", created)


def deletion_grace_period(pod: Obj, requested: Any = None) -> int:
    """How long a pod being deleted may take to stop (what the pod strategy's ``CheckGracefulDelete`` decides).

    The request's ``gracePeriodSeconds`` or else the pod's ``terminationGracePeriodSeconds`` (30 by default); 0 for a
    pod that no node runs (unscheduled) or that has finished, which go at once.

    Args:
        pod: the stored pod.
        requested: ``gracePeriodSeconds`` of the DeleteOptions, if given.
    """
    spec, phase = pod.get("spec") or {}, (pod.get("status") or {}).get("phase")
    if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
        return 0
    grace = requested if requested is not None else spec.get("terminationGracePeriodSeconds", 30)
    try:
        return max(int(grace), 0)
    except (TypeError, ValueError):
        return 30


def delete_pod(store: Store, owner: Obj, pod: Obj, events: EventRecorder) -> bool:
    """Delete one of ``owner``'s pods gracefully, as a controller does, and record it; ``False`` when it was gone.

    The pod goes Terminating for its grace period; the node stops its processes and removes it.

    Args:
        store: the cluster's store.
        owner: the workload.
        pod: the pod.
        events: the controller's Event recorder.
    """
    name = pod["metadata"]["name"]
    try:
        store.delete("", "pods", name, pod["metadata"].get("namespace", ""), uid=pod["metadata"].get("uid"),
                     grace_period=deletion_grace_period(pod))
    except StatusError as exc:
        if exc.code in (404, 409):
            return False
        raise
    message = (f"delete Pod {name} in StatefulSet {owner['metadata']['name']} successful"
               if owner.get("kind") == "StatefulSet" else f"Deleted pod: {name}")
    events(owner, NORMAL, "SuccessfulDelete", message)
    return True


def owned_pods(store: Store, owner: Obj) -> list[Obj]:
    """The pods whose controller ownerReference names ``owner`` (by uid)."""
    uid = owner["metadata"]["uid"]
    return [pod for pod in store.list("", "pods", namespace=owner["metadata"].get("namespace", "")).items
            if any(ref.get("controller") and ref.get("uid") == uid
                   for ref in pod["metadata"].get("ownerReferences") or ())]
