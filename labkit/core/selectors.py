"""Label and field selectors, parsed once and matched many times.

``kubectl get -l``, ``--field-selector``, watches, Deployments, ReplicaSets, Services and webhooks all
select objects the same way, so the grammar lives here and nowhere else. The label grammar follows
``k8s.io/apimachinery/pkg/labels`` (``a=b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``,
``a>1``); a malformed selector raises :class:`~labkit.errors.InvalidSelectorError` whose message quotes the
selector, because that is all a user typing ``-l`` can act on (the emulator's API server answers it as a
``400 BadRequest``). Field selectors are generic: any dotted path into the object (``metadata.name``,
``spec.nodeName``, ``involvedObject.uid``) compares as a string, and a missing field reads as ``""`` so that
``spec.nodeName=`` finds unscheduled pods as it does on a real server.

Both sides import this module: the emulator to serve lists, watches and controllers, the client to filter
manifests (``apply -l``) and to turn a workload's selector into the string ``kubectl logs -l`` takes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from labkit.errors import InvalidSelectorError

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_KEY_RE = re.compile(rf"({_DNS_SUBDOMAIN}/)?{_NAME}")
_VALUE_RE = re.compile(rf"({_NAME})?")

# Set-based operators of the string grammar, and their LabelSelector (matchExpressions) spelling.
_EXPRESSION_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector.

    Args:
        key: the label key.
        operator: ``=``, ``!=``, ``in``, ``notin``, ``exists``, ``!`` (does not exist), ``>`` or ``<``.
        values: the values compared against (one for ``=``/``!=``/``>``/``<``, none for existence).
    """

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a label set satisfies this requirement."""
        present = self.key in labels
        value = labels.get(self.key)
        op = self.operator
        if op in ("=", "in"):
            return present and value in self.values
        if op in ("!=", "notin"):
            return not present or value not in self.values
        if op == "exists":
            return present
        if op == "!":
            return not present
        # Gt/Lt: a label that is not an integer never matches, as in Kubernetes.
        try:
            number = int(value) if value is not None else None
        except ValueError:
            return False
        if number is None:
            return False
        bound = int(self.values[0])
        return number > bound if op == ">" else number < bound

    def __str__(self) -> str:
        op = self.operator
        if op == "exists":
            return self.key
        if op == "!":
            return f"!{self.key}"
        if op in ("in", "notin"):
            return f"{self.key} {op} ({','.join(self.values)})"
        return f"{self.key}{op}{self.values[0]}"


@dataclass(frozen=True)
class LabelSelector:
    """A parsed label selector: all requirements must hold.

    Args:
        requirements: the terms, all of which must match.
        match_nothing: true for a selector that selects no object (a null ``LabelSelector``).
    """

    requirements: tuple[Requirement, ...] = ()
    match_nothing: bool = False

    @property
    def empty(self) -> bool:
        """Whether the selector selects every object."""
        return not self.requirements and not self.match_nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Whether a label set (``metadata.labels``, possibly absent) is selected.

        Args:
            labels: the labels of an object; ``None`` reads as no labels.
        """
        if self.match_nothing:
            return False
        labels = labels or {}
        return all(requirement.matches(labels) for requirement in self.requirements)

    def matches_object(self, obj: Mapping[str, Any]) -> bool:
        """Whether an object's ``metadata.labels`` are selected."""
        return self.matches((obj.get("metadata") or {}).get("labels"))

    def __str__(self) -> str:
        """The string form, as ``status.selector`` of a Scale or ``kubectl get -l`` spells it."""
        return ",".join(str(requirement) for requirement in self.requirements)


@dataclass(frozen=True)
class FieldRequirement:
    """One term of a field selector.

    Args:
        path: a dotted path into the object (``metadata.name``, ``status.phase``).
        operator: ``=`` or ``!=`` (``==`` is read as ``=``).
        value: the value compared against; missing fields read as ``""``.
    """

    path: str
    operator: str
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Whether an object satisfies this term."""
        equal = field_value(obj, self.path) == self.value
        return equal if self.operator == "=" else not equal


@dataclass(frozen=True)
class FieldSelector:
    """A parsed field selector: all terms must hold.

    Args:
        requirements: the terms.
    """

    requirements: tuple[FieldRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        """Whether the selector selects every object."""
        return not self.requirements

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Whether an object is selected."""
        return all(requirement.matches(obj) for requirement in self.requirements)


EVERYTHING = LabelSelector()
"""The label selector that selects every object."""

NOTHING = LabelSelector(match_nothing=True)
"""The label selector that selects no object."""

ALL_FIELDS = FieldSelector()
"""The field selector that selects every object."""


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string a field selector compares for a dotted path; missing fields read as ``""``.

    Args:
        obj: a Kubernetes object.
        path: a dotted path such as ``spec.nodeName`` or ``involvedObject.name``.
    """
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return ""
        value = value[part]
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return ""
    return str(value)


# --- label selector strings ---------------------------------------------------------------------

_SPECIAL = "=!(),<>"
_KEYWORDS = {"in", "notin"}


@dataclass(frozen=True)
class _Token:
    kind: str  # "id", "op", "(", ")", ",", "end"
    text: str


def _tokens(text: str) -> Iterator[_Token]:
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
            continue
        if char in "(),":
            yield _Token(char, char)
            i += 1
            continue
        if char in "=!<>":
            if text.startswith(("==", "!="), i):
                yield _Token("op", text[i : i + 2])
                i += 2
            else:
                yield _Token("op", char)
                i += 1
            continue
        start = i
        while i < len(text) and not text[i].isspace() and text[i] not in _SPECIAL:
            i += 1
        yield _Token("id", text[start:i])
    yield _Token("end", "")


def _describe(token: _Token) -> str:
    return "end of string" if token.kind == "end" else f"'{token.text}'"


class _LabelParser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = list(_tokens(text))
        self.pos = 0

    def fail(self, why: str) -> Exception:
        return InvalidSelectorError(f'unable to parse label selector "{self.text}": {why}')

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expect(self, kind: str, what: str) -> _Token:
        token = self.take()
        if token.kind != kind:
            raise self.fail(f"found {_describe(token)}, expected: {what}")
        return token

    def parse(self) -> LabelSelector:
        requirements = []
        if self.peek().kind == "end":
            return EVERYTHING
        while True:
            requirements.append(self.requirement())
            token = self.take()
            if token.kind == "end":
                break
            if token.kind != ",":
                raise self.fail(f"found {_describe(token)}, expected: ',' or 'end of string'")
        return LabelSelector(tuple(requirements))

    def key(self) -> str:
        token = self.take()
        if token.kind != "id" or token.text in _KEYWORDS:
            raise self.fail(f"found {_describe(token)}, expected: identifier")
        _check_key(token.text, self.fail)
        return token.text

    def requirement(self) -> Requirement:
        if self.peek() == _Token("op", "!"):
            self.take()
            key = self.key()
            if self.peek().kind not in (",", "end"):
                raise self.fail(f"found {_describe(self.peek())}, expected: ',' or 'end of string'")
            return Requirement(key, "!")
        key = self.key()
        token = self.peek()
        if token.kind in (",", "end"):
            return Requirement(key, "exists")
        if token.kind == "id" and token.text in _KEYWORDS:
            self.take()
            return Requirement(key, token.text, self.value_set())
        if token.kind == "op" and token.text in ("=", "==", "!=", ">", "<"):
            self.take()
            value = self.single_value()
            if token.text in (">", "<"):
                try:
                    int(value)
                except ValueError:
                    raise self.fail(
                        f"for 'Gt', 'Lt' operators, the value must be an integer, not '{value}'"
                    ) from None
                return Requirement(key, token.text, (value,))
            return Requirement(key, "!=" if token.text == "!=" else "=", (value,))
        raise self.fail(
            f"found {_describe(token)}, expected: "
            "'=', '!=', '==', 'in', 'notin', '>', '<', ',' or 'end of string'"
        )

    def single_value(self) -> str:
        token = self.peek()
        if token.kind in (",", "end"):
            return ""  # `a=` selects labels with an empty value, as in Kubernetes
        if token.kind != "id":
            raise self.fail(f"found {_describe(token)}, expected: identifier")
        self.take()
        _check_value(token.text, self.fail)
        return token.text

    def value_set(self) -> tuple[str, ...]:
        self.expect("(", "'('")
        values: list[str] = []
        while True:
            token = self.take()
            if token.kind == "id":
                _check_value(token.text, self.fail)
                values.append(token.text)
                token = self.take()
            elif token.kind in (",", ")"):
                values.append("")  # an empty member, as in `a in (,b)`
            if token.kind == ")":
                break
            if token.kind != ",":
                raise self.fail(f"found {_describe(token)}, expected: ',' or ')'")
        if values == [""]:
            raise self.fail("for 'in', 'notin' operators, values set can't be empty")
        return tuple(dict.fromkeys(values))


def _check_key(key: str, fail: Any) -> None:
    name = key.rpartition("/")[2]
    prefix = key.rpartition("/")[0]
    if not _KEY_RE.fullmatch(key) or len(name) > 63 or len(prefix) > 253:
        raise fail(
            f'invalid label key "{key}": a qualified name must consist of alphanumeric characters, '
            "'-', '_' or '.', and must start and end with an alphanumeric character, "
            "with an optional DNS subdomain prefix and '/'"
        )


def _check_value(value: str, fail: Any) -> None:
    if not _VALUE_RE.fullmatch(value) or len(value) > 63:
        raise fail(
            f'invalid label value "{value}": must be 63 characters or less and consist of '
            "alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character"
        )


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse a label selector string as given to ``kubectl get -l`` or ``?labelSelector=``.

    Args:
        text: the selector; ``None`` or ``""`` selects everything.

    Raises:
        InvalidSelectorError: 400 BadRequest naming the selector and what was expected.
    """
    if not text:
        return EVERYTHING
    return _LabelParser(text).parse()


# --- field selector strings ---------------------------------------------------------------------


def _split_unescaped(text: str, separator: str) -> list[str]:
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def _unescape(value: str, selector: str) -> str:
    out, escaped = [], False
    for char in value:
        if escaped:
            if char not in "\\,=":
                raise InvalidSelectorError(f'invalid field selector "{selector}": invalid escape sequence "\\{char}"')
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            raise InvalidSelectorError(f'invalid field selector "{selector}": unescaped "{char}" in value "{value}"')
        else:
            out.append(char)
    if escaped:
        raise InvalidSelectorError(f'invalid field selector "{selector}": value "{value}" ends with an escape')
    return "".join(out)


def parse_field_selector(text: str | None) -> FieldSelector:
    """Parse a field selector string as given to ``--field-selector`` or ``?fieldSelector=``.

    Args:
        text: comma-joined ``path=value``, ``path==value`` or ``path!=value`` terms; ``""`` selects
            everything.

    Raises:
        InvalidSelectorError: 400 BadRequest quoting the selector.
    """
    if not text:
        return FieldSelector()
    requirements = []
    for term in _split_unescaped(text, ","):
        for i in range(len(term)):
            op = next((op for op in ("!=", "==", "=") if term.startswith(op, i)), None)
            if op:
                path, value = term[:i].strip(), term[i + len(op) :]
                break
        else:
            raise InvalidSelectorError(f"invalid field selector \"{text}\": can't understand '{term}'")
        if not path or not re.fullmatch(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*", path):
            raise InvalidSelectorError(f"invalid field selector \"{text}\": invalid field path '{path}'")
        requirements.append(FieldRequirement(path, "!=" if op == "!=" else "=", _unescape(value, text)))
    return FieldSelector(tuple(requirements))


# --- LabelSelector objects (Deployments, ReplicaSets, NetworkPolicies …) -------------------------


def label_selector_from_dict(selector: Mapping[str, Any] | None) -> LabelSelector:
    """Convert a ``LabelSelector`` (``matchLabels`` and ``matchExpressions``) as found in a spec.

    A null selector selects nothing and an empty one selects everything, as in
    ``metav1.LabelSelectorAsSelector``.

    Args:
        selector: the ``LabelSelector`` dict, e.g. a Deployment's ``spec.selector``.

    Raises:
        InvalidSelectorError: an unknown operator or a malformed expression.
    """
    if selector is None:
        return NOTHING
    requirements = []
    for key, value in sorted((selector.get("matchLabels") or {}).items()):
        _check_key(key, _selector_fail)
        _check_value(str(value), _selector_fail)
        requirements.append(Requirement(key, "=", (str(value),)))
    for expression in selector.get("matchExpressions") or []:
        key = expression.get("key", "")
        operator = expression.get("operator", "")
        values = tuple(str(v) for v in expression.get("values") or [])
        _check_key(key, _selector_fail)
        if operator not in _EXPRESSION_OPERATORS:
            raise InvalidSelectorError(f'"{operator}" is not a valid label selector operator')
        op = _EXPRESSION_OPERATORS[operator]
        if op in ("in", "notin") and not values:
            raise InvalidSelectorError(
                f"values: Required value: must be specified when `operator` is '{operator}' (key {key!r})"
            )
        if op in ("exists", "!") and values:
            raise InvalidSelectorError(
                f"values: Forbidden: may not be specified when `operator` is '{operator}' (key {key!r})"
            )
        requirements.append(Requirement(key, op, tuple(dict.fromkeys(values))))
    return LabelSelector(tuple(requirements))


def _selector_fail(why: str) -> Exception:
    return InvalidSelectorError(f"invalid label selector: {why}")


def selector_from_labels(labels: Mapping[str, str] | None) -> LabelSelector:
    """A selector requiring every given label, as a Service's ``spec.selector`` map does.

    An empty or absent map selects everything here; a Service without a selector must be
    special-cased by its caller (it manages no endpoints).

    Args:
        labels: label key to required value.
    """
    return LabelSelector(
        tuple(Requirement(key, "=", (str(value),)) for key, value in sorted((labels or {}).items()))
    )


def matches_label_selector(selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None) -> bool:
    """Whether labels are selected by a ``LabelSelector`` dict (``matchLabels``/``matchExpressions``).

    Args:
        selector: the ``LabelSelector`` dict; ``None`` selects nothing.
        labels: the labels to test.
    """
    return label_selector_from_dict(selector).matches(labels)


def labels_match(required: Mapping[str, str] | None, labels: Mapping[str, str] | None) -> bool:
    """Whether every required label is present with its value (a Service's or Istio's ``selector`` map).

    An empty map selects everything; callers for which "no selector" means "nothing" (a Service without one
    manages no endpoints) check that first.

    Args:
        required: label key to required value.
        labels: the labels to test.
    """
    labels = labels or {}
    return all(labels.get(key) == str(value) for key, value in (required or {}).items())


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """A ``LabelSelector`` dict in Kubernetes' string form: ``app=web,tier in (a,b),!legacy``; empty selects all.

    Requirements are sorted by key and ``In``/``NotIn`` values sorted, as ``labels.Selector.String`` does, so
    the result is what ``kubectl get -o wide`` prints and what ``kubectl logs -l`` accepts.

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
