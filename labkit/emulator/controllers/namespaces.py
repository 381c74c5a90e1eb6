"""Namespaces: what every namespace contains from birth, and what deleting one takes with it.

Every namespace gets a ``default`` ServiceAccount (pods run as it unless told otherwise) and the
``kube-root-ca.crt`` ConfigMap (clients inside pods verify the API server with it); the real
ServiceAccount and root-CA-publisher controllers recreate them if deleted or edited, and so does
this one.

Deleting a namespace is two-phase, as on a real cluster: the API layer marks it (``deletionTimestamp``,
``status.phase: Terminating``) and it stays visible while this controller deletes every namespaced
object in it, of every resource the cluster knows (custom resources included), waits for objects
held by finalizers, and finally removes the ``kubernetes`` finalizer so the store lets it go. That is
what makes ``kubectl delete ns`` block and then return, and why creating objects in a terminating
namespace must fail (the API layer answers 403; controllers here check before creating).

Contract with the API layer: a Namespace is created with ``spec.finalizers: [kubernetes]``
(:func:`.defaults.default_namespace`), and on DELETE the API layer adds ``kubernetes`` to
``metadata.finalizers`` before calling ``Store.delete`` (:func:`.garbage.finalizers_for_delete` does
it), because the store only waits for metadata finalizers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from labkit.core import kubetime
from labkit.core.wire import Obj
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.store import Store, WatchEvent

from .framework import Controller, Key, ResourceCatalog, ResourceInfo, is_deleting, set_condition

NAMESPACE_FINALIZER = "kubernetes"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
DEFAULT_SERVICE_ACCOUNT = "default"
_ROOT_CA_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as "
    "the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of "
    "Kubernetes clusters."
)



class NamespaceController(Controller):
    """Populates new namespaces and empties terminating ones.

    Args:
        store: the cluster's store.
        ca_pem: the cluster CA certificate (PEM) published as ``kube-root-ca.crt``.
        resources: optional extra source of resource types (e.g. the API layer's registry); the
            built-in table and CRDs found in the store are always known.
    """

    name = "namespace"

    def __init__(
        self,
        store: Store,
        ca_pem: str,
        *,
        resources: Callable[[], Iterable[ResourceInfo]] | None = None,
    ):
        super().__init__(store)
        self.ca_pem = ca_pem
        self._extra_resources = resources
        self.catalog = ResourceCatalog(store)
        self._terminating: set[str] = set()

    def keys_for(self, event: WatchEvent) -> Iterable[Key]:
        self.catalog.observe(event)
        metadata = event.object["metadata"]
        resource = (event.group, event.resource)
        if resource == ("", "namespaces"):
            if event.type == "DELETED":
                # Gone without waiting for us (no finalizer): its contents must still go.
                return [("deleted", metadata["name"])]
            if is_deleting(event.object):
                self._terminating.add(metadata["name"])
            return [metadata["name"]]
        namespace = metadata.get("namespace", "")
        if not namespace:
            return []
        if namespace in self._terminating and event.type in ("DELETED", "MODIFIED"):
            return [namespace]
        if resource == ("", "serviceaccounts") and metadata["name"] == DEFAULT_SERVICE_ACCOUNT:
            return [namespace] if event.type == "DELETED" else []
        if resource == ("", "configmaps") and metadata["name"] == ROOT_CA_CONFIGMAP:
            return [namespace]
        return []

    def initial_keys(self) -> Iterable[Key]:
        return [ns["metadata"]["name"] for ns in self.store.list("", "namespaces").items]

    async def reconcile(self, key: Key) -> None:
        if isinstance(key, tuple):
            name = str(key[1])
            if self.store.find("", "namespaces", name) is None:
                self._terminating.discard(name)
                self._delete_contents(name)
            return
        name = str(key)
        namespace = self.store.find("", "namespaces", name)
        if namespace is None:
            self._terminating.discard(name)
            return
        if is_deleting(namespace):
            self._terminating.add(name)
            self._finalize(namespace)
            return
        if (namespace.get("status") or {}).get("phase") != "Active":
            # The API server's namespace strategy sets this on create; the store drops status there.
            namespace["status"] = {**(namespace.get("status") or {}), "phase": "Active"}
            self.store.update_status("", "namespaces", namespace)
        self._ensure_default_service_account(name)
        self._ensure_root_ca(name)

    # --- a namespace's standard contents -----------------------------------------------------------

    def _ensure_default_service_account(self, namespace: str) -> None:
        if self.store.find("", "serviceaccounts", DEFAULT_SERVICE_ACCOUNT, namespace) is None:
            self.store.create("", "serviceaccounts", {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": DEFAULT_SERVICE_ACCOUNT, "namespace": namespace},
            })

    def _ensure_root_ca(self, namespace: str) -> None:
        data = {"ca.crt": self.ca_pem}
        annotations = {"kubernetes.io/description": _ROOT_CA_DESCRIPTION}
        existing = self.store.find("", "configmaps", ROOT_CA_CONFIGMAP, namespace)
        if existing is None:
            self.store.create("", "configmaps", {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": namespace, "annotations": annotations},
                "data": data,
            })
            return
        if existing.get("data") != data or is_deleting(existing):
            if is_deleting(existing):
                return  # it goes away, then is recreated on the DELETED event
            existing["data"] = data
            existing.pop("binaryData", None)
            self.store.update("", "configmaps", existing)

    # --- deletion ----------------------------------------------------------------------------------

    def _finalize(self, namespace: Obj) -> None:
        name = namespace["metadata"]["name"]
        remaining = self._delete_contents(name)
        self._set_terminating_status(namespace, remaining)
        if remaining:
            return  # objects held by finalizers; their DELETED events bring us back
        fresh = self.store.find("", "namespaces", name)
        if fresh is None:
            return
        spec = fresh.setdefault("spec", {})
        spec["finalizers"] = [f for f in spec.get("finalizers") or [] if f != NAMESPACE_FINALIZER]
        if not spec["finalizers"]:
            del spec["finalizers"]
        metadata = fresh["metadata"]
        metadata["finalizers"] = [f for f in metadata.get("finalizers") or [] if f != NAMESPACE_FINALIZER]
        if not metadata["finalizers"]:
            del metadata["finalizers"]
        self.store.update("", "namespaces", fresh)
        if self.store.find("", "namespaces", name) is None:
            self._terminating.discard(name)

    def _delete_contents(self, name: str) -> dict[str, int]:
        """Delete every namespaced object in ``name``; the count of those still there, by resource."""
        remaining: dict[str, int] = {}
        for info in self._resources():
            try:
                items = self.store.list(info.group, info.resource, namespace=name).items
            except StatusError:
                continue
            for item in items:
                qualified = f"{info.resource}.{info.group}" if info.group else info.resource
                remaining[qualified] = remaining.get(qualified, 0) + 1
                if is_deleting(item):
                    continue
                try:
                    self.store.delete(info.group, info.resource, item["metadata"]["name"], name)
                except StatusError as exc:
                    if exc.code != 404:
                        raise
                else:
                    if self.store.find(info.group, info.resource, item["metadata"]["name"], name) is None:
                        remaining[qualified] -= 1
        return {resource: count for resource, count in remaining.items() if count}

    def _set_terminating_status(self, namespace: Obj, remaining: dict[str, int]) -> None:
        fresh = self.store.find("", "namespaces", namespace["metadata"]["name"])
        if fresh is None:
            return
        old = fresh.get("status") or {}
        status = dict(old)
        status["phase"] = "Terminating"
        if remaining:
            message = "Some resources are remaining: " + ", ".join(
                f"{resource} has {count} resource instances" for resource, count in sorted(remaining.items())
            )
            condition = {"type": "NamespaceContentRemaining", "status": "True", "reason": "SomeResourcesRemain",
                         "message": message}
        else:
            condition = {"type": "NamespaceContentRemaining", "status": "False", "reason": "ContentRemoved",
                         "message": "All content successfully removed"}
        status["conditions"] = set_condition(list(old.get("conditions") or []), condition, kubetime.now())
        if status != old:
            fresh["status"] = status
            self.store.update_status("", "namespaces", fresh)

    def _resources(self) -> list[ResourceInfo]:
        known = {(info.group, info.resource): info for info in self.catalog.resources(namespaced_only=True)}
        if self._extra_resources is not None:
            for info in self._extra_resources():
                if info.namespaced:
                    known.setdefault((info.group, info.resource), info)
        return list(known.values())
