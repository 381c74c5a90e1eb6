"""``kubectl get`` without kubectl: the server's own Table, rendered as kubectl prints it.

Notebooks show cluster state at every step (pods READY/STATUS, a gateway's EXTERNAL-IP), and attendees
may not have kubectl. The API server already knows the columns (``Accept: as=Table``): asking for them
keeps labkit's output identical to kubectl's on real and embedded clusters alike.
"""

from __future__ import annotations

from pathlib import Path

from kubernetes.client.rest import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from labkit.errors import ManifestError
from labkit.kube.clients import dynamic_for, raise_api_error
from labkit.kube.contexts import ContextRef

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def table(context: ContextRef, resource: str, namespace: str | None = None, *, selector: str | None = None,
          wide: bool = False, kubeconfig: Path | str | None = None) -> str:
    """What ``kubectl get <resource> [-n ns] [-l selector] [-o wide]`` prints.

    Args:
        context: the kubeconfig context.
        resource: a plural, singular, short name or kind (``pods``, ``svc``, ``deploy``, ``gateways``).
        namespace: the namespace; ``None`` for cluster-scoped resources, ``"*"`` for all namespaces.
        selector: a label selector.
        wide: include the columns ``-o wide`` adds.
        kubeconfig: the kubeconfig file; by default ``KUBECONFIG`` or ``~/.kube/config``.
    """
    dyn = dynamic_for(context, kubeconfig)
    try:
        found = dyn.resources.search(name=resource) or dyn.resources.search(short_names=[resource]) or \
            dyn.resources.search(singular_name=resource) or dyn.resources.search(kind=resource)
    except ResourceNotFoundError:
        found = []
    found = [r for r in found if "/" not in r.name and hasattr(r, "path")]
    if not found:
        raise ManifestError(f'context {context}: the server doesn\'t have a resource type "{resource}"')
    rt = found[0]
    all_namespaces = namespace == "*"
    path = rt.path(namespace=None if all_namespaces or not rt.namespaced else namespace or "default")
    try:
        body = dyn.request("GET", path, label_selector=selector, header_params={"Accept": TABLE}).to_dict()
    except ApiException as exc:
        raise_api_error(exc, f"listing {resource}")
    columns = [c for c in body.get("columnDefinitions") or [] if wide or not c.get("priority")]
    indexes = [i for i, c in enumerate(body.get("columnDefinitions") or []) if wide or not c.get("priority")]
    headers = ([("NAMESPACE", lambda row: row["object"]["metadata"].get("namespace", ""))] if all_namespaces
               else [])
    rows = [[*(h[1](row) for h in headers), *(_cell(row["cells"][i]) for i in indexes)]
            for row in body.get("rows") or []]
    if not rows:
        where = "" if all_namespaces or not rt.namespaced else f" in {namespace or 'default'} namespace"
        return f"No resources found{where}."
    titles = [h[0] for h in headers] + [c["name"].upper() for c in columns]
    widths = [max(len(str(v)) for v in [title, *(r[i] for r in rows)]) for i, title in enumerate(titles)]
    lines = ["   ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
             for line in [titles, *rows]]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "<none>"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "<none>"
    return str(value)
