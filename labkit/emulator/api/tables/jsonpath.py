"""The JSONPath subset of CRD printer columns (``additionalPrinterColumns``).

CRDs use a handful of step kinds in practice (``.field``, ``[index]``, ``['dotted.key']``, ``[*]`` and equality
filters such as ``[?(@.type=="Ready")]``); kubectl's full JSONPath templates (ranges, ``{.a}{.b}``) are never
evaluated by a server, so this module follows only what a column needs: the first match, or nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from labkit.emulator.apimachinery.status import bad_request


@dataclass(frozen=True, slots=True)
class Wildcard:
    """The ``[*]`` step: every item of a list (or every value of a map)."""


@dataclass(frozen=True, slots=True)
class Filter:
    """The ``[?(@.type=="Ready")]`` step: the list items whose ``path`` equals ``value``.

    Args:
        path: the steps inside the item (``("type",)``).
        value: the literal compared with, as JSON would decode it (a string, number or boolean).
    """

    path: tuple[str | int, ...]
    value: Any


Step = str | int | Wildcard | Filter

_PATH_STEP = re.compile(r"""\.([^.\[\]'"]+)|\[(-?\d+)\]|\['([^']*)'\]|\["([^"]*)"\]|\[(\*)\]"""
                        r"""|\[\?\(@((?:\.[^.\[\]'"=!<>()\s]+)+)\s*==\s*('[^']*'|"[^"]*"|[^)\s]+)\s*\)\]""")


def parse_json_path(expression: str) -> tuple[Step, ...]:
    """The steps of a printer column's JSONPath.

    The subset CRDs use in practice: ``.field``, ``[index]`` (negative counts from the end),
    ``['key']`` for keys with dots, ``[*]``, and equality filters such as
    ``.status.conditions[?(@.type=="Ready")].status``, optionally wrapped in ``{}``.

    Args:
        expression: the JSONPath.

    Raises:
        StatusError: 400 when the expression is outside the supported subset.
    """
    text = expression.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    steps: list[Step] = []
    position = 0
    while position < len(text):
        match = _PATH_STEP.match(text, position)
        if not match:
            raise bad_request(f'unsupported JSONPath "{expression}": only .field, [index], [\'key\'], [*] '
                              f'and [?(@.field==value)] steps')
        field, index, single, double, star, filter_path, literal = match.groups()
        if index is not None:
            steps.append(int(index))
        elif star is not None:
            steps.append(Wildcard())
        elif filter_path is not None:
            steps.append(Filter(tuple(filter_path[1:].split(".")), _literal(literal)))
        else:
            steps.append(next(part for part in (field, single, double) if part is not None))
        position = match.end()
    if not steps:
        raise bad_request(f'unsupported JSONPath "{expression}": it selects nothing')
    return tuple(steps)


def _literal(text: str) -> Any:
    if text[:1] in ("'", '"'):
        return text[1:-1]
    try:
        return json.loads(text)
    except ValueError:
        return text


def evaluate_json_path(obj: Any, steps: tuple[Step, ...]) -> tuple[bool, Any]:
    """Follow parsed JSONPath steps into ``obj`` and take the first result, as a printer column does.

    Args:
        obj: the object.
        steps: from :func:`parse_json_path`.

    Returns:
        ``(True, value)`` for the first match, ``(False, None)`` when nothing matches (a missing key is
        not an error: the cell is simply empty).
    """
    for value in _matches(obj, steps):
        return True, value
    return False, None


def _matches(current: Any, steps: tuple[Step, ...]) -> Iterator[Any]:
    if not steps:
        yield current
        return
    step, rest = steps[0], steps[1:]
    if isinstance(step, Wildcard):
        items = current.values() if isinstance(current, Mapping) else current if isinstance(current, list) else ()
        for item in items:
            yield from _matches(item, rest)
    elif isinstance(step, Filter):
        for item in current if isinstance(current, list) else ():
            found, value = evaluate_json_path(item, step.path)
            # JSON equality: 80 matches 80.0, but true does not match 1.
            if found and value == step.value and isinstance(value, bool) == isinstance(step.value, bool):
                yield from _matches(item, rest)
    elif isinstance(step, int):
        if isinstance(current, list) and -len(current) <= step < len(current):
            yield from _matches(current[step], rest)
    elif isinstance(current, Mapping) and step in current:
        yield from _matches(current[step], rest)
