"""Kubernetes time: RFC 3339 on the wire, kubectl's short durations on screen.

Every timestamp the API writes (``creationTimestamp``, ``lastTransitionTime``, an Event's ``eventTime``) is
UTC with second precision and a ``Z``; fractions appear only in ``MicroTime`` fields. Readers accept both
and any offset. ``AGE`` columns use kubectl's ``duration.HumanDuration`` — ``45s``, ``3m12s``, ``5h``,
``2d3h`` — so a table printed by labkit reads like one printed by kubectl.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

# What Go's zero time.Time serialises to; kubectl shows objects without a timestamp this way.
ZERO_TIME = "0001-01-01T00:00:00Z"


def format_time(moment: float | dt.datetime) -> str:
    """A moment as the API writes it: ``2024-05-01T10:00:00Z`` (UTC, whole seconds).

    Args:
        moment: seconds since the epoch, or a datetime (naive means UTC).
    """
    if isinstance(moment, dt.datetime):
        return aware(moment).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def format_micro_time(moment: float | dt.datetime) -> str:
    """A ``MicroTime`` (Events' ``eventTime``, Leases): ``2024-05-01T10:00:00.123456Z``.

    Args:
        moment: seconds since the epoch, or a datetime (naive means UTC).
    """
    when = aware(moment) if isinstance(moment, dt.datetime) else dt.datetime.fromtimestamp(moment, dt.UTC)
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now() -> str:
    """The current moment as the API writes it."""
    return format_time(time.time())


def parse_time(value: Any) -> dt.datetime | None:
    """An RFC 3339 timestamp (``2024-05-01T10:00:00Z``, fractions and offsets allowed) as an aware datetime.

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


def timestamp(value: Any) -> float | None:
    """An RFC 3339 timestamp as seconds since the epoch, or None when missing or unparsable.

    Args:
        value: the wire value.
    """
    when = parse_time(value)
    return when.timestamp() if when else None


def aware(moment: dt.datetime) -> dt.datetime:
    """A datetime with a zone: a naive one is taken as UTC, the zone of every Kubernetes timestamp."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def human_duration(delta: dt.timedelta) -> str:
    """A duration as kubectl prints it in ``AGE`` columns (``duration.HumanDuration``).

    Slightly negative durations (clock skew up to a second) read ``0s``; more reads ``<invalid>``.

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


def age(value: Any, now_: dt.datetime | None = None) -> str:
    """What kubectl prints for a timestamp: its age, or ``<unknown>`` when it is missing.

    Args:
        value: the RFC 3339 wire value.
        now_: the moment to measure against (default: now).
    """
    when = parse_time(value)
    if when is None:
        return "<unknown>"
    return human_duration(aware(now_ or dt.datetime.now(dt.UTC)) - when)
