"""A pod whose sidecar declares a DNS proxy resolves through it: nslookup and curl see its names; without, they fail.

The agent's DNS proxy runs in the test (fed its name table directly, as NDS will), on the pod IP and the port the
declaration names; the cluster DNS is the node's resolver seam, which knows no remote-only service.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from labkit.core.contract import SIDECAR_ANNOTATION
from labkit.emulator.envoy.dnsproxy import DNS_PROXY_PORT, DnsProxy
from labkit.emulator.envoy.nametables import NameInfo, NameTable
from labkit.emulator.mesh.injection import proxy_metadata, sidecar_declaration, sidecar_patch
from labkit.emulator.mesh.model import MeshConfig
from labkit.emulator.node.pods import SidecarDeclaration
from tests.emulator.node.test_node_mesh_pods import FakeHttp, Names, Node, a_pod, istio_proxy, run, sleeper

CAPTURE = {"ISTIO_META_DNS_CAPTURE": "true"}
REMOTE = NameTable({"profile.demo.svc.cluster.local": NameInfo(("127.250.102.7",), "Kubernetes", "profile", "demo")})
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def test_the_injector_declares_the_dns_proxy_only_with_dns_capture() -> None:
    on, off = (SidecarDeclaration.of({SIDECAR_ANNOTATION: sidecar_declaration(m)}) for m in (CAPTURE, {}))
    assert (on and on.dns_port, off and off.dns_port) == (DNS_PROXY_PORT, 0)
    pod = {"metadata": {"name": "client", "namespace": "sample",
                        "annotations": {"proxy.istio.io/config": "proxyMetadata:\n  ISTIO_META_DNS_CAPTURE: 'true'\n"}},
           "spec": {"containers": [{"name": "curl", "image": "curlimages/curl"}]}}
    assert proxy_metadata(pod, MeshConfig()) == CAPTURE
    # The pod's annotation overrides the mesh's default, both ways.
    opted_out = {"metadata": {"name": "c", "annotations": {"proxy.istio.io/config": json.dumps(
        {"proxyMetadata": {"ISTIO_META_DNS_CAPTURE": "false"}})}}, "spec": {"containers": []}}
    assert proxy_metadata(opted_out, MeshConfig(proxy_metadata=CAPTURE)) == {"ISTIO_META_DNS_CAPTURE": "false"}
    patch = sidecar_patch(pod, cluster="cluster1", network="network1", mesh=MeshConfig(), values={})
    declared = next(op["value"] for op in patch if op["path"] == "/metadata/annotations/labkit.io~1sidecar")
    assert json.loads(declared)["dnsPort"] == DNS_PROXY_PORT
    container = next(op["value"] for op in patch if op["path"] == "/spec/containers/-")
    assert {"name": "ISTIO_META_DNS_CAPTURE", "value": "true"} in container["env"]


def _pod(name: str, capture: bool) -> dict:
    pod = a_pod(name, sleeper(), istio_proxy())
    pod["metadata"]["annotations"] = {SIDECAR_ANNOTATION: sidecar_declaration(CAPTURE if capture else {})}
    return pod


@needs_curl
def test_nslookup_and_curl_resolve_a_remote_only_service_through_the_dns_proxy_and_fail_without(
        tmp_path: Path) -> None:
    names = Names({"kubernetes.default.svc.cluster.local": "127.250.101.1"})
    sidecar = FakeHttp()

    async def body(node: Node) -> None:
        await node.runtime.sync_pod(_pod("client", capture=True))
        await node.runtime.sync_pod(_pod("plain", capture=False))
        pod_ip = (await node.running("client"))["podIP"]
        await node.running("plain")
        proxy_env = await node.env("client", "istio-proxy")
        cluster_dns = proxy_env["LABKIT_DNS_SERVER"]
        assert proxy_env["LABKIT_DNS_SEARCH"] == "sample.svc.cluster.local svc.cluster.local cluster.local"
        host, _, port = cluster_dns.rpartition(":")
        dns = DnsProxy(pod_ip, "sample", (host, int(port)), proxy_env["LABKIT_DNS_SEARCH"].split())
        dns.start()
        dns.update(REMOTE)
        await sidecar.start(pod_ip, 15080)
        try:
            code, out, _ = await node.exec("client", "curl", ["nslookup", "profile.demo"])
            assert (code, out) == (0, f"Server:\t\t{host}\nAddress:\t{host}#{port}\n\n"
                                      "profile.demo.sample.svc.cluster.local\tcanonical name = profile.demo.\n"
                                      "Name:\tprofile.demo\nAddress: 127.250.102.7\n\n")
            # Names the table does not hold are the cluster DNS's answers, through the proxy.
            code, out, _ = await node.exec("client", "curl", ["nslookup", "kubernetes.default"])
            assert (code, out.splitlines()[3:5]) == (0, ["Name:\tkubernetes.default.svc.cluster.local",
                                                         "Address: 127.250.101.1"])
            code, out, err = await node.exec("client", "curl", ["curl", "-sS", "http://profile.demo:5000/"])
            assert (code, out, err) == (0, "ok\n", "")
            assert sidecar.lines == ["GET http://profile.demo:5000/ HTTP/1.1"]

            # Without the DNS proxy the cluster DNS knows no remote-only service.
            code, out, _ = await node.exec("plain", "curl", ["nslookup", "profile.demo"])
            assert (code, out) == (1, f"Server:\t\t{host}\nAddress:\t{host}#{port}\n\n"
                                      "** server can't find profile.demo: NXDOMAIN\n\n")
            code, out, err = await node.exec("plain", "curl", ["curl", "-sS", "http://profile.demo:5000/"])
            assert (code, err) == (6, "curl: (6) Could not resolve host: profile.demo\n")
        finally:
            dns.stop()
            await sidecar.stop()

    run(tmp_path, body, resolver=names)
