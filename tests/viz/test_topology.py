from __future__ import annotations

import pytest
from matplotlib.offsetbox import AnnotationBbox, DrawingArea
from matplotlib.text import Text

from labkit.viz import Cluster, Edge, Topology, Workload, to_png, topology_chart

from .conftest import PODS


def labels(figure) -> dict[str, AnnotationBbox]:
    return {a.get_gid(): a for a in figure.axes[0].artists if isinstance(a, AnnotationBbox)}


def test_every_cluster_workload_and_edge_is_drawn(lab1: Topology) -> None:
    figure = topology_chart(lab1)
    gids = {p.get_gid() for p in figure.axes[0].patches}
    assert {f"cluster:cluster{i}" for i in (1, 2, 3)} <= gids
    assert {f"node:{w.cluster}/{w.namespace}/{w.name}" for w in lab1.workloads} <= gids
    edges = {g for g in gids if g and g.startswith("edge:")}
    assert len(edges) == len(lab1.edges)
    shown = [t.get_text() for t in figure.findobj(Text)]
    assert {"cluster1", "network1", "sleep", "helloworld", "istio-eastwestgateway"} <= set(shown)
    assert {"v1", "v2"} <= set(shown)
    # Pod names are wrapped at dashes, never cut.
    assert "helloworld-v2-\n54df5f84b-\n4vdjq" in shown  # narrow enough to stay inside its frame


def test_every_edge_is_labelled_with_its_share_in_percent(lab1: Topology) -> None:
    figure = topology_chart(lab1)
    assert len(labels(figure)) == len(lab1.edges)
    shown = [t.get_text() for t in figure.findobj(Text)]
    assert shown.count("33 %") == 4 and shown.count("100 %") == 1 and shown.count("34 %") == 1
    assert shown.count(":15443") == 2


def test_lock_badge_on_mtls_edges_only(lab1: Topology) -> None:
    figure = topology_chart(lab1)
    for edge in lab1.edges:
        name = f"label:{edge.source.cluster}/{edge.source.namespace}/{edge.source.name}->" \
               f"{edge.target.cluster}/{edge.target.namespace}/{edge.target.name}"
        locks = [a for a in labels(figure)[name].findobj(DrawingArea) if a.get_gid() == "mtls-lock"]
        assert len(locks) == (1 if edge.mtls else 0), name


def test_edge_width_grows_with_the_share(lab1: Topology) -> None:
    widths = {p.get_gid(): p.get_linewidth() for p in topology_chart(lab1).axes[0].patches}
    assert widths["edge:cluster1/sample/sleep->cluster1/sample/helloworld"] > \
        widths["edge:cluster1/sample/helloworld->cluster1/sample/" + PODS["cluster1"][0]]


def test_edge_labels_do_not_overlap(lab1: Topology) -> None:
    figure = topology_chart(lab1)
    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)
    boxes = [a.get_window_extent(renderer) for a in labels(figure).values()]
    for i, one in enumerate(boxes):
        for other in boxes[i + 1:]:
            assert not one.overlaps(other)


def test_gateways_sit_on_the_border_and_the_layout_is_fixed(lab1: Topology) -> None:
    first, second = topology_chart(lab1), topology_chart(lab1)
    name = "node:cluster2/istio-system/istio-eastwestgateway"
    gateway = next(p for p in first.axes[0].patches if p.get_gid() == name)
    assert gateway.xy[1] == 0.0  # the boxes' bottom edge
    assert to_png(first) == to_png(second)


def test_a_topology_is_checked_when_made() -> None:
    pod = Workload("cluster9", "sample", "p")
    with pytest.raises(ValueError, match="cluster9"):
        Topology([Cluster("cluster1")], [pod])
    stranger = Workload("cluster1", "sample", "stranger")
    with pytest.raises(ValueError, match="stranger"):
        Topology([Cluster("cluster1")], [], [Edge(stranger, stranger)])
    with pytest.raises(ValueError, match="kind"):
        Workload("cluster1", "sample", "x", kind="deployment")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="divide percentages"):
        Edge(stranger, stranger, share=33)


def test_graph_view(lab1: Topology) -> None:
    graph = lab1.graph()
    assert graph.number_of_nodes() == 12 and graph.number_of_edges() == 6


def test_render_for_a_look(lab1: Topology, tmp_path) -> None:
    (tmp_path / "topology.png").write_bytes(to_png(topology_chart(lab1)))
    assert (tmp_path / "topology.png").stat().st_size > 10_000


def test_the_legend_names_only_the_symbols_drawn(lab1: Topology) -> None:
    without_services = Topology(lab1.clusters, [w for w in lab1.workloads if w.kind != "service"],
                                [e for e in lab1.edges if "service" not in (e.source.kind, e.target.kind)])
    legend = [t.get_text() for t in topology_chart(without_services).texts if "edge width" in t.get_text()]
    assert len(legend) == 1 and "● pod" in legend[0] and "◆ gateway" in legend[0] and "service" not in legend[0]
