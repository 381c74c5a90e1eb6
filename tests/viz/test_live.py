from __future__ import annotations

import asyncio
import threading

import pandas as pd
import pytest

from labkit.errors import LabkitError
from labkit.viz import LiveDistribution

from .conftest import make_calls

BATCH = 5


class FakeFetch:
    """Answers two batches at once, then blocks until released: the test decides when Stop is pressed."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = threading.Event()

    def __call__(self, n: int) -> pd.DataFrame:
        self.calls += 1
        if self.calls > 2:
            self.release.wait(timeout=5)
        return make_calls({"cluster1": ["cluster1", "cluster3"] * (n // 2) + ["cluster2"] * (n % 2)})


async def until(condition, timeout: float = 5.0) -> None:
    # A poll with a deadline, not a sleep: the task runs on this loop and needs it to make progress.
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_collects_until_stopped_and_shows_a_png() -> None:
    fetch = FakeFetch()

    async def scenario() -> LiveDistribution:
        live = LiveDistribution(fetch, batch=BATCH, by="version")
        live.start()
        assert live.running and live.stop_button.disabled is False
        await until(lambda: fetch.calls == 3)  # two batches in, the third in flight
        live.stop()
        fetch.release.set()
        await live.wait()
        return live

    live = asyncio.run(scenario())
    assert not live.running
    assert len(live.calls) == 2 * BATCH  # the batch in flight at Stop is discarded
    assert bytes(live.image.value).startswith(b"\x89PNG")
    assert live.status.value.startswith(f"stopped · {2 * BATCH} calls · 0 failed")
    assert live.start_button.disabled is False and live.stop_button.disabled is True


def test_the_stop_button_stops_it() -> None:
    fetch = FakeFetch()

    async def scenario() -> LiveDistribution:
        live = LiveDistribution(fetch, batch=BATCH)
        live.start_button.click()
        await until(lambda: fetch.calls == 3)
        live.stop_button.click()
        fetch.release.set()
        await live.wait()
        return live

    assert len(asyncio.run(scenario()).calls) == 2 * BATCH


def test_max_calls_ends_the_loop() -> None:
    async def scenario() -> LiveDistribution:
        live = LiveDistribution(lambda n: make_calls({"cluster1": ["cluster1"] * n}), batch=4, max_calls=8)
        live.start()
        await live.wait()
        return live

    live = asyncio.run(scenario())
    assert len(live.calls) == 8 and live.status.value.startswith("done · 8 calls")


def test_a_failing_fetch_ends_the_loop_and_says_why() -> None:
    def broken(n: int) -> pd.DataFrame:
        raise RuntimeError("pod sleep not found")

    async def scenario() -> LiveDistribution:
        live = LiveDistribution(broken)
        live.start()
        await live.wait()
        return live

    live = asyncio.run(scenario())
    assert isinstance(live.error, RuntimeError)
    assert "pod sleep not found" in live.status.value


def test_start_outside_an_event_loop_says_to_use_jupyter() -> None:
    live = LiveDistribution(lambda n: make_calls({}))
    assert bytes(live.image.value).startswith(b"\x89PNG")  # the empty chart, before any call
    with pytest.raises(LabkitError, match="Jupyter"):
        live.start()


def test_until_waits_for_data_and_the_view_ends_as_a_still_of_its_last_frame(monkeypatch) -> None:
    import base64

    import IPython.display

    shown: list[dict] = []
    monkeypatch.setattr(IPython.display, "display", lambda bundle, **kw: shown.append({"display": kw}))
    monkeypatch.setattr(IPython.display, "update_display", lambda bundle, **kw: shown.append({"update": bundle, **kw}))
    fetch = FakeFetch()

    async def scenario() -> tuple[LiveDistribution, int]:
        live = LiveDistribution(fetch, batch=BATCH, max_calls=1000)
        live.start()
        live.show()
        collected = await live.until(calls=2 * BATCH)  # data, not a clock
        assert live.running  # waiting for data does not end the demo
        live.stop_button.click()
        fetch.release.set()
        await live.wait()
        return live, collected

    live, collected = asyncio.run(scenario())
    assert not live.running
    assert collected >= 2 * BATCH
    display_id = shown[0]["display"]["display_id"]
    (still,) = [s for s in shown if "update" in s]
    assert still["display_id"] == display_id and still["raw"] is True
    assert base64.b64decode(still["update"]["image/png"]).startswith(b"\x89PNG")
    assert still["update"]["text/plain"].startswith(f"stopped · {2 * BATCH} calls")


def test_the_widget_puts_status_and_buttons_above_a_chart_shown_at_its_own_size() -> None:
    live = LiveDistribution(lambda n: make_calls({}), width=880)
    controls, image = live.children
    assert live.stop_button in controls.children and live.status in controls.children
    assert image is live.image and image.layout.width == "880px" and image.layout.max_width == "100%"
    from labkit.viz.style import png_size

    assert png_size(bytes(image.value))[0] == 880
