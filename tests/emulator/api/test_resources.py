"""The resource registry: kubectl's names, discovery metadata, and CRDs turned into types."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from labkit.emulator.api.resources import CRD_VERBS, Registry, version_priority
from labkit.emulator.apimachinery.status import StatusError


def virtual_service_crd() -> dict[str, Any]:
    """A trimmed copy of Istio's VirtualService CRD: three versions, one not served."""
    def version(name: str, *, served: bool = True, storage: bool = False) -> dict[str, Any]:
        return {
            "name": name, "served": served, "storage": storage,
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                {"name": "Gateways", "type": "string", "jsonPath": ".spec.gateways",
                 "description": "The names of gateways and sidecars that should apply these routes"},
                {"name": "Hosts", "type": "string", "jsonPath": ".spec.hosts"},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            ],
        }

    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "virtualservices.networking.istio.io"},
        "spec": {
            "group": "networking.istio.io",
            "names": {"plural": "virtualservices", "singular": "virtualservice", "kind": "VirtualService",
                      "listKind": "VirtualServiceList", "shortNames": ["vs"],
                      "categories": ["istio-io", "networking-istio-io"]},
            "scope": "Namespaced",
            "versions": [version("v1alpha3", served=False), version("v1beta1"), version("v1", storage=True)],
        },
    }


def widget_crd(**spec_changes: Any) -> dict[str, Any]:
    """A small cluster-scoped CRD with a scale subresource, to be broken by the validation tests."""
    crd: dict[str, Any] = {
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"plural": "widgets", "kind": "Widget"},
            "scope": "Cluster",
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "subresources": {"scale": {"specReplicasPath": ".spec.replicas",
                                           "statusReplicasPath": ".status.replicas"}},
            }],
        },
    }
    crd["spec"].update(spec_changes)
    return crd


def causes_of(error: StatusError) -> list[tuple[str, str]]:
    return [(cause["field"], cause["message"]) for cause in error.details["causes"]]


@pytest.mark.parametrize(("name", "group", "plural"), [
    ("po", "", "pods"), ("svc", "", "services"), ("ns", "", "namespaces"), ("cm", "", "configmaps"),
    ("sa", "", "serviceaccounts"), ("ep", "", "endpoints"), ("no", "", "nodes"),
    ("deploy", "apps", "deployments"), ("rs", "apps", "replicasets"), ("ds", "apps", "daemonsets"),
    ("sts", "apps", "statefulsets"), ("crd", "apiextensions.k8s.io", "customresourcedefinitions"),
    ("crds", "apiextensions.k8s.io", "customresourcedefinitions"),
])
def test_short_names_resolve_like_kubectl(name: str, group: str, plural: str) -> None:
    rt = Registry().resolve(name)
    assert rt is not None
    assert (rt.group, rt.plural) == (group, plural)


@pytest.mark.parametrize("name", ["pods", "pod", "Pod", "PODS", "Po"])
def test_plural_singular_and_kind_resolve_case_insensitively(name: str) -> None:
    rt = Registry().resolve(name)
    assert rt is not None and rt.kind == "Pod"


@pytest.mark.parametrize("name", ["deployments.apps", "deploy.apps", "deployment.apps", "deployments.v1.apps",
                                  "Deployment.apps"])
def test_group_qualified_names_resolve(name: str) -> None:
    rt = Registry().resolve(name)
    assert rt is not None and (rt.group, rt.version, rt.kind) == ("apps", "v1", "Deployment")


def test_ambiguous_names_prefer_the_core_group_as_kubectl_does() -> None:
    registry = Registry()
    assert registry.resolve("events").group == ""
    assert registry.resolve("ev").group == ""
    assert registry.resolve("events.events.k8s.io").group == "events.k8s.io"
    assert registry.by_kind("Event").group == ""
    assert registry.by_kind("Event", group="events.k8s.io").group_version == "events.k8s.io/v1"


def test_unknown_names_resolve_to_nothing() -> None:
    registry = Registry()
    assert registry.resolve("virtualservices") is None
    assert registry.resolve("pods.apps") is None
    assert registry.get("apps", "v1", "pods") is None


def test_builtin_discovery_metadata_matches_a_real_server() -> None:
    registry = Registry()
    pods = registry.get("", "v1", "pods")
    assert pods.verbs == ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
    assert pods.categories == ("all",)
    assert [sub.name for sub in pods.subresources] == ["attach", "exec", "log", "portforward", "proxy", "status"]
    assert pods.subresource("exec").verbs == ("create", "get")
    assert pods.subresource("log").verbs == ("get",)
    assert pods.subresource("portforward").verbs == ("create", "get")
    namespaces = registry.get("", "v1", "namespaces")
    assert "deletecollection" not in namespaces.verbs and not namespaces.namespaced
    scale = registry.get("apps", "v1", "deployments").subresource("scale")
    assert (scale.group, scale.version, scale.kind, scale.verbs) == ("autoscaling", "v1", "Scale",
                                                                    ("get", "patch", "update"))
    token = registry.get("", "v1", "serviceaccounts").subresource("token")
    assert (token.group, token.kind, token.verbs) == ("authentication.k8s.io", "TokenRequest", ("create",))
    for plural in ("tokenreviews", "subjectaccessreviews", "selfsubjectaccessreviews"):
        review = next(rt for rt in registry if rt.plural == plural)
        assert review.verbs == ("create",) and not review.namespaced
    assert registry.get("", "v1", "configmaps").categories == ()
    assert all(rt.strategic and not rt.crd for rt in registry)
    assert registry.get("apps", "v1", "deployments").list_kind == "DeploymentList"
    assert registry.get("rbac.authorization.k8s.io", "v1", "rolebindings").group_version == \
        "rbac.authorization.k8s.io/v1"


def test_all_category_lists_the_workloads() -> None:
    plurals = {rt.plural for rt in Registry().in_category("all")}
    assert plurals == {"pods", "services", "deployments", "replicasets", "daemonsets", "statefulsets", "jobs",
                       "cronjobs"}


def test_groups_put_core_first_and_the_preferred_version_first() -> None:
    registry = Registry()
    registry.add_crd(virtual_service_crd())
    groups = registry.groups()
    assert next(iter(groups)) == ""
    assert groups["apps"] == ["v1"]
    assert groups["networking.istio.io"] == ["v1", "v1beta1"]


def test_version_priority_orders_ga_beta_alpha() -> None:
    versions = ["v1alpha1", "v1beta1", "foo", "v2", "v1", "v1beta2", "v10", "v2alpha1"]
    assert sorted(versions, key=version_priority) == [
        "v10", "v2", "v1", "v1beta2", "v1beta1", "v2alpha1", "v1alpha1", "foo"]


def test_add_crd_registers_every_served_version_storage_first() -> None:
    registry = Registry()
    types = registry.add_crd(virtual_service_crd())
    assert [rt.version for rt in types] == ["v1", "v1beta1"]
    assert registry.get("networking.istio.io", "v1alpha3", "virtualservices") is None
    v1 = registry.get("networking.istio.io", "v1", "virtualservices")
    assert v1 is types[0] and v1.storage and not types[1].storage
    assert (v1.kind, v1.singular, v1.list_kind, v1.namespaced) == ("VirtualService", "virtualservice",
                                                                   "VirtualServiceList", True)
    assert v1.short_names == ("vs",) and v1.categories == ("istio-io", "networking-istio-io")
    assert v1.verbs == CRD_VERBS and not v1.strategic
    assert v1.crd == "virtualservices.networking.istio.io"
    assert [sub.name for sub in v1.subresources] == ["status"]
    assert [(col.name, col.type, col.json_path) for col in v1.printer_columns] == [
        ("Gateways", "string", ".spec.gateways"), ("Hosts", "string", ".spec.hosts"),
        ("Age", "date", ".metadata.creationTimestamp")]
    assert v1.printer_columns[0].description.startswith("The names of gateways")
    assert v1.schema == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def test_crd_names_resolve_to_the_preferred_version() -> None:
    registry = Registry()
    registry.add_crd(virtual_service_crd())
    for name in ("vs", "virtualservice", "virtualservices", "VirtualService",
                 "virtualservices.networking.istio.io"):
        assert registry.resolve(name).version == "v1", name
    assert registry.resolve("virtualservices.v1beta1.networking.istio.io").version == "v1beta1"
    assert registry.by_kind("VirtualService").version == "v1"
    assert registry.by_api_version("networking.istio.io/v1beta1", "VirtualService").version == "v1beta1"


def test_crd_defaults_singular_and_list_kind_and_keeps_scale_paths() -> None:
    registry = Registry()
    (widget,) = registry.add_crd(widget_crd())
    assert (widget.singular, widget.list_kind, widget.namespaced) == ("widget", "WidgetList", False)
    scale = widget.subresource("scale")
    assert (scale.group, scale.version, scale.kind) == ("autoscaling", "v1", "Scale")
    assert (scale.spec_replicas_path, scale.status_replicas_path, scale.label_selector_path) == (
        ".spec.replicas", ".status.replicas", "")
    assert widget.subresource("status") is None


def test_updating_a_crd_replaces_its_versions_and_remove_forgets_them() -> None:
    registry = Registry()
    crd = virtual_service_crd()
    registry.add_crd(crd)
    updated = copy.deepcopy(crd)
    updated["spec"]["versions"] = [v for v in updated["spec"]["versions"] if v["name"] == "v1"]
    registry.add_crd(updated)
    assert registry.get("networking.istio.io", "v1beta1", "virtualservices") is None
    assert registry.get("networking.istio.io", "v1", "virtualservices") is not None
    removed = registry.remove_crd(crd)
    assert [rt.version for rt in removed] == ["v1"]
    assert registry.resolve("vs") is None
    assert "networking.istio.io" not in registry.groups()
    assert registry.remove_crd("virtualservices.networking.istio.io") == []


@pytest.mark.parametrize(("crd", "expected"), [
    (widget_crd(names={"kind": "Widget"}), ("spec.names.plural", "Required value")),
    (widget_crd(names={"plural": "widgets"}), ("spec.names.kind", "Required value")),
    (widget_crd(scope="Global"),
     ("spec.scope", 'Unsupported value: "Global": supported values: "Cluster", "Namespaced"')),
    (widget_crd(scope=""), ("spec.scope", "Required value")),
    (widget_crd(versions=[]), ("spec.versions", "Required value")),
])
def test_crd_validation_names_the_field(crd: dict[str, Any], expected: tuple[str, str]) -> None:
    with pytest.raises(StatusError) as caught:
        Registry().add_crd(crd)
    error = caught.value
    assert (error.code, error.reason) == (422, "Invalid")
    assert expected in causes_of(error)
    assert f"{expected[0]}: {expected[1]}" in error.message
    assert error.details["kind"] == "CustomResourceDefinition"
    assert error.details["group"] == "apiextensions.k8s.io"


def test_crd_validation_reports_every_problem_at_once() -> None:
    crd = widget_crd(group="example", names={"plural": "Widgets", "kind": "Widget", "shortNames": ["w_1"]})
    crd["metadata"]["name"] = "Widgets.example"
    crd["spec"]["versions"] = [
        {"name": "v1", "served": False, "storage": False,
         "additionalPrinterColumns": [{"name": "Replicas", "type": "int", "jsonPath": "spec.replicas"},
                                      {"type": "string"}]},
    ]
    with pytest.raises(StatusError) as caught:
        Registry().add_crd(crd)
    fields = [field for field, _ in causes_of(caught.value)]
    assert fields == [
        "spec.group", "spec.names.plural", "spec.names.shortNames[0]",
        "spec.versions[0].additionalPrinterColumns[0].type", "spec.versions[0].additionalPrinterColumns[0].jsonPath",
        "spec.versions[0].additionalPrinterColumns[1].name", "spec.versions[0].additionalPrinterColumns[1].jsonPath",
        "spec.versions", "spec.versions",
    ]
    messages = dict(causes_of(caught.value))
    assert messages["spec.group"] == 'Invalid value: "example": should be a domain with at least one dot'
    assert messages["spec.versions[0].additionalPrinterColumns[0].type"] == (
        'Unsupported value: "int": supported values: "boolean", "date", "integer", "number", "string"')
    assert messages["spec.versions[0].additionalPrinterColumns[0].jsonPath"] == (
        'Invalid value: "spec.replicas": must be a simple json path starting with .')


def test_crd_name_must_be_plural_dot_group() -> None:
    crd = widget_crd()
    crd["metadata"]["name"] = "gadgets.example.com"
    with pytest.raises(StatusError) as caught:
        Registry().add_crd(crd)
    assert causes_of(caught.value) == [
        ("metadata.name", 'Invalid value: "gadgets.example.com": must be spec.names.plural+"."+spec.group')]


def test_crd_versions_need_one_storage_version_and_unique_names() -> None:
    crd = widget_crd(versions=[{"name": "v1", "served": True, "storage": True},
                               {"name": "v1", "served": True, "storage": True}])
    with pytest.raises(StatusError) as caught:
        Registry().add_crd(crd)
    assert causes_of(caught.value) == [
        ("spec.versions[1].name", 'Duplicate value: "v1"'),
        ("spec.versions", "Invalid value: must have exactly one version marked as storage version"),
    ]


def test_a_crd_cannot_take_a_builtin_resource() -> None:
    crd = widget_crd(group="discovery.k8s.io", names={"plural": "endpointslices", "kind": "EndpointSlice"})
    crd["metadata"]["name"] = "endpointslices.discovery.k8s.io"
    crd["spec"]["versions"][0].pop("subresources")
    registry = Registry()
    with pytest.raises(StatusError) as caught:
        registry.add_crd(crd)
    assert causes_of(caught.value) == [("spec.names.plural", '"endpointslices" is already in use')]
    assert registry.get("discovery.k8s.io", "v1", "endpointslices").strategic
