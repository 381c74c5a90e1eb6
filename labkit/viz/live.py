"""A live distribution chart for a trainer's demo: calls keep coming, the bars settle, Stop ends it.

A loop in a cell cannot be stopped by a button: the kernel handles clicks between executions. So the loop is an
asyncio task on the kernel's own event loop; each round runs the blocking ``fetch`` (one exec, one curl with
``batch`` URLs) in a worker thread with ``asyncio.to_thread`` and awaits it, which leaves the loop free to handle
the Stop click, and Stop sets an :class:`asyncio.Event` the task checks between rounds. The chart is a plain
matplotlib Figure rendered to PNG into an ``ipywidgets.Image``, never pyplot from a thread.

The widget is laid out for a notebook column: the status line and Start/Stop sit above the chart, and the chart
is rendered at the size it is displayed (never a small PNG scaled up by the browser). A Run All must not end the
demo behind the attendee's back, so the loop ends only on Stop or on its call budget (``max_calls``), and the
checkpoint after it waits for data (:meth:`LiveDistribution.until`), not for a clock.

A widget is live state in the kernel: a notebook saved and reopened later has no model for it and JupyterLab
shows "Error displaying widget". So :meth:`LiveDistribution.show` displays it under a display id, and when the
loop ends the widget's output is replaced by a plain image of the last frame and its status line: what is
saved is a picture.

For nbval the demo cell's output is ignored (widgets travel over comms, which nbval does not compare), and the
next cell awaits :meth:`LiveDistribution.until` and asserts on :attr:`LiveDistribution.calls`. Stopping freezes
``calls``: a batch still in flight when Stop is pressed is discarded, so what a cell asserts on after Stop is
what the chart last showed.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Literal

import ipywidgets as widgets
import pandas as pd

from labkit.errors import LabkitError
from labkit.viz import style
from labkit.viz.distribution import distribution_chart, failed

Fetch = Callable[[int], pd.DataFrame]


class LiveDistribution(widgets.VBox):
    """The distribution chart of a call loop that runs until stopped.

    Args:
        fetch: a blocking function returning ``n`` more calls as a DataFrame (e.g.
            ``lambda n: lab.call("cluster1", URL, n=n)``); it runs in a worker thread.
        batch: calls per round; the chart is redrawn after each round.
        by: ``version`` or ``instance``, as in :func:`~labkit.viz.distribution_chart`.
        expected: expected shares per source, as in :func:`~labkit.viz.distribution_chart`.
        max_calls: stop by itself once this many calls were collected (None: run until stopped); a notebook
            sets one so that a Run All leaves the demo running for a while, never for ever.
        title: the chart's title.
        width: the chart's width in pixels, as displayed (a notebook column is about 900–1000 px wide).
    """

    def __init__(
        self,
        fetch: Fetch,
        *,
        batch: int = 20,
        by: Literal["instance", "version"] = "version",
        expected: Mapping[str, Mapping[str, float]] | None = None,
        max_calls: int | None = None,
        title: str | None = None,
        width: int = 880,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be 1 or more, got {batch}")
        self._fetch = fetch
        self._batch = batch
        self._by: Literal["instance", "version"] = by
        self._expected = expected
        self._max_calls = max_calls
        self._title = title
        self._width = width
        self._display_id = f"labkit-live-{uuid.uuid4().hex}"
        self._shown = False
        self._frame = b""
        self._frames: list[pd.DataFrame] = []
        self._count = 0
        self._task: asyncio.Task[None] | None = None
        self._stop_event: asyncio.Event | None = None
        self._started_at = 0.0
        self._elapsed = 0.0
        self._error: BaseException | None = None

        # Shown at its own pixel size (at most the column's width): the browser never scales it up.
        self.image = widgets.Image(format="png", layout=widgets.Layout(width=f"{width}px", max_width="100%"))
        self.status = widgets.Label(value="not started", layout=widgets.Layout(margin="0 0 0 12px"))
        compact = widgets.Layout(width="auto")
        self.start_button = widgets.Button(description="Start", icon="play", button_style="success", layout=compact)
        self.stop_button = widgets.Button(description="Stop", icon="stop", button_style="danger", disabled=True,
                                          layout=compact)
        self.start_button.on_click(lambda _button: self.start())
        self.stop_button.on_click(lambda _button: self.stop())
        controls = widgets.HBox([self.start_button, self.stop_button, self.status],
                                layout=widgets.Layout(align_items="center"))
        super().__init__(children=[controls, self.image])
        self._render()

    @property
    def calls(self) -> pd.DataFrame:
        """Every call collected so far, in order (``seq`` as ``fetch`` returned it)."""
        if not self._frames:
            return pd.DataFrame()
        return pd.concat(self._frames, ignore_index=True)

    @property
    def running(self) -> bool:
        """Whether the loop is collecting."""
        return self._task is not None and not self._task.done()

    @property
    def error(self) -> BaseException | None:
        """The exception that ended the loop, if ``fetch`` raised one (the status line shows it too)."""
        return self._error

    def start(self) -> asyncio.Task[None]:
        """Start (or resume) collecting on the running event loop; returns the task.

        Raises:
            LabkitError: there is no running event loop (plain Python, not a Jupyter kernel).
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError as exc:
            raise LabkitError("LiveDistribution needs a running event loop: use it in a Jupyter notebook (the kernel "
                              "runs one), or collect with labkit.traffic.call and draw with "
                              "labkit.viz.distribution_chart in a script") from exc
        if self._task is not None and not self._task.done():
            return self._task
        self._stop_event = asyncio.Event()
        self._error = None
        self._started_at = time.monotonic() - self._elapsed
        self._task = loop.create_task(self._run(self._stop_event))
        self.start_button.disabled = True
        self.stop_button.disabled = False
        return self._task

    def stop(self) -> None:
        """Stop collecting; :attr:`calls` no longer changes (a batch still in flight is discarded)."""
        if self._stop_event is not None:
            self._stop_event.set()
        self._finish("stopped")

    def show(self) -> None:
        """Display the widget in the running cell; when the loop ends it becomes a picture of its last frame.

        The picture is an ordinary image output, so the notebook saved afterwards shows it on reopening (a widget's
        model lives only as long as its kernel).
        """
        from IPython.display import display  # noqa: PLC0415 - only inside notebooks

        display(self._repr_mimebundle_(), raw=True, display_id=self._display_id)
        self._shown = True

    def _ipython_display_(self) -> None:
        # A cell ending with ``live`` shows it the same way as ``live.show()``.
        self.show()

    async def wait(self) -> None:
        """Wait until the loop has ended (after :meth:`stop`, ``max_calls`` or an error)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def until(self, calls: int, *, timeout: float = 60.0) -> int:
        """Wait until at least ``calls`` calls were collected (or the loop ended); the number collected.

        Args:
            calls: how many to wait for.
            timeout: seconds; a loop still short of ``calls`` after that raises.

        Raises:
            LabkitError: the loop ended by an error, or did not collect ``calls`` within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while self._count < calls and self.running:
            if time.monotonic() > deadline:
                raise LabkitError(f"the live view collected {self._count} calls in {timeout:.0f} s, not {calls}: "
                                  f"is the client pod running? ({self.status.value})")
            await asyncio.sleep(0.1)  # the loop's own task runs meanwhile: this is a poll with a deadline
        if self._error is not None:
            raise LabkitError(f"the live view stopped by an error: {self._error}") from self._error
        return self._count

    async def _run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                frame = await asyncio.to_thread(self._fetch, self._batch)
                if stop.is_set():
                    break
                self._frames.append(frame)
                self._count += len(frame)
                self._elapsed = time.monotonic() - self._started_at
                self._render()
                if self._max_calls is not None and self._count >= self._max_calls:
                    stop.set()
                    self._finish("done")
        except Exception as exc:  # shown in the widget: a task's traceback would otherwise be lost
            self._error = exc
            stop.set()
            self._finish(f"stopped by an error: {exc}")

    def _finish(self, state: str) -> None:
        if self._started_at and self.running:
            self._elapsed = time.monotonic() - self._started_at
        self.start_button.disabled = False
        self.stop_button.disabled = True
        self.status.value = self._summary(state)
        self._freeze()

    def _freeze(self) -> None:
        """Replace the displayed widget by a still of its last frame and status (see the module docstring)."""
        if not self._shown or not self._frame:
            return
        from IPython.display import update_display  # noqa: PLC0415 - only inside notebooks

        # The still carries the status line in its title: the buttons and the label go with the widget.
        calls = self.calls
        title = f"{self._title or f'Which {self._by} answered'}: {self.status.value}"
        figure = distribution_chart(calls if not calls.empty else _EMPTY, by=self._by, expected=self._expected,
                                    title=title, width=self._width / style.DPI)
        picture = {"image/png": base64.b64encode(style.to_png(figure)).decode(), "text/plain": self.status.value}
        update_display(picture, raw=True, display_id=self._display_id,
                       metadata={"image/png": {"width": self._width}})
        self._shown = False  # Start again shows a fresh widget in the cell that calls it

    def _render(self) -> None:
        calls = self.calls
        figure = distribution_chart(calls if not calls.empty else _EMPTY, by=self._by, expected=self._expected,
                                    title=self._title, width=self._width / style.DPI)
        self._frame = style.to_png(figure)
        self.image.value = self._frame
        self.status.value = self._summary("running" if self.running else "not started")

    def _summary(self, state: str) -> str:
        calls = self.calls
        errors = int(failed(calls).sum()) if not calls.empty else 0
        rate = self._count / self._elapsed if self._elapsed > 0 else 0.0
        return f"{state} · {self._count} calls · {errors} failed · {rate:.0f} req/s"


_EMPTY = pd.DataFrame({"source": pd.Series(dtype=str), "version": pd.Series(dtype=str),
                       "instance": pd.Series(dtype=str), "status": pd.Series(dtype="int64"),
                       "error": pd.Series(dtype=str)})
