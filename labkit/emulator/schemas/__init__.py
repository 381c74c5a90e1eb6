"""Schemas of the API: what fields exist, what values they take, and how a request is checked against them.

* :mod:`.upstream`: Kubernetes' own definitions of the built-in kinds (from ``kubernetes-validate``),
  loaded lazily per API package — the source of the OpenAPI documents and of field validation;
* :mod:`.decoding`: JSON and YAML bodies decoded with their duplicate keys noticed;
* :mod:`.fields`: ``fieldValidation`` (Strict, Warn, Ignore) for built-in kinds;
* :mod:`.structural`: pruning and validation of custom resources against their CRD's schema.

:func:`check_body` is the one call the API server makes per written body; it returns the object as it
will be stored (unknown fields dropped) and the warnings for the response, or raises the
:class:`~labkit.errors.StatusError` a real server sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labkit.core.wire import Obj
from labkit.emulator.apimachinery import status
from labkit.emulator.schemas import decoding, fields, structural
from labkit.emulator.schemas.fields import IGNORE, STRICT, WARN, FieldReport, directive
from labkit.emulator.schemas.structural import apply_defaults
from labkit.emulator.schemas.upstream import Definitions, definitions

__all__ = ["IGNORE", "STRICT", "WARN", "Definitions", "FieldReport", "apply_defaults", "check_body", "check_custom",
           "decoding", "definitions", "directive", "go_repr", "served_as"]

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def check_body(defs: Definitions, *, group: str, version: str, kind: str, crd_schema: Mapping[str, Any] | None,
               custom: bool, obj: Obj, duplicates: list[str], how: str, operation: str,
               patch: Any = None) -> tuple[Obj, list[str]]:
    """Strictly decode one written object: drop unknown fields, or refuse them as ``how`` says.

    Args:
        defs: the upstream definitions.
        group: API group of the target.
        version: API version of the target.
        kind: the target's kind.
        crd_schema: the CRD version's ``openAPIV3Schema`` (custom resources only).
        custom: whether the kind is a custom resource.
        obj: the object as decoded (or as patched).
        duplicates: paths of duplicated keys in the body (for ``apply``: go-yaml's line messages).
        how: the request's directive, ``Strict``, ``Warn`` or ``Ignore``.
        operation: ``create``/``update`` (a body), ``patch`` (a patched object) or ``apply``.
        patch: the patch document, quoted in a patch's error as the real server quotes it.

    Returns:
        The object to store and the ``Warning`` texts for the response.

    Raises:
        StatusError: 400 for a value of the wrong type, or for unknown/duplicate fields under Strict
            (422 ``patch: Invalid value`` for a patch); 400 ``field not declared in schema`` for server-side
            apply, whatever the directive, as server-side apply cannot hold an undeclared field.
    """
    if custom:
        pruned, unknown = structural.prune(obj, crd_schema)
        metadata_report = FieldReport()
        if isinstance(obj.get("metadata"), dict):
            meta, metadata_report = _check_metadata(defs, obj["metadata"])
            pruned = {**pruned, "metadata": meta}
        report = FieldReport(tuple(unknown) + metadata_report.unknown,
                             tuple(duplicates) if operation != "apply" else (), metadata_report.type_error)
    else:
        pruned, report = fields.check_builtin(defs, group, version, kind, obj,
                                              duplicates if operation != "apply" else [])
    handled = f'{kind} in version "{version}" cannot be handled as a {kind}'
    if report.type_error:
        raise status.bad_request(f"{handled}: {report.type_error}")
    if operation == "apply":
        return pruned, _apply_findings(obj, group, version, kind, report, duplicates, how)
    if not report.strict_errors or how == IGNORE:
        return pruned, []
    if how == WARN:
        return pruned, report.strict_errors
    if operation == "patch":
        raise status.invalid("", "", [("patch", f'Invalid value: "{go_repr(patch)}": {report.strict_message()}')])
    raise status.bad_request(f"{handled}: {report.strict_message()}")


def _check_metadata(defs: Definitions, metadata: Obj) -> tuple[Obj, FieldReport]:
    # A custom resource's metadata is ObjectMeta whatever its schema says.
    checked, report = fields.check_definition(defs, OBJECT_META, metadata)
    unknown = tuple(f"metadata.{path}" for path in report.unknown)
    return checked, FieldReport(unknown, (), report.type_error.replace("ObjectMeta.", "ObjectMeta.metadata.", 1))


def _apply_findings(obj: Obj, group: str, version: str, kind: str, report: FieldReport, duplicate_lines: list[str],
                    how: str) -> list[str]:
    if report.unknown:
        meta = obj.get("metadata") or {}
        gvk = f"{group}/{version}, Kind={kind}"
        where = f"{meta.get('namespace', '')}/{meta.get('name', '')}; {gvk}"
        declared = ", ".join(f".{path}: field not declared in schema" for path in report.unknown)
        raise status.bad_request(f"failed to create typed patch object ({where}): {declared}")
    if duplicate_lines and how != IGNORE:
        message = "error converting YAML to JSON: yaml: unmarshal errors:\n  " + "\n  ".join(duplicate_lines)
        if how == STRICT:
            raise status.bad_request(f"error strict decoding YAML: {message}")
        return [message]
    return []


def check_custom(kind: str, name: str, group: str, crd_schema: Mapping[str, Any] | None, obj: Obj) -> None:
    """Validate a custom resource against its version's structural schema (the validation stage).

    Args:
        kind: the kind.
        name: the object's name.
        group: the CRD's group.
        crd_schema: the version's ``openAPIV3Schema``; None accepts anything.
        obj: the object after mutating admission.

    Raises:
        StatusError: 422 ``Invalid`` naming every failing field.
    """
    causes = structural.validate(obj, crd_schema)
    if causes:
        raise status.invalid(kind, name, causes, group)


def served_as(group_version: str, obj: Obj) -> Obj:
    """A custom resource as served at another version of its CRD: the ``None`` conversion strategy.

    Only ``apiVersion`` changes, as with a CRD whose ``conversion.strategy`` is ``None``.

    Args:
        group_version: the version the request asked for (``example.com/v1beta1``).
        obj: the stored object.
    """
    if obj.get("apiVersion") in (None, group_version):
        return obj
    return {**obj, "apiVersion": group_version}


def go_repr(value: Any) -> str:
    """A decoded JSON value printed as Go's ``%+v`` prints it (``map[spec:map[selectr:map[app:x]]]``).

    Args:
        value: a JSON value.
    """
    if isinstance(value, dict):
        return "map[" + " ".join(f"{key}:{go_repr(value[key])}" for key in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_repr(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<nil>"
    return str(value)
