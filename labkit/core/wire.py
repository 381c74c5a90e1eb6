"""The shapes of the Kubernetes payloads labkit reads, as ``TypedDict``s, and ``Obj`` for any object.

Objects travel as plain dicts with their wire names as keys (``metadata``, ``ownerReferences`` …), on the
client side (the Kubernetes client's ``to_dict`` is not used: its snake_case keys are not what a learner sees
in YAML) and in the emulator's store alike. ``Obj`` is the type for "some Kubernetes object"; the
``TypedDict``s document the parts labkit actually reads, so a reader sees which fields matter without
opening the API reference. They are ``total=False``: the API omits empty fields.
"""

from __future__ import annotations

from typing import Any, TypedDict

Obj = dict[str, Any]
"""Any Kubernetes object (or list, or Status) as it is on the wire: JSON-shaped, wire names as keys."""


class OwnerReference(TypedDict, total=False):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool
    blockOwnerDeletion: bool


class ObjectMeta(TypedDict, total=False):
    name: str
    generateName: str
    namespace: str
    uid: str
    resourceVersion: str
    generation: int
    creationTimestamp: str
    deletionTimestamp: str
    deletionGracePeriodSeconds: int
    labels: dict[str, str]
    annotations: dict[str, str]
    ownerReferences: list[OwnerReference]
    finalizers: list[str]
    managedFields: list[dict[str, Any]]


class LabelSelectorRequirement(TypedDict, total=False):
    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist
    values: list[str]


class LabelSelector(TypedDict, total=False):
    matchLabels: dict[str, str]
    matchExpressions: list[LabelSelectorRequirement]


class StatusCause(TypedDict, total=False):
    reason: str
    message: str
    field: str


class StatusDetails(TypedDict, total=False):
    name: str
    group: str
    kind: str
    causes: list[StatusCause]


class Status(TypedDict, total=False):
    """``meta/v1 Status``: what an API server answers instead of an object when a request fails."""

    kind: str
    apiVersion: str
    status: str  # Success or Failure
    message: str
    reason: str  # NotFound, AlreadyExists, Conflict, Invalid, Forbidden …
    code: int
    details: StatusDetails


class ServicePort(TypedDict, total=False):
    name: str
    protocol: str
    port: int
    targetPort: int | str
    nodePort: int
    appProtocol: str


class LoadBalancerIngress(TypedDict, total=False):
    ip: str
    hostname: str


class EndpointAddress(TypedDict, total=False):
    ip: str
    hostname: str
    nodeName: str
    targetRef: dict[str, Any]


class ContainerStatus(TypedDict, total=False):
    name: str
    ready: bool
    restartCount: int
    image: str
    state: dict[str, Any]
    lastState: dict[str, Any]


class PodStatus(TypedDict, total=False):
    phase: str
    podIP: str
    hostIP: str
    conditions: list[dict[str, Any]]
    containerStatuses: list[ContainerStatus]
    startTime: str
