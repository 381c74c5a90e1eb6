"""What crossed the wire, as a picture: captures side by side, each connection's bytes as a byte map.

Lab 3's lesson is a difference a learner should *see*: with ``ISTIO_MUTUAL`` the load balancer relays TLS
records — a handshake, then ciphertext that looks like noise — and with ``DISABLE`` it relays ``GET / HTTP/1.1``
that anyone on the path can read. A hex dump shows that only to whoever reads hex. So each capture becomes a
panel, each client connection a block of cells, one cell per byte, 16 to a row as in a hex dump:

- a plaintext byte is drawn as its character on white (so ``GET / HTTP/1.1`` reads as words);
- TLS record headers (5 bytes: type, version, length) are dark, handshake bytes amber, application data
  (ciphertext) a colour taken from the byte's value — random bytes, a random-looking patch.

Inputs are frozen values (:class:`WirePanel`, :class:`WireStream`) holding the bytes and what each byte is
(``labkit.traffic.byte_kinds`` tells); this module never talks to a cluster.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from labkit.viz import style

ByteKind = Literal["header", "handshake", "ciphertext", "plaintext", "other"]
_KINDS: tuple[str, ...] = get_args(ByteKind)
COLUMNS = 16
_CIPHER = colormaps["magma"]
_FILL: dict[str, tuple[float, float, float]] = {
    "header": (0.23, 0.26, 0.32),
    "handshake": (0.96, 0.78, 0.42),
    "plaintext": (1.0, 1.0, 1.0),
    "other": (0.85, 0.85, 0.85),
}
_LEGEND = {"header": "TLS record header", "handshake": "TLS handshake", "ciphertext": "TLS application data",
           "plaintext": "plaintext HTTP"}


@dataclass(frozen=True)
class WireStream:
    """One client connection's bytes, as they crossed.

    Args:
        title: the connection (``#3 127.0.0.1:50000 → 127.0.200.250:443 (517 bytes)``).
        caption: what the bytes are (``GET / HTTP/1.1``, ``TLS ClientHello (SNI …)``).
        data: the bytes to draw (the part that tells the story: a TLS stream's first application data).
        kinds: one of ``header``, ``handshake``, ``ciphertext``, ``plaintext``, ``other`` per byte of ``data``.
    """

    title: str
    caption: str
    data: bytes
    kinds: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(self.kinds))
        if len(self.kinds) != len(self.data):
            raise ValueError(f"stream {self.title!r}: {len(self.data)} bytes but {len(self.kinds)} kinds; give one "
                             f"kind per byte (labkit.traffic.byte_kinds)")
        unknown = set(self.kinds) - set(_KINDS)
        if unknown:
            raise ValueError(f"stream {self.title!r}: unknown byte kinds {sorted(unknown)}; use {', '.join(_KINDS)}")


@dataclass(frozen=True)
class WirePanel:
    """One capture.

    Args:
        label: what was configured (``ISTIO_MUTUAL``).
        verdict: what crossed, in words (``only TLS records: nothing readable``).
        readable: whether something crossed in the clear (the verdict is then drawn as a warning).
        streams: the connections to draw.
    """

    label: str
    verdict: str
    readable: bool
    streams: Sequence[WireStream] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "streams", tuple(self.streams))


def wire_chart(panels: Sequence[WirePanel], *, rows_per_stream: int = 6, title: str | None = None) -> Figure:
    """Captures side by side: per capture, its client connections as byte maps.

    Args:
        panels: the captures, drawn left to right.
        rows_per_stream: rows of 16 bytes drawn per connection.
        title: the figure's title; by default it says what is shown.

    Returns:
        A figure with one axes per panel.
    """
    most = max((len(p.streams) for p in panels), default=1) or 1
    # Room above each byte map for its title and wrapped caption (about 0.65 cell per line of text), so a caption
    # never runs into the panel's title or the stream above it.
    lines = max((len(_heading(s).splitlines()) for p in panels for s in p.streams), default=2)
    head = 0.65 * lines
    figure = style.new_figure(max(7.0, 7.6 * max(len(panels), 1)),
                              1.6 + (0.42 * (rows_per_stream + head) + 0.3) * most)
    figure.suptitle(title or "What crossed the wire: each client connection's bytes",
                    fontsize=style.TITLE_SIZE, color=style.INK)
    if not panels:
        ax = figure.add_subplot()
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no captures", ha="center", va="center", color=style.MUTED, transform=ax.transAxes)
        return figure
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels, strict=True):
        _panel(ax, panel, rows_per_stream, most, head)
    handles = [Patch(facecolor=_CIPHER(0.55) if kind == "ciphertext" else _FILL[kind], edgecolor=style.MUTED,
                     label=text) for kind, text in _LEGEND.items()]
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=style.NOTE_SIZE,
                  frameon=False)
    return figure


def _heading(stream: WireStream) -> str:
    return f"{stream.title}\n{textwrap.fill(stream.caption, 46, break_long_words=False)}"


def _panel(ax: Axes, panel: WirePanel, rows: int, most: int, head: float) -> None:
    ax.set_title(f"{panel.label}\n{panel.verdict}", fontsize=style.LABEL_SIZE,
                 color=style.DANGER if panel.readable else style.SAFE)
    ax.set_axis_off()
    ax.set_aspect("equal")
    ax.set_anchor("N")  # right under its title, whatever room the other panel takes
    stride = rows + head + 0.8
    height = most * stride
    ax.set_xlim(-0.2, COLUMNS + 0.2)
    ax.set_ylim(height + 0.2, -0.2)
    if not panel.streams:
        ax.text(COLUMNS / 2, height / 2, "nothing crossed", ha="center", va="center", color=style.MUTED)
        return
    for index, stream in enumerate(panel.streams):
        _stream(ax, stream, index * stride, rows, head)


def _stream(ax: Axes, stream: WireStream, top: float, rows: int, head: float) -> None:
    data = stream.data[:rows * COLUMNS]
    kinds = stream.kinds[:len(data)]
    ax.text(0, top + head, _heading(stream), fontsize=style.SMALL_SIZE, color=style.INK, va="bottom",
            clip_on=False)
    image = np.ones((rows, COLUMNS, 3))
    for index, (value, kind) in enumerate(zip(data, kinds, strict=True)):
        row, column = divmod(index, COLUMNS)
        image[row, column] = _CIPHER(0.15 + 0.75 * value / 255)[:3] if kind == "ciphertext" else _FILL[kind]
    first = top + head + 0.2
    ax.imshow(image, extent=(0, COLUMNS, first + rows, first), interpolation="nearest")
    used = -(-len(data) // COLUMNS)  # rows with bytes in them: a faint grid, so white cells read as bytes too
    ax.hlines([first + r for r in range(used + 1)], 0, COLUMNS, colors=style.BOX_EDGE, linewidths=0.3)
    ax.vlines(range(COLUMNS + 1), first, first + used, colors=style.BOX_EDGE, linewidths=0.3)
    for index, (value, kind) in enumerate(zip(data, kinds, strict=True)):
        if 32 < value < 127 and kind == "plaintext":
            row, column = divmod(index, COLUMNS)
            ax.text(column + 0.5, first + row + 0.5, chr(value), ha="center", va="center",
                    fontsize=style.SMALL_SIZE, family="monospace", color=style.INK)
