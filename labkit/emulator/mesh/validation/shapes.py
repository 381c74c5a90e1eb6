"""The shape of Istio's API messages, and the check that a spec has it: what decoding does before any rule runs.

A real cluster refuses ``weight: fifty``, ``rout:`` and ``mode: ISTIO_MUTUALL`` twice over: the CRD's
structural schema (types, enums, unknown fields) and istiod, whose protobuf decoding fails on the same
input. The embedded clusters install the CRDs with open schemas, so this check is where such typos are
caught — early, with the path of the field (``spec.http[0].route[0].weight``) and the fix, instead of
reaching istiod's push as data that cannot be translated.

Shapes are declared per message, as the ``istio.io/api`` protos declare them (JSON names, the types
protobuf's JSON mapping accepts); only the messages the kinds in :mod:`labkit.emulator.mesh.validation`
use are listed. ``null`` is treated as absent, as the API server prunes it for non-nullable fields.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config object.

    Args:
        path: the field, from the object's root (``spec.http[0].timeout``).
        message: what is wrong, in Istio's (or the API server's) words.
        fix: what to write instead, when there is more to say than the message does.
    """

    path: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        return f"{text}; {self.fix}" if self.fix else text


@dataclass(frozen=True)
class Scalar:
    """A protobuf scalar: ``string``, ``bool``, ``double``, ``int32``, ``uint32``, ``int64`` or ``uint64``."""

    kind: str


@dataclass(frozen=True)
class Duration:
    """``google.protobuf.Duration``: a string Go's ``time.ParseDuration`` accepts (``5s``, ``100ms``, ``1m30s``)."""


@dataclass(frozen=True)
class Enum:
    """A protobuf enum: one of ``values``, spelt exactly (protobuf JSON is case-sensitive)."""

    name: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class ListOf:
    item: Shape


@dataclass(frozen=True)
class MapOf:
    """A protobuf map; JSON keys are strings, ``key="uint32"`` requires them to be port numbers."""

    value: Shape
    key: str = "string"


@dataclass(frozen=True)
class Message:
    """A protobuf message: its fields by JSON name; ``oneofs`` lists groups of which at most one may be set."""

    name: str
    fields: Mapping[str, Shape] = field(default_factory=dict)
    oneofs: tuple[tuple[str, ...], ...] = ()


Shape = Scalar | Duration | Enum | ListOf | MapOf | Message

STRING = Scalar("string")
BOOL = Scalar("bool")
DOUBLE = Scalar("double")
INT32 = Scalar("int32")
UINT32 = Scalar("uint32")
UINT64 = Scalar("uint64")
DURATION = Duration()
STRINGS = ListOf(STRING)
LABELS = MapOf(STRING)

_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1), "int64": (-(2**63), 2**63 - 1),
               "uint64": (0, 2**64 - 1)}
_JSON_TYPES = {"string": "string", "bool": "boolean", "double": "number"}


def check(value: Any, shape: Shape, path: str) -> list[Problem]:
    """Every way ``value`` does not have ``shape``, each naming its field.

    Args:
        value: the decoded JSON (or YAML) value.
        shape: what the API declares there.
        path: where ``value`` sits, for messages (``spec``).
    """
    if value is None:
        return []
    if isinstance(shape, Message):
        return _check_message(value, shape, path)
    if isinstance(shape, ListOf):
        if not isinstance(value, list):
            return [_wrong_type(path, value, "array", "write a YAML list (one '- ' item per line)")]
        return [p for index, item in enumerate(value) for p in check(item, shape.item, f"{path}[{index}]")]
    if isinstance(shape, MapOf):
        if not isinstance(value, dict):
            return [_wrong_type(path, value, "object", "write a map of key: value lines")]
        problems = []
        for key, item in value.items():
            if shape.key == "uint32" and not str(key).isdigit():
                problems.append(Problem(f"{path}[{key}]", f"Invalid value: {key!r}: keys must be port numbers"))
            problems += check(item, shape.value, f"{path}[{key}]")
        return problems
    if isinstance(shape, Enum):
        return _check_enum(value, shape, path)
    if isinstance(shape, Duration):
        if not isinstance(value, str):
            return [_wrong_type(path, value, "string", "write a duration such as 5s, 250ms or 1m30s")]
        error = go_duration_error(value)
        return [Problem(path, f"bad Duration: {error}", "write a duration such as 5s, 250ms or 1m30s")] if error \
            else []
    return _check_scalar(value, shape, path)


def _check_message(value: Any, shape: Message, path: str) -> list[Problem]:
    if not isinstance(value, dict):
        return [_wrong_type(path, value, "object", f"{path.rsplit('.', 1)[-1]} holds fields, not a value")]
    problems = []
    for key, item in value.items():
        child = f"{path}.{key}" if path else str(key)
        if key not in shape.fields:
            close = difflib.get_close_matches(str(key), list(shape.fields), n=1, cutoff=0.6)
            hint = f'did you mean "{close[0]}"?' if close else \
                f"{shape.name} has the fields {', '.join(sorted(shape.fields))}"
            problems.append(Problem("", f'unknown field "{child}"', hint))
            continue
        problems += check(item, shape.fields[key], child)
    for group in shape.oneofs:
        present = [name for name in group if value.get(name) is not None]
        if len(present) > 1:
            problems.append(Problem(path, f"only one of {', '.join(group)} may be set, found {', '.join(present)}"))
    return problems


def _check_enum(value: Any, shape: Enum, path: str) -> list[Problem]:
    if isinstance(value, str) and value in shape.values:
        return []
    supported = ", ".join(f'"{v}"' for v in shape.values)
    close = difflib.get_close_matches(str(value).upper(), list(shape.values), n=1, cutoff=0.6)
    fix = f'did you mean "{close[0]}"?' if close else ""
    return [Problem(path, f"Unsupported value: {_go_quote(value)}: supported values: {supported}", fix)]


def _check_scalar(value: Any, shape: Scalar, path: str) -> list[Problem]:
    kind = shape.kind
    if kind in _INT_RANGES:
        integral = (isinstance(value, int) and not isinstance(value, bool)) or \
            (isinstance(value, float) and math.isfinite(value) and value.is_integer())
        if not integral:
            return [_wrong_type(path, value, "integer", "write a whole number without quotes")]
        low, high = _INT_RANGES[kind]
        if not low <= int(value) <= high:
            return [Problem(path, f"Invalid value: {int(value)}: out of range for {kind} ({low}..{high})")]
        return []
    if kind == "double":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [_wrong_type(path, value, "number", "write a number without quotes")]
    if kind == "bool":
        return [] if isinstance(value, bool) else [_wrong_type(path, value, "boolean", "write true or false")]
    return [] if isinstance(value, str) else [_wrong_type(path, value, "string", "put the value in quotes")]


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _wrong_type(path: str, value: Any, expected: str, fix: str) -> Problem:
    # The API server's words for a structural-schema type error, with the value the user wrote.
    shown = _go_quote(value) if isinstance(value, str) else _json_type(value)
    return Problem(path, f"Invalid value: {shown}: must be of type {expected}", fix)


def _go_quote(value: Any) -> str:
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- Go's time.ParseDuration, for protobuf Duration strings ------------------------------------------------------

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "h": 3_600_000_000_000}
_NUMBER = re.compile(r"(\d*)(?:\.(\d*))?")


def go_duration_error(text: str) -> str | None:
    """Why Go's ``time.ParseDuration`` refuses ``text`` (its words), or ``None`` when it parses."""
    parsed = parse_go_duration(text)
    return parsed if isinstance(parsed, str) else None


def parse_go_duration(text: str) -> int | str:
    """Nanoseconds, or Go's error message (``time: unknown unit " seconds" in duration "5 seconds"``)."""
    quoted = _go_quote(text)
    rest = text
    if rest[:1] in ("-", "+"):
        sign, rest = (-1 if rest[0] == "-" else 1), rest[1:]
    else:
        sign = 1
    if rest == "0":
        return 0
    if not rest:
        return f"time: invalid duration {quoted}"
    total = 0
    while rest:
        match = _NUMBER.match(rest)
        assert match is not None
        whole, fraction = match.group(1), match.group(2)
        if not whole and not fraction:
            return f"time: invalid duration {quoted}"
        rest = rest[match.end():]
        unit_end = 0
        while unit_end < len(rest) and rest[unit_end] != "." and not rest[unit_end].isdigit():
            unit_end += 1
        unit = rest[:unit_end]
        if not unit:
            return f"time: missing unit in duration {quoted}"
        if unit not in _UNITS:
            return f"time: unknown unit {_go_quote(unit)} in duration {quoted}"
        rest = rest[unit_end:]
        scale = _UNITS[unit]
        total += int(whole or 0) * scale
        if fraction:
            total += int(int(fraction) * scale / 10 ** len(fraction))
    return sign * total
