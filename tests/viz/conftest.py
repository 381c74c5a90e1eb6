"""Fixtures for the charts: Agg (no display in CI), figures closed after each test, lab 1's calls and topology."""

from __future__ import annotations

from collections.abc import Iterator

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

from matplotlib import pyplot as plt  # after the backend is chosen

from labkit.viz import Cluster, Edge, Topology, Workload

COLUMNS = ["seq", "source", "url", "status", "version", "instance", "latency_ms", "error", "body"]
URL = "http://helloworld.sample:5000/hello"
PODS = {
    "cluster1": ("helloworld-v1-776f57d5f6-5tr8n", "v1"),
    "cluster2": ("helloworld-v1-776f57d5f6-sbc2j", "v1"),
    "cluster3": ("helloworld-v2-54df5f84b-4vdjq", "v2"),
}


def make_calls(plan: dict[str, list[str | None]]) -> pd.DataFrame:
    """Rows as labkit.traffic.call returns them: for each source, the cluster whose pod answered (None: failed)."""
    rows = []
    seq = 0
    for source, answers in plan.items():
        for i, answer in enumerate(answers):
            if answer is None:
                rows.append((seq, source, URL, 0, None, None, float("nan"), "curl: (7) Failed to connect", ""))
            else:
                instance, version = PODS[answer]
                rows.append((seq, source, URL, 200, version, instance, 1.0 + (i % 7) * 0.5 + (answer != source) * 3,
                             "", f"Hello version: {version}, instance: {instance}\n"))
            seq += 1
    return pd.DataFrame(rows, columns=COLUMNS)


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


@pytest.fixture
def calls() -> pd.DataFrame:
    """30 calls from cluster1 (10 per pod) and 30 from cluster2 with 3 failures."""
    return make_calls({
        "cluster1": ["cluster1", "cluster2", "cluster3"] * 10,
        "cluster2": ["cluster1", "cluster2", "cluster3"] * 9 + [None, None, None],
    })


@pytest.fixture
def lab1() -> Topology:
    """Seed 001 seen from cluster1: a local pod and the two remote gateways, a third each."""
    clusters = [Cluster(f"cluster{i}", f"network{i}") for i in (1, 2, 3)]
    workloads: list[Workload] = []
    parts: dict[str, dict[str, Workload]] = {}
    for cluster in clusters:
        name, version = PODS[cluster.name]
        parts[cluster.name] = {
            "client": Workload(cluster.name, "sample", "sleep", kind="client"),
            "service": Workload(cluster.name, "sample", "helloworld", kind="service"),
            "pod": Workload(cluster.name, "sample", name, version, "pod"),
            "gateway": Workload(cluster.name, "istio-system", "istio-eastwestgateway", kind="gateway"),
        }
        workloads += parts[cluster.name].values()
    one = parts["cluster1"]
    edges = [
        Edge(one["client"], one["service"], 1.0, mtls=True),
        Edge(one["service"], one["pod"], 0.34, mtls=True),
        Edge(one["service"], parts["cluster2"]["gateway"], 0.33, mtls=True, label=":15443"),
        Edge(one["service"], parts["cluster3"]["gateway"], 0.33, mtls=True, label=":15443"),
        Edge(parts["cluster2"]["gateway"], parts["cluster2"]["pod"], 0.33, mtls=True),
        Edge(parts["cluster3"]["gateway"], parts["cluster3"]["pod"], 0.33, mtls=False),
    ]
    return Topology(clusters, workloads, edges)
