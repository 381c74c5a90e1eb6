"""``kubectl apply`` for notebooks: all or nothing, with kubectl's one line per object.

A lab cell applies a sample file; if its third document names a namespace that does not exist, a
half-applied sample (a Service but no Deployment) is harder to understand than an error, so every
document is checked before any is written:

1. the YAML parses (errors name the file, the document and the line);
2. each ``apiVersion``/``kind`` is known to the server's discovery (or defined by a CRD in the same
   batch) and each namespace exists (or is created by the batch);
3. a server-side dry run (``dryRun=All``) of every document passes: the server's own validation,
   admission and field checks, without a write.

Only then is each object server-side applied (field manager ``labkit``, conflicts forced, as
``kubectl apply --server-side --force-conflicts``). Server-side apply rather than client-side keeps no
``last-applied`` annotation and lets the server merge lists by their keys, and it is the same request
on real and embedded clusters. Namespaces and CRDs go first, so a batch may define what later
documents need.

Whether an object was ``created``, ``configured`` or ``unchanged`` is read off its resourceVersion
before and after: a server does not bump it for a no-op apply. A Secret's ``stringData`` is sent as
``data`` (base64, winning over the same key, as the server would merge it): ``stringData`` is
write-only, so applying it again always differs from the stored object, and a real server then writes
a new resourceVersion whenever the second has turned (kubernetes/kubernetes#118519): re-running a
cell would say ``configured`` for nothing.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError, ResourceNotUniqueError
from kubernetes.dynamic.resource import Resource

from labkit.core.secret_data import fold_string_data
from labkit.core.selectors import parse_label_selector
from labkit.core.wire import Obj
from labkit.errors import InvalidSelectorError, ManifestError
from labkit.kube.clients import api_error, dynamic_for, raise_api_error
from labkit.kube.contexts import ContextRef
from labkit.kube.polling import poll

Source = list[Obj] | tuple[Obj, ...] | str | Path | Obj
FIELD_MANAGER = "labkit"
_CRD_API = "apiextensions.k8s.io/v1"


@dataclass(frozen=True)
class Document:
    """One object of a manifest and where it came from.

    Args:
        body: the object as parsed.
        origin: the file name, or ``<string>``/``<objects>``.
        index: its 1-based position among the documents of ``origin``.
        line: the 1-based line it starts at (0 when it did not come from text).
    """

    body: Obj
    origin: str
    index: int
    line: int = 0

    @property
    def where(self) -> str:
        """``file: document N (line L)`` for messages."""
        at = f" (line {self.line})" if self.line else ""
        return f"{self.origin}: document {self.index}{at}"

    @property
    def kind(self) -> str:
        """The object's kind."""
        return str(self.body.get("kind", ""))

    @property
    def name(self) -> str:
        """The object's name."""
        return str((self.body.get("metadata") or {}).get("name", ""))

    @property
    def labels(self) -> Mapping[str, str]:
        """The object's labels."""
        return (self.body.get("metadata") or {}).get("labels") or {}


@dataclass(frozen=True)
class AppliedObject:
    """What happened to one object, printed the way kubectl prints it (``service/helloworld created``).

    Args:
        kind: the object's kind.
        group: its API group (empty for core).
        name: its name.
        namespace: its namespace (None for cluster-scoped kinds).
        action: ``created``, ``configured``, ``unchanged`` or ``deleted``.
        dry_run: whether it was only a server dry run.
        api_version: its ``apiVersion`` (to find it again, e.g. to delete it at a lab's cleanup).
    """

    kind: str
    group: str
    name: str
    namespace: str | None
    action: str
    dry_run: bool = False
    api_version: str = ""

    @property
    def resource(self) -> str:
        """kubectl's ``kind.group`` form: ``deployment.apps``, ``service``."""
        return f"{self.kind.lower()}.{self.group}" if self.group else self.kind.lower()

    def __str__(self) -> str:
        suffix = " (server dry run)" if self.dry_run else ""
        if self.action == "deleted":
            return f'{self.resource} "{self.name}" deleted{suffix}'
        return f"{self.resource}/{self.name} {self.action}{suffix}"


class AppliedObjects(list[AppliedObject]):
    """The objects one apply or delete touched; shows as kubectl's output, one line per object."""

    def __str__(self) -> str:
        return "\n".join(str(item) for item in self)

    def __repr__(self) -> str:
        return str(self) or "(no objects)"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


# --- parsing -------------------------------------------------------------------------------------------------------


def load_documents(source: Source, *, require_names: bool = True) -> list[Document]:
    """Parse a manifest into documents, expanding ``kind: List``.

    Args:
        source: objects (dicts), YAML text, or a file: a :class:`~pathlib.Path`, or a one-line string ending
            in ``.yaml``/``.yml``/``.json``.
        require_names: refuse objects without ``metadata.name`` (an IstioOperator for istioctl needs none).

    Raises:
        ManifestError: the file is missing, a document is not valid YAML (naming its index and line) or
            is not an object with ``apiVersion``, ``kind`` and ``metadata.name``.
    """
    if isinstance(source, Mapping):
        source = [dict(source)]
    if isinstance(source, list | tuple):
        documents = [Document(copy.deepcopy(body), "<objects>", i) for i, body in enumerate(source, 1)]
    else:
        origin, text = _read(source)
        documents = _parse(text, origin)
    expanded: list[Document] = []
    for document in documents:
        if document.body.get("kind") == "List" and isinstance(document.body.get("items"), list):
            expanded += [Document(item, document.origin, document.index, document.line)
                         for item in document.body["items"]]
        else:
            expanded.append(document)
    problems = [problem for document in expanded for problem in _shape_problems(document, require_names)]
    if problems:
        raise ManifestError(_listing("the manifest has problems", problems), problems)
    return expanded


def _read(source: str | Path) -> tuple[str, str]:
    is_path = isinstance(source, Path) or ("\n" not in source and source.strip().endswith((".yaml", ".yml", ".json")))
    if not is_path:
        return "<string>", str(source)
    path = Path(source)
    try:
        return str(path), path.read_text()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the manifest ({exc.strerror or exc}); check the path.") from exc


class _DuplicateKeyLoader(yaml.SafeLoader):
    """SafeLoader that notes a key given twice in one mapping.

    PyYAML keeps the last value silently, and so does kubectl's YAML reader: a second ``replicas:`` further
    down a Deployment wins unseen. Noting it lets the error name the line before anything is applied.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if isinstance(key, str) and key in first:
                self.duplicates.append(f'line {line}: key "{key}" is given twice (first at line {first[key]}); '
                                       f"keep one of them")
            first.setdefault(key, line)
        return super().construct_mapping(node, deep=deep)


def _parse(text: str, origin: str) -> list[Document]:
    loader = _DuplicateKeyLoader(text)
    documents: list[Document] = []
    duplicates: list[str] = []
    index = 0
    try:
        while loader.check_node():
            index += 1
            node = loader.get_node()
            if node is None:
                continue
            body = loader.construct_document(node)
            if body is None:
                index -= 1  # an empty document (a trailing ---) is not counted, as kubectl does not
                continue
            document = Document(body, origin, index, node.start_mark.line + 1)
            duplicates += [f"{document.where}: {line}" for line in loader.duplicates]
            loader.duplicates.clear()
            documents.append(document)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        detail = f"{context}: {problem}" if context else problem
        message = (f"{origin}: document {max(index, 1)}{line} is not valid YAML ({detail}). "
                   f"Check the indentation and quoting there; documents are separated by lines of '---'.")
        raise ManifestError(message) from exc
    finally:
        loader.dispose()
    if duplicates:
        raise ManifestError(_listing("the manifest has problems", duplicates), duplicates)
    return documents


def _shape_problems(document: Document, require_names: bool) -> list[str]:
    body = document.body
    if not isinstance(body, dict):
        return [f"{document.where}: expected an object with apiVersion, kind and metadata, got {type(body).__name__}"]
    missing = [field for field in ("apiVersion", "kind") if not body.get(field)]
    if require_names and not (body.get("metadata") or {}).get("name"):
        missing.append("metadata.name")
    if missing:
        what = f" ({body.get('kind')})" if body.get("kind") else ""
        return [f"{document.where}{what}: missing {', '.join(missing)}; every object needs apiVersion, kind and "
                f"metadata.name"]
    return []


# --- label selectors (kubectl apply -l) ------------------------------------------------------------------------------


def selector_matches(selector: str | None, labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy a label selector as kubectl writes it (``app=x,version!=v2,tier in (a,b),!canary``).

    Args:
        selector: the selector; empty or None matches everything.
        labels: the object's labels.

    Raises:
        ManifestError: the selector cannot be parsed.
    """
    try:
        return parse_label_selector(selector).matches(labels)
    except InvalidSelectorError as exc:
        raise ManifestError(f"cannot parse the label selector {selector!r} ({exc}); write it as kubectl does: "
                            f"key=value, key!=value, key in (a,b), key, !key") from exc


# --- apply / delete ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Planned:
    document: Document
    api_version: str
    kind: str
    group: str
    namespace: str | None
    resource: Resource | None  # None: its CRD is in this batch, resolved after the CRD is applied
    live_version: str | None = None


def apply(
    context: ContextRef,
    documents: Source,
    *,
    namespace: str | None = None,
    selector: str | None = None,
    field_manager: str = FIELD_MANAGER,
    dry_run: bool = False,
    kubeconfig: Path | str | None = None,
) -> AppliedObjects:
    """Server-side apply a manifest, all or nothing, and report each object as kubectl does.

    Args:
        context: the kubeconfig context.
        documents: objects, YAML text or a file (see :func:`load_documents`).
        namespace: the namespace for namespaced objects that name none (``kubectl apply -n``); ``default``
            otherwise. An object naming another namespace is an error, as with kubectl.
        selector: apply only objects whose labels match (``kubectl apply -l``).
        field_manager: the server-side apply field manager.
        dry_run: validate and dry-run on the server only; nothing is written.
        kubeconfig: the kubeconfig file; by default ``KUBECONFIG`` or ``~/.kube/config``.

    Raises:
        ManifestError: bad YAML, an unknown kind, a missing namespace, or objects the server refuses in
            the dry run; every problem is listed and nothing has been applied.
        KubeApiError: the server refused a write after validation passed (rare: a concurrent change).
    """
    dyn = dynamic_for(context, kubeconfig)
    selected = [d for d in load_documents(documents) if selector_matches(selector, d.labels)]
    plan = _plan(dyn, context, selected, namespace)
    _dry_run(dyn, plan, field_manager)
    results = AppliedObjects()
    if dry_run:
        # A dry run writes nothing, so no resourceVersion tells a no-op from a change: kubectl says
        # "configured" for every existing object too.
        for item in plan:
            action = "created" if item.live_version is None else "configured"
            results.append(AppliedObject(item.kind, item.group, item.document.name, item.namespace, action, True,
                                         item.api_version))
        return results
    # Namespaces and CRDs first: later documents of the same batch may live in or be defined by them.
    ordered = sorted(plan, key=lambda item: 0 if item.kind in ("Namespace", "CustomResourceDefinition") else 1)
    for item in ordered:
        # Discovery misses refresh the DynamicClient's cache, so a kind whose CRD was just applied resolves.
        resource = item.resource or _resolve_after_crd(dyn, item)
        written = _write(dyn, resource, item, field_manager)
        action = _action(item.live_version, (written.get("metadata") or {}).get("resourceVersion"))
        results.append(AppliedObject(item.kind, item.group, item.document.name, item.namespace, action,
                                     api_version=item.api_version))
    return results


def delete(
    context: ContextRef,
    documents: Source,
    *,
    namespace: str | None = None,
    selector: str | None = None,
    ignore_not_found: bool = True,
    kubeconfig: Path | str | None = None,
) -> AppliedObjects:
    """Delete the objects of a manifest (``kubectl delete -f``), in reverse order.

    Args:
        context: the kubeconfig context.
        documents: objects, YAML text or a file (see :func:`load_documents`).
        namespace: the namespace for namespaced objects that name none.
        selector: delete only objects whose labels match.
        ignore_not_found: skip objects (and kinds) that do not exist instead of raising.
        kubeconfig: the kubeconfig file; by default ``KUBECONFIG`` or ``~/.kube/config``.

    Raises:
        KubeApiError: the server refused a deletion (or an object is missing and ``ignore_not_found`` is False).
    """
    dyn = dynamic_for(context, kubeconfig)
    results = AppliedObjects()
    for document in reversed([d for d in load_documents(documents) if selector_matches(selector, d.labels)]):
        body = document.body
        try:
            resource = dyn.resources.get(api_version=body["apiVersion"], kind=body["kind"])
        except (ResourceNotFoundError, ResourceNotUniqueError) as exc:
            if ignore_not_found:
                continue
            raise ManifestError(f"{document.where}: the server has no kind {body['kind']} in "
                                f"{body['apiVersion']}") from exc
        target_ns = _namespace_for(document, namespace) if resource.namespaced else None
        try:
            dyn.delete(resource, name=document.name, namespace=target_ns)
        except ApiException as exc:
            if exc.status == 404 and ignore_not_found:
                continue
            raise_api_error(exc, f"deleting {_describe(body['kind'], target_ns, document.name)}")
        results.append(AppliedObject(body["kind"], resource.group, document.name, target_ns, "deleted"))
    return results


def _plan(dyn: DynamicClient, context: ContextRef, documents: list[Document], namespace: str | None) -> list[_Planned]:
    problems: list[tuple[int, str]] = []  # by document index, so the message reads in file order
    planned: list[_Planned] = []
    batch_crds = {(_crd_group(d.body), kind) for d in documents if d.kind == "CustomResourceDefinition"
                  for kind in [((d.body.get("spec") or {}).get("names") or {}).get("kind")] if kind}
    batch_namespaces = {d.name for d in documents if d.kind == "Namespace" and d.body.get("apiVersion") == "v1"}
    needed_namespaces: dict[str, Document] = {}
    for document in documents:
        body = document.body
        api_version, kind = str(body["apiVersion"]), str(body["kind"])
        group = api_version.rpartition("/")[0]
        try:
            resource: Resource | None = dyn.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            if (group, kind) in batch_crds:
                resource = None
            else:
                problems.append((document.index, _unknown_kind(document, api_version, kind)))
                continue
        except ResourceNotUniqueError:
            problems.append((document.index, f"{document.where}: kind {kind} in {api_version} is ambiguous on the "
                                             f"server; name the group in apiVersion"))
            continue
        except ApiException as exc:
            raise_api_error(exc, f"discovering {api_version} on context {context!r}")
        namespaced = resource.namespaced if resource is not None else _crd_namespaced(documents, group, kind)
        target_ns: str | None = None
        if namespaced:
            try:
                target_ns = _namespace_for(document, namespace)
            except ManifestError as exc:
                problems.append((document.index, str(exc)))
                continue
            if target_ns not in batch_namespaces:
                needed_namespaces.setdefault(target_ns, document)
        live_version = None
        if resource is not None:
            live_version = _live_version(dyn, resource, document.name, target_ns)
        group_name = resource.group if resource is not None else group
        planned.append(_Planned(document, api_version, kind, group_name, target_ns, resource, live_version))
    if needed_namespaces:
        namespaces = dyn.resources.get(api_version="v1", kind="Namespace")
        for name, document in needed_namespaces.items():
            if _live_version(dyn, namespaces, name, None) is None:
                problems.append((document.index, f"{document.where} ({_describe(document.kind, name, document.name)}): "
                                 f'namespaces "{name}" not found; create it first: kubectl --context {context} '
                                 f"create ns {name}"))
    if problems:
        lines = [line for _, line in sorted(problems, key=lambda item: item[0])]
        raise ManifestError(_listing(f"nothing was applied to {context}", lines), lines)
    return planned


def _dry_run(dyn: DynamicClient, plan: list[_Planned], field_manager: str) -> None:
    # Objects whose CRD or namespace arrives with this batch cannot be dry-run before it exists; they were
    # checked as far as possible by _plan.
    new_namespaces = {p.document.name for p in plan if p.kind == "Namespace" and p.live_version is None}
    problems: list[str] = []
    first: ApiException | None = None
    for item in plan:
        if item.resource is None or (item.namespace and item.namespace in new_namespaces):
            continue
        try:
            dyn.server_side_apply(item.resource, body=_body(item), name=item.document.name,
                                  namespace=item.namespace, field_manager=field_manager, force_conflicts=True,
                                  dry_run="All")
        except ApiException as exc:
            first = first or exc
            message = api_error(exc).message
            problems.append(f"{item.document.where} ({_describe(item.kind, item.namespace, item.document.name)}): "
                            f"the server refused it: {message}{_field_hint(item.kind, message)}")
    if problems:
        message = _listing("nothing was applied: the server's dry run refused", problems)
        raise ManifestError(message, problems) from first


_UNDECLARED = re.compile(r"\.([\w.\[\]-]+): field not declared in schema")


def _field_hint(kind: str, message: str) -> str:
    # The server names the field it does not know; say where the fields it does know are listed.
    match = _UNDECLARED.search(message)
    if match is None:
        return ""
    path = re.sub(r"\[\d+\]", "", match[1])
    parent = path.rpartition(".")[0]
    where = f"{kind.lower()}.{parent}" if parent else kind.lower()
    return f" (check the spelling of {path.rpartition('.')[2]!r}: `kubectl explain {where}` lists the fields there)"


def _write(dyn: DynamicClient, resource: Resource, item: _Planned, field_manager: str) -> Obj:
    try:
        written = dyn.server_side_apply(resource, body=_body(item), name=item.document.name, namespace=item.namespace,
                                        field_manager=field_manager, force_conflicts=True)
    except ApiException as exc:
        raise_api_error(exc, f"applying {_describe(item.kind, item.namespace, item.document.name)} "
                             f"({item.document.where})")
    result = written.to_dict() if hasattr(written, "to_dict") else dict(written)
    if item.kind == "CustomResourceDefinition":
        _wait_established(dyn, resource, item.document.name)
    return result


def _wait_established(dyn: DynamicClient, resource: Resource, name: str, timeout: float = 30.0) -> None:
    # A real apiextensions server serves a CRD's kind a moment after accepting it; custom resources of the
    # same batch would otherwise get a 404.
    def established() -> bool:
        crd = dyn.get(resource, name=name).to_dict()
        conditions = (crd.get("status") or {}).get("conditions") or []
        return not conditions or any(c.get("type") == "Established" and c.get("status") == "True"
                                     for c in conditions)

    poll(established, timeout=timeout, what=f"customresourcedefinition {name} Established",
         explain=lambda _: [f"customresourcedefinition/{name}: not Established"])


def _action(before: str | None, after: str | None) -> str:
    if before is None:
        return "created"
    return "unchanged" if after == before else "configured"


def _resolve_after_crd(dyn: DynamicClient, item: _Planned) -> Resource:
    try:
        return dyn.resources.get(api_version=item.api_version, kind=item.kind)
    except (ResourceNotFoundError, ResourceNotUniqueError) as exc:
        raise ManifestError(_unknown_kind(item.document, item.api_version, item.kind)) from exc


def _body(item: _Planned) -> Obj:
    body = copy.deepcopy(item.document.body)
    metadata = body.setdefault("metadata", {})
    if item.namespace is not None:
        metadata["namespace"] = item.namespace
    # Server-owned fields in a manifest (from `kubectl get -o yaml`) would make the apply fail or conflict.
    for field in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation", "selfLink"):
        metadata.pop(field, None)
    body.pop("status", None)
    if item.kind == "Secret" and item.group == "" and _plain_strings(body.get("stringData")) \
            and isinstance(body.get("data") or {}, dict):
        fold_string_data(body)
    return body


def _plain_strings(value: Any) -> bool:
    """A non-empty map of strings: anything else in ``stringData`` is left for the server's dry run to refuse."""
    return isinstance(value, dict) and bool(value) and all(isinstance(v, str) for v in value.values())


def _live_version(dyn: DynamicClient, resource: Resource, name: str, namespace: str | None) -> str | None:
    try:
        live = dyn.get(resource, name=name, namespace=namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise_api_error(exc, f"reading {_describe(resource.kind, namespace, name)}")
    return str(live.metadata.resourceVersion)


def _namespace_for(document: Document, namespace: str | None) -> str:
    own = (document.body.get("metadata") or {}).get("namespace")
    if own and namespace and own != namespace:
        raise ManifestError(f"{document.where} ({document.kind} {document.name}): the namespace from the object "
                            f'"{own}" does not match the namespace "{namespace}" passed; remove one of them')
    return str(own or namespace or "default")


def _unknown_kind(document: Document, api_version: str, kind: str) -> str:
    group = api_version.rpartition("/")[0]
    hint = "install its CustomResourceDefinition first"
    if group.endswith("istio.io"):
        hint += " (Istio's CRDs come with labkit.istio.install or istioctl install)"
    elif not group:
        hint = "check the spelling of kind and apiVersion"
    return (f'{document.where} ({kind} {document.name}): no matches for kind "{kind}" in version "{api_version}"; '
            f"{hint}")


def _crd_group(body: Obj) -> str:
    return str((body.get("spec") or {}).get("group", ""))


def _crd_namespaced(documents: Iterable[Document], group: str, kind: str) -> bool:
    for document in documents:
        spec = document.body.get("spec") or {}
        if (document.kind == "CustomResourceDefinition" and spec.get("group") == group
                and (spec.get("names") or {}).get("kind") == kind):
            return spec.get("scope", "Namespaced") == "Namespaced"
    return True


def _describe(kind: str, namespace: str | None, name: str) -> str:
    return f"{kind.lower()} {namespace}/{name}" if namespace else f"{kind.lower()} {name}"


def _listing(headline: str, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"{headline}: {problems[0]}"
    return headline + ":\n" + "\n".join(f"  - {p}" for p in problems)
