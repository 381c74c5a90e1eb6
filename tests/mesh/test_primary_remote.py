"""Primary-remote on two networks, with real Envoy, real gRPC and real mTLS: one istiod serves two clusters.

cluster1 (network1) runs the only istiod and exposes it through its east-west gateway (``expose-istiod``:
15012 and 15017, TLS passthrough); cluster2 (network2) runs the ``remote`` profile, whose ``istiod`` Service
has no selector and whose Endpoints are that gateway's address. helloworld v1 runs in cluster1, v2 in
cluster2, sleep in both. The tests assert what a learner sees: the remote cluster has no istiod yet its pods
are injected, certified and configured by the primary's; calls reach both clusters; and the remote's config
travels only by the route through the gateway: take that route away and the remote proxies drop out of
``proxy-status`` while still serving with their last configuration, and no new remote pod can be created
(Kubernetes' ``failed calling webhook``); put it back and both heal. Tests run in file order.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from labkit import istio, kube
from labkit.istio.primary_remote import MANIFESTS, install_primary_remote
from labkit.pki import describe, verify_certificate
from labkit.testing import eventually, running_emulator

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
# The official client leaves pooled sockets to the garbage collector after exec streams.
pytestmark = [pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("primary-remote-home")
    with running_emulator(("cluster1", "cluster2"), state):
        install_primary_remote("cluster1", "cluster2", state / "certs")
        for cluster, version in (("cluster1", "v1"), ("cluster2", "v2")):
            kube.apply(cluster, [{"apiVersion": "v1", "kind": "Namespace",
                                  "metadata": {"name": "sample", "labels": {"istio-injection": "enabled"}}}])
            kube.apply(cluster, SAMPLES / "helloworld.yaml", namespace="sample", selector="service=helloworld")
            kube.apply(cluster, SAMPLES / "helloworld.yaml", namespace="sample", selector=f"version={version}")
            kube.apply(cluster, SAMPLES / "sleep.yaml", namespace="sample")
        for cluster in ("cluster1", "cluster2"):
            kube.wait_ready(cluster, "sample", ["deploy/sleep", "deploy/helloworld-" + (
                "v1" if cluster == "cluster1" else "v2")], timeout=90)
        yield state


def answers(cluster: str, n: int = 20) -> Counter[str]:
    """``n`` curls of helloworld from sleep in ``cluster`` (one exec), counted by version."""
    result = kube.exec_(cluster, "sample", "deploy/sleep",
                        ["sh", "-c", f"for i in $(seq {n}); do curl -sS helloworld.sample:5000/hello; echo; done"],
                        container="sleep")
    return Counter(line.split(",")[0] for line in result.stdout.splitlines() if line.strip())


def remote_rows() -> dict[str, istio.ProxyStatus]:
    return {row.name: row for row in istio.proxy_status("cluster1", quiet=True) if row.cluster == "cluster2"}


def scale_sleep(replicas: int) -> None:
    deployment = next(d for d in yaml.safe_load_all((SAMPLES / "sleep.yaml").read_text()) if d["kind"] == "Deployment")
    deployment["spec"]["replicas"] = replicas
    kube.apply("cluster2", [deployment], namespace="sample")


def synced(row: istio.ProxyStatus | None) -> bool:
    return row is not None and {row.types.get(t) for t in ("CDS", "LDS", "EDS", "RDS")} == {"SYNCED"}


def remote_sleep() -> str:
    return kube.pods("cluster2", "sample", "app=sleep")[0].name + ".sample"


def test_the_remote_runs_no_istiod_yet_its_proxies_are_the_primarys(mesh: Path) -> None:
    assert kube.pods("cluster2", "istio-system", "app=istiod") == []
    pod = kube.get_object("cluster2", "v1", "Pod", remote_sleep().removesuffix(".sample"), "sample")
    proxy = next(c for c in pod["spec"]["containers"] if c["name"] == "istio-proxy")
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    # The injection path of the remote install named its cluster and network.
    assert (env["ISTIO_META_CLUSTER_ID"], env["ISTIO_META_NETWORK"]) == ("cluster2", "network2")
    istiod = kube.pods("cluster1", "istio-system", "app=istiod")[0].name
    # istiod (externalIstiod) wrote the mesh root into the remote's namespaces and its injector's caBundle,
    # through the remote secret: the remote's agents verify istiod, its API server verifies the webhook, with it.
    root = (mesh / "certs" / "root-cert.pem").read_text()
    configmap = kube.get_object("cluster2", "v1", "ConfigMap", "istio-ca-root-cert", "sample")
    assert configmap["data"]["root-cert.pem"] == root
    injector = kube.get_object("cluster2", "admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration",
                               "istio-sidecar-injector")
    assert {base64.b64decode(h["clientConfig"]["caBundle"]).decode() for h in injector["webhooks"]} == {root}
    row = eventually(lambda: remote_rows().get(remote_sleep()), 30, "the remote sleep in proxy-status")
    assert row.istiod == istiod
    assert synced(row)


def test_the_remote_workload_certificate_is_signed_by_the_primarys_intermediate(mesh: Path) -> None:
    dump = json.loads(kube.exec_("cluster2", "sample", "deploy/sleep",
                                 ["pilot-agent", "request", "GET", "config_dump"], container="istio-proxy").stdout)
    secrets = next(c for c in dump["configs"] if c["@type"].endswith("SecretsConfigDump"))
    default = next(s for s in secrets["dynamic_active_secrets"] if s["name"] == "default")
    source = default["secret"]["tls_certificate"]["certificate_chain"]
    chain = source.get("inline_string") or base64.b64decode(source["inline_bytes"]).decode()
    certs = mesh / "certs"
    leaf = describe(chain)[0]
    assert leaf.issuer == describe((certs / "cluster1" / "ca-cert.pem").read_text())[0].subject
    verify_certificate(chain, (certs / "root-cert.pem").read_text(), untrusted=chain,
                       expected_spiffe_id="spiffe://cluster.local/ns/sample/sa/sleep")


def test_calls_from_either_cluster_reach_both(mesh: Path) -> None:
    for cluster in ("cluster1", "cluster2"):
        eventually(lambda cluster=cluster: set(answers(cluster)) == {"Hello version: v1", "Hello version: v2"},
                   60, f"v1 and v2 answering {cluster}")


def test_without_the_route_the_remote_is_frozen_and_cannot_start_pods_then_heals(mesh: Path) -> None:
    sleep = remote_sleep()
    kube.delete_object("cluster1", "networking.istio.io/v1", "VirtualService", "istiod-vs", "istio-system")
    # The gateway drops the filter chains; once they are drained (the lab's gateway drains for 5 s) the remote
    # proxies' streams are cut and their agents cannot dial again: istiod no longer lists them.
    eventually(lambda: sleep not in remote_rows(), 30, "the remote sleep gone from proxy-status")
    assert any(row.cluster == "cluster1" for row in istio.proxy_status("cluster1", quiet=True))
    # The data plane keeps its last configuration: calls still reach both clusters.
    assert set(answers("cluster2")) == {"Hello version: v1", "Hello version: v2"}
    # A new pod needs the injection webhook, which the remote API server reaches only through the gateway.
    scale_sleep(2)

    def refused() -> str:
        for rs in kube.list_objects("cluster2", "apps/v1", "ReplicaSet", "sample", selector="app=sleep"):
            for event in kube.events_for("cluster2", "ReplicaSet", rs["metadata"]["name"], "sample"):
                if event.reason == "FailedCreate" and "failed calling webhook" in event.message:
                    return event.message
        return ""

    message = eventually(refused, 30, "FailedCreate on the remote sleep's ReplicaSet")
    assert "sidecar-injector.istio.io" in message
    assert len(kube.pods("cluster2", "sample", "app=sleep")) == 1

    kube.apply("cluster1", MANIFESTS / "expose-istiod.yaml")
    eventually(lambda: synced(remote_rows().get(sleep)), 60, "the remote sleep SYNCED again")
    kube.wait_ready("cluster2", "sample", ["deploy/sleep"], timeout=90)
    assert len(kube.pods("cluster2", "sample", "app=sleep")) == 2
