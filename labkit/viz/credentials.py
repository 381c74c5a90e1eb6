"""Who can read whose Kubernetes API: the price of endpoint discovery with remote secrets.

Seed 001 ends on this drawback. ``istioctl create-remote-secret`` puts a kubeconfig for another cluster's
``istio-reader-service-account`` into each cluster, so in a multi-primary mesh of N clusters every istiod holds
N−1 tokens, and the reader role they carry can list pods, Services, endpoints — and Secrets, cluster-wide. Take
over one cluster and you can read the others' Secrets, ``istio-system/cacerts`` (a plugged-in signing CA key)
among them. The chart draws exactly that: a box per cluster, an arrow from the token's holder to the API it
opens, labelled with what it may read, and Secrets access in the failure colour.

Grants are plain data: a notebook builds them with :func:`remote_secret_grants`, or from the remote secrets and
role rules it inspected; this module never reads a cluster.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path

from labkit.viz import style

READER_RESOURCES: tuple[str, ...] = (
    "pods", "services", "endpoints", "endpointslices", "namespaces", "nodes", "configmaps", "secrets",
    "Istio config",
)
"""What Istio's ``istio-reader-clusterrole`` lets a remote secret's token read (get/list/watch, cluster-wide)."""

_BOX_W = 3.0
_BOX_H = 1.3
_RADIUS = 5.0
# The two arrows of a pair of clusters (one each way) run side by side, each on its right-hand side.
_LANE = 0.28
# Labels sit near the holder's end of their arrow, so the pair's two labels are far apart along the chord.
_LABEL_T = 0.3
_SHOWN = 3


@dataclass(frozen=True)
class Grant:
    """A token one cluster holds for another cluster's API server.

    Args:
        holder_cluster: the cluster that stores the credential (its istiod uses it).
        target_cluster: the cluster whose API the credential opens.
        resources: the resources it may read, e.g. :data:`READER_RESOURCES`.
        can_read_secrets: whether it may read Secrets (drawn in red: the dangerous part).
    """

    holder_cluster: str
    target_cluster: str
    resources: tuple[str, ...]
    can_read_secrets: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "resources", tuple(self.resources))
        if self.holder_cluster == self.target_cluster:
            raise ValueError(f"a grant needs two clusters; {self.holder_cluster} holding a token for itself is "
                             f"not a remote secret")


def remote_secret_grants(clusters: Sequence[str], resources: Sequence[str] = READER_RESOURCES) -> tuple[Grant, ...]:
    """The grants of a multi-primary mesh after ``istioctl create-remote-secret`` for every ordered pair.

    Args:
        clusters: the mesh's cluster names.
        resources: what each token may read; the reader role's resources by default.

    Returns:
        One grant per ordered pair (holder, target), holder ≠ target: N × (N − 1) of them.
    """
    return tuple(Grant(holder, target, tuple(resources), "secrets" in resources)
                 for holder in clusters for target in clusters if holder != target)


def credentials_chart(grants: Iterable[Grant], *, clusters: Sequence[str] = (), title: str | None = None) -> Figure:
    """Draw which cluster holds credentials for which other cluster's API, and what they can read.

    Args:
        grants: the tokens, one per (holder, target).
        clusters: clusters to draw even without grants (and their order); others follow in natural order.
        title: the figure's title; by default it asks the chart's question.

    Returns:
        One axes: a box per cluster, an arrow per grant (red when it can read Secrets) with its label.
    """
    grants = tuple(grants)
    names = list(dict.fromkeys(clusters))
    names += sorted(({g.holder_cluster for g in grants} | {g.target_cluster for g in grants}) - set(names),
                    key=style.natural_key)
    centres = _circle(len(names))
    at = dict(zip(names, centres, strict=True))

    figure = style.new_figure(13.0, 9.0)
    figure.suptitle(title or "Remote secrets: who can read whose Kubernetes API?", fontsize=style.TITLE_SIZE,
                    color=style.INK)
    ax = figure.add_subplot()
    ax.set_aspect("equal")
    ax.set_axis_off()
    xs = [c[0] for c in centres]
    ys = [c[1] for c in centres]
    ax.set_xlim(min(xs) - _BOX_W / 2 - 0.6, max(xs) + _BOX_W / 2 + 0.6)
    ax.set_ylim(min(ys) - _BOX_H / 2 - 0.6, max(ys) + _BOX_H / 2 + 0.4)

    held = {name: sum(1 for g in grants if g.holder_cluster == name) for name in names}
    for name in names:
        _draw_cluster(ax, name, at[name], held[name])
    pairs = sorted(grants, key=lambda g: (style.natural_key(g.holder_cluster), style.natural_key(g.target_cluster)))
    for grant in pairs:
        _draw_grant(ax, grant, at[grant.holder_cluster], at[grant.target_cluster])

    figure.text(0.5, 0.015, _verdict(grants), ha="center", va="bottom", fontsize=style.NOTE_SIZE + 1,
                color=style.DANGER if any(g.can_read_secrets for g in grants) else style.INK, gid="verdict")
    return figure


def _circle(n: int) -> list[np.ndarray]:
    if n == 1:
        return [np.array([0.0, 0.0])]
    # The first cluster on top, the others clockwise, as on a clock face.
    # An ellipse wider than tall: the labels are wide, and the figure is too.
    return [np.array([_RADIUS * 1.45 * math.cos(math.pi / 2 - 2 * math.pi * i / n),
                      _RADIUS * math.sin(math.pi / 2 - 2 * math.pi * i / n)])
            for i in range(n)]


def _draw_cluster(ax: Axes, name: str, centre: np.ndarray, tokens: int) -> None:
    x, y = centre
    ax.add_patch(FancyBboxPatch((x - _BOX_W / 2, y - _BOX_H / 2), _BOX_W, _BOX_H,
                                boxstyle="round,pad=0,rounding_size=0.2", facecolor=style.BOX_FILL,
                                edgecolor=style.BOX_EDGE, linewidth=2, zorder=3, gid=f"cluster:{name}"))
    ax.text(x, y + 0.2, name, ha="center", va="center", fontsize=style.LABEL_SIZE + 2, fontweight="bold",
            color=style.INK, zorder=4)
    noun = "token" if tokens == 1 else "tokens"
    ax.text(x, y - 0.3, f"istiod holds {tokens} {noun}", ha="center", va="center", fontsize=style.NOTE_SIZE,
            color=style.MUTED, zorder=4)


def _draw_grant(ax: Axes, grant: Grant, start: np.ndarray, end: np.ndarray) -> None:
    chord = end - start
    right = np.array([chord[1], -chord[0]]) / np.hypot(*chord)
    t = np.linspace(0.0, 1.0, 120)[:, None]
    points = (start + _LANE * right) + t * chord
    outside = ~(_inside(points, start) | _inside(points, end))
    colour = style.DANGER if grant.can_read_secrets else "#4a5568"
    ax.add_patch(FancyArrowPatch(path=Path(points[outside]), arrowstyle="-|>", mutation_scale=24,
                                 linewidth=3.2 if grant.can_read_secrets else 2.0, color=colour, zorder=2,
                                 gid=f"grant:{grant.holder_cluster}->{grant.target_cluster}"))
    visible = points[outside]
    label_at = visible[0] + _LABEL_T / 0.5 * (visible[len(visible) // 2] - visible[0])
    shown = [r for r in grant.resources if r != "secrets"]
    listed = shown[:_SHOWN] + ([f"+{len(shown) - _SHOWN} more"] if len(shown) > _SHOWN else [])
    # Two names a line: labels stay narrow enough for the short side of the picture.
    text = "reads " + (",\n".join(", ".join(listed[i:i + 2]) for i in range(0, len(listed), 2)) or "nothing")
    ax.text(*label_at, text + ("\n" if grant.can_read_secrets else ""), ha="center", va="center",
            fontsize=style.SMALL_SIZE, color=style.INK, zorder=5, linespacing=1.3,
            bbox={"boxstyle": "round,pad=0.35", "facecolor": "white",
                  "edgecolor": colour, "linewidth": 1.5}, gid=f"reads:{grant.holder_cluster}->{grant.target_cluster}")
    if grant.can_read_secrets:
        # A second text over the first one's empty last line: one Text has one colour, and only this part is red.
        lines = text.count("\n") + 1
        ax.text(label_at[0], label_at[1], "\n" * lines + "+ Secrets", ha="center", va="center",
                fontsize=style.SMALL_SIZE, fontweight="bold", color=style.DANGER, zorder=6, linespacing=1.3,
                gid=f"secrets:{grant.holder_cluster}->{grant.target_cluster}")


def _inside(points: np.ndarray, centre: np.ndarray) -> np.ndarray:
    pad = 0.12
    return ((np.abs(points[:, 0] - centre[0]) <= _BOX_W / 2 + pad)
            & (np.abs(points[:, 1] - centre[1]) <= _BOX_H / 2 + pad))


def _verdict(grants: tuple[Grant, ...]) -> str:
    exposed: dict[str, set[str]] = {}
    for grant in grants:
        if grant.can_read_secrets:
            exposed.setdefault(grant.holder_cluster, set()).add(grant.target_cluster)
    if not exposed:
        return "No token can read Secrets."
    worst = max(sorted(exposed, key=style.natural_key), key=lambda holder: len(exposed[holder]))
    targets = sorted(exposed[worst], key=style.natural_key)
    return (f"Whoever takes over {worst} can read every Secret of {' and '.join(targets)}\n"
            f"(with a plugged-in CA, istio-system/cacerts holds that cluster's signing key).")
