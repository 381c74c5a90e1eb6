from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from labkit.viz import ERRORS, distribution_chart, failed, latency_histogram, to_png

from .conftest import PODS, make_calls


def bars(ax, prefix: str) -> dict[str, float]:
    return {p.get_gid().split(":", 1)[1]: p.get_height() for p in ax.patches
            if isinstance(p, Rectangle) and (p.get_gid() or "").startswith(prefix)}


def texts(figure) -> list[str]:
    return [t.get_text() for t in figure.findobj(Text) if t.get_text()]


def test_one_panel_per_source_on_a_shared_percent_axis(calls: pd.DataFrame) -> None:
    figure = distribution_chart(calls, by="version")
    assert [ax.get_title() for ax in figure.axes] == ["from cluster1  (n = 30)", "from cluster2  (n = 30)"]
    assert all(ax.get_ylim() == figure.axes[0].get_ylim() for ax in figure.axes)
    assert figure.axes[0].get_ylim()[0] == 0 and [t.get_text() for t in figure.axes[0].get_yticklabels()][-1] == "100 %"


def test_measured_shares_per_version_and_an_errors_bar_only_where_calls_failed(calls: pd.DataFrame) -> None:
    first, second = distribution_chart(calls, by="version").axes
    assert bars(first, "measured:") == pytest.approx({"v1": 200 / 3, "v2": 100 / 3})
    assert bars(second, "measured:") == pytest.approx({"v1": 60.0, "v2": 30.0, ERRORS: 10.0})
    assert [t.get_text() for t in first.get_xticklabels()] == ["v1", "v2"]
    assert [t.get_text() for t in second.get_xticklabels()] == ["v1", "v2", ERRORS]


def test_no_errors_bar_without_failures() -> None:
    figure = distribution_chart(make_calls({"cluster1": ["cluster1", "cluster3"] * 5}), by="version")
    assert ERRORS not in bars(figure.axes[0], "measured:")
    assert ERRORS not in texts(figure)


def test_http_errors_count_as_failures(calls: pd.DataFrame) -> None:
    calls.loc[0, ["status", "error"]] = [503, "no healthy upstream"]
    assert failed(calls).sum() == 4
    assert bars(distribution_chart(calls).axes[0], "measured:")[ERRORS] == pytest.approx(100 / 30)


def test_expected_bars_beside_the_measured_ones_with_both_percentages(calls: pd.DataFrame) -> None:
    expected = {"cluster1": {"v1": 2 / 3, "v2": 1 / 3}, "cluster2": {"v1": 2 / 3, "v2": 1 / 3}}
    figure = distribution_chart(calls, by="version", expected=expected)
    first, second = figure.axes
    assert bars(first, "expected:") == pytest.approx({"v1": 200 / 3, "v2": 100 / 3})
    # Failures get no prediction unless one is given.
    assert set(bars(second, "expected:")) == {"v1", "v2"}
    measured = {p.get_gid(): p for p in first.patches if p.get_gid()}
    assert measured["expected:v1"].get_x() > measured["measured:v1"].get_x()
    assert measured["expected:v1"].get_hatch() == "//"
    labels = texts(figure)
    assert {"67 %", "33 %", "exp. 67 %", "exp. 33 %", "60 %", "10 %"} <= set(labels)
    assert {"measured", "expected"} <= set(labels)


def test_expected_keys_without_answers_get_an_empty_measured_bar() -> None:
    figure = distribution_chart(make_calls({"cluster1": ["cluster1"] * 4}), expected={"cluster1": {"v1": .5, "v2": .5}})
    assert bars(figure.axes[0], "measured:") == {"v1": 100.0, "v2": 0.0}


def test_expected_shares_must_be_fractions(calls: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="divide percentages by 100"):
        distribution_chart(calls, expected={"cluster1": {"v1": 66.7}})


def test_missing_column_is_named(calls: pd.DataFrame) -> None:
    with pytest.raises(KeyError, match="'instance'"):
        distribution_chart(calls.drop(columns="instance"), by="instance")


def test_colours_are_the_same_for_a_key_in_every_panel(calls: pd.DataFrame) -> None:
    figure = distribution_chart(calls, by="instance")
    colours = [{p.get_gid(): p.get_facecolor() for p in ax.patches if p.get_gid()} for ax in figure.axes]
    for key in (f"measured:{name}" for name, _ in PODS.values()):
        assert colours[0][key] == colours[1][key]
    assert len({colours[0][f"measured:{name}"] for name, _ in PODS.values()}) == 3


def test_instance_ticks_are_short_and_the_legend_has_full_names(calls: pd.DataFrame) -> None:
    figure = distribution_chart(calls, by="instance")
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["v1\n…5tr8n", "v1\n…sbc2j", "v2\n…4vdjq"]
    assert {name for name, _ in PODS.values()} <= set(texts(figure))


def test_no_calls_draws_a_placeholder() -> None:
    figure = distribution_chart(make_calls({}))
    assert "no calls yet" in texts(figure)


def test_repr_is_what_nbval_compares(calls: pd.DataFrame) -> None:
    figure = distribution_chart(calls)
    assert repr(figure) == "<Figure size 980x620 with 2 Axes>"
    assert figure._repr_png_().startswith(b"\x89PNG")


def test_same_data_same_png(calls: pd.DataFrame) -> None:
    expected = {"cluster1": {"v1": 2 / 3, "v2": 1 / 3}}
    assert to_png(distribution_chart(calls, expected=expected)) == to_png(distribution_chart(calls, expected=expected))


def test_latency_histogram_has_percentile_lines_and_a_cumulative_axis(calls: pd.DataFrame) -> None:
    figure = latency_histogram(calls)
    histogram, cumulative = figure.axes
    assert sum(p.get_height() for p in histogram.patches) == 57  # 3 calls had no response
    lines = {line.get_label().split()[0]: line.get_xdata()[0] for line in histogram.get_lines()}
    assert set(lines) == {"p50", "p90", "p99"}
    assert lines["p50"] <= lines["p90"] <= lines["p99"]
    (curve,) = cumulative.get_lines()
    assert curve.get_ydata()[0] == 0 and curve.get_ydata()[-1] == pytest.approx(100)
    assert "3 without response" in figure.get_suptitle()


def test_latency_histogram_without_latencies() -> None:
    assert "no latencies yet" in texts(latency_histogram(make_calls({"cluster1": [None]})))


def test_render_for_a_look(calls: pd.DataFrame, tmp_path) -> None:
    expected = {s: {"v1": 2 / 3, "v2": 1 / 3} for s in ("cluster1", "cluster2")}
    for name, figure in {"versions": distribution_chart(calls, expected=expected),
                         "instances": distribution_chart(calls, by="instance"),
                         "latency": latency_histogram(calls)}.items():
        (tmp_path / f"{name}.png").write_bytes(to_png(figure))
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in tmp_path.iterdir())


def test_route_bars_name_pods_short_and_gateways_on_two_lines() -> None:
    calls = make_calls({"cluster1": ["cluster1", "cluster2", "cluster3", "cluster2"]})
    local = PODS["cluster1"][0]
    calls["route"] = [local, "network2 gateway", "network3 gateway", "network2 gateway"]
    expected = {"cluster1": {local: 1 / 3, "network2 gateway": 1 / 3, "network3 gateway": 1 / 3}}
    ax = distribution_chart(calls, by="route", expected=expected).axes[0]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert "network2\ngateway" in ticks and "network3\ngateway" in ticks
    assert any(t.startswith("v1\n…") for t in ticks)  # the pod dialled directly, as by="instance" shows it
