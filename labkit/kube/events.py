"""Events about an object, as ``kubectl describe`` lists them — and the warnings worth quoting.

When something is not ready, the cluster usually already said why: ``FailedCreate … failed calling
webhook`` on a ReplicaSet whose pods an unreachable istiod refuses, ``Failed … ErrImagePull`` on a pod.
:func:`events_for` reads those Events for one object (with kubectl's field selector on
``involvedObject``), and :func:`warnings_about` gathers the Warning Events of a workload and everything
it owns by name, so a timeout message can quote them instead of only counting replicas.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kubernetes.client.rest import ApiException

from labkit.core.kubetime import timestamp
from labkit.core.wire import Obj
from labkit.kube.clients import dynamic_for, raise_api_error
from labkit.kube.contexts import ContextRef
from labkit.kube.execing import parse_target, pods


@dataclass(frozen=True)
class Event:
    """One Event, in the terms ``kubectl describe`` shows.

    Args:
        type: ``Normal`` or ``Warning``.
        reason: CamelCase reason (``FailedCreate``).
        message: what happened.
        kind: the kind of the object it is about.
        name: that object's name.
        count: how many times it happened (``x3`` in kubectl).
        source: the reporting component (``replicaset-controller``, ``kubelet``).
        last_seen: seconds since the epoch of the last occurrence (0 when unknown).
    """

    type: str
    reason: str
    message: str
    kind: str
    name: str
    count: int = 1
    source: str = ""
    last_seen: float = 0.0

    def line(self) -> str:
        """``Warning FailedCreate replicaset/web-5d8 (x3): Error creating: …``, one line."""
        times = f" (x{self.count})" if self.count > 1 else ""
        return f"{self.type} {self.reason} {self.kind.lower()}/{self.name}{times}: {self.message}"


def _event(obj: Obj) -> Event:
    involved = obj.get("involvedObject") or {}
    series = obj.get("series") or {}
    count = int(series.get("count") or obj.get("count") or 1)
    moments = [timestamp(series.get("lastObservedTime")), timestamp(obj.get("lastTimestamp")),
               timestamp(obj.get("eventTime"))]
    source = (obj.get("source") or {}).get("component") or obj.get("reportingComponent") or ""
    return Event(str(obj.get("type") or ""), str(obj.get("reason") or ""), str(obj.get("message") or "").strip(),
                 str(involved.get("kind") or ""), str(involved.get("name") or ""), count, source,
                 max((m for m in moments if m is not None), default=0.0))


def _list(context: ContextRef, namespace: str, field_selector: str, kubeconfig: Path | str | None) -> list[Event]:
    dyn = dynamic_for(context, kubeconfig)
    resource = dyn.resources.get(api_version="v1", kind="Event")
    try:
        found = dyn.get(resource, namespace=namespace, field_selector=field_selector).to_dict()
    except ApiException as exc:
        raise_api_error(exc, f"listing events in {namespace} on {context}")
    return sorted((_event(item) for item in found.get("items") or []), key=lambda e: e.last_seen)


def events_for(context: ContextRef, kind: str, name: str, namespace: str, *, kubeconfig: Path | str | None = None,
               warnings_only: bool = False) -> list[Event]:
    """The Events about one object, oldest first (what ``kubectl describe`` ends with).

    Args:
        context: the kubeconfig context.
        kind: the object's kind (``ReplicaSet``).
        name: its name.
        namespace: its namespace.
        kubeconfig: the kubeconfig file; by default ``KUBECONFIG`` or ``~/.kube/config``.
        warnings_only: only ``Warning`` Events.
    """
    selector = f"involvedObject.kind={kind},involvedObject.name={name},involvedObject.namespace={namespace}"
    if warnings_only:
        selector += ",type=Warning"
    return _list(context, namespace, selector, kubeconfig)


def warnings_about(context: ContextRef, namespace: str, names: Iterable[str], *, limit: int = 5,
                   kubeconfig: Path | str | None = None) -> list[Event]:
    """The latest Warning Events about the named objects and what they own by name (``web`` → ``web-5d8…``).

    Owned objects are found by Kubernetes' naming (a Deployment's ReplicaSets and pods start with its name
    and a dash), which costs one list per namespace instead of a walk of ownerReferences.

    Args:
        context: the kubeconfig context.
        namespace: where the objects live.
        names: object names (a Deployment's, a pod's).
        limit: at most this many, the most recent.
        kubeconfig: the kubeconfig file; by default ``KUBECONFIG`` or ``~/.kube/config``.
    """
    wanted = [name for name in names if name]
    if not wanted:
        return []
    found = [event for event in _list(context, namespace, "type=Warning", kubeconfig)
             if any(event.name == name or event.name.startswith(f"{name}-") for name in wanted)]
    return found[-limit:]


def recent_warnings(context: ContextRef, namespace: str, *, within: float = 60.0, limit: int = 5,
                    kubeconfig: Path | str | None = None) -> list[Event]:
    """The Warning Events of a namespace that happened within the last ``within`` seconds, oldest first: what is
    going wrong *now* (an Event outlives its cause by an hour, and a fixed problem should not be quoted).

    Args:
        context: the kubeconfig context.
        namespace: the namespace.
        within: seconds back from now.
        limit: at most this many, the most recent.
        kubeconfig: the kubeconfig file; by default ``KUBECONFIG`` or ``~/.kube/config``.
    """
    since = time.time() - within
    found = _list(context, namespace, "type=Warning", kubeconfig)
    return [event for event in found if event.last_seen >= since][-limit:]


def warning_lines(context: ContextRef, namespace: str, targets: Iterable[str], selector: str | None = None,
                  kubeconfig: Path | str | None = None) -> list[str]:
    """What a timed-out wait adds to its message: the cluster's own explanation, one line per Warning Event.

    Args:
        context: the kubeconfig context.
        namespace: where the targets live.
        targets: what was awaited (``deploy/x``, ``pod/y``).
        selector: the label selector of awaited pods, if any.
        kubeconfig: the kubeconfig file; by default ``KUBECONFIG`` or ``~/.kube/config``.
    """
    names = [parse_target(target)[1] for target in targets]
    if selector:
        names += [pod.name for pod in pods(context, namespace, selector, kubeconfig=kubeconfig)]
    return [event.line() for event in warnings_about(context, namespace, names, kubeconfig=kubeconfig)]
