"""The machinery every controller shares: a work queue, a reconcile loop and a manager.

Kubernetes controllers are level-triggered: an event only says *which* object to look at, and the
reconcile reads the current state and drives it towards the desired one. That makes them robust to
missed, repeated and reordered events, and it is why this module copies client-go's shape rather than
reacting to event payloads:

* store listeners are synchronous and run inside the write that caused them, so they only turn an
  event into keys and enqueue them (a listener that wrote to the store would re-enter it);
* the :class:`WorkQueue` deduplicates keys (ten pod updates before the worker wakes are one
  reconcile) and never hands out the same key twice at once;
* a failed reconcile is logged and retried with exponential back-off, never crashing the loop;
* :meth:`ControllerManager.wait_idle` lets tests wait for "nothing left to do" instead of sleeping.

Controllers read the store directly (it is the informer cache and the API server at once), so
client-go's "expectations" that guard against stale caches are unnecessary here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from labkit.core import kubetime
from labkit.core.selectors import LabelSelector, label_selector_from_dict
from labkit.emulator.apimachinery import BUILTIN_KINDS
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.store import Store, WatchEvent

_log = logging.getLogger(__name__)

Key = Hashable
"""What a controller reconciles: usually ``(namespace, name)`` of the object it owns."""

BASE_DELAY = 0.005
"""First retry after a failed reconcile (client-go's default, 5 ms); doubled per failure."""

MAX_DELAY = 2.0
"""Longest retry interval: a lab recovers within seconds once the cause is gone."""

DEFAULT_IDLE_TIMEOUT = 10.0
"""How long :meth:`ControllerManager.wait_idle` waits before it says what is still busy."""


class WorkQueue:
    """A deduplicating queue of keys with delayed and rate-limited adds, for one consumer.

    A key is queued at most once; a key added while it is being processed is queued again and
    handed out after :meth:`done`, so the latest state is always reconciled.

    Args:
        base_delay: first back-off delay, in seconds.
        max_delay: back-off ceiling, in seconds.
    """

    def __init__(self, *, base_delay: float = BASE_DELAY, max_delay: float = MAX_DELAY):
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._processing: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._failures: dict[Key, int] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._shut_down = False

    def add(self, key: Key) -> None:
        """Queue ``key`` unless it is already queued."""
        if self._shut_down or key in self._queued:
            return
        self._queued.add(key)
        self._idle.clear()
        self._queue.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds (an earlier pending add wins)."""
        if self._shut_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        if existing is not None:
            if existing.when() <= loop.time() + delay:
                return
            existing.cancel()
        self._idle.clear()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def add_rate_limited(self, key: Key) -> float:
        """Queue ``key`` after its back-off delay (which doubles per call); returns the delay."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = min(self._base_delay * (2**failures), self._max_delay)
        self.add_after(key, delay)
        return delay

    def forget(self, key: Key) -> None:
        """Reset ``key``'s back-off after a successful reconcile."""
        self._failures.pop(key, None)

    async def get(self) -> Key:
        """The next key; the caller must call :meth:`done` with it."""
        key = await self._queue.get()
        self._queued.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: Key) -> None:
        """Mark ``key`` processed."""
        self._processing.discard(key)
        self._update_idle()

    @property
    def idle(self) -> bool:
        """Nothing queued, nothing being processed, no delayed add pending."""
        return not self._queued and not self._processing and not self._timers

    async def wait_idle(self) -> None:
        """Return once :attr:`idle` holds."""
        while not self.idle and not self._shut_down:
            self._idle.clear()
            await self._idle.wait()

    def shut_down(self) -> None:
        """Drop delayed adds and refuse new keys."""
        self._shut_down = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._idle.set()

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)
        self._update_idle()

    def _update_idle(self) -> None:
        if self.idle:
            self._idle.set()


class Controller(ABC):
    """One control loop: store events become keys, keys are reconciled one at a time.

    Subclasses implement :meth:`keys_for` (cheap, synchronous, no writes), :meth:`initial_keys`
    (everything to look at when starting, as an informer's initial list would deliver) and
    :meth:`reconcile`.

    Args:
        store: the cluster's store.
    """

    name = "controller"

    def __init__(self, store: Store):
        self.store = store
        self.queue: WorkQueue | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    def keys_for(self, event: WatchEvent) -> Iterable[Key]:
        """The keys an event concerns (none for events this controller ignores).

        Args:
            event: a store event, the store's own: look at it, never change it or anything in it.
        """

    @abstractmethod
    def initial_keys(self) -> Iterable[Key]:
        """Every key to reconcile at start-up."""

    @abstractmethod
    async def reconcile(self, key: Key) -> None:
        """Drive the state named by ``key`` towards its spec; raise to be retried with back-off.

        Args:
            key: a key from :meth:`keys_for` or :meth:`initial_keys`.
        """

    # --- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Subscribe to the store and start the worker (needs a running event loop)."""
        if self._task is not None:
            raise RuntimeError(f"controller {self.name} is already running")
        self.queue = WorkQueue()
        # keys_for only looks at an event: no copy of every object for every controller.
        self._unsubscribe = self.store.subscribe(self._on_event, shared=True)
        for key in self.initial_keys():
            self.queue.add(key)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"controller-{self.name}")

    async def stop(self) -> None:
        """Unsubscribe, cancel the worker and wait for it to end."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.queue is not None:
            self.queue.shut_down()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def running(self) -> bool:
        """Whether the worker task is alive."""
        return self._task is not None and not self._task.done()

    @property
    def idle(self) -> bool:
        """Whether the queue has nothing to do."""
        return self.queue is None or self.queue.idle

    async def wait_idle(self) -> None:
        """Return once this controller's queue is idle."""
        if self.queue is not None:
            await self.queue.wait_idle()

    def enqueue(self, key: Key, after: float = 0.0) -> None:
        """Queue a key from inside a reconcile (e.g. to look again when a delay has passed)."""
        if self.queue is not None:
            self.queue.add_after(key, after)

    # --- internals -------------------------------------------------------------------------------

    def _on_event(self, event: WatchEvent) -> None:
        if self.queue is None:
            return
        for key in self.keys_for(event):
            self.queue.add(key)

    async def _run(self) -> None:
        assert self.queue is not None
        queue = self.queue
        while True:
            key = await queue.get()
            try:
                await self.reconcile(key)
            except asyncio.CancelledError:
                queue.done(key)
                raise
            except StatusError as exc:
                delay = queue.add_rate_limited(key)
                # Conflicts and vanished objects are the normal cost of optimistic concurrency.
                level = logging.DEBUG if exc.code in (404, 409) else logging.WARNING
                _log.log(level, "%s: reconcile %r failed (%s); retrying in %.3fs", self.name, key, exc, delay)
            except Exception:
                delay = queue.add_rate_limited(key)
                _log.exception("%s: reconcile %r failed; retrying in %.3fs", self.name, key, delay)
            else:
                queue.forget(key)
            finally:
                queue.done(key)


class ControllerManager:
    """Starts, stops and waits for a set of controllers (the kube-controller-manager of a cluster).

    Args:
        controllers: the controllers to run.
    """

    def __init__(self, controllers: Sequence[Controller]):
        names = [controller.name for controller in controllers]
        duplicates = {name for name in names if names.count(name) > 1}
        if duplicates:
            raise ValueError(f"controllers must have distinct names, got {sorted(duplicates)} twice")
        self.controllers = list(controllers)

    def __getitem__(self, name: str) -> Controller:
        for controller in self.controllers:
            if controller.name == name:
                return controller
        raise KeyError(name)

    async def start(self) -> None:
        """Start every controller (each lists what exists and reconciles it)."""
        started: list[Controller] = []
        try:
            for controller in self.controllers:
                controller.start()
                started.append(controller)
        except BaseException:
            for controller in reversed(started):
                await controller.stop()
            raise

    async def stop(self) -> None:
        """Stop every controller and wait for its task to end."""
        for controller in reversed(self.controllers):
            await controller.stop()

    async def __aenter__(self) -> ControllerManager:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def idle(self) -> bool:
        """Whether no controller has anything to do."""
        return all(controller.idle for controller in self.controllers)

    async def wait_idle(self, timeout: float = DEFAULT_IDLE_TIMEOUT) -> None:
        """Wait until every controller is idle at the same moment.

        One controller's writes wake others (a ReplicaSet's pods wake the endpoints controller), so
        this loops until a pass finds all of them idle together.

        Args:
            timeout: seconds before giving up.

        Raises:
            TimeoutError: naming the controllers still busy (a reconcile failing over and over, or
                two controllers fighting over an object).
        """
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for controller in self.controllers:
                        await controller.wait_idle()
                    # Let callbacks scheduled by the last reconciles run before judging.
                    await asyncio.sleep(0)
                    if self.idle:
                        return
        except TimeoutError:
            busy = [controller.name for controller in self.controllers if not controller.idle]
            raise TimeoutError(f"controllers still busy after {timeout}s: {', '.join(busy)}") from None


# --- helpers shared by controllers ---------------------------------------------------------------

ResourceRef = tuple[str, str]
"""``(group, resource plural)``."""

_CLUSTER_SCOPED_KINDS = frozenset(
    {
        ("", "Namespace"),
        ("", "Node"),
        ("", "PersistentVolume"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
        ("apiregistration.k8s.io", "APIService"),
        ("storage.k8s.io", "StorageClass"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("certificates.k8s.io", "CertificateSigningRequest"),
        ("networking.k8s.io", "IngressClass"),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
        ("node.k8s.io", "RuntimeClass"),
    }
)


@dataclass(frozen=True)
class ResourceInfo:
    """What the garbage collector and the namespace controller need to know about a resource.

    Args:
        group: API group.
        resource: plural.
        kind: the kind of its objects.
        namespaced: whether its objects live in namespaces.
    """

    group: str
    resource: str
    kind: str
    namespaced: bool


class ResourceCatalog:
    """The resources of a cluster: the built-in table plus custom resources learnt from CRDs and events.

    The store keeps no list of resource types, and a real controller manager learns them from
    discovery; here the CRDs in the store play that part, and every event teaches the
    ``(apiVersion, kind)`` → ``(group, plural)`` mapping that ownerReferences need.

    Args:
        store: the cluster's store (read for CRDs).
    """

    def __init__(self, store: Store):
        self._by_resource: dict[ResourceRef, ResourceInfo] = {}
        self._by_kind: dict[tuple[str, str], ResourceInfo] = {}
        for (group, kind), info in BUILTIN_KINDS.items():
            self._add(ResourceInfo(group, info.plural, kind, (group, kind) not in _CLUSTER_SCOPED_KINDS))
        for crd in store.list("apiextensions.k8s.io", "customresourcedefinitions").items:
            self._learn_crd(crd)

    def observe(self, event: WatchEvent) -> None:
        """Learn from an event: its resource, and the types a CRD defines."""
        if (event.group, event.resource) == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._learn_crd(event.object)
        if (event.group, event.resource) not in self._by_resource:
            kind = str(event.object.get("kind") or "")
            namespaced = bool((event.object.get("metadata") or {}).get("namespace"))
            self._add(ResourceInfo(event.group, event.resource, kind, namespaced))

    def resources(self, *, namespaced_only: bool = False) -> list[ResourceInfo]:
        """Every known resource, sorted."""
        return sorted(
            (info for info in self._by_resource.values() if info.namespaced or not namespaced_only),
            key=lambda info: (info.group, info.resource),
        )

    def for_kind(self, api_version: str, kind: str) -> ResourceInfo | None:
        """The resource of objects of ``apiVersion``/``kind`` (as an ownerReference names them)."""
        group = api_version.rpartition("/")[0]
        return self._by_kind.get((group, kind))

    def _learn_crd(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        if spec.get("group") and names.get("plural") and names.get("kind"):
            namespaced = spec.get("scope", "Namespaced") != "Cluster"
            self._add(ResourceInfo(spec["group"], names["plural"], names["kind"], namespaced))

    def _add(self, info: ResourceInfo) -> None:
        self._by_resource[(info.group, info.resource)] = info
        if info.kind:
            self._by_kind[(info.group, info.kind)] = info


class OwnerController(Controller):
    """A controller of one workload resource whose objects own others: Deployments own ReplicaSets, ReplicaSets,
    StatefulSets, DaemonSets and Jobs own pods.

    Its keys are its own objects; a change of an owned object reconciles the owner that controls it (for an orphan,
    every owner whose ``spec.selector`` matches it, since any of them may adopt it). Subclasses say which resource
    they drive (:attr:`resource`) and which they own (:attr:`owns`).
    """

    resource: ClassVar[tuple[str, str, str]]
    """The driven resource: API group, plural, and kind as ``ownerReferences`` name it."""
    owns: ClassVar[tuple[str, str]] = ("", "pods")
    """The owned resource: API group and plural."""

    def keys_for(self, event: WatchEvent) -> Iterable[Key]:
        group, plural, kind = self.resource
        if (event.group, event.resource) == (group, plural):
            return [name_of(event.object)]
        if (event.group, event.resource) != self.owns:
            return []
        return owner_keys(self.store, event, owner_group=group, owner_resource=plural, owner_kind=kind,
                          selector_of=spec_selector)

    def initial_keys(self) -> Iterable[Key]:
        group, plural, _ = self.resource
        return [name_of(owner) for owner in self.store.list(group, plural).items]


def spec_selector(owner: dict[str, Any]) -> LabelSelector:
    """A workload's ``spec.selector``, parsed."""
    return label_selector_from_dict((owner.get("spec") or {}).get("selector"))


def owner_keys(store: Store, event: WatchEvent, *, owner_group: str, owner_resource: str, owner_kind: str,
               selector_of: Callable[[dict[str, Any]], Any]) -> set[tuple[str, str]]:
    """The owners to reconcile when a dependent (a pod, a ReplicaSet) changes.

    Its controller, named by its ``ownerReferences``; or, for an orphan, every owner whose selector matches
    it, since any of them may adopt it.

    Args:
        store: the cluster's store.
        event: the dependent's change.
        owner_group: the owners' API group (``apps``).
        owner_resource: the owners' resource plural (``replicasets``).
        owner_kind: the owners' kind as ``ownerReferences`` name it (``ReplicaSet``).
        selector_of: an owner's parsed label selector.
    """
    keys: set[tuple[str, str]] = set()
    for dependent in (event.object, event.old_object):
        if dependent is None:
            continue
        namespace = dependent["metadata"].get("namespace", "")
        ref = controller_ref(dependent)
        if ref is not None:
            if ref.get("kind") == owner_kind:
                keys.add((namespace, ref["name"]))
        elif event.type != "DELETED" and dependent is event.object:
            for owner in store.list(owner_group, owner_resource, namespace=namespace).items:
                if selector_of(owner).matches_object(dependent):
                    keys.add((namespace, owner["metadata"]["name"]))
    return keys


def name_of(obj: dict[str, Any]) -> tuple[str, str]:
    """``(namespace, name)`` of an object."""
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def is_deleting(obj: dict[str, Any]) -> bool:
    """Whether an object is marked for deletion."""
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def namespace_terminating(store: Store, namespace: str) -> bool:
    """Whether controllers must not create objects in ``namespace`` (a real server would refuse with 403)."""
    ns = store.find("", "namespaces", namespace)
    return ns is not None and (is_deleting(ns) or (ns.get("status") or {}).get("phase") == "Terminating")


def controller_ref(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The ownerReference with ``controller: true``, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def new_controller_ref(owner: dict[str, Any]) -> dict[str, Any]:
    """An ownerReference to ``owner`` as controllers write it (``metav1.NewControllerRef``)."""
    metadata = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def set_condition(
    conditions: list[dict[str, Any]], condition: dict[str, Any], now: str, *, update_time: bool = False
) -> list[dict[str, Any]]:
    """Conditions with ``condition`` set, keeping ``lastTransitionTime`` while its status is unchanged.

    ``lastUpdateTime`` (Deployments) is kept too unless reason or message changed, so a reconcile
    that learns nothing new writes nothing new.

    Args:
        conditions: the current conditions (not modified).
        condition: the new condition without timestamps.
        now: RFC 3339 timestamp for changed fields.
        update_time: also keep a ``lastUpdateTime`` (Deployment conditions have one).
    """
    result = []
    replaced = False
    for existing in conditions:
        if existing.get("type") != condition["type"]:
            result.append(existing)
            continue
        replaced = True
        updated = dict(condition)
        same_status = existing.get("status") == condition["status"]
        updated["lastTransitionTime"] = existing.get("lastTransitionTime", now) if same_status else now
        if update_time:
            unchanged = same_status and all(
                existing.get(field) == condition.get(field) for field in ("reason", "message")
            )
            updated["lastUpdateTime"] = existing.get("lastUpdateTime", now) if unchanged else now
        result.append(updated)
    if not replaced:
        fresh = dict(condition)
        fresh["lastTransitionTime"] = now
        if update_time:
            fresh["lastUpdateTime"] = now
        result.append(fresh)
    return result


# --- pods, as controllers judge them -------------------------------------------------------------


def pod_condition(pod: dict[str, Any], condition_type: str) -> dict[str, Any] | None:
    """One entry of ``status.conditions``."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == condition_type:
            return condition
    return None


def pod_ready(pod: dict[str, Any]) -> bool:
    """Whether the kubelet reports the pod ``Ready``."""
    condition = pod_condition(pod, "Ready")
    return condition is not None and condition.get("status") == "True"


def pod_active(pod: dict[str, Any]) -> bool:
    """Whether a pod counts towards a ReplicaSet: not terminating, not Succeeded or Failed."""
    return not is_deleting(pod) and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def epoch(timestamp: str | None) -> float:
    """Seconds since the epoch of an RFC 3339 timestamp (0 when absent or malformed)."""
    return kubetime.timestamp(timestamp) or 0.0
