"""Custom resources against their CRD's structural schema: pruning and validation as apiextensions does them."""

from __future__ import annotations

from typing import Any

import pytest

from labkit.emulator import schemas
from labkit.emulator.api.discovery import KUBERNETES_VERSION
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.schemas import structural

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["species"],
            "properties": {
                "species": {"type": "string", "enum": ["cat", "dog"]},
                "legs": {"type": "integer", "minimum": 0, "maximum": 8},
                "port": {"x-kubernetes-int-or-string": True},
                "toys": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
    },
}


def pet(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "zoo.example.com/v1", "kind": "Pet", "metadata": {"name": "tom", "namespace": "zoo"},
            "spec": spec}


def test_pruning_drops_undeclared_fields_except_where_unknown_fields_are_preserved() -> None:
    obj = pet(species="cat", color="grey", toys=[{"name": "ball", "size": 3}], extra={"any": {"thing": 1}},
              labels={"a": "b"})
    obj["status"] = {"happy": True}
    pruned, dropped = structural.prune(obj, SCHEMA)
    assert dropped == ["spec.color", "spec.toys[0].size", "status"]
    assert pruned["spec"] == {"species": "cat", "toys": [{"name": "ball"}], "extra": {"any": {"thing": 1}},
                              "labels": {"a": "b"}}
    assert pruned["metadata"] == obj["metadata"] and pruned["apiVersion"] == obj["apiVersion"]
    assert structural.prune(obj, None) == (obj, [])


def test_defaults_fill_absent_fields_inside_present_objects_and_never_overwrite() -> None:
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "legs": {"type": "integer", "default": 4},
        "toys": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "size": {"type": "integer", "default": 1}}}},
        "collar": {"type": "object", "default": {}, "properties": {"color": {"type": "string", "default": "red"}}},
    }}}}
    defaulted = structural.apply_defaults(pet(toys=[{"name": "ball"}, {"name": "bone", "size": 3}]), schema)
    assert defaulted["spec"] == {"legs": 4, "toys": [{"name": "ball", "size": 1}, {"name": "bone", "size": 3}],
                                 "collar": {"color": "red"}}
    assert structural.apply_defaults(pet(legs=3), schema)["spec"]["legs"] == 3
    assert "spec" not in structural.apply_defaults({"metadata": {"name": "x"}}, schema)
    obj = pet(species="cat")
    assert structural.apply_defaults(obj, None) is obj


def test_validation_names_each_field_in_the_api_servers_words() -> None:
    assert structural.validate(pet(species="cat", legs=4, port="http"), SCHEMA) == []
    assert structural.validate(pet(species="cat", port=8080), SCHEMA) == []
    causes = structural.validate(pet(species="fish", legs="four"), SCHEMA)
    assert causes == [
        ("spec.species", 'Unsupported value: "fish": supported values: "cat", "dog"'),
        ("spec.legs", 'Invalid value: "string": spec.legs in body must be of type integer: "string"'),
    ]
    assert structural.validate(pet(legs=9), SCHEMA) == [
        ("spec.species", "Required value"),
        ("spec.legs", "Invalid value: 9: spec.legs in body should be less than or equal to 8"),
    ]
    assert structural.validate(pet(species="cat", port=True), SCHEMA) == [
        ("spec.port", 'Invalid value: "boolean": spec.port in body must be of type integer-or-string: "boolean"')]


def test_check_custom_is_a_422_naming_the_object() -> None:
    with pytest.raises(StatusError) as refused:
        schemas.check_custom("Pet", "tom", "zoo.example.com", SCHEMA, pet(species="fish"))
    assert refused.value.code == 422
    assert refused.value.message == ('Pet "tom" is invalid: spec.species: Unsupported value: "fish": supported '
                                     'values: "cat", "dog"')


def test_strict_refuses_what_pruning_would_drop_and_metadata_is_object_meta() -> None:
    defs = schemas.definitions(KUBERNETES_VERSION)
    obj = pet(species="cat", color="grey")
    obj["metadata"]["lables"] = {}

    def run(how: str) -> tuple[dict[str, Any], list[str]]:
        return schemas.check_body(defs, group="zoo.example.com", version="v1", kind="Pet", crd_schema=SCHEMA,
                                  custom=True, obj=obj, duplicates=[], how=how, operation="create")

    with pytest.raises(StatusError) as refused:
        run(schemas.STRICT)
    assert refused.value.message == ('Pet in version "v1" cannot be handled as a Pet: strict decoding error: '
                                     'unknown field "spec.color", unknown field "metadata.lables"')
    stored, warnings = run(schemas.WARN)
    assert stored["spec"] == {"species": "cat"} and "lables" not in stored["metadata"]
    assert warnings == ['unknown field "spec.color"', 'unknown field "metadata.lables"']


def test_served_as_rewrites_only_the_api_version() -> None:
    stored = pet(species="cat")
    served = schemas.served_as("zoo.example.com/v1beta1", stored)
    assert served == {**stored, "apiVersion": "zoo.example.com/v1beta1"}
    assert stored["apiVersion"] == "zoo.example.com/v1"
    assert schemas.served_as("zoo.example.com/v1", stored) is stored
