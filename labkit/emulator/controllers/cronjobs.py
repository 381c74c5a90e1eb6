"""The CronJob controller: a Job from the template at each time the schedule names.

It follows ``pkg/controller/cronjob`` (the v2 controller) for what ``kubectl get cronjobs`` and ``kubectl get jobs``
show: at each scheduled time, unless ``suspend`` is set or the time is older than ``startingDeadlineSeconds``, it
creates the Job ``<cronjob>-<scheduled time in minutes since the epoch>`` from ``jobTemplate`` (annotated with
``batch.kubernetes.io/cronjob-scheduled-timestamp``), honouring ``concurrencyPolicy`` (``Allow``, ``Forbid`` skips
a run while one is active, ``Replace`` deletes the active ones first). Only the most recent missed time is run, as
the real controller does after downtime. ``status.active`` lists the running Jobs, ``lastScheduleTime`` and
``lastSuccessfulTime`` say when; finished Jobs beyond ``successfulJobsHistoryLimit``/``failedJobsHistoryLimit``
are deleted, oldest first. Schedules are parsed by ``croniter`` (the five standard fields and the ``@hourly``-style
macros), in ``spec.timeZone`` when given, UTC otherwise.

Jobs are created through the API server, as a real controller does, so they get their uid-based selector there.
"""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from croniter import croniter

from labkit.core import kubetime
from labkit.core.wire import Obj
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.events import NORMAL, WARNING, EventRecorder
from labkit.emulator.store import Store, WatchEvent

from .framework import (
    Key,
    OwnerController,
    controller_ref,
    epoch,
    is_deleting,
    namespace_terminating,
    new_controller_ref,
)
from .jobs import job_finished

SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"

CreateJob = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""Creates a Job through the API server's admission chain (which gives it its selector)."""


def schedule_times(cron_job: Obj, now: float) -> tuple[float | None, float]:
    """``(the most recent scheduled time not run yet or None, the next scheduled time)``, in epoch seconds.

    Args:
        cron_job: the CronJob.
        now: the current time.

    Raises:
        ValueError: an unparseable schedule or unknown time zone.
    """
    spec = cron_job.get("spec") or {}
    zone = zoneinfo.ZoneInfo(spec["timeZone"]) if spec.get("timeZone") else dt.UTC
    moment = dt.datetime.fromtimestamp(now, zone)
    previous = croniter(str(spec.get("schedule", "")), moment).get_prev(dt.datetime).timestamp()
    following = croniter(str(spec.get("schedule", "")), moment).get_next(dt.datetime).timestamp()
    status = cron_job.get("status") or {}
    earliest = epoch(status.get("lastScheduleTime")) or epoch(cron_job["metadata"].get("creationTimestamp"))
    deadline = spec.get("startingDeadlineSeconds")
    if deadline is not None:
        earliest = max(earliest, now - int(deadline))
    return (previous if previous > earliest else None), following


class CronJobController(OwnerController):
    """Creates the Jobs of each CronJob on schedule, keeps its history short and writes its status.

    Args:
        store: the cluster's store.
        clock: the current time in seconds since the epoch; injectable for tests.
        create_job: creates a Job through the API server; the store directly when ``None``.
    """

    name = "cronjob"
    resource = ("batch", "cronjobs", "CronJob")
    owns = ("batch", "jobs")

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time, create_job: CreateJob | None = None):
        super().__init__(store)
        self._clock = clock
        self._create_job = create_job
        self.events = EventRecorder(store, "cronjob-controller")

    def keys_for(self, event: WatchEvent) -> Iterable[Key]:
        if (event.group, event.resource) != self.owns:
            return super().keys_for(event)
        # A CronJob has no selector and adopts nothing: only the Jobs it made concern it.
        ref = controller_ref(event.object)
        if ref is None or ref.get("kind") != "CronJob":
            return []
        return [(event.object["metadata"].get("namespace", ""), ref["name"])]

    async def reconcile(self, key: Key) -> None:
        namespace, name = key  # type: ignore[misc]
        cron_job = self.store.find("batch", "cronjobs", name, namespace)
        if cron_job is None or is_deleting(cron_job):
            return  # its Jobs are the garbage collector's
        spec = cron_job.get("spec") or {}
        status = dict(cron_job.get("status") or {})
        now = self._clock()
        jobs = self._jobs(cron_job)
        active = [job for job in jobs if not job_finished(job) and not is_deleting(job)]
        for job in jobs:
            if job_finished(job) == "Complete":
                finished = max(epoch((job.get("status") or {}).get("completionTime")), 0.0)
                if finished > epoch(status.get("lastSuccessfulTime")):
                    status["lastSuccessfulTime"] = kubetime.format_time(finished)
                    self.events(cron_job, NORMAL, "SawCompletedJob",
                                f"Saw completed job: {job['metadata']['name']}, condition: Complete")
        try:
            due, following = schedule_times(cron_job, now)
        except (ValueError, KeyError, zoneinfo.ZoneInfoNotFoundError) as exc:
            self.events(cron_job, WARNING, "InvalidSchedule", f"invalid schedule: {spec.get('schedule')}: {exc}")
            return
        if due is not None and not spec.get("suspend") and not namespace_terminating(self.store, namespace):
            policy = spec.get("concurrencyPolicy", "Allow")
            if policy == "Forbid" and active:
                self.events(cron_job, NORMAL, "JobAlreadyActive", "Not starting job because prior execution is "
                                                                  "running and concurrency policy is Forbid")
            else:
                if policy == "Replace":
                    for job in active:
                        self._delete(cron_job, job)
                    active = []
                created = await self._start(cron_job, due)
                if created is not None:
                    active.append(created)
            status["lastScheduleTime"] = kubetime.format_time(due)
        self._clean_up(cron_job, jobs)
        status["active"] = [_reference(job) for job in active]
        if not status["active"]:
            del status["active"]
        if status != (cron_job.get("status") or {}):
            fresh = self.store.get("batch", "cronjobs", name, namespace)
            fresh["status"] = status
            self.store.update_status("batch", "cronjobs", fresh)
        self.enqueue(key, after=max(following - now, 0) + 0.01)

    def _jobs(self, cron_job: Obj) -> list[Obj]:
        uid = cron_job["metadata"]["uid"]
        return [job for job in self.store.list("batch", "jobs", namespace=cron_job["metadata"].get("namespace")).items
                if (controller_ref(job) or {}).get("uid") == uid]

    async def _start(self, cron_job: Obj, due: float) -> Obj | None:
        template = (cron_job.get("spec") or {}).get("jobTemplate") or {}
        template_meta = template.get("metadata") or {}
        name = f"{cron_job['metadata']['name']}-{int(due // 60)}"
        metadata: dict[str, Any] = {
            "name": name, "namespace": cron_job["metadata"].get("namespace", ""),
            "labels": dict(template_meta.get("labels") or {}),
            "annotations": {**(template_meta.get("annotations") or {}),
                            SCHEDULED_TIMESTAMP: kubetime.format_time(due)},
            "ownerReferences": [new_controller_ref(cron_job)],
        }
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": template.get("spec") or {}}
        try:
            if self._create_job is not None:
                created = await self._create_job(job)
            else:
                created = self.store.create("batch", "jobs", job)
        except StatusError as exc:
            if exc.code == 409:
                return None  # already made for this time (a restart between the create and the status write)
            self.events(cron_job, WARNING, "FailedCreate", f"Error creating job: {exc.message}")
            raise
        self.events(cron_job, NORMAL, "SuccessfulCreate", f"Created job {name}")
        return created

    def _clean_up(self, cron_job: Obj, jobs: list[Obj]) -> None:
        spec = cron_job.get("spec") or {}
        for outcome, field, default in (("Complete", "successfulJobsHistoryLimit", 3),
                                        ("Failed", "failedJobsHistoryLimit", 1)):
            limit = spec.get(field, default)
            finished = sorted((job for job in jobs if job_finished(job) == outcome and not is_deleting(job)),
                              key=lambda job: epoch((job.get("status") or {}).get("startTime")
                                                    or job["metadata"].get("creationTimestamp")))
            for job in finished[:max(len(finished) - int(limit), 0)]:
                self._delete(cron_job, job)

    def _delete(self, cron_job: Obj, job: Obj) -> None:
        try:
            self.store.delete("batch", "jobs", job["metadata"]["name"], job["metadata"].get("namespace", ""),
                              uid=job["metadata"]["uid"])
        except StatusError as exc:
            if exc.code not in (404, 409):
                raise
            return
        self.events(cron_job, NORMAL, "SuccessfulDelete", f"Deleted job {job['metadata']['name']}")


def _reference(job: Obj) -> Obj:
    metadata = job["metadata"]
    return {"apiVersion": "batch/v1", "kind": "Job", "name": metadata["name"], "namespace": metadata.get("namespace"),
            "uid": metadata["uid"], "resourceVersion": metadata.get("resourceVersion")}
