"""Istio with SPIRE on an embedded cluster: a sidecar injected with the ``spire`` template gets its identity from
SPIRE's agent, not from istiod — the certificate Envoy holds is the SVID (issuer ``C=US, O=SPIFFE``).

Istio's agent finds the Workload API socket SPIRE's agent placed at Istio's path ("Workload SDS socket found") and
leaves SDS to it; Envoy then asks that socket for ``default`` and ``ROOTCA``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit import istio, kube
from labkit.testing import eventually, running_emulator

# The SPIRE manifests of the emulator's own SPIRE tests (--import-mode=importlib puts no test folder on sys.path).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "emulator" / "spire"))
from spire_kit import spire_manifests

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]

OPERATOR = {"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator",
            "metadata": {"name": "control-plane", "namespace": "istio-system"},
            "spec": {"profile": "minimal", "meshConfig": {"trustDomain": "foo.com"}}}

SLEEP = """
apiVersion: v1
kind: Namespace
metadata: {name: sleep, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: sleep, namespace: sleep}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: sleep, namespace: sleep}
spec:
  replicas: 1
  selector: {matchLabels: {app: sleep}}
  template:
    metadata:
      labels: {app: sleep}
      annotations: {inject.istio.io/templates: "sidecar,spire", spiffe.io/federatesWith: bar.com}
    spec:
      terminationGracePeriodSeconds: 0
      serviceAccountName: sleep
      containers:
      - {name: sleep, image: curlimages/curl, command: [/bin/sleep, infinity]}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_emulator(("cluster1",), tmp_path_factory.mktemp("spire-istio-home")):
        kube.apply("cluster1", spire_manifests("foo.com", "cluster-1", "bar.com", "https://127.0.0.1:1"))
        kube.wait_ready("cluster1", "spire", ["statefulset/spire-server", "daemonset/spire-agent"], timeout=90)
        istio.install("cluster1", OPERATOR, quiet=True, timeout=120)
        kube.apply("cluster1", SLEEP)
        kube.wait_ready("cluster1", "sleep", ["deploy/sleep"], timeout=120)
        yield "cluster1"


def test_the_sidecars_certificate_is_spires_svid(cluster: str) -> None:
    def svid() -> dict[str, object] | None:
        result = kube.exec_(cluster, "sleep", "deploy/sleep", ["pilot-agent", "request", "GET", "certs"],
                            container="istio-proxy")
        if result.exit_code != 0:
            return None
        chains = [c for entry in json.loads(result.stdout).get("certificates", []) for c in entry.get("cert_chain", [])]
        return next((c for c in chains if any(san.get("uri") == "spiffe://foo.com/ns/sleep/sa/sleep"
                                              for san in c.get("subject_alt_names", []))), None)
    found = eventually(svid, 60, "Envoy holding sleep's SVID")
    (pod,) = kube.pods(cluster, "sleep", "app=sleep")
    # SPIRE's SVID names the pod as a DNS SAN too (the registrar's entry); istiod's certificates carry the URI only.
    assert {"dns": pod.name} in found["subject_alt_names"]  # type: ignore[operator]
    logs = kube.logs(cluster, "sleep", "deploy/sleep", container="istio-proxy")
    assert "Workload SDS socket found. Istio SDS Server won't be started" in logs


EASTWEST = {"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator", "metadata": {"name": "eastwest"},
            "spec": {"profile": "empty", "components": {"ingressGateways": [{
                "name": "istio-eastwestgateway", "enabled": True,
                "label": {"istio": "eastwestgateway", "app": "istio-eastwestgateway"}}]}}}


def test_a_gateway_installed_without_the_meshs_trust_domain_gets_its_identity_in_it(cluster: str) -> None:
    """The east-west gateway's IstioOperator (gen-eastwest-gateway.sh's) sets no meshConfig, so its agent asks for
    a cluster.local identity; Istio's CA signs the caller it authenticated, in the mesh's trust domain — the
    gateway gets its certificate and becomes ready."""
    istio.install(cluster, EASTWEST, quiet=True, timeout=120)

    def certificate() -> list[object] | None:
        result = kube.exec_(cluster, "istio-system", "deploy/istio-eastwestgateway", ["pilot-agent", "request", "GET",
                                                                                      "certs"], container="istio-proxy")
        if result.exit_code != 0:
            return None
        chains = [c for e in json.loads(result.stdout).get("certificates", []) for c in e.get("cert_chain", [])]
        return [san for c in chains for san in c.get("subject_alt_names", [])] or None
    sans = eventually(certificate, 60, "the east-west gateway's certificate")
    assert {"uri": "spiffe://foo.com/ns/istio-system/sa/istio-eastwestgateway-service-account"} in sans
