"""Lab 2's analysis: one control plane serving two clusters, and what its proxies and the demo app show of it.

The remote cluster runs no istiod: :func:`control_plane` says which pods of each cluster are istiod and, from
the primary's ``proxy-status``, which istiod configures every proxy of the remote, and whether it is SYNCED.
:func:`issuer_of` reads a proxy's workload certificate from its Envoy (``config_dump``) and names who signed
it. The demo app answers JSON naming the pod that served each part (``served_by``); :func:`with_instances`
moves one part's pod into the ``instance`` column, so Lab 1's route analysis (:mod:`.multi_primary`, written
for any service) predicts and measures the spread of ``profile`` across the two clusters. :func:`topology`
draws the dashboard's calls and, dashed beside them, the path the remote's configuration takes: from its
sidecars through the primary's east-west gateway on ``:15012`` to istiod.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from labkit import kube, viz
from labkit.core.wire import Obj
from labkit.errors import LabkitError, WaitTimeoutError
from labkit.labs import multi_primary
from labkit.pki import describe

if TYPE_CHECKING:
    from labkit.istio import ProxyStatus
    from labkit.lab import Lab

NAMESPACE = "multicluster"
PORT = 8080
XDS_TYPES = ("CDS", "LDS", "EDS", "RDS")


@dataclass(frozen=True)
class ControlPlane:
    """Who configures whom.

    Args:
        istiods: cluster → the istiod pods running there (none in a remote).
        proxies: the rows of the primary's ``proxy-status`` for one cluster's proxies.
    """

    istiods: dict[str, list[str]]
    proxies: list[ProxyStatus]

    @property
    def synced(self) -> bool:
        """Every listed proxy (at least one) is SYNCED on CDS and LDS, and on EDS and RDS unless it asks for none
        (a gateway without HTTP routes shows RDS ``IGNORED``)."""
        return bool(self.proxies) and all(
            p.types.get("CDS") == p.types.get("LDS") == "SYNCED"
            and {p.types.get(t) for t in XDS_TYPES} <= {"SYNCED", "IGNORED"} for p in self.proxies)

    @property
    def served_by(self) -> set[str]:
        """The istiod pods named by the proxies' rows."""
        return {p.istiod for p in self.proxies}

    def table(self) -> pd.DataFrame:
        """One row per proxy: its cluster, the istiod that configures it, and each type's state."""
        return pd.DataFrame([{"proxy": p.name, "cluster": p.cluster, "istiod": p.istiod,
                              **{t: p.types.get(t, "") for t in XDS_TYPES}} for p in self.proxies])


def control_plane(lab: Lab, primary: str, cluster: str) -> ControlPlane:
    """The istiod pods of every lab cluster, and ``cluster``'s proxies as ``primary``'s istiod reports them.

    Args:
        lab: the lab.
        primary: the cluster whose istiod is asked (``istioctl proxy-status --context <primary>``).
        cluster: whose proxies to keep.
    """
    istiods = {c.name: [p.name for p in c.pods("istio-system", "app=istiod")] for c in lab}
    rows = [row for row in lab[primary].proxy_status(quiet=True) if row.cluster == cluster]
    return ControlPlane(istiods, rows)


def workload_certificate(lab: Lab, cluster: str, source: str) -> str:
    """The PEM chain of the ``default`` certificate a sidecar's Envoy holds (from its ``config_dump``).

    Args:
        lab: the lab.
        cluster: where the pod runs.
        source: ``namespace/deploy/name`` or ``namespace/pod``.
    """
    dump = json.loads(lab[cluster].exec(source, ["pilot-agent", "request", "GET", "config_dump"],
                                        container="istio-proxy"))
    for config in dump.get("configs") or []:
        for secret in config.get("dynamic_active_secrets") or []:
            if secret.get("name") == "default":
                chain = secret["secret"]["tls_certificate"]["certificate_chain"]
                return chain.get("inline_string") or base64.b64decode(chain.get("inline_bytes", "")).decode()
    return ""


def issuer_of(pem: str) -> str:
    """The issuer of the first certificate of a PEM chain ("" when there is none)."""
    return describe(pem)[0].issuer if pem.strip() else ""


def with_instances(calls: pd.DataFrame, part: str | None = None) -> pd.DataFrame:
    """``calls`` with ``instance`` read from the demo app's JSON answers.

    Args:
        calls: a call loop's DataFrame.
        part: for the dashboard's answers, the part whose pod to take (``profile``, ``accounts``, ``dashboard``);
            None for a direct call to profile or accounts.
    """
    found = calls.copy()
    found["instance"] = [_instance(body, part) for body in calls["body"]]
    return found


def _instance(body: Any, part: str | None) -> str | None:
    try:
        answer = json.loads(body) if isinstance(body, str) and body.strip() else None
    except ValueError:
        return None
    if not isinstance(answer, dict):
        return None
    if part is not None:
        answer = (answer.get("served_by") or {}).get(part) or {}
    return answer.get("instance") or None


def answers(calls: pd.DataFrame) -> pd.DataFrame:
    """The dashboard's answers, one row per call: the person, the balance and which pod served each part."""
    rows = []
    for body, status in zip(calls["body"], calls["status"], strict=True):
        try:
            answer = json.loads(body) if isinstance(body, str) and body.strip() else {}
        except ValueError:
            answer = {}
        served = answer.get("served_by") or {}
        rows.append({"status": status, "id": answer.get("id"), "name": answer.get("name"),
                     "balance": answer.get("balance"), "error": answer.get("error"),
                     **{f"{part} pod": (served.get(part) or {}).get("instance") for part in
                        ("dashboard", "profile", "accounts")}})
    return pd.DataFrame(rows)


def topology(lab: Lab, calls: pd.DataFrame, *, primary: str = "cluster1", remote: str = "cluster2",
             mesh: multi_primary.Mesh | None = None) -> viz.Topology:
    """The dashboard's calls (``calls`` from its own loop: bodies naming every part) and the remote's config path.

    Solid edges: dashboard → its local profile and accounts, and → the remote's east-west gateway → the remote
    profile, with measured shares. Without a share: the remote profile's sidecar → the primary's east-west gateway
    (``:15012``) → istiod, the only way its configuration and certificate reach it.

    Args:
        lab: the lab.
        calls: calls of ``/dashboard/<id>`` (any source), as :meth:`~labkit.cluster.Cluster.call` returns them.
        primary: the cluster running istiod.
        remote: the remote cluster.
        mesh: :func:`multi_primary.survey` of profile, if already made.
    """
    mesh = mesh or multi_primary.survey(lab, service="profile", namespace=NAMESPACE)
    profile = with_instances(calls, "profile")
    pods = {i.name: viz.Workload(i.cluster, NAMESPACE, i.name, i.version, "pod") for i in mesh.instances}
    dashboard = viz.Workload(primary, NAMESPACE, "dashboard", kind="client")
    accounts = [viz.Workload(primary, NAMESPACE, p.name, p.labels.get("version", ""), "pod")
                for p in lab[primary].pods(NAMESPACE, "app=accounts")]
    gateways = {g.cluster: viz.Workload(g.cluster, g.namespace, g.name, kind="gateway") for g in mesh.gateways}
    istiods = [viz.Workload(primary, "istio-system", name, kind="pod")
               for name in (p.name for p in lab[primary].pods("istio-system", "app=istiod"))]
    total = len(profile) or 1
    edges: list[viz.Edge] = [viz.Edge(dashboard, a, 1.0, mtls=True) for a in accounts]
    for instance, group in profile[profile["instance"].isin(list(pods))].groupby("instance", sort=True):
        target = pods[str(instance)]
        share = len(group) / total
        if target.cluster == primary or remote not in gateways:
            edges.append(viz.Edge(dashboard, target, share, mtls=True))
        else:
            edges.append(viz.Edge(dashboard, gateways[remote], share, mtls=True, label=":15443"))
            edges.append(viz.Edge(gateways[remote], target, share, mtls=True))
    if primary in gateways and istiods:
        for target in (p for p in pods.values() if p.cluster == remote):
            edges.append(viz.Edge(target, gateways[primary], None, label=":15012 config"))
        edges.append(viz.Edge(gateways[primary], istiods[0], None, label=":15012"))
    clusters = [viz.Cluster(name, network) for name, network in mesh.networks.items()]
    workloads = [dashboard, *pods.values(), *accounts, *gateways.values(), *istiods]
    return viz.Topology(clusters, workloads, edges)


def injection_reaches(lab: Lab, cluster: str) -> tuple[bool, str]:
    """Whether ``cluster``'s API server gets an answer from the sidecar injector it is configured with.

    A server-side dry run of a pod labelled ``sidecar.istio.io/inject: "true"`` makes the API server call the
    injection webhook (nothing is stored). In a remote cluster that call travels to the primary's istiod
    through the primary's east-west gateway, so a refusal here quotes Kubernetes' ``failed calling webhook``.

    Args:
        lab: the lab.
        cluster: the cluster to ask.

    Returns:
        Whether the webhook answered, and what the API server said (empty when it did).
    """
    probe = {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "injection-probe", "namespace": "default",
                          "labels": {"sidecar.istio.io/inject": "true"}},
             "spec": {"containers": [{"name": "probe", "image": "labkit/demo-profile:1.0"}]}}
    try:
        kube.apply(lab[cluster].context, [probe], dry_run=True)
    except LabkitError as exc:
        return False, str(exc)
    return True, ""


def wait_disconnected(lab: Lab, primary: str, cluster: str, *, timeout: float = 120.0) -> bool:
    """Wait until ``primary``'s istiod lists none of ``cluster``'s proxies (their streams were cut); False at timeout.

    Args:
        lab: the lab.
        primary: the cluster running istiod.
        cluster: the remote cluster.
        timeout: seconds to wait (the gateway first drains for its drainDuration, 45 s by default).
    """
    try:
        kube.poll(lambda: not control_plane(lab, primary, cluster).proxies, timeout=timeout,
                  what=f"{cluster}'s proxies gone from {primary}'s proxy-status", max_interval=2.0)
    except WaitTimeoutError:
        return False
    return True


def wait_synced(lab: Lab, primary: str, cluster: str, *, timeout: float = 120.0) -> bool:
    """Wait until every pod of ``cluster`` with a sidecar is listed SYNCED by ``primary``'s istiod; False at timeout.

    Args:
        lab: the lab.
        primary: the cluster running istiod.
        cluster: the remote cluster.
        timeout: seconds to wait (an agent dials again with a growing backoff).
    """
    def synced() -> bool:
        expected = {f"{p.name}.{p.namespace}" for p in kube.pods(lab[cluster].context, None)
                    if "istio-proxy" in p.containers and p.phase == "Running"}
        plane = control_plane(lab, primary, cluster)
        return plane.synced and expected <= {p.name for p in plane.proxies}

    try:
        kube.poll(synced, timeout=timeout, what=f"{cluster}'s proxies SYNCED", max_interval=2.0)
    except WaitTimeoutError:
        return False
    return True


def scaled(manifest: Path, app: str, replicas: int) -> list[Obj]:
    """The Deployment of ``app`` (``app=<app>``) from a manifest, with ``replicas`` replicas, ready to apply.

    Args:
        manifest: the manifest file.
        app: the ``app`` label of the Deployment.
        replicas: the replica count.
    """
    found = [d for d in yaml.safe_load_all(manifest.read_text()) if isinstance(d, dict) and d.get("kind") ==
             "Deployment" and ((d.get("metadata") or {}).get("labels") or {}).get("app") == app]
    for deployment in found:
        deployment["spec"]["replicas"] = replicas
    return found


def wait_refusal(lab: Lab, cluster: str, namespace: str, selector: str, *, timeout: float = 60.0) -> str:
    """The newest ``FailedCreate`` Event of the ReplicaSets selected (``kubectl describe rs`` shows it), as one line.

    Args:
        lab: the lab.
        cluster: the cluster.
        namespace: the ReplicaSets' namespace.
        selector: their label selector.
        timeout: seconds to wait for one; "" when none came.
    """
    def refusal() -> str:
        for rs in lab[cluster].list("apps/v1", "ReplicaSet", namespace, selector=selector):
            events = kube.events_for(lab[cluster].context, "ReplicaSet", rs["metadata"]["name"], namespace,
                                     warnings_only=True)
            failed = [e for e in events if e.reason == "FailedCreate"]
            if failed:
                return failed[-1].line()
        return ""

    try:
        return kube.poll(refusal, timeout=timeout, what=f"a FailedCreate Event in {cluster}/{namespace}",
                         max_interval=1.0)
    except WaitTimeoutError:
        return ""
