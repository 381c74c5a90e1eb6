"""labkit.traffic against an embedded cluster: a loop of calls from sleep to helloworld is one exec.

No Istio here (the session's clusters have none): sleep's curl reaches helloworld through the
cluster's service proxy, which spreads calls over v1 and v2, and refuses connections to a Service
without ready endpoints as kube-proxy's REJECT rule does. Keeps to its own namespace of cluster1.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit import kube
from labkit.errors import KubeApiError
from labkit.testing import eventually
from labkit.traffic import call, summarize

# The official client leaves pooled TLS sockets to the garbage collector after watch and exec
# streams; those warnings are about the client library, not about the behaviour tested here.
pytestmark = [pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
NS = "traffic-calls"
URL = f"http://helloworld.{NS}:5000/hello"


@pytest.fixture(scope="module")
def kc(kubeconfig: Path) -> Iterator[Path]:
    kube.apply("cluster1", [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}], kubeconfig=kubeconfig)
    kube.apply("cluster1", SAMPLES / "helloworld.yaml", namespace=NS, kubeconfig=kubeconfig)
    kube.apply("cluster1", SAMPLES / "sleep.yaml", namespace=NS, kubeconfig=kubeconfig)
    kube.wait_ready("cluster1", NS, ["deploy/helloworld-v1", "deploy/helloworld-v2", "deploy/sleep"], timeout=60,
                    kubeconfig=kubeconfig)
    yield kubeconfig
    kube.forget_clients()
    # Collect the client's leaked sockets now, while this module's filters apply: left to the final
    # collection at the end of the session, their ResourceWarnings would fail the whole run.
    gc.collect()


@pytest.fixture
def execs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The argv of every exec labkit makes while the test runs."""
    made: list[list[str]] = []
    real = kube.exec_

    def counting(context: str, namespace: str, target: str, command: list[str], **options: Any) -> kube.ExecResult:
        made.append(list(command))
        return real(context, namespace, target, command, **options)

    monkeypatch.setattr(kube, "exec_", counting)
    return made


def test_fifty_calls_are_one_exec_and_reach_both_versions(kc: Path, execs: list[list[str]]) -> None:
    calls = call(kube.Context("cluster1", kc), f"{NS}/deploy/sleep", URL, n=50)
    assert len(execs) == 1 and execs[0][0] == "curl" and execs[0].count(URL) == 50
    assert len(calls) == 50 and list(calls["seq"]) == list(range(50))
    assert set(calls["source"]) == {"cluster1"} and set(calls["status"]) == {200}
    assert set(calls["version"]) == {"v1", "v2"} and (calls["error"] == "").all()
    assert calls["instance"].str.match(r"helloworld-v[12]-").all()
    shares = summarize(calls, by="version")
    assert shares["share"].sum() == pytest.approx(1.0) and set(shares["version"]) == {"v1", "v2"}


def test_a_service_without_endpoints_gives_fifty_error_rows(kc: Path, execs: list[list[str]]) -> None:
    documents = [d.body for d in kube.load_documents(SAMPLES / "helloworld.yaml") if d.body["kind"] == "Deployment"]
    for body in documents:
        body["spec"]["replicas"] = 0
    kube.apply("cluster1", documents, namespace=NS, kubeconfig=kc)
    _until_refused(kc)
    execs.clear()
    calls = call(kube.Context("cluster1", kc), f"{NS}/deploy/sleep", URL, n=50, cluster="c1")
    assert len(execs) == 1
    assert len(calls) == 50 and set(calls["status"]) == {0} and set(calls["source"]) == {"c1"}
    assert calls["error"].str.match(r"Failed to connect to \S+ port 5000 .*Couldn't connect to server").all()
    assert calls["version"].isna().all()


def _until_refused(kc: Path, timeout: float = 30) -> None:
    # The service proxy drops the Service's listener once the Endpoints controller has emptied it.
    def refused() -> bool:
        if kube.pods("cluster1", NS, "app=helloworld", kubeconfig=kc):
            return False
        return call(kube.Context("cluster1", kc), f"{NS}/deploy/sleep", URL, n=1).loc[0, "status"] == 0

    eventually(refused, timeout, f"{URL} refused after helloworld was scaled to 0")


def test_only_an_exec_that_cannot_run_raises(kc: Path) -> None:
    with pytest.raises(KubeApiError, match=r'deployments.apps "nosuch" not found'):
        call(kube.Context("cluster1", kc), f"{NS}/deploy/nosuch", URL, n=5)
