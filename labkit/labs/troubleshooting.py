"""Lab 6: break a healthy multi-primary mesh on purpose, one realistic mistake at a time, and put it right.

Each exercise is a pair of plain functions the notebook calls: ``break_…(lab)`` makes the mistake the way a user
makes it (applies a canary with typos, an old article's expose-services, a cluster's own root, a remote secret with
the wrong server, a plaintext or locality DestinationRule; deletes a Service that "has no pods here"; scales istiod
down), and ``fix_…(lab)`` undoes it the way the user should, leaving the mesh healthy again, so the notebook can run
twice in a row in one kernel. The symptoms are never faked: they are what the clusters, the sidecars and istiod do.

The mesh is Lab 1's (its IstioOperators, east-west gateways and ``expose-services``), on two clusters to keep a
run short: cluster1/network1 runs helloworld v1, cluster2/network2 runs helloworld v2 and httpbin, a service that
exists only there (with its Service in cluster1 too, as a multicluster service must, unless Istio's DNS proxy
answers for it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from labkit import istio, kube, traffic
from labkit.errors import ManifestError, WaitTimeoutError
from labkit.pki import make_mesh

if TYPE_CHECKING:
    from labkit.cluster import Cluster
    from labkit.lab import Lab

MULTI_PRIMARY = Path(__file__).resolve().parents[2] / "manifests" / "multi-primary"
SOURCE = "sample/deploy/sleep"
HELLO = "http://helloworld.sample:5000/hello"
HTTPBIN = "http://httpbin.sample:8000/headers"
VERSIONS = {"cluster1": "v1", "cluster2": "v2"}
UNREACHABLE_SERVER = "https://127.0.0.1:6443"
"""The server a remote secret made from a kind cluster's kubeconfig names: the other cluster's own loopback."""


# --- the healthy mesh ---------------------------------------------------------------------------------------------

def healthy_mesh(lab: Lab) -> None:
    """Lab 1's multi-primary, multi-network mesh on the lab's clusters, with helloworld and httpbin.

    One root and an intermediate per cluster, each ``istio-system`` labelled with its network, istiod and an
    east-west gateway per cluster, ``expose-services``, remote secrets both ways; then ``sample`` (injected) with
    helloworld (v1 in the first cluster, v2 in the second), a ``sleep`` client in each, and httpbin in the second
    cluster only, its Service applied in both. Safe to run again: everything is applied, nothing created twice.
    """
    certs = lab.dir / "certs"
    if not (certs / "root-cert.pem").is_file():
        make_mesh(certs, lab.clusters)
    for index, cluster in enumerate(lab, 1):
        cluster.plug_in_ca(certs / cluster.name, network=f"network{index}")
    for index, cluster in enumerate(lab, 1):
        cluster.install(MULTI_PRIMARY / f"cluster{index}.yaml", quiet=True)
        cluster.install(MULTI_PRIMARY / f"eastwest-gateway-cluster{index}.yaml", quiet=True)
        cluster.apply(MULTI_PRIMARY / "expose-services.yaml")
    secrets = {cluster.name: cluster.create_remote_secret() for cluster in lab}
    for cluster in lab:
        for name, secret in secrets.items():
            if name != cluster.name:
                cluster.apply_remote_secret(secret)
    for cluster in lab:
        cluster.namespace("sample", labels={"istio-injection": "enabled"})
        cluster.apply("helloworld.yaml", namespace="sample", selector="service=helloworld")
        cluster.apply("helloworld.yaml", namespace="sample", selector=f"version={VERSIONS[cluster.name]}")
        cluster.apply("sleep.yaml", namespace="sample")
        cluster.apply("httpbin.yaml", namespace="sample",
                      selector=None if cluster.name == "cluster2" else "service=httpbin")
    for cluster in lab:
        cluster.wait("sample", ["deploy/sleep", f"deploy/helloworld-{VERSIONS[cluster.name]}",
                                *(["deploy/httpbin"] if cluster.name == "cluster2" else [])])


def versions(calls: pd.DataFrame) -> set[str]:
    """The helloworld versions that answered (status 200)."""
    return set(calls[calls["status"] == 200]["version"].dropna())


def answers(cluster: Cluster, url: str, done: Any, *, n: int = 20, timeout: float = 60.0) -> bool:
    """Whether ``cluster``'s sleep calls to ``url`` come to satisfy ``done(calls)`` within ``timeout`` (a change
    takes a moment to reach the proxies)."""
    return cluster.call_until(SOURCE, url, done, n=n, timeout=timeout)


def both_versions(lab: Lab) -> bool:
    """Whether cluster1's calls to helloworld are answered by v1 and v2 (its own cluster and the other one)."""
    return answers(lab["cluster1"], HELLO, lambda calls: versions(calls) == {"v1", "v2"})


def only_local(lab: Lab) -> bool:
    """Whether cluster1's calls to helloworld are answered, but by v1 alone (its own cluster's)."""
    return answers(lab["cluster1"], HELLO, lambda calls: (calls["status"] == 200).all() and versions(calls) == {"v1"})


# --- an invalid VirtualService -------------------------------------------------------------------------

def canary_objects(lab: Lab) -> dict[str, dict[str, Any] | None]:
    """The canary's DestinationRule and VirtualService as cluster1 holds them (None: absent)."""
    cluster = lab["cluster1"]
    return {kind: cluster.object("networking.istio.io/v1", kind, "helloworld", "sample")
            for kind in ("DestinationRule", "VirtualService")}


def break_invalid_virtual_service(lab: Lab) -> ManifestError | None:
    """Apply a canary with two typos (``weight: 80%``, ``weigth``) to cluster1: what the API answers.

    Returns:
        the refusal (its message names each field and the fix), or None if the cluster accepted it.
    """
    try:
        lab["cluster1"].apply("canary-typo.yaml")
    except ManifestError as refusal:
        print(refusal)
        return refusal
    return None


def fix_invalid_virtual_service(lab: Lab) -> None:
    """Apply the corrected canary in every cluster (a subset's traffic crosses to the other network, whose gateway
    must know the subsets too)."""
    for cluster in lab:
        cluster.apply("canary.yaml")


def remove_canary(lab: Lab) -> None:
    """Back to the plain mesh: the canary goes from every cluster."""
    for cluster in lab:
        cluster.delete("canary.yaml")


# --- expose-services with hosts that cover nothing -----------------------------------------------------

def break_expose_services(lab: Lab) -> None:
    """Apply cluster2's expose-services as pre-1.8 articles wrote it (``hosts: ["*.global"]``), then restart
    cluster1's sleep.

    The restart is the honest part: a connection already open through the gateway lives on until the gateway
    drains it (Istio's ``drainDuration``, 45 s by default), so a client that was running keeps its answers for a
    while; a workload started after the mistake — the usual case, the Gateway being wrong from the start — sees
    the failure at once.
    """
    lab["cluster2"].apply("expose-services-global.yaml")
    lab["cluster1"].restart("sample", "app=sleep")
    print("cluster1: sleep restarted")


def fix_expose_services(lab: Lab) -> None:
    """Apply Lab 1's expose-services again in cluster2 (``hosts: ["*.local"]``)."""
    lab["cluster2"].apply(MULTI_PRIMARY / "expose-services.yaml")


def gateway_refusals(lab: Lab, host: str = "httpbin.sample.svc.cluster.local") -> list[str]:
    """cluster2's east-west gateway log lines that closed a connection for ``host`` (``NR filter_chain_not_found``)."""
    text = lab["cluster2"].logs("istio-system/deploy/istio-eastwestgateway", grep="filter_chain_not_found", tail=50)
    return [line for line in text.splitlines() if f"_.{host}" in line]


# --- a missing network label ----------------------------------------------------------------------------------

def break_network_label(lab: Lab) -> None:
    """cluster2 set up from a single-network example: its ``istio-system`` without the
    ``topology.istio.io/network`` label (the CA plugged in again with no network), its istiod installed without
    ``values.global.network``, and its workloads restarted, so their new pods say no network either. cluster1's
    istiod then takes them for pods of its own network."""
    cluster2 = lab["cluster2"]
    cluster2.plug_in_ca(lab.dir / "certs" / "cluster2")
    cluster2.install("cluster2-no-network.yaml", quiet=True)
    for app in ("helloworld", "httpbin"):
        cluster2.restart("sample", f"app={app}")
    print("cluster2: istio-system unlabelled, istiod without global.network; helloworld and httpbin restarted")


def fix_network_label(lab: Lab) -> None:
    """Name cluster2's network again, on its ``istio-system`` and in istiod's values, and restart its workloads."""
    cluster2 = lab["cluster2"]
    cluster2.plug_in_ca(lab.dir / "certs" / "cluster2", network="network2")
    cluster2.install(MULTI_PRIMARY / "cluster2.yaml", quiet=True)
    for app in ("helloworld", "httpbin"):
        cluster2.restart("sample", f"app={app}")
    print("cluster2: istio-system labelled network2, istiod with global.network; helloworld and httpbin restarted")


def dialled_pod_ips(lab: Lab, service: str = "httpbin", port: int = 8000) -> list[str]:
    """The endpoints cluster1's sleep sidecar holds for ``service`` that are cluster2's pod IPs (none when the
    networks are named: cluster2's pods are behind its east-west gateway)."""
    ips = {pod.ip for pod in lab["cluster2"].pods("sample")}
    table = lab["cluster1"].endpoints("deploy/sleep.sample",
                                      envoy_cluster=f"outbound|{port}||{service}.sample.svc.cluster.local")
    return [row.endpoint for row in table.rows if row.endpoint.rpartition(":")[0] in ips]


# --- an east-west gateway with no external address ---------------------------------------------------------------

EASTWEST = "istio-eastwestgateway"


def break_gateway_address(lab: Lab) -> None:
    """cluster2's east-west gateway reinstalled from an EKS guide: its Service asks for the AWS Load Balancer
    Controller (``loadBalancerClass: service.k8s.aws/nlb``), which this cluster does not run, so its
    ``EXTERNAL-IP`` stays ``<pending>``. (A Service's class cannot change in place: the old one is deleted first.)"""
    cluster2 = lab["cluster2"]
    kube.delete_object(cluster2.context, "v1", "Service", EASTWEST, "istio-system")
    cluster2.install("eastwest-gateway-cluster2-nlb.yaml", quiet=True)
    print(f"cluster2: {EASTWEST} reinstalled with loadBalancerClass service.k8s.aws/nlb")
    # Connections cluster1's sidecar already has through the old address carry on until istiod's push replaces the
    # gateway: wait for that, as a user would notice the symptom only once it has happened.
    kube.poll(lambda: dialled_pod_ips(lab), timeout=30, what="cluster1's sidecar to lose cluster2's gateway")


def fix_gateway_address(lab: Lab) -> None:
    """Reinstall cluster2's east-west gateway for the load balancer the cluster has, and wait for its address."""
    cluster2 = lab["cluster2"]
    kube.delete_object(cluster2.context, "v1", "Service", EASTWEST, "istio-system")
    cluster2.install(MULTI_PRIMARY / "eastwest-gateway-cluster2.yaml", quiet=True)
    address = kube.poll(lambda: cluster2.gateway_address(EASTWEST), timeout=30,
                        what=f"an external address for cluster2's {EASTWEST}")
    print(f"cluster2: {EASTWEST} at {address}")


# --- a remote secret whose server cannot be reached ---------------------------------------------------

def break_remote_secret(lab: Lab) -> None:
    """Give cluster1 a remote secret for cluster2 made from a kubeconfig whose server is ``127.0.0.1:6443`` (a kind
    cluster's: from inside cluster1 it names cluster1's own loopback, not cluster2's API server)."""
    secret = istio.create_remote_secret(lab["cluster2"].context, "cluster2", server=UNREACHABLE_SERVER)
    lab["cluster1"].apply_remote_secret(secret)


def fix_remote_secret(lab: Lab) -> None:
    """Recreate cluster2's remote secret with a server address cluster1's istiod reaches, and apply it."""
    lab["cluster1"].apply_remote_secret(lab["cluster2"].create_remote_secret())


def remote_status(lab: Lab, remote: str = "cluster2") -> str:
    """How cluster1's istiod reports ``remote`` (``synced``, ``syncing``, ``timeout``, or ``absent``)."""
    rows = {row.name: row.status for row in lab["cluster1"].remote_clusters(quiet=True)}
    return rows.get(remote, "absent")


# --- a remote-only service without the DNS proxy ------------------------------------------------------

def break_remote_only(lab: Lab) -> None:
    """Delete httpbin's Service in cluster1, where httpbin has no pods ("it is not needed here")."""
    kube.delete_object(lab["cluster1"].context, "v1", "Service", "httpbin", "sample")
    print("cluster1: service \"httpbin\" deleted")


def fix_remote_only(lab: Lab) -> None:
    """Apply httpbin's Service in cluster1 again: its name resolves, and the sidecar routes it to cluster2."""
    lab["cluster1"].apply("httpbin.yaml", namespace="sample", selector="service=httpbin")


def resolves(lab: Lab, host: str = "httpbin.sample") -> bool:
    """Whether ``host`` resolves in cluster1's sleep pod (``nslookup``)."""
    return bool(traffic.nslookup_addresses(lab["cluster1"].exec(SOURCE, ["nslookup", host])))


# --- plaintext across networks -----------------------------------------------------------------------------------

def break_plaintext(lab: Lab) -> None:
    """Apply, in cluster1, a DestinationRule turning mTLS off for every service of ``sample`` ("while we debug")."""
    lab["cluster1"].apply("plaintext.yaml")


def fix_plaintext(lab: Lab) -> None:
    """Delete that DestinationRule: auto mTLS again, and the other network's gateway comes back."""
    lab["cluster1"].delete("plaintext.yaml")


# --- locality load balancing without outlierDetection ------------------------------------------------------------

def break_locality(lab: Lab) -> None:
    """Apply, in cluster1, locality load balancing with a failover rule for helloworld — without outlierDetection."""
    lab["cluster1"].apply("locality.yaml")


def fix_locality(lab: Lab) -> bool:
    """Add the outlierDetection, then show the failover: cluster1's calls stay local (v1 only); with v1 scaled to
    zero, v2 takes over. Back to the plain mesh afterwards (v1 up again, the rule deleted). Whether both held."""
    cluster = lab["cluster1"]
    cluster.apply("locality-outlier.yaml")
    stays_local = only_local(lab)
    cluster.scale("sample/deploy/helloworld-v1", 0)
    try:
        fails_over = answers(cluster, HELLO, lambda calls: (calls["status"] == 200).all()
                             and versions(calls) == {"v2"})
    finally:
        cluster.scale("sample/deploy/helloworld-v1", 1)
        cluster.wait("sample", ["deploy/helloworld-v1"])
        cluster.delete("locality-outlier.yaml")
    return stays_local and fails_over


# --- the injection webhook out of reach --------------------------------------------------------------------------

def break_injection_webhook(lab: Lab) -> None:
    """Scale cluster1's istiod to zero (the webhook's only backend), then ask for a second helloworld-v1 pod."""
    cluster = lab["cluster1"]
    cluster.scale("istio-system/deploy/istiod", 0)
    kube.poll(lambda: not cluster.pods("istio-system", "app=istiod"), timeout=60.0,
              what="istiod's pods gone from cluster1")
    cluster.scale("sample/deploy/helloworld-v1", 2)


def webhook_refusals(lab: Lab, *, timeout: float = 30.0) -> list[str]:
    """The Warning Events of cluster1's ``sample`` that say the injection webhook could not be called, waiting up
    to ``timeout`` for the first (the ReplicaSet controller tries as soon as it sees the new replica count)."""
    context = lab["cluster1"].context

    def refused() -> list[str]:
        return [event.line() for event in kube.recent_warnings(context, "sample")
                if "failed calling webhook" in event.message]

    try:
        return kube.poll(refused, timeout=timeout, what="FailedCreate events in cluster1/sample")
    except WaitTimeoutError:
        return []


def fix_injection_webhook(lab: Lab) -> bool:
    """Scale istiod back to one replica; the ReplicaSet's next try gets its pod injected. Then back to one
    helloworld-v1. Whether the second pod came up in the meantime."""
    cluster = lab["cluster1"]
    cluster.scale("istio-system/deploy/istiod", 1)
    cluster.wait("istio-system", ["deploy/istiod"])
    try:
        cluster.wait("sample", ["deploy/helloworld-v1"], timeout=120.0)
        came_up = len([p for p in cluster.pods("sample", "app=helloworld,version=v1") if p.ready]) == 2
    finally:
        cluster.scale("sample/deploy/helloworld-v1", 1)
    return came_up


# --- two roots ----------------------------------------------------------------------------------------

def break_two_roots(lab: Lab) -> None:
    """Plug a CA of a root of its own into cluster2 (made apart, as if each cluster's admin ran ``make`` alone) and
    restart cluster2's workloads, which get certificates of that root."""
    other = lab.dir / "certs-other"
    if not (other / "root-cert.pem").is_file():
        make_mesh(other, ["cluster2"])
    _plug_and_restart(lab["cluster2"], other / "cluster2")


def fix_two_roots(lab: Lab) -> None:
    """Plug cluster2's intermediate of the mesh's one root back in and restart its workloads."""
    _plug_and_restart(lab["cluster2"], lab.dir / "certs" / "cluster2")


def _plug_and_restart(cluster: Cluster, folder: Path) -> None:
    cluster.plug_in_ca(folder, network=cluster.network)
    for app in ("helloworld", "httpbin"):
        cluster.restart("sample", f"app={app}")
    print(f"{cluster.name}: cacerts from {folder.parent.name}/{folder.name}; helloworld and httpbin restarted")


def tls_failures(lab: Lab, host: str = "httpbin.sample") -> list[istio.AccessLogEntry]:
    """cluster1's sleep sidecar's access-log entries for ``host`` that failed on the TLS handshake."""
    return [entry for entry in lab["cluster1"].access_log("deploy/sleep.sample")
            if entry.authority.split(":")[0] == host and "CERTIFICATE_VERIFY_FAILED" in entry.transport_failure]


def statuses(calls: pd.DataFrame) -> Mapping[int, int]:
    """How many calls ended with each status (0: no HTTP answer)."""
    return {int(k): int(v) for k, v in calls["status"].value_counts().sort_index().items()}
