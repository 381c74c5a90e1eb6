"""labkit.kube and labkit.istio against embedded clusters: apply, wait, exec, remote secrets, install.

Each test keeps to its own cluster and namespaces (cluster1 ``kube-apply``; cluster2's reader account;
cluster3's ``istio-system``) so the other contract files, which share the session's emulator, see the
clusters they expect. Readiness of istiod is not asserted: the embedded istiod program is not part of
this client-side contract; the objects install writes are.
"""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from labkit import kube
from labkit.emulator import launching
from labkit.errors import ManifestError, WaitTimeoutError
from labkit.istio import apply_remote_secret, create_remote_secret, install, kubeconfig_of
from labkit.testing import eventually

# The official client leaves pooled TLS sockets to the garbage collector after watch and exec
# streams; those warnings are about the client library, not about the behaviour tested here.
pytestmark = [pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
ISTIO_DATA = Path(__file__).resolve().parents[1] / "istio" / "data"
NS = "kube-apply"


@pytest.fixture(scope="module")
def kc(kubeconfig: Path) -> Iterator[Path]:
    yield kubeconfig
    kube.forget_clients()


@pytest.fixture(scope="module")
def namespace(kc: Path) -> str:
    applied = kube.apply("cluster1", [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}],
                         kubeconfig=kc)
    assert [str(a) for a in applied] == [f"namespace/{NS} created"]
    return NS


def _lines(applied: kube.AppliedObjects) -> list[str]:
    return str(applied).splitlines()


def test_contexts_are_embedded(kc: Path) -> None:
    assert all(kube.is_embedded(name, kc) for name in ("cluster1", "cluster2", "cluster3"))


def test_apply_piecewise_with_selectors_like_kubectl(kc: Path, namespace: str) -> None:
    hello = SAMPLES / "helloworld.yaml"
    first = kube.apply("cluster1", hello, namespace=namespace, selector="service=helloworld", kubeconfig=kc)
    assert _lines(first) == ["service/helloworld created"]
    again = kube.apply("cluster1", hello, namespace=namespace, selector="service=helloworld", kubeconfig=kc)
    assert _lines(again) == ["service/helloworld unchanged"]
    v1 = kube.apply("cluster1", hello, namespace=namespace, selector="version=v1", kubeconfig=kc)
    assert _lines(v1) == ["deployment.apps/helloworld-v1 created"]
    changed = yaml.safe_load_all(hello.read_text())
    service = next(d for d in changed if d["kind"] == "Service")
    service["metadata"]["labels"]["tier"] = "demo"
    assert _lines(kube.apply("cluster1", [service], namespace=namespace, kubeconfig=kc)) == [
        "service/helloworld configured"]
    dry = kube.apply("cluster1", hello, namespace=namespace, selector="version=v2", dry_run=True, kubeconfig=kc)
    assert _lines(dry) == ["deployment.apps/helloworld-v2 created (server dry run)"]
    assert kube.get_object("cluster1", "apps/v1", "Deployment", "helloworld-v2", namespace, kubeconfig=kc) is None


def test_a_bad_batch_applies_nothing(kc: Path, namespace: str) -> None:
    good = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "never-applied", "namespace": namespace},
            "data": {"a": "1"}}
    unknown = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
               "metadata": {"name": "reviews", "namespace": namespace}, "spec": {"hosts": ["reviews"]}}
    elsewhere = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "nope"}}
    with pytest.raises(ManifestError) as error:
        kube.apply("cluster1", [good, unknown, elsewhere], kubeconfig=kc)
    assert error.value.problems == (
        '<objects>: document 2 (VirtualService reviews): no matches for kind "VirtualService" in version '
        '"networking.istio.io/v1"; install its CustomResourceDefinition first (Istio\'s CRDs come with '
        "labkit.istio.install or istioctl install)",
        '<objects>: document 3 (configmap nope/x): namespaces "nope" not found; create it first: '
        "kubectl --context cluster1 create ns nope")
    assert kube.get_object("cluster1", "v1", "ConfigMap", "never-applied", namespace, kubeconfig=kc) is None


def test_what_the_server_refuses_in_the_dry_run_applies_nothing(kc: Path, namespace: str) -> None:
    good = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "also-never-applied"}}
    mismatched = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "broken"},
                  "spec": {"selector": {"matchLabels": {"app": "a"}},
                           "template": {"metadata": {"labels": {"app": "b"}},
                                        "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    with pytest.raises(ManifestError) as error:
        kube.apply("cluster1", [good, mismatched], namespace=namespace, kubeconfig=kc)
    [problem] = error.value.problems
    assert problem.startswith(f"<objects>: document 2 (deployment {namespace}/broken): the server refused it:")
    assert "spec.template.metadata.labels" in problem
    assert kube.get_object("cluster1", "v1", "ConfigMap", "also-never-applied", namespace, kubeconfig=kc) is None


def test_wait_then_exec_into_a_deployment(kc: Path, namespace: str) -> None:
    kube.apply("cluster1", SAMPLES / "helloworld.yaml", namespace=namespace, selector="version=v1", kubeconfig=kc)
    kube.apply("cluster1", SAMPLES / "sleep.yaml", namespace=namespace, kubeconfig=kc)
    kube.wait_ready("cluster1", namespace, ["deploy/helloworld-v1", "deploy/sleep"], timeout=60, kubeconfig=kc)
    result = kube.exec_("cluster1", namespace, "deploy/sleep", ["curl", "-sS", f"helloworld.{namespace}:5000/hello"],
                        kubeconfig=kc)
    assert result.exit_code == 0 and result.stdout.startswith("Hello version: v1, instance: helloworld-v1-")
    refused = kube.exec_("cluster1", namespace, "deploy/sleep", ["curl", "-sS", f"helloworld.{namespace}:5001/"],
                         kubeconfig=kc)
    assert refused.exit_code == 7 and "curl: (7)" in refused.stderr


def test_exec_feeds_stdin_and_closes_it(kc: Path, namespace: str) -> None:
    """``kubectl exec -i … < file``: the command reads its input to the end (SPIRE's ``bundle set`` does)."""
    result = kube.exec_("cluster1", namespace, "deploy/sleep", ["cat"], stdin='{"keys": []}\n', kubeconfig=kc)
    assert (result.exit_code, result.stdout) == (0, '{"keys": []}\n')


def test_a_secrets_string_data_applied_again_a_second_later_is_unchanged(kc: Path, namespace: str) -> None:
    # stringData is write-only: sent as is, every apply after the clock's second turns would write a
    # new version (as on a real server) and re-running a cell would say "configured" for nothing.
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "greeting"},
              "data": {"kept": base64.b64encode(b"old").decode(), "both": base64.b64encode(b"data").decode()},
              "stringData": {"hello": "w\u00f6rld", "both": "stringData"}}
    assert _lines(kube.apply("cluster1", [secret], namespace=namespace, kubeconfig=kc)) == ["secret/greeting created"]
    time.sleep(1.1)
    assert _lines(kube.apply("cluster1", [secret], namespace=namespace, kubeconfig=kc)) == [
        "secret/greeting unchanged"]
    stored = kube.get_object("cluster1", "v1", "Secret", "greeting", namespace, kubeconfig=kc)
    assert {k: base64.b64decode(v).decode() for k, v in stored["data"].items()} == {
        "kept": "old", "both": "stringData", "hello": "w\u00f6rld"}
    assert "stringData" not in stored


def test_scale_sets_replicas_and_a_later_apply_takes_them_back(kc: Path, namespace: str) -> None:
    kube.scale("cluster1", namespace, "deploy/helloworld-v1", 0, kubeconfig=kc)
    scaled = kube.get_object("cluster1", "apps/v1", "Deployment", "helloworld-v1", namespace, kubeconfig=kc)
    assert scaled is not None and scaled["spec"]["replicas"] == 0
    eventually(lambda: not kube.pods("cluster1", namespace, "app=helloworld", kubeconfig=kc), 30, "no helloworld pod")
    kube.apply("cluster1", SAMPLES / "helloworld.yaml", namespace=namespace, selector="version=v1", kubeconfig=kc)
    kube.wait_ready("cluster1", namespace, "deploy/helloworld-v1", timeout=60, kubeconfig=kc)
    with pytest.raises(ManifestError, match="give deploy/<name> or statefulset/<name>"):
        kube.scale("cluster1", namespace, "svc/helloworld", 1, kubeconfig=kc)


def test_a_wait_that_times_out_says_why(kc: Path, namespace: str) -> None:
    typo = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "typo"},
            "spec": {"selector": {"matchLabels": {"app": "typo"}},
                     "template": {"metadata": {"labels": {"app": "typo"}},
                                  "spec": {"containers": [{"name": "c", "image": "docker.io/nosuch/image:1"}]}}}}
    kube.apply("cluster1", [typo], namespace=namespace, kubeconfig=kc)
    with pytest.raises(WaitTimeoutError) as error:
        kube.wait_ready("cluster1", namespace, "deploy/typo", timeout=3, kubeconfig=kc)
    [line] = error.value.not_ready
    assert line.startswith("deployment/typo: 0 of 1 updated replicas available (typo-")
    assert "ImagePull" in line and "docker.io/nosuch/image" in line


def test_delete_reports_like_kubectl_and_skips_what_is_gone(kc: Path, namespace: str) -> None:
    deleted = kube.delete("cluster1", SAMPLES / "helloworld.yaml", namespace=namespace, kubeconfig=kc)
    # helloworld-v2 was never applied; kubectl delete --ignore-not-found stays quiet about it too.
    assert _lines(deleted) == ['deployment.apps "helloworld-v1" deleted', 'service "helloworld" deleted']
    assert kube.get_object("cluster1", "v1", "Service", "helloworld", namespace, kubeconfig=kc) is None


def test_a_remote_secret_reads_everything_and_writes_nothing(kc: Path, emulator: launching.Emulator) -> None:
    secret = create_remote_secret(kube.Context("cluster2", kc), "cluster2")
    assert secret["metadata"] == {"name": "istio-remote-secret-cluster2", "namespace": "istio-system",
                                  "annotations": {"networking.istio.io/cluster": "cluster2"},
                                  "labels": {"istio/multiCluster": "true"}}
    name, text = kubeconfig_of(secret)
    remote = yaml.safe_load(text)
    assert name == "cluster2" and remote["current-context"] == "cluster2"
    assert remote["clusters"][0]["cluster"]["server"] == emulator.clusters["cluster2"]
    assert [c["name"] for c in remote["clusters"]] == [u["name"] for u in remote["users"]] == ["cluster2"]
    with config.new_client_from_config_dict(remote, context="cluster2") as api:
        v1 = client.CoreV1Api(api)
        v1.list_namespaced_pod("istio-system")
        # The lesson of seed 001: the reader token can read every Secret of the cluster, its own included ...
        token_secret = v1.read_namespaced_secret("istio-reader-service-account-istio-remote-secret-token",
                                                 "istio-system")
        assert base64.b64decode(token_secret.data["token"]).decode() == remote["users"][0]["user"]["token"]
        # ... but it cannot create anything.
        with pytest.raises(ApiException) as denied:
            v1.create_namespaced_pod("istio-system", {"metadata": {"name": "nope"}, "spec": {
                "containers": [{"name": "c", "image": "nginx"}]}})
        assert denied.value.status == 403
    # Creating it again reuses the account and token; applying it elsewhere is kubectl apply.
    assert create_remote_secret(kube.Context("cluster2", kc), "cluster2") == secret
    assert [str(a) for a in apply_remote_secret(secret, kube.Context("cluster2", kc))] == [
        "secret/istio-remote-secret-cluster2 created"]
    assert [str(a) for a in apply_remote_secret(secret, kube.Context("cluster2", kc))] == [
        "secret/istio-remote-secret-cluster2 unchanged"]


def _cluster3_operator() -> dict:
    operator = yaml.safe_load((ISTIO_DATA / "cluster1.yaml").read_text())
    operator["spec"]["values"]["global"].update({"multiCluster": {"clusterName": "cluster3"}, "network": "network3"})
    return operator


def _east_west_operator() -> dict:
    text = (ISTIO_DATA / "ew-gateway1.yaml").read_text().replace("network1", "network3")
    return yaml.safe_load(text)


def test_install_on_an_embedded_cluster_writes_what_istioctl_would(kc: Path, capsys: pytest.CaptureFixture) -> None:
    result = install(kube.Context("cluster3", kc), _cluster3_operator(), wait=False)
    assert capsys.readouterr().out.splitlines() == [
        "✔ Istio core installed ⛵️", "✔ Istiod installed 🧠", "✔ Installation complete"]
    assert result.embedded and result.components == ("Base", "Pilot")
    get = lambda *args: kube.get_object("cluster3", *args, kubeconfig=kc)  # noqa: E731
    for crd in ("virtualservices.networking.istio.io", "peerauthentications.security.istio.io",
                "telemetries.telemetry.istio.io", "istiooperators.install.istio.io"):
        assert get("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd) is not None
    namespace = get("v1", "Namespace", "istio-system")
    assert namespace["metadata"]["labels"]["topology.istio.io/network"] == "network3"
    mesh = yaml.safe_load(get("v1", "ConfigMap", "istio", "istio-system")["data"]["mesh"])
    assert mesh["defaultConfig"]["proxyHttpPort"] == 15080 and mesh["trustDomain"] == "cluster.local"
    values = json.loads(get("v1", "ConfigMap", "istio-sidecar-injector", "istio-system")["data"]["values"])
    assert values["global"]["multiCluster"]["clusterName"] == "cluster3"
    deployment = get("apps/v1", "Deployment", "istiod", "istio-system")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "docker.io/istio/pilot:1.30.0"
    assert {"name": "CLUSTER_ID", "value": "cluster3"} in container["env"]
    service = get("v1", "Service", "istiod", "istio-system")
    assert [p["port"] for p in service["spec"]["ports"]] == [15010, 15012, 443, 15014]
    ca = get("v1", "Secret", "istio-ca-secret", "istio-system")
    assert set(ca["data"]) == {"ca-cert.pem", "ca-key.pem", "cert-chain.pem", "key.pem", "root-cert.pem"}
    webhook = get("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "istio-sidecar-injector")
    for hook in webhook["webhooks"]:
        assert hook["clientConfig"]["caBundle"] == ca["data"]["ca-cert.pem"]
        assert hook["clientConfig"]["service"]["path"] == "/inject/cluster/cluster3/net/network3"

    gateway = install(kube.Context("cluster3", kc), _east_west_operator(), wait=False, quiet=True)
    assert gateway.output.splitlines() == ["✔ Ingress gateways installed 🛬", "✔ Installation complete"]
    east_west = get("v1", "Service", "istio-eastwestgateway", "istio-system")
    assert east_west["spec"]["type"] == "LoadBalancer"
    assert east_west["metadata"]["labels"]["topology.istio.io/network"] == "network3"
    assert east_west["status"]["loadBalancer"]["ingress"][0]["ip"]
    assert [p["port"] for p in east_west["spec"]["ports"]] == [15021, 15443, 15012, 15017]
    # The CRDs are served: the lab's next step applies Istio config.
    expose = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
              "metadata": {"name": "cross-network-gateway", "namespace": "istio-system"},
              "spec": {"selector": {"istio": "eastwestgateway"},
                       "servers": [{"port": {"number": 15443, "name": "tls", "protocol": "TLS"},
                                    "tls": {"mode": "AUTO_PASSTHROUGH"}, "hosts": ["*.local"]}]}}
    assert _lines(kube.apply("cluster3", [expose], kubeconfig=kc)) == [
        "gateway.networking.istio.io/cross-network-gateway created"]

    # istiod arms its validating webhooks once it serves them (failurePolicy Ignore → Fail), and a second install
    # keeps what it set; wait for that, so the comparison below is not a race with istiod's own update.
    eventually(lambda: all(hook["failurePolicy"] == "Fail"
                           for name in ("istio-validator-istio-system", "istiod-default-validator")
                           for hook in get("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration",
                                           name)["webhooks"]),
               timeout=60, what="istiod armed its validating webhooks")
    # Installing again changes nothing, and keeps the mesh CA.
    for operator in (_cluster3_operator(), _east_west_operator()):
        again = install(kube.Context("cluster3", kc), copy.deepcopy(operator), wait=False, quiet=True)
        assert {a.action for a in again.objects} == {"unchanged"}, str(kube.AppliedObjects(again.objects))
    assert get("v1", "Secret", "istio-ca-secret", "istio-system")["data"] == ca["data"]


def test_lab_wait_shows_progress_and_names_what_is_not_ready(emulator, capsys, monkeypatch) -> None:
    from labkit import Lab
    from labkit.errors import WaitTimeoutError

    monkeypatch.setenv("KUBECONFIG", str(emulator.kubeconfig))
    lab = Lab("wait-demo", clusters=["cluster1"], contexts=["cluster1"], state_dir=emulator.state_dir / "lab")
    cluster1 = lab["cluster1"]
    assert lab.cluster1 is cluster1
    cluster1.namespace("waiting")
    cluster1.apply([{"apiVersion": "apps/v1", "kind": "Deployment",
                     "metadata": {"name": "stuck", "namespace": "waiting"},
                     "spec": {"selector": {"matchLabels": {"app": "stuck"}},
                              "template": {"metadata": {"labels": {"app": "stuck"}},
                                           "spec": {"containers": [{"name": "c", "image": "nowhere/x:1"}]}}}}])
    cluster1.apply("sleep.yaml", namespace="waiting")
    cluster1.wait("waiting", ["deploy/sleep"], timeout=60)
    shown = capsys.readouterr()
    assert "████████████████████ 1/1" in shown.err  # tqdm's bar, full
    assert "✓ cluster1: deploy/sleep ready" in shown.out
    with pytest.raises(WaitTimeoutError) as failure:
        cluster1.wait("waiting", ["deploy/sleep", "deploy/stuck"], timeout=3)
    message = str(failure.value)
    assert "not ready after 3 s in cluster1/waiting" in message
    assert "stuck" in message and ("ErrImagePull" in message or "ImagePullBackOff" in message)


def test_cleanup_on_real_clusters_deletes_what_the_lab_made_and_nothing_else(emulator, monkeypatch) -> None:
    from labkit import Lab

    monkeypatch.setenv("KUBECONFIG", str(emulator.kubeconfig))
    lab = Lab("cleanup-demo", clusters=["cluster1"], contexts=["cluster1"], state_dir=emulator.state_dir / "lab2")
    lab.cluster1.namespace("made-by-lab")
    lab.cluster1.apply("sleep.yaml", namespace="made-by-lab")
    lab.cluster1.apply([{"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "lab-note", "namespace": "default"}}])
    kube.apply("cluster1", [{"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "not-the-labs", "namespace": "default"}}])
    lab.cleanup()

    def gone(kind: str, name: str, namespace: str | None = None) -> bool:
        found = kube.get_object("cluster1", "v1", kind, name, namespace)
        return found is None or (found.get("metadata") or {}).get("deletionTimestamp") is not None

    assert gone("Namespace", "made-by-lab") and gone("ConfigMap", "lab-note", "default")
    assert not gone("ConfigMap", "not-the-labs", "default")
