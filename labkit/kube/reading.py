"""Reading objects as plain dicts, for the layers that must not see the client library's types.

labkit.istio asks questions such as "is there a ``cacerts`` Secret?" or "is istio-system labelled with a
network?"; it gets the object's wire form (the JSON the server sent, keys as on the wire) or ``None``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes.client.rest import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from labkit.core.wire import Obj
from labkit.errors import ManifestError
from labkit.kube.clients import dynamic_for, raise_api_error
from labkit.kube.contexts import ContextRef


def _resource(context: ContextRef, api_version: str, kind: str, kubeconfig: Path | str | None) -> Any:
    try:
        return dynamic_for(context, kubeconfig).resources.get(api_version=api_version, kind=kind)
    except ResourceNotFoundError as exc:
        raise ManifestError(f'context {context}: no matches for kind "{kind}" in version "{api_version}"; '
                            f"install its CustomResourceDefinition first") from exc


def get_object(context: ContextRef, api_version: str, kind: str, name: str, namespace: str | None = None, *,
               kubeconfig: Path | str | None = None) -> Obj | None:
    """One object as a dict, or None when it does not exist.

    Args:
        context: the kubeconfig context.
        api_version: e.g. ``v1`` or ``apps/v1``.
        kind: e.g. ``Secret``.
        name: the object's name.
        namespace: its namespace (None for cluster-scoped kinds).
        kubeconfig: the kubeconfig file; by default ``KUBECONFIG`` or ``~/.kube/config``.
    """
    dyn = dynamic_for(context, kubeconfig)
    resource = _resource(context, api_version, kind, kubeconfig)
    try:
        return dyn.get(resource, name=name, namespace=namespace).to_dict()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise_api_error(exc, f"reading {kind.lower()} {f'{namespace}/' if namespace else ''}{name} on {context}")


def list_objects(context: ContextRef, api_version: str, kind: str, namespace: str | None = None, *,
                 selector: str | None = None, kubeconfig: Path | str | None = None) -> list[Obj]:
    """Objects of a kind as dicts (all namespaces when ``namespace`` is None).

    Args:
        context: the kubeconfig context.
        api_version: e.g. ``v1``.
        kind: e.g. ``Pod``.
        namespace: restrict to one namespace.
        selector: a label selector.
        kubeconfig: the kubeconfig file; by default ``KUBECONFIG`` or ``~/.kube/config``.
    """
    dyn = dynamic_for(context, kubeconfig)
    resource = _resource(context, api_version, kind, kubeconfig)
    try:
        listed = dyn.get(resource, namespace=namespace, label_selector=selector)
    except ApiException as exc:
        raise_api_error(exc, f"listing {kind.lower()} on {context}")
    return list(listed.to_dict().get("items") or [])


def delete_object(context: ContextRef, api_version: str, kind: str, name: str, namespace: str | None = None, *,
                  kubeconfig: Path | str | None = None) -> bool:
    """Delete one object; returns whether it existed.

    Args:
        context: the kubeconfig context.
        api_version: e.g. ``v1``.
        kind: e.g. ``Secret``.
        name: the object's name.
        namespace: its namespace (None for cluster-scoped kinds).
        kubeconfig: the kubeconfig file; by default ``KUBECONFIG`` or ``~/.kube/config``.
    """
    dyn = dynamic_for(context, kubeconfig)
    resource = _resource(context, api_version, kind, kubeconfig)
    try:
        dyn.delete(resource, name=name, namespace=namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise_api_error(exc, f"deleting {kind.lower()} {name} on {context}")
    return True


_SCALABLE = {"deploy": "Deployment", "deployment": "Deployment", "deployments": "Deployment",
             "sts": "StatefulSet", "statefulset": "StatefulSet", "statefulsets": "StatefulSet"}


def scale(context: ContextRef, namespace: str, target: str, replicas: int, *,
          kubeconfig: Path | str | None = None) -> None:
    """``kubectl scale -n NS deploy/NAME --replicas N``: set a workload's replicas through its ``scale``
    subresource, so the manifest's owner keeps the rest of the object (an apply of a partial Deployment would not).

    Args:
        context: the kubeconfig context.
        namespace: the workload's namespace.
        target: ``deploy/<name>`` or ``statefulset/<name>``.
        replicas: how many pods it should run.
        kubeconfig: the kubeconfig file; by default ``KUBECONFIG`` or ``~/.kube/config``.
    """
    kind_name, _, name = target.partition("/")
    kind = _SCALABLE.get(kind_name.lower())
    if kind is None or not name:
        raise ManifestError(f"cannot scale {target!r}: give deploy/<name> or statefulset/<name>")
    resource = _resource(context, "apps/v1", kind, kubeconfig).subresources["scale"]
    try:
        dynamic_for(context, kubeconfig).patch(resource, body={"spec": {"replicas": replicas}}, name=name,
                                               namespace=namespace,
                                               content_type="application/merge-patch+json")
    except ApiException as exc:
        raise_api_error(exc, f"scaling {kind.lower()} {namespace}/{name} on {context}")
