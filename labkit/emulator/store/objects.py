"""The object store of one emulated cluster: objects, resourceVersions and the watch stream.

What etcd plus the generic registry do for a real API server happens here, in memory: a single
resourceVersion counter per cluster (clients compare and resume watches with it), server-owned
metadata (``uid``, ``creationTimestamp``, ``generation``), optimistic concurrency (a
resourceVersion in a write is a precondition), finalizers (deletion waits for them), and a
bounded event history so that a watch can resume "strictly after N" or learn with a 410 that it
must re-list. Writes that change nothing are not writes: they keep the resourceVersion and emit
no event, so re-applying a manifest does not wake every watcher in the lab.

Every write goes through :meth:`Store.replace_with` (updates, ``/status`` updates and the result of
any patch or apply computed by the API layer), so these rules hold for all of them.

Objects are deep-copied on the way in and on the way out, events included: no caller can change a
stored object except by writing it.

Thread safety: none, by design. The store lives on the emulator's single asyncio event-loop
thread and every method runs to completion without awaiting, so no lock is needed; listeners are
called synchronously inside the write (the API layer bridges them to asyncio queues). Do not call
a store from another thread.
"""

from __future__ import annotations

import copy
import logging
import secrets
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from labkit.core import kubetime
from labkit.core.selectors import (
    ALL_FIELDS,
    EVERYTHING,
    FieldSelector,
    LabelSelector,
    parse_field_selector,
    parse_label_selector,
)
from labkit.emulator.apimachinery.schemas import STATUS_RESOURCES
from labkit.emulator.apimachinery.status import already_exists, bad_request, conflict, expired, invalid, not_found

ObjectKey = tuple[str, str, str, str]
"""``(group, resource plural, namespace or "", name)``."""

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"

DEFAULT_HISTORY = 10_000
"""Events kept per store for watches resuming from a resourceVersion."""

MODIFIED_MESSAGE = (
    "the object has been modified; please apply your changes to the latest version and try again"
)

_log = logging.getLogger(__name__)

# What generateName appends in Kubernetes: no vowels, no look-alike digits.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


@dataclass(frozen=True)
class WatchEvent:
    """One change of one object, as a watch delivers it.

    Args:
        type: ``ADDED``, ``MODIFIED`` or ``DELETED``.
        object: the object after the change (for ``DELETED``: its last state, with the deletion's
            resourceVersion).
        group: API group of the object (``""`` for core).
        resource: resource plural (``pods``).
        resource_version: the resourceVersion of the change.
        old_object: the object before a ``MODIFIED`` change, so selector-filtered watches can turn
            it into ``ADDED`` or ``DELETED`` as a real server does.
    """

    type: str
    object: dict[str, Any]
    group: str
    resource: str
    resource_version: int
    old_object: dict[str, Any] | None = None

    def copy(self) -> WatchEvent:
        """A copy whose objects the receiver may change freely."""
        return replace(self, object=clone(self.object),
                       old_object=clone(self.old_object) if self.old_object is not None else None)


@dataclass(frozen=True)
class ListResult:
    """The answer to a list: items sorted by namespace and name, and the list's resourceVersion.

    Args:
        items: the matching objects (copies).
        resource_version: the store's resourceVersion when listed; a watch from it misses nothing.
    """

    items: list[dict[str, Any]]
    resource_version: str


@dataclass(frozen=True)
class WatchFilter:
    """Which events one watch wants: a resource, optionally a namespace and selectors.

    Args:
        group: API group (``""`` for core).
        resource: resource plural.
        namespace: only this namespace; ``None`` for all namespaces (and cluster-scoped resources).
        label_selector: parsed label selector.
        field_selector: parsed field selector.
    """

    group: str
    resource: str
    namespace: str | None = None
    label_selector: LabelSelector = EVERYTHING
    field_selector: FieldSelector = ALL_FIELDS

    @classmethod
    def parse(
        cls,
        group: str,
        resource: str,
        namespace: str | None = None,
        label_selector: str | None = "",
        field_selector: str | None = "",
    ) -> WatchFilter:
        """Build a filter from the query parameters of a watch request.

        Args:
            group: API group.
            resource: resource plural.
            namespace: namespace from the URL, or ``None``.
            label_selector: ``?labelSelector=``.
            field_selector: ``?fieldSelector=``.

        Raises:
            StatusError: 400 for a malformed selector.
        """
        return cls(
            group,
            resource,
            namespace,
            parse_label_selector(label_selector),
            parse_field_selector(field_selector),
        )

    def matches(self, obj: dict[str, Any]) -> bool:
        """Whether an object of this filter's resource is selected."""
        metadata = obj.get("metadata") or {}
        if self.namespace is not None and metadata.get("namespace", "") != self.namespace:
            return False
        return self.label_selector.matches(metadata.get("labels")) and self.field_selector.matches(obj)

    def translate(self, event: WatchEvent) -> WatchEvent | None:
        """The event this watch sees, or ``None``.

        An object modified into the selection arrives as ``ADDED``, one modified out of it as
        ``DELETED`` carrying its previous content, as the real watch cache does.

        Args:
            event: an event of the store.
        """
        if event.group != self.group or event.resource != self.resource:
            return None
        now = self.matches(event.object)
        if event.type != MODIFIED:
            return event if now else None
        before = event.old_object is not None and self.matches(event.old_object)
        if now and before:
            return event
        if now:
            return replace(event, type=ADDED, old_object=None)
        if before and event.old_object is not None:
            gone = clone(event.old_object)
            gone.setdefault("metadata", {})["resourceVersion"] = str(event.resource_version)
            return replace(event, type=DELETED, object=gone, old_object=None)
        return None


class Store:
    """All objects of one cluster, with resourceVersions, finalizers and watch events.

    Args:
        history: how many events to keep for watches resuming from a resourceVersion.
        clock: returns the current time as RFC 3339 (whole seconds, ``Z``); injectable for tests.
        new_uid: returns a fresh ``metadata.uid``; uuid4 by default.
        status_resources: ``(group, plural)`` whose ``status`` is written only through ``/status``;
            built-ins by default, custom resources are added with :meth:`set_status_subresource`.
    """

    def __init__(
        self,
        *,
        history: int = DEFAULT_HISTORY,
        clock: Callable[[], str] = kubetime.now,
        new_uid: Callable[[], str] = lambda: str(uuid.uuid4()),
        status_resources: Iterable[tuple[str, str]] = STATUS_RESOURCES,
    ):
        if history < 1:
            raise ValueError("history must keep at least one event")
        self._objects: dict[ObjectKey, dict[str, Any]] = {}
        # Start at 1: "0" means "any version" to list and watch, so no state may be named by it.
        self._counter = 1
        self._history: deque[WatchEvent] = deque(maxlen=history)
        self._replayable_after = self._counter
        self._listeners: list[Callable[[WatchEvent], None]] = []
        self._status_resources = set(status_resources)
        self._clock = clock
        self._new_uid = new_uid

    # --- reading ---------------------------------------------------------------------------------

    @property
    def resource_version(self) -> str:
        """The resourceVersion of the latest write (a list or a bookmark reports it)."""
        return str(self._counter)

    def get(self, group: str, resource: str, name: str, namespace: str = "") -> dict[str, Any]:
        """One object.

        Args:
            group: API group (``""`` for core).
            resource: resource plural.
            name: object name.
            namespace: namespace, ``""`` for cluster-scoped resources.

        Raises:
            StatusError: 404 ``deployments.apps "web" not found``.
        """
        found = self._objects.get((group, resource, namespace, name))
        if found is None:
            raise not_found(resource, name, group)
        return clone(found)

    def find(self, group: str, resource: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        """One object, or ``None`` (for server-side apply, which creates when absent).

        Args:
            group: API group.
            resource: resource plural.
            name: object name.
            namespace: namespace, ``""`` for cluster-scoped resources.
        """
        found = self._objects.get((group, resource, namespace, name))
        return clone(found) if found is not None else None

    def list(
        self,
        group: str,
        resource: str,
        *,
        namespace: str | None = None,
        label_selector: str | LabelSelector | None = "",
        field_selector: str | FieldSelector | None = "",
    ) -> ListResult:
        """Objects of one resource, sorted by namespace and name.

        Args:
            group: API group.
            resource: resource plural.
            namespace: only this namespace; ``None`` for all namespaces.
            label_selector: a selector string or a parsed :class:`LabelSelector`.
            field_selector: a selector string or a parsed :class:`FieldSelector`.

        Raises:
            StatusError: 400 for a malformed selector.
        """
        labels = (
            label_selector
            if isinstance(label_selector, LabelSelector)
            else parse_label_selector(label_selector)
        )
        fields = (
            field_selector
            if isinstance(field_selector, FieldSelector)
            else parse_field_selector(field_selector)
        )
        flt = WatchFilter(group, resource, namespace, labels, fields)
        items = [
            clone(obj)
            for key, obj in sorted(self._objects.items())
            if key[0] == group and key[1] == resource and flt.matches(obj)
        ]
        return ListResult(items, self.resource_version)

    # --- status subresources ---------------------------------------------------------------------

    def set_status_subresource(self, group: str, resource: str, enabled: bool = True) -> None:
        """Declare whether a resource's ``status`` is written only through ``/status`` (CRDs).

        Args:
            group: API group.
            resource: resource plural.
            enabled: ``spec.versions[].subresources.status`` of the CRD.
        """
        if enabled:
            self._status_resources.add((group, resource))
        else:
            self._status_resources.discard((group, resource))

    def has_status_subresource(self, group: str, resource: str) -> bool:
        """Whether ``status`` of this resource is written only through ``/status``."""
        return (group, resource) in self._status_resources

    # --- writing ---------------------------------------------------------------------------------

    def create(self, group: str, resource: str, obj: dict[str, Any], *, uid: str | None = None) -> dict[str, Any]:
        """Store a new object; its namespace and name come from ``metadata``.

        The server sets ``uid``, ``creationTimestamp``, ``generation`` (1) and ``resourceVersion``;
        ``metadata.generateName`` gets five random characters appended when ``name`` is empty.
        For resources with a status subresource the submitted ``status`` is dropped, as on a real
        server.

        Args:
            group: API group.
            resource: resource plural.
            obj: the object (not modified).
            uid: the uid the API server chose before admission (see :meth:`new_uid`); a client's
                ``metadata.uid`` is never kept.

        Returns:
            The stored object.

        Raises:
            StatusError: 409 AlreadyExists; 400 when ``resourceVersion`` is set; 422 without a name.
        """
        if not isinstance(obj, dict):
            raise bad_request(f"the body of a {resource} create must be an object")
        stored = clone(obj)
        metadata = stored.setdefault("metadata", {})
        if metadata.get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        namespace = str(metadata.get("namespace") or "")
        if not metadata.get("name"):
            prefix = metadata.get("generateName")
            if not prefix:
                raise invalid(
                    str(obj.get("kind") or resource),
                    "",
                    [("metadata.name", "Required value: name or generateName is required")],
                    group,
                )
            while True:
                name = prefix + "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))
                if (group, resource, namespace, name) not in self._objects:
                    break
            metadata["name"] = name
        name = str(metadata["name"])
        key = (group, resource, namespace, name)
        if key in self._objects:
            raise already_exists(resource, name, group)
        for server_owned in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            metadata.pop(server_owned, None)
        if self.has_status_subresource(group, resource):
            stored.pop("status", None)
        metadata["uid"] = uid or self._new_uid()
        metadata["creationTimestamp"] = self._clock()
        metadata["generation"] = 1
        metadata["resourceVersion"] = self._next_version()
        self._objects[key] = stored
        self._emit(ADDED, group, resource, stored)
        return clone(stored)

    def new_uid(self) -> str:
        """A fresh uid for an object about to be created.

        A real API server fills the uid before admission, because admission reads it (a Job's generated
        selector names its own uid); the server then passes it to :meth:`create`.
        """
        return self._new_uid()

    def update(self, group: str, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace an object (PUT); see :meth:`replace_with`."""
        return self.replace_with(group, resource, obj)

    def update_status(self, group: str, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace only the ``status`` of an object (PUT ``/status``); see :meth:`replace_with`."""
        return self.replace_with(group, resource, obj, subresource="status")

    def replace_with(
        self, group: str, resource: str, new_obj: dict[str, Any], *, subresource: str = ""
    ) -> dict[str, Any]:
        """The one write path for existing objects: updates, status updates, patches and applies.

        Server-owned metadata (``uid``, ``creationTimestamp``, ``deletionTimestamp``) is kept from
        the stored object; ``generation`` bumps when anything outside ``metadata`` and ``status``
        changes; ``managedFields`` absent from ``new_obj`` are kept. On the main resource a kind with
        a status subresource keeps its stored ``status``; through ``subresource="status"`` only
        ``status`` (and the ``managedFields`` that track it) changes. A write that changes nothing
        returns the stored object with its resourceVersion and emits no event. Removing the last
        finalizer of an object marked for deletion deletes it.

        Args:
            group: API group.
            resource: resource plural.
            new_obj: the complete new object (not modified); its ``metadata.namespace`` and
                ``metadata.name`` say which object. A non-empty ``metadata.resourceVersion`` is a
                precondition, as is a ``metadata.uid``.
            subresource: ``""`` or ``"status"``.

        Returns:
            The stored object (for a deletion caused by the last finalizer: its final state).

        Raises:
            StatusError: 404 when absent; 409 Conflict when the resourceVersion or uid does not
                match; 422 when finalizers are added to an object being deleted.
        """
        if not isinstance(new_obj, dict):
            raise bad_request(f"the body of a {resource} update must be an object")
        new_meta = new_obj.get("metadata") or {}
        namespace, name = str(new_meta.get("namespace") or ""), str(new_meta.get("name") or "")
        key = (group, resource, namespace, name)
        live = self._objects.get(key)
        if live is None:
            raise not_found(resource, name, group)
        live_meta = live["metadata"]
        expected = new_meta.get("resourceVersion")
        if expected and str(expected) != live_meta["resourceVersion"]:
            raise conflict(resource, name, MODIFIED_MESSAGE, group)
        if new_meta.get("uid") and new_meta["uid"] != live_meta["uid"]:
            raise conflict(
                resource,
                name,
                f"Precondition failed: UID in precondition: {new_meta['uid']}, "
                f"UID in object meta: {live_meta['uid']}",
                group,
            )

        if subresource == "status":
            candidate = clone(live)
            if "status" in new_obj:
                candidate["status"] = clone(new_obj["status"])
            else:
                candidate.pop("status", None)
            if "managedFields" in new_meta:
                # Status writers are field managers too (record_update with subresource="status").
                candidate["metadata"]["managedFields"] = clone(new_meta["managedFields"])
        else:
            candidate = clone(new_obj)
            candidate.setdefault("apiVersion", live.get("apiVersion"))
            candidate.setdefault("kind", live.get("kind"))
            meta = candidate.setdefault("metadata", {})
            for server_owned in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ):
                if server_owned in live_meta:
                    meta[server_owned] = live_meta[server_owned]
                else:
                    meta.pop(server_owned, None)
            if "managedFields" not in meta and "managedFields" in live_meta:
                meta["managedFields"] = clone(live_meta["managedFields"])
            if self.has_status_subresource(group, resource):
                if "status" in live:
                    candidate["status"] = clone(live["status"])
                else:
                    candidate.pop("status", None)
        meta = candidate["metadata"]
        meta["resourceVersion"] = live_meta["resourceVersion"]

        if "deletionTimestamp" in live_meta:
            added = [f for f in meta.get("finalizers") or [] if f not in (live_meta.get("finalizers") or [])]
            if added:
                raise invalid(
                    str(live.get("kind") or resource),
                    name,
                    [
                        (
                            "metadata.finalizers",
                            f"Forbidden: no new finalizers can be added if the object is being deleted, "
                            f"found new finalizers {added}",
                        )
                    ],
                    group,
                )
        if _spec_of(candidate) != _spec_of(live):
            meta["generation"] = int(live_meta.get("generation", 1)) + 1

        if candidate == live:
            return clone(live)
        if "deletionTimestamp" in meta and not meta.get("finalizers"):
            return self._remove(key, candidate)
        meta["resourceVersion"] = self._next_version()
        self._objects[key] = candidate
        self._emit(MODIFIED, group, resource, candidate, old=live)
        return clone(candidate)

    def delete(
        self,
        group: str,
        resource: str,
        name: str,
        namespace: str = "",
        *,
        uid: str | None = None,
        resource_version: str | None = None,
        grace_period: int = 0,
    ) -> dict[str, Any]:
        """Delete an object, or mark it for deletion while finalizers remain or a grace period runs.

        With finalizers the object only gets ``deletionTimestamp`` and
        ``deletionGracePeriodSeconds: 0`` (a ``MODIFIED`` event); it goes away when an update removes
        the last finalizer. With a grace period (a running pod) it gets ``deletionTimestamp`` = now + the
        period and ``deletionGracePeriodSeconds``, and stays until deleted again with none (the kubelet does,
        once the pod's processes have stopped); a second delete may shorten the period, never lengthen it.
        Cascading to dependents (``propagationPolicy``) is the garbage collector's job, not the store's.

        Args:
            group: API group.
            resource: resource plural.
            name: object name.
            namespace: namespace, ``""`` for cluster-scoped resources.
            uid: ``preconditions.uid`` of the DeleteOptions.
            resource_version: ``preconditions.resourceVersion`` of the DeleteOptions.
            grace_period: seconds the object may take to go (the API server decides, for pods only).

        Returns:
            The deleted object (its last state), or the object marked for deletion.

        Raises:
            StatusError: 404 when absent; 409 Conflict when a precondition fails.
        """
        key = (group, resource, namespace, name)
        live = self._objects.get(key)
        if live is None:
            raise not_found(resource, name, group)
        meta = live["metadata"]
        if uid is not None and uid != meta["uid"]:
            raise conflict(
                resource,
                name,
                f"Precondition failed: UID in precondition: {uid}, UID in object meta: {meta['uid']}",
                group,
            )
        if resource_version is not None and str(resource_version) != meta["resourceVersion"]:
            raise conflict(
                resource,
                name,
                f"Precondition failed: ResourceVersion in precondition: "
                f"{resource_version}, ResourceVersion in object meta: "
                f"{meta['resourceVersion']}",
                group,
            )
        pending = meta.get("deletionGracePeriodSeconds")
        if grace_period > 0 and "deletionTimestamp" in meta and pending is not None and pending <= grace_period:
            return clone(live)
        if grace_period <= 0 and not meta.get("finalizers"):
            return self._remove(key, clone(live))
        if grace_period <= 0 and "deletionTimestamp" in meta and not pending:
            return clone(live)
        marked = clone(live)
        now = self._clock()
        marked["metadata"]["deletionTimestamp"] = (
            kubetime.format_time((kubetime.timestamp(now) or 0.0) + grace_period) if grace_period > 0 else now)
        marked["metadata"]["deletionGracePeriodSeconds"] = max(grace_period, 0)
        marked["metadata"]["resourceVersion"] = self._next_version()
        self._objects[key] = marked
        self._emit(MODIFIED, group, resource, marked, old=live)
        return clone(marked)

    # --- watching --------------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[WatchEvent], None], *, shared: bool = False) -> Callable[[], None]:
        """Call ``callback`` with every future event.

        Args:
            callback: called synchronously inside the write; it must not block.
            shared: hand ``callback`` the store's own event instead of a copy of it. For listeners that only look
                (a controller mapping events to keys, a watch filtering before it copies): every write reaches
                every listener, and copying each object once per listener was most of the emulator's work.
                Such a listener must never change the event or anything in it.

        Returns:
            A function that unsubscribes (idempotent).
        """
        listener = callback if shared else _copying(callback)
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def events_since(self, resource_version: str | int) -> list[WatchEvent]:
        """Events strictly after ``resource_version``, oldest first.

        Args:
            resource_version: a resourceVersion returned earlier by this store.

        Raises:
            StatusError: 410 Expired ``too old resource version: N (M)`` when events after it were
                dropped from the history (the client must re-list); 400 when not a number.
        """
        after = _parse_version(resource_version)
        if after < self._replayable_after:
            raise expired(f"too old resource version: {after} ({self._replayable_after})")
        return [event.copy() for event in self._since(after)]

    def _since(self, after: int) -> list[WatchEvent]:
        """The history's own events after ``after`` (shared: copy before handing them out)."""
        return [event for event in self._history if event.resource_version > after]

    def initial_events(self, flt: WatchFilter, resource_version: str | int | None) -> list[WatchEvent]:
        """What a watch sends before live events.

        Args:
            flt: the watch's resource, namespace and selectors.
            resource_version: ``None``, ``""`` or ``"0"``: a synthetic ``ADDED`` for every matching
                object; otherwise the matching events strictly after it.

        Raises:
            StatusError: 410 Expired for a resourceVersion older than the history.
        """
        if resource_version in (None, "", "0", 0):
            return [
                WatchEvent(
                    ADDED,
                    clone(obj),
                    flt.group,
                    flt.resource,
                    int(obj["metadata"]["resourceVersion"]),
                )
                for key, obj in sorted(self._objects.items())
                if key[0] == flt.group and key[1] == flt.resource and flt.matches(obj)
            ]
        assert resource_version is not None
        after = _parse_version(resource_version)
        if after < self._replayable_after:
            raise expired(f"too old resource version: {after} ({self._replayable_after})")
        # Filter, then copy: a watch of one resource must not pay for copying every event of every other.
        return [seen.copy() for event in self._since(after) if (seen := flt.translate(event))]

    def watch(
        self, flt: WatchFilter, resource_version: str | int | None, callback: Callable[[WatchEvent], None]
    ) -> Callable[[], None]:
        """List-then-watch in one step: deliver :meth:`initial_events`, then live matching events.

        Nothing can happen between the two (the store is single-threaded), so no event is lost or
        repeated.

        Args:
            flt: the watch's resource, namespace and selectors.
            resource_version: as for :meth:`initial_events`.
            callback: receives each event.

        Returns:
            A function that stops the watch.

        Raises:
            StatusError: 410 Expired for a resourceVersion older than the history (before any
                callback).
        """
        for event in self.initial_events(flt, resource_version):
            callback(event)

        def relay(event: WatchEvent) -> None:
            seen = flt.translate(event)
            if seen is not None:
                callback(seen.copy())

        return self.subscribe(relay, shared=True)

    # --- internals -------------------------------------------------------------------------------

    def _next_version(self) -> str:
        self._counter += 1
        return str(self._counter)

    def _remove(self, key: ObjectKey, last: dict[str, Any]) -> dict[str, Any]:
        del self._objects[key]
        last["metadata"]["resourceVersion"] = self._next_version()
        self._emit(DELETED, key[0], key[1], last)
        return clone(last)

    def _emit(
        self, kind: str, group: str, resource: str, obj: dict[str, Any], old: dict[str, Any] | None = None
    ) -> None:
        event = WatchEvent(
            kind,
            clone(obj),
            group,
            resource,
            int(obj["metadata"]["resourceVersion"]),
            clone(old) if old is not None else None,
        )
        if len(self._history) == self._history.maxlen:
            self._replayable_after = self._history[0].resource_version
        self._history.append(event)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                # The write has happened; one broken watcher must not fail it or starve the others.
                _log.exception("watch listener %r failed on %s %s/%s", listener, kind, group, resource)


def _copying(callback: Callable[[WatchEvent], None]) -> Callable[[WatchEvent], None]:
    def deliver(event: WatchEvent) -> None:
        callback(event.copy())
    return deliver


def clone(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, scalars), several times faster than :func:`copy.deepcopy`.

    Stored objects are only ever what JSON decodes to, so there are no cycles, shared sub-objects or other types
    to remember; anything else is copied by :func:`copy.deepcopy` as before.
    """
    if isinstance(value, dict):
        return {key: item if item is None or type(item) in _ATOMS else clone(item) for key, item in value.items()}
    if isinstance(value, list):
        return [item if item is None or type(item) in _ATOMS else clone(item) for item in value]
    if value is None or type(value) in _ATOMS:
        return value
    return copy.deepcopy(value)


_ATOMS = frozenset({str, int, float, bool})


def _spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    """Everything that counts for ``generation``: all but ``metadata`` and ``status``."""
    return {key: value for key, value in obj.items() if key not in ("metadata", "status")}


def _parse_version(resource_version: str | int) -> int:
    try:
        version = int(resource_version)
    except (TypeError, ValueError):
        raise bad_request(f'invalid resource version "{resource_version}"') from None
    if version < 0:
        raise bad_request(f'invalid resource version "{resource_version}"')
    return version
