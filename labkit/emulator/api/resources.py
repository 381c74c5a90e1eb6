"""The resource types the emulator serves, with the discovery metadata a real API server advertises.

Everything a client learns about a resource before it sends a request comes from here: kubectl maps
``po`` to ``pods`` and ``deploy.apps`` to ``apps/v1 deployments`` with the short names, singular names
and groups of discovery; it picks strategic merge patch for built-ins and JSON merge patch for custom
resources; ``kubectl get all`` expands the ``all`` category. A wrong verb list or a missing short name
breaks a lab command long before any handler runs, so the built-in table below copies what a
v1.32 server publishes instead of deriving it.

Custom resources join through :meth:`Registry.add_crd`, which validates a CustomResourceDefinition the
way the apiextensions server does (naming each offending field) and registers one type per served
version. :class:`ResourceType` values are immutable; the :class:`Registry` is the only mutable piece and
changes only when a CRD is added or removed.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from labkit.core.names import name_errors
from labkit.emulator.apimachinery.status import invalid

# Verb lists exactly as a real server advertises them: built-ins are sorted, CRDs use the
# apiextensions server's own (unsorted) order, and kubectl only ever tests membership.
STANDARD_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
NAMESPACE_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")
CREATE_ONLY = ("create",)
CRD_VERBS = ("delete", "deletecollection", "get", "list", "patch", "create", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")
PROXY_VERBS = ("create", "delete", "get", "patch", "update")

_CRD_GROUP = "apiextensions.k8s.io"
_CRD_KIND = "CustomResourceDefinition"
_COLUMN_TYPES = ("boolean", "date", "integer", "number", "string")
_SCOPES = ("Cluster", "Namespaced")


@dataclass(frozen=True, slots=True)
class Subresource:
    """A subresource such as ``status``, ``scale``, ``exec`` or ``log``.

    Args:
        name: the path segment after the object name (``status``, ``scale`` …).
        kind: the kind its requests and responses carry (``Pod`` for ``pods/status``, ``Scale`` …).
        verbs: what discovery advertises for it.
        group: set only when the kind lives in another group (``autoscaling`` for ``scale``).
        version: set together with ``group``.
        spec_replicas_path: for ``scale``, where the desired replica count lives in the parent object.
        status_replicas_path: for ``scale``, where the observed replica count lives.
        label_selector_path: for ``scale``, where the selector string lives (empty when there is none).
    """

    name: str
    kind: str
    verbs: tuple[str, ...]
    group: str = ""
    version: str = ""
    spec_replicas_path: str = ""
    status_replicas_path: str = ""
    label_selector_path: str = ""


@dataclass(frozen=True, slots=True)
class PrinterColumn:
    """A column of ``kubectl get`` for a custom resource (a CRD's ``additionalPrinterColumns`` entry).

    Args:
        name: the header, as the CRD spells it (kubectl upper-cases it).
        type: ``string``, ``integer``, ``number``, ``boolean`` or ``date`` (rendered as an age).
        json_path: where the cell's value lives in the object, e.g. ``.spec.replicas``.
        description: shown by nothing in kubectl, but part of the Table's column definition.
        priority: 0 for the default view, greater for ``-o wide`` only.
        format: the OpenAPI format hint (``name``, ``date-time`` …), passed through to the Table.
    """

    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0
    format: str = ""


@dataclass(frozen=True, slots=True)
class ResourceType:
    """One served resource at one version, as discovery describes it.

    Args:
        group: API group, ``""`` for the core group.
        version: API version within the group (``v1``, ``v1beta1`` …).
        kind: the object kind (``Pod``).
        plural: the resource name in URLs (``pods``).
        singular: what ``kubectl get pod`` accepts (``pod``).
        namespaced: whether objects live in a namespace.
        verbs: the verbs discovery advertises for the main resource.
        short_names: kubectl's abbreviations (``po``).
        categories: groupings such as ``all`` that ``kubectl get all`` expands.
        subresources: ``status``, ``scale``, ``exec``, ``log`` … that this resource serves.
        list_kind: the kind of a list response (``PodList``).
        strategic: whether strategic merge patch is accepted (built-ins); CRDs answer 415 instead.
        printer_columns: a CRD version's ``additionalPrinterColumns``; built-ins are rendered in tables.py.
        crd: the name of the CustomResourceDefinition that registered this type, ``""`` for built-ins.
        storage: whether this version is the one objects are stored in (always true for built-ins).
        schema: a CRD version's ``openAPIV3Schema``, if it gave one (not compared, not hashed).
    """

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    verbs: tuple[str, ...] = STANDARD_VERBS
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[Subresource, ...] = ()
    list_kind: str = ""
    strategic: bool = True
    printer_columns: tuple[PrinterColumn, ...] = ()
    crd: str = ""
    storage: bool = True
    schema: Mapping[str, Any] | None = field(default=None, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        # A default that depends on another field cannot be a dataclass default.
        if not self.list_kind:
            object.__setattr__(self, "list_kind", f"{self.kind}List")

    @property
    def group_version(self) -> str:
        """``v1`` for the core group, ``apps/v1`` otherwise: the ``apiVersion`` of objects."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_prefix(self) -> str:
        """The URL prefix of this group/version: ``/api/v1`` or ``/apis/apps/v1``."""
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    @property
    def qualified_plural(self) -> str:
        """``deployments.apps`` (``pods`` for the core group), the name Status messages use."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def subresource(self, name: str) -> Subresource | None:
        """The subresource called ``name`` (``status``, ``scale`` …), or None when it is not served."""
        return next((sub for sub in self.subresources if sub.name == name), None)

    def has_verb(self, verb: str) -> bool:
        """Whether discovery advertises ``verb`` for the main resource."""
        return verb in self.verbs


def version_priority(version: str) -> tuple[int, int, int, str]:
    """A sort key that orders versions as Kubernetes prefers them (lower sorts first).

    GA before beta before alpha, higher numbers first (``v2``, ``v1``, ``v1beta2``, ``v1beta1``,
    ``v1alpha1``), and versions that do not look like Kubernetes versions last, alphabetically. This is
    how a group's ``preferredVersion`` is chosen.

    Args:
        version: a version name such as ``v1beta1``.
    """
    match = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not match:
        return (3, 0, 0, version)
    major, stage, minor = match.groups()
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -int(major), -int(minor or 0), "")


def _scale(group: str = "autoscaling", version: str = "v1") -> Subresource:
    # Built-in workloads expose autoscaling/v1 Scale; the paths are those their scale handlers use.
    return Subresource("scale", "Scale", STATUS_VERBS, group, version,
                       spec_replicas_path=".spec.replicas", status_replicas_path=".status.replicas",
                       label_selector_path=".status.selector")


def _status(kind: str) -> Subresource:
    return Subresource("status", kind, STATUS_VERBS)


# The built-in types the labs use, in the order a real server lists its groups: kubectl resolves an
# ambiguous name (``events``, ``ev``) to the first group that has it, which must be the core group.
# Only subresources the emulator serves are advertised: a real server also lists pods/eviction and
# namespaces/finalize, which the labs never use.
BUILTINS: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "Namespace", "namespaces", "namespace", False, NAMESPACE_VERBS, ("ns",),
                 subresources=(_status("Namespace"),)),
    ResourceType("", "v1", "Pod", "pods", "pod", True, short_names=("po",), categories=("all",),
                 subresources=(
                     Subresource("attach", "PodAttachOptions", ("create", "get")),
                     Subresource("exec", "PodExecOptions", ("create", "get")),
                     Subresource("log", "Pod", ("get",)),
                     Subresource("portforward", "PodPortForwardOptions", ("create", "get")),
                     Subresource("proxy", "PodProxyOptions", PROXY_VERBS),
                     _status("Pod"),
                 )),
    ResourceType("", "v1", "Service", "services", "service", True, short_names=("svc",), categories=("all",),
                 subresources=(Subresource("proxy", "ServiceProxyOptions", PROXY_VERBS), _status("Service"))),
    ResourceType("", "v1", "Endpoints", "endpoints", "endpoints", True, short_names=("ep",)),
    ResourceType("", "v1", "Secret", "secrets", "secret", True),
    ResourceType("", "v1", "ConfigMap", "configmaps", "configmap", True, short_names=("cm",)),
    ResourceType("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", True, short_names=("sa",),
                 subresources=(Subresource("token", "TokenRequest", CREATE_ONLY, "authentication.k8s.io", "v1"),)),
    ResourceType("", "v1", "Event", "events", "event", True, short_names=("ev",)),
    ResourceType("", "v1", "Node", "nodes", "node", False, short_names=("no",),
                 subresources=(_status("Node"),)),
    ResourceType("apps", "v1", "Deployment", "deployments", "deployment", True, short_names=("deploy",),
                 categories=("all",), subresources=(_scale(), _status("Deployment"))),
    ResourceType("apps", "v1", "ReplicaSet", "replicasets", "replicaset", True, short_names=("rs",),
                 categories=("all",), subresources=(_scale(), _status("ReplicaSet"))),
    ResourceType("apps", "v1", "DaemonSet", "daemonsets", "daemonset", True, short_names=("ds",),
                 categories=("all",), subresources=(_status("DaemonSet"),)),
    ResourceType("apps", "v1", "StatefulSet", "statefulsets", "statefulset", True, short_names=("sts",),
                 categories=("all",), subresources=(_scale(), _status("StatefulSet"))),
    ResourceType("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", True),
    ResourceType("batch", "v1", "Job", "jobs", "job", True, categories=("all",), subresources=(_status("Job"),)),
    ResourceType("batch", "v1", "CronJob", "cronjobs", "cronjob", True, short_names=("cj",), categories=("all",),
                 subresources=(_status("CronJob"),)),
    ResourceType("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", False),
    ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings",
                 "clusterrolebinding", False),
    ResourceType(_CRD_GROUP, "v1", _CRD_KIND, "customresourcedefinitions", "customresourcedefinition", False,
                 short_names=("crd", "crds"), categories=("api-extensions",),
                 subresources=(_status(_CRD_KIND),)),
    ResourceType("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", "tokenreview", False,
                 CREATE_ONLY),
    ResourceType("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews",
                 "subjectaccessreview", False, CREATE_ONLY),
    ResourceType("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews",
                 "selfsubjectaccessreview", False, CREATE_ONLY),
    ResourceType("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews",
                 "selfsubjectrulesreview", False, CREATE_ONLY),
    ResourceType("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview",
                 False, CREATE_ONLY),
    ResourceType("coordination.k8s.io", "v1", "Lease", "leases", "lease", True),
    ResourceType("events.k8s.io", "v1", "Event", "events", "event", True, short_names=("ev",)),
    ResourceType("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration",
                 "mutatingwebhookconfigurations", "mutatingwebhookconfiguration", False,
                 categories=("api-extensions",)),
    ResourceType("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration",
                 "validatingwebhookconfigurations", "validatingwebhookconfiguration", False,
                 categories=("api-extensions",)),
)


class Registry:
    """The resource types one emulated cluster serves: the built-ins plus whatever CRDs were added.

    Lookups never raise; they return None when nothing matches so that the caller chooses the Status
    (a 404 for an unknown URL, kubectl's "the server doesn't have a resource type" for a bad name).

    Args:
        types: the initial types; the built-in table when omitted.
    """

    def __init__(self, types: Iterable[ResourceType] = BUILTINS) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        for rt in types:
            self._types[(rt.group, rt.version, rt.plural)] = rt

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(self._types.values())

    def __len__(self) -> int:
        return len(self._types)

    def __contains__(self, rt: object) -> bool:
        return isinstance(rt, ResourceType) and self._types.get((rt.group, rt.version, rt.plural)) == rt

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        """The type served at ``/apis/{group}/{version}/…/{plural}`` (``group`` ``""`` for ``/api/v1``).

        Args:
            group: API group, ``""`` for core.
            version: API version.
            plural: resource name as it appears in the URL.
        """
        return self._types.get((group, version, plural))

    def by_kind(self, kind: str, group: str | None = None, version: str | None = None) -> ResourceType | None:
        """The type of objects of ``kind``, preferring the core group and each group's preferred version.

        Args:
            kind: the object kind, case-sensitive as in ``kind:`` of a manifest.
            group: restrict to this group (``""`` is the core group); any group when None.
            version: restrict to this version; the group's preferred version when None.
        """
        return self._first(rt for rt in self._types.values()
                           if rt.kind == kind and (group is None or rt.group == group)
                           and (version is None or rt.version == version))

    def by_api_version(self, api_version: str, kind: str) -> ResourceType | None:
        """The type of a manifest's ``apiVersion``/``kind`` pair (``apps/v1``, ``Deployment``).

        Args:
            api_version: ``v1`` or ``group/version``.
            kind: the object kind.
        """
        group, _, version = api_version.rpartition("/")
        return self.by_kind(kind, group, version)

    def resolve(self, name: str) -> ResourceType | None:
        """The type kubectl means by ``name``: any of plural, singular, short name or kind, optionally
        qualified as ``name.group`` or ``name.version.group``, case-insensitively.

        Args:
            name: what the user typed after ``kubectl get`` (``po``, ``Deployment``, ``deploy.apps``,
                ``deployments.v1.apps``, ``virtualservices.networking.istio.io``).
        """
        name = name.lower()
        found = self._first(rt for rt in self._types.values() if _answers_to(rt, name))
        if found or "." not in name:
            return found
        # kubectl tries resource.version.group first, then resource.group with a dotted group.
        parts = name.split(".", 2)
        if len(parts) == 3:
            resource, version, group = parts
            found = self._first(rt for rt in self._types.values()
                                if rt.group == group and rt.version == version and _answers_to(rt, resource))
            if found:
                return found
        resource, group = name.split(".", 1)
        return self._first(rt for rt in self._types.values()
                           if rt.group == group and _answers_to(rt, resource))

    def in_category(self, category: str) -> list[ResourceType]:
        """The preferred-version types in ``category`` (``all`` for ``kubectl get all``).

        Args:
            category: a category name.
        """
        preferred = {group: versions[0] for group, versions in self.groups().items()}
        return [rt for rt in self._types.values()
                if category in rt.categories and preferred.get(rt.group) == rt.version]

    def groups(self) -> dict[str, list[str]]:
        """Every served group (core first, then in registration order) with its versions, preferred first."""
        groups: dict[str, list[str]] = {}
        for rt in self._types.values():
            versions = groups.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
        for versions in groups.values():
            versions.sort(key=version_priority)
        core = {"": groups.pop("")} if "" in groups else {}
        return core | groups

    def resources(self, group: str, version: str) -> list[ResourceType]:
        """The types served under one group/version, in registration order.

        Args:
            group: API group, ``""`` for core.
            version: API version.
        """
        return [rt for rt in self._types.values() if rt.group == group and rt.version == version]

    def add_crd(self, crd: Mapping[str, Any]) -> list[ResourceType]:
        """Validate a CustomResourceDefinition and register one type per served version.

        Adding a CRD that is already registered (an update) replaces its previous types, so versions
        that are no longer served disappear.

        Args:
            crd: the ``apiextensions.k8s.io/v1`` object, as stored.

        Returns:
            The registered types, storage version first.

        Raises:
            StatusError: 422 Invalid naming every offending field (``spec.names.plural: Required value``).
        """
        types = crd_types(crd)
        name = types[0].crd
        for rt in types:
            taken = self._types.get((rt.group, rt.version, rt.plural))
            if taken is not None and taken.crd != name:
                raise invalid(_CRD_KIND, name, [("spec.names.plural", f'"{rt.plural}" is already in use')],
                              group=_CRD_GROUP)
        self.remove_crd(name)
        for rt in types:
            self._types[(rt.group, rt.version, rt.plural)] = rt
        return types

    def remove_crd(self, crd: Mapping[str, Any] | str) -> list[ResourceType]:
        """Forget the types a CustomResourceDefinition registered.

        Args:
            crd: the CRD object or its name (``virtualservices.networking.istio.io``).

        Returns:
            The types removed (empty when the CRD was not registered).
        """
        name = crd if isinstance(crd, str) else str((crd.get("metadata") or {}).get("name", ""))
        removed = [key for key, rt in self._types.items() if rt.crd == name]
        return [self._types.pop(key) for key in removed]

    def _first(self, candidates: Iterable[ResourceType]) -> ResourceType | None:
        # Group order is registration order (core first); within a group the preferred version wins.
        order = {group: index for index, group in enumerate(self.groups())}
        ranked = sorted(candidates, key=lambda rt: (order[rt.group], version_priority(rt.version)))
        return ranked[0] if ranked else None


def _answers_to(rt: ResourceType, name: str) -> bool:
    return name in (rt.plural, rt.singular, rt.kind.lower()) or name in rt.short_names


def crd_types(crd: Mapping[str, Any]) -> list[ResourceType]:
    """The types a CustomResourceDefinition defines, one per served version, storage version first.

    Applies the defaults a v1 server applies (``singular`` is the lower-cased kind, ``listKind`` is
    ``kind`` + ``List``) and rejects what it rejects.

    Args:
        crd: the ``apiextensions.k8s.io/v1`` object.

    Raises:
        StatusError: 422 Invalid naming every offending field.
    """
    metadata = crd.get("metadata") or {}
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    name = str(metadata.get("name") or "")
    group = str(spec.get("group") or "")
    plural = str(names.get("plural") or "")
    kind = str(names.get("kind") or "")
    singular = str(names.get("singular") or kind.lower())
    short_names = tuple(str(s) for s in names.get("shortNames") or ())
    categories = tuple(str(c) for c in names.get("categories") or ())
    scope = str(spec.get("scope") or "")
    versions = list(spec.get("versions") or ())

    causes: list[tuple[str, str]] = []
    if not name:
        causes.append(("metadata.name", "Required value"))
    elif group and plural and name != f"{plural}.{group}":
        causes.append(("metadata.name", f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group'))
    if not group:
        causes.append(("spec.group", "Required value"))
    elif "." not in group:
        causes.append(("spec.group", f'Invalid value: "{group}": should be a domain with at least one dot'))
    causes += _name_causes(names, plural, singular, kind, short_names)
    if not scope:
        causes.append(("spec.scope", "Required value"))
    elif scope not in _SCOPES:
        causes.append(("spec.scope", f'Unsupported value: "{scope}": supported values: "Cluster", "Namespaced"'))
    causes += _version_causes(versions)
    if causes:
        raise invalid(_CRD_KIND, name, causes, group=_CRD_GROUP)

    types = []
    for version in versions:
        if not version.get("served"):
            continue
        subresources = version.get("subresources") or {}
        subs: list[Subresource] = []
        if "status" in subresources:
            subs.append(_status(kind))
        if "scale" in subresources:
            scale = subresources["scale"] or {}
            subs.append(Subresource("scale", "Scale", STATUS_VERBS, "autoscaling", "v1",
                                    spec_replicas_path=str(scale.get("specReplicasPath", "")),
                                    status_replicas_path=str(scale.get("statusReplicasPath", "")),
                                    label_selector_path=str(scale.get("labelSelectorPath", ""))))
        columns = tuple(
            PrinterColumn(str(col["name"]), str(col["type"]), str(col["jsonPath"]),
                          str(col.get("description", "")), int(col.get("priority", 0)), str(col.get("format", "")))
            for col in version.get("additionalPrinterColumns") or ()
        )
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        types.append(ResourceType(
            group, str(version["name"]), kind, plural, singular, scope == "Namespaced", CRD_VERBS,
            short_names, categories, tuple(subs), str(names.get("listKind") or f"{kind}List"),
            strategic=False, printer_columns=columns, crd=name, storage=bool(version.get("storage")),
            schema=copy.deepcopy(schema) if schema is not None else None,
        ))
    types.sort(key=lambda rt: not rt.storage)
    return types


def _dns1035(value: str) -> str:
    """Why ``value`` is no DNS-1035 label (what Kubernetes requires of resource, kind and version names), or ``""``."""
    return "; ".join(name_errors(value, "dns1035"))


def _name_causes(names: Mapping[str, Any], plural: str, singular: str, kind: str,
                 short_names: tuple[str, ...]) -> list[tuple[str, str]]:
    causes: list[tuple[str, str]] = []
    if not plural:
        causes.append(("spec.names.plural", "Required value"))
    elif _dns1035(plural):
        causes.append(("spec.names.plural", f'Invalid value: "{plural}": {_dns1035(plural)}'))
    if names.get("singular") and _dns1035(singular):
        causes.append(("spec.names.singular", f'Invalid value: "{singular}": {_dns1035(singular)}'))
    if not kind:
        causes.append(("spec.names.kind", "Required value"))
    elif _dns1035(kind.lower()):
        causes.append(("spec.names.kind",
                       f'Invalid value: "{kind}": may have mixed case, but should otherwise match: '
                       f'{_dns1035(kind.lower())}'))
    for index, short in enumerate(short_names):
        if _dns1035(short):
            causes.append((f"spec.names.shortNames[{index}]", f'Invalid value: "{short}": {_dns1035(short)}'))
    return causes


def _version_causes(versions: list[Mapping[str, Any]]) -> list[tuple[str, str]]:
    if not versions:
        return [("spec.versions", "Required value")]
    causes: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, version in enumerate(versions):
        path = f"spec.versions[{index}]"
        vname = str(version.get("name") or "")
        if not vname:
            causes.append((f"{path}.name", "Required value"))
        elif _dns1035(vname):
            causes.append((f"{path}.name", f'Invalid value: "{vname}": {_dns1035(vname)}'))
        elif vname in seen:
            causes.append((f"{path}.name", f'Duplicate value: "{vname}"'))
        seen.add(vname)
        for cindex, column in enumerate(version.get("additionalPrinterColumns") or ()):
            causes += _column_causes(column, f"{path}.additionalPrinterColumns[{cindex}]")
    if sum(1 for version in versions if version.get("storage")) != 1:
        causes.append(("spec.versions", "Invalid value: must have exactly one version marked as storage version"))
    if not any(version.get("served") for version in versions):
        causes.append(("spec.versions", "Invalid value: must have at least one version marked as served"))
    return causes


def _column_causes(column: Mapping[str, Any], path: str) -> list[tuple[str, str]]:
    causes: list[tuple[str, str]] = []
    if not column.get("name"):
        causes.append((f"{path}.name", "Required value"))
    ctype = column.get("type")
    if not ctype:
        causes.append((f"{path}.type", "Required value"))
    elif ctype not in _COLUMN_TYPES:
        supported = ", ".join(f'"{t}"' for t in _COLUMN_TYPES)
        causes.append((f"{path}.type", f'Unsupported value: "{ctype}": supported values: {supported}'))
    json_path = column.get("jsonPath")
    if not json_path:
        causes.append((f"{path}.jsonPath", "Required value"))
    # A leading dot is all a real server checks: filters like [?(@.type=="Ready")] are common.
    elif not str(json_path).startswith("."):
        causes.append((f"{path}.jsonPath",
                       f'Invalid value: "{json_path}": must be a simple json path starting with .'))
    return causes
