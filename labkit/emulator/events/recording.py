"""Recording Events the way Kubernetes components do, repeats folded into one object.

A controller that retries every few seconds (a ReplicaSet whose pods a dead webhook refuses, a kubelet
backing off an image pull) would otherwise bury ``kubectl describe`` under identical lines. client-go's
recorder keeps a cache of what it reported and, when the same thing happens again, updates the existing
Event instead: ``count`` and ``lastTimestamp`` for core/v1 recorders (kubelet, controllers), or
``series.count`` and ``series.lastObservedTime`` for events.k8s.io recorders (the scheduler). kubectl
shows both as ``(x5 over 2m)``.

Two Events are "the same" when source, involved object (with its ``fieldPath``), type, reason and
message all match. Similar ones (all but the message: ``Created pod: web-1``, ``Created pod: web-2`` …)
are folded too once ten distinct messages came within ten minutes: from then on one Event, counted up,
says ``(combined from similar events): <the latest message>``, as client-go's aggregator does.

Both caches are bounded (client-go keeps 4096 entries, LRU), so a recorder never grows with the life of a
lab; an entry whose Event has expired or was deleted simply starts a new one.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from labkit.core.kubetime import format_micro_time, format_time
from labkit.core.wire import Obj
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.store import Store

NORMAL = "Normal"
WARNING = "Warning"
CACHE_SIZE = 4096
"""Aggregation keys kept per recorder (client-go's ``maxLruCacheEntries``)."""
SIMILAR_LIMIT = 10
"""Distinct messages of one reason about one object before they are combined (client-go's ``maxEvents``)."""
SIMILAR_WINDOW = 600.0
"""Seconds after the last similar Event that the count of distinct messages is kept (``maxIntervalInSeconds``)."""
COMBINED = "(combined from similar events): "
MAX_MESSAGE = 1024
"""Longer messages are cut, as the API server's validation would refuse them (``note`` is at most 1 kB)."""

_Key = tuple[str, ...]


class EventSink(Protocol):
    """What a component needs to report an Event (the node runtime takes one of these)."""

    def __call__(self, involved: Mapping[str, Any], type: str, reason: str, message: str, *,
                 field_path: str = "") -> None: ...


def object_reference(obj: Mapping[str, Any], field_path: str = "") -> Obj:
    """The ``involvedObject`` of an Event about ``obj`` (an object, or a reference already).

    Args:
        obj: a Kubernetes object (``apiVersion``, ``kind``, ``metadata``) or an ObjectReference.
        field_path: the part of the object, e.g. ``spec.containers{web}`` for a container.
    """
    metadata = obj.get("metadata")
    if isinstance(metadata, Mapping):
        ref = {"kind": obj.get("kind", ""), "namespace": metadata.get("namespace", ""),
               "name": metadata.get("name", ""), "uid": metadata.get("uid", ""),
               "apiVersion": obj.get("apiVersion", ""), "resourceVersion": metadata.get("resourceVersion", "")}
    else:
        ref = {key: obj.get(key, "") for key in ("kind", "namespace", "name", "uid", "apiVersion",
                                                   "resourceVersion", "fieldPath")}
    if field_path:
        ref["fieldPath"] = field_path
    return {key: value for key, value in ref.items() if value}


class EventRecorder:
    """Writes the Events of one component into a cluster's store.

    Args:
        store: the cluster's store.
        component: the reporting component (``replicaset-controller``, ``kubelet``, ``default-scheduler``).
        instance: the reporting instance (the node name for a kubelet); empty for controllers.
        series: record as an events.k8s.io recorder does (``eventTime``, ``series``, ``action``) instead
            of a core/v1 one (``firstTimestamp``, ``lastTimestamp``, ``count``).
        clock: seconds since the epoch; injectable for tests.
    """

    def __init__(self, store: Store, component: str, instance: str = "", *, series: bool = False,
                 clock: Callable[[], float] = time.time):
        self._store = store
        self.component = component
        self.instance = instance
        self._series = series
        self._clock = clock
        self._seen: OrderedDict[_Key, tuple[str, str]] = OrderedDict()
        # Similar key → (last time, distinct messages): client-go's EventAggregator cache.
        self._similar: OrderedDict[_Key, tuple[float, set[str]]] = OrderedDict()

    def __call__(self, involved: Mapping[str, Any], type: str, reason: str, message: str, *,
                 field_path: str = "", action: str = "") -> None:
        """Same as :meth:`event`, so a recorder is an :class:`EventSink`."""
        self.event(involved, type, reason, message, field_path=field_path, action=action)

    def event(self, involved: Mapping[str, Any], type: str, reason: str, message: str, *,
              field_path: str = "", action: str = "") -> Obj | None:
        """Report that ``reason`` happened to ``involved``; returns the stored Event (``None`` if it could not be).

        Recording never fails the caller: a component's work matters more than its report about it,
        as with client-go (which drops Events it cannot write).

        Args:
            involved: the object (or an ObjectReference) the Event is about.
            type: :data:`NORMAL` or :data:`WARNING`.
            reason: a short CamelCase reason (``SuccessfulCreate``, ``BackOff``).
            message: what happened, for humans.
            field_path: the part of the object (``spec.containers{name}``).
            action: what was done (events.k8s.io ``action``, e.g. ``Binding``); defaults to ``reason``.
        """
        ref = object_reference(involved, field_path)
        message = message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE - 3] + "..."
        key = (self.component, self.instance, ref.get("apiVersion", ""), ref.get("kind", ""),
               ref.get("namespace", ""), ref.get("name", ""), ref.get("uid", ""), ref.get("fieldPath", ""),
               type, reason, message)
        namespace = ref.get("namespace") or "default"
        now = self._clock()
        if self._combines(key, now):
            message = COMBINED + message
            key = (*key[:7], *key[8:10], "combined")
        try:
            seen = self._seen.get(key)
            if seen is not None:
                self._seen.move_to_end(key)
                existing = self._store.find("", "events", seen[1], seen[0])
                if existing is not None:
                    return self._repeat(existing, now, message)
            if not self._accepts(namespace):
                return None
            created = self._store.create("", "events", self._new(ref, namespace, type, reason, message,
                                                                 action or reason, now))
        except StatusError:
            return None  # e.g. the namespace is being deleted
        self._seen[key] = (namespace, created["metadata"]["name"])
        while len(self._seen) > CACHE_SIZE:
            self._seen.popitem(last=False)
        return created

    def _combines(self, key: _Key, now: float) -> bool:
        """Whether this Event is one too many of its kind and joins the combined one (client-go's aggregator)."""
        similar = (*key[:7], *key[8:10])  # everything but fieldPath and message
        last, messages = self._similar.pop(similar, (now, set()))
        if now - last > SIMILAR_WINDOW:
            messages = set()
        messages.add(key[10])
        combined = len(messages) >= SIMILAR_LIMIT
        if combined:
            messages.pop()  # as client-go: the set never grows past the limit
        self._similar[similar] = (now, messages)
        while len(self._similar) > CACHE_SIZE:
            self._similar.popitem(last=False)
        return combined

    def _accepts(self, namespace: str) -> bool:
        # As the API server's NamespaceLifecycle admission: no new Event in a namespace that is gone or going
        # (the kubelet's "Killing" while a namespace empties), so none outlives its namespace.
        found = self._store.find("", "namespaces", namespace)
        return found is not None and not (found.get("metadata") or {}).get("deletionTimestamp")

    def _new(self, ref: Obj, namespace: str, type: str, reason: str, message: str, action: str,
             now: float) -> Obj:
        # client-go names Events "<object>.<unix nanoseconds in hex>": unique, and sorted by time.
        name = f"{ref.get('name') or 'event'}.{int(now * 1e9):x}"
        event: Obj = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "type": type,
            "reportingComponent": self.component,
            "reportingInstance": self.instance,
        }
        if self._series:
            # events.k8s.io recorders: eventTime and action, no legacy timestamps or count.
            event.update({"eventTime": format_micro_time(now), "action": action, "source": {},
                          "firstTimestamp": None, "lastTimestamp": None})
        else:
            stamp = format_time(now)
            source = {"component": self.component}
            if self.instance:
                source["host"] = self.instance
            event.update({"source": source, "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
                          "eventTime": None})
        return event

    def _repeat(self, existing: Obj, now: float, message: str) -> Obj:
        existing["message"] = message  # a combined Event says the latest of its messages
        if self._series:
            series = existing.get("series") or {"count": 1}
            existing["series"] = {"count": int(series.get("count", 1)) + 1,
                                  "lastObservedTime": format_micro_time(now)}
        else:
            existing["count"] = int(existing.get("count") or 1) + 1
            existing["lastTimestamp"] = format_time(now)
        existing["metadata"].pop("resourceVersion", None)
        return self._store.update("", "events", existing)
