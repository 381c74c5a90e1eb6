"""What the registrar registers for a pod, what the agent's k8s attestor says about one, and what the pod may see."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

from labkit.emulator.spire.agent import Issued, SpireAgent, pod_selectors, socket_mounts
from labkit.emulator.spire.config import AgentConfig, RegistrarConfig
from labkit.emulator.spire.entries import Selector
from labkit.emulator.spire.pods import PodContext
from labkit.emulator.spire.registrar import desired_entries
from labkit.emulator.spire.workloadapi import Svid
from labkit.pki import TrustBundle

CONFIG = RegistrarConfig("foo.com", "cluster-1")


def _pod(name: str, namespace: str = "sleep", **annotations: str) -> dict:
    return {"metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "labels": {"app": "sleep"},
                         "annotations": annotations},
            "spec": {"nodeName": "node-1", "serviceAccountName": "sleep", "containers": [{"name": "sleep"}]}}


def test_one_node_entry_and_one_entry_per_pod_parented_by_it() -> None:
    entries = desired_entries(CONFIG, [_pod("sleep-a", **{"spiffe.io/federatesWith": "bar.com, baz.org"}),
                                       _pod("sleep-b"), _pod("server", namespace="spire")])
    node, *pods = entries
    assert (node.spiffe_id, node.parent_id) == ("spiffe://foo.com/k8s-workload-registrar/cluster-1/node/node-1",
                                                "spiffe://foo.com/spire/server")
    assert sorted(map(str, node.selectors)) == ["k8s_psat:agent_node_name:node-1", "k8s_psat:cluster:cluster-1"]
    assert [p.dns_names for p in pods] == [("sleep-a",), ("sleep-b",)]  # none for the ignored spire namespace
    first = pods[0]
    assert first.spiffe_id == "spiffe://foo.com/ns/sleep/sa/sleep" and first.parent_id == node.spiffe_id
    assert sorted(map(str, first.selectors)) == ["k8s:node-name:node-1", "k8s:ns:sleep", "k8s:pod-uid:uid-sleep-a"]
    assert first.federates_with == ("bar.com", "baz.org") and pods[1].federates_with == ()


def test_the_k8s_attestor_selectors_include_every_registrar_selector() -> None:
    pod = _pod("sleep-a")
    (_, entry) = desired_entries(CONFIG, [pod])
    selectors = pod_selectors(pod)
    assert set(entry.selectors) <= selectors
    assert Selector("k8s", "sa:sleep") in selectors and Selector("k8s", "pod-label:app:sleep") in selectors


def test_a_csi_mount_gets_the_socket_at_run_and_var_run() -> None:
    pod = _pod("sleep-a")
    assert socket_mounts(pod) == []
    pod["spec"]["volumes"] = [{"name": "workload-socket", "csi": {"driver": "csi.spiffe.io", "readOnly": True}}]
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "workload-socket",
                                                     "mountPath": "/run/secrets/workload-spiffe-uds"}]
    assert socket_mounts(pod) == ["/run/secrets/workload-spiffe-uds", "/var/run/secrets/workload-spiffe-uds"]


def test_a_pod_sees_only_its_entries_svids_and_the_bundles_they_federate_with(tmp_path: Path) -> None:
    foo, bar, baz = (TrustBundle(d, ()) for d in ("foo.com", "bar.com", "baz.org"))
    agent = SpireAgent(AgentConfig("foo.com", "spire-server", cluster="cluster-1"),
                       PodContext(tmp_path, "spire-agent-x", "spire", None), "node-1")
    agent.bundle, agent.bundles = foo, {"foo.com": foo, "bar.com": bar, "baz.org": baz}
    now = dt.datetime.now(dt.UTC)
    for pod, federates in ((_pod("sleep-a"), ("bar.com",)), (_pod("other", namespace="other"), ())):
        (_, entry) = desired_entries(CONFIG, [pod])
        entry = replace(entry, entry_id=f"id-{pod['metadata']['name']}", federates_with=federates)
        agent.issued[entry.entry_id] = Issued(entry, Svid(entry.spiffe_id, "chain", "key", federates), now)
    view = agent.view_for(_pod("sleep-a"))
    assert view is not None
    assert [svid.spiffe_id for svid in view.svids] == ["spiffe://foo.com/ns/sleep/sa/sleep"]
    assert view.bundle == foo and view.federated == (bar,)  # baz.org is held, but this entry does not name it
    stranger = agent.view_for(_pod("nobody", namespace="nowhere"))
    assert stranger is not None and stranger.svids == ()
