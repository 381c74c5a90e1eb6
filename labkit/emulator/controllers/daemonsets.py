"""The DaemonSet controller: one pod of each DaemonSet on every node that should run it.

It follows ``pkg/controller/daemon``: the nodes that should run a DaemonSet's pod are those its template's
``nodeSelector`` and required node affinity match (taints are not modelled: the emulated nodes have none). Each
pod is pinned to its node the way Kubernetes pins it, with a required node affinity on ``metadata.name`` (the
scheduler then binds it; here, with no scheduler, ``nodeName`` is set at once), and carries the tolerations the
controller adds so a daemon survives node trouble. Pods are ``<set>-<5 chars>`` labelled ``controller-revision-hash``
and ``pod-template-generation``. A template change replaces pods node by node (``RollingUpdate``, at most
``maxUnavailable`` at a time; ``OnDelete`` waits for the user).

The status is what ``kubectl get ds`` and ``kubectl rollout status ds`` read: desiredNumberScheduled,
currentNumberScheduled, numberMisscheduled, numberReady, updatedNumberScheduled, numberAvailable,
numberUnavailable, observedGeneration.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from labkit.core.wire import Obj
from labkit.emulator.events import EventRecorder
from labkit.emulator.store import Store, WatchEvent

from .deployments import pod_template_hash, scaled_value
from .framework import (
    Key,
    OwnerController,
    epoch,
    is_deleting,
    namespace_terminating,
    pod_active,
    pod_condition,
    pod_ready,
)
from .pods import CreatePod, create_pod, delete_pod, owned_pods, pod_from_template

REVISION_LABEL = "controller-revision-hash"
GENERATION_LABEL = "pod-template-generation"

# What ``util.AddOrUpdateDaemonPodTolerations`` adds to every daemon pod.
_TOLERATIONS = (
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
)


def node_affinity(node_name: str, affinity: Obj | None) -> Obj:
    """The pod's affinity with the term pinning it to ``node_name`` (``ReplaceDaemonSetPodNodeNameNodeAffinity``)."""
    result = dict(affinity or {})
    pin = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}
    node = dict(result.get("nodeAffinity") or {})
    node["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [pin]}
    result["nodeAffinity"] = node
    return result


def should_run(daemon_set: Obj, node: Obj) -> bool:
    """Whether ``node`` should run the DaemonSet's pod: its ``nodeSelector`` and required node affinity match."""
    spec = ((daemon_set.get("spec") or {}).get("template") or {}).get("spec") or {}
    labels = (node.get("metadata") or {}).get("labels") or {}
    if any(labels.get(key) != value for key, value in (spec.get("nodeSelector") or {}).items()):
        return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms") or []
    return not terms or any(_term_matches(term, node) for term in terms)


def _term_matches(term: Obj, node: Obj) -> bool:
    labels = (node.get("metadata") or {}).get("labels") or {}
    fields = {"metadata.name": node["metadata"]["name"]}
    checks = [(labels, r) for r in term.get("matchExpressions") or ()] + \
             [(fields, r) for r in term.get("matchFields") or ()]
    for values, requirement in checks:
        key, operator = requirement.get("key"), requirement.get("operator")
        wanted = list(requirement.get("values") or ())
        present = key in values
        if operator == "In" and not (present and values[key] in wanted):
            return False
        if operator == "NotIn" and present and values[key] in wanted:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
        if operator in ("Gt", "Lt"):
            try:
                number, bound = int(values[key]), int(wanted[0])
            except (KeyError, IndexError, ValueError):
                return False
            if (operator == "Gt" and not number > bound) or (operator == "Lt" and not number < bound):
                return False
    return bool(checks)


class DaemonSetController(OwnerController):
    """Creates one pod per eligible node for each DaemonSet and writes its status.

    Args:
        store: the cluster's store.
        clock: the current time in seconds since the epoch (``minReadySeconds``); injectable for tests.
        create_pod: creates a pod through the API server's admission chain (webhooks included).
    """

    name = "daemonset"
    resource = ("apps", "daemonsets", "DaemonSet")

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time, create_pod: CreatePod | None = None):
        super().__init__(store)
        self._clock = clock
        self._admit_and_create = create_pod
        self.events = EventRecorder(store, "daemonset-controller")

    def keys_for(self, event: WatchEvent) -> Iterable[Key]:
        if (event.group, event.resource) == ("", "nodes"):
            return self.initial_keys()  # a node came or went: every DaemonSet places its pods again
        return super().keys_for(event)

    async def reconcile(self, key: Key) -> None:
        namespace, name = key  # type: ignore[misc]
        daemon_set = self.store.find("apps", "daemonsets", name, namespace)
        if daemon_set is None or is_deleting(daemon_set):
            return  # its pods are the garbage collector's
        revision = pod_template_hash((daemon_set.get("spec") or {}).get("template") or {})
        nodes = {node["metadata"]["name"]: node for node in self.store.list("", "nodes").items}
        by_node: dict[str, list[Obj]] = {}
        for pod in owned_pods(self.store, daemon_set):
            by_node.setdefault(str((pod.get("spec") or {}).get("nodeName") or ""), []).append(pod)
        creating = not namespace_terminating(self.store, namespace)
        for node_name, node in sorted(nodes.items()):
            pods = by_node.get(node_name, [])
            for pod in pods:
                if not is_deleting(pod) and (pod.get("status") or {}).get("phase") == "Failed":
                    delete_pod(self.store, daemon_set, pod, self.events)  # replaced below, as the real one does
            alive = [pod for pod in pods if pod_active(pod)]
            if should_run(daemon_set, node):
                if not alive and creating:
                    await self._create(daemon_set, node_name, revision)
                # Two daemons on one node: keep the oldest.
                for extra in sorted(alive, key=lambda p: epoch(p["metadata"].get("creationTimestamp")))[1:]:
                    delete_pod(self.store, daemon_set, extra, self.events)
            else:
                for pod in alive:
                    delete_pod(self.store, daemon_set, pod, self.events)
        for node_name, pods in by_node.items():
            if node_name not in nodes:
                for pod in pods:
                    if not is_deleting(pod):
                        delete_pod(self.store, daemon_set, pod, self.events)
        self._roll(daemon_set, revision, nodes)
        self._write_status(daemon_set, revision, nodes)

    async def _create(self, daemon_set: Obj, node_name: str, revision: str) -> Obj:
        template_spec = ((daemon_set.get("spec") or {}).get("template") or {}).get("spec") or {}
        tolerations = list(template_spec.get("tolerations") or ())
        for key, effect in _TOLERATIONS:
            if not any(t.get("key") == key and t.get("effect") == effect for t in tolerations):
                tolerations.append({"key": key, "operator": "Exists", "effect": effect})
        labels = {REVISION_LABEL: revision, GENERATION_LABEL: str(daemon_set["metadata"].get("generation", 1))}
        spec = {"affinity": node_affinity(node_name, template_spec.get("affinity")), "tolerations": tolerations}
        pod = pod_from_template(daemon_set, node_name=node_name, labels=labels, spec=spec)
        return await create_pod(self.store, daemon_set, pod, self.events, self._admit_and_create)

    def _roll(self, daemon_set: Obj, revision: str, nodes: dict[str, Obj]) -> None:
        """RollingUpdate: delete outdated pods while fewer than ``maxUnavailable`` daemons are unavailable."""
        spec = daemon_set.get("spec") or {}
        strategy = spec.get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return
        pods = [pod for pod in owned_pods(self.store, daemon_set) if pod_active(pod)]
        desired = sum(1 for node in nodes.values() if should_run(daemon_set, node))
        budget = max(scaled_value((strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1), desired,
                                  round_up=False), 1)
        unavailable = desired - sum(1 for pod in pods if pod_ready(pod))
        for pod in sorted(pods, key=pod_ready):
            if (pod["metadata"].get("labels") or {}).get(REVISION_LABEL) == revision:
                continue
            # A pod that is not ready yet costs nothing more to replace.
            if pod_ready(pod):
                if unavailable >= budget:
                    return
                unavailable += 1
            delete_pod(self.store, daemon_set, pod, self.events)

    def _write_status(self, daemon_set: Obj, revision: str, nodes: dict[str, Obj]) -> None:
        namespace, name = daemon_set["metadata"].get("namespace", ""), daemon_set["metadata"]["name"]
        min_ready = int((daemon_set.get("spec") or {}).get("minReadySeconds") or 0)
        now = self._clock()
        pods = [pod for pod in owned_pods(self.store, daemon_set) if pod_active(pod)]
        desired = current = misscheduled = ready = updated = available = 0
        for node_name, node in nodes.items():
            on_node = [pod for pod in pods if (pod.get("spec") or {}).get("nodeName") == node_name]
            if not should_run(daemon_set, node):
                misscheduled += bool(on_node)
                continue
            desired += 1
            if not on_node:
                continue
            current += 1
            pod = on_node[0]
            if (pod["metadata"].get("labels") or {}).get(REVISION_LABEL) == revision:
                updated += 1
            if pod_ready(pod):
                ready += 1
                since = epoch((pod_condition(pod, "Ready") or {}).get("lastTransitionTime"))
                if since + min_ready <= now:
                    available += 1
                else:
                    self.enqueue((namespace, name), after=since + min_ready - now + 0.01)
        status: dict[str, Any] = {"currentNumberScheduled": current, "desiredNumberScheduled": desired,
                                  "numberMisscheduled": misscheduled, "numberReady": ready,
                                  "observedGeneration": daemon_set["metadata"].get("generation", 1)}
        # The remaining counts are omitted when zero (omitempty), as a real server sends them.
        for field, value in (("updatedNumberScheduled", updated), ("numberAvailable", available),
                             ("numberUnavailable", desired - available)):
            if value:
                status[field] = value
        if status != (daemon_set.get("status") or {}):
            fresh = self.store.get("apps", "daemonsets", name, namespace)
            fresh["status"] = status
            self.store.update_status("apps", "daemonsets", fresh)
