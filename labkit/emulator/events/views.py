"""``events.k8s.io/v1``: a second face of the core/v1 Events, as on a real API server.

Kubernetes stores one kind of Event and serves it in two groups; an Event the kubelet writes through
core/v1 is listed by ``kubectl events`` and by an events.k8s.io client alike. Here the core/v1 objects
are the stored ones and :class:`EventsView` converts on the way in and out, field selectors included
(``regarding.name`` is ``involvedObject.name`` underneath, ``reportingController`` is
``reportingComponent``), so watches and lists of either group see every Event once.

The view wraps the store the API server uses; every other resource passes straight through.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from labkit.core.selectors import FieldRequirement, FieldSelector, parse_field_selector
from labkit.core.wire import Obj
from labkit.emulator.store import ListResult, Store, WatchEvent, WatchFilter

GROUP = "events.k8s.io"
RESOURCE = "events"
API_VERSION = "events.k8s.io/v1"

# events.k8s.io/v1 field → core/v1 field: the same fact under two names.
_RENAMED = {
    "regarding": "involvedObject",
    "note": "message",
    "reportingController": "reportingComponent",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
}
_SHARED = ("eventTime", "series", "reportingInstance", "action", "reason", "related", "type")
# The field selectors kube-apiserver accepts for events.k8s.io, and what they select in storage.
_FIELD_LABELS = {
    **{f"regarding.{field}": f"involvedObject.{field}"
       for field in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
    "reportingController": "reportingComponent",
}


def core_to_events_v1(event: Obj) -> Obj:
    """An events.k8s.io/v1 Event from a stored core/v1 one.

    Args:
        event: a core/v1 Event.
    """
    converted: Obj = {"apiVersion": API_VERSION, "kind": "Event",
                      "metadata": copy.deepcopy(event.get("metadata") or {})}
    # eventTime is required in events.k8s.io; Events written through core/v1 show it as null.
    converted["eventTime"] = event.get("eventTime")
    for field in _SHARED:
        if event.get(field) not in (None, "", {}) and field != "eventTime":
            converted[field] = copy.deepcopy(event[field])
    for new, old in _RENAMED.items():
        value = event.get(old)
        if value not in (None, "", {}, 0):
            converted[new] = copy.deepcopy(value)
    return converted


def events_v1_to_core(event: Obj) -> Obj:
    """The core/v1 Event stored for an events.k8s.io/v1 one (a create or update through that group).

    Args:
        event: an events.k8s.io/v1 Event.
    """
    converted: Obj = {"apiVersion": "v1", "kind": "Event", "metadata": copy.deepcopy(event.get("metadata") or {})}
    for field in _SHARED:
        if field in event:
            converted[field] = copy.deepcopy(event[field])
    for new, old in _RENAMED.items():
        if event.get(new) not in (None, ""):
            converted[old] = copy.deepcopy(event[new])
    converted.setdefault("involvedObject", {})
    converted.setdefault("source", {})
    return converted


def core_field_selector(selector: str | FieldSelector | None) -> FieldSelector:
    """An events.k8s.io field selector in terms of the stored core/v1 fields.

    Args:
        selector: the ``?fieldSelector=`` of an events.k8s.io request.
    """
    parsed = selector if isinstance(selector, FieldSelector) else parse_field_selector(selector)
    return FieldSelector(tuple(FieldRequirement(_FIELD_LABELS.get(term.path, term.path), term.operator, term.value)
                               for term in parsed.requirements))


def _is_view(group: str, resource: str) -> bool:
    return (group, resource) == (GROUP, RESOURCE)


class EventsView:
    """A store that also serves ``events.k8s.io`` Events, converted from the core/v1 objects.

    Args:
        store: the cluster's store; everything but events.k8s.io Events is passed through.
    """

    def __init__(self, store: Store):
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def get(self, group: str, resource: str, name: str, namespace: str = "") -> Obj:
        if _is_view(group, resource):
            return core_to_events_v1(self._store.get("", RESOURCE, name, namespace))
        return self._store.get(group, resource, name, namespace)

    def find(self, group: str, resource: str, name: str, namespace: str = "") -> Obj | None:
        if _is_view(group, resource):
            found = self._store.find("", RESOURCE, name, namespace)
            return core_to_events_v1(found) if found is not None else None
        return self._store.find(group, resource, name, namespace)

    def list(self, group: str, resource: str, *, namespace: str | None = None,
             label_selector: Any = "", field_selector: Any = "") -> ListResult:
        if not _is_view(group, resource):
            return self._store.list(group, resource, namespace=namespace, label_selector=label_selector,
                                    field_selector=field_selector)
        result = self._store.list("", RESOURCE, namespace=namespace, label_selector=label_selector,
                                  field_selector=core_field_selector(field_selector))
        return ListResult([core_to_events_v1(item) for item in result.items], result.resource_version)

    def create(self, group: str, resource: str, obj: Obj, *, uid: str | None = None) -> Obj:
        if _is_view(group, resource):
            return core_to_events_v1(self._store.create("", RESOURCE, events_v1_to_core(obj), uid=uid))
        return self._store.create(group, resource, obj, uid=uid)

    def update(self, group: str, resource: str, obj: Obj) -> Obj:
        if _is_view(group, resource):
            return core_to_events_v1(self._store.update("", RESOURCE, events_v1_to_core(obj)))
        return self._store.update(group, resource, obj)

    def update_status(self, group: str, resource: str, obj: Obj) -> Obj:
        if _is_view(group, resource):
            return core_to_events_v1(self._store.update_status("", RESOURCE, events_v1_to_core(obj)))
        return self._store.update_status(group, resource, obj)

    def replace_with(self, group: str, resource: str, obj: Obj, **options: Any) -> Obj:
        if _is_view(group, resource):
            return core_to_events_v1(self._store.replace_with("", RESOURCE, events_v1_to_core(obj), **options))
        return self._store.replace_with(group, resource, obj, **options)

    def delete(self, group: str, resource: str, name: str, namespace: str = "", **options: Any) -> Obj:
        if _is_view(group, resource):
            return core_to_events_v1(self._store.delete("", RESOURCE, name, namespace, **options))
        return self._store.delete(group, resource, name, namespace, **options)

    def watch(self, flt: WatchFilter, resource_version: str | int | None,
              callback: Callable[[WatchEvent], None]) -> Callable[[], None]:
        if not _is_view(flt.group, flt.resource):
            return self._store.watch(flt, resource_version, callback)
        stored = WatchFilter("", RESOURCE, flt.namespace, flt.label_selector, core_field_selector(flt.field_selector))

        def relay(event: WatchEvent) -> None:
            callback(replace(event, object=core_to_events_v1(event.object), group=GROUP,
                             old_object=core_to_events_v1(event.old_object) if event.old_object else None))

        return self._store.watch(stored, resource_version, relay)
