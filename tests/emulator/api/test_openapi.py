"""OpenAPI v3 documents, read the way kubectl 1.32 reads them.

The helpers below restate kubectl's own checks (cli-runtime ``supportsQueryParamV3``, kubectl's
``gvkSupportsPatchOpenAPIV3`` and ``buildStrategicMergePatchFromOpenAPIV3``) so the tests assert the
decisions kubectl would take, not just the shape of the JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from labkit.emulator.api.openapi import document_for_path, openapi_document, openapi_index
from labkit.emulator.api.resources import Registry

GVK = tuple[str, str, str]


def gateway_crd() -> dict[str, Any]:
    return {
        "metadata": {"name": "gateways.networking.istio.io"},
        "spec": {"group": "networking.istio.io", "scope": "Namespaced",
                 "names": {"plural": "gateways", "kind": "Gateway", "shortNames": ["gw"]},
                 "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}}},
                              {"name": "v1beta1", "served": True, "storage": False}]},
    }


def patch_operation(document: dict[str, Any], gvk: GVK) -> dict[str, Any] | None:
    """The first PATCH operation whose single-object GVK extension names ``gvk``, as kubectl finds it."""
    for item in document["paths"].values():
        operation = item.get("patch")
        ext = (operation or {}).get("x-kubernetes-group-version-kind") or {}
        if (ext.get("group"), ext.get("version"), ext.get("kind")) == gvk:
            return operation
    return None


def supports_query_param(document: dict[str, Any], gvk: GVK, name: str) -> bool:
    """cli-runtime's check: the parameter must be among the PATCH operation's own parameters."""
    operation = patch_operation(document, gvk)
    return operation is not None and any(p.get("name") == name for p in operation.get("parameters") or ())


def sends_strategic_merge_patch(document: dict[str, Any], gvk: GVK) -> bool:
    operation = patch_operation(document, gvk)
    return bool(operation) and "application/strategic-merge-patch+json" in operation["requestBody"]["content"]


def schemas_for(document: dict[str, Any], gvk: GVK) -> list[str]:
    """Component schemas whose list-valued GVK extension names ``gvk`` (kubectl's gvkMatchesArray)."""
    found = []
    for name, schema in document["components"]["schemas"].items():
        for ext in schema.get("x-kubernetes-group-version-kind") or ():
            if (ext["group"], ext["version"], ext["kind"]) == gvk:
                found.append(name)
    return found


def fetch(registry: Registry, group: str, version: str) -> dict[str, Any]:
    """Follow the index as client-go does: look the group/version up, then GET its serverRelativeURL."""
    key = f"apis/{group}/{version}" if group else f"api/{version}"
    url = openapi_index(registry)["paths"][key]["serverRelativeURL"]
    document = document_for_path(registry, url)
    assert document is not None
    # What goes over the wire must survive a JSON round trip unchanged.
    assert json.loads(json.dumps(document)) == document
    return document


def test_index_lists_every_served_group_version_with_a_hashed_url() -> None:
    registry = Registry()
    registry.add_crd(gateway_crd())
    paths = openapi_index(registry)["paths"]
    assert {"api/v1", "apis/apps/v1", "apis/rbac.authorization.k8s.io/v1", "apis/apiextensions.k8s.io/v1",
            "apis/networking.istio.io/v1", "apis/networking.istio.io/v1beta1"} <= set(paths)
    assert len(paths) == sum(len(versions) for versions in registry.groups().values())
    url = paths["apis/apps/v1"]["serverRelativeURL"]
    assert re.fullmatch(r"/openapi/v3/apis/apps/v1\?hash=[0-9A-F]{128}", url)


def test_hash_changes_only_with_the_document() -> None:
    registry = Registry()
    before = openapi_index(registry)["paths"]
    assert openapi_index(Registry())["paths"] == before
    crd = gateway_crd()
    crd["spec"]["group"] = "apps.example.com"
    crd["metadata"]["name"] = "gateways.apps.example.com"
    registry.add_crd(crd)
    after = openapi_index(registry)["paths"]
    assert after["apis/apps/v1"] == before["apis/apps/v1"]
    assert "apis/apps.example.com/v1" in after
    registry.remove_crd(crd)
    assert openapi_index(registry)["paths"] == before


def test_unknown_paths_have_no_document() -> None:
    registry = Registry()
    assert document_for_path(registry, "apis/networking.istio.io/v1") is None
    assert document_for_path(registry, "apis/apps") is None
    assert document_for_path(registry, "version") is None
    assert openapi_document(registry, "apps", "v2") is None
    assert document_for_path(registry, "/openapi/v3/api/v1?hash=ABC")["openapi"] == "3.0.0"


@pytest.mark.parametrize(("group", "version", "kind"), [
    ("", "v1", "Pod"), ("", "v1", "Namespace"), ("", "v1", "Service"), ("", "v1", "Secret"),
    ("", "v1", "ConfigMap"), ("apps", "v1", "Deployment"), ("rbac.authorization.k8s.io", "v1", "ClusterRole"),
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"), ("networking.istio.io", "v1", "Gateway"),
    ("networking.istio.io", "v1beta1", "Gateway"), ("admissionregistration.k8s.io", "v1",
                                                    "MutatingWebhookConfiguration"),
])
def test_kubectl_leaves_field_validation_to_the_server(group: str, version: str, kind: str) -> None:
    registry = Registry()
    registry.add_crd(gateway_crd())
    document = fetch(registry, group, version)
    assert supports_query_param(document, (group, version, kind), "fieldValidation")


def test_kinds_without_patch_do_not_claim_field_validation() -> None:
    document = fetch(Registry(), "authentication.k8s.io", "v1")
    assert not supports_query_param(document, ("authentication.k8s.io", "v1", "TokenReview"), "fieldValidation")
    post = document["paths"]["/apis/authentication.k8s.io/v1/tokenreviews"]["post"]
    assert [p["name"] for p in post["parameters"]] == ["dryRun", "fieldManager", "fieldValidation"]


def test_builtins_get_strategic_merge_patch_and_crds_merge_patch() -> None:
    registry = Registry()
    registry.add_crd(gateway_crd())
    assert sends_strategic_merge_patch(fetch(registry, "apps", "v1"), ("apps", "v1", "Deployment"))
    assert sends_strategic_merge_patch(fetch(registry, "", "v1"), ("", "v1", "Service"))
    gateways = fetch(registry, "networking.istio.io", "v1")
    assert patch_operation(gateways, ("networking.istio.io", "v1", "Gateway")) is not None
    assert not sends_strategic_merge_patch(gateways, ("networking.istio.io", "v1", "Gateway"))
    content = patch_operation(gateways, ("networking.istio.io", "v1", "Gateway"))["requestBody"]["content"]
    assert set(content) == {"application/apply-patch+yaml", "application/json-patch+json",
                            "application/merge-patch+json"}


def patch_meta(document: dict[str, Any], gvk: GVK, path: list[str]) -> tuple[str, str]:
    """kubectl's ``PatchMetaFromOpenAPIV3``: follow ``path`` from the kind's schema; its merge key and strategy.

    Each step is ``traverse`` (the property must exist, else kubectl fails with ``unable to find api field``)
    then ``resolve`` (items of a list, first ``allOf``, then ``$ref`` into ``components.schemas``).
    """
    schemas = document["components"]["schemas"]
    [name] = schemas_for(document, gvk)
    schema = schemas[name]
    meta = ("", "")
    for key in path:
        assert key in (schema.get("properties") or {}), f'unable to find api field "{key}"'
        schema = schema["properties"][key]
        meta = (schema.get("x-kubernetes-patch-merge-key", ""), schema.get("x-kubernetes-patch-strategy", ""))
        if "items" in schema:
            schema = schema["items"]
        if schema.get("allOf"):
            schema = schema["allOf"][0]
        if "$ref" in schema:
            schema = schemas[schema["$ref"].removeprefix("#/components/schemas/")]
    return meta


def test_builtin_schemas_are_kubernetes_own_so_kubectl_computes_patches_from_them() -> None:
    registry = Registry()
    registry.add_crd(gateway_crd())
    core = fetch(registry, "", "v1")
    assert schemas_for(core, ("", "v1", "Pod")) == ["io.k8s.api.core.v1.Pod"]
    assert patch_meta(core, ("", "v1", "Pod"), ["spec", "containers"]) == ("name", "merge")
    assert patch_meta(core, ("", "v1", "Service"), ["spec", "ports"]) == ("port", "merge")
    assert patch_meta(core, ("", "v1", "Pod"), ["metadata", "ownerReferences"]) == ("uid", "merge")
    apps = fetch(registry, "apps", "v1")
    assert patch_meta(apps, ("apps", "v1", "Deployment"), ["spec", "template", "spec", "containers", "env"]) == \
        ("name", "merge")
    assert patch_meta(apps, ("apps", "v1", "Deployment"), ["spec", "template", "spec", "volumes"]) == \
        ("name", "merge,retainKeys")
    replicas = core["components"]["schemas"]["io.k8s.api.core.v1.ServicePort"]["properties"]["targetPort"]
    assert replicas["allOf"] == [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.util.intstr.IntOrString"}]
    assert core["components"]["schemas"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] == {
        "format": "int-or-string", "oneOf": [{"type": "string"}, {"type": "integer"}]}
    spec = apps["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]
    assert spec["replicas"]["type"] == "integer" and spec["replicas"]["format"] == "int32"
    assert "description" in spec["replicas"]


def test_custom_resource_schemas_carry_the_crd_schema_and_metadata() -> None:
    registry = Registry()
    registry.add_crd(gateway_crd())
    gateways = fetch(registry, "networking.istio.io", "v1beta1")
    assert schemas_for(gateways, ("networking.istio.io", "v1beta1", "Gateway")) == [
        "io.istio.networking.v1beta1.Gateway"]
    assert schemas_for(gateways, ("networking.istio.io", "v1beta1", "GatewayList")) == [
        "io.istio.networking.v1beta1.GatewayList"]
    schema = gateways["components"]["schemas"]["io.istio.networking.v1beta1.Gateway"]
    assert schema["type"] == "object" and schema["x-kubernetes-preserve-unknown-fields"] is True
    assert schema["properties"]["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]

    crd = gateway_crd()
    crd["spec"]["versions"][0]["schema"] = {"openAPIV3Schema": {"type": "object", "properties": {
        "spec": {"type": "object", "description": "The gateway.", "properties": {
            "servers": {"type": "array", "items": {"type": "object", "properties": {"port": {"type": "integer"}}}}}}}}}
    registry.add_crd(crd)
    v1 = fetch(registry, "networking.istio.io", "v1")["components"]["schemas"]["io.istio.networking.v1.Gateway"]
    assert set(v1["properties"]) == {"apiVersion", "kind", "metadata", "spec"}
    assert v1["properties"]["spec"]["properties"]["servers"]["items"]["properties"]["port"] == {"type": "integer"}


def test_paths_operations_and_parameters() -> None:
    document = fetch(Registry(), "apps", "v1")
    assert document["openapi"] == "3.0.0" and document["info"]["version"] == "v1.32.0"
    item = document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    assert [p["name"] for p in item["parameters"]] == ["name", "namespace", "pretty"]
    assert set(item) == {"parameters", "get", "put", "patch", "delete"}
    patch = item["patch"]
    assert patch["operationId"] == "patchAppsV1NamespacedDeployment"
    assert patch["x-kubernetes-action"] == "patch"
    assert [p["name"] for p in patch["parameters"]] == ["dryRun", "fieldManager", "fieldValidation", "force"]
    assert patch["parameters"][2] == {
        "name": "fieldValidation", "in": "query", "description": patch["parameters"][2]["description"],
        "schema": {"type": "string", "uniqueItems": True}}
    scale = document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"]
    assert scale["x-kubernetes-group-version-kind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    status = document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"]["patch"]
    assert status["x-kubernetes-group-version-kind"]["kind"] == "Deployment"
    collection = document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]
    assert set(collection) == {"parameters", "get", "post", "delete"}
    assert "get" in document["paths"]["/apis/apps/v1/deployments"]


def test_cluster_scoped_and_core_operation_names() -> None:
    core = fetch(Registry(), "", "v1")
    namespace = core["paths"]["/api/v1/namespaces/{name}"]
    assert [p["name"] for p in namespace["parameters"]] == ["name", "pretty"]
    assert namespace["patch"]["operationId"] == "patchCoreV1Namespace"
    assert "delete" not in core["paths"]["/api/v1/namespaces"]
    assert core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]["operationId"] == \
        "patchCoreV1NamespacedPod"
    rbac = fetch(Registry(), "rbac.authorization.k8s.io", "v1")
    assert rbac["paths"]["/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}"]["patch"]["operationId"] == \
        "patchRbacAuthorizationV1ClusterRole"


def test_every_reference_resolves() -> None:
    registry = Registry()
    registry.add_crd(gateway_crd())
    for group, versions in registry.groups().items():
        for version in versions:
            document = fetch(registry, group, version)
            text = json.dumps(document)
            for ref in re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text):
                assert ref in document["components"]["schemas"], (group, version, ref)
