"""The admission chain: everything between a decoded request body and the one store write.

A real API server passes every write through the same stages, in this order, and so does
:meth:`AdmissionChain.admit`; each stage is a module of its own, so the path of a request reads from the
folder names:

1. :mod:`.defaulting`: the defaults a built-in kind gets (``replicas: 1``, ``type: ClusterIP`` …);
2. :mod:`.webhooks` (mutating): HTTPS calls such as Istio's sidecar injector; a patched object is
   defaulted again, as the real server decodes it once more;
3. :mod:`.validation`: refuse what a real server refuses, naming the field (422 ``Invalid``);
4. :mod:`.allocation`: ClusterIPs and node ports of Services, the node of a bare pod;
5. :mod:`.webhooks` (validating): Istio's config validation and the like.

Two checks come earlier, as a real server runs them while it decodes the request: the object's name
(:func:`.validation.validate_name`) and the namespace lifecycle (:meth:`AdmissionChain.check_namespace`: no
new objects in a missing or terminating namespace). On DELETE, :mod:`.finalizers` turns the propagation
policy into finalizers before the store deletes.

Custom resources skip allocation but not the webhooks; their defaults and validation come from their CRD's
structural schema (:mod:`labkit.emulator.schemas.structural`).
The chain owns no HTTP: :class:`~labkit.emulator.api.server.ApiServer` calls it.
"""

from __future__ import annotations

from dataclasses import replace

from labkit.core.wire import Obj
from labkit.emulator.api.auth import User
from labkit.emulator.api.resources import ResourceType
from labkit.emulator.apimachinery import status
from labkit.emulator.network.addresses import IpPool, LoadBalancerPool
from labkit.emulator.schemas import apply_defaults, check_custom
from labkit.emulator.store import Store

from .allocation import NODE_PORT_RANGE, ServiceAllocator, schedule
from .defaulting import default_object, image_pull_policy
from .finalizers import finalizers_for_delete
from .validation import validate, validate_name
from .webhooks import Attributes, Webhooks

__all__ = [
    "NODE_PORT_RANGE",
    "AdmissionChain",
    "Attributes",
    "ServiceAllocator",
    "Webhooks",
    "default_object",
    "finalizers_for_delete",
    "image_pull_policy",
    "schedule",
    "validate",
    "validate_name",
]



class AdmissionChain:
    """The admission chain of one cluster's API server.

    Args:
        store: the cluster's store (namespaces, webhook configurations).
        node_name: the cluster's only node, which bare pods are bound to.
        cluster_ips: the cluster's Service range, with ``kubernetes`` and ``kube-dns`` reserved.
        load_balancers: the emulator-wide load-balancer pool (static addresses are checked here).
        cluster: the cluster's name (names load-balancer holders).
    """

    def __init__(self, store: Store, *, node_name: str, cluster_ips: IpPool, load_balancers: LoadBalancerPool,
                 cluster: str):
        self.store = store
        self.node_name = node_name
        self.allocator = ServiceAllocator(cluster_ips, load_balancers, cluster)
        self.webhooks = Webhooks(store)

    async def admit(self, rt: ResourceType, obj: Obj, old: Obj | None, user: User, *, dry_run: bool,
                    subresource: str = "") -> Obj:
        """Run the chain over an object about to be created (``old`` is None) or updated.

        Args:
            rt: the resource type of the request.
            obj: the object as decoded and checked against the URL (it may be changed in place).
            old: the stored object on update.
            user: who asked (webhooks see it).
            dry_run: ``dryRun=All``: nothing allocated is kept.
            subresource: the subresource written, ``""`` for the object itself.

        Returns:
            The object to store.

        Raises:
            StatusError: the first stage that refuses, with the code and words of a real server.
        """
        self.default(rt, obj)
        attributes = Attributes(rt, "CREATE" if old is None else "UPDATE", obj, old, user, dry_run, subresource)
        mutated = await self.webhooks.mutate(attributes)
        if mutated is not obj:
            obj = mutated
            self.default(rt, obj)  # a patched object is decoded, and so defaulted, once more
        if rt.crd:
            check_custom(rt.kind, obj["metadata"].get("name", ""), rt.group, rt.schema, obj)
        else:
            validate(rt.group, rt.kind, obj)
            self._allocate(rt, obj, old, dry_run=dry_run)
        await self.webhooks.validate(replace(attributes, obj=obj))
        return obj

    def admit_builtin(self, rt: ResourceType, obj: Obj) -> None:
        """Defaulting, validation and allocation without webhooks, for the objects a cluster starts with.

        Args:
            rt: a built-in resource type.
            obj: the object, changed in place.
        """
        self.default(rt, obj)
        validate(rt.group, rt.kind, obj)
        self._allocate(rt, obj, None, dry_run=False)

    def check_namespace(self, rt: ResourceType, obj: Obj) -> None:
        """Refuse a new object in a namespace that does not exist or is being deleted (NamespaceLifecycle).

        Args:
            rt: the resource type.
            obj: the new object, its ``metadata.namespace`` set.
        """
        if not rt.namespaced:
            return
        namespace = obj["metadata"]["namespace"]
        found = self.store.find("", "namespaces", namespace)
        if found is None:
            raise status.not_found("namespaces", namespace)
        if (found.get("metadata") or {}).get("deletionTimestamp"):
            name = obj["metadata"].get("name", "")
            raise status.forbidden(f"{rt.plural} \"{name}\" is forbidden: unable to create new content in "
                                   f"namespace {namespace} because it is being terminated", rt.plural, name, rt.group)

    def deleting(self, obj: Obj, propagation: str) -> Obj | None:
        """The object with the finalizers a DELETE adds (see :mod:`.finalizers`), or ``None``.

        Args:
            obj: the stored object.
            propagation: ``Background``, ``Foreground`` or ``Orphan``.
        """
        return finalizers_for_delete(obj, propagation)

    def deleted(self, group: str, plural: str, obj: Obj) -> None:
        """Give back what allocation took for an object that is gone (a Service's ClusterIPs and node ports).

        Called once the store has really removed it (finalizers may keep it long after the DELETE).

        Args:
            group: its API group.
            plural: its resource.
            obj: the object as it was last stored.
        """
        if (group, plural) == ("", "services"):
            self.allocator.release(obj)

    def default(self, rt: ResourceType, obj: Obj) -> None:
        """Stage 1: fill the defaults of a built-in kind, or those a custom resource's schema declares, in place."""
        defaulted = apply_defaults(obj, rt.schema) if rt.crd else default_object(obj)
        if defaulted is not obj:
            obj.clear()
            obj.update(defaulted)

    def _allocate(self, rt: ResourceType, obj: Obj, old: Obj | None, *, dry_run: bool) -> None:
        if (rt.group, rt.plural) == ("", "pods"):
            schedule(obj, self.node_name)
        if (rt.group, rt.plural) == ("", "services"):
            allocated = self.allocator.allocate(obj, old)
            if dry_run and old is None:
                self.allocator.release(allocated)
            obj.clear()
            obj.update(allocated)
