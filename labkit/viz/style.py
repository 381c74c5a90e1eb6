"""One look for every labkit picture: palette, font sizes, and the figure they are drawn on.

The charts are read on attendees' laptops and on a trainer's projector from the back of a room, so fonts are
large and colours come from the Okabe–Ito palette, which stays distinguishable for the common forms of colour
blindness. A key (``v1``, an instance name) gets its colour from its rank among the keys of the picture, so
``v1`` has the same colour in every panel of a figure, and — since helloworld versions sort the same way
everywhere — in every figure of a lab. Vermillion is kept out of that rotation: it means *failure* (errors,
Secrets access) and nothing else.

Figures are plain :class:`matplotlib.figure.Figure` objects with an Agg canvas, never pyplot's: pyplot keeps
every figure alive in global state (a leak in a live widget redrawing every second), is not safe from a
thread, and in a notebook would display a figure a second time when the cell also returns it.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Okabe & Ito (2008), "Color Universal Design"; vermillion (#D55E00) is reserved for failures.
PALETTE: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
DANGER = "#D55E00"
SAFE = "#009E73"
INK = "#222222"
MUTED = "#6b6b6b"
BOX_FILL = "#f3f5f8"
BOX_EDGE = "#8a94a6"

TITLE_SIZE = 18
LABEL_SIZE = 14
TICK_SIZE = 13
NOTE_SIZE = 12
SMALL_SIZE = 11

# Screen-sized figures: sharp on a projector at 100 dpi without being slow to render in a live widget.
DPI = 100
# JupyterLab's default notebook column at a 1440 px window, sidebar open: what a wider figure is shrunk to.
NOTEBOOK_WIDTH_PX = 950
# The smallest text an attendee can still read on a laptop, in CSS pixels as displayed.
READABLE_PX = 9.0


class LabFigure(Figure):
    """A :class:`~matplotlib.figure.Figure` that shows itself in a notebook without pyplot.

    IPython asks objects for ``_repr_png_``; pyplot-made figures get that from the inline backend, but labkit's
    figures are made without pyplot, so they bring their own. The ``repr`` stays the one nbval compares for any
    figure (``<Figure size 1400x500 with 3 Axes>``), so stored notebook outputs do not depend on this class.
    """

    def __repr__(self) -> str:
        width, height = self.get_size_inches() * self.dpi
        return f"<Figure size {width:g}x{height:g} with {len(self.axes)} Axes>"

    def _repr_png_(self) -> bytes:
        return to_png(self)


def new_figure(width: float, height: float) -> LabFigure:
    """A figure of ``width`` × ``height`` inches with an Agg canvas, so text extents can be measured before saving.

    Args:
        width: inches.
        height: inches.
    """
    figure = LabFigure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def to_png(figure: Figure, *, dpi: float | None = None) -> bytes:
    """The figure as PNG bytes (for an ``ipywidgets.Image``, a file, or a byte-for-byte comparison in tests).

    Args:
        figure: any matplotlib figure.
        dpi: resolution; the figure's own by default.
    """
    buffer = io.BytesIO()
    # No timestamps or software tags: the same figure gives the same bytes on every run.
    figure.savefig(buffer, format="png", dpi=dpi or figure.dpi, metadata={"Software": None})
    return buffer.getvalue()


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height in pixels of PNG bytes (from the IHDR chunk), e.g. to check a chart is not scaled up."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def displayed_text_px(figure: Figure, *, column_px: float = NOTEBOOK_WIDTH_PX) -> dict[str, float]:
    """Every visible text of a figure and its height in CSS pixels as a notebook shows it.

    A figure wider than the notebook's column is shrunk to fit, and its text with it: a 13 pt label on an
    1,800 px figure ends up at about 7 px. This is the number to keep at :data:`READABLE_PX` or more.

    Args:
        figure: a drawn figure.
        column_px: the width the notebook displays it at, at most.
    """
    from matplotlib.text import Text  # noqa: PLC0415 - only this helper walks artists

    width_px = figure.get_size_inches()[0] * figure.dpi
    shrink = min(1.0, column_px / width_px)
    hidden = {id(label) for ax in figure.axes if not ax.axison  # tick labels of an axes drawn without axis
              for axis in (ax.xaxis, ax.yaxis) for label in axis.get_ticklabels(which="both")}
    sizes: dict[str, float] = {}
    for text in figure.findobj(Text):
        if text.get_visible() and text.get_text().strip() and id(text) not in hidden:
            px = text.get_fontsize() * figure.dpi / 72 * shrink
            sizes[text.get_text()] = min(px, sizes.get(text.get_text(), px))
    return sizes


def natural_key(text: str) -> tuple[object, ...]:
    """Sort key that puts ``cluster2`` before ``cluster10`` and ``v2`` before ``v10``."""
    parts: list[object] = []
    number = ""
    word = ""
    for char in text:
        if char.isdigit():
            if word:
                parts.append((1, word))
                word = ""
            number += char
        else:
            if number:
                parts.append((0, int(number)))
                number = ""
            word += char
    if number:
        parts.append((0, int(number)))
    if word:
        parts.append((1, word))
    return tuple(parts)


def colours_for(keys: Iterable[str]) -> dict[str, str]:
    """A colour per key, by the keys' natural order, so the same key keeps its colour across panels.

    Args:
        keys: every key the picture shows (duplicates are fine).
    """
    ordered = sorted(set(keys), key=natural_key)
    return {key: PALETTE[i % len(PALETTE)] for i, key in enumerate(ordered)}


def wrap_name(name: str, width: int = 16) -> str:
    """A Kubernetes name broken at dashes into lines of about ``width`` characters (pod names are long).

    Args:
        name: e.g. ``helloworld-v1-776f57d5f6-b946k``.
        width: the longest line wanted; a single dash-free part longer than this stays whole.
    """
    lines: list[str] = []
    line = ""
    for part in _dash_parts(name):
        if line and len(line) + len(part) > width:
            lines.append(line)
            line = part
        else:
            line += part
    if line:
        lines.append(line)
    return "\n".join(lines)


def _dash_parts(name: str) -> Sequence[str]:
    pieces = name.split("-")
    return [piece + "-" for piece in pieces[:-1]] + [pieces[-1]]
