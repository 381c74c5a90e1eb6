from __future__ import annotations

import pytest
from matplotlib.text import Text

from labkit.viz import READER_RESOURCES, Grant, credentials_chart, remote_secret_grants, to_png
from labkit.viz.style import DANGER

CLUSTERS = ["cluster1", "cluster2", "cluster3"]


def test_remote_secrets_give_every_cluster_a_token_for_every_other() -> None:
    grants = remote_secret_grants(CLUSTERS)
    assert len(grants) == 6
    assert {(g.holder_cluster, g.target_cluster) for g in grants} == {
        (a, b) for a in CLUSTERS for b in CLUSTERS if a != b}
    assert all(g.can_read_secrets and g.resources == READER_RESOURCES for g in grants)


def test_each_grant_is_an_arrow_labelled_with_what_it_reads_and_secrets_in_red() -> None:
    figure = credentials_chart(remote_secret_grants(CLUSTERS))
    ax = figure.axes[0]
    arrows = {p.get_gid(): p for p in ax.patches if (p.get_gid() or "").startswith("grant:")}
    assert len(arrows) == 6
    assert all(arrow.get_edgecolor()[:3] == pytest.approx(_rgb(DANGER)) for arrow in arrows.values())
    texts = {t.get_gid(): t for t in ax.texts if t.get_gid()}
    assert "pods, services" in texts["reads:cluster1->cluster2"].get_text()
    secrets = texts["secrets:cluster1->cluster2"]
    assert secrets.get_text().endswith("+ Secrets") and secrets.get_color() == DANGER
    shown = [t.get_text() for t in figure.findobj(Text)]
    assert shown.count("istiod holds 2 tokens") == 3
    assert "Whoever takes over cluster1 can read every Secret of cluster2 and cluster3" in _verdict(figure)


def test_grants_without_secrets_are_not_red() -> None:
    grants = [Grant("cluster1", "cluster2", ("pods", "services"), can_read_secrets=False)]
    figure = credentials_chart(grants, clusters=["cluster1", "cluster2", "cluster3"])
    ax = figure.axes[0]
    assert not [t for t in ax.texts if (t.get_gid() or "").startswith("secrets:")]
    (arrow,) = [p for p in ax.patches if (p.get_gid() or "").startswith("grant:")]
    assert arrow.get_edgecolor()[:3] != pytest.approx(_rgb(DANGER))
    assert {p.get_gid() for p in ax.patches} >= {"cluster:cluster3"}
    assert _verdict(figure) == "No token can read Secrets."


def test_a_grant_needs_two_clusters() -> None:
    with pytest.raises(ValueError, match="itself"):
        Grant("cluster1", "cluster1", (), can_read_secrets=False)


def test_same_grants_same_png(tmp_path) -> None:
    png = to_png(credentials_chart(remote_secret_grants(CLUSTERS)))
    assert png == to_png(credentials_chart(remote_secret_grants(CLUSTERS)))
    (tmp_path / "credentials.png").write_bytes(png)


def _rgb(colour: str) -> tuple[float, float, float]:
    return tuple(int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))  # type: ignore[return-value]


def _verdict(figure) -> str:
    return next(t.get_text() for t in figure.texts if t.get_gid() == "verdict")


def test_each_cluster_is_drawn_once_when_the_order_is_given() -> None:
    grants = [Grant(h, t, ("pods", "secrets"), True) for h in ("cluster1", "cluster2", "cluster3")
              for t in ("cluster1", "cluster2", "cluster3") if h != t]
    figure = credentials_chart(grants, clusters=["cluster1", "cluster2", "cluster3"])
    boxes = [p for p in figure.axes[0].patches if str(p.get_gid()).startswith("cluster:")]
    assert sorted(p.get_gid() for p in boxes) == ["cluster:cluster1", "cluster:cluster2", "cluster:cluster3"]
    top = max(boxes, key=lambda p: p.get_y())
    assert top.get_gid() == "cluster:cluster1"  # the first cluster sits on top, as on a clock face
