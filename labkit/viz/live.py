"""A live distribution chart for a trainer's demo: calls keep coming, the bars settle, Stop ends it.

A loop in a cell cannot be stopped by a button: the kernel handles clicks between executions. So the loop is an
asyncio task on the kernel's own event loop; each round runs the blocking ``fetch`` (one exec, one curl with
``batch`` URLs) in a worker thread with ``asyncio.to_thread`` and awaits it, which leaves the loop free to handle
the Stop click, and Stop sets an :class:`asyncio.Event` the task checks between rounds. The chart is a plain
matplotlib Figure rendered to PNG into an ``ipywidgets.Image``, never pyplot from a thread.

For nbval the demo cell's output is ignored (widgets travel over comms, which nbval does not compare), and the
next cell calls :meth:`LiveDistribution.stop` and asserts on :attr:`LiveDistribution.calls`. Stopping freezes
``calls``: a batch still in flight when Stop is pressed is discarded, so what the next cell asserts on is what
the chart last showed.
"""

from __future__ import annotations

import asyncio
import time
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
        max_calls: stop by itself once this many calls were collected (None: run until stopped).
        title: the chart's title.
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
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be 1 or more, got {batch}")
        self._fetch = fetch
        self._batch = batch
        self._by: Literal["instance", "version"] = by
        self._expected = expected
        self._max_calls = max_calls
        self._title = title
        self._frames: list[pd.DataFrame] = []
        self._count = 0
        self._task: asyncio.Task[None] | None = None
        self._stop_event: asyncio.Event | None = None
        self._started_at = 0.0
        self._elapsed = 0.0
        self._error: BaseException | None = None

        self.image = widgets.Image(format="png")
        self.status = widgets.Label(value="not started")
        self.start_button = widgets.Button(description="Start", icon="play", button_style="success")
        self.stop_button = widgets.Button(description="Stop", icon="stop", button_style="danger", disabled=True)
        self.start_button.on_click(lambda _button: self.start())
        self.stop_button.on_click(lambda _button: self.stop())
        super().__init__(children=[self.image, self.status, widgets.HBox([self.start_button, self.stop_button])])
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

    async def wait(self) -> None:
        """Wait until the loop has ended (after :meth:`stop`, ``max_calls`` or an error)."""
        if self._task is not None:
            await asyncio.shield(self._task)

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

    def _render(self) -> None:
        calls = self.calls
        figure = distribution_chart(calls if not calls.empty else _EMPTY, by=self._by, expected=self._expected,
                                    title=self._title)
        self.image.value = style.to_png(figure, dpi=72)
        self.status.value = self._summary("running" if self.running else "not started")

    def _summary(self, state: str) -> str:
        calls = self.calls
        errors = int(failed(calls).sum()) if not calls.empty else 0
        rate = self._count / self._elapsed if self._elapsed > 0 else 0.0
        return f"{state} · {self._count} calls · {errors} failed · {rate:.0f} req/s"


_EMPTY = pd.DataFrame({"source": pd.Series(dtype=str), "version": pd.Series(dtype=str),
                       "instance": pd.Series(dtype=str), "status": pd.Series(dtype="int64"),
                       "error": pd.Series(dtype=str)})
