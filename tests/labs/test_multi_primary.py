"""Shares and topology on a mesh that is not Lab 1's: four clusters, two networks, one gateway per network.

Clusters a and b share network1, c and d network2; only a and c run an east-west gateway; helloworld runs
1/3/0/2 replicas in a/b/c/d. So a's sidecar must dial its own pod and b's three pods directly (same network)
and reach d's two pods through network2's gateway (in c) with weight 2; c, with no pod of its own, dials d's
pods and reaches network1's pods through a's gateway (which istiod sends once per locality behind it, and Envoy
keeps once: the first). The predictions (:func:`expected_shares`) and the
picture (:func:`topology`) must follow the sidecar's own endpoint weights and the gateways that exist.
One setup (real Envoys, four istiods) serves every test of the module.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from labkit import istio, kube
from labkit.lab import Lab
from labkit.labs import multi_primary
from labkit.testing import eventually, running_lab

CLUSTERS = ("a", "b", "c", "d")
NETWORKS = {"a": "network1", "b": "network1", "c": "network2", "d": "network2"}
GATEWAYS = ("a", "c")
REPLICAS = {"a": 1, "b": 3, "c": 0, "d": 2}
CALLERS = ("a", "c")
SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
URL = "http://helloworld.sample:5000/hello"
HELLOWORLD = "outbound|5000||helloworld.sample.svc.cluster.local"

pytestmark = [pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


def helloworld(replicas: int) -> list[dict]:
    """The helloworld Service and its v1 Deployment with ``replicas`` pods."""
    documents = [d.body for d in kube.load_documents(SAMPLES / "helloworld.yaml")
                 if d.labels.get("service") == "helloworld" or d.labels.get("version") == "v1"]
    for body in documents:
        if body["kind"] == "Deployment":
            body["spec"]["replicas"] = replicas
    return documents


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    state = tmp_path_factory.mktemp("four-clusters")
    # The clusters of one Istio network share one physical network too: a and b reach each other's pods.
    with running_lab("multi-primary", CLUSTERS, state, networks=NETWORKS) as lab:
        istio.install_multi_primary([cluster.context for cluster in lab], state / "certs", networks=NETWORKS,
                                    gateways=GATEWAYS, timeout=90)
        for cluster in lab:
            cluster.namespace("sample", labels={"istio-injection": "enabled"})
            cluster.apply(helloworld(REPLICAS[cluster.name]), namespace="sample", quiet=True)
            if cluster.name in CALLERS:
                cluster.apply("sleep.yaml", namespace="sample", quiet=True)
        for cluster in lab:
            targets = ["deploy/helloworld-v1"] + (["deploy/sleep"] if cluster.name in CALLERS else [])
            kube.wait_ready(cluster.context, "sample", targets, timeout=90)
        yield lab


def endpoints_of(lab: Lab, caller: str, rows: int, weight: int = sum(REPLICAS.values())) -> istio.EndpointTable:
    """The caller's helloworld endpoints, once its sidecar lists ``rows`` of them with weights adding up to
    ``weight`` (every pod of the mesh by default; remote secrets take a moment, and a gateway's weight grows as
    the pods behind it are discovered)."""

    def listed() -> istio.EndpointTable | None:
        table = lab[caller].endpoints("deploy/sleep.sample", envoy_cluster=HELLOWORLD)
        return table if len(table.rows) == rows and sum(row.weight for row in table.rows) == weight else None

    return eventually(listed, 60, f"{rows} endpoints in {caller}'s sidecar")


def pods_of(lab: Lab, *clusters: str) -> dict[str, str]:
    return {f"{p.ip}:5000": p.name for c in clusters for p in lab[c].pods("sample", "app=helloworld")}


def test_a_dials_its_network_directly_and_network2_through_its_one_gateway(lab: Lab) -> None:
    table = endpoints_of(lab, "a", 1 + 3 + 1)
    gateway = f"{lab.c.gateway_address()}:15443"
    direct = pods_of(lab, "a", "b")
    assert {row.endpoint for row in table.rows} == set(direct) | {gateway}
    weights = {row.endpoint: row.weight for row in table.rows}
    total = sum(weights.values())
    assert weights[gateway] == 2 * weights[next(iter(direct))]  # d's two pods stand behind it

    expected = multi_primary.expected_shares(lab, "a")
    # One key per route, as the sidecar's own weights say: every pod of network1 for itself, network2 as a whole.
    assert expected == pytest.approx({**{direct[e]: weights[e] / total for e in direct},
                                      "network2 gateway": weights[gateway] / total})
    assert expected["network2 gateway"] == pytest.approx(2 / 6)
    assert all(share == pytest.approx(1 / 6) for key, share in expected.items() if key != "network2 gateway")


def test_c_with_no_pod_of_its_own_dials_d_and_reaches_network1_through_a(lab: Lab) -> None:
    # istiod sends a's gateway once per locality behind it (a's one pod, b's three: a and b are different zones),
    # but Envoy keeps only the first occurrence of an address in an EDS update (envoyproxy/envoy#23445): the
    # sidecar lists the gateway once, with a's weight, and the prediction follows what the sidecar holds.
    table = endpoints_of(lab, "c", 1 + 2, weight=1 + 2)
    gateway = f"{lab.a.gateway_address()}:15443"
    assert {row.endpoint for row in table.rows} == set(pods_of(lab, "d")) | {gateway}
    assert [row.weight for row in table.rows if row.endpoint == gateway] == [1]
    expected = multi_primary.expected_shares(lab, "c")
    assert expected["network1 gateway"] == pytest.approx(1 / 3)
    assert sorted(v for k, v in expected.items() if k != "network1 gateway") == pytest.approx([1 / 3, 1 / 3])


def test_topology_draws_only_the_gateways_that_exist_and_same_network_pods_directly(lab: Lab) -> None:
    endpoints_of(lab, "a", 5)
    calls = pd.concat([lab.a.call("sample/deploy/sleep", URL, n=60) for _ in range(2)], ignore_index=True)
    assert (calls["status"] == 200).all(), calls[calls["status"] != 200]
    mesh = multi_primary.survey(lab)
    picture = multi_primary.topology(lab, calls, "a", mesh=mesh)
    gateways = [w for w in picture.workloads if w.kind == "gateway"]
    assert [(g.cluster, g.name) for g in gateways] == [("c", "istio-eastwestgateway")]
    network = {i.name: i.network for i in mesh.instances}
    client = next(w for w in picture.workloads if w.kind == "client")
    for edge in picture.edges:
        if edge.source.kind == "gateway":  # behind network2's gateway: only what answered from network2
            assert network[edge.target.name] == "network2"
        elif edge.target.kind == "pod":  # dialled directly: only network1's pods
            assert edge.source == client and network[edge.target.name] == "network1"
    # Measured shares use the same keys as the prediction, and nothing went elsewhere.
    measured = multi_primary.measured_shares(calls, mesh, "a")
    assert set(measured) <= set(multi_primary.expected_shares(lab, "a", mesh=mesh))
    assert sum(measured.values()) == pytest.approx(1.0)
    # Every network1 pod is reached directly: four pods at 1/6 each over 120 sequential calls.
    direct = {e.target.name for e in picture.edges if e.source == client and e.target.kind == "pod"}
    assert direct == {i.name for i in mesh.instances if i.network == "network1"}
