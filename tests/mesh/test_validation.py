"""Istio validation end to end: the API server calls istiod's ``validation.istio.io`` webhook, real Envoys show
that pushes keep flowing, and a corrupt plugged-in CA stops the install with its reason.

cluster1 runs a one-cluster mesh (istiod, helloworld v1 and v2, sleep, all with sidecars); cluster2 gets a
broken ``cacerts`` forced in. The tests assert what an attendee sees: typos refused at apply time naming the
object, the field and the fix, with nothing of the batch applied; a valid change reaching every proxy after a
refusal and after objects that went around the webhook (which istiod's log names); and an install that
fails within seconds quoting istiod's reason. Tests run in file order; the last one removes the webhook.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from labkit import istio, kube
from labkit.emulator import launching
from labkit.errors import ManifestError, MeshError
from labkit.pki import make_mesh

CLUSTERS = ("cluster1", "cluster2")
SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
HELLO = "helloworld.sample.svc.cluster.local"
WEBHOOKS = ("istiod-default-validator", "istio-validator-istio-system")

# The official client leaves pooled sockets to the garbage collector after exec streams.
pytestmark = [pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


def eventually(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s (last: {value!r})"
        time.sleep(0.25)


def operator(cluster: str, network: str) -> dict[str, Any]:
    return {"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator",
            "spec": {"values": {"global": {"meshID": "mesh1", "multiCluster": {"clusterName": cluster},
                                           "network": network}}}}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("validation-home")
    running = launching.up(CLUSTERS, state)
    saved = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(running.kubeconfig)
    try:
        make_mesh(state / "certs", list(CLUSTERS), key="ec-p256")
        yield state
    finally:
        launching.down(state)
        kube.forget_clients()
        if saved is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = saved


@pytest.fixture(scope="module")
def mesh(emulator: Path) -> Path:
    istio.plug_in_ca("cluster1", emulator / "certs" / "cluster1", "network1")
    istio.install("cluster1", operator("cluster1", "network1"), quiet=True, timeout=120)
    kube.apply("cluster1", [{"apiVersion": "v1", "kind": "Namespace",
                             "metadata": {"name": "sample", "labels": {"istio-injection": "enabled"}}}])
    kube.apply("cluster1", SAMPLES / "helloworld.yaml", namespace="sample")
    kube.apply("cluster1", SAMPLES / "sleep.yaml", namespace="sample")
    kube.wait_ready("cluster1", "sample", ["deploy/sleep", "deploy/helloworld-v1", "deploy/helloworld-v2"],
                    timeout=90)
    return emulator


def virtual_service(name: str, http: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "sample"}, "spec": {"hosts": ["helloworld"], "http": [http]}}


def destination_rule(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": name, "namespace": "sample"}, "spec": spec}


def subsets(*names: str) -> dict[str, Any]:
    versions = {"v1": "v1", "v2": "v2", "canary": "v2"}
    return {"host": "helloworld", "subsets": [{"name": n, "labels": {"version": versions[n]}} for n in names]}


TO_HELLO = {"destination": {"host": "helloworld"}}
TYPOS = {
    "weight-fifty": (virtual_service("weight-fifty", {"route": [{**TO_HELLO, "weight": "fifty"}]}),
                     'VirtualService sample/weight-fifty: spec.http[0].route[0].weight: Invalid value: "fifty": '
                     "must be of type integer; write a whole number without quotes"),
    "timeout-words": (virtual_service("timeout-words", {"route": [TO_HELLO], "timeout": "5 seconds"}),
                      'VirtualService sample/timeout-words: spec.http[0].timeout: bad Duration: time: unknown unit '
                      '" seconds" in duration "5 seconds"; write a duration such as 5s, 250ms or 1m30s'),
    "mutual-typo": (destination_rule("mutual-typo", {"host": "helloworld",
                                                     "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUALL"}}}),
                    'DestinationRule sample/mutual-typo: spec.trafficPolicy.tls.mode: Unsupported value: '
                    '"ISTIO_MUTUALL": supported values: "DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"; did you mean '
                    '"ISTIO_MUTUAL"?'),
    "rout": (virtual_service("rout", {"rout": [TO_HELLO]}),
             'VirtualService sample/rout: unknown field "spec.http[0].rout"; did you mean "route"?'),
}
DENIED = 'admission webhook "validation.istio.io" denied the request: error decoding configuration: '


def sidecars() -> list[str]:
    return [f"{pod.name}.sample" for pod in kube.pods("cluster1", "sample") if "istio-proxy" in pod.containers]


def every_proxy_has(cluster: str) -> bool:
    return all(istio.proxy_endpoints("cluster1", proxy, cluster=cluster).rows for proxy in sidecars())


def istiod_log() -> str:
    return kube.logs("cluster1", "istio-system", "deploy/istiod", container="discovery")


def test_istiod_switches_validation_to_fail_closed(mesh: Path) -> None:
    def closed() -> bool:
        configurations = [kube.get_object("cluster1", "admissionregistration.k8s.io/v1",
                                          "ValidatingWebhookConfiguration", name) for name in WEBHOOKS]
        return all(c and {h["failurePolicy"] for h in c["webhooks"]} == {"Fail"} for c in configurations)

    eventually(closed, 30, "failurePolicy: Fail on both validating webhooks")


@pytest.mark.parametrize("typo", list(TYPOS))
def test_a_typo_is_refused_at_apply_time_and_nothing_of_the_batch_is_applied(mesh: Path, typo: str) -> None:
    bad, expected = TYPOS[typo]
    good = destination_rule(f"fine-{typo}", subsets("v1"))
    with pytest.raises(ManifestError) as refused:
        kube.apply("cluster1", [good, copy.deepcopy(bad)])
    message = str(refused.value)
    assert message.startswith("nothing was applied: the server's dry run refused")
    assert DENIED + expected in message
    for obj in (good, bad):
        assert kube.get_object("cluster1", obj["apiVersion"], obj["kind"], obj["metadata"]["name"], "sample") is None


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed on this machine")
def test_kubectl_shows_istios_refusal(mesh: Path, tmp_path: Path) -> None:
    bad, expected = TYPOS["weight-fifty"]
    result = subprocess.run(["kubectl", "--context", "cluster1", "apply", "-f", "-"], input=yaml.safe_dump(bad),
                            capture_output=True, text=True, timeout=60, check=False,
                            env=dict(os.environ, HOME=str(tmp_path)))
    assert result.returncode == 1
    assert result.stderr.strip() == f'Error from server: error when creating "STDIN": {DENIED}{expected}'


def test_after_a_refusal_a_valid_change_reaches_every_proxy(mesh: Path) -> None:
    with pytest.raises(ManifestError):
        kube.apply("cluster1", [TYPOS["mutual-typo"][0]])
    kube.apply("cluster1", [destination_rule("helloworld", subsets("v1", "v2"))])
    assert len(sidecars()) == 3
    eventually(lambda: every_proxy_has(f"outbound|5000|v2|{HELLO}"), 30, "subset v2 on every proxy")


def test_objects_around_the_webhook_do_not_freeze_pushes_and_istiod_names_them(mesh: Path) -> None:
    for name in WEBHOOKS:  # what a cluster looks like when the webhook was never there, or istiod was down
        kube.delete_object("cluster1", "admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", name)
    stored = kube.apply("cluster1", [TYPOS["weight-fifty"][0]])
    assert [str(a) for a in stored] == ["virtualservice.networking.istio.io/weight-fifty created"]
    # Valid for Istio, but nothing the embedded proxies can do: istiod cannot translate it.
    kube.apply("cluster1", [destination_rule("sleep-passthrough", {
        "host": "sleep", "trafficPolicy": {"loadBalancer": {"simple": "PASSTHROUGH"}}})])
    kube.apply("cluster1", [destination_rule("helloworld", subsets("v1", "v2", "canary"))])
    eventually(lambda: every_proxy_has(f"outbound|5000|canary|{HELLO}"), 30, "subset canary on every proxy")
    log = eventually(lambda: "sleep-passthrough" in istiod_log() and istiod_log(), 10, "istiod naming the objects")
    assert "VirtualService sample/weight-fifty is invalid and left out of the push: error decoding configuration: " \
           'VirtualService sample/weight-fifty: spec.http[0].route[0].weight: Invalid value: "fifty"' in log
    assert "DestinationRule sample/sleep-passthrough cannot be translated and is left out of the push: " \
           "DestinationRule sample/sleep-passthrough: trafficPolicy.loadBalancer.simple: unsupported value " \
           "'PASSTHROUGH'" in log


def test_a_corrupt_cacerts_forced_in_keeps_istiod_unready_and_install_names_the_reason(emulator: Path) -> None:
    folder = emulator / "certs" / "cluster2"
    files = {name: (folder / name).read_text() for name in ("ca-cert.pem", "root-cert.pem", "cert-chain.pem")}
    files["ca-key.pem"] = (emulator / "certs" / "cluster1" / "ca-key.pem").read_text()  # another cluster's key
    kube.apply("cluster2", [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "namespace": "istio-system"},
         "stringData": files}])
    started = time.monotonic()
    with pytest.raises(MeshError) as failed:
        istio.install("cluster2", operator("cluster2", "network2"), quiet=True, timeout=120)
    assert time.monotonic() - started < 60
    message = str(failed.value)
    assert message.startswith("istiod in cluster2 is not ready: cannot use the CA in istio-system: secret "
                              "istio-system/cacerts ca-key.pem does not match secret istio-system/cacerts "
                              "ca-cert.pem: the key belongs to another certificate.")
    assert "plug_in_ca" in message
    (pod,) = kube.pods("cluster2", "istio-system", "app=istiod")
    assert pod.phase == "Running" and not pod.ready
