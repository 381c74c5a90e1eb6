"""From Kubernetes objects of several clusters to the mesh snapshot, with Istio's multicluster rules."""

from __future__ import annotations

import base64
import json

import pytest

from labkit.emulator.apimachinery import json_patch
from labkit.emulator.mesh import ca as mesh_ca
from labkit.emulator.mesh.discovery import ClusterView, build_snapshot, parse_mesh_config, proxy_of
from labkit.emulator.mesh.injection import sidecar_patch, wants_injection
from labkit.emulator.mesh.model import MeshConfig
from labkit.errors import PkiError
from labkit.pki import make_mesh

MESH = MeshConfig()


def namespace(name: str, network: str | None = None) -> dict:
    labels = {"topology.istio.io/network": network} if network else {}
    return {"metadata": {"name": name, "labels": labels}}


def node(name: str, region: str) -> dict:
    return {"metadata": {"name": name, "labels": {"topology.kubernetes.io/region": region}}}


def pod(name: str, ip: str, labels: dict, *, sidecar: bool = True, sa: str = "default", node_name: str = "n1") -> dict:
    containers = [{"name": "app", "ports": [{"containerPort": 5000}]}]
    if sidecar:
        containers.append({"name": "istio-proxy", "args": ["proxy", "sidecar"],
                           "env": [{"name": "ISTIO_META_NETWORK", "value": "ignored-when-labelled"}]})
        labels = {**labels, "security.istio.io/tlsMode": "istio"}
    return {"metadata": {"name": name, "namespace": "sample", "labels": labels},
            "spec": {"containers": containers, "serviceAccountName": sa, "nodeName": node_name},
            "status": {"podIP": ip}}


def helloworld(cluster_ip: str, pods: list[tuple[str, str]], not_ready: list[tuple[str, str]] = ()) -> tuple:
    service = {"metadata": {"name": "helloworld", "namespace": "sample"},
               "spec": {"clusterIP": cluster_ip, "ports": [{"name": "http", "port": 5000, "targetPort": 5000}]}}
    ref = lambda n, ip: {"ip": ip, "targetRef": {"kind": "Pod", "namespace": "sample", "name": n}}  # noqa: E731
    endpoints = {"metadata": {"name": "helloworld", "namespace": "sample"},
                 "subsets": [{"addresses": [ref(n, ip) for n, ip in pods],
                              "notReadyAddresses": [ref(n, ip) for n, ip in not_ready],
                              "ports": [{"name": "http", "port": 5000}]}]}
    return service, endpoints


def eastwest(network: str, ip: str | None) -> dict:
    status = {"loadBalancer": {"ingress": [{"ip": ip}]}} if ip else {"loadBalancer": {}}
    return {"metadata": {"name": "istio-eastwestgateway", "namespace": "istio-system",
                         "labels": {"topology.istio.io/network": network, "istio": "eastwestgateway"}},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.9", "ports": [{"name": "tls", "port": 15443}]},
            "status": status}


@pytest.fixture
def views() -> list[ClusterView]:
    svc1, ep1 = helloworld("127.1.101.5", [("hw-v1-a", "127.1.1.5")])
    svc2, ep2 = helloworld("127.1.102.5", [("hw-v1-b", "127.1.2.5")], not_ready=[("hw-v1-c", "127.1.2.6")])
    return [
        ClusterView("cluster1", [namespace("istio-system", "network1")], [svc1, eastwest("network1", "127.1.200.1")],
                    [ep1], [pod("hw-v1-a", "127.1.1.5", {"app": "helloworld", "version": "v1"})],
                    [node("n1", "cluster1")]),
        ClusterView("cluster2", [namespace("istio-system", "network2")], [svc2, eastwest("network2", "127.1.200.2")],
                    [ep2], [pod("hw-v1-b", "127.1.2.5", {"app": "helloworld", "version": "v1"}, sa="hello"),
                            pod("hw-v1-c", "127.1.2.6", {"app": "helloworld"}, sidecar=False)],
                    [node("n1", "cluster2")]),
    ]


def test_one_service_across_clusters_with_networks_and_identities(views: list[ClusterView]) -> None:
    snapshot = build_snapshot(views, MESH, [], local_network="network1")
    (service,) = [s for s in snapshot.services if s.name == "helloworld"]
    assert service.hostname == "helloworld.sample.svc.cluster.local"
    assert service.addresses == {"cluster1": "127.1.101.5", "cluster2": "127.1.102.5"}
    assert [(p.name, p.port, p.protocol) for p in service.ports] == [("http", 5000, "HTTP")]
    by_address = {e.address: e for e in service.endpoints}
    a, b, c = by_address["127.1.1.5"], by_address["127.1.2.5"], by_address["127.1.2.6"]
    assert (a.network, a.cluster, a.locality, a.tls_mode, a.healthy) == ("network1", "cluster1", "cluster1", "istio",
                                                                         True)
    assert b.service_account == "spiffe://cluster.local/ns/sample/sa/hello" and b.network == "network2"
    assert (c.tls_mode, c.healthy) == ("disabled", False)
    gateways = {(g.network, g.address, g.port, g.cluster) for g in snapshot.gateways}
    assert gateways == {("network1", "127.1.200.1", 15443, "cluster1"), ("network2", "127.1.200.2", 15443, "cluster2")}


def test_gateway_without_an_address_is_not_a_gateway(views: list[ClusterView]) -> None:
    views[1].services[1] = eastwest("network2", None)  # EXTERNAL-IP <pending>
    snapshot = build_snapshot(views, MESH, [], local_network="network1")
    assert {g.network for g in snapshot.gateways} == {"network1"}


def test_pod_network_label_wins_over_the_cluster_default(views: list[ClusterView]) -> None:
    views[0].pods[0]["metadata"]["labels"]["topology.istio.io/network"] = "special"
    snapshot = build_snapshot(views, MESH, [], local_network="network1")
    endpoint = next(e for s in snapshot.services for e in s.endpoints if e.address == "127.1.1.5")
    assert endpoint.network == "special"


def test_config_objects_keep_their_spec() -> None:
    rule = {"kind": "DestinationRule", "metadata": {"name": "hw", "namespace": "sample"},
            "spec": {"host": "helloworld", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}}
    snapshot = build_snapshot([], MESH, [rule, {"kind": "ConfigMap", "metadata": {"name": "x"}}], local_network="")
    assert [(c.key, c.spec["trafficPolicy"]["tls"]["mode"]) for c in snapshot.configs] == [
        ("DestinationRule/sample/hw", "DISABLE")]


def test_mesh_config_from_the_istio_configmap() -> None:
    mesh = parse_mesh_config("trustDomain: foo.com\ntrustDomainAliases: [bar.com]\n"
                             "defaultConfig:\n  proxyMetadata:\n    ISTIO_META_DNS_CAPTURE: 'true'\n")
    assert (mesh.trust_domain, mesh.trust_domain_aliases) == ("foo.com", ("bar.com",))
    assert mesh.proxy_metadata == {"ISTIO_META_DNS_CAPTURE": "true"}
    assert parse_mesh_config(None).trust_domain == "cluster.local"


def test_proxy_of_a_gateway_pod_reads_its_network_view() -> None:
    gateway = {"metadata": {"name": "istio-eastwestgateway-abc", "namespace": "istio-system",
                            "labels": {"istio": "eastwestgateway"}},
               "spec": {"containers": [{"name": "istio-proxy", "args": ["proxy", "router"], "env": [
                   {"name": "ISTIO_META_REQUESTED_NETWORK_VIEW", "value": "network1"},
                   {"name": "ISTIO_META_NETWORK", "value": "network1"}]}], "serviceAccountName": "gw"},
               "status": {"podIP": "127.1.1.9"}}
    proxy = proxy_of(gateway, "cluster1", "network1", "cluster.local", {})
    assert proxy is not None and proxy.type == "router"
    assert proxy.requested_network_view == ("network1",) and proxy.network == "network1"
    assert proxy.id == "router~127.1.1.9~istio-eastwestgateway-abc.istio-system~istio-system.svc.cluster.local"
    assert proxy_of({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "app"}]},
                     "status": {"podIP": "1.2.3.4"}}, "c", "n", "cluster.local", {}) is None


def test_injection_patch_adds_the_sidecar_labels_and_status() -> None:
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "sleep-5b4c5d6888", "controller": True}
    plain = {"metadata": {"generateName": "sleep-5b4c5d6888-", "namespace": "sample", "labels": {"app": "sleep"},
                          "ownerReferences": [owner]},
             "spec": {"containers": [{"name": "sleep", "image": "curlimages/curl"}], "serviceAccountName": "sleep"}}
    ops = sidecar_patch(plain, cluster="cluster1", network="network1", mesh=MESH, values={})
    injected = json_patch(plain, ops)
    names = [c["name"] for c in injected["spec"]["containers"]]
    assert names == ["sleep", "istio-proxy"]
    proxy = injected["spec"]["containers"][1]
    assert proxy["image"] == "docker.io/istio/proxyv2:1.30.0" and proxy["args"][:2] == ["proxy", "sidecar"]
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    assert env["ISTIO_META_CLUSTER_ID"] == "cluster1" and env["ISTIO_META_NETWORK"] == "network1"
    assert env["ISTIO_META_WORKLOAD_NAME"] == "sleep"  # the Deployment, found through its ReplicaSet
    labels = injected["metadata"]["labels"]
    assert labels["security.istio.io/tlsMode"] == "istio" and labels["topology.istio.io/network"] == "network1"
    assert json.loads(injected["metadata"]["annotations"]["sidecar.istio.io/status"])["containers"] == ["istio-proxy"]
    assert not wants_injection(injected)  # never twice
    opted_out = {**plain, "metadata": {**plain["metadata"], "annotations": {"sidecar.istio.io/inject": "false"}}}
    assert sidecar_patch(opted_out, cluster="c", network="", mesh=MESH, values={}) == []


def _secret(name: str, files: dict[str, str]) -> dict:
    return {"metadata": {"name": name, "namespace": "istio-system"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in files.items()}}


def test_plugged_in_cacerts_signs_workloads_under_the_mesh_root(tmp_path) -> None:
    make_mesh(tmp_path, ["cluster1"], key="ec-p256")
    files = {n: (tmp_path / "cluster1" / n).read_text() for n in ("ca-cert.pem", "ca-key.pem", "root-cert.pem",
                                                                    "cert-chain.pem")}
    loaded = mesh_ca.load_ca(_secret("cacerts", files), None)
    assert loaded is not None and loaded.source == "cacerts"
    assert loaded.root_pem == files["root-cert.pem"]
    current = mesh_ca.CurrentCa()
    assert current.set_ca(loaded) and not current.set_ca(loaded)
    issued = loaded.authority.issue_workload("spiffe://cluster.local/ns/sample/sa/sleep")
    assert issued.root_pem == files["root-cert.pem"]


def test_cacerts_with_a_foreign_key_is_refused(tmp_path) -> None:
    make_mesh(tmp_path, ["cluster1", "cluster2"], key="ec-p256")
    files = {n: (tmp_path / "cluster1" / n).read_text() for n in ("ca-cert.pem", "root-cert.pem", "cert-chain.pem")}
    files["ca-key.pem"] = (tmp_path / "cluster2" / "ca-key.pem").read_text()
    with pytest.raises(PkiError, match="does not match"):
        mesh_ca.load_ca(_secret("cacerts", files), None)


def test_self_signed_secret_round_trips() -> None:
    secret = mesh_ca.new_self_signed_secret()
    loaded = mesh_ca.load_ca(None, secret)
    assert loaded is not None and loaded.source == "istio-ca-secret" and loaded.authority.is_root
    assert mesh_ca.load_ca(None, None) is None


def test_injection_declares_to_the_node_what_replaces_iptables() -> None:
    from labkit.emulator.node import SidecarDeclaration

    plain = {"metadata": {"name": "sleep-1", "namespace": "sample", "labels": {"app": "sleep"}},
             "spec": {"containers": [{"name": "sleep", "image": "curlimages/curl"}]}}
    injected = json_patch(plain, sidecar_patch(plain, cluster="cluster1", network="", mesh=MESH, values={}))
    # The node reads only this annotation: the proxy keeps the pod IP, apps use its HTTP proxy listener, and
    # probes of the agent's ports go to the pod IP.
    declared = SidecarDeclaration.of(injected["metadata"]["annotations"])
    assert declared == SidecarDeclaration("istio-proxy", 15080, frozenset({15020, 15021, 15090}))
    assert SidecarDeclaration.of(plain["metadata"].get("annotations") or {}) is None


def test_the_spire_template_mounts_spires_socket_where_istios_agent_looks() -> None:
    pod = {"metadata": {"name": "sleep-1", "namespace": "sleep", "annotations": {
        "inject.istio.io/templates": "sidecar,spire", "spiffe.io/federatesWith": "bar.com"}},
        "spec": {"containers": [{"name": "sleep", "image": "curlimages/curl"}], "serviceAccountName": "sleep"}}
    injected = json_patch(pod, sidecar_patch(pod, cluster="cluster1", network="", mesh=MESH, values={}))
    proxy = injected["spec"]["containers"][1]
    assert {"name": "workload-socket", "mountPath": "/run/secrets/workload-spiffe-uds", "readOnly": True} in \
        proxy["volumeMounts"]
    assert {"name": "workload-socket", "csi": {"driver": "csi.spiffe.io", "readOnly": True}} in \
        injected["spec"]["volumes"]
    assert json.loads(injected["metadata"]["annotations"]["sidecar.istio.io/status"])["volumes"] == [
        "istio-token", "istiod-ca-cert", "workload-socket"]
    plain = {**pod, "metadata": {"name": "sleep-2", "namespace": "sleep"}}
    injected = json_patch(plain, sidecar_patch(plain, cluster="cluster1", network="", mesh=MESH, values={}))
    assert [v["name"] for v in injected["spec"]["volumes"]] == ["istio-token", "istiod-ca-cert"]
