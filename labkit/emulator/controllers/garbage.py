"""Garbage collection by ownerReferences: Background, Foreground and Orphan deletion.

``kubectl delete deployment web`` removes the Deployment at once and returns; its ReplicaSets and
pods go afterwards, because the garbage collector notices their owner is gone. That chain
(Deployment → ReplicaSet → Pod, Service → EndpointSlice, Endpoints → mirrored slices) is what this
controller keeps, following the real collector's rules:

* **Background** (the default): when an owner disappears, each dependent whose owners are all gone
  is deleted; a dependent with another live owner only loses the dangling reference.
* **Foreground**: the owner stays, marked for deletion with the ``foregroundDeletion`` finalizer,
  until every dependent that blocks it (``blockOwnerDeletion: true``) is gone; dependents are
  themselves deleted in the foreground, so the wait is transitive.
* **Orphan**: the owner stays with the ``orphan`` finalizer until its dependents no longer reference
  it, then goes; the dependents live on (a ReplicaSet orphaned by its Deployment keeps its pods).

Contract with the API layer: the store knows finalizers, not propagation policies. On DELETE the
API layer calls :func:`finalizers_for_delete` with the stored object and the request's
``propagationPolicy`` (or legacy ``orphanDependents``); when it returns an object, the API layer
writes it with ``Store.update`` and then calls ``Store.delete``, exactly as the real registry adds
the finalizers inside the delete. The same function adds ``kubernetes`` to a Namespace's
``metadata.finalizers`` so that the namespace controller can empty it first.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from labkit.emulator.status import StatusError
from labkit.emulator.store import DELETED, ObjectKey, Store, WatchEvent

from .framework import Controller, Key, ResourceCatalog, is_deleting

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
BACKGROUND_POLICY, FOREGROUND_POLICY, ORPHAN_POLICY = "Background", "Foreground", "Orphan"

Obj = dict[str, Any]


def finalizers_for_delete(
    obj: Obj,
    propagation_policy: str | None = None,
    *,
    orphan_dependents: bool | None = None,
) -> Obj | None:
    """The object with the finalizers a DELETE must add before ``Store.delete``, or ``None``.

    Args:
        obj: the stored object about to be deleted.
        propagation_policy: ``Background`` (default), ``Foreground`` or ``Orphan`` from DeleteOptions.
        orphan_dependents: the deprecated DeleteOptions field (``true`` means Orphan).

    Returns:
        A copy with finalizers added, for ``Store.update``; ``None`` when nothing needs adding
        (Background, or the object is already being deleted: new finalizers are refused then).

    Raises:
        StatusError: 400 for an unknown policy.
    """
    if propagation_policy not in (None, "", BACKGROUND_POLICY, FOREGROUND_POLICY, ORPHAN_POLICY):
        raise StatusError(
            400, "BadRequest",
            f'propagationPolicy: Unsupported value: "{propagation_policy}": supported values: '
            '"Orphan", "Background", "Foreground"',
        )
    if is_deleting(obj):
        return None
    wanted: list[str] = []
    if propagation_policy == FOREGROUND_POLICY:
        wanted.append(FOREGROUND)
    elif propagation_policy == ORPHAN_POLICY or (not propagation_policy and orphan_dependents):
        wanted.append(ORPHAN)
    if obj.get("kind") == "Namespace" and "kubernetes" in ((obj.get("spec") or {}).get("finalizers") or []):
        wanted.append("kubernetes")
    current = list((obj.get("metadata") or {}).get("finalizers") or [])
    # Foreground and Orphan exclude each other: the request's policy replaces an earlier one.
    if FOREGROUND in wanted or ORPHAN in wanted:
        current = [f for f in current if f not in (FOREGROUND, ORPHAN)]
    missing = [f for f in wanted if f not in current]
    if not missing and current == list((obj.get("metadata") or {}).get("finalizers") or []):
        return None
    result = copy.deepcopy(obj)
    result.setdefault("metadata", {})["finalizers"] = current + missing
    return result


class GarbageCollector(Controller):
    """Deletes dependents of deleted owners and carries out Foreground and Orphan deletions.

    Keys are store object keys ``(group, resource, namespace, name)``.

    Args:
        store: the cluster's store.
    """

    name = "garbagecollector"

    def __init__(self, store: Store):
        super().__init__(store)
        self.catalog = ResourceCatalog(store)
        # The dependency graph, from ownerReferences seen in events: owner uid → dependents.
        self._dependents: dict[str, set[ObjectKey]] = {}
        self._owners_of: dict[ObjectKey, frozenset[str]] = {}

    def keys_for(self, event: WatchEvent) -> Iterable[Key]:
        self.catalog.observe(event)
        metadata = event.object["metadata"]
        key: ObjectKey = (event.group, event.resource, metadata.get("namespace", ""), metadata["name"])
        refs = metadata.get("ownerReferences") or []
        if event.type == DELETED:
            self._unindex(key)
            keys: set[Key] = set(self._dependents.pop(metadata.get("uid", ""), set()))
            # Owners deleting in the foreground may have been waiting for this one.
            keys.update(self._owner_keys(key, refs))
            return keys
        self._index(key, refs)
        old_refs = ((event.old_object or {}).get("metadata") or {}).get("ownerReferences") or []
        finalizers = metadata.get("finalizers") or []
        wants = bool(refs) and (event.type != "MODIFIED" or refs != old_refs)
        wants = wants or (is_deleting(event.object) and (FOREGROUND in finalizers or ORPHAN in finalizers))
        return [key] if wants else []

    def initial_keys(self) -> Iterable[Key]:
        keys = []
        for info in self.catalog.resources():
            for obj in self.store.list(info.group, info.resource).items:
                metadata = obj["metadata"]
                key = (info.group, info.resource, metadata.get("namespace", ""), metadata["name"])
                refs = metadata.get("ownerReferences") or []
                self._index(key, refs)
                if refs or is_deleting(obj):
                    keys.append(key)
        return keys

    async def reconcile(self, key: Key) -> None:
        group, resource, namespace, name = key  # type: ignore[misc]
        obj = self.store.find(group, resource, name, namespace)
        if obj is None:
            return
        finalizers = obj["metadata"].get("finalizers") or []
        if is_deleting(obj) and ORPHAN in finalizers:
            self._orphan_dependents(obj)
            self._remove_finalizer(key, ORPHAN)
            return
        if is_deleting(obj) and FOREGROUND in finalizers:
            if not self._delete_dependents_in_foreground(obj):
                self._remove_finalizer(key, FOREGROUND)
            return
        self._check_owners(key, obj)

    # --- the graph ---------------------------------------------------------------------------------

    def _index(self, key: ObjectKey, refs: list[Obj]) -> None:
        owners = frozenset(str(ref.get("uid")) for ref in refs if ref.get("uid"))
        if self._owners_of.get(key) == owners:
            return
        self._unindex(key)
        if owners:
            self._owners_of[key] = owners
            for uid in owners:
                self._dependents.setdefault(uid, set()).add(key)

    def _unindex(self, key: ObjectKey) -> None:
        for uid in self._owners_of.pop(key, frozenset()):
            dependents = self._dependents.get(uid)
            if dependents is not None:
                dependents.discard(key)
                if not dependents:
                    del self._dependents[uid]

    def _owner_keys(self, key: ObjectKey, refs: list[Obj]) -> list[ObjectKey]:
        keys = []
        for ref in refs:
            info = self.catalog.for_kind(str(ref.get("apiVersion") or ""), str(ref.get("kind") or ""))
            if info is not None:
                keys.append((info.group, info.resource, key[2] if info.namespaced else "", str(ref.get("name"))))
        return keys

    def _live_dependents(self, owner: Obj) -> list[tuple[ObjectKey, Obj, Obj]]:
        """``(key, dependent, its reference to owner)`` for every existing dependent."""
        uid = owner["metadata"]["uid"]
        found = []
        for key in sorted(self._dependents.get(uid, set())):
            group, resource, namespace, name = key
            dependent = self.store.find(group, resource, name, namespace)
            if dependent is None:
                continue
            ref = next((r for r in dependent["metadata"].get("ownerReferences") or [] if r.get("uid") == uid), None)
            if ref is not None:
                found.append((key, dependent, ref))
        return found

    # --- the three policies ------------------------------------------------------------------------

    def _check_owners(self, key: ObjectKey, obj: Obj) -> None:
        """``attemptToDeleteItem``: delete a dependent whose owners are gone or deleting in the foreground."""
        refs = obj["metadata"].get("ownerReferences") or []
        if not refs:
            return
        solid, dangling, waiting = [], [], []
        for ref in refs:
            info = self.catalog.for_kind(str(ref.get("apiVersion") or ""), str(ref.get("kind") or ""))
            if info is None:
                solid.append(ref)  # a kind we cannot look up: never delete on a guess
                continue
            owner = self.store.find(info.group, info.resource, str(ref.get("name")), key[2] if info.namespaced else "")
            if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
                dangling.append(ref)
            elif is_deleting(owner) and FOREGROUND in (owner["metadata"].get("finalizers") or []):
                waiting.append(ref)
            else:
                solid.append(ref)
        if not dangling and not waiting:
            return
        group, resource, namespace, name = key
        if solid:
            # Other owners still hold it: only drop the references to owners that are going away.
            gone = {str(ref.get("uid")) for ref in dangling + waiting}
            obj["metadata"]["ownerReferences"] = [r for r in refs if str(r.get("uid")) not in gone]
            self.store.update(group, resource, obj)
            return
        if is_deleting(obj):
            return
        if waiting:
            finalizers = obj["metadata"].setdefault("finalizers", [])
            if FOREGROUND not in finalizers:
                finalizers.append(FOREGROUND)
                obj = self.store.update(group, resource, obj)
        try:
            self.store.delete(group, resource, name, namespace, uid=obj["metadata"]["uid"])
        except StatusError as exc:
            if exc.code != 404:
                raise

    def _delete_dependents_in_foreground(self, owner: Obj) -> bool:
        """Delete the owner's dependents; whether any blocking dependent remains."""
        blocking = False
        for key, dependent, ref in self._live_dependents(owner):
            if ref.get("blockOwnerDeletion"):
                blocking = True
            if not is_deleting(dependent):
                self._check_owners(key, dependent)
        return blocking

    def _orphan_dependents(self, owner: Obj) -> None:
        uid = owner["metadata"]["uid"]
        for key, dependent, _ref in self._live_dependents(owner):
            refs = [r for r in dependent["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
            if refs:
                dependent["metadata"]["ownerReferences"] = refs
            else:
                dependent["metadata"].pop("ownerReferences", None)
            self.store.update(key[0], key[1], dependent)

    def _remove_finalizer(self, key: ObjectKey, finalizer: str) -> None:
        group, resource, namespace, name = key
        obj = self.store.find(group, resource, name, namespace)
        if obj is None:
            return
        finalizers = [f for f in obj["metadata"].get("finalizers") or [] if f != finalizer]
        if finalizers:
            obj["metadata"]["finalizers"] = finalizers
        else:
            obj["metadata"].pop("finalizers", None)
        self.store.update(group, resource, obj)
