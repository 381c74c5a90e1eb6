"""Schemas that teach: typos refused as a real API server refuses them, kubectl explain, CRD schemas and versions.

Driven by real kubectl (skipped where it is absent), the official Python client and labkit's own apply, against
the embedded clusters of the session.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config, dynamic

from labkit.emulator import launching
from labkit.errors import ManifestError
from labkit.kube.applying import apply

CTX = ("--context", "cluster3", "-n", "schemas")

SELECTR = """
apiVersion: v1
kind: Service
metadata: {name: typo}
spec:
  selectr: {app: helloworld}
  ports: [{port: 5000}]
"""

PETS_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: pets.zoo.example.com}
spec:
  group: zoo.example.com
  scope: Namespaced
  names: {plural: pets, singular: pet, kind: Pet}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: What the pet is like.
            required: [species]
            properties:
              species: {type: string, enum: [cat, dog], description: The kind of animal.}
              legs: {type: integer, minimum: 0, maximum: 8, description: How many legs it has.}
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              species: {type: string}
              legs: {type: integer}
"""


@pytest.fixture(scope="module")
def namespace(emulator: launching.Emulator) -> str:
    with config.new_client_from_config(str(emulator.kubeconfig), context="cluster3") as api:
        client.CoreV1Api(api).create_namespace({"metadata": {"name": "schemas"}})
    return "schemas"


@pytest.fixture(scope="module")
def pets(emulator: launching.Emulator, namespace: str) -> str:
    apply("cluster3", PETS_CRD, kubeconfig=emulator.kubeconfig)
    return "pets.zoo.example.com"


@pytest.fixture(scope="module")
def dyn(emulator: launching.Emulator) -> Iterator[dynamic.DynamicClient]:
    with config.new_client_from_config(str(emulator.kubeconfig), context="cluster3") as api:
        yield dynamic.DynamicClient(api)


def test_a_misspelt_field_is_refused_by_default_warned_with_warn_and_dropped_when_not_validated(
        kubectl: Any, namespace: str) -> None:
    out = kubectl(*CTX, "apply", "-f", "-", input=SELECTR, check=False)
    assert out.returncode == 1
    assert ('Service in version "v1" cannot be handled as a Service: strict decoding error: unknown field '
            '"spec.selectr"') in out.stderr
    assert kubectl(*CTX, "get", "svc", "typo", check=False).returncode == 1  # nothing was stored

    out = kubectl(*CTX, "apply", "--validate=warn", "-f", "-", input=SELECTR)
    assert 'Warning: unknown field "spec.selectr"' in out.stderr
    assert out.stdout.strip() == "service/typo created"
    spec = json.loads(kubectl(*CTX, "get", "svc", "typo", "-o", "json").stdout)["spec"]
    assert "selectr" not in spec and "selector" not in spec  # dropped, as a real server drops it

    kubectl(*CTX, "delete", "svc", "typo")
    out = kubectl(*CTX, "apply", "--validate=false", "-f", "-", input=SELECTR)
    assert out.stdout.strip() == "service/typo created" and "Warning" not in out.stderr

    # On an existing object kubectl sends a patch, refused in the patch's own words.
    out = kubectl(*CTX, "apply", "-f", "-", input=SELECTR, check=False)
    assert out.returncode == 1
    assert 'strict decoding error: unknown field "spec.selectr"' in out.stderr and "patch: Invalid value" in out.stderr


def test_server_side_apply_cannot_hold_an_undeclared_field(kubectl: Any, namespace: str) -> None:
    out = kubectl(*CTX, "apply", "--server-side", "-f", "-", input=SELECTR.replace("typo", "typo-ssa"), check=False)
    assert out.returncode == 1
    assert ("failed to create typed patch object (schemas/typo-ssa; /v1, Kind=Service): .spec.selectr: field not "
            "declared in schema") in out.stderr


def test_a_target_port_out_of_range_is_refused(kubectl: Any, namespace: str) -> None:
    service = "apiVersion: v1\nkind: Service\nmetadata: {name: far}\nspec: {ports: [{port: 80, targetPort: 99999}]}\n"
    out = kubectl(*CTX, "apply", "-f", "-", input=service, check=False)
    assert out.returncode == 1
    assert 'Service "far" is invalid: spec.ports[0].targetPort: Invalid value: 99999: must be between 1 and ' \
           '65535, inclusive' in out.stderr


def test_a_deployment_with_replica_is_refused(kubectl: Any, namespace: str) -> None:
    deployment = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replica: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: docker.io/istio/examples-helloworld-v1}]}
"""
    out = kubectl(*CTX, "apply", "-f", "-", input=deployment, check=False)
    assert out.returncode == 1
    assert ('Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field '
            '"spec.replica"') in out.stderr


def test_explain_built_in_kinds(kubectl: Any) -> None:
    out = kubectl("--context", "cluster3", "explain", "deployment.spec.replicas").stdout
    assert out.splitlines()[:3] == ["GROUP:      apps", "KIND:       Deployment", "VERSION:    v1"]
    assert "FIELD: replicas <integer>" in out and "Number of desired pods" in out
    out = kubectl("--context", "cluster3", "explain", "svc.spec.ports").stdout
    assert "FIELD: ports <[]ServicePort>" in out
    assert "targetPort\t<IntOrString>" in out and "port\t<integer> -required-" in out
    out = kubectl("--context", "cluster3", "explain", "svc.spec.selectr", check=False)
    assert out.returncode == 1 and 'field "selectr" does not exist' in out.stderr


def test_explain_a_custom_resource_field(kubectl: Any, pets: str) -> None:
    out = kubectl("--context", "cluster3", "explain", "pet.spec.species").stdout
    assert "KIND:       Pet" in out and "FIELD: species <string>" in out
    assert "The kind of animal." in out and "cat" in out and "dog" in out


def test_a_structural_schema_refuses_type_errors_and_prunes_unknown_fields(kubectl: Any, pets: str) -> None:
    bad = "apiVersion: zoo.example.com/v1\nkind: Pet\nmetadata: {name: tom}\nspec: {species: cat, legs: four}\n"
    out = kubectl(*CTX, "apply", "-f", "-", input=bad, check=False)
    assert out.returncode == 1
    assert 'spec.legs: Invalid value: "string": spec.legs in body must be of type integer: "string"' in out.stderr
    out = kubectl(*CTX, "apply", "-f", "-", input=bad.replace("cat", "fish").replace("four", "9"), check=False)
    assert 'spec.species: Unsupported value: "fish": supported values: "cat", "dog"' in out.stderr
    assert "spec.legs: Invalid value: 9: spec.legs in body should be less than or equal to 8" in out.stderr

    extra = "apiVersion: zoo.example.com/v1\nkind: Pet\nmetadata: {name: tom}\nspec: {species: cat, color: grey}\n"
    out = kubectl(*CTX, "apply", "-f", "-", input=extra, check=False)
    assert 'Pet in version "v1" cannot be handled as a Pet: strict decoding error: unknown field "spec.color"' \
        in out.stderr
    kubectl(*CTX, "apply", "--validate=false", "-f", "-", input=extra)
    stored = json.loads(kubectl(*CTX, "get", "pet", "tom", "-o", "json").stdout)
    assert stored["spec"] == {"species": "cat"}


def test_a_crd_at_two_versions_serves_each_as_asked(kubectl: Any, pets: str, dyn: dynamic.DynamicClient) -> None:
    kubectl(*CTX, "apply", "-f", "-", input="apiVersion: zoo.example.com/v1beta1\nkind: Pet\n"
                                            "metadata: {name: felix}\nspec: {species: cat, legs: 4}\n")
    for version in ("v1", "v1beta1"):
        got = json.loads(kubectl(*CTX, "get", f"pets.{version}.zoo.example.com", "felix", "-o", "json").stdout)
        assert got["apiVersion"] == f"zoo.example.com/{version}" and got["spec"] == {"species": "cat", "legs": 4}
        resource = dyn.resources.get(api_version=f"zoo.example.com/{version}", kind="Pet")
        listed = dyn.get(resource, namespace="schemas").to_dict()["items"]
        assert {item["apiVersion"] for item in listed} == {f"zoo.example.com/{version}"}


def test_the_python_client_gets_unknown_fields_dropped(dyn: dynamic.DynamicClient, namespace: str) -> None:
    # Clients that send no fieldValidation get Warn: the object is stored without the misspelt field.
    services = dyn.resources.get(api_version="v1", kind="Service")
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "py-typo"},
            "spec": {"selectr": {"app": "x"}, "ports": [{"port": 80}]}}
    created = dyn.create(services, body=body, namespace="schemas").to_dict()
    assert "selectr" not in created["spec"] and created["spec"]["ports"][0]["port"] == 80


def test_labkit_apply_refuses_a_typo_naming_object_field_and_fix_and_applies_nothing(
        emulator: launching.Emulator, namespace: str, dyn: dynamic.DynamicClient) -> None:
    manifest = """
apiVersion: v1
kind: ConfigMap
metadata: {name: first-of-batch, namespace: schemas}
data: {a: "1"}
---
apiVersion: v1
kind: Service
metadata: {name: helloworld, namespace: schemas}
spec:
  selectr: {app: helloworld}
  ports: [{port: 5000, targetPort: 99999}]
"""
    with pytest.raises(ManifestError) as refused:
        apply("cluster3", manifest, kubeconfig=emulator.kubeconfig)
    message = str(refused.value)
    assert "nothing was applied" in message and "document 2" in message and "schemas/helloworld" in message
    assert ".spec.selectr: field not declared in schema" in message
    assert "`kubectl explain service.spec` lists the fields there" in message
    configmaps = dyn.resources.get(api_version="v1", kind="ConfigMap")
    names = [item["metadata"]["name"] for item in dyn.get(configmaps, namespace="schemas").to_dict()["items"]]
    assert "first-of-batch" not in names

    fixed = manifest.replace("selectr", "selector")
    with pytest.raises(ManifestError, match=r"spec.ports\[0\].targetPort: Invalid value: 99999: must be between 1 "
                                            r"and 65535, inclusive"):
        apply("cluster3", fixed, kubeconfig=emulator.kubeconfig)
    duplicated = fixed.replace("targetPort: 99999", "targetPort: 5000").replace("data: {a: \"1\"}",
                                                                                 "data: {a: \"1\"}\ndata: {b: \"2\"}")
    with pytest.raises(ManifestError, match=r'document 1 \(line 2\): line 6: key "data" is given twice \(first at '
                                            r"line 5\); keep one of them"):
        apply("cluster3", duplicated, kubeconfig=emulator.kubeconfig)
    applied = apply("cluster3", fixed.replace("targetPort: 99999", "targetPort: 5000"), kubeconfig=emulator.kubeconfig)
    assert str(applied) == "configmap/first-of-batch created\nservice/helloworld created"
