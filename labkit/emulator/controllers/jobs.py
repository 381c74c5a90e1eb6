"""The Job controller: run pods until ``completions`` of them succeed, or give up after ``backoffLimit`` failures.

It follows ``pkg/controller/job`` for non-indexed Jobs, because ``kubectl wait --for=condition=complete``,
``kubectl get jobs`` (STATUS, COMPLETIONS, DURATION) and ``kubectl describe`` read exactly what it writes:

* up to ``parallelism`` pods run at once, never more than the completions still missing; a Job without
  ``completions`` (a work queue) is done when one pod has succeeded and none is left running;
* a failed pod (restartPolicy ``Never``) counts in ``status.failed`` and is replaced after an exponential back-off
  (10 s doubling, as the real controller's pod-failure back-off); with ``OnFailure`` the node restarts the container
  in place and those restarts count instead. When ``failed`` exceeds ``backoffLimit`` (or the restarts reach it),
  or the Job runs past ``activeDeadlineSeconds``, the Job fails: its running pods are deleted and it gets the
  ``FailureTarget`` condition at once and ``Failed`` once none of its pods is still terminating (as since
  Kubernetes 1.31), with Kubernetes' reasons (``BackoffLimitExceeded``, ``DeadlineExceeded``);
* success writes ``SuccessCriteriaMet``, then ``Complete`` (reason ``CompletionsReached``) and ``completionTime``
  likewise; ``status.terminating`` counts the pods still stopping;
* ``ttlSecondsAfterFinished`` deletes a finished Job (its pods go with it through the garbage collector), which is
  the TTL-after-finished controller's work on a real cluster;
* ``suspend: true`` deletes the running pods and creates none (condition ``Suspended``).

Pods are ``<job>-<5 chars>`` with the template's labels, which the API server gave the ``job-name`` and
``controller-uid`` labels (both spellings) when the Job was created. ``completionMode: Indexed`` gives each pod an
index (``batch.kubernetes.io/job-completion-index``, hostname ``<job>-<index>``, ``JOB_COMPLETION_INDEX``) until
every index has succeeded once (``status.completedIndexes``). Not modelled: ``podFailurePolicy``, ``successPolicy``,
per-index back-off, and the ``batch.kubernetes.io/job-tracking`` finalizer (pods are counted while they exist; a Job
whose finished pods are deleted by hand forgets them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from labkit.core import kubetime
from labkit.core.wire import Obj
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.events import NORMAL, WARNING, EventRecorder
from labkit.emulator.store import Store

from .framework import (
    Key,
    OwnerController,
    epoch,
    is_deleting,
    namespace_terminating,
    pod_active,
    pod_ready,
)
from .pods import CreatePod, create_pod, delete_pod, owned_pods, pod_from_template

POD_FAILURE_BACKOFF = 10.0
"""Seconds before the first failed pod is replaced (``DefaultJobPodFailureBackOff``); doubled per failure."""

MAX_POD_FAILURE_BACKOFF = 360.0
"""The longest wait before a failed pod is replaced (``MaxJobPodFailureBackOff``)."""

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
"""An Indexed Job's pod's index: annotation and label, and the source of ``JOB_COMPLETION_INDEX``."""

BURST = 500
"""Pods created or deleted per reconcile at most."""

COMPLETIONS_REACHED = ("CompletionsReached", "Reached expected number of succeeded pods")
BACKOFF_LIMIT_EXCEEDED = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE_EXCEEDED = ("DeadlineExceeded", "Job was active longer than specified deadline")


def job_finished(job: Obj) -> str | None:
    """``Complete`` or ``Failed`` when the Job has that condition true, else ``None``."""
    for condition in (job.get("status") or {}).get("conditions") or ():
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return None


class JobController(OwnerController):
    """Creates, counts and deletes the pods of each Job, and writes its status and conditions.

    Args:
        store: the cluster's store.
        node_name: the node pods are bound to.
        clock: the current time in seconds since the epoch (deadlines, back-off, TTL); injectable for tests.
        create_pod: creates a pod through the API server's admission chain (webhooks included).
        backoff: the first pod-failure back-off in seconds (tests pass a fraction of a second).
    """

    name = "job"
    resource = ("batch", "jobs", "Job")

    def __init__(self, store: Store, node_name: str, *, clock: Callable[[], float] = time.time,
                 create_pod: CreatePod | None = None, backoff: float = POD_FAILURE_BACKOFF):
        super().__init__(store)
        self.node_name = node_name
        self._clock = clock
        self._admit_and_create = create_pod
        self._backoff = backoff
        self.events = EventRecorder(store, "job-controller")

    async def reconcile(self, key: Key) -> None:
        namespace, name = key  # type: ignore[misc]
        job = self.store.find("batch", "jobs", name, namespace)
        if job is None or is_deleting(job):
            return  # its pods are the garbage collector's
        now = self._clock()
        pods = owned_pods(self.store, job)
        active = [pod for pod in pods if pod_active(pod)]
        if job_finished(job):
            # A failed Job's pods may still be going; a finished Job only waits for its TTL.
            for pod in active:
                delete_pod(self.store, job, pod, self.events)
            self._expire(job, now)
            return
        spec = job.get("spec") or {}
        status = dict(job.get("status") or {})
        indexed = spec_of_job(job).get("completionMode") == "Indexed"
        completed = _completed_indexes(pods) if indexed else set()
        succeeded = len(completed) if indexed else sum(1 for pod in pods if _phase(pod) == "Succeeded")
        failed = sum(1 for pod in pods if _phase(pod) == "Failed")
        conditions = list(status.get("conditions") or ())
        stamp = kubetime.format_time(now)
        finished: tuple[str, str, str] | None = None
        if spec.get("suspend"):
            for pod in active[:BURST]:
                delete_pod(self.store, job, pod, self.events)
            active = []
            conditions = _set(conditions, "Suspended", ("JobSuspended", "Job suspended"), stamp)
        else:
            if any(c.get("type") == "Suspended" and c.get("status") == "True" for c in conditions):
                conditions = _set(conditions, "Suspended", ("JobResumed", "Job resumed"), stamp, status="False")
                self.events(job, NORMAL, "Resumed", "Job resumed")
            status.setdefault("startTime", stamp)
            backoff_limit = int(spec.get("backoffLimit", 6))
            deadline = spec.get("activeDeadlineSeconds")
            started = epoch(status["startTime"])
            # An outcome decided earlier stands: then the Job only waits for its pods to stop.
            finished = _interim(conditions)
            if finished is None and (failed > backoff_limit
                                     or _past_backoff_limit_on_failure(job, active, backoff_limit)):
                finished = ("Failed", *BACKOFF_LIMIT_EXCEEDED)
            elif finished is None and deadline is not None and now >= started + int(deadline):
                finished = ("Failed", *DEADLINE_EXCEEDED)
            elif finished is None and _complete(spec, succeeded, active):
                finished = ("Complete", *COMPLETIONS_REACHED)
            if finished is not None:
                for pod in active[:BURST]:
                    delete_pod(self.store, job, pod, self.events)
                active = []
            else:
                active = await self._manage(job, active, succeeded, pods, now)
                if deadline is not None:
                    self.enqueue(key, after=max(started + int(deadline) - now, 0) + 0.01)
        terminating = [pod for pod in owned_pods(self.store, job) if is_deleting(pod) and _phase(pod) not in
                       ("Succeeded", "Failed")]
        final = False
        if finished is not None:
            # As since Kubernetes 1.31: the interim condition at once, the final one once no pod is terminating.
            kind, reason, message = finished
            interim = "SuccessCriteriaMet" if kind == "Complete" else "FailureTarget"
            conditions = _set(conditions, interim, (reason, message), stamp)
            if not terminating:
                final = True
                conditions = _set(conditions, kind, (reason, message), stamp)
                if kind == "Complete":
                    status["completionTime"] = stamp
                    self.events(job, NORMAL, "Completed", "Job completed")
                else:
                    self.events(job, WARNING, reason, message)
        self._write_status(job, status, conditions, active, succeeded, failed, len(terminating))
        if final:
            self._expire(self.store.get("batch", "jobs", name, namespace), now)

    # --- pods --------------------------------------------------------------------------------------

    async def _manage(self, job: Obj, active: list[Obj], succeeded: int, pods: list[Obj], now: float) -> list[Obj]:
        """Create or delete pods so that the right number runs; returns the active pods afterwards."""
        spec = job.get("spec") or {}
        parallelism = int(spec.get("parallelism", 1))
        completions = spec.get("completions")
        if completions is None:
            # A work queue: once one pod has succeeded, the others finish on their own and none is added.
            want = 0 if succeeded else parallelism
        else:
            want = max(min(parallelism, int(completions) - succeeded), 0)
        diff = want - len(active)
        namespace, name = job["metadata"].get("namespace", ""), job["metadata"]["name"]
        if diff > 0 and not namespace_terminating(self.store, namespace):
            wait = self._backoff_remaining(pods, now)
            if wait > 0:
                self.enqueue((namespace, name), after=wait + 0.01)
                return active
            for index in self._next_indexes(job, active, pods, min(diff, BURST)):
                pod = pod_from_template(job, node_name=self.node_name)
                if index is not None:
                    _give_index(job, pod, index)
                active.append(await create_pod(self.store, job, pod, self.events, self._admit_and_create))
        elif diff < 0:
            # Newest first, as the real controller prefers to delete pods that did the least work.
            doomed = sorted(active, key=lambda pod: -epoch(pod["metadata"].get("creationTimestamp")))[:-diff]
            for pod in doomed:
                delete_pod(self.store, job, pod, self.events)
            gone = {pod["metadata"]["uid"] for pod in doomed}
            active = [pod for pod in active if pod["metadata"]["uid"] not in gone]
        return active

    @staticmethod
    def _next_indexes(job: Obj, active: list[Obj], pods: list[Obj], count: int) -> list[int | None]:
        """The completion indexes the next ``count`` pods get: the lowest ones neither done nor running."""
        spec = spec_of_job(job)
        if spec.get("completionMode") != "Indexed":
            return [None] * count
        taken = _completed_indexes(pods) | {_index_of(pod) for pod in active}
        free = [index for index in range(int(spec.get("completions") or 0)) if index not in taken]
        return list(free[:count])

    def _backoff_remaining(self, pods: list[Obj], now: float) -> float:
        """Seconds to wait before replacing failed pods: the back-off doubles per failure, from the last one."""
        failures = [pod for pod in pods if _phase(pod) == "Failed"]
        if not failures:
            return 0.0
        delay = min(self._backoff * 2 ** (len(failures) - 1), MAX_POD_FAILURE_BACKOFF)
        last = max(_finished_at(pod) for pod in failures)
        return last + delay - now

    def _expire(self, job: Obj, now: float) -> None:
        """Delete a finished Job whose ``ttlSecondsAfterFinished`` has passed, or look again when it will have."""
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return
        finished_at = max((epoch(c.get("lastTransitionTime")) for c in (job.get("status") or {}).get("conditions")
                           or () if c.get("type") in ("Complete", "Failed") and c.get("status") == "True"),
                          default=now)
        remaining = finished_at + int(ttl) - now
        namespace, name = job["metadata"].get("namespace", ""), job["metadata"]["name"]
        if remaining > 0:
            self.enqueue((namespace, name), after=remaining + 0.01)
            return
        try:
            self.store.delete("batch", "jobs", name, namespace, uid=job["metadata"]["uid"])
        except StatusError as exc:
            if exc.code not in (404, 409):
                raise

    # --- status ------------------------------------------------------------------------------------

    def _write_status(self, job: Obj, status: dict[str, Any], conditions: list[Obj], active: list[Obj],
                      succeeded: int, failed: int, terminating: int) -> None:
        new: dict[str, Any] = {}
        if conditions:
            new["conditions"] = conditions
        for field in ("startTime", "completionTime"):
            if status.get(field):
                new[field] = status[field]
        # Zero counts are omitted on the wire, except the pointer fields a v1.32 server always writes.
        for field, value in (("active", len(active)), ("succeeded", succeeded), ("failed", failed)):
            if value:
                new[field] = value
        if spec_of_job(job).get("completionMode") == "Indexed":
            new["completedIndexes"] = _ranges(sorted(_completed_indexes(owned_pods(self.store, job))))
        new["ready"] = sum(1 for pod in active if pod_ready(pod))
        new["terminating"] = terminating
        new["uncountedTerminatedPods"] = {}
        if new != (job.get("status") or {}):
            fresh = self.store.get("batch", "jobs", job["metadata"]["name"], job["metadata"].get("namespace", ""))
            fresh["status"] = new
            self.store.update_status("batch", "jobs", fresh)


def spec_of_job(job: Obj) -> dict[str, Any]:
    """A Job's spec, empty when missing."""
    return job.get("spec") or {}


def _index_of(pod: Obj) -> int | None:
    value = (pod["metadata"].get("annotations") or {}).get(COMPLETION_INDEX)
    return int(value) if value is not None and str(value).isdigit() else None


def _completed_indexes(pods: list[Obj]) -> set[int]:
    return {index for pod in pods if _phase(pod) == "Succeeded" and (index := _index_of(pod)) is not None}


def _give_index(job: Obj, pod: Obj, index: int) -> None:
    """What an Indexed Job adds to a pod: its index as annotation, label, hostname and ``JOB_COMPLETION_INDEX``."""
    metadata = pod["metadata"]
    metadata["generateName"] = f"{job['metadata']['name']}-{index}-"
    metadata.setdefault("annotations", {})[COMPLETION_INDEX] = str(index)
    metadata.setdefault("labels", {})[COMPLETION_INDEX] = str(index)
    spec = pod["spec"]
    spec["hostname"] = f"{job['metadata']['name']}-{index}"
    variable = {"name": "JOB_COMPLETION_INDEX",
                "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}}
    for key in ("initContainers", "containers"):
        spec[key] = [{**container, "env": [*(container.get("env") or ()), variable]} for container in spec.get(key)
                     or ()]
        if not spec[key]:
            del spec[key]


def _ranges(indexes: list[int]) -> str:
    """``0-2,4``: sorted indexes as ``status.completedIndexes`` writes them."""
    runs: list[list[int]] = []
    for index in indexes:
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return ",".join(str(first) if first == last else f"{first}-{last}" for first, last in runs)



def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def _complete(spec: dict[str, Any], succeeded: int, active: list[Obj]) -> bool:
    completions = spec.get("completions")
    if completions is None:
        return succeeded > 0 and not active
    return succeeded >= int(completions)


def _past_backoff_limit_on_failure(job: Obj, active: list[Obj], backoff_limit: int) -> bool:
    """With ``restartPolicy: OnFailure`` the node restarts containers in place: their restarts count as failures."""
    template_spec = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    if template_spec.get("restartPolicy") != "OnFailure":
        return False
    restarts = sum(int(container.get("restartCount") or 0) for pod in active
                   for key in ("initContainerStatuses", "containerStatuses")
                   for container in (pod.get("status") or {}).get(key) or ())
    return restarts > 0 if backoff_limit == 0 else restarts >= backoff_limit


def _finished_at(pod: Obj) -> float:
    """When a failed pod's last container ended (its creation time when the node said nothing more)."""
    ends = [epoch(((container.get("state") or {}).get("terminated") or {}).get("finishedAt"))
            for container in (pod.get("status") or {}).get("containerStatuses") or ()]
    return max([end for end in ends if end] or [epoch(pod["metadata"].get("creationTimestamp"))])


def _interim(conditions: list[Obj]) -> tuple[str, str, str] | None:
    """The outcome an interim condition (``SuccessCriteriaMet``, ``FailureTarget``) already decided, if any."""
    for condition in conditions:
        if condition.get("status") == "True" and condition.get("type") in ("SuccessCriteriaMet", "FailureTarget"):
            kind = "Complete" if condition["type"] == "SuccessCriteriaMet" else "Failed"
            return kind, str(condition.get("reason", "")), str(condition.get("message", ""))
    return None


def _set(conditions: list[Obj], kind: str, why: tuple[str, str], now: str, *, status: str = "True") -> list[Obj]:
    """Conditions with a Job condition set as the Job controller writes it (``lastProbeTime`` too)."""
    reason, message = why
    result = [c for c in conditions if c.get("type") != kind]
    existing = next((c for c in conditions if c.get("type") == kind), None)
    if existing is not None and existing.get("status") == status and existing.get("reason") == reason:
        return conditions
    result.append({"type": kind, "status": status, "lastProbeTime": now, "lastTransitionTime": now,
                   "reason": reason, "message": message})
    return result
