"""Kubernetes' own definitions, converted to the OpenAPI v3 shape a v1.32 server publishes."""

from __future__ import annotations

from labkit.emulator.schemas import upstream


def test_the_release_folder_follows_the_minor_version() -> None:
    assert upstream.release("v1.32.0") == "v1.32.0-local"
    assert upstream.release("v1.32.7") == "v1.32.0-local"


def test_a_release_the_package_no_longer_ships_falls_back_to_the_closest() -> None:
    shipped = ["v1.33.0-local", "v1.33.0-local-strict", "v1.35.0-local", "v1.31.0-local"]
    assert upstream.nearest_release("v1.33.0-local", shipped) == "v1.33.0-local"
    assert upstream.nearest_release("v1.34.0-local", shipped) == "v1.33.0-local"
    assert upstream.nearest_release("v1.29.0-local", shipped) == "v1.31.0-local"


def test_conversion_to_openapi_v3() -> None:
    converted = upstream.convert({
        "type": ["object", "null"],
        "properties": {
            "apiVersion": {"type": ["string", "null"], "enum": ["apps/v1"]},
            "spec": {"$ref": "#/$defs/io.k8s.api.apps.v1.DeploymentSpec", "description": "The spec."},
            "items": {"type": "array", "items": {"$ref": "#/$defs/io.k8s.api.core.v1.Container"}},
        },
    })
    assert converted == {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "spec": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}],
                     "description": "The spec."},
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}},
        },
    }


def test_kinds_are_found_by_their_group_version_kind() -> None:
    defs = upstream.definitions("v1.32.0")
    assert defs.kind("apps", "v1", "Deployment")[0] == "io.k8s.api.apps.v1.Deployment"
    assert defs.kind("", "v1", "Service")[0] == "io.k8s.api.core.v1.Service"
    assert defs.kind("rbac.authorization.k8s.io", "v1", "ClusterRole")[0] == "io.k8s.api.rbac.v1.ClusterRole"
    assert defs.kind("apiextensions.k8s.io", "v1", "CustomResourceDefinition")[0] == \
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition"
    assert defs.kind("apps", "v1", "Nonesuch") is None


def test_the_closure_holds_every_referenced_definition() -> None:
    defs = upstream.definitions("v1.32.0")
    closure = defs.closure(["io.k8s.api.core.v1.Service"])
    assert {"io.k8s.api.core.v1.ServiceSpec", "io.k8s.api.core.v1.ServicePort",
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", upstream.INT_OR_STRING} <= set(closure)
    for schema in closure.values():
        assert upstream.references(schema) <= set(closure)
