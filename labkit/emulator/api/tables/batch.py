"""Printers of the ``batch`` group: Jobs and CronJobs, as a v1.32 API server prints them.

A Job's STATUS is the first of its true conditions in the order kubectl's printer checks them (``Complete``,
``Failed``, then ``Terminating`` for a Job being deleted, ``Suspended``, ``FailureTarget``, ``SuccessCriteriaMet``),
``Running`` otherwise; COMPLETIONS is ``succeeded/completions`` (``n/1 of p`` for a work queue with parallelism);
DURATION runs from ``startTime`` until ``completionTime``, or until now while the Job runs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .cells import (
    AGE,
    CONTAINERS,
    IMAGES,
    NAME,
    Column,
    Obj,
    Printer,
    age,
    age_of,
    as_int,
    aware,
    container_cells,
    format_label_selector,
    human_duration,
    metadata_of,
    name_of,
    parse_time,
    spec_of,
    status_of,
    template_spec,
)

# The order in which kubectl's printer looks for a true condition (``Terminating`` sits between Failed and Suspended).
_STATUS_CONDITIONS = ("Complete", "Failed", "Suspended", "FailureTarget", "SuccessCriteriaMet")


def job_status(job: Obj) -> str:
    """The STATUS cell of a Job (``Complete``, ``Failed``, ``Terminating``, ``Suspended`` … or ``Running``)."""
    true = {c.get("type") for c in status_of(job).get("conditions") or () if c.get("status") == "True"}
    for condition in _STATUS_CONDITIONS[:2]:
        if condition in true:
            return condition
    if metadata_of(job).get("deletionTimestamp"):
        return "Terminating"
    for condition in _STATUS_CONDITIONS[2:]:
        if condition in true:
            return condition
    return "Running"


def job_completions(job: Obj) -> str:
    """The COMPLETIONS cell: ``succeeded/completions``, or ``succeeded/1 of parallelism`` for a work queue."""
    spec, succeeded = spec_of(job), as_int(status_of(job).get("succeeded"))
    if spec.get("completions") is not None:
        return f"{succeeded}/{as_int(spec.get('completions'))}"
    parallelism = as_int(spec.get("parallelism"))
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def job_duration(job: Obj, now: dt.datetime) -> str:
    """The DURATION cell: from start to completion, or to now while running; empty before the start."""
    status = status_of(job)
    started = parse_time(status.get("startTime"))
    if started is None:
        return ""
    finished = parse_time(status.get("completionTime"))
    end = aware(finished) if finished is not None else aware(now)
    return human_duration(end - aware(started))


def _job_cells(job: Obj, now: dt.datetime) -> list[Any]:
    return [name_of(job), job_status(job), job_completions(job), job_duration(job, now), age_of(job, now),
            *container_cells(template_spec(job)), format_label_selector(spec_of(job).get("selector"))]


def _cron_job_cells(cron_job: Obj, now: dt.datetime) -> list[Any]:
    spec, status = spec_of(cron_job), status_of(cron_job)
    job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    suspend = spec.get("suspend")
    last = status.get("lastScheduleTime")
    return [name_of(cron_job), str(spec.get("schedule", "")), str(spec.get("timeZone") or "<none>"),
            "<unset>" if suspend is None else ("True" if suspend else "False"), len(status.get("active") or ()),
            age(last, now) if last else "<none>", age_of(cron_job, now),
            *container_cells((job_spec.get("template") or {}).get("spec") or {}),
            format_label_selector(job_spec.get("selector"))]


PRINTERS: dict[tuple[str, str], Printer] = {
    ("batch", "Job"): ([NAME, Column("Status", description="Status of the job."),
                        Column("Completions", description="The number of pods which reached phase Succeeded."),
                        Column("Duration", description="Time required to complete the job."), AGE,
                        CONTAINERS, IMAGES, Column("Selector", priority=1, description="The job's pod selector.")],
                       _job_cells),
    ("batch", "CronJob"): ([NAME, Column("Schedule", description="The schedule in Cron format."),
                            Column("Timezone", description="The time zone of the schedule."),
                            Column("Suspend", "boolean", "Whether subsequent executions are suspended."),
                            Column("Active", "integer", "The number of running jobs."),
                            Column("Last Schedule", description="When the job was last scheduled."), AGE,
                            CONTAINERS, IMAGES,
                            Column("Selector", priority=1, description="The jobs' pod selector.")],
                           _cron_job_cells),
}
