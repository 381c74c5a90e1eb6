"""Field validation of built-in kinds: what a v1.32 API server refuses, warns about or drops, in its words."""

from __future__ import annotations

from typing import Any

import pytest

from labkit.emulator import schemas
from labkit.emulator.api.discovery import KUBERNETES_VERSION
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.schemas import decoding

DEFS = schemas.definitions(KUBERNETES_VERSION)


def service(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "helloworld"},
            "spec": {"ports": [{"port": 5000}], **spec}}


def check(obj: dict[str, Any], how: str, operation: str = "create", duplicates: list[str] | None = None,
          patch: Any = None, group: str = "", kind: str = "Service") -> tuple[dict[str, Any], list[str]]:
    return schemas.check_body(DEFS, group=group, version="v1", kind=kind, crd_schema=None, custom=False, obj=obj,
                              duplicates=duplicates or [], how=how, operation=operation, patch=patch)


def test_strict_refuses_a_misspelt_field_with_the_api_servers_words() -> None:
    with pytest.raises(StatusError) as refused:
        check(service(selectr={"app": "helloworld"}), schemas.STRICT)
    assert refused.value.code == 400 and refused.value.reason == "BadRequest"
    assert refused.value.message == ('Service in version "v1" cannot be handled as a Service: strict decoding error: '
                                     'unknown field "spec.selectr"')


def test_warn_drops_the_field_and_names_it_ignore_drops_it_silently() -> None:
    stored, warnings = check(service(selectr={"app": "helloworld"}), schemas.WARN)
    assert "selectr" not in stored["spec"] and stored["spec"]["ports"] == [{"port": 5000}]
    assert warnings == ['unknown field "spec.selectr"']
    stored, warnings = check(service(selectr={"app": "helloworld"}), schemas.IGNORE)
    assert "selectr" not in stored["spec"] and warnings == []


def test_no_directive_means_warn() -> None:
    assert schemas.directive(None) == schemas.WARN
    assert schemas.directive("Strict") == schemas.STRICT
    with pytest.raises(ValueError, match='Unsupported value: "strict"'):
        schemas.directive("strict")


def test_unknown_fields_deep_in_lists_and_metadata_are_named_by_their_path() -> None:
    svc = service()
    svc["spec"]["ports"][0]["nodeport"] = 30000
    svc["metadata"]["lables"] = {"app": "x"}
    with pytest.raises(StatusError) as refused:
        check(svc, schemas.STRICT)
    assert refused.value.message.endswith('strict decoding error: unknown field "metadata.lables", '
                                          'unknown field "spec.ports[0].nodeport"')


def test_maps_and_free_form_fields_are_not_unknown() -> None:
    svc = service(selector={"app": "x", "anything.example.com/goes": "y"})
    svc["metadata"]["annotations"] = {"a": "b"}
    svc["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:ports": {}}}}]
    stored, warnings = check(svc, schemas.STRICT)
    assert stored == svc and warnings == []


def test_deployment_replica_is_an_unknown_field() -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                  "spec": {"replica": 2, "selector": {"matchLabels": {"app": "web"}},
                           "template": {"metadata": {"labels": {"app": "web"}},
                                        "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}
    with pytest.raises(StatusError, match=r'cannot be handled as a Deployment: strict decoding error: unknown '
                                          r'field "spec.replica"$'):
        check(deployment, schemas.STRICT, group="apps", kind="Deployment")


def test_duplicate_keys_are_found_while_decoding_and_refused_when_strict() -> None:
    body, duplicates = decoding.loads_json(b'{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"w"},'
                                           b'"spec":{"replicas":1,"replicas":3}}')
    assert body["spec"]["replicas"] == 3 and duplicates == ["spec.replicas"]
    with pytest.raises(StatusError, match='strict decoding error: duplicate field "spec.replicas"'):
        check(body, schemas.STRICT, duplicates=duplicates, group="apps", kind="Deployment")
    _, warnings = check(body, schemas.WARN, duplicates=duplicates, group="apps", kind="Deployment")
    assert warnings == ['duplicate field "spec.replicas"']


def test_a_value_of_the_wrong_type_is_a_decoding_error_whatever_the_directive() -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                  "spec": {"replicas": "two"}}
    with pytest.raises(StatusError) as refused:
        check(deployment, schemas.IGNORE, group="apps", kind="Deployment")
    assert refused.value.message == ('Deployment in version "v1" cannot be handled as a Deployment: json: cannot '
                                     'unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32')
    with pytest.raises(StatusError, match="cannot unmarshal bool into Go struct field "
                                          "ServicePort.spec.ports.targetPort of type intstr.IntOrString"):
        check(service(ports=[{"port": 80, "targetPort": True}]), schemas.IGNORE)
    stored, _ = check(service(ports=[{"port": 80, "targetPort": "http"}]), schemas.STRICT)
    assert stored["spec"]["ports"][0]["targetPort"] == "http"


def test_a_patch_is_refused_as_an_invalid_patch_quoting_it() -> None:
    patch = {"spec": {"selectr": {"app": "x"}}}
    with pytest.raises(StatusError) as refused:
        check(service(selectr={"app": "x"}), schemas.STRICT, operation="patch", patch=patch)
    assert refused.value.code == 422
    assert refused.value.message == (' "" is invalid: patch: Invalid value: "map[spec:map[selectr:map[app:x]]]": '
                                     'strict decoding error: unknown field "spec.selectr"')


def test_server_side_apply_cannot_hold_an_undeclared_field_whatever_the_directive() -> None:
    svc = service(selectr={"app": "x"})
    svc["metadata"]["namespace"] = "sample"
    with pytest.raises(StatusError) as refused:
        check(svc, schemas.IGNORE, operation="apply")
    assert refused.value.message == ("failed to create typed patch object (sample/helloworld; /v1, Kind=Service): "
                                     ".spec.selectr: field not declared in schema")
    body, lines = decoding.loads_yaml("spec:\n  replicas: 1\n  replicas: 2\n")
    assert lines == ['line 3: key "replicas" already set in map'] and body == {"spec": {"replicas": 2}}
    with pytest.raises(StatusError, match=r'error strict decoding YAML: error converting YAML to JSON: yaml: '
                                          r'unmarshal errors:\n  line 3: key "replicas" already set in map'):
        check(service(), schemas.STRICT, operation="apply", duplicates=lines)


def test_kinds_without_an_upstream_definition_pass_unchanged() -> None:
    obj = {"apiVersion": "v1", "kind": "Nonesuch", "anything": 1}
    assert check(obj, schemas.STRICT, kind="Nonesuch") == (obj, [])
