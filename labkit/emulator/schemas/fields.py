"""Field validation of request bodies, with the ``fieldValidation`` semantics of a v1.32 API server.

A typo such as ``selectr:`` in a Service is not an error to a Go struct: the field is dropped and the
Service then selects nothing. Since v1.25 the API server reports such fields, and how depends on the
request's ``fieldValidation`` parameter (kubectl sends ``Strict`` by default, ``Warn`` with
``--validate=warn``, ``Ignore`` with ``--validate=false``; other clients send nothing, which means
``Warn``):

* ``Strict``: the request fails — ``Service in version "v1" cannot be handled as a Service: strict
  decoding error: unknown field "spec.selectr"`` (400) for a create or update, the same words inside a
  ``patch: Invalid value`` (422) for a patch;
* ``Warn``: the fields are dropped and each is named in a ``Warning`` response header, which kubectl prints;
* ``Ignore``: the fields are dropped silently.

Duplicate keys are reported the same way (``duplicate field "spec.replicas"``). A value of the wrong JSON
type is a decoding error whatever the directive, worded as Go's decoder words it
(``json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32``).

Which fields exist comes from Kubernetes' own definitions (:mod:`.upstream`) for built-in kinds and from
the structural schema (:mod:`.structural`) for custom resources.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from labkit.emulator.schemas.upstream import INT_OR_STRING, QUANTITY, Definitions, ref_name

Schema = Mapping[str, Any]
STRICT, WARN, IGNORE = "Strict", "Warn", "Ignore"
DIRECTIVES = (IGNORE, WARN, STRICT)
# Types that decode themselves (custom UnmarshalJSON): only their JSON shape is checked.
_SELF_DECODING = {
    INT_OR_STRING: ("string", "integer"),
    QUANTITY: ("string", "integer", "number"),
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time": ("string",),
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime": ("string",),
}


@dataclass(frozen=True)
class FieldReport:
    """What strict decoding found in one object.

    Args:
        unknown: paths of fields the schema does not declare (``spec.selectr``), in document order.
        duplicates: paths of keys given twice (``spec.replicas``).
        type_error: the first value of the wrong JSON type, in Go's words, or ``""``.
    """

    unknown: tuple[str, ...] = ()
    duplicates: tuple[str, ...] = ()
    type_error: str = ""

    @property
    def strict_errors(self) -> list[str]:
        """``unknown field "…"`` and ``duplicate field "…"`` items, as the strict decoder lists them."""
        return [f'duplicate field "{path}"' for path in self.duplicates] + \
            [f'unknown field "{path}"' for path in self.unknown]

    def strict_message(self) -> str:
        """``strict decoding error: unknown field "spec.selectr", …``."""
        return "strict decoding error: " + ", ".join(self.strict_errors)


def directive(value: str | None) -> str:
    """The effective directive of a request's ``fieldValidation`` value (``Warn`` when absent).

    Args:
        value: the query parameter, or None.

    Raises:
        ValueError: a value other than Ignore, Warn or Strict, worded as the API server words it.
    """
    if not value:
        return WARN
    if value not in DIRECTIVES:
        raise ValueError(f'fieldValidation: Unsupported value: "{value}": supported values: "Ignore", "Strict", '
                         f'"Warn"')
    return value


@dataclass
class _Walk:
    definitions: Definitions
    unknown: list[str] = field(default_factory=list)
    type_error: str = ""


def check_builtin(definitions: Definitions, group: str, version: str, kind: str, obj: dict[str, Any],
                  duplicates: list[str] | None = None) -> tuple[dict[str, Any], FieldReport]:
    """Decode a built-in object strictly: find unknown fields and type errors, and drop the unknown fields.

    Args:
        definitions: the upstream definitions.
        group: API group, ``""`` for core.
        version: API version.
        kind: the kind.
        obj: the object as received (not modified).
        duplicates: paths of duplicated keys found while parsing the body.

    Returns:
        The object without unknown fields (as a Go struct would hold it), and the report. A kind without
        an upstream definition is returned unchanged with an empty report.
    """
    found = definitions.kind(group, version, kind)
    if found is None:
        return obj, FieldReport(duplicates=tuple(duplicates or ()))
    return check_definition(definitions, found[0], obj, duplicates)


def check_definition(definitions: Definitions, name: str, obj: dict[str, Any],
                     duplicates: list[str] | None = None) -> tuple[dict[str, Any], FieldReport]:
    """:func:`check_builtin` for a definition named directly (``io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta``).

    Args:
        definitions: the upstream definitions.
        name: the definition's full name.
        obj: the value (not modified).
        duplicates: paths of duplicated keys found while parsing the body.
    """
    schema = definitions.get(name)
    if schema is None:
        return obj, FieldReport(duplicates=tuple(duplicates or ()))
    walk = _Walk(definitions)
    pruned = _value(walk, obj, schema, "", name.rpartition(".")[2], "")
    return pruned, FieldReport(tuple(walk.unknown), tuple(duplicates or ()), walk.type_error)


def _resolve(walk: _Walk, schema: Schema) -> tuple[Schema, str]:
    # Follow allOf[0]/$ref to the definition; return it with its name ("" for an inline schema).
    target = schema
    if "allOf" in target and len(target["allOf"]) == 1:
        target = target["allOf"][0]
    ref = target.get("$ref")
    if ref:
        name = ref_name(ref)
        return walk.definitions.get(name) or {}, name
    return schema, ""


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _fits(value: Any, types: tuple[str, ...]) -> bool:
    kind = _json_kind(value)
    if kind == "number":
        if "number" in types:
            return True
        return "integer" in types and (isinstance(value, int) or float(value).is_integer())
    return {"bool": "boolean"}.get(kind, kind) in types


def _go_type(walk: _Walk, schema: Schema) -> str:
    resolved, name = _resolve(walk, schema)
    if name:
        package, _, short = name.rpartition(".")
        alias = {INT_OR_STRING: "intstr", QUANTITY: "resource"}.get(name, package.rpartition(".")[2])
        if resolved.get("type", "object") == "object" or name in _SELF_DECODING:
            return f"{alias}.{short}"
    kind = resolved.get("type")
    if kind == "integer":
        return {"int32": "int32", "int64": "int64"}.get(resolved.get("format", ""), "int")
    if kind == "number":
        return "float64"
    if kind == "boolean":
        return "bool"
    if kind == "string":
        return "[]uint8" if resolved.get("format") == "byte" else "string"
    if kind == "array":
        return "[]" + _go_type(walk, resolved.get("items") or {})
    if isinstance(resolved.get("additionalProperties"), Mapping):
        return "map[string]" + _go_type(walk, resolved["additionalProperties"])
    return "map[string]interface {}"


def _type_error(walk: _Walk, value: Any, schema: Schema, struct: str, stack: str) -> None:
    if walk.type_error:
        return  # Go's decoder reports the first one
    shown = _json_kind(value)
    if shown == "number" and not float(value).is_integer():
        shown = f"number {value}"
    where = f"Go struct field {struct}.{stack}" if stack else "Go value"
    walk.type_error = f"json: cannot unmarshal {shown} into {where} of type {_go_type(walk, schema)}"


def _value(walk: _Walk, value: Any, schema: Schema, path: str, struct: str, stack: str) -> Any:
    if value is None:
        return None  # null leaves a Go field at its zero value
    resolved, name = _resolve(walk, schema)
    if name in _SELF_DECODING:
        if not _fits(value, _SELF_DECODING[name]):
            _type_error(walk, value, schema, struct, stack)
        return value
    kind = resolved.get("type")
    if kind is None and "properties" in resolved:
        kind = "object"
    if kind in ("string", "integer", "number", "boolean"):
        if not _fits(value, (kind,)):
            _type_error(walk, value, schema, struct, stack)
        return value
    if kind == "array":
        if not isinstance(value, list):
            _type_error(walk, value, schema, struct, stack)
            return value
        items = resolved.get("items") or {}
        return [_value(walk, item, items, f"{path}[{index}]", struct, stack) for index, item in enumerate(value)]
    if kind == "object":
        if not isinstance(value, dict):
            _type_error(walk, value, schema, struct, stack)
            return value
        properties = resolved.get("properties")
        extra = resolved.get("additionalProperties")
        inner = name.rpartition(".")[2] if name else struct
        out: dict[str, Any] = {}
        for key, item in value.items():
            sub_path = f"{path}.{key}" if path else key
            sub_stack = f"{stack}.{key}" if stack else key
            if properties is not None and key in properties:
                out[key] = _value(walk, item, properties[key], sub_path, inner, sub_stack)
            elif isinstance(extra, Mapping):
                out[key] = _value(walk, item, extra, sub_path, inner, sub_stack)
            elif properties is None:
                out[key] = copy.deepcopy(item)  # a free-form object (RawExtension, FieldsV1, JSON)
            else:
                walk.unknown.append(sub_path)
        return out
    return value  # no type: any JSON value
