"""The mesh as a Kiali-like graph: clusters as boxes, workloads inside, traffic shares on the edges.

A learner compares this picture with what ``istioctl proxy-config endpoints`` printed: one local pod, and
the east-west gateways of the other networks on ``:15443``. So gateways sit on the bottom edge of their
cluster's box (the border they guard), calls to another network leave their box downwards and enter the remote
gateway from below — they visibly cross the network boundary — and an edge is as wide as its share of calls.
mTLS edges carry a lock badge, as in Kiali.

The layout is fixed, not force-directed: columns client → service → pods per box (a multipartite layout with
room reserved for labels), boxes side by side in the order given. The same lab draws the same picture on every
run and every machine, which a trainer can explain once and nbval can rely on. Cross-network edges each get
their own depth below the boxes so their curves and labels never sit on top of each other.

Inputs are frozen dataclasses a notebook (or labkit) builds from what it knows; this module never asks a
cluster anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import networkx as nx
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.offsetbox import AnnotationBbox, DrawingArea, HPacker, TextArea, VPacker
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle, RegularPolygon, Wedge
from matplotlib.path import Path

from labkit.viz import style

WorkloadKind = Literal["pod", "service", "gateway", "client"]
_KINDS: tuple[str, ...] = get_args(WorkloadKind)


@dataclass(frozen=True)
class Cluster:
    """A cluster box.

    Args:
        name: the cluster's name (``cluster1``), as workloads refer to it.
        network: its Istio network (``network1``), shown in the box's corner.
    """

    name: str
    network: str = ""


@dataclass(frozen=True)
class Workload:
    """A node of the graph.

    Args:
        cluster: the name of the cluster it runs in.
        namespace: its namespace.
        name: a pod, Service, gateway or client name (pods keep their full name: it is what curl printed).
        version: the ``version`` label (``v1``), shown inside a pod's circle; empty when it has none.
        kind: ``pod``, ``service``, ``gateway`` (east-west, on the box edge) or ``client`` (sleep, curl).
    """

    cluster: str
    namespace: str
    name: str
    version: str = ""
    kind: WorkloadKind = "pod"

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"workload {self.cluster}/{self.namespace}/{self.name} has kind {self.kind!r}; "
                             f"use one of {', '.join(_KINDS)}")


@dataclass(frozen=True)
class Edge:
    """A call path between two workloads.

    Args:
        source: where requests come from.
        target: where they go.
        share: the measured fraction (0–1) of the source's calls taking this path; None when not measured.
        mtls: whether the hop is mutual TLS (sidecar to sidecar, or to the gateway's ``:15443``).
        label: extra text under the share, e.g. ``:15443``.
    """

    source: Workload
    target: Workload
    share: float | None = None
    mtls: bool = False
    label: str = ""

    def __post_init__(self) -> None:
        if self.share is not None and not 0.0 <= self.share <= 1.0:
            raise ValueError(f"edge {_name(self.source)} → {_name(self.target)} has share {self.share}; shares are "
                             f"fractions between 0 and 1 (divide percentages by 100)")


@dataclass(frozen=True)
class Topology:
    """Clusters, the workloads in them and the edges between workloads; checked for consistency when made.

    Args:
        clusters: boxes, drawn left to right in this order.
        workloads: every node; each names one of ``clusters``.
        edges: call paths between ``workloads``.
    """

    clusters: Sequence[Cluster]
    workloads: Sequence[Workload]
    edges: Sequence[Edge] = field(default=())

    def __post_init__(self) -> None:
        # Tuples, so a Topology is hashable and cannot change under a figure that was drawn from it.
        object.__setattr__(self, "clusters", tuple(self.clusters))
        object.__setattr__(self, "workloads", tuple(self.workloads))
        object.__setattr__(self, "edges", tuple(self.edges))
        names = [c.name for c in self.clusters]
        if len(set(names)) != len(names):
            raise ValueError(f"cluster names must be unique, got {', '.join(names)}")
        if len(set(self.workloads)) != len(self.workloads):
            raise ValueError("a workload is listed twice")
        for workload in self.workloads:
            if workload.cluster not in names:
                raise ValueError(f"workload {_name(workload)} names cluster {workload.cluster!r}, which is not one "
                                 f"of the topology's clusters ({', '.join(names)})")
        known = set(self.workloads)
        for edge in self.edges:
            for end in (edge.source, edge.target):
                if end not in known:
                    raise ValueError(f"edge {_name(edge.source)} → {_name(edge.target)} refers to {_name(end)}, "
                                     f"which is not in the topology's workloads")

    def graph(self) -> nx.DiGraph:
        """The topology as a networkx graph: workloads as nodes (with ``kind``, ``cluster``), edges with ``share``."""
        graph = nx.DiGraph()
        for workload in self.workloads:
            graph.add_node(workload, kind=workload.kind, cluster=workload.cluster)
        for edge in self.edges:
            graph.add_edge(edge.source, edge.target, share=edge.share, mtls=edge.mtls, label=edge.label)
        return graph


# Box-local layout, in data units (the axes have an equal aspect, so a unit is the same length both ways).
# Columns are far enough apart for an edge label (lock + share) between two nodes.
_WIDTH = 10.6
_GAP = 1.4
_ROW = 1.5
_CENTRE_Y = 2.4
_R = 0.34
_COLUMNS = {"client": 0.5, "service": 4.0, "pod": 6.8}
_GATEWAY_X = 4.9
_LANE = 1.2
_LANE_STEP = 0.75
_CORNER = 0.45
# 0.39 in per unit keeps three clusters under ~1,450 px, so at a notebook's width no text falls under 9 px.
_UNIT_INCHES = 0.39
_LEGEND = "edge width ∝ share of calls  ·  green frame with a lock: mTLS"
_SYMBOLS = {"service": "▲ service", "pod": "● pod", "gateway": "◆ gateway", "client": "■ client"}


def topology_chart(topology: Topology, *, title: str | None = None) -> Figure:
    """Draw the topology: cluster boxes with their network, workloads, and edges sized by their share.

    Args:
        topology: what to draw.
        title: the figure's title; by default ``Mesh topology``.

    Returns:
        One axes with the boxes, nodes and edges; every edge with a share or label gets a label, and every mTLS
        edge a lock badge reading ``mTLS``.
    """
    positions, height = _layout(topology)
    cross = [e for e in topology.edges if e.source.cluster != e.target.cluster]
    levels = {edge: i for i, edge in enumerate(sorted(cross, key=lambda e: _edge_order(topology, e)))}
    depth = _LANE + _LANE_STEP * max(len(cross) - 1, 0) if cross else 0.0

    left, right = -0.4, len(topology.clusters) * (_WIDTH + _GAP) - _GAP + 0.4
    bottom, top = -(depth + 0.7), height + 0.3
    figure = style.new_figure((right - left) * _UNIT_INCHES + 0.4, (top - bottom) * _UNIT_INCHES + 1.3)
    figure.suptitle(title or "Mesh topology", fontsize=style.TITLE_SIZE, color=style.INK)
    ax = figure.add_subplot()
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    ax.set_axis_off()

    for i, cluster in enumerate(topology.clusters):
        _draw_box(ax, cluster, i * (_WIDTH + _GAP), height)
    versions = style.colours_for(w.version for w in topology.workloads if w.kind == "pod" and w.version)
    taken: list[_Rect] = []
    for workload in topology.workloads:
        _draw_node(ax, workload, positions[workload], versions)
        taken += _node_rects(workload, positions[workload])
    for edge in topology.edges:
        level = levels.get(edge)
        lane = None if level is None else _LANE + _LANE_STEP * level
        _draw_edge(ax, edge, positions, lane, taken)
    # The legend names only the symbols this picture draws.
    drawn = [symbol for kind, symbol in _SYMBOLS.items() if any(w.kind == kind for w in topology.workloads)]
    figure.text(0.01, 0.01, "  ·  ".join([_LEGEND, "  ".join(drawn)]), fontsize=style.SMALL_SIZE, color=style.MUTED)
    return figure


def _layout(topology: Topology) -> tuple[dict[Workload, tuple[float, float]], float]:
    stacks: dict[tuple[str, str], list[Workload]] = {}
    for workload in topology.workloads:
        column = "pod" if workload.kind == "pod" else workload.kind
        stacks.setdefault((workload.cluster, column), []).append(workload)
    tallest = max((len(v) for k, v in stacks.items() if k[1] != "gateway"), default=1)
    height = max(4.6, tallest * _ROW + 1.9)
    centre = _CENTRE_Y + (height - 4.6) / 2
    offsets = {c.name: i * (_WIDTH + _GAP) for i, c in enumerate(topology.clusters)}
    positions: dict[Workload, tuple[float, float]] = {}
    for (cluster, column), unordered in stacks.items():
        members = sorted(unordered, key=lambda w: (style.natural_key(w.version), style.natural_key(w.name)))
        x0 = offsets[cluster]
        if column == "gateway":
            # On the border: a gateway is where a cluster's network meets the others; several share the edge.
            for i, gateway in enumerate(members):
                positions[gateway] = (x0 + _GATEWAY_X + i * 1.2, 0.0)
            continue
        for i, workload in enumerate(members):
            positions[workload] = (x0 + _COLUMNS[column], centre + (len(members) - 1) / 2 * _ROW - i * _ROW)
    return positions, height


def _edge_order(topology: Topology, edge: Edge) -> tuple[object, ...]:
    index = {c.name: i for i, c in enumerate(topology.clusters)}
    span = abs(index[edge.target.cluster] - index[edge.source.cluster])
    return (span, index[edge.source.cluster], index[edge.target.cluster], edge.source.name, edge.target.name)


def _draw_box(ax: Axes, cluster: Cluster, x0: float, height: float) -> None:
    ax.add_patch(FancyBboxPatch((x0, 0.0), _WIDTH, height, boxstyle="round,pad=0,rounding_size=0.25",
                                facecolor=style.BOX_FILL, edgecolor=style.BOX_EDGE, linewidth=2, zorder=0,
                                gid=f"cluster:{cluster.name}"))
    ax.text(x0 + 0.25, height - 0.25, cluster.name, ha="left", va="top", fontsize=style.LABEL_SIZE + 1,
            fontweight="bold", color=style.INK, zorder=5)
    if cluster.network:
        ax.text(x0 + _WIDTH - 0.25, height - 0.25, cluster.network, ha="right", va="top", fontsize=style.NOTE_SIZE,
                color=style.MUTED, fontstyle="italic", zorder=5)


def _draw_node(ax: Axes, workload: Workload, at: tuple[float, float], versions: dict[str, str]) -> None:
    x, y = at
    gid = f"node:{_name(workload)}"
    if workload.kind == "pod":
        colour = versions.get(workload.version, style.MUTED)
        ax.add_patch(Circle(at, _R, facecolor=colour, edgecolor="white", linewidth=2, zorder=4, gid=gid))
        if workload.version:
            ax.text(x, y, workload.version, ha="center", va="center", fontsize=style.SMALL_SIZE, fontweight="bold",
                    color="white" if colour not in ("#F0E442", "#E69F00", "#56B4E9") else style.INK, zorder=5)
        ax.text(x + _R + 0.15, y, style.wrap_name(workload.name, 14), ha="left", va="center",
                fontsize=style.SMALL_SIZE, color=style.INK, zorder=5, linespacing=1.1)
    elif workload.kind == "gateway":
        ax.add_patch(RegularPolygon(at, 4, radius=_R * 1.25, facecolor="#3b4a63", edgecolor="white", linewidth=2,
                                    zorder=4, gid=gid))
        # Below the border, right of the diamond: inside the box its edges to the pods fan out, and lanes arrive
        # from straight below.
        ax.text(x + _R * 1.25 + 0.1, -0.12, workload.name, ha="left", va="top", fontsize=style.SMALL_SIZE,
                color=style.INK, zorder=5)
    else:
        if workload.kind == "service":
            patch = RegularPolygon(at, 3, radius=_R * 1.3, facecolor="white", edgecolor=style.INK, linewidth=2,
                                   zorder=4, gid=gid)
        else:
            patch = RegularPolygon(at, 4, radius=_R * 1.2, orientation=math.pi / 4, facecolor="#9aa3b2",
                                   edgecolor="white", linewidth=2, zorder=4, gid=gid)
        ax.add_patch(patch)
        ax.text(x, y + _R + 0.15, style.wrap_name(workload.name, 14), ha="center", va="bottom",
                fontsize=style.SMALL_SIZE, color=style.INK, zorder=5, linespacing=1.1)


def _draw_edge(ax: Axes, edge: Edge, positions: dict[Workload, tuple[float, float]], lane: float | None,
               taken: list[_Rect]) -> None:
    start, end = np.array(positions[edge.source]), np.array(positions[edge.target])
    points = np.linspace(start, end, 50) if lane is None else _lane_path(start, end, lane)
    points = _trim(points, start, _reach(edge.source) + 0.05, end, _reach(edge.target) + 0.08)
    # On a lane the label rides the horizontal stretch (its own depth); elsewhere anywhere along the edge.
    along = points[np.isclose(points[:, 1], -lane)] if lane is not None else points
    middle = _label_spot(along if len(along) >= 2 else points, _label_size(edge), taken)
    width = 1.2 + 6.0 * (edge.share or 0.0)
    dashed = edge.share is None
    arrow = FancyArrowPatch(path=Path(points), arrowstyle="-|>", mutation_scale=12 + 2.0 * width,
                            linewidth=width, color="#4a5568" if not dashed else style.MUTED,
                            linestyle="--" if dashed else "-", zorder=2, capstyle="round", joinstyle="round",
                            gid=f"edge:{_name(edge.source)}->{_name(edge.target)}")
    ax.add_patch(arrow)
    _draw_edge_label(ax, edge, (float(middle[0]), float(middle[1])))


def _draw_edge_label(ax: Axes, edge: Edge, at: tuple[float, float]) -> None:
    lines = []
    if edge.share is not None:
        lines.append(TextArea(f"{edge.share * 100:.0f} %", textprops={"fontsize": style.NOTE_SIZE,
                                                                      "fontweight": "bold", "color": style.INK}))
    if edge.label:
        lines.append(TextArea(edge.label, textprops={"fontsize": style.SMALL_SIZE - 1, "color": style.MUTED}))
    parts: list[TextArea | DrawingArea | VPacker] = []
    if edge.mtls:
        parts.append(_lock())
        if not lines:
            parts.append(TextArea("mTLS", textprops={"fontsize": style.SMALL_SIZE - 1, "fontweight": "bold",
                                                     "color": style.SAFE}))
    if lines:
        parts.append(VPacker(children=lines, align="center", pad=0, sep=1))
    if not parts:
        return
    box = AnnotationBbox(HPacker(children=parts, align="center", pad=0, sep=4), at, frameon=True, pad=0.3,
                         zorder=6, bboxprops={"boxstyle": "round,pad=0.3", "facecolor": "white",
                                              "edgecolor": style.SAFE if edge.mtls else "#c7ccd6",
                                              "linewidth": 1.5})
    box.set_gid(f"label:{_name(edge.source)}->{_name(edge.target)}")
    ax.add_artist(box)


def _lock() -> DrawingArea:
    # Drawn, not typed: the bundled fonts have no padlock glyph, and a missing glyph is a warning (an error in CI).
    lock = DrawingArea(11, 13)
    lock.add_artist(Wedge((5.5, 7.0), 3.6, 0, 180, width=1.4, facecolor=style.SAFE, edgecolor="none"))
    lock.add_artist(Rectangle((0.5, 0.0), 10, 7.2, facecolor=style.SAFE, edgecolor="none"))
    lock.set_gid("mtls-lock")
    return lock


_Rect = tuple[float, float, float, float]
# Fractions of an edge tried in turn for its label: the middle first, then outwards, so fan-outs (a gateway to
# two pods, a service to pods and gateways) keep their labels off each other and off the nodes.
_SPOTS = (0.5, 0.42, 0.58, 0.34, 0.66, 0.27, 0.73, 0.2, 0.8)


def _label_spot(points: np.ndarray, size: tuple[float, float], taken: list[_Rect]) -> np.ndarray:
    steps = np.hypot(*np.diff(points, axis=0).T)
    distance = np.concatenate([[0.0], np.cumsum(steps)])
    width, height = size
    best: tuple[float, np.ndarray, _Rect] | None = None
    for fraction in _SPOTS:
        spot = np.array([np.interp(fraction * distance[-1], distance, points[:, i]) for i in (0, 1)])
        rect = (spot[0] - width / 2, spot[1] - height / 2, spot[0] + width / 2, spot[1] + height / 2)
        covered = sum(_overlap(rect, other) for other in taken)
        # Strictly less: among equally good spots the one nearest the middle wins.
        if best is None or covered < best[0]:
            best = (covered, spot, rect)
        if covered == 0:
            break
    assert best is not None
    taken.append(best[2])
    return best[1]


def _overlap(a: _Rect, b: _Rect) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _text_size(lines: Sequence[str], points: float, *, bold: bool = False) -> tuple[float, float]:
    # An estimate in data units (DejaVu Sans averages ~0.6 em a character): good enough to keep labels apart
    # without drawing the figure first.
    em = points / 72 / _UNIT_INCHES
    return (max((len(line) for line in lines), default=0) * em * (0.66 if bold else 0.6), len(lines) * em * 1.2)


def _label_size(edge: Edge) -> tuple[float, float]:
    width, height = _text_size([f"{(edge.share or 0) * 100:.0f} %"] if edge.share is not None else [],
                               style.NOTE_SIZE, bold=True)
    if edge.label:
        more = _text_size([edge.label], style.SMALL_SIZE - 1)
        width, height = max(width, more[0]), height + more[1]
    pad = 0.16 / _UNIT_INCHES
    lock = 0.2 / _UNIT_INCHES if edge.mtls else 0.0
    return width + lock + pad, max(height, 0.2 / _UNIT_INCHES) + pad


def _node_rects(workload: Workload, at: tuple[float, float]) -> list[_Rect]:
    x, y = at
    reach = _reach(workload) + 0.05
    rects: list[_Rect] = [(x - reach, y - reach, x + reach, y + reach)]
    if workload.kind == "pod":
        w, h = _text_size(style.wrap_name(workload.name, 14).splitlines(), style.SMALL_SIZE)
        rects.append((x + _R + 0.15, y - h / 2, x + _R + 0.15 + w, y + h / 2))
    elif workload.kind == "gateway":
        w, h = _text_size([workload.name], style.SMALL_SIZE)
        rects.append((x + _R * 1.25 + 0.1, -0.12 - h, x + _R * 1.25 + 0.1 + w, -0.12))
    else:
        w, h = _text_size(style.wrap_name(workload.name, 14).splitlines(), style.SMALL_SIZE)
        rects.append((x - w / 2, y + _R + 0.15, x + w / 2, y + _R + 0.15 + h))
    return rects


def _lane_path(start: np.ndarray, end: np.ndarray, lane: float) -> np.ndarray:
    # Down out of the source's box, along its own lane below all boxes, up into the target (a remote gateway
    # from below): the call visibly leaves its network, and lanes at distinct depths never overlap.
    direction = 1.0 if end[0] >= start[0] else -1.0
    corner = min(_CORNER, abs(end[0] - start[0]) / 2)
    angles = np.linspace(0.0, math.pi / 2, 12)
    first = np.column_stack([start[0] + direction * corner * (1 - np.cos(angles)),
                             -lane + corner * (1 - np.sin(angles))])
    second = np.column_stack([end[0] - direction * corner * (1 - np.sin(angles)),
                              -lane + corner * (1 - np.cos(angles))])
    down = np.linspace(start, (start[0], -lane + corner), 40)
    up = np.linspace((end[0], -lane + corner), end, 40)
    return np.vstack([down, first, second, up])


def _trim(points: np.ndarray, start: np.ndarray, start_gap: float, end: np.ndarray, end_gap: float) -> np.ndarray:
    # Arrows stop at the node's outline instead of its centre, so the head stays visible.
    keep = (np.hypot(*(points - start).T) >= start_gap) & (np.hypot(*(points - end).T) >= end_gap)
    kept = points[keep]
    return kept if len(kept) >= 2 else np.array([start, end])


def _reach(workload: Workload) -> float:
    return {"pod": _R, "gateway": _R * 1.25, "service": _R * 1.3, "client": _R * 1.2}[workload.kind]


def _name(workload: Workload) -> str:
    return f"{workload.cluster}/{workload.namespace}/{workload.name}"

