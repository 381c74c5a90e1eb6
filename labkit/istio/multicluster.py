"""A multi-primary mesh in one call: what Istio's "multi-primary on different networks" guide does, step by step.

For each cluster: label ``istio-system`` with its network, plug in an intermediate CA under one shared
root (``cacerts``), install the control plane and the east-west gateway, expose services through that
gateway; then give every istiod a remote secret for every other cluster. Lab 1 walks through these
steps one cell at a time; benchmarks, tests and a trainer who wants to skip ahead call this instead.
Works on real and embedded clusters alike (it only uses :func:`labkit.istio.install` and
:func:`labkit.kube.apply`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from labkit import kube
from labkit.istio.installing import install
from labkit.istio.remote_secrets import apply_remote_secret, create_remote_secret
from labkit.pki import CACERTS_FILES, KeySpec, make_mesh, read_cacerts

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests" / "multi-primary"


def plug_in_ca(context: str, folder: Path, network: str | None = None) -> None:
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


def install_multi_primary(contexts: Sequence[str], certs: Path, *, manifests: Path = MANIFESTS,
                          key: KeySpec = "ec-p256", timeout: float = 120.0) -> None:
    """Install a multi-primary, multi-network mesh on ``contexts`` (cluster i on ``network<i>``).

    Args:
        contexts: kubeconfig contexts, named like the clusters in ``manifests`` (``cluster1`` …).
        certs: where the shared root and the per-cluster intermediates are made (kept if present).
        manifests: the folder holding ``cluster<i>.yaml``, ``eastwest-gateway-cluster<i>.yaml`` and
            ``expose-services.yaml``.
        key: key kind of new CAs (ECDSA by default: quick; Istio's own tooling uses RSA 4096).
        timeout: seconds to wait for each installation to become ready.
    """
    make_mesh(certs, list(contexts), key=key)
    for index, context in enumerate(contexts, 1):
        plug_in_ca(context, certs / context, f"network{index}")
        install(context, manifests / f"cluster{index}.yaml", quiet=True, timeout=timeout)
        install(context, manifests / f"eastwest-gateway-cluster{index}.yaml", quiet=True, timeout=timeout)
        kube.apply(context, manifests / "expose-services.yaml")
    connect(contexts)


def connect(contexts: Sequence[str]) -> None:
    """Give every cluster's istiod a remote secret for each of the other clusters."""
    secrets = {context: create_remote_secret(context, context) for context in contexts}
    for source, secret in secrets.items():
        for target in contexts:
            if target != source:
                apply_remote_secret(secret, target)
