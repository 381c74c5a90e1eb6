"""Where the calls went: one bar chart per calling cluster, and a Fortio-like latency histogram.

Seed 001's lesson is a distribution: from cluster1, helloworld answers from the local pod and, through the
east-west gateways, from the pods of cluster2 and cluster3 — in proportions the endpoints' weights predict.
So each calling cluster gets its own panel (on one shared 0–100 % axis, so panels compare at a glance), each
key a bar of its measured share, the prediction beside it as a hatched outline, and failed requests a bar of
their own: when a lab scales a version to zero, the share that now fails *is* the lesson, and hiding it would
make the survivors look like 100 %.

Input is the calls DataFrame of ``labkit.traffic.call`` (``seq, source, url, status, version, instance,
latency_ms, error, body``); this module reads only ``source``, ``status``, ``error``, the ``by`` column and
``latency_ms``, and never talks to a cluster.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from labkit.viz import style

ERRORS = "errors"
"""The bar (and key) of failed requests: no HTTP response, an HTTP error, or curl's error message."""
MISSING = "(none)"
"""The key of successful answers that did not name a version/instance (not helloworld)."""

_POD_NAME = re.compile(r"^(.*?)-[a-z0-9]{6,10}-([a-z0-9]{5})$")
_BAR = 0.38
_Y_TOP = 100.0
# Room above 100 % for the labels of a full bar.
_Y_LIMIT = 118.0


def distribution_chart(
    calls: pd.DataFrame,
    *,
    by: Literal["instance", "version", "route"] = "version",
    expected: Mapping[str, Mapping[str, float]] | None = None,
    title: str | None = None,
    width: float | None = None,
) -> Figure:
    """Measured (and, given ``expected``, predicted) share of calls per key, one panel per calling cluster.

    Args:
        calls: one row per request, as ``labkit.traffic.call`` returns (several loops may be concatenated).
        by: the column whose values are the bars: ``version`` (v1, v2), ``instance`` (pod names) or ``route``
            (how the caller's sidecar reached them: a pod dialled directly, or a network's gateway; see
            ``labkit.labs.multi_primary.with_routes``).
        expected: ``{source: {key: fraction}}`` with fractions between 0 and 1 (what
            ``labkit.traffic.expected_shares`` returns, per source); drawn beside the measured bars.
        title: the figure's title; by default it says what is counted.
        width: inches (at :data:`~labkit.viz.style.DPI`); by default wide enough for every panel. A narrower
            figure (the live view's) is also lower, so its text stays the same size on screen.

    Returns:
        A figure with one axes per source cluster, sources in natural order (cluster1, cluster2, …).

    Raises:
        KeyError: ``calls`` lacks ``source`` or the ``by`` column.
        ValueError: an expected share outside 0–1 (percentages must be divided by 100).
    """
    _require(calls, ("source", by))
    expected = _checked_expected(expected or {})
    sources = sorted({str(s) for s in calls["source"]} | set(expected), key=style.natural_key)
    keyed = _keys(calls, by)
    all_keys = set(keyed["key"]) - {ERRORS} | {k for shares in expected.values() for k in shares} - {ERRORS}
    colours = style.colours_for(all_keys)

    natural = max(7.0, 4.6 * max(len(sources), 1) + 0.6)
    figure = style.new_figure(width or natural, 6.2 if width is None else min(6.2, max(3.6, width * 0.5)))
    figure.suptitle(title or f"Which {by} answered, per calling cluster", fontsize=style.TITLE_SIZE,
                    color=style.INK)
    if not sources:
        ax = figure.add_subplot()
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no calls yet", ha="center", va="center", fontsize=style.LABEL_SIZE, color=style.MUTED,
                transform=ax.transAxes)
        return figure

    axes = figure.subplots(1, len(sources), sharey=True, squeeze=False)[0]
    for i, (ax, source) in enumerate(zip(axes, sources, strict=True)):
        rows = keyed[keyed["source"] == source]
        _panel(ax, rows, expected.get(source), colours, source=source, first=i == 0, by=by)
    handles = []
    if by in ("instance", "route"):
        handles += [Patch(facecolor=colour, label=key) for key, colour in colours.items() if key != MISSING]
    if expected:
        handles += [Patch(facecolor=style.MUTED, label="measured"),
                    Patch(facecolor="white", edgecolor=style.MUTED, hatch="//", label="expected")]
    if handles:
        columns = min(len(handles), 3 if by in ("instance", "route") else 4)
        figure.legend(handles=handles, loc="outside lower center", ncols=columns, fontsize=style.NOTE_SIZE,
                      frameon=False)
    return figure


def latency_histogram(calls: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Fortio's view of a loop's latency: a histogram, the cumulative %, and p50/p90/p99 lines.

    Requests that got no HTTP response have no latency and are left out (the count of them is in the title).

    Args:
        calls: one row per request, with ``latency_ms``.
        title: the figure's title; by default the count, mean and range.

    Returns:
        A figure with the histogram axes (counts, left) and its twin (cumulative %, right).

    Raises:
        KeyError: ``calls`` lacks ``latency_ms``.
    """
    _require(calls, ("latency_ms",))
    latencies = pd.to_numeric(calls["latency_ms"], errors="coerce").dropna().to_numpy(dtype=float)
    missing = len(calls) - len(latencies)
    figure = style.new_figure(12.0, 5.8)
    ax = figure.add_subplot()
    ax.set_xlabel("latency (ms)", fontsize=style.LABEL_SIZE)
    ax.set_ylabel("requests", fontsize=style.LABEL_SIZE)
    ax.tick_params(labelsize=style.TICK_SIZE)
    ax.spines[["top"]].set_visible(False)
    if len(latencies) == 0:
        ax.text(0.5, 0.5, "no latencies yet", ha="center", va="center", fontsize=style.LABEL_SIZE,
                color=style.MUTED, transform=ax.transAxes)
        figure.suptitle(title or "Latency", fontsize=style.TITLE_SIZE)
        return figure

    low, high = float(latencies.min()), float(latencies.max())
    if math.isclose(low, high):
        low, high = low - 0.5, high + 0.5
    # Fortio-like resolution: enough bins to show a second mode (a remote gateway hop), never a comb.
    bins = int(min(40, max(10, math.sqrt(len(latencies)) * 2)))
    counts, edges = np.histogram(latencies, bins=bins, range=(low, high))
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=style.PALETTE[0], alpha=0.85,
           edgecolor="white", linewidth=0.6, label="requests")

    cumulative = ax.twinx()
    share_below = np.concatenate([[0.0], np.cumsum(counts) / len(latencies) * 100.0])
    cumulative.plot(edges, share_below, color=style.PALETTE[1], linewidth=2.5, label="cumulative %")
    cumulative.set_ylim(0, 105)
    cumulative.set_ylabel("cumulative %", fontsize=style.LABEL_SIZE, color=style.PALETTE[1])
    cumulative.tick_params(labelsize=style.TICK_SIZE, colors=style.PALETTE[1])
    cumulative.spines[["top"]].set_visible(False)

    percentile_styles = (("p50", 50, "-"), ("p90", 90, "--"), ("p99", 99, ":"))
    for name, q, dash in percentile_styles:
        value = float(np.percentile(latencies, q))
        ax.axvline(value, color=style.INK, linestyle=dash, linewidth=2, label=f"{name} {_ms(value)}")

    handles = ax.get_legend_handles_labels()[0] + cumulative.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="center right", fontsize=style.NOTE_SIZE, frameon=True, framealpha=0.9)
    failed = f", {missing} without response" if missing else ""
    figure.suptitle(title or (f"Latency of {len(latencies)} requests{failed}: mean {_ms(float(latencies.mean()))}, "
                              f"min {_ms(float(latencies.min()))}, "
                              f"max {_ms(float(latencies.max()))}"),
                    fontsize=style.TITLE_SIZE, color=style.INK)
    return figure


def failed(calls: pd.DataFrame) -> pd.Series:
    """Which requests failed: no HTTP response (status 0), an HTTP error, or an error message.

    Args:
        calls: one row per request.
    """
    result = pd.Series(False, index=calls.index)
    if "status" in calls.columns:
        status = pd.to_numeric(calls["status"], errors="coerce").fillna(0)
        result |= (status == 0) | (status >= 400)
    if "error" in calls.columns:
        result |= calls["error"].map(_present_text).astype(bool)
    return result


def _panel(ax: Axes, rows: pd.DataFrame, expected: Mapping[str, float] | None, colours: Mapping[str, str], *,
           source: str, first: bool, by: str) -> None:
    n = len(rows)
    counts = rows["key"].value_counts()
    keys = sorted((set(counts.index) | set(expected or {})) - {ERRORS}, key=style.natural_key)
    if ERRORS in counts.index or (expected and ERRORS in expected):
        keys.append(ERRORS)
    x = np.arange(len(keys), dtype=float)
    offset = _BAR / 2 if expected else 0.0
    for xi, key in zip(x, keys, strict=True):
        colour = style.DANGER if key == ERRORS else colours[key]
        share = counts.get(key, 0) / n * 100.0 if n else 0.0
        # Failures have no prediction unless the lab gives one (a version scaled to zero); alone, a bar is centred.
        want = None if not expected or (key == ERRORS and key not in expected) else expected.get(key, 0.0) * 100.0
        ax.bar(xi - (offset if want is not None else 0.0), share, width=_BAR, color=colour, edgecolor=colour,
               label=key, gid=f"measured:{key}")
        top = share
        if want is not None:
            ax.bar(xi + offset, want, width=_BAR, facecolor="white", edgecolor=colour, hatch="//", linewidth=2,
                   gid=f"expected:{key}")
            top = max(top, want)
        # Both numbers above the pair, measured first: side by side they would collide when bars are narrow.
        ax.annotate(f"{share:.0f} %", (xi, top), xytext=(0, 4 + (16 if want is not None else 0)),
                    textcoords="offset points", ha="center", va="bottom", fontsize=style.LABEL_SIZE,
                    fontweight="bold", color=style.DANGER if key == ERRORS else style.INK, gid=f"measured-label:{key}")
        if want is not None:
            ax.annotate(f"exp. {want:.0f} %", (xi, top), xytext=(0, 3), textcoords="offset points", ha="center",
                        va="bottom", fontsize=style.SMALL_SIZE, fontstyle="italic", color=style.MUTED,
                        gid=f"expected-label:{key}")
    ax.set_xticks(x, [_tick(k, by) for k in keys], fontsize=style.TICK_SIZE)
    for tick, key in zip(ax.get_xticklabels(), keys, strict=True):
        if key == ERRORS:
            tick.set_color(style.DANGER)
    ax.set_xlim(-0.6, max(len(keys) - 0.4, 0.6))
    ax.set_ylim(0, _Y_LIMIT)
    ax.set_yticks([0, 25, 50, 75, 100], ["0 %", "25 %", "50 %", "75 %", "100 %"])
    ax.tick_params(axis="y", labelsize=style.TICK_SIZE)
    ax.grid(axis="y", color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(f"from {source}  (n = {n})", fontsize=style.LABEL_SIZE + 1, color=style.INK)
    if first:
        ax.set_ylabel("share of calls", fontsize=style.LABEL_SIZE)
    if not keys:
        ax.text(0.5, 0.5, "no calls", ha="center", va="center", fontsize=style.LABEL_SIZE, color=style.MUTED,
                transform=ax.transAxes)


def _keys(calls: pd.DataFrame, by: str) -> pd.DataFrame:
    bad = failed(calls)
    values = calls[by].map(lambda v: str(v) if _present_text(v) else MISSING)
    keys = values.where(~bad, ERRORS)
    return pd.DataFrame({"source": calls["source"].map(str).to_numpy(), "key": keys.to_numpy()})


def _checked_expected(expected: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    checked: dict[str, dict[str, float]] = {}
    for source, shares in expected.items():
        for key, share in shares.items():
            if not 0.0 <= float(share) <= 1.0:
                raise ValueError(f"expected share for {source}/{key} is {share}; shares are fractions between 0 and "
                                 f"1 (divide percentages by 100)")
        checked[str(source)] = {str(k): float(v) for k, v in shares.items()}
    return checked


def _require(calls: pd.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in calls.columns]
    if missing:
        raise KeyError(f"calls have no column {', '.join(map(repr, missing))}; they have "
                       f"{', '.join(map(str, calls.columns)) or 'none'} (labkit.traffic.call returns the right shape)")


def _tick(key: str, by: str) -> str:
    if by not in ("instance", "route") or key in (ERRORS, MISSING):
        return key
    # Pod names are long (helloworld-v1-776f57d5f6-b946k); the tick keeps the part curl's output is told apart
    # by, and the legend below the panels gives the full names.
    match = _POD_NAME.match(key)
    if match:
        return f"{match.group(1).rsplit('-', 1)[-1]}\n…{match.group(2)}"
    # A route that is not a pod (``network2 gateway``): one word a line, so neighbouring ticks never overlap.
    return key.replace(" ", "\n") if by == "route" else style.wrap_name(key, 12)


def _present_text(value: Any) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return bool(str(value).strip())


def _ms(value: float) -> str:
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"
