"""Rendering: a resource type and objects in, a ``Table`` (or a Table watch event) out.

Like the real server, every column is rendered, including the ``-o wide`` ones (``priority`` 1): kubectl
hides those itself. Ages are computed against an explicit ``now`` so tests are deterministic. Built-ins use
the printer of their group (:mod:`.core`, :mod:`.apps`, :mod:`.groups`); built-ins without one (Roles,
CRDs …) get the generic NAME / CREATED AT table; custom resources get their CRD's
``additionalPrinterColumns``, evaluated with :mod:`.jsonpath`, ``date`` columns rendered as ages, and a CRD
without columns gets the single AGE column apiextensions adds.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import Any

from labkit.emulator.api.resources import PrinterColumn, ResourceType
from labkit.emulator.apimachinery.status import StatusError, bad_request

from . import apps, batch, core, groups
from .cells import NAME, CellFunction, Column, Obj, Printer, aware, created_at, human_duration, name_of, parse_time
from .jsonpath import Step, evaluate_json_path, parse_json_path
from .negotiation import TABLE_V1

INCLUDE_NONE, INCLUDE_METADATA, INCLUDE_OBJECT = "None", "Metadata", "Object"

# (group, kind) → (columns, cells). Kinds absent here use the generic table below.
_PRINTERS: dict[tuple[str, str], Printer] = {**core.PRINTERS, **apps.PRINTERS, **batch.PRINTERS, **groups.PRINTERS}


def columns_for(rt: ResourceType) -> list[Column]:
    """The column definitions a real server sends for ``rt``.

    Args:
        rt: the resource type being listed.
    """
    return _printer_for(rt)[0]


def render_row(rt: ResourceType, obj: Obj, now: dt.datetime) -> list[Any]:
    """The cells of one object's row, every column included (wide ones too).

    Args:
        rt: the object's type.
        obj: the object as stored (JSON-shaped).
        now: the moment ages are measured against.
    """
    return _printer_for(rt)[1](obj, aware(now))


def render_table(rt: ResourceType, objects: Obj | Iterable[Obj], *, now: dt.datetime,
                 include_object: str = INCLUDE_METADATA, api_version: str = TABLE_V1,
                 resource_version: str | None = None, continue_token: str | None = None,
                 include_headers: bool = True) -> dict[str, Any]:
    """A ``Table`` for one object (a GET) or several (a LIST).

    Args:
        rt: the type of the objects.
        objects: one object, or an iterable of objects in the order to show them.
        now: the moment ages are measured against.
        include_object: ``None``, ``Metadata`` (the default, PartialObjectMetadata) or ``Object``
            (the whole object), from the ``includeObject`` query parameter.
        api_version: ``meta.k8s.io/v1`` or ``meta.k8s.io/v1beta1`` (see :func:`table_version`).
        resource_version: the list's resourceVersion; for a single object its own is used when omitted.
        continue_token: the list's ``continue`` token, when paginating.
        include_headers: False to leave ``columnDefinitions`` empty (``noHeaders``, later watch events).

    Raises:
        StatusError: 400 when ``include_object`` is not one of the three values.
    """
    if include_object not in (INCLUDE_NONE, INCLUDE_METADATA, INCLUDE_OBJECT):
        raise bad_request(f'unrecognized includeObject value: "{include_object}"')
    now = aware(now)
    single = isinstance(objects, Mapping)
    items: list[Obj] = [objects] if isinstance(objects, Mapping) else list(objects)
    columns, cells_of = _printer_for(rt)
    rows = []
    for obj in items:
        row: dict[str, Any] = {"cells": cells_of(obj, now)}
        conditions = _row_conditions(rt, obj)
        if conditions:
            row["conditions"] = conditions
        if include_object == INCLUDE_OBJECT:
            row["object"] = _with_type_meta(rt, obj)
        elif include_object == INCLUDE_METADATA:
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": api_version,
                             "metadata": dict(obj.get("metadata") or {})}
        rows.append(row)
    metadata: dict[str, Any] = {}
    if resource_version is None and single:
        resource_version = (items[0].get("metadata") or {}).get("resourceVersion")
    if resource_version:
        metadata["resourceVersion"] = str(resource_version)
    if continue_token:
        metadata["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": metadata,
        "columnDefinitions": [column.to_wire() for column in columns] if include_headers else [],
        "rows": rows,
    }


def table_watch_event(event_type: str, obj: Obj, rt: ResourceType, *, now: dt.datetime,
                      include_object: str = INCLUDE_METADATA, api_version: str = TABLE_V1,
                      include_headers: bool = True) -> dict[str, Any]:
    """One watch event in the form ``kubectl get -w`` expects: the object replaced by a one-row Table.

    ``ERROR`` events keep their Status object untouched. ``BOOKMARK`` events become an empty Table that
    carries only the resourceVersion, since a bookmark object has nothing to print.

    Args:
        event_type: ``ADDED``, ``MODIFIED``, ``DELETED``, ``BOOKMARK`` or ``ERROR``.
        obj: the event's object.
        rt: the watched type.
        now: the moment ages are measured against.
        include_object: as for :func:`render_table`.
        api_version: as for :func:`render_table`.
        include_headers: False after the first event, to save repeating the column definitions.
    """
    if event_type == "ERROR":
        return {"type": event_type, "object": dict(obj)}
    if event_type == "BOOKMARK":
        resource_version = (obj.get("metadata") or {}).get("resourceVersion", "")
        return {"type": event_type, "object": render_table(rt, [], now=now, include_object=include_object,
                                                           api_version=api_version,
                                                           resource_version=resource_version,
                                                           include_headers=False)}
    table = render_table(rt, obj, now=now, include_object=include_object, api_version=api_version,
                         include_headers=include_headers)
    return {"type": event_type, "object": table}


def _with_type_meta(rt: ResourceType, obj: Obj) -> dict[str, Any]:
    return {"apiVersion": rt.group_version, "kind": rt.kind, **obj}


def _row_conditions(rt: ResourceType, obj: Obj) -> list[dict[str, str]]:
    # Finished pods are flagged so that clients may hide them; only pods carry row conditions.
    if rt.group or rt.kind != "Pod":
        return []
    phase = (obj.get("status") or {}).get("phase")
    if phase == "Succeeded":
        return [{"type": "Completed", "status": "True", "reason": "Succeeded",
                 "message": "The pod has completed successfully."}]
    if phase == "Failed":
        return [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]
    return []


# The generic table of built-ins without a printer (Roles, CRDs …): the creation time, not an age.
_CREATED_AT_COLUMNS = [NAME, Column("Created At", "date", "When the object was created (RFC 3339).")]


def _created_at_cells(obj: Obj, now: dt.datetime) -> list[Any]:
    return [name_of(obj), created_at(obj)]


# What apiextensions shows for a custom resource whose CRD declares no columns.
_DEFAULT_CRD_COLUMNS = (PrinterColumn("Age", "date", ".metadata.creationTimestamp",
                                      "Time since the object was created (creationTimestamp)."),)


def _printer_for(rt: ResourceType) -> tuple[list[Column], CellFunction]:
    if rt.crd:
        return _custom_printer(rt.printer_columns or _DEFAULT_CRD_COLUMNS)
    return _PRINTERS.get((rt.group, rt.kind), (_CREATED_AT_COLUMNS, _created_at_cells))


def _custom_printer(printer_columns: tuple[PrinterColumn, ...]) -> tuple[list[Column], CellFunction]:
    columns = [NAME] + [
        Column(pc.name, pc.type, pc.description or f"Custom resource definition column (in JSONPath format): "
               f"{pc.json_path}", pc.priority, pc.format)
        for pc in printer_columns
    ]
    paths = [_parse_or_none(pc.json_path) for pc in printer_columns]

    def cells(obj: Obj, now: dt.datetime) -> list[Any]:
        row: list[Any] = [name_of(obj)]
        for pc, path in zip(printer_columns, paths, strict=True):
            found, value = evaluate_json_path(obj, path) if path is not None else (False, None)
            row.append(_custom_cell(pc.type, value, now) if found and value is not None else None)
        return row

    return columns, cells


def _parse_or_none(expression: str) -> tuple[Step, ...] | None:
    # The server accepts any path that starts with a dot; one this subset cannot follow prints empty.
    try:
        return parse_json_path(expression)
    except StatusError:
        return None


def _custom_cell(column_type: str, value: Any, now: dt.datetime) -> Any:
    # The typed conversions of apiextensions' table convertor: a value of the wrong type prints empty.
    if column_type == "string":
        return _text(value)
    if column_type == "integer":
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    if column_type == "number":
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    if column_type == "boolean":
        return value if isinstance(value, bool) else None
    if column_type == "date" and isinstance(value, str):
        if not value:
            return "<unknown>"
        when = parse_time(value)
        return human_duration(now - when) if when else "<invalid>"
    return None


def _text(value: Any) -> str:
    # How a JSONPath result prints: strings bare, numbers and booleans as Go prints them, JSON otherwise.
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))
