"""What a cluster handle prints: one line per apply, prefixed with its cluster, never wider than a notebook."""

from __future__ import annotations

from labkit.cluster import LINE_WIDTH, Applied, summary_line
from labkit.kube.applying import AppliedObject


def made(kind: str, name: str, action: str = "created", group: str = "") -> AppliedObject:
    return AppliedObject(kind, group, name, "sample", action)


def test_one_object_reads_as_kubectl_prefixed_with_the_cluster() -> None:
    assert summary_line("cluster1", [made("Service", "helloworld")]) == "cluster1: service/helloworld created"


def test_several_objects_make_one_line_grouped_by_what_happened() -> None:
    line = summary_line("cluster2", [made("Gateway", "mtls", "configured", "networking.istio.io"),
                                     made("Service", "sleep"), made("Deployment", "sleep", group="apps")])
    assert line == "cluster2: configured gateway.networking.istio.io/mtls; created service/sleep, deployment.apps/sleep"


def test_a_long_apply_fits_the_width_and_says_how_many_it_leaves_out() -> None:
    objects = [made("Deployment", f"helloworld-v{i}-with-a-long-name", group="apps") for i in range(12)]
    line = summary_line("cluster3", objects)
    assert len(line) <= LINE_WIDTH
    assert line.startswith("cluster3 (12 created): created deployment.apps/helloworld-v0-with-a-long-name")
    shown = line.count("deployment.apps/")
    assert line.endswith(f"… and {12 - shown} more")


def test_the_returned_objects_are_not_echoed_again_but_print_as_kubectl_does() -> None:
    applied = Applied([made("Service", "helloworld"), made("Deployment", "sleep", group="apps")])
    assert applied._ipython_display_() is None  # a cell ending with it shows nothing more
    assert str(applied) == "service/helloworld created\ndeployment.apps/sleep created"
