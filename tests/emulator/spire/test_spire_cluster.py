"""SPIRE on an embedded cluster: server, registrar and agent as pods, a workload given its SVID through its socket.

The manifests (``spire_kit``) are the article's in shape, trimmed to what one node needs. A pod that mounts the
SPIFFE CSI volume, as Istio's ``spire`` injection template makes it, gets a socket in its folder; py-spiffe fetches
from it. Two clusters federate foo.com and bar.com through a bundle endpoint behind a LoadBalancer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc
from spiffe import WorkloadApiClient
from spiffe.spiffe_id.spiffe_id import TrustDomain
from spire_kit import BUNDLE_ENDPOINT, SLEEP, load_balancer_ip, spire_manifests

from labkit import kube
from labkit.emulator.envoy import protocol
from labkit.pki import describe
from labkit.testing import eventually, running_emulator

pytestmark = [pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]

@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """cluster1 runs foo.com's SPIRE (federating with bar.com's bundle endpoint) and sleep; cluster2 bar.com's."""
    home = tmp_path_factory.mktemp("spire-home")
    with running_emulator(("cluster1", "cluster2"), home):
        kube.apply("cluster2", spire_manifests("bar.com", "cluster-2", "foo.com", "https://127.0.0.1:1"))
        kube.apply("cluster2", BUNDLE_ENDPOINT)
        kube.wait_ready("cluster2", "spire", ["statefulset/spire-server"], timeout=90)
        address = eventually(lambda: load_balancer_ip("cluster2"), 30, "bar.com's bundle endpoint address")
        kube.apply("cluster1", spire_manifests("foo.com", "cluster-1", "bar.com", f"https://{address}:8443"))
        kube.wait_ready("cluster1", "spire", ["statefulset/spire-server", "daemonset/spire-agent"], timeout=90)
        kube.apply("cluster1", SLEEP)
        kube.wait_ready("cluster1", "sleep", ["pod/sleep-7f9c"], timeout=90)
        yield "cluster1", home


def _server(cluster: str, *args: str) -> tuple[int, str]:
    """``kubectl exec -n spire spire-server-0 -c spire-server -- spire-server …``"""
    result = kube.exec_(cluster, "spire", "spire-server-0", ["spire-server", *args], container="spire-server")
    return result.exit_code, result.stdout + result.stderr


def test_the_registrar_makes_the_pods_entry_as_the_article_shows(cluster: tuple[str, Path]) -> None:
    name, _ = cluster
    pod = kube.get_object(name, "v1", "Pod", "sleep-7f9c", "sleep")
    assert pod is not None
    uid, node = pod["metadata"]["uid"], pod["spec"]["nodeName"]

    def shown() -> str | None:
        code, out = _server(name, "entry", "show", "-spiffeID", "spiffe://foo.com/ns/sleep/sa/sleep")
        return out if code == 0 and out.startswith("Found 1 entry") else None
    out = eventually(shown, 60, "the registrar's entry for sleep")
    lines = out.splitlines()
    assert lines[2:] == [
        "SPIFFE ID        : spiffe://foo.com/ns/sleep/sa/sleep",
        f"Parent ID        : spiffe://foo.com/k8s-workload-registrar/cluster-1/node/{node}",
        "Revision         : 0",
        "X509-SVID TTL    : default",
        "JWT-SVID TTL     : default",
        f"Selector         : k8s:node-name:{node}",
        "Selector         : k8s:ns:sleep",
        f"Selector         : k8s:pod-uid:{uid}",
        "FederatesWith    : bar.com",
        "DNS name         : sleep-7f9c",
        "",  # SPIRE ends every entry with a blank line
    ]
    assert _server(name, "healthcheck") == (0, "Server is healthy.\n")
    node_uid = kube.get_object(name, "v1", "Node", node)["metadata"]["uid"]  # type: ignore[index]
    code, agents = _server(name, "agent", "list")
    lines = agents.splitlines()
    assert (code, lines[:3]) == (0, ["Found 1 attested agent:", "",
                                     f"SPIFFE ID         : spiffe://foo.com/spire/agent/k8s_psat/cluster-1/{node_uid}"])
    assert lines[3] == "Attestation type  : k8s_psat"
    assert re.fullmatch(r"Expiration time   : \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000 UTC", lines[4])
    assert re.fullmatch(r"Serial number     : \d+", lines[5])


def test_the_workload_fetches_its_svid_from_the_socket_in_its_pod(cluster: tuple[str, Path]) -> None:
    name, home = cluster
    pod = kube.get_object(name, "v1", "Pod", "sleep-7f9c", "sleep")
    assert pod is not None
    (folder,) = home.rglob(f"sleep_sleep-7f9c_{pod['metadata']['uid']}")
    assert eventually((folder / "var/run/secrets/workload-spiffe-uds/socket").exists, 30,
                      "the socket at Istio's path")  # /var/run and /run are one directory in a container
    # A Unix socket path is limited to 107 bytes and the pod folder sits deep in the test's home: reach the socket
    # through a descriptor of its directory, as the programs in the pod do.
    directory = os.open(folder / "run/secrets/workload-spiffe-uds", os.O_RDONLY | os.O_DIRECTORY)
    socket = f"/proc/self/fd/{directory}/socket"

    def fetched() -> object:
        try:
            client = WorkloadApiClient(f"unix://{socket}", default_timeout=5)
        except Exception:  # the socket is not there yet
            return None
        try:
            return client.fetch_x509_context()
        except Exception:  # no identity issued yet: the agent syncs every second
            return None
        finally:
            client.close()
    try:
        context = eventually(fetched, 60, "an X509-SVID for sleep")
    finally:
        os.close(directory)
    svid = context.default_svid  # type: ignore[attr-defined]
    assert str(svid.spiffe_id) == "spiffe://foo.com/ns/sleep/sa/sleep"
    leaf = describe(svid.leaf.public_bytes(_pem()).decode())[0]
    assert leaf.issuer == "C=US, O=SPIFFE"
    assert leaf.subject.startswith("C=US, O=SPIRE, CN=sleep-7f9c, x500UniqueIdentifier=")
    foo = context.x509_bundle_set.get_bundle_for_trust_domain(TrustDomain("foo.com"))  # type: ignore[attr-defined]
    (root,) = foo.x509_authorities
    assert describe(root.public_bytes(_pem()).decode())[0].subject == "O=cert-manager, CN=certmanager-ca"


def _pem() -> object:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.PEM


def _root_secret(directory: int) -> dict[str, object]:
    """``ROOTCA`` as SPIRE's agent serves it to the sleep pod's Envoy (a fresh SDS stream, its first answer)."""
    with grpc.insecure_channel(f"unix:/proc/self/fd/{directory}/socket") as channel:
        stream = sds_pb2_grpc.SecretDiscoveryServiceStub(channel).StreamSecrets(
            iter([discovery_pb2.DiscoveryRequest(resource_names=["ROOTCA"], type_url=protocol.SECRET)]), timeout=10)
        (resource,) = next(iter(stream)).resources
    message = protocol.message_class(protocol.SECRET)()
    resource.Unpack(message)
    return protocol.to_dict(message)["validation_context"]


def test_federation_gives_the_workload_one_trust_bundle_per_domain_until_dissociated(
        cluster: tuple[str, Path]) -> None:
    name, home = cluster
    code, bar_bundle = _server("cluster2", "bundle", "show", "-format", "spiffe")
    assert code == 0
    bar_root = _server("cluster2", "bundle", "show")[1]
    # The first bundle goes by hand, as in the article (there: kubectl exec -i … bundle set < bar.json). It is
    # given as an older copy (sequence 0), so the one fetched from bar.com's endpoint behind its load balancer
    # shows by its sequence.
    (foo_server,) = (home / "clusters" / "cluster1").rglob("spire_spire-server-0_*")
    (foo_server / "tmp").mkdir(exist_ok=True)
    (foo_server / "tmp" / "bar.com.json").write_text(json.dumps({**json.loads(bar_bundle), "spiffe_sequence": 0}))
    assert _server(name, "bundle", "set", "-format", "spiffe", "-id", "spiffe://bar.com", "-path",
                   "/tmp/bar.com.json") == (0, "bundle set.\n")
    pod = kube.get_object(name, "v1", "Pod", "sleep-7f9c", "sleep")
    assert pod is not None
    (folder,) = home.rglob(f"sleep_sleep-7f9c_{pod['metadata']['uid']}")
    directory = os.open(folder / "run/secrets/workload-spiffe-uds", os.O_RDONLY | os.O_DIRECTORY)
    try:
        def federated() -> list[object] | None:
            validation = _root_secret(directory)
            validator = validation.get("custom_validator_config")
            return validator["typed_config"]["trust_domains"] if validator else None  # type: ignore[index]
        domains = eventually(federated, 30, "bar.com's bundle in the sleep pod's ROOTCA")
        assert [d["name"] for d in domains] == ["bar.com", "foo.com"]  # type: ignore[index]
        assert domains[0]["trust_bundle"]["inline_string"] == bar_root  # type: ignore[index]
        # Fetched from bar.com's endpoint since, authenticated by the bundle set by hand: the same root, bar's sequence.
        eventually(lambda: json.loads(_server(name, "bundle", "list", "-id", "spiffe://bar.com", "-format",
                                              "spiffe")[1])["spiffe_sequence"] == 1, 30, "bar.com's bundle fetched")
        assert _server(name, "bundle", "list", "-id", "spiffe://bar.com") == (0, bar_root)
        assert _server(name, "bundle", "delete", "-id", "spiffe://bar.com", "-mode", "dissociate") == \
            (0, "bundle deleted.\n")
        alone = eventually(lambda: "trusted_ca" in _root_secret(directory) and _root_secret(directory), 30,
                           "ROOTCA back to foo.com alone")
        assert "BEGIN CERTIFICATE" in alone["trusted_ca"]["inline_string"]  # type: ignore[index]
    finally:
        os.close(directory)



@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_bundle_set_reads_the_bundle_from_kubectl_exec_stdin(cluster: tuple[str, Path]) -> None:
    """The article's own command: ``kubectl exec -i … spire-server bundle set … <<< "$bar_bundle"``."""
    name, _ = cluster
    bar_bundle = _server("cluster2", "bundle", "show", "-format", "spiffe")[1]
    result = subprocess.run(
        ["kubectl", "--context", name, "exec", "-i", "-n", "spire", "spire-server-0", "-c", "spire-server", "--",
         "spire-server", "bundle", "set", "-format", "spiffe", "-id", "spiffe://bar.com"],
        input=bar_bundle, capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, "bundle set.\n", "")
    assert _server(name, "bundle", "list", "-id", "spiffe://bar.com") == \
        (0, _server("cluster2", "bundle", "show")[1])
