"""The Deployment controller: ReplicaSets per pod template, rollouts, history and rollout status.

A Deployment owns one ReplicaSet per pod template it has had, named ``<deployment>-<hash>`` where the
hash is Kubernetes' ``pod-template-hash``: FNV-32a over the template, printed in decimal and mapped
character by character onto the safe alphabet (which is why real hashes only contain ``4-9bcdf``).
The label ``pod-template-hash`` goes onto the ReplicaSet's selector and template, so the pods of
two revisions never select each other.

Rollouts follow ``pkg/controller/deployment`` step by step, because ``kubectl rollout status`` and
the labs' "v1 → v2" demonstrations read exactly its intermediate states: RollingUpdate scales the
new ReplicaSet up within ``maxSurge`` and old ones down within ``maxUnavailable`` as new pods become
available (each step is taken again when a ReplicaSet's status changes); Recreate scales every old
ReplicaSet to zero and waits for its pods to go before creating the new one. Completed rollouts
keep ``revisionHistoryLimit`` old ReplicaSets (scaled to zero) for ``kubectl rollout undo``.

Not modelled: proportional scaling of several ReplicaSets mid-rollout (scaling during a rollout
converges through the rollout steps instead), and ``progressDeadlineSeconds`` timing out.
"""

from __future__ import annotations

import copy
import json
import math
import re

from labkit.core import kubetime
from labkit.core.selectors import LabelSelector
from labkit.core.wire import Obj
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.events import NORMAL, EventRecorder
from labkit.emulator.store import Store

from .framework import (
    Key,
    OwnerController,
    controller_ref,
    epoch,
    is_deleting,
    namespace_terminating,
    new_controller_ref,
    set_condition,
    spec_selector,
)

SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""``k8s.io/apimachinery/pkg/util/rand``: no vowels (no words), no look-alike characters."""

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"

# Annotations of a Deployment that are not copied to its ReplicaSets (deployment/util).
_NOT_COPIED = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        "deployment.kubernetes.io/revision-history",
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deprecated.deployment.rollback.to",
    }
)
_PERCENT = re.compile(r"^(\d+)%$")



def pod_template_hash(template: Obj, collision_count: int | None = None) -> str:
    """The ``pod-template-hash`` of a pod template, rendered as Kubernetes renders it.

    Kubernetes hashes Go's printed form of the struct; the emulator hashes canonical JSON, so values
    differ from a real cluster's but have the same shape and stability.

    Args:
        template: the Deployment's ``spec.template``.
        collision_count: ``status.collisionCount``, mixed in to escape a name collision.
    """
    value = _fnv32a(json.dumps(template, sort_keys=True, separators=(",", ":")).encode())
    if collision_count is not None:
        value = _fnv32a(int(collision_count).to_bytes(4, "little"), value)
    return "".join(SAFE_ALPHABET[byte % len(SAFE_ALPHABET)] for byte in str(value).encode())


def _fnv32a(data: bytes, value: int = 0x811C9DC5) -> int:
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def scaled_value(value: int | str | None, total: int, *, round_up: bool) -> int:
    """An IntOrString (``2`` or ``"25%"``) resolved against ``total``.

    Args:
        value: the field's value.
        total: what a percentage is a percentage of.
        round_up: maxSurge rounds up, maxUnavailable rounds down.

    Raises:
        ValueError: for a string that is not a percentage.
    """
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    match = _PERCENT.match(str(value))
    if not match:
        if str(value).isdigit():
            return int(value)
        raise ValueError(f"invalid value for IntOrString: {value!r} (use an integer or a percentage like '25%')")
    exact = int(match.group(1)) * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def surge_and_unavailable(deployment: Obj) -> tuple[int, int]:
    """``(maxSurge, maxUnavailable)`` in pods (``ResolveFenceposts``); Recreate allows neither."""
    spec = deployment.get("spec") or {}
    strategy = spec.get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return 0, 0
    rolling = strategy.get("rollingUpdate") or {}
    replicas = _replicas(deployment)
    surge = scaled_value(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = scaled_value(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        # Kubernetes refuses to make no progress: one pod may be unavailable.
        unavailable = 1
    return surge, unavailable


def max_unavailable(deployment: Obj) -> int:
    """How many pods may be unavailable while the Deployment still counts as Available."""
    replicas = _replicas(deployment)
    if replicas == 0:
        return 0
    return min(surge_and_unavailable(deployment)[1], replicas)


class DeploymentController(OwnerController):
    """Drives Deployments through ReplicaSets and reports the status ``kubectl rollout status`` reads.

    Args:
        store: the cluster's store.
    """

    name = "deployment"
    resource = ("apps", "deployments", "Deployment")
    owns = ("apps", "replicasets")

    def __init__(self, store: Store):
        super().__init__(store)
        self.events = EventRecorder(store, "deployment-controller")

    async def reconcile(self, key: Key) -> None:
        namespace, name = key  # type: ignore[misc]
        deployment = self.store.find("apps", "deployments", name, namespace)
        if deployment is None or is_deleting(deployment):
            return  # the garbage collector takes the ReplicaSets away
        selector = spec_selector(deployment)
        if selector.empty:
            # A real controller refuses too: an empty selector would adopt every pod in the namespace.
            return
        replica_sets = self._claim(deployment, selector)
        new_rs, old_rss = _split(deployment, replica_sets)
        spec = deployment.get("spec") or {}
        created = False
        if spec.get("paused"):
            if new_rs is not None and not any(_spec_replicas(rs) for rs in old_rss):
                new_rs = self._scale(deployment, new_rs, _replicas(deployment))
        elif (spec.get("strategy") or {}).get("type") == "Recreate":
            new_rs, created = self._recreate(deployment, new_rs, old_rss)
        else:
            new_rs, created = self._rolling(deployment, new_rs, old_rss)
        old_rss = [self._fresh(rs) for rs in old_rss]
        old_rss = [rs for rs in old_rss if rs is not None]
        new_rs = self._fresh(new_rs) if new_rs is not None else None
        status = self._write_status(deployment, new_rs, old_rss, created)
        if _complete(deployment, status):
            self._clean_up(deployment, old_rss)

    # --- ReplicaSets -------------------------------------------------------------------------------

    def _claim(self, deployment: Obj, selector: LabelSelector) -> list[Obj]:
        namespace = deployment["metadata"].get("namespace", "")
        uid = deployment["metadata"]["uid"]
        owned = []
        for rs in self.store.list("apps", "replicasets", namespace=namespace).items:
            ref = controller_ref(rs)
            matches = selector.matches_object(rs)
            if ref is not None and ref.get("uid") == uid:
                if matches:
                    owned.append(rs)
                elif not is_deleting(rs):
                    refs = [r for r in rs["metadata"]["ownerReferences"] if r.get("uid") != uid]
                    rs["metadata"]["ownerReferences"] = refs
                    if not refs:
                        del rs["metadata"]["ownerReferences"]
                    self.store.update("apps", "replicasets", rs)
            elif ref is None and matches and not is_deleting(rs):
                rs["metadata"].setdefault("ownerReferences", []).append(new_controller_ref(deployment))
                owned.append(self.store.update("apps", "replicasets", rs))
        return owned

    def _fresh(self, rs: Obj) -> Obj | None:
        return self.store.find("apps", "replicasets", rs["metadata"]["name"], rs["metadata"].get("namespace", ""))

    def _new_replica_set(self, deployment: Obj, new_rs: Obj | None, old_rss: list[Obj], replicas: int) -> Obj:
        """Create the new ReplicaSet (or bring an existing one's revision up to date)."""
        revision = str(max((_revision(rs) for rs in old_rss), default=0) + 1)
        if new_rs is not None:
            if _revision(new_rs) < int(revision):
                # A rollback made an old template current again: it becomes the latest revision.
                new_rs["metadata"].setdefault("annotations", {})[REVISION] = revision
                new_rs = self.store.update("apps", "replicasets", new_rs)
            self._annotate_revision(deployment, _revision(new_rs))
            return new_rs
        spec = deployment["spec"]
        status = deployment.get("status") or {}
        collision_count = status.get("collisionCount")
        template = copy.deepcopy(spec.get("template") or {})
        hash_value = pod_template_hash(template, collision_count)
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = hash_value
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = hash_value
        metadata = deployment["metadata"]
        annotations = {k: v for k, v in (metadata.get("annotations") or {}).items() if k not in _NOT_COPIED}
        surge, _ = surge_and_unavailable(deployment)
        annotations.update(
            {
                DESIRED_REPLICAS: str(_replicas(deployment)),
                MAX_REPLICAS: str(_replicas(deployment) + surge),
                REVISION: revision,
            }
        )
        rs_spec: Obj = {"replicas": replicas, "selector": selector, "template": template}
        if spec.get("minReadySeconds"):
            rs_spec["minReadySeconds"] = spec["minReadySeconds"]
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{metadata['name']}-{hash_value}",
                "namespace": metadata.get("namespace", ""),
                "labels": dict(template["metadata"]["labels"]),
                "annotations": annotations,
                "ownerReferences": [new_controller_ref(deployment)],
            },
            "spec": rs_spec,
        }
        try:
            created = self.store.create("apps", "replicasets", rs)
        except StatusError as exc:
            if exc.reason != "AlreadyExists":
                raise
            existing = self.store.get("apps", "replicasets", rs["metadata"]["name"], rs["metadata"]["namespace"])
            ref = controller_ref(existing)
            if ref is not None and ref.get("uid") == metadata["uid"] and _same_template(existing, deployment):
                return existing
            # Someone else's ReplicaSet has our name: hash again with a bumped collisionCount.
            fresh = self.store.get("apps", "deployments", metadata["name"], metadata.get("namespace", ""))
            fresh_status = fresh.setdefault("status", {})
            fresh_status["collisionCount"] = int(fresh_status.get("collisionCount") or 0) + 1
            self.store.update_status("apps", "deployments", fresh)
            raise
        self._annotate_revision(deployment, int(revision))
        if replicas > 0:
            self.events(deployment, NORMAL, "ScalingReplicaSet",
                        f"Scaled up replica set {created['metadata']['name']} from 0 to {replicas}")
        return created

    def _annotate_revision(self, deployment: Obj, revision: int) -> None:
        annotations = deployment["metadata"].get("annotations") or {}
        if annotations.get(REVISION) == str(revision):
            return
        fresh = self.store.get("apps", "deployments", deployment["metadata"]["name"],
                               deployment["metadata"].get("namespace", ""))
        fresh["metadata"].setdefault("annotations", {})[REVISION] = str(revision)
        updated = self.store.update("apps", "deployments", fresh)
        deployment["metadata"] = updated["metadata"]

    def _scale(self, deployment: Obj, rs: Obj, replicas: int) -> Obj:
        """Set a ReplicaSet's replicas (and the annotations that record what the Deployment wanted)."""
        fresh = self._fresh(rs)
        if fresh is None:
            return rs
        surge, _ = surge_and_unavailable(deployment)
        annotations = fresh["metadata"].setdefault("annotations", {})
        wanted = {
            DESIRED_REPLICAS: str(_replicas(deployment)),
            MAX_REPLICAS: str(_replicas(deployment) + surge),
        }
        min_ready = (deployment.get("spec") or {}).get("minReadySeconds")
        if _spec_replicas(fresh) == replicas and all(annotations.get(k) == v for k, v in wanted.items()) and (
            fresh["spec"].get("minReadySeconds") == min_ready
        ):
            return fresh
        annotations.update(wanted)
        before = _spec_replicas(fresh)
        fresh["spec"]["replicas"] = replicas
        if min_ready:
            fresh["spec"]["minReadySeconds"] = min_ready
        else:
            fresh["spec"].pop("minReadySeconds", None)
        updated = self.store.update("apps", "replicasets", fresh)
        if before != replicas:
            self.events(deployment, NORMAL, "ScalingReplicaSet",
                        f"Scaled {'up' if replicas > before else 'down'} replica set {fresh['metadata']['name']} "
                        f"from {before} to {replicas}")
        return updated

    # --- strategies --------------------------------------------------------------------------------

    def _rolling(self, deployment: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> tuple[Obj | None, bool]:
        """One step of ``rolloutRolling``; the next step runs when a ReplicaSet's status changes."""
        if namespace_terminating(self.store, deployment["metadata"].get("namespace", "")) and new_rs is None:
            return None, False
        created = new_rs is None
        all_rss = old_rss + ([new_rs] if new_rs is not None else [])
        desired = _replicas(deployment)
        if new_rs is None:
            new_rs = self._new_replica_set(deployment, None, old_rss, self._new_rs_replicas(deployment, all_rss, 0))
            return new_rs, True
        new_rs = self._new_replica_set(deployment, new_rs, old_rss, 0)

        # reconcileNewReplicaSet
        current = _spec_replicas(new_rs)
        if current != desired:
            target = desired if current > desired else self._new_rs_replicas(deployment, all_rss, current)
            if target != current:
                return self._scale(deployment, new_rs, target), created

        # reconcileOldReplicaSets
        old_pods = sum(_spec_replicas(rs) for rs in old_rss)
        if old_pods == 0:
            return new_rs, created
        all_pods = sum(_spec_replicas(rs) for rs in all_rss)
        min_available = desired - max_unavailable(deployment)
        new_unavailable = _spec_replicas(new_rs) - _status(new_rs, "availableReplicas")
        max_scaled_down = all_pods - min_available - new_unavailable
        if max_scaled_down <= 0:
            return new_rs, created
        old_sorted = sorted(old_rss, key=_created)
        # cleanupUnhealthyReplicas: unavailable old pods go first, they serve nobody.
        total = 0
        for index, rs in enumerate(old_sorted):
            if total >= max_scaled_down:
                break
            replicas = _spec_replicas(rs)
            healthy = _status(rs, "availableReplicas")
            if replicas in (0, healthy):
                continue
            count = min(max_scaled_down - total, replicas - healthy)
            old_sorted[index] = self._scale(deployment, rs, replicas - count)
            total += count
        # scaleDownOldReplicaSetsForRollingUpdate: never below minAvailable available pods.
        available = sum(_status(rs, "availableReplicas") for rs in [*old_sorted, new_rs])
        if available <= min_available:
            return new_rs, created
        budget = available - min_available
        total = 0
        for rs in old_sorted:
            if total >= budget:
                break
            replicas = _spec_replicas(rs)
            if replicas == 0:
                continue
            count = min(replicas, budget - total)
            self._scale(deployment, rs, replicas - count)
            total += count
        return new_rs, created

    def _new_rs_replicas(self, deployment: Obj, all_rss: list[Obj], current: int) -> int:
        """``NewRSNewReplicas`` for RollingUpdate: grow up to replicas + maxSurge pods in total."""
        surge, _ = surge_and_unavailable(deployment)
        desired = _replicas(deployment)
        total = sum(_spec_replicas(rs) for rs in all_rss)
        max_total = desired + surge
        if total >= max_total:
            return current
        return current + min(max_total - total, desired - current)

    def _recreate(self, deployment: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> tuple[Obj | None, bool]:
        """``rolloutRecreate``: all old pods gone before the first new one starts."""
        scaled = False
        for rs in old_rss:
            if _spec_replicas(rs):
                self._scale(deployment, rs, 0)
                scaled = True
        if scaled:
            return new_rs, False
        if any(_status(rs, "replicas") for rs in old_rss):
            return new_rs, False  # waiting for the old pods to terminate
        if new_rs is None:
            if namespace_terminating(self.store, deployment["metadata"].get("namespace", "")):
                return None, False
            return self._new_replica_set(deployment, None, old_rss, _replicas(deployment)), True
        new_rs = self._new_replica_set(deployment, new_rs, old_rss, 0)
        return self._scale(deployment, new_rs, _replicas(deployment)), False

    # --- status and history ------------------------------------------------------------------------

    def _write_status(self, deployment: Obj, new_rs: Obj | None, old_rss: list[Obj], created: bool) -> Obj:
        all_rss = old_rss + ([new_rs] if new_rs is not None else [])
        desired = _replicas(deployment)
        available = sum(_status(rs, "availableReplicas") for rs in all_rss)
        counts = {
            "replicas": sum(_status(rs, "replicas") for rs in all_rss),
            "updatedReplicas": _status(new_rs, "replicas") if new_rs is not None else 0,
            "readyReplicas": sum(_status(rs, "readyReplicas") for rs in all_rss),
            "availableReplicas": available,
            "unavailableReplicas": max(sum(_spec_replicas(rs) for rs in all_rss) - available, 0),
        }
        fresh = self.store.get("apps", "deployments", deployment["metadata"]["name"],
                               deployment["metadata"].get("namespace", ""))
        old = fresh.get("status") or {}
        status: Obj = {"observedGeneration": fresh["metadata"].get("generation", 1)}
        # Zero counts are omitted on the wire (omitempty), as a real server sends them.
        status.update({field: value for field, value in counts.items() if value})
        now = kubetime.now()
        conditions = list(old.get("conditions") or [])
        if available >= desired - max_unavailable(deployment):
            available_condition = _condition("Available", "True", "MinimumReplicasAvailable",
                                              "Deployment has minimum availability.")
        else:
            available_condition = _condition("Available", "False", "MinimumReplicasUnavailable",
                                             "Deployment does not have minimum availability.")
        conditions = set_condition(conditions, available_condition, now, update_time=True)
        progressing = _progressing(deployment, new_rs, status, old, created)
        if progressing is not None:
            conditions = set_condition(conditions, progressing, now, update_time=True)
        # Kubernetes lists Available before Progressing; keep that order for `kubectl describe`.
        order = {"Available": 0, "Progressing": 1}
        status["conditions"] = sorted(conditions, key=lambda c: order.get(c.get("type", ""), 2))
        if old.get("collisionCount") is not None:
            status["collisionCount"] = old["collisionCount"]
        if status != old:
            fresh["status"] = status
            self.store.update_status("apps", "deployments", fresh)
        return status

    def _clean_up(self, deployment: Obj, old_rss: list[Obj]) -> None:
        """Delete the oldest idle ReplicaSets beyond ``revisionHistoryLimit``."""
        limit = (deployment.get("spec") or {}).get("revisionHistoryLimit", 10)
        if limit is None:
            return
        idle = [
            rs for rs in old_rss
            if not _spec_replicas(rs) and not _status(rs, "replicas") and not is_deleting(rs)
        ]
        idle.sort(key=lambda rs: (_revision(rs), _created(rs)))
        for rs in idle[: max(len(idle) - int(limit), 0)]:
            try:
                self.store.delete("apps", "replicasets", rs["metadata"]["name"], rs["metadata"].get("namespace", ""))
            except StatusError as exc:
                if exc.code != 404:
                    raise


# --- pure helpers ----------------------------------------------------------------------------------



def _replicas(obj: Obj) -> int:
    replicas = (obj.get("spec") or {}).get("replicas", 1)
    return 1 if replicas is None else int(replicas)


def _spec_replicas(rs: Obj) -> int:
    return int((rs.get("spec") or {}).get("replicas") or 0)


def _status(rs: Obj | None, field: str) -> int:
    if rs is None:
        return 0
    return int((rs.get("status") or {}).get(field) or 0)


def _revision(rs: Obj) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, 0))
    except ValueError:
        return 0


def _created(rs: Obj) -> tuple[float, str]:
    return epoch(rs["metadata"].get("creationTimestamp")), rs["metadata"]["name"]


def _without_hash(template: Obj | None) -> Obj:
    """A pod template with the ``pod-template-hash`` label (and empty leftovers) removed."""
    result = copy.deepcopy(template or {})
    metadata = result.get("metadata")
    if isinstance(metadata, dict):
        labels = metadata.get("labels")
        if isinstance(labels, dict):
            labels.pop(HASH_LABEL, None)
            if not labels:
                metadata.pop("labels")
        if not metadata:
            result.pop("metadata")
    return result


def _same_template(rs: Obj, deployment: Obj) -> bool:
    """``EqualIgnoreHash``: the ReplicaSet runs the Deployment's current template."""
    return _without_hash((rs.get("spec") or {}).get("template")) == _without_hash(
        (deployment.get("spec") or {}).get("template")
    )


def _split(deployment: Obj, replica_sets: list[Obj]) -> tuple[Obj | None, list[Obj]]:
    """``(new ReplicaSet or None, old ones)``; with several matches the oldest is the new one."""
    matching = sorted((rs for rs in replica_sets if _same_template(rs, deployment)), key=_created)
    new_rs = matching[0] if matching else None
    old = [rs for rs in replica_sets if new_rs is None or rs["metadata"]["uid"] != new_rs["metadata"]["uid"]]
    return new_rs, old


def _complete(deployment: Obj, status: Obj) -> bool:
    """``DeploymentComplete``: all replicas updated and available, nothing old left, generation seen."""
    desired = _replicas(deployment)
    return (
        status.get("updatedReplicas", 0) == desired
        and status.get("replicas", 0) == desired
        and status.get("availableReplicas", 0) == desired
        and status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 1)
    )


def _condition(kind: str, status: str, reason: str, message: str) -> Obj:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def _progressing(deployment: Obj, new_rs: Obj | None, status: Obj, old: Obj, created: bool) -> Obj | None:
    """The ``Progressing`` condition ``syncRolloutStatus`` would set, or ``None`` to keep the current one."""
    if (deployment.get("spec") or {}).get("paused"):
        return _condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused")
    if new_rs is None:
        return None
    rs_name = new_rs["metadata"]["name"]
    if _complete(deployment, status):
        return _condition("Progressing", "True", "NewReplicaSetAvailable",
                          f'ReplicaSet "{rs_name}" has successfully progressed.')
    if created:
        return _condition("Progressing", "True", "NewReplicaSetCreated", f'Created new replica set "{rs_name}"')
    has_condition = any(c.get("type") == "Progressing" for c in old.get("conditions") or [])
    moved = (
        status.get("updatedReplicas", 0) > old.get("updatedReplicas", 0)
        or status.get("replicas", 0) < old.get("replicas", 0)
        or status.get("readyReplicas", 0) > old.get("readyReplicas", 0)
        or status.get("availableReplicas", 0) > old.get("availableReplicas", 0)
    )
    if moved:
        return _condition("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
    if not has_condition:
        return _condition("Progressing", "True", "FoundNewReplicaSet", f'Found new replica set "{rs_name}"')
    return None
