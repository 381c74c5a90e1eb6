"""The controllers of an emulated cluster: what kube-controller-manager does, in-process.

Each controller watches the cluster's :class:`~labkit.emulator.store.Store` and writes back to it,
so the API layer stays a thin HTTP front: it stores what clients send and the controllers make the
cluster react (Deployments get ReplicaSets and pods, Services get endpoints and load-balancer addresses,
namespaces get their defaults and are emptied before they go, owners' dependents are collected).

What a real API server does inside a request (defaulting, validation, ClusterIP allocation, the finalizers
of a DELETE) is not here but in the API server's admission chain, :mod:`labkit.emulator.api.admission`.

Everything here runs in a :class:`ControllerManager`; :func:`cluster_controllers` builds the set one
cluster needs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from labkit.emulator.network.addresses import LoadBalancerPool
from labkit.emulator.store import Store

from .cronjobs import CronJobController
from .daemonsets import DaemonSetController
from .deployments import DeploymentController, pod_template_hash
from .endpoints import EndpointsController
from .framework import Controller, ControllerManager, ResourceCatalog, ResourceInfo, WorkQueue
from .garbage import FOREGROUND, ORPHAN, GarbageCollector
from .jobs import JobController
from .namespaces import NamespaceController
from .replicasets import ReplicaSetController
from .serviceaccounts import ServiceAccountTokenController
from .services import ServiceController
from .statefulsets import StatefulSetController

__all__ = [
    "FOREGROUND",
    "ORPHAN",
    "Controller",
    "ControllerManager",
    "CronJobController",
    "DaemonSetController",
    "DeploymentController",
    "EndpointsController",
    "GarbageCollector",
    "JobController",
    "NamespaceController",
    "ReplicaSetController",
    "ResourceCatalog",
    "ResourceInfo",
    "ServiceAccountTokenController",
    "ServiceController",
    "StatefulSetController",
    "WorkQueue",
    "cluster_controllers",
    "pod_template_hash",
]


def cluster_controllers(
    store: Store,
    *,
    cluster: str,
    node_name: str,
    ca_pem: str,
    issue_token: Callable[[str, str], str],
    load_balancers: LoadBalancerPool,
    resources: Callable[[], Iterable[ResourceInfo]] | None = None,
    create_pod: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None = None,
    create_job: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None = None,
) -> ControllerManager:
    """The controllers of one cluster, ready to :meth:`~ControllerManager.start`.

    Args:
        store: the cluster's store.
        cluster: the cluster's name (names load-balancer holders across clusters).
        node_name: the cluster's single node; pods are bound to it.
        ca_pem: the cluster CA certificate (PEM): ``kube-root-ca.crt`` and token Secrets.
        issue_token: mints a ServiceAccount bearer token the API layer accepts.
        load_balancers: the emulator-wide load-balancer pool.
        resources: extra resource types for namespace deletion (the API layer's registry).
        create_pod: creates pods through the API server's admission chain (sidecar injection).
        create_job: creates Jobs through the API server's admission chain (their uid-based selectors).
    """
    return ControllerManager([
        NamespaceController(store, ca_pem, resources=resources),
        DeploymentController(store),
        ReplicaSetController(store, node_name, create_pod=create_pod),
        JobController(store, node_name, create_pod=create_pod),
        StatefulSetController(store, node_name, create_pod=create_pod),
        DaemonSetController(store, create_pod=create_pod),
        CronJobController(store, create_job=create_job),
        ServiceController(store, load_balancers, cluster),
        EndpointsController(store),
        ServiceAccountTokenController(store, ca_pem, issue_token),
        GarbageCollector(store),
    ])
