"""Custom resources checked against their CRD's structural schema, as the apiextensions server checks them.

Three passes, in a real server's order:

1. **Pruning** at decode time: fields the schema does not declare are dropped, except under
   ``x-kubernetes-preserve-unknown-fields: true`` (the whole subtree is then kept) — so a misspelt field
   never reaches storage. Under ``fieldValidation=Strict`` a pruned field fails the request instead
   (see :mod:`.fields`).
2. **Defaulting**, also at decode time: absent fields get the schema's ``default``.
3. **Validation** after mutating admission: types, ``required``, ``enum``, bounds, lengths and patterns,
   each failure a field error worded as the server words it
   (``spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"``).

``metadata`` of the object itself is ObjectMeta whatever the schema says, ``apiVersion``/``kind`` are
always allowed, and ``x-kubernetes-embedded-resource`` objects get the same three. ``x-kubernetes-int-or-string``
accepts both, ``nullable`` accepts null. Schema keywords the labs never use (``oneOf``, ``anyOf``, ``not``,
CEL rules) are accepted without checking rather than half-checked.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

Schema = Mapping[str, Any]
Cause = tuple[str, str]
_EMBEDDED = ("apiVersion", "kind", "metadata")


def prune(obj: dict[str, Any], schema: Schema | None) -> tuple[dict[str, Any], list[str]]:
    """Drop the fields of a custom resource that its schema does not declare.

    Args:
        obj: the object as received (not modified).
        schema: the version's ``openAPIV3Schema``; None keeps everything (no schema given).

    Returns:
        The pruned copy and the paths of the dropped fields (``spec.hostz``), in document order.
    """
    if schema is None:
        return obj, []
    dropped: list[str] = []
    out: dict[str, Any] = {}
    properties = schema.get("properties") or {}
    for key, value in obj.items():
        if key in _EMBEDDED and key not in properties:
            out[key] = value  # metadata is ObjectMeta, apiVersion/kind always pass
        elif key in properties:
            out[key] = _prune(value, properties[key], key, dropped)
        elif schema.get("x-kubernetes-preserve-unknown-fields"):
            out[key] = value
        else:
            dropped.append(key)
    return out, dropped


def _prune(value: Any, schema: Schema, path: str, dropped: list[str]) -> Any:
    if isinstance(value, list):
        items = schema.get("items")
        if not isinstance(items, Mapping):
            return value
        return [_prune(item, items, f"{path}[{index}]", dropped) for index, item in enumerate(value)]
    if not isinstance(value, dict):
        return value
    properties = schema.get("properties")
    extra = schema.get("additionalProperties")
    preserve = schema.get("x-kubernetes-preserve-unknown-fields")
    embedded = schema.get("x-kubernetes-embedded-resource")
    if properties is None and not isinstance(extra, Mapping) and (preserve or extra is True):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        sub = f"{path}.{key}"
        if properties is not None and key in properties:
            out[key] = _prune(item, properties[key], sub, dropped)
        elif isinstance(extra, Mapping):
            out[key] = _prune(item, extra, sub, dropped)
        elif preserve or extra is True or (embedded and key in _EMBEDDED):
            out[key] = item
        else:
            dropped.append(sub)
    return out


def apply_defaults(obj: dict[str, Any], schema: Schema | None) -> dict[str, Any]:
    """Fill the ``default`` values a structural schema declares for absent fields, as the server does on decode.

    Defaults apply inside objects that are present (a default on ``spec.replicas`` needs a ``spec``), to
    every item of a list and every value of a map, and never overwrite a value that was given.

    Args:
        obj: the (pruned) object; not modified.
        schema: the version's ``openAPIV3Schema``; None adds nothing.
    """
    if schema is None:
        return obj
    return _defaulted(obj, schema)


def _defaulted(value: Any, schema: Schema) -> Any:
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [_defaulted(item, schema["items"]) for item in value]
    if not isinstance(value, dict):
        return value
    properties = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    out = {}
    for key, item in value.items():
        if key in properties:
            out[key] = _defaulted(item, properties[key])
        elif isinstance(extra, Mapping):
            out[key] = _defaulted(item, extra)
        else:
            out[key] = item
    for key, sub in properties.items():
        if key not in out and "default" in sub:
            out[key] = _defaulted(copy.deepcopy(sub["default"]), sub)
    return out


def validate(obj: Mapping[str, Any], schema: Schema | None) -> list[Cause]:
    """The field errors of a custom resource against its version's schema (empty when it is valid).

    Args:
        obj: the object (already pruned).
        schema: the version's ``openAPIV3Schema``; None accepts anything.
    """
    if schema is None:
        return []
    causes: list[Cause] = []
    properties = schema.get("properties") or {}
    for key in schema.get("required") or ():
        if key not in obj and key not in _EMBEDDED:
            causes.append((key, "Required value"))
    for key, value in obj.items():
        if key in properties and key not in ("metadata",):
            _check(value, properties[key], key, causes)
    return causes


_TYPE_NAMES = {bool: "boolean", str: "string", list: "array", dict: "object"}


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return _TYPE_NAMES.get(type(value), "null" if value is None else type(value).__name__)


def _fits(value: Any, kind: str) -> bool:
    actual = _type_name(value)
    if kind == "number":
        return actual in ("integer", "number")
    if kind == "integer":
        return actual == "integer" or (actual == "number" and float(value).is_integer())
    return actual == kind


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def _check(value: Any, schema: Schema, path: str, causes: list[Cause]) -> None:
    if value is None:
        if not schema.get("nullable") and schema.get("type"):
            causes.append((path, f'Invalid value: "null": {path} in body must be of type {schema["type"]}: "null"'))
        return
    kind = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if not (_fits(value, "integer") or isinstance(value, str)):
            causes.append((path, f'Invalid value: "{_type_name(value)}": {path} in body must be of type '
                                 f'integer-or-string: "{_type_name(value)}"'))
            return
    elif kind and not _fits(value, kind):
        actual = _type_name(value)
        causes.append((path, f'Invalid value: "{actual}": {path} in body must be of type {kind}: "{actual}"'))
        return
    enum = schema.get("enum")
    if enum is not None and value not in enum:
        supported = ", ".join(_shown(item) for item in enum)
        causes.append((path, f"Unsupported value: {_shown(value)}: supported values: {supported}"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        _bounds(value, schema, path, causes)
    if isinstance(value, str):
        _string(value, schema, path, causes)
    if isinstance(value, list):
        _array(value, schema, path, causes)
    if isinstance(value, dict):
        _object(value, schema, path, causes)


def _bounds(value: float, schema: Schema, path: str, causes: list[Cause]) -> None:
    maximum, minimum = schema.get("maximum"), schema.get("minimum")
    if maximum is not None:
        if schema.get("exclusiveMaximum") and value >= maximum:
            causes.append((path, f"Invalid value: {_shown(value)}: {path} in body should be less than {maximum}"))
        elif value > maximum:
            causes.append((path, f"Invalid value: {_shown(value)}: {path} in body should be less than or equal "
                                 f"to {maximum}"))
    if minimum is not None:
        if schema.get("exclusiveMinimum") and value <= minimum:
            causes.append((path, f"Invalid value: {_shown(value)}: {path} in body should be greater than {minimum}"))
        elif value < minimum:
            causes.append((path, f"Invalid value: {_shown(value)}: {path} in body should be greater than or "
                                 f"equal to {minimum}"))


def _string(value: str, schema: Schema, path: str, causes: list[Cause]) -> None:
    if schema.get("maxLength") is not None and len(value) > schema["maxLength"]:
        causes.append((path, f"Too long: may not be more than {schema['maxLength']} bytes"))
    if schema.get("minLength") is not None and len(value) < schema["minLength"]:
        causes.append((path, f"Invalid value: {_shown(value)}: {path} in body should be at least "
                             f"{schema['minLength']} chars long"))
    pattern = schema.get("pattern")
    if pattern and not re.search(pattern, value):
        causes.append((path, f"Invalid value: {_shown(value)}: {path} in body should match '{pattern}'"))


def _array(value: list[Any], schema: Schema, path: str, causes: list[Cause]) -> None:
    if schema.get("maxItems") is not None and len(value) > schema["maxItems"]:
        causes.append((path, f"Too many: {len(value)}: must have at most {schema['maxItems']} items"))
    if schema.get("minItems") is not None and len(value) < schema["minItems"]:
        causes.append((path, f"Invalid value: {len(value)}: {path} in body should have at least "
                             f"{schema['minItems']} items"))
    items = schema.get("items")
    if isinstance(items, Mapping):
        for index, item in enumerate(value):
            _check(item, items, f"{path}[{index}]", causes)


def _object(value: dict[str, Any], schema: Schema, path: str, causes: list[Cause]) -> None:
    properties = schema.get("properties") or {}
    for key in schema.get("required") or ():
        if key not in value:
            causes.append((f"{path}.{key}", "Required value"))
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        if key in properties:
            _check(item, properties[key], f"{path}.{key}", causes)
        elif isinstance(extra, Mapping):
            _check(item, extra, f"{path}.{key}", causes)
