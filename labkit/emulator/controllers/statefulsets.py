"""The StatefulSet controller: pods with stable names, created and removed in order, reachable by name in DNS.

It follows ``pkg/controller/statefulset`` where a learner can see it:

* pod ``i`` of set ``web`` is ``web-<i>``, labelled ``statefulset.kubernetes.io/pod-name: web-<i>``,
  ``apps.kubernetes.io/pod-index: "<i>"`` and ``controller-revision-hash``, with ``spec.hostname`` ``web-<i>`` and
  ``spec.subdomain`` the set's ``serviceName``: the endpoints controller then gives its address that hostname in
  the headless Service, and the cluster DNS answers ``web-0.<service>.<ns>.svc.cluster.local``;
* ``OrderedReady`` (the default) creates ``web-<i+1>`` only once every lower ordinal is Running and Ready, and
  scales down from the highest ordinal, one pod at a time; ``Parallel`` creates and deletes them all at once;
* a pod that fails or is deleted is created again under the same name;
* a template change rolls out (``RollingUpdate``) from the highest ordinal down, one pod at a time, each replaced
  once the others are ready, down to ``partition``; ``OnDelete`` waits for the user to delete pods;
* ``status`` carries what ``kubectl get sts`` and ``kubectl rollout status sts`` read: replicas, ready, current,
  updated and available replicas, the current and update revisions (``<set>-<hash>``), observedGeneration.

There are no persistent volumes here: each ``volumeClaimTemplates`` entry becomes an ``emptyDir`` volume of the
same name in each pod (so its ``volumeMounts`` resolve), and a ``VolumeClaimTemplatesNotPersistent`` Warning Event
on the StatefulSet says the data lives only as long as the pod. ControllerRevision objects are not kept.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from labkit.core.wire import Obj
from labkit.emulator.events import WARNING, EventRecorder
from labkit.emulator.store import Store

from .deployments import pod_template_hash
from .framework import (
    Key,
    OwnerController,
    epoch,
    is_deleting,
    namespace_terminating,
    pod_condition,
    pod_ready,
)
from .pods import CreatePod, create_pod, delete_pod, owned_pods, pod_from_template

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = "controller-revision-hash"


def ordinal(set_name: str, pod: Obj) -> int | None:
    """The ordinal of a pod of the set named ``set_name`` (``web-3`` → 3), ``None`` for another name."""
    match = re.fullmatch(re.escape(set_name) + r"-(\d+)", pod["metadata"]["name"])
    return int(match.group(1)) if match else None


def update_revision(stateful_set: Obj) -> str:
    """The set's revision for its current template: ``<set>-<hash>``, as ``controller-revision-hash`` names it."""
    template = (stateful_set.get("spec") or {}).get("template") or {}
    collisions = (stateful_set.get("status") or {}).get("collisionCount") or None  # 0 and absent hash alike
    return f"{stateful_set['metadata']['name']}-{pod_template_hash(template, collisions)}"


class StatefulSetController(OwnerController):
    """Keeps ``web-0`` … ``web-<n-1>`` of each StatefulSet, in order, and writes its status.

    Args:
        store: the cluster's store.
        node_name: the node pods are bound to.
        clock: the current time in seconds since the epoch (``minReadySeconds``); injectable for tests.
        create_pod: creates a pod through the API server's admission chain (webhooks included).
    """

    name = "statefulset"
    resource = ("apps", "statefulsets", "StatefulSet")

    def __init__(self, store: Store, node_name: str, *, clock: Callable[[], float] = time.time,
                 create_pod: CreatePod | None = None):
        super().__init__(store)
        self.node_name = node_name
        self._clock = clock
        self._admit_and_create = create_pod
        self.events = EventRecorder(store, "statefulset-controller")

    async def reconcile(self, key: Key) -> None:
        namespace, name = key  # type: ignore[misc]
        stateful_set = self.store.find("apps", "statefulsets", name, namespace)
        if stateful_set is None or is_deleting(stateful_set):
            return  # its pods are the garbage collector's
        spec = stateful_set.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        parallel = spec.get("podManagementPolicy") == "Parallel"
        revision = update_revision(stateful_set)
        pods = {index: pod for pod in owned_pods(self.store, stateful_set)
                if (index := ordinal(name, pod)) is not None}
        # Failed pods are deleted to be created again under the same name (the next reconcile does it).
        for index, pod in sorted(pods.items()):
            if _phase(pod) in ("Failed", "Succeeded") and not is_deleting(pod):
                delete_pod(self.store, stateful_set, pod, self.events)
                del pods[index]
        if not namespace_terminating(self.store, namespace):
            await self._scale(stateful_set, pods, replicas, parallel, revision)
        self._write_status(stateful_set, revision)

    async def _scale(self, stateful_set: Obj, pods: dict[int, Obj], replicas: int, parallel: bool,
                     revision: str) -> None:
        # Creation in ordinal order; with OrderedReady, stop at the first pod that is not Running and Ready yet.
        for index in range(replicas):
            pod = pods.get(index)
            if pod is None:
                pods[index] = await self._create(stateful_set, index, revision)
                if not parallel:
                    return
            elif not parallel and not _running_and_ready(pod):
                return
        condemned = sorted((index for index in pods if index >= replicas), reverse=True)
        for index in condemned:
            if is_deleting(pods[index]):
                if not parallel:
                    return
                continue
            # OrderedReady removes one pod at a time, and only while all the others are healthy.
            if not parallel and not all(_running_and_ready(pods[i]) for i in pods if i != index):
                return
            delete_pod(self.store, stateful_set, pods.pop(index), self.events)
            if not parallel:
                return
        self._roll(stateful_set, pods, replicas, revision)

    def _roll(self, stateful_set: Obj, pods: dict[int, Obj], replicas: int, revision: str) -> None:
        """RollingUpdate: replace the highest outdated ordinal at or above ``partition``, once all pods are ready."""
        strategy = (stateful_set.get("spec") or {}).get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        if not all(_running_and_ready(pods[i]) for i in range(replicas) if i in pods):
            return
        for index in sorted(pods, reverse=True):
            if index < partition:
                return
            if (pods[index]["metadata"].get("labels") or {}).get(REVISION_LABEL) != revision:
                delete_pod(self.store, stateful_set, pods[index], self.events)
                return

    async def _create(self, stateful_set: Obj, index: int, revision: str) -> Obj:
        spec = stateful_set.get("spec") or {}
        name = f"{stateful_set['metadata']['name']}-{index}"
        pod_spec: dict[str, Any] = {"hostname": name}
        if spec.get("serviceName"):
            pod_spec["subdomain"] = spec["serviceName"]
        claims = [t["metadata"]["name"] for t in spec.get("volumeClaimTemplates") or ()
                  if (t.get("metadata") or {}).get("name")]
        if claims:
            volumes = list(((spec.get("template") or {}).get("spec") or {}).get("volumes") or ())
            taken = {volume.get("name") for volume in volumes}
            volumes += [{"name": claim, "emptyDir": {}} for claim in claims if claim not in taken]
            pod_spec["volumes"] = volumes
            self.events(stateful_set, WARNING, "VolumeClaimTemplatesNotPersistent",
                        f"labkit's embedded cluster has no persistent volumes: volumeClaimTemplates "
                        f"[{' '.join(claims)}] of pod {name} are emptyDir volumes, lost when the pod is deleted")
        labels = {POD_NAME_LABEL: name, POD_INDEX_LABEL: str(index), REVISION_LABEL: revision}
        pod = pod_from_template(stateful_set, node_name=self.node_name, name=name, labels=labels, spec=pod_spec)
        return await create_pod(self.store, stateful_set, pod, self.events, self._admit_and_create)

    def _write_status(self, stateful_set: Obj, revision: str) -> None:
        namespace, name = stateful_set["metadata"].get("namespace", ""), stateful_set["metadata"]["name"]
        spec = stateful_set.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        now = self._clock()
        old = stateful_set.get("status") or {}
        current_revision = old.get("currentRevision") or revision
        pods = [pod for pod in owned_pods(self.store, stateful_set)
                if ordinal(name, pod) is not None and not is_deleting(pod)]
        ready = [pod for pod in pods if pod_ready(pod)]
        available = 0
        for pod in ready:
            since = epoch((pod_condition(pod, "Ready") or {}).get("lastTransitionTime"))
            if since + min_ready <= now:
                available += 1
            else:
                self.enqueue((namespace, name), after=since + min_ready - now + 0.01)
        revisions = [(pod["metadata"].get("labels") or {}).get(REVISION_LABEL) for pod in pods]
        updated = revisions.count(revision)
        current = revisions.count(current_revision)
        replicas = int(spec.get("replicas", 1))
        if updated == replicas and len(ready) == replicas and len(pods) == replicas:
            current_revision, current = revision, updated  # the rollout is over
        status: dict[str, Any] = {"replicas": len(pods), "availableReplicas": available,
                                  "currentRevision": current_revision, "updateRevision": revision,
                                  "observedGeneration": stateful_set["metadata"].get("generation", 1),
                                  "collisionCount": int(old.get("collisionCount") or 0)}
        # Zero counts are omitted on the wire (omitempty), as a real server sends them.
        for field, value in (("readyReplicas", len(ready)), ("currentReplicas", current),
                             ("updatedReplicas", updated)):
            if value:
                status[field] = value
        if status != old:
            fresh = self.store.get("apps", "statefulsets", name, namespace)
            fresh["status"] = status
            self.store.update_status("apps", "statefulsets", fresh)



def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def _running_and_ready(pod: Obj) -> bool:
    return not is_deleting(pod) and _phase(pod) == "Running" and pod_ready(pod)
