"""Istio's DNS proxy on an embedded cluster: with DNS capture in the mesh config, a pod's DNS goes through its agent.

The path: the injector declares the proxy, the node points the pod's resolver at ``<pod IP>:15053``, the agent
answers there from the name table istiod sends it over NDS (Istio's answers, CNAMEs for search-list expansions
included), and forwards the rest to the cluster DNS.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit import istio, kube
from labkit.testing import eventually, running_emulator

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
OPERATOR = {"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator",
            "metadata": {"name": "control-plane", "namespace": "istio-system"},
            "spec": {"profile": "minimal", "meshConfig": {"defaultConfig": {"proxyMetadata": {
                "ISTIO_META_DNS_CAPTURE": "true"}}}}}

pytestmark = [pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_emulator(("cluster1",), tmp_path_factory.mktemp("dns-home")):
        istio.install("cluster1", OPERATOR, quiet=True, timeout=120)
        kube.apply("cluster1", [{"apiVersion": "v1", "kind": "Namespace",
                                 "metadata": {"name": "sample", "labels": {"istio-injection": "enabled"}}}])
        kube.apply("cluster1", SAMPLES / "sleep.yaml", namespace="sample")
        kube.wait_ready("cluster1", "sample", ["deploy/sleep"], timeout=90)
        yield "cluster1"


def test_the_pods_dns_goes_through_its_agent(cluster: str) -> None:
    (pod,) = kube.pods(cluster, "sample", "app=sleep")
    declared = json.loads(kube.get_object(cluster, "v1", "Pod", pod.name, "sample")["metadata"]["annotations"][
        "labkit.io/sidecar"])
    assert declared["dnsPort"] == 15053
    result = kube.exec_(cluster, "sample", "deploy/sleep", ["nslookup", "kubernetes.default"], container="sleep")
    lines = [line for line in result.stdout.splitlines() if line]
    assert lines[0].startswith("Server:\t\t")  # the cluster DNS, as resolv.conf says, though the agent answered
    # The agent answers from istiod's name table as Istio's does: the first search-list expansion is a CNAME to the
    # service's short alias, which it answers with the ClusterIP (one round trip, no upstream query).
    assert lines[2:5] == ["kubernetes.default.sample.svc.cluster.local\tcanonical name = kubernetes.default.",
                          "Name:\tkubernetes.default", f"Address: {_kubernetes_ip(cluster)}"]
    assert result.exit_code == 0
    missing = kube.exec_(cluster, "sample", "deploy/sleep", ["nslookup", "nowhere.sample"], container="sleep")
    assert (missing.exit_code, missing.stdout.splitlines()[3]) == (1, "** server can't find nowhere.sample: NXDOMAIN")


def _kubernetes_ip(cluster: str) -> str:
    return kube.get_object(cluster, "v1", "Service", "kubernetes", "default")["spec"]["clusterIP"]


def test_the_agent_answers_from_istiods_name_table(cluster: str) -> None:
    """A ServiceEntry without addresses exists only in istiod's name table (auto-allocated from 240.240.0.0/16):
    the pod resolves it, so the table reached the agent over NDS; a pod's cluster DNS alone would say NXDOMAIN."""
    kube.apply(cluster, [{"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                          "metadata": {"name": "external-api", "namespace": "sample"},
                          "spec": {"hosts": ["api.example.internal"], "location": "MESH_EXTERNAL",
                                   "resolution": "DNS",
                                   "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}]}}])

    def answered() -> str | None:
        result = kube.exec_(cluster, "sample", "deploy/sleep", ["nslookup", "api.example.internal"],
                            container="sleep")
        found = [line for line in result.stdout.splitlines() if line.startswith("Address: 240.240.")]
        return found[0] if result.exit_code == 0 and found else None

    assert eventually(answered, 30, "api.example.internal to resolve from the name table").startswith(
        "Address: 240.240.")
