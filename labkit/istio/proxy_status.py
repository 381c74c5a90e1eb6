"""``istioctl proxy-status``: every proxy an istiod configures, and whether each xDS type is in step.

The contract, on both backends:

- **Columns.** ``NAME  CLUSTER  CDS  LDS  EDS  RDS  ECDS  ISTIOD  VERSION`` (Istio 1.2x's table). Each type is
  ``SYNCED`` (the proxy ACKed what istiod last sent), ``STALE`` (sent, not acknowledged yet — or the proxy went
  quiet), ``NOT SENT`` (asked for, nothing sent yet), ``ERROR`` (the proxy NACKed it: Envoy refused the update and
  keeps its last good one; the reason is in :attr:`ProxyStatus.errors`) or ``IGNORED`` (not subscribed).
- **Embedded clusters.** labkit execs ``pilot-discovery request GET /debug/syncz`` in the ``discovery``
  container of each running istiod and reads its JSON rows: ``proxy`` (``pod.namespace``), ``cluster_id``,
  ``istiod``, ``version``, ``types`` (short type → status) and ``errors`` (short type → Envoy's reason).
- **Real clusters.** labkit runs ``istioctl proxy-status --context <ctx>`` and parses its table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from labkit import kube
from labkit.errors import LabkitError
from labkit.istio.asking import istioctl, istiod_debug
from labkit.istio.operator import ISTIO_NAMESPACE

TYPES = ("CDS", "LDS", "EDS", "RDS", "ECDS")
HEADER = ("NAME", "CLUSTER", *TYPES, "ISTIOD", "VERSION")


@dataclass(frozen=True)
class ProxyStatus:
    """One row of ``istioctl proxy-status``.

    Args:
        name: ``pod.namespace``.
        cluster: the proxy's cluster ID.
        types: short type name (``CDS`` …) → ``SYNCED``, ``STALE``, ``NOT SENT``, ``ERROR`` or ``IGNORED``.
        istiod: the istiod that configures it.
        version: the proxy's Istio version ("" when it does not say).
        errors: short type name → Envoy's reason for a NACK.
    """

    name: str
    cluster: str
    types: Mapping[str, str]
    istiod: str
    version: str = ""
    errors: Mapping[str, str] = field(default_factory=dict)

    def status(self, kind: str) -> str:
        return self.types.get(kind, "IGNORED")

    @property
    def synced(self) -> bool:
        """Every subscribed type is SYNCED."""
        return all(value in ("SYNCED", "IGNORED") for value in self.types.values()) and \
            any(value == "SYNCED" for value in self.types.values())


def parse_syncz(text: str, istiod: str) -> list[ProxyStatus]:
    """Rows from the JSON of the emulated istiod's ``/debug/syncz`` (see the module docstring).

    Raises:
        LabkitError: the body is not a JSON list.
    """
    try:
        entries = json.loads(text)
    except ValueError as exc:
        raise LabkitError(f"istiod {istiod} answered /debug/syncz with something that is not JSON: "
                          f"{text[:200]!r}") from exc
    if not isinstance(entries, list):
        raise LabkitError(f"istiod {istiod} answered /debug/syncz with {type(entries).__name__}, expected a list")
    return [ProxyStatus(str(e.get("proxy", "")), str(e.get("cluster_id", "")),
                        {str(k): str(v) for k, v in (e.get("types") or {}).items()},
                        str(e.get("istiod") or istiod), str(e.get("version") or ""),
                        {str(k): str(v) for k, v in (e.get("errors") or {}).items()})
            for e in entries if isinstance(e, dict)]


def parse_istioctl(text: str) -> list[ProxyStatus]:
    """Rows from ``istioctl proxy-status`` (the 1.2x table; a status may carry an age, ``SYNCED (5m)``)."""
    rows = []
    lines = text.splitlines()
    if not lines:
        return rows
    header = lines[0]
    starts = [header.index(column) for column in HEADER if column in header]
    names = [column for column in HEADER if column in header]
    for line in lines[1:]:
        if not line.strip():
            continue
        cells = {name: line[start:end].strip() for name, start, end in
                 zip(names, starts, [*starts[1:], len(line) + 1], strict=True)}
        types = {kind: cells[kind].split(" (")[0] for kind in TYPES if kind in cells}
        rows.append(ProxyStatus(cells.get("NAME", ""), cells.get("CLUSTER", ""), types, cells.get("ISTIOD", ""),
                                cells.get("VERSION", "")))
    return rows


def format_table(rows: list[ProxyStatus]) -> str:
    """Rows as istioctl prints them: left-aligned columns, five spaces apart (its tabwriter's padding)."""
    cells = [HEADER, *((r.name, r.cluster, *(r.status(kind) for kind in TYPES), r.istiod, r.version)
                       for r in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER))]
    return "\n".join("     ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


def proxy_status(context: kube.ContextRef, *, namespace: str = ISTIO_NAMESPACE,
                 quiet: bool = False) -> list[ProxyStatus]:
    """Every proxy the istiods of ``context`` configure, printed like ``istioctl proxy-status``.

    Args:
        context: the kubeconfig context (a name, or a :class:`~labkit.kube.Context` with its kubeconfig).
        namespace: the Istio namespace.
        quiet: return the rows without printing them.

    Raises:
        LabkitError: no running istiod on an embedded cluster, or istioctl failed.
        ToolNotFoundError: istioctl missing on a real cluster.
    """
    if kube.is_embedded(context):
        answers = istiod_debug(context, namespace, "/debug/syncz")
        rows = [row for pod, body in answers for row in parse_syncz(body, pod)]
    else:
        rows = parse_istioctl(istioctl(context, namespace, "proxy-status"))
    rows = sorted(rows, key=lambda row: row.name)
    if not quiet:
        print(format_table(rows))
    return rows
