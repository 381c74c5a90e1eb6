"""What every printer shares: the Column type, common columns, label formatting and small readers.

Ages and timestamps are the shared core's (:mod:`labkit.core.kubetime`), selectors' string form too
(:func:`labkit.core.selectors.selector_string`): the client side prints them with the same code.

The helpers read the wire shapes leniently (a missing ``metadata`` or ``status`` reads as empty), because
a Table is printed for whatever the store holds, defaulted or not.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from labkit.core.kubetime import ZERO_TIME, age, aware, format_time, human_duration, parse_time
from labkit.core.selectors import selector_string
from labkit.core.wire import Obj

__all__ = [
    "AGE", "CONTAINERS", "IMAGES", "NAME", "CellFunction", "Column", "Obj", "Printer", "age", "age_of", "as_int",
    "aware", "container_cells", "created_at", "format_label_selector", "format_labels", "human_duration",
    "join_host_port", "metadata_of", "name_of", "parse_time", "selector_string", "spec_of", "status_of",
    "template_spec", "with_more",
]



@dataclass(frozen=True, slots=True)
class Column:
    """One ``columnDefinitions`` entry of a Table.

    Args:
        name: the header as the server sends it (``Nominated Node``); kubectl upper-cases it.
        type: ``string``, ``integer``, ``number``, ``boolean`` or ``date``.
        description: what the column means.
        priority: 0 for the default view, 1 for ``-o wide`` only.
        format: ``name`` for the column that identifies the object, else empty.
    """

    name: str
    type: str = "string"
    description: str = ""
    priority: int = 0
    format: str = ""

    def to_wire(self) -> dict[str, Any]:
        """The JSON form; every key is always present, as Go's encoder writes them."""
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": self.description, "priority": self.priority}


# Cells of one row, computed from the object and the moment "now".
CellFunction = Callable[[Obj, dt.datetime], list[Any]]
# A printer: the column definitions and the function computing one row's cells.
Printer = tuple[list[Column], CellFunction]

NAME = Column("Name", format="name", description="Name of the object, unique within its namespace.")
AGE = Column("Age", description="Time since the object was created (creationTimestamp).")
CONTAINERS = Column("Containers", priority=1, description="Names of each container in the template.")
IMAGES = Column("Images", priority=1, description="Images referenced by each container in the template.")


def created_at(obj: Obj) -> str:
    """CREATED AT of the generic table: the creation time in RFC 3339, Go's zero time when there is none."""
    when = parse_time(metadata_of(obj).get("creationTimestamp"))
    return format_time(when) if when is not None else ZERO_TIME


def metadata_of(obj: Obj) -> Mapping[str, Any]:
    """``metadata``, empty when missing."""
    return obj.get("metadata") or {}


def spec_of(obj: Obj) -> Mapping[str, Any]:
    """``spec``, empty when missing."""
    return obj.get("spec") or {}


def status_of(obj: Obj) -> Mapping[str, Any]:
    """``status``, empty when missing (objects the controllers have not reached yet)."""
    return obj.get("status") or {}


def name_of(obj: Obj) -> str:
    """The NAME cell."""
    return str(metadata_of(obj).get("name", ""))


def age_of(obj: Obj, now: dt.datetime) -> str:
    """The AGE cell: the object's age at ``now``, as kubectl prints it."""
    return age(metadata_of(obj).get("creationTimestamp"), now)


def as_int(value: Any, default: int = 0) -> int:
    """A count from the object, ``default`` when it is missing or not a number (booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return int(value)


def format_labels(labels: Mapping[str, Any] | None) -> str:
    """``k=v,k2=v2`` sorted by key, or ``<none>``, as kubectl prints a label map.

    Args:
        labels: a label map (a Service selector, a node selector).
    """
    if not labels:
        return "<none>"
    return ",".join(f"{key}={labels[key]}" for key in sorted(labels))


def format_label_selector(selector: Mapping[str, Any] | None) -> str:
    """:func:`selector_string`, but ``<none>`` for an empty selector (the ReplicaSet/DaemonSet SELECTOR).

    Args:
        selector: ``{matchLabels, matchExpressions}``.
    """
    return selector_string(selector) or "<none>"


def container_cells(template_spec: Mapping[str, Any]) -> list[str]:
    """The CONTAINERS and IMAGES cells of a pod template's spec (``-o wide``)."""
    containers = template_spec.get("containers") or ()
    return [",".join(str(c.get("name", "")) for c in containers),
            ",".join(str(c.get("image", "")) for c in containers)]


def template_spec(obj: Obj) -> Mapping[str, Any]:
    """The pod template's spec of a workload, empty when missing."""
    return (spec_of(obj).get("template") or {}).get("spec") or {}


def join_host_port(host: str, port: Any) -> str:
    """``host:port``, with brackets around an IPv6 host (Go's ``net.JoinHostPort``)."""
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def with_more(shown: list[str], total: int, limit: int, empty: str) -> str:
    """Comma-joined cells cut after ``limit`` with `` + N more...``, or ``empty`` when there are none."""
    text = ",".join(shown)
    if total > limit:
        return f"{text} + {total - limit} more..."
    return text or empty
