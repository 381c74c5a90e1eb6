"""Istio's multicluster verification on three embedded clusters, with real Envoy and real mTLS.

Three clusters on three networks share one root; each runs istiod and an east-west gateway and reads the
others through remote secrets. helloworld v1 runs in cluster1 and cluster2, v2 in cluster3, sleep in all
three. The tests assert what a learner sees: every instance answers from every cluster, cluster1's
sidecar lists its local pod and the two remote gateways, STRICT mTLS refuses plaintext, a removed remote
secret takes its cluster's endpoints away, and a cluster with another root fails with the TLS reason.
Tests run in file order; the last one breaks the mesh on purpose.
"""

from __future__ import annotations

import json
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit import istio, kube
from labkit.emulator import launching
from labkit.pki import make_mesh
from labkit.testing import eventually, running_emulator

CLUSTERS = ("cluster1", "cluster2", "cluster3")
SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
HELLOWORLD = "outbound|5000||helloworld.sample.svc.cluster.local"

# The official client leaves pooled sockets to the garbage collector after exec streams.
pytestmark = [pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("mesh-home")
    with running_emulator(CLUSTERS, state):
        istio.install_multi_primary(CLUSTERS, state / "certs")
        for cluster, versions in (("cluster1", ["v1"]), ("cluster2", ["v1"]), ("cluster3", ["v2"])):
            kube.apply(cluster, [{"apiVersion": "v1", "kind": "Namespace",
                                  "metadata": {"name": "sample", "labels": {"istio-injection": "enabled"}}}])
            kube.apply(cluster, SAMPLES / "helloworld.yaml", namespace="sample", selector="service=helloworld")
            for version in versions:
                kube.apply(cluster, SAMPLES / "helloworld.yaml", namespace="sample", selector=f"version={version}")
            kube.apply(cluster, SAMPLES / "sleep.yaml", namespace="sample")
        kube.apply("cluster1", SAMPLES / "httpbin.yaml", namespace="sample")
        for cluster in CLUSTERS:
            kube.wait_ready(cluster, "sample", ["deploy/sleep"], timeout=90)
        kube.wait_ready("cluster1", "sample", ["deploy/httpbin"], timeout=90)
        yield state


def calls(cluster: str, url: str, n: int) -> Counter[str]:
    """``n`` curls from sleep in ``cluster`` (one exec), counted by answer."""
    result = kube.exec_(cluster, "sample", "deploy/sleep",
                        ["sh", "-c", f"for i in $(seq {n}); do curl -sS {url}; echo; done"], container="sleep")
    return Counter(line for line in result.stdout.splitlines() if line.strip())


def helloworld_pods() -> set[str]:
    return {pod.name for cluster in CLUSTERS for pod in kube.pods(cluster, "sample", "app=helloworld")}


def gateway_ip(cluster: str) -> str:
    service = kube.get_object(cluster, "v1", "Service", "istio-eastwestgateway", "istio-system")
    return service["status"]["loadBalancer"]["ingress"][0]["ip"]


def test_every_cluster_reaches_every_instance(mesh: Path) -> None:
    expected = helloworld_pods()
    assert len(expected) == 3
    for cluster in CLUSTERS:
        def reached(cluster: str = cluster) -> set[str]:
            answers = calls(cluster, "helloworld.sample:5000/hello", 40)
            assert all(a.startswith("Hello version: v") for a in answers), answers
            return {a.split("instance: ")[1] for a in answers} == expected and set(answers)
        answered = eventually(reached, 60, f"every instance answering {cluster}")
        assert {a.split(",")[0] for a in answered} == {"Hello version: v1", "Hello version: v2"}


def test_cluster1_sees_its_pod_and_the_two_remote_gateways(mesh: Path) -> None:
    local = {p.ip for p in kube.pods("cluster1", "sample", "app=helloworld")}
    table = istio.proxy_endpoints("cluster1", "deploy/sleep.sample", cluster=HELLOWORLD)
    endpoints = {row.endpoint for row in table.rows}
    assert endpoints == {f"{ip}:5000" for ip in local} | {f"{gateway_ip(c)}:15443" for c in ("cluster2", "cluster3")}
    assert {row.status for row in table.rows} == {"HEALTHY"}
    text = str(table)
    assert text.splitlines()[0].split() == ["ENDPOINT", "STATUS", "OUTLIER", "CHECK", "CLUSTER"]


def test_remote_clusters_are_synced(mesh: Path) -> None:
    rows = {row.name: row for row in istio.remote_clusters("cluster1")}
    assert rows["cluster2"].status == rows["cluster3"].status == "synced"
    assert rows["cluster2"].secret == "istio-system/istio-remote-secret-cluster2"


def _istiod_token(cluster: str, account: str = "sleep", audience: str = "istio-ca", seconds: int = 3600) -> str:
    from kubernetes import client

    from labkit.kube.clients import client_for

    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
        audiences=[audience], expiration_seconds=seconds))
    return client.CoreV1Api(client_for(cluster)).create_namespaced_service_account_token(
        account, "sample", request).status.token


def test_istiod_serves_a_proxys_cds_and_certificate_over_grpc_to_a_plain_client(mesh: Path) -> None:
    """Dial istiod's 15012 as any gRPC client would: the pod's projected istio-ca token buys its CDS and a certificate;
    a token of the wrong audience, another cluster's token claimed as this cluster's, or a CSR for another
    identity is refused with Istio's words. cluster2's token is accepted when it says it is cluster2's: istiod
    reviews it through cluster2's remote secret."""
    import asyncio

    import grpc
    from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

    from labkit.emulator.envoy import protocol
    from labkit.pki import describe, new_request

    sleep = kube.get_object("cluster1", "v1", "Pod", kube.pods("cluster1", "sample", "app=sleep")[0].name, "sample")
    node = (f"sidecar~{sleep['status']['podIP']}~{sleep['metadata']['name']}.sample~sample.svc.cluster.local")
    root = (mesh / "certs" / "root-cert.pem").read_text()
    # The pod's own projected istio-token (the injector's volume, written by the node from a TokenRequest).
    token = kube.exec_("cluster1", "sample", sleep["metadata"]["name"], ["cat", "var/run/secrets/tokens/istio-token"],
                       container="istio-proxy").stdout.strip()
    assert token.count(".") == 2

    async def scenario() -> None:
        credentials = grpc.ssl_channel_credentials(root_certificates=root.encode())
        # Through istiod's Service, as a client in the cluster dials it (the machine does not reach pod IPs).
        service = kube.get_object("cluster1", "v1", "Service", "istiod", "istio-system")
        target = f"{service['spec']['clusterIP']}:15012"
        async with grpc.aio.secure_channel(target, credentials, options=[
                ("grpc.ssl_target_name_override", "istiod.istio-system.svc")]) as channel:
            call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources(
                metadata=[("authorization", f"Bearer {token}"), ("clusterid", "cluster1")])
            request = discovery_pb2.DiscoveryRequest(type_url=protocol.CLUSTER)
            request.node.id = node
            await call.write(request)
            response = await asyncio.wait_for(call.read(), 15)
            names = {protocol.message_class(r.type_url).FromString(r.value).name for r in response.resources}
            assert HELLOWORLD in names
            call.cancel()
            create = channel.unary_unary(protocol.CREATE_CERTIFICATE,
                                         request_serializer=protocol.IstioCertificateRequest.SerializeToString,
                                         response_deserializer=protocol.IstioCertificateResponse.FromString)
            _, csr = new_request("spiffe://cluster.local/ns/sample/sa/sleep")
            issued = await create(protocol.IstioCertificateRequest(csr=csr, validity_duration=120),
                                  metadata=[("authorization", f"Bearer {token}"), ("clusterid", "cluster1")])
            assert describe(issued.cert_chain[0])[0].uris == ("spiffe://cluster.local/ns/sample/sa/sleep",)
            remote = _istiod_token("cluster2")
            issued = await create(protocol.IstioCertificateRequest(csr=csr),
                                  metadata=[("authorization", f"Bearer {remote}"), ("clusterid", "cluster2")])
            assert issued.cert_chain
            _, other = new_request("spiffe://cluster.local/ns/sample/sa/httpbin")
            for bearer, cluster, body in ((_istiod_token("cluster1", audience="other"), "cluster1", csr),
                                          (remote, "cluster1", csr), ("not-a-token", "cluster1", csr),
                                          (token, "cluster9", csr), (token, "cluster1", other)):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await create(protocol.IstioCertificateRequest(csr=body),
                                 metadata=[("authorization", f"Bearer {bearer}"), ("clusterid", cluster)])
                assert (refused.value.code(), refused.value.details()) == (
                    grpc.StatusCode.UNAUTHENTICATED, "request authenticate failure")

    asyncio.run(scenario())



def test_proxy_status_shows_every_proxy_of_each_cluster_synced(mesh: Path) -> None:
    for cluster in CLUSTERS:
        def synced(cluster: str = cluster) -> list[istio.ProxyStatus] | None:
            rows = istio.proxy_status(cluster, quiet=True)
            names = {row.name.split("-")[0] for row in rows}
            return rows if {"sleep", "helloworld", "istio"} <= names and all(row.synced for row in rows) else None
        rows = eventually(synced, 30, f"every proxy of {cluster} SYNCED")
        assert {row.cluster for row in rows} == {cluster}, [(r.name, r.cluster) for r in rows]
        assert all(row.status("CDS") == row.status("LDS") == "SYNCED" for row in rows)

def test_strict_mtls_refuses_plaintext_and_shows_the_callers_identity(mesh: Path) -> None:
    kube.apply("cluster1", [{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                             "metadata": {"name": "default", "namespace": "sample"},
                             "spec": {"mtls": {"mode": "STRICT"}}}])
    # A client outside the mesh (this machine, through the Service's address) speaks plaintext to httpbin's pod.
    httpbin = kube.get_object("cluster1", "v1", "Service", "httpbin", "sample")["spec"]["clusterIP"]

    def plaintext_refused() -> bool:
        with socket.create_connection((httpbin, 8000), timeout=5) as conn:
            conn.sendall(b"GET /headers HTTP/1.1\r\nHost: httpbin\r\n\r\n")
            try:
                return conn.recv(1024) == b""  # closed without an answer
            except ConnectionResetError:
                return True

    eventually(plaintext_refused, 30, "STRICT refusing plaintext")
    answer = kube.exec_("cluster1", "sample", "deploy/sleep", ["curl", "-sS", "httpbin.sample:8000/headers"],
                        container="sleep")
    headers = json.loads(answer.stdout)["headers"]
    assert "URI=spiffe://cluster.local/ns/sample/sa/sleep" in headers["X-Forwarded-Client-Cert"]


def test_a_removed_remote_secret_takes_its_endpoints_away(mesh: Path) -> None:
    secret = kube.get_object("cluster1", "v1", "Secret", "istio-remote-secret-cluster2", "istio-system")

    def gateways() -> set[str]:
        rows = istio.proxy_endpoints("cluster1", "deploy/sleep.sample", cluster=HELLOWORLD).rows
        return {row.endpoint for row in rows if row.endpoint.endswith(":15443")}

    kube.delete_object("cluster1", "v1", "Secret", "istio-remote-secret-cluster2", "istio-system")
    eventually(lambda: gateways() == {f"{gateway_ip('cluster3')}:15443"}, 15, "cluster2's gateway leaving")
    assert "cluster2" not in {row.name for row in istio.remote_clusters("cluster1")}
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
        secret["metadata"].pop(key, None)
    kube.apply("cluster1", [secret])
    eventually(lambda: len(gateways()) == 2, 15, "cluster2's gateway coming back")


def test_a_remote_secret_with_a_bad_server_times_out(mesh: Path) -> None:
    good = kube.get_object("cluster1", "v1", "Secret", "istio-remote-secret-cluster3", "istio-system")
    # Nothing listens there: istiod's requests fail, as with a wrong address or a cluster out of reach.
    broken = istio.create_remote_secret("cluster3", "cluster3", server="https://127.0.0.1:9")
    istio.apply_remote_secret(broken, "cluster1")

    def status() -> str:
        return {row.name: row.status for row in istio.remote_clusters("cluster1")}.get("cluster3", "")

    eventually(lambda: status() == "timeout", 30, "cluster3 timing out")
    rows = istio.proxy_endpoints("cluster1", "deploy/sleep.sample", cluster=HELLOWORLD).rows
    assert f"{gateway_ip('cluster3')}:15443" not in {row.endpoint for row in rows}
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
        good["metadata"].pop(key, None)
    kube.apply("cluster1", [good])
    eventually(lambda: status() == "synced", 30, "cluster3 synced again")


def _label(cluster: str, kind: str, name: str, namespace: str | None, network: str | None) -> None:
    """Set (or, with ``None``, remove) the ``topology.istio.io/network`` label of a Namespace or Pod."""
    from kubernetes import client

    from labkit.kube.clients import client_for

    api = client.CoreV1Api(client_for(cluster))
    body = {"metadata": {"labels": {"topology.istio.io/network": network}}}
    if kind == "Namespace":
        api.patch_namespace(name, body)
    else:
        api.patch_namespaced_pod(name, namespace, body)


def test_a_cluster_without_its_network_label_is_dialled_directly_and_times_out(mesh: Path) -> None:
    """cluster3 as if installed without its network: cluster1's sidecars take its pod for one of their own network,
    dial its pod IP, and the connection times out, because networks really are apart; with the label back, the
    calls go through cluster3's east-west gateway again."""
    running = launching.status(mesh)
    if running is None or not running.separate_networks:
        pytest.skip(f"network separation is off here: {running and running.networks_detail}")
    (v2,) = kube.pods("cluster3", "sample", "app=helloworld")
    subset = "outbound|5000|v2|helloworld.sample.svc.cluster.local"
    rule = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "helloworld", "namespace": "sample"},
            "spec": {"host": "helloworld.sample.svc.cluster.local",
                     # 1 s instead of Istio's 10 s: the timeout is the symptom, waiting it out thrice is not.
                     "trafficPolicy": {"connectionPool": {"tcp": {"connectTimeout": "1s"}}},
                     "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                 {"name": "v2", "labels": {"version": "v2"}}]}}
    kube.apply("cluster3", [rule])  # its gateway routes the subset's SNI only if its istiod knows the subset
    kube.apply("cluster1", [
        rule,
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": "helloworld", "namespace": "sample"},
         "spec": {"hosts": ["helloworld.sample.svc.cluster.local"],
                  "http": [{"route": [{"destination": {"host": "helloworld.sample.svc.cluster.local",
                                                       "subset": "v2"}}]}]}}])

    def endpoints() -> set[str]:
        return {row.endpoint for row in istio.proxy_endpoints("cluster1", "deploy/sleep.sample", cluster=subset).rows}

    try:
        eventually(lambda: endpoints() == {f"{gateway_ip('cluster3')}:15443"}, 30, "v2 behind cluster3's gateway")
        assert calls("cluster1", "helloworld.sample:5000/hello", 3).keys() == {
            f"Hello version: v2, instance: {v2.name}"}

        _label("cluster3", "Namespace", "istio-system", None, None)
        _label("cluster3", "Pod", v2.name, "sample", None)
        eventually(lambda: endpoints() == {f"{v2.ip}:5000"}, 30, "cluster1's sidecar dialling v2's pod IP")
        # (cluster3's gateway may drop v2 a moment before cluster1's sidecar stops using the gateway.)
        eventually(lambda: calls("cluster1", "helloworld.sample:5000/hello", 1).keys() == {
            "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: "
            "connection timeout"}, 30, "calls to v2's pod IP timing out")
        # The access log (flushed every 200 ms) says why: upstream failure (UF) after retries (URX), a timeout.
        failed = eventually(lambda: [e for e in istio.proxy_access_log("cluster1", "deploy/sleep.sample", tail=20)
                                     if e.upstream_host == f"{v2.ip}:5000"], 5, "the failures in the access log")
        assert {(e.code, frozenset(e.flags.split(","))) for e in failed} == {(503, frozenset({"UF", "URX"}))}, failed
        assert "connection_timeout" in failed[-1].details

        _label("cluster3", "Namespace", "istio-system", None, "network3")
        _label("cluster3", "Pod", v2.name, "sample", "network3")
        eventually(lambda: endpoints() == {f"{gateway_ip('cluster3')}:15443"}, 30, "v2 behind the gateway again")
        assert calls("cluster1", "helloworld.sample:5000/hello", 3).keys() == {
            f"Hello version: v2, instance: {v2.name}"}
    finally:
        _label("cluster3", "Namespace", "istio-system", None, "network3")
        _label("cluster3", "Pod", v2.name, "sample", "network3")
        for cluster, kind in (("cluster1", "VirtualService"), ("cluster1", "DestinationRule"),
                              ("cluster3", "DestinationRule")):
            kube.delete_object(cluster, "networking.istio.io/v1", kind, "helloworld", "sample")


def test_a_cluster_with_another_root_fails_with_the_tls_reason(mesh: Path) -> None:
    other = make_mesh(mesh / "other-certs", ["cluster3"], key="ec-p256")
    assert other.root.cert_pem != (mesh / "certs" / "root-cert.pem").read_text()
    istio.plug_in_ca("cluster3", mesh / "other-certs" / "cluster3")
    # Workloads keep their certificates until they renew them: once istiod has taken the new CA (it republishes
    # the root every namespace mounts), restart cluster3's helloworld, as Istio's docs say to after plugging in a
    # CA, so its new pod gets a certificate from the new root.
    eventually(lambda: (kube.get_object("cluster3", "v1", "ConfigMap", "istio-ca-root-cert", "sample") or {}).get(
        "data", {}).get("root-cert.pem") == other.root.cert_pem, 60, "istiod in cluster3 to publish the new root")
    (old,) = kube.pods("cluster3", "sample", "app=helloworld")
    kube.delete_object("cluster3", "v1", "Pod", old.name, "sample")
    eventually(lambda: [p for p in kube.pods("cluster3", "sample", "app=helloworld") if p.name != old.name and
                        p.ready], 60, "a new helloworld pod in cluster3")
    # Only cluster3's helloworld is left, so every call must land there.
    for cluster in ("cluster1", "cluster2"):
        kube.apply(cluster, [{"apiVersion": "apps/v1", "kind": "Deployment",
                              "metadata": {"name": "helloworld-v1", "namespace": "sample"},
                              "spec": {"replicas": 0}}], field_manager="scale-down")

    def failing() -> Counter[str]:
        answers = calls("cluster1", "helloworld.sample:5000/hello", 5)
        return answers if all(a.startswith("upstream connect error") for a in answers) else Counter()

    answers = eventually(failing, 60, "calls into cluster3 failing")
    assert all("503" in a or "upstream connect error" in a for a in answers)
    entries = [e for e in istio.proxy_access_log("cluster1", "deploy/sleep.sample") if e.path == "/hello"]
    last = entries[-1]
    assert last.code == 503 and "UF" in last.flags
    assert "CERTIFICATE_VERIFY_FAILED" in last.transport_failure
    assert last.upstream_host == f"{gateway_ip('cluster3')}:15443"

