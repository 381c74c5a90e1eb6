"""The only door to Kubernetes: contexts, apply, wait, exec. The only importer of ``kubernetes``.

Everything above (``labkit.istio``, the notebooks' ``Lab``) reaches real and embedded clusters through
these functions and a kubeconfig context name, and gets labkit values and ``labkit.errors`` back, never
the client library's objects or exceptions.
"""

from labkit.core.names import ClusterName, ContextName
from labkit.kube.access import AccessRule, AccessRules, access_rules, can_i
from labkit.kube.applying import (
    FIELD_MANAGER,
    AppliedObject,
    AppliedObjects,
    Document,
    apply,
    delete,
    load_documents,
    selector_matches,
)
from labkit.kube.clients import client_for, dynamic_for, forget_clients, is_embedded, server_version
from labkit.kube.contexts import (
    ClusterEndpoint,
    Context,
    ContextRef,
    KubeContext,
    cluster_endpoint,
    list_contexts,
    resolve,
)
from labkit.kube.events import Event, events_for, recent_warnings, warnings_about
from labkit.kube.execing import ExecResult, Pod, exec_, logs, parse_target, pods, resolve_pod
from labkit.kube.polling import poll
from labkit.kube.reading import delete_object, get_object, list_objects, scale
from labkit.kube.tables import table
from labkit.kube.waiting import not_ready, wait_ready

__all__ = [
    "FIELD_MANAGER",
    "AccessRule",
    "AccessRules",
    "AppliedObject",
    "AppliedObjects",
    "ClusterEndpoint",
    "ClusterName",
    "Context",
    "ContextName",
    "ContextRef",
    "Document",
    "Event",
    "ExecResult",
    "KubeContext",
    "Pod",
    "access_rules",
    "apply",
    "can_i",
    "client_for",
    "cluster_endpoint",
    "delete",
    "delete_object",
    "dynamic_for",
    "events_for",
    "exec_",
    "forget_clients",
    "get_object",
    "is_embedded",
    "list_contexts",
    "list_objects",
    "load_documents",
    "logs",
    "not_ready",
    "parse_target",
    "pods",
    "poll",
    "recent_warnings",
    "resolve",
    "resolve_pod",
    "scale",
    "selector_matches",
    "server_version",
    "table",
    "wait_ready",
    "warnings_about",
]
