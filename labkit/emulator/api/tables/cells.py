"""What every printer shares: the Column type, common columns, kubectl's time and label formatting.

The helpers read the wire shapes leniently (a missing ``metadata`` or ``status`` reads as empty), because
a Table is printed for whatever the store holds, defaulted or not.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Obj = Mapping[str, Any]


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


def human_duration(delta: dt.timedelta) -> str:
    """kubectl's ``HumanDuration``: ``5s``, ``3m2s``, ``2d3h``, ``1y120d``, about 2–3 significant figures.

    Under 2 minutes seconds; under 10 minutes ``XmYs``; under 3 hours minutes; under 8 hours ``XhYm``;
    under 2 days hours; under 8 days ``XdYh``; under 2 years days; under 8 years ``XyYd``; then years.
    A zero second or minute part is dropped (``5m``, ``2h``). Clock skew of up to a second in the future
    reads ``0s``; more reads ``<invalid>``.

    Args:
        delta: the elapsed time.
    """
    # Go truncates toward zero when converting the duration to whole seconds.
    seconds = int(delta.total_seconds())
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24 % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def parse_time(value: Any) -> dt.datetime | None:
    """An RFC 3339 timestamp (``2024-05-01T10:00:00Z``, fractions allowed) as an aware datetime.

    Args:
        value: the wire value; None, empty or unparsable values give None.
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return aware(parsed)


def age(timestamp: Any, now: dt.datetime) -> str:
    """What kubectl prints for a timestamp: its age, or ``<unknown>`` when it is missing.

    Args:
        timestamp: the RFC 3339 wire value.
        now: the moment to measure against.
    """
    when = parse_time(timestamp)
    return human_duration(aware(now) - when) if when else "<unknown>"


def aware(moment: dt.datetime) -> dt.datetime:
    # A naive datetime is taken as UTC, the zone of every Kubernetes timestamp.
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def created_at(obj: Obj) -> str:
    when = parse_time(metadata_of(obj).get("creationTimestamp"))
    if when is None:
        return "0001-01-01T00:00:00Z"
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def metadata_of(obj: Obj) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def spec_of(obj: Obj) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def status_of(obj: Obj) -> Mapping[str, Any]:
    return obj.get("status") or {}


def name_of(obj: Obj) -> str:
    return str(metadata_of(obj).get("name", ""))


def age_of(obj: Obj, now: dt.datetime) -> str:
    return age(metadata_of(obj).get("creationTimestamp"), now)


def as_int(value: Any, default: int = 0) -> int:
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


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """A LabelSelector in Kubernetes' string form: ``app=web,tier in (a,b),!legacy``; empty matches all.

    Requirements are sorted by key, ``In``/``NotIn`` values sorted, as ``labels.Selector.String`` does.

    Args:
        selector: ``{matchLabels, matchExpressions}``.
    """
    if not selector:
        return ""
    requirements: list[tuple[str, str]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        requirements.append((key, f"{key}={value}"))
    for expression in selector.get("matchExpressions") or ():
        key = str(expression.get("key", ""))
        operator = expression.get("operator")
        values = ",".join(sorted(str(v) for v in expression.get("values") or ()))
        if operator == "In":
            requirements.append((key, f"{key} in ({values})"))
        elif operator == "NotIn":
            requirements.append((key, f"{key} notin ({values})"))
        elif operator == "Exists":
            requirements.append((key, key))
        elif operator == "DoesNotExist":
            requirements.append((key, f"!{key}"))
    requirements.sort(key=lambda requirement: requirement[0])
    return ",".join(text for _, text in requirements)


def format_label_selector(selector: Mapping[str, Any] | None) -> str:
    """:func:`selector_string`, but ``<none>`` for an empty selector (the ReplicaSet/DaemonSet SELECTOR).

    Args:
        selector: ``{matchLabels, matchExpressions}``.
    """
    return selector_string(selector) or "<none>"


def container_cells(template_spec: Mapping[str, Any]) -> list[str]:
    containers = template_spec.get("containers") or ()
    return [",".join(str(c.get("name", "")) for c in containers),
            ",".join(str(c.get("image", "")) for c in containers)]


def template_spec(obj: Obj) -> Mapping[str, Any]:
    return (spec_of(obj).get("template") or {}).get("spec") or {}


def join_host_port(host: str, port: Any) -> str:
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def with_more(shown: list[str], total: int, limit: int, empty: str) -> str:
    text = ",".join(shown)
    if total > limit:
        return f"{text} + {total - limit} more..."
    return text or empty
