"""Istio's config validation: what istiod's ``validation.istio.io`` webhook answers, and what istiod itself
uses to keep an object it cannot translate out of a push.

One pure entry point, :func:`validate`, takes an Istio object as the API server would store it and returns
every :class:`Problem`, each naming the field (``spec.http[0].route[0].weight``) with Istio's phrase and,
where it helps, the fix. Two stages, as on a real cluster:

1. **decoding** (:mod:`.shapes`): unknown fields, type errors, enum values, durations — what the CRD's
   structural schema and istiod's protobuf decoding refuse;
2. **rules** (:mod:`.networking`, :mod:`.security`): Istio's ``pkg/config/validation`` semantics — route
   weights, ports, hosts, gateway servers, TLS settings — run only on a spec that decoded.

:func:`denial` turns the problems into the message the webhook returns, which the API server prefixes with
``admission webhook "validation.istio.io" denied the request:``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from labkit.core.names import is_dns1123_label
from labkit.core.wire import Obj
from labkit.emulator.mesh.validation import networking, security
from labkit.emulator.mesh.validation.shapes import Message, Problem, check

__all__ = ["ALWAYS_REJECT", "KINDS", "Problem", "Verdict", "denial", "validate"]

# The annotation istiod's webhook controller puts on a dry-run object it expects to be refused.
ALWAYS_REJECT = "internal.istio.io/webhook-always-reject"
_TOP_LEVEL = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})

_SHAPES: Mapping[str, Message] = {**networking.SHAPES, **security.SHAPES}
_RULES: Mapping[str, Callable[[Obj, str], list[Problem]]] = {**networking.RULES, **security.RULES}
KINDS = frozenset(_SHAPES)
"""The kinds checked field by field; other Istio kinds (EnvoyFilter, Telemetry …) pass unchecked."""


@dataclass(frozen=True)
class Verdict:
    """What validation found for one object.

    Args:
        kind: the object's kind.
        namespace: its namespace.
        name: its name.
        decoding: problems of shape (unknown fields, types, enums, durations).
        rules: problems found by Istio's rules (empty when decoding failed: they never ran).
    """

    kind: str
    namespace: str
    name: str
    decoding: tuple[Problem, ...] = ()
    rules: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.decoding and not self.rules

    @property
    def problems(self) -> tuple[Problem, ...]:
        return self.decoding + self.rules

    @property
    def key(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    def __str__(self) -> str:
        return denial(self)


def validate(obj: Obj) -> Verdict:
    """Check one Istio object (any version of its API: Istio validates all versions alike).

    Args:
        obj: the object, with ``kind``, ``metadata`` and ``spec``.
    """
    kind = str(obj.get("kind") or "")
    meta = obj.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    decoding: list[Problem] = []
    if not str(obj.get("apiVersion") or "").partition("/")[0].endswith(".istio.io"):
        return Verdict(kind, namespace, name)  # not Istio's to judge
    for key in obj:
        if key not in _TOP_LEVEL:
            decoding.append(Problem("", f'unknown field "{key}" on {kind} resource {namespace}/{name}',
                                    "move it under spec"))
    annotations = meta.get("annotations") or {}
    if ALWAYS_REJECT in annotations:
        decoding.append(Problem("metadata.annotations", f'"{ALWAYS_REJECT}" annotation found, rejecting'))
    shape = _SHAPES.get(kind)
    if shape is None:
        return Verdict(kind, namespace, name, tuple(decoding))
    spec = obj.get("spec")
    if spec is None:
        spec = {}
    decoding += check(spec, shape, "spec")
    if decoding:
        return Verdict(kind, namespace, name, tuple(decoding))
    if kind == "Gateway" and not is_dns1123_label(name):
        decoding.append(Problem("metadata.name", f'invalid gateway name: "{name}"', "use a DNS label without dots"))
    return Verdict(kind, namespace, name, tuple(decoding), tuple(_RULES[kind](spec, namespace)))


def denial(verdict: Verdict) -> str:
    """The webhook's message: istiod's prefix, the object, then each problem (Go's multierror layout for several).

    Args:
        verdict: a verdict with problems.
    """
    prefix = "error decoding configuration" if verdict.decoding else "configuration is invalid"
    problems = [str(p) for p in verdict.problems]
    if len(problems) == 1:
        return f"{prefix}: {verdict.key}: {problems[0]}"
    listed = "".join(f"\n\t* {p}" for p in problems)
    return f"{prefix}: {verdict.key}: {len(problems)} errors occurred:{listed}"
