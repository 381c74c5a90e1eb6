"""A multi-primary mesh in one call: what Istio's "multi-primary on different networks" guide does, step by step.

For each cluster: label ``istio-system`` with its network, plug in an intermediate CA under one shared
root (``cacerts``), install the control plane and (one per network is enough) the east-west gateway,
expose services through that gateway; then give every istiod a remote secret for every other cluster.
The control plane and gateway come from Lab 1's ``cluster1.yaml`` and ``eastwest-gateway-cluster1.yaml``
with the cluster's name and network filled in, as Istio's guide and ``gen-eastwest-gateway.sh`` do.
Lab 1 walks through these steps one cell at a time; benchmarks, tests and a trainer who wants to skip
ahead call this instead. Works on real and embedded clusters alike (it only uses :func:`labkit.istio.install` and
:func:`labkit.kube.apply`).
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from labkit import kube
from labkit.istio.installing import install, load_operator
from labkit.istio.remote_secrets import apply_remote_secret, create_remote_secret
from labkit.pki import CACERTS_FILES, KeySpec, make_mesh, read_cacerts

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests" / "multi-primary"


def plug_in_ca(context: kube.ContextRef, folder: Path, network: str | None = None) -> None:
    """Create ``istio-system`` (labelled with ``network``) and its ``cacerts`` Secret from a cacerts folder.

    The folder is checked first (:func:`labkit.pki.read_cacerts`): a key that does not match its certificate,
    a chain that does not verify to ``root-cert.pem`` or an expired intermediate is refused, naming the file
    and the fix, before anything reaches the cluster.

    Raises:
        PkiError: the folder does not hold a CA istiod could sign with.
    """
    folder = Path(folder)
    read_cacerts(folder)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}
    if network:
        namespace["metadata"]["labels"] = {"topology.istio.io/network": network}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "namespace": "istio-system"},
              "stringData": {name: (folder / name).read_text() for name in CACERTS_FILES}}
    kube.apply(context, [namespace, secret])


def control_plane(cluster: str, network: str, *, manifests: Path = MANIFESTS) -> dict[str, Any]:
    """The IstioOperator of one primary: ``cluster1.yaml`` with the cluster's name and network.

    Args:
        cluster: the cluster's name in the mesh (``values.global.multiCluster.clusterName``).
        network: its network (``values.global.network``).
        manifests: the folder holding ``cluster1.yaml``, the template.
    """
    operator, _ = load_operator(manifests / "cluster1.yaml")
    operator = copy.deepcopy(operator)
    values = operator["spec"]["values"]["global"]
    values["multiCluster"]["clusterName"] = cluster
    values["network"] = network
    return operator


def eastwest_gateway(network: str, *, manifests: Path = MANIFESTS) -> dict[str, Any]:
    """The IstioOperator of a network's east-west gateway, as ``gen-eastwest-gateway.sh --network <network>``.

    Args:
        network: the network the gateway leads into (its label, its requested network view, ``global.network``).
        manifests: the folder holding ``eastwest-gateway-cluster1.yaml``, the template.
    """
    operator, _ = load_operator(manifests / "eastwest-gateway-cluster1.yaml")
    operator = copy.deepcopy(operator)
    for gateway in operator["spec"]["components"]["ingressGateways"]:
        gateway["label"]["topology.istio.io/network"] = network
        for variable in gateway["k8s"].get("env") or []:
            if variable["name"] == "ISTIO_META_REQUESTED_NETWORK_VIEW":
                variable["value"] = network
    operator["spec"]["values"]["global"]["network"] = network
    return operator


def install_multi_primary(contexts: Sequence[kube.ContextRef], certs: Path, *,
                          networks: Mapping[str, str] | None = None, gateways: Collection[str] | None = None,
                          manifests: Path = MANIFESTS, key: KeySpec = "ec-p256", timeout: float = 120.0) -> None:
    """Install a multi-primary, multi-network mesh on ``contexts``; each cluster is named like its context.

    Args:
        contexts: kubeconfig contexts (names or :class:`~labkit.kube.Context` values).
        certs: where the shared root and the per-cluster intermediates are made (kept if present).
        networks: each cluster's network; by default cluster i is on ``network<i>``.
        gateways: the clusters that get an east-west gateway (and expose their services through it); by
            default all. A network needs one gateway for other networks to reach it, not one per cluster.
        manifests: the folder holding the templates (``cluster1.yaml``, ``eastwest-gateway-cluster1.yaml``)
            and ``expose-services.yaml``.
        key: key kind of new CAs (ECDSA by default: quick; Istio's own tooling uses RSA 4096).
        timeout: seconds to wait for each installation to become ready.
    """
    names = [str(context) for context in contexts]
    networks = dict(networks or {name: f"network{i}" for i, name in enumerate(names, 1)})
    with_gateway = set(names if gateways is None else gateways)
    make_mesh(certs, names, key=key)

    def install_one(context: kube.ContextRef, name: str) -> None:
        plug_in_ca(context, certs / name, networks[name])
        install(context, control_plane(name, networks[name], manifests=manifests), quiet=True, timeout=timeout)
        if name in with_gateway:
            install(context, eastwest_gateway(networks[name], manifests=manifests), quiet=True, timeout=timeout)
            kube.apply(context, manifests / "expose-services.yaml")

    # The clusters are independent until they are connected: install them side by side, as one would in a
    # terminal per cluster (most of an install is waiting for pods to become ready).
    with ThreadPoolExecutor(max_workers=len(names) or 1, thread_name_prefix="install") as pool:
        for done in [pool.submit(install_one, context, name) for context, name in zip(contexts, names, strict=True)]:
            done.result()
    connect(contexts)


def connect(contexts: Sequence[kube.ContextRef]) -> None:
    """Give every cluster's istiod a remote secret for each of the other clusters (named like their contexts)."""
    secrets = {str(context): create_remote_secret(context, str(context)) for context in contexts}
    for source, secret in secrets.items():
        for target in contexts:
            if str(target) != source:
                apply_remote_secret(secret, target)
