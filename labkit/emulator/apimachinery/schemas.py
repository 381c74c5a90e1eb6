"""What the store knows about the shape of built-in kinds.

Strategic merge patch and server-side apply cannot treat a list as a whole when Kubernetes merges it
item by item (containers by ``name``, ports by ``containerPort`` …). A real API server reads these
strategies from Go struct tags and OpenAPI extensions; the emulator keeps the handful that matter
for the labs in one table, so patching and applying cannot disagree about them. Anything not listed
here merges the way CRDs do: maps recursively, lists atomically.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KindKey = tuple[str, str]
"""``(group, Kind)``, e.g. ``("apps", "Deployment")`` or ``("", "Pod")``."""


@dataclass(frozen=True, eq=False)
class Field:
    """How strategic merge patch and server-side apply treat one field.

    Args:
        fields: the schema of sub-fields: of the map itself, or of each item for a list of objects.
        merge_key: strategic merge patch ``patchMergeKey``; set for lists merged item by item.
        apply_keys: server-side apply ``listMapKeys`` when they differ from ``(merge_key,)``.
        key_defaults: values assumed for absent apply keys (``protocol`` defaults to ``TCP``).
        set_list: a list of scalars merged as a set (``metadata.finalizers``).
    """

    fields: Mapping[str, Field] = field(default_factory=dict)
    merge_key: str = ""
    apply_keys: tuple[str, ...] = ()
    key_defaults: Mapping[str, Any] = field(default_factory=dict)
    set_list: bool = False

    def child(self, name: str) -> Field:
        """The schema of sub-field ``name``; unknown fields merge like CRD fields."""
        return self.fields.get(name, ANY)

    @property
    def keys(self) -> tuple[str, ...]:
        """The fields identifying an item of an associative list (empty for other fields)."""
        if self.apply_keys:
            return self.apply_keys
        return (self.merge_key,) if self.merge_key else ()


ANY = Field()
"""Maps merge recursively, lists are atomic: how CRD fields and unlisted built-in fields behave."""


def _struct(**fields: Field) -> Field:
    return Field(fields=fields)


def _keyed(
    merge_key: str,
    *,
    apply_keys: tuple[str, ...] = (),
    key_defaults: Mapping[str, Any] | None = None,
    item: Field = ANY,
) -> Field:
    return Field(
        fields=item.fields, merge_key=merge_key, apply_keys=apply_keys, key_defaults=key_defaults or {}
    )


_CONDITIONS = _keyed("type")
_STATUS_WITH_CONDITIONS = _struct(conditions=_CONDITIONS)

OBJECT_META = _struct(
    ownerReferences=_keyed("uid"),
    finalizers=Field(set_list=True),
)

_CONTAINER = _struct(
    env=_keyed("name"),
    ports=_keyed("containerPort", apply_keys=("containerPort", "protocol"), key_defaults={"protocol": "TCP"}),
    volumeMounts=_keyed("mountPath"),
    volumeDevices=_keyed("devicePath"),
)

POD_SPEC = _struct(
    containers=_keyed("name", item=_CONTAINER),
    initContainers=_keyed("name", item=_CONTAINER),
    ephemeralContainers=_keyed("name", item=_CONTAINER),
    volumes=_keyed("name"),
    imagePullSecrets=_keyed("name"),
    hostAliases=_keyed("ip"),
    topologySpreadConstraints=_keyed("topologyKey", apply_keys=("topologyKey", "whenUnsatisfiable")),
    resourceClaims=_keyed("name"),
    schedulingGates=_keyed("name"),
)

_POD_TEMPLATE = _struct(metadata=OBJECT_META, spec=POD_SPEC)

_POD = _struct(
    metadata=OBJECT_META,
    spec=POD_SPEC,
    status=_struct(conditions=_CONDITIONS, podIPs=_keyed("ip"), hostIPs=_keyed("ip")),
)

# Deployment, ReplicaSet, StatefulSet, DaemonSet and Job reach their PodSpec the same way.
_WORKLOAD = _struct(
    metadata=OBJECT_META,
    spec=_struct(template=_POD_TEMPLATE),
    status=_STATUS_WITH_CONDITIONS,
)

_CRON_JOB = _struct(
    metadata=OBJECT_META,
    spec=_struct(jobTemplate=_struct(metadata=OBJECT_META, spec=_struct(template=_POD_TEMPLATE))),
)

_SERVICE = _struct(
    metadata=OBJECT_META,
    spec=_struct(ports=_keyed("port", apply_keys=("port", "protocol"), key_defaults={"protocol": "TCP"})),
    status=_STATUS_WITH_CONDITIONS,
)

_NODE = _struct(
    metadata=OBJECT_META,
    status=_struct(conditions=_CONDITIONS, addresses=_keyed("type")),
)

_WEBHOOKS = _struct(metadata=OBJECT_META, webhooks=_keyed("name"))

_PLAIN = _struct(metadata=OBJECT_META)
_WITH_CONDITIONS = _struct(metadata=OBJECT_META, status=_STATUS_WITH_CONDITIONS)


@dataclass(frozen=True, eq=False)
class KindInfo:
    """What patching, applying and the store need to know about one built-in kind.

    Args:
        plural: the resource name in URLs (``deployments``).
        schema: merge strategies of the kind's fields.
        status_subresource: whether ``status`` is written only through ``/status``.
    """

    plural: str
    schema: Field
    status_subresource: bool = False


def _kinds() -> dict[KindKey, KindInfo]:
    table: dict[KindKey, KindInfo] = {}

    def add(group: str, kind: str, plural: str, schema: Field = _PLAIN, *, status: bool = False) -> None:
        table[(group, kind)] = KindInfo(plural, schema, status)

    add("", "Pod", "pods", _POD, status=True)
    add("", "Service", "services", _SERVICE, status=True)
    add("", "Endpoints", "endpoints")
    add("", "Namespace", "namespaces", _WITH_CONDITIONS, status=True)
    add("", "Node", "nodes", _NODE, status=True)
    add("", "ConfigMap", "configmaps")
    add("", "Secret", "secrets")
    add(
        "",
        "ServiceAccount",
        "serviceaccounts",
        _struct(metadata=OBJECT_META, secrets=_keyed("name"), imagePullSecrets=_keyed("name")),
    )
    add("", "Event", "events")
    add("", "PersistentVolume", "persistentvolumes", status=True)
    add("", "PersistentVolumeClaim", "persistentvolumeclaims", _WITH_CONDITIONS, status=True)
    add("", "ReplicationController", "replicationcontrollers", _WORKLOAD, status=True)
    add("", "PodTemplate", "podtemplates", _struct(metadata=OBJECT_META, template=_POD_TEMPLATE))
    add("", "LimitRange", "limitranges")
    add("", "ResourceQuota", "resourcequotas", status=True)
    for kind, plural in (
        ("Deployment", "deployments"),
        ("ReplicaSet", "replicasets"),
        ("StatefulSet", "statefulsets"),
        ("DaemonSet", "daemonsets"),
    ):
        add("apps", kind, plural, _WORKLOAD, status=True)
    add("apps", "ControllerRevision", "controllerrevisions")
    add("batch", "Job", "jobs", _WORKLOAD, status=True)
    add("batch", "CronJob", "cronjobs", _CRON_JOB, status=True)
    add("autoscaling", "HorizontalPodAutoscaler", "horizontalpodautoscalers", _WITH_CONDITIONS, status=True)
    add("policy", "PodDisruptionBudget", "poddisruptionbudgets", _WITH_CONDITIONS, status=True)
    add("networking.k8s.io", "Ingress", "ingresses", status=True)
    add("networking.k8s.io", "IngressClass", "ingressclasses")
    add("networking.k8s.io", "NetworkPolicy", "networkpolicies")
    add("discovery.k8s.io", "EndpointSlice", "endpointslices")
    for kind, plural in (
        ("Role", "roles"),
        ("RoleBinding", "rolebindings"),
        ("ClusterRole", "clusterroles"),
        ("ClusterRoleBinding", "clusterrolebindings"),
    ):
        add("rbac.authorization.k8s.io", kind, plural)
    add("coordination.k8s.io", "Lease", "leases")
    add(
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        _WEBHOOKS,
    )
    add(
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        _WEBHOOKS,
    )
    add(
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        _WITH_CONDITIONS,
        status=True,
    )
    add("apiregistration.k8s.io", "APIService", "apiservices", _WITH_CONDITIONS, status=True)
    add("storage.k8s.io", "StorageClass", "storageclasses")
    add("scheduling.k8s.io", "PriorityClass", "priorityclasses")
    add(
        "certificates.k8s.io",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        _WITH_CONDITIONS,
        status=True,
    )
    add("events.k8s.io", "Event", "events")
    add("node.k8s.io", "RuntimeClass", "runtimeclasses")
    return table


BUILTIN_KINDS: Mapping[KindKey, KindInfo] = _kinds()
"""Built-in kinds by ``(group, Kind)``: the kinds that accept strategic merge patch."""

STATUS_RESOURCES: frozenset[tuple[str, str]] = frozenset(
    (group, info.plural) for (group, _kind), info in BUILTIN_KINDS.items() if info.status_subresource
)
"""``(group, plural)`` of built-in resources whose ``status`` is written only through ``/status``."""


def kind_key_of(obj: Mapping[str, Any]) -> KindKey:
    """``(group, Kind)`` of an object from its ``apiVersion`` and ``kind``.

    Args:
        obj: a Kubernetes object.
    """
    api_version = str(obj.get("apiVersion") or "")
    group = api_version.rpartition("/")[0]
    return group, str(obj.get("kind") or "")


def schema_for(kind_key: KindKey) -> Field:
    """The merge strategies of a kind; CRDs and unknown kinds merge maps and replace lists.

    Args:
        kind_key: ``(group, Kind)``.
    """
    info = BUILTIN_KINDS.get(kind_key)
    return info.schema if info else ANY
