"""Printers of the ``apps`` group: Deployments, ReplicaSets, DaemonSets and StatefulSets."""

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
    age_of,
    as_int,
    container_cells,
    format_label_selector,
    format_labels,
    name_of,
    selector_string,
    spec_of,
    status_of,
    template_spec,
)


def _deployment_cells(deployment: Obj, now: dt.datetime) -> list[Any]:
    spec, status = spec_of(deployment), status_of(deployment)
    desired = as_int(spec.get("replicas"), 1)
    return [name_of(deployment), f"{as_int(status.get('readyReplicas'))}/{desired}",
            as_int(status.get("updatedReplicas")), as_int(status.get("availableReplicas")), age_of(deployment, now),
            *container_cells(template_spec(deployment)), selector_string(spec.get("selector"))]


def _replica_set_cells(replica_set: Obj, now: dt.datetime) -> list[Any]:
    spec, status = spec_of(replica_set), status_of(replica_set)
    return [name_of(replica_set), as_int(spec.get("replicas"), 1), as_int(status.get("replicas")),
            as_int(status.get("readyReplicas")), age_of(replica_set, now),
            *container_cells(template_spec(replica_set)), format_label_selector(spec.get("selector"))]


def _daemon_set_cells(daemon_set: Obj, now: dt.datetime) -> list[Any]:
    spec, status = spec_of(daemon_set), status_of(daemon_set)
    return [name_of(daemon_set), as_int(status.get("desiredNumberScheduled")),
            as_int(status.get("currentNumberScheduled")), as_int(status.get("numberReady")),
            as_int(status.get("updatedNumberScheduled")), as_int(status.get("numberAvailable")),
            format_labels(template_spec(daemon_set).get("nodeSelector")), age_of(daemon_set, now),
            *container_cells(template_spec(daemon_set)), format_label_selector(spec.get("selector"))]


def _stateful_set_cells(stateful_set: Obj, now: dt.datetime) -> list[Any]:
    desired = as_int(spec_of(stateful_set).get("replicas"), 1)
    return [name_of(stateful_set), f"{as_int(status_of(stateful_set).get('readyReplicas'))}/{desired}",
            age_of(stateful_set, now), *container_cells(template_spec(stateful_set))]


PRINTERS: dict[tuple[str, str], Printer] = {
    ("apps", "Deployment"): ([NAME, Column("Ready", description="Ready replicas out of desired."),
                              Column("Up-to-date", description="Replicas running the latest template."),
                              Column("Available", description="Replicas available to serve."), AGE,
                              CONTAINERS, IMAGES,
                              Column("Selector", priority=1, description="The deployment's pod selector.")],
                             _deployment_cells),
    ("apps", "ReplicaSet"): ([NAME, Column("Desired", "integer", "Replicas asked for."),
                              Column("Current", "integer", "Replicas that exist."),
                              Column("Ready", "integer", "Replicas that are ready."), AGE, CONTAINERS, IMAGES,
                              Column("Selector", priority=1, description="The replica set's pod selector.")],
                             _replica_set_cells),
    ("apps", "DaemonSet"): ([NAME, Column("Desired", "integer", "Nodes that should run the pod."),
                             Column("Current", "integer", "Nodes running the pod."),
                             Column("Ready", "integer", "Nodes with the pod ready."),
                             Column("Up-to-date", "integer", "Nodes running the latest template."),
                             Column("Available", "integer", "Nodes with the pod available."),
                             Column("Node Selector", description="The pod template's node selector."), AGE,
                             CONTAINERS, IMAGES,
                             Column("Selector", priority=1, description="The daemon set's pod selector.")],
                            _daemon_set_cells),
    ("apps", "StatefulSet"): ([NAME, Column("Ready", description="Ready replicas out of desired."), AGE,
                               CONTAINERS, IMAGES], _stateful_set_cells),
}
