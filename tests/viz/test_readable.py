"""Every chart is readable at JupyterLab's default width: no text under 9 px once the figure fits the column.

A figure wider than the notebook's column (about 950 px) is shrunk to fit, text included; the issue that
prompted this saw a 1,800 px topology come out at 6–7 px. The live view renders at its displayed size.
"""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.figure import Figure

from labkit.labs import nlb_headless
from labkit.traffic import Capture, Stream
from labkit.viz import Topology, credentials_chart, distribution_chart, remote_secret_grants, topology_chart
from labkit.viz.style import READABLE_PX, displayed_text_px

from .conftest import make_calls

THREE = ["cluster1", "cluster2", "cluster3"]


def smallest(figure: Figure) -> tuple[str, float]:
    figure.canvas.draw()
    sizes = displayed_text_px(figure)
    text = min(sizes, key=sizes.__getitem__)
    return text, sizes[text]


def every_chart(lab1: Topology) -> dict[str, Figure]:
    calls = make_calls({source: THREE * 10 for source in THREE})
    request = b"GET / HTTP/1.1\r\nhost: newlb.secure.svc.cluster.local:443\r\n\r\n"
    tls = bytes([23, 3, 3, 0, 40]) + bytes(range(40))
    plain = Capture("lb", 6.0, (Stream(1, "to_endpoint", "127.0.0.1:1", "127.1.2.3:8443", request),))
    encrypted = Capture("lb", 6.0, (Stream(2, "to_endpoint", "127.0.0.1:2", "127.1.2.3:8443", tls),))
    return {
        "distribution by instance": distribution_chart(calls, by="instance"),
        "distribution with expected": distribution_chart(
            calls.assign(route=calls["instance"]), by="route",
            expected={s: dict.fromkeys(set(calls["instance"]), 1 / 3) for s in THREE}),
        "live view": distribution_chart(calls[calls["source"] == "cluster2"], by="version", width=8.8),
        "topology": topology_chart(lab1),
        "credentials": credentials_chart(remote_secret_grants(THREE), clusters=THREE),
        "wire": nlb_headless.compare(encrypted, plain),
    }


@pytest.mark.parametrize("name", ["distribution by instance", "distribution with expected", "live view", "topology",
                                  "credentials", "wire"])
def test_no_text_under_9_px_at_notebook_width(name: str, lab1: Topology) -> None:
    text, px = smallest(every_chart(lab1)[name])
    assert px >= READABLE_PX, f"{name}: {text!r} is {px:.1f} px on screen"


def test_the_measure_sees_a_shrunk_figure() -> None:
    from labkit.viz import style

    figure = style.new_figure(19.0, 4.0)  # 1,900 px: shown at half size
    figure.text(0.5, 0.5, "tiny", fontsize=12)
    assert displayed_text_px(figure)["tiny"] == pytest.approx(12 * 100 / 72 / 2)
    assert pd.notna(READABLE_PX)
