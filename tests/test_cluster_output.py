"""What a cluster handle prints: one line per apply, prefixed with its cluster, never wider than a notebook."""

from __future__ import annotations

from labkit.cluster import LINE_WIDTH, Applied, fit_table, summary_line
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


TABLE = """\
NAME                    TYPE           CLUSTER-IP      EXTERNAL-IP     PORT(S)                                                           AGE
istio-eastwestgateway   LoadBalancer   127.167.102.4   127.167.200.5   15021:30003/TCP,15443:30004/TCP,15012:30005/TCP,15017:30006/TCP   3s
istiod                  ClusterIP      127.167.102.2   <none>          15010/TCP,15012/TCP,443/TCP,15014/TCP                             10s"""  # noqa: E501 - as kubectl prints it


def test_a_wide_table_is_cut_to_the_width_and_says_which_column() -> None:
    fitted = fit_table(TABLE).splitlines()
    assert all(len(line) <= LINE_WIDTH for line in fitted)
    assert fitted[-1] == f"(PORT(S) cut to fit {LINE_WIDTH} columns)"
    assert fitted[1].split()[:4] == ["istio-eastwestgateway", "LoadBalancer", "127.167.102.4", "127.167.200.5"]
    assert "15021:30003/TCP,15443:…" in fitted[1] and fitted[1].endswith("3s")


def test_a_narrow_table_is_left_as_kubectl_printed_it() -> None:
    narrow = "NAME      TYPE     DATA   AGE\ncacerts   Opaque   4      1s"
    assert fit_table(narrow) == narrow
