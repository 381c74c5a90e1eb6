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
API server's admission chain turns the request's ``propagationPolicy`` into the finalizers named here
(:func:`labkit.emulator.api.admission.finalizers.finalizers_for_delete`), writes them and then calls
``Store.delete``, exactly as the real registry adds the finalizers inside the delete; this controller
then carries them out.
"""

from __future__ import annotations

from collections.abc import Iterable

from labkit.core.wire import Obj
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.store import DELETED, ObjectKey, Store, WatchEvent

from .framework import Controller, Key, ResourceCatalog, is_deleting

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
BACKGROUND_POLICY, FOREGROUND_POLICY, ORPHAN_POLICY = "Background", "Foreground", "Orphan"



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
