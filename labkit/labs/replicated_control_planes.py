"""Lab 4's analysis: a hand-made CA, what svc-1 hears back from across clusters, and the path it took.

The lab federates chosen services between two clusters that each run their own istiod and share only a root of
trust. What a learner must see is small, and this module reads it from what the lab already has:

- the PKI, made step by step as the article does with cfssl, and kept on re-runs (a new root under running
  control planes would split the mesh): :func:`make_root`, :func:`make_intermediate`, :func:`summary`;
- the answers of Lab 4's ``labkit/whoami`` services (``svc-2 in cluster2 (pod …), called by spiffe://…``):
  :func:`answers` reads them from a calls table, :func:`outcome` says in one line per distinct answer or error
  what the caller got, :func:`unresolvable` whether every call ended in curl's ``Could not resolve host``,
  :func:`reset_by_gateway` whether a gateway reset every one;
- the credentials the clusters hold for each other: :func:`remote_secrets` (none, in this lab);
- the path of the federated call, as a topology: the caller, cluster2's east-west gateway on ``:15443``, the pod
  that answered (:func:`topology`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from labkit import pki, viz

if TYPE_CHECKING:
    from labkit.lab import Lab

REMOTE_SECRET_LABEL = "istio/multiCluster=true"
_ANSWER = re.compile(r"^(?P<service>\S+) in (?P<cluster>\S+) \(pod (?P<pod>[^)]*)\), called by (?P<caller>.+)$")


@dataclass(frozen=True)
class Answer:
    """What a ``labkit/whoami`` service answered.

    Args:
        service: its name (``svc-2``).
        cluster: the cluster it runs in.
        pod: the pod that answered.
        caller: the SPIFFE ID its sidecar verified, or ``(no client certificate)``.
    """

    service: str
    cluster: str
    pod: str
    caller: str


def parse_answer(body: str) -> Answer | None:
    """The :class:`Answer` in a response body, or ``None`` when the body is something else (an error)."""
    match = _ANSWER.match(body.strip())
    return Answer(**match.groupdict()) if match else None


def answers(calls: pd.DataFrame) -> list[Answer]:
    """Every answer of a calls table (rows as :meth:`labkit.cluster.Cluster.call` returns them), in order."""
    found = [parse_answer(str(body)) for body in calls["body"]]
    return [answer for answer in found if answer is not None]


def outcome(calls: pd.DataFrame) -> str:
    """What the caller got, one line per distinct answer or error: ``3 × svc-2 in cluster2, called by spiffe://…``.

    Args:
        calls: rows as :meth:`labkit.cluster.Cluster.call` returns them.
    """
    if calls.empty:
        return "no calls"
    lines: dict[str, int] = {}
    for body, error in zip(calls["body"], calls["error"].fillna(""), strict=True):
        answer = parse_answer(str(body))
        text = f"{answer.service} in {answer.cluster}, called by {answer.caller}" if answer else str(error)
        lines[text] = lines.get(text, 0) + 1
    return "\n".join(f"{count} × {text}" for text, count in lines.items())


def answered(calls: pd.DataFrame, service: str, cluster: str, caller: str) -> bool:
    """Whether every call was answered by ``service`` in ``cluster``, which saw ``caller`` as the caller's identity."""
    if calls.empty:
        return False
    found = answers(calls)
    return (len(found) == len(calls)
            and all((a.service, a.cluster, a.caller) == (service, cluster, caller) for a in found))


def unresolvable(calls: pd.DataFrame, host: str) -> bool:
    """Whether every call ended before a connection, in curl's ``Could not resolve host: <host>``."""
    errors = calls["error"].fillna("")
    return not calls.empty and bool(errors.str.contains(f"Could not resolve host: {host}", regex=False).all())


def reset_by_gateway(calls: pd.DataFrame) -> bool:
    """Whether every call got a 503 whose reason is Envoy's ``upstream connect error``: the caller's sidecar reached
    a gateway that reset the connection (no filter chain for the SNI). A 503 without that reason is something else,
    a cluster still waiting for its endpoints for one."""
    errors = calls["error"].fillna("")
    return not calls.empty and bool((calls["status"] == 503).all()
                                    and errors.str.contains("upstream connect error", regex=False).all())


def remote_secrets(lab: Lab) -> dict[str, list[str]]:
    """Per cluster, the Secrets in ``istio-system`` labelled ``istio/multiCluster=true`` (remote secrets)."""
    return {cluster.name: [(s.get("metadata") or {}).get("name", "")
                           for s in cluster.list("v1", "Secret", "istio-system", selector=REMOTE_SECRET_LABEL)]
            for cluster in lab}


# --- the hand-made PKI --------------------------------------------------------------------------------------------

def make_root(folder: Path, *, key: pki.KeySpec = "rsa-2048") -> pki.CertificateAuthority:
    """``cfssl gencert -initca ca.json``: a self-signed root, written as ``root-cert.pem``/``root-key.pem``.

    Kept when the folder has one already: running the step again must not replace the root the clusters trust.

    Args:
        folder: the mesh folder (``certs/``).
        key: the key kind.
    """
    if (folder / "root-cert.pem").is_file() and (folder / "root-key.pem").is_file():
        return pki.read_root(folder)
    root = pki.new_root(key=key)
    pki.write_root(folder, root)
    return root


def make_intermediate(folder: Path, root: pki.CertificateAuthority, cluster: str, *,
                      key: pki.KeySpec = "rsa-2048") -> pki.CertificateAuthority:
    """``cfssl gencert -initca`` then ``cfssl sign`` for one cluster: its intermediate CA, signed by ``root``, in
    Istio's ``cacerts`` files (``ca-cert.pem``, ``ca-key.pem``, ``root-cert.pem``, and ``cert-chain.pem`` =
    ``ca-cert.pem`` followed by ``root-cert.pem``). Kept when made already under this root.

    Args:
        folder: the mesh folder; the cluster's files go to ``folder/<cluster>/``.
        root: the root that signs it.
        cluster: the cluster's name (``L=<cluster>`` in the subject).
        key: the key kind.
    """
    mine = folder / cluster
    if (mine / "ca-cert.pem").is_file():
        existing = pki.read_cacerts(mine)
        if existing.root_pem.strip() == root.cert_pem.strip():
            return existing
    ca = root.issue_intermediate(cluster, key=key)
    pki.write_cacerts(mine, ca)
    return ca


def summary(pem: str) -> str:
    """Subject, issuer, validity and CA constraints of each certificate in ``pem``, one short block each."""
    blocks = []
    for info in pki.describe(pem):
        constraint = (f"CA:TRUE, pathlen:{info.path_length}" if info.path_length is not None else "CA:TRUE") \
            if info.is_ca else "CA:FALSE"
        issuer = f"{info.issuer}  (self-signed)" if info.self_signed else info.issuer
        blocks.append(f"Subject:     {info.subject}\nIssuer:      {issuer}\n"
                      f"Valid:       {info.not_before:%Y-%m-%d} → {info.not_after:%Y-%m-%d}  ({info.validity_at()})\n"
                      f"Constraints: {constraint}  ({info.key})")
    return "\n\n".join(blocks)


# --- the picture --------------------------------------------------------------------------------------------------

def topology(lab: Lab, calls: pd.DataFrame, *, client: str = "svc-1", client_namespace: str = "foo",
             server_namespace: str = "bar", gateway: str = "istio-eastwestgateway") -> viz.Topology:
    """The path of the federated calls: the client in its cluster, the answering cluster's east-west gateway on
    ``:15443``, and the pods that answered through it, each edge with its measured share; every hop mTLS.

    Args:
        lab: the lab (its clusters and their networks).
        calls: the client's calls, as :meth:`labkit.cluster.Cluster.call` returns them.
        client: the calling workload's name.
        client_namespace: its namespace.
        server_namespace: the namespace of the services that answer.
        gateway: the east-west gateway's Service name (in ``istio-system``).
    """
    clusters = [viz.Cluster(cluster.name, cluster.network) for cluster in lab]
    source = str(calls["source"].iloc[0]) if not calls.empty else lab.clusters[0]
    caller = viz.Workload(source, client_namespace, client, kind="client")
    workloads = [caller]
    edges = []
    found = answers(calls)
    total = len(calls)
    for cluster in sorted({a.cluster for a in found}):
        door = viz.Workload(cluster, "istio-system", gateway, kind="gateway")
        mine = [a for a in found if a.cluster == cluster]
        workloads.append(door)
        edges.append(viz.Edge(caller, door, len(mine) / total, mtls=True, label=":15443"))
        for pod in sorted({a.pod for a in mine}):
            target = viz.Workload(cluster, server_namespace, pod, kind="pod")
            workloads.append(target)
            edges.append(viz.Edge(door, target, sum(1 for a in mine if a.pod == pod) / total, mtls=True))
    return viz.Topology(clusters, workloads, edges)
