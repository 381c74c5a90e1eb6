"""Lab 4's analysis: the answers of the whoami services, the hand-made CA kept on re-runs, the federated path."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd

from labkit.labs import replicated_control_planes as lab4
from labkit.traffic.calling import COLUMNS, parse_curl_output

SVC1 = "spiffe://cluster.local/ns/foo/sa/svc-1"
ANSWER = f"svc-2 in cluster2 (pod svc-2-abc), called by {SVC1}"


def calls(*rows: tuple[int, str, str]) -> pd.DataFrame:
    """A calls table as Cluster.call returns it: (status, error, body) per request."""
    return pd.DataFrame([{"seq": i, "source": "cluster1", "url": "http://svc-2.bar.global:8000/", "status": status,
                          "version": None, "instance": None, "latency_ms": 1.0, "error": error, "body": body}
                         for i, (status, error, body) in enumerate(rows)], columns=list(COLUMNS))


def test_an_answer_names_service_cluster_pod_and_caller() -> None:
    assert lab4.parse_answer(ANSWER + "\n") == lab4.Answer("svc-2", "cluster2", "svc-2-abc", SVC1)
    assert lab4.parse_answer("no healthy upstream") is None


def test_outcome_counts_each_distinct_answer_or_error() -> None:
    table = calls((200, "", ANSWER), (200, "", ANSWER), (0, "Could not resolve host: svc-3.bar.global", ""))
    assert lab4.outcome(table) == (f"2 × svc-2 in cluster2, called by {SVC1}\n"
                                   "1 × Could not resolve host: svc-3.bar.global")
    assert lab4.outcome(calls()) == "no calls"


def test_answered_needs_every_call_from_that_service_cluster_and_caller() -> None:
    assert lab4.answered(calls((200, "", ANSWER)), "svc-2", "cluster2", SVC1)
    assert not lab4.answered(calls((200, "", ANSWER), (503, "no healthy upstream", "")), "svc-2", "cluster2", SVC1)
    other = ANSWER.replace(SVC1, "(no client certificate)")
    assert not lab4.answered(calls((200, "", other)), "svc-2", "cluster2", SVC1)
    assert not lab4.answered(calls(), "svc-2", "cluster2", SVC1)


def test_unresolvable_reads_curls_own_error() -> None:
    # What the call loop makes of curl's exit code 6 for a name nobody answers.
    table = parse_curl_output("<<<labkit 0 000 0.000100 6 Could not resolve host: svc-2.bar.global>>>\n",
                              source="cluster1", urls=["http://svc-2.bar.global:8000/"])
    assert lab4.unresolvable(table, "svc-2.bar.global")
    assert not lab4.unresolvable(table, "svc-3.bar.global")
    assert not lab4.unresolvable(calls((200, "", ANSWER)), "svc-2.bar.global")


def test_reset_by_gateway_needs_envoys_reset_reason_on_every_call() -> None:
    reset = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
    assert lab4.reset_by_gateway(calls((503, reset, reset), (503, reset, reset)))
    # A 503 with no reason is a sidecar whose cluster is still waiting for endpoints: nothing reached the gateway.
    assert not lab4.reset_by_gateway(calls((503, "HTTP 503", ""), (503, reset, reset)))
    assert not lab4.reset_by_gateway(calls((200, "", ANSWER)))
    assert not lab4.reset_by_gateway(calls())


def test_the_hand_made_ca_is_kept_on_re_runs(tmp_path: Path) -> None:
    root = lab4.make_root(tmp_path, key="ec-p256")
    ca = lab4.make_intermediate(tmp_path, root, "cluster1", key="ec-p256")
    assert lab4.make_root(tmp_path, key="ec-p256") == root
    assert lab4.make_intermediate(tmp_path, root, "cluster1", key="ec-p256") == ca
    chain = (tmp_path / "cluster1" / "cert-chain.pem").read_text()
    assert chain == ca.cert_pem + root.cert_pem
    summary = lab4.summary(chain)
    assert "Subject:     O=Istio, CN=Intermediate CA, L=cluster1\nIssuer:      O=Istio, CN=Root CA\n" in summary
    assert "Constraints: CA:TRUE, pathlen:0  (EC P-256)" in summary
    assert "Issuer:      O=Istio, CN=Root CA  (self-signed)" in summary


def test_topology_goes_through_the_gateway_to_the_pods_that_answered() -> None:
    clusters: list[Any] = [SimpleNamespace(name="cluster1", network="network1"),
                           SimpleNamespace(name="cluster2", network="network2")]
    lab = type("FakeLab", (), {"clusters": ["cluster1", "cluster2"], "__iter__": lambda self: iter(clusters)})()
    table = calls((200, "", ANSWER), (200, "", ANSWER.replace("svc-2-abc", "svc-2-def")),
                  (503, "no healthy upstream", ""), (200, "", ANSWER))
    graph = lab4.topology(lab, table)
    shares = {(e.source.name, e.target.name): (e.share, e.label, e.mtls) for e in graph.edges}
    assert shares == {("svc-1", "istio-eastwestgateway"): (0.75, ":15443", True),
                      ("istio-eastwestgateway", "svc-2-abc"): (0.5, "", True),
                      ("istio-eastwestgateway", "svc-2-def"): (0.25, "", True)}
