"""Remote secrets: what ``istioctl create-remote-secret --name N`` makes, and what it gives away.

In multi-primary (seed 001) each istiod watches the other clusters' API servers. The credential for that
is a Secret holding a **kubeconfig**: the remote cluster's server URL, its CA and the bearer token of
``istio-reader-service-account``. istiod finds these Secrets by the label ``istio/multiCluster: "true"``
and names the cluster after the ``networking.istio.io/cluster`` annotation.

The token's role reads Secrets cluster-wide, so whoever can read ``istio-remote-secret-N`` in one cluster
can read every Secret of cluster N: the security drawback the lab ends on. The reader role cannot create
anything, which the contract tests show with the very kubeconfig this module produces.

The same code runs against real and embedded clusters (it is all Kubernetes API); only ``istioctl``
is not needed.
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

import yaml

from labkit import kube
from labkit.core.wire import Obj
from labkit.errors import KubeApiError, LabkitError, ManifestError
from labkit.istio.operator import ISTIO_NAMESPACE
from labkit.istio.rendering import READER_ACCOUNT, reader_objects

TOKEN_SECRET = f"{READER_ACCOUNT}-istio-remote-secret-token"
MULTICLUSTER_LABEL = "istio/multiCluster"
CLUSTER_ANNOTATION = "networking.istio.io/cluster"


def remote_secret_name(name: str) -> str:
    """``istio-remote-secret-<name>``."""
    return f"istio-remote-secret-{name}"


def create_remote_secret(
    context: kube.ContextRef,
    name: str,
    *,
    server: str | None = None,
    namespace: str = ISTIO_NAMESPACE,
    timeout: float = 30.0,
) -> Obj:
    """Prepare ``context``'s cluster to be read by other istiods, and return the Secret that lets them.

    In ``context``'s cluster this ensures the reader ServiceAccount, its ClusterRole and binding, and a
    long-lived token Secret; it waits for the token, then returns (without applying anywhere) the Secret
    ``istio-remote-secret-<name>`` to apply in the *other* clusters (:func:`apply_remote_secret`).

    Args:
        context: the kubeconfig context of the cluster to be read (``--context`` of istioctl).
        name: the cluster's name in the mesh (``--name``), normally its ``multiCluster.clusterName``.
        server: the API server URL to write instead of the kubeconfig's (``--server``), e.g. when the
            kubeconfig says ``127.0.0.1`` and other clusters cannot reach that (istio.md mistake 2).
        namespace: the Istio namespace.
        timeout: seconds to wait for the token controller to fill in the token.

    Raises:
        WaitTimeoutError: no token appeared in the token Secret.
        KubeApiError: the API server refused a write (e.g. the kubeconfig's user may not create RBAC).
    """
    endpoint = kube.cluster_endpoint(context)
    objects: list[Obj] = []
    if kube.get_object(context, "v1", "Namespace", namespace) is None:
        objects.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    reader = reader_objects(namespace)
    # An install that rendered the reader role (the remote profile, which also lets an external istiod write
    # there) owns it: applying the plain role again would take those rules away.
    if kube.get_object(context, "rbac.authorization.k8s.io/v1", "ClusterRole", reader[1]["metadata"]["name"]) is None:
        objects += reader
    objects.append({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
                    "metadata": {"name": TOKEN_SECRET, "namespace": namespace,
                                 "annotations": {"kubernetes.io/service-account.name": READER_ACCOUNT}}})
    kube.apply(context, objects)
    token = _wait_for_token(context, namespace, timeout)
    config = remote_kubeconfig(name, server or endpoint.server, endpoint.ca_data, token)
    return remote_secret(name, config, namespace)


def remote_kubeconfig(name: str, server: str, ca_data: str, token: str) -> str:
    """The kubeconfig istioctl writes into a remote secret: cluster, context and user all named ``name``.

    Args:
        name: the cluster name.
        server: the API server URL.
        ca_data: base64 PEM of the API server's CA (``certificate-authority-data``).
        token: the reader's bearer token.
    """
    cluster: Obj = {"server": server}
    if ca_data:
        cluster = {"certificate-authority-data": ca_data, "server": server}
    config = {
        "apiVersion": "v1",
        "clusters": [{"cluster": cluster, "name": name}],
        "contexts": [{"context": {"cluster": name, "user": name}, "name": name}],
        "current-context": name,
        "kind": "Config",
        "preferences": {},
        "users": [{"name": name, "user": {"token": token}}],
    }
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def remote_secret(name: str, kubeconfig_text: str, namespace: str = ISTIO_NAMESPACE) -> Obj:
    """The ``istio-remote-secret-<name>`` Secret around a kubeconfig.

    Args:
        name: the cluster name (the annotation and the ``stringData`` key).
        kubeconfig_text: the kubeconfig YAML.
        namespace: the Istio namespace of the clusters it will be applied to.
    """
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": remote_secret_name(name), "namespace": namespace,
                     "annotations": {CLUSTER_ANNOTATION: name}, "labels": {MULTICLUSTER_LABEL: "true"}},
        "stringData": {name: kubeconfig_text},
    }


def apply_remote_secret(secret: Obj, into_context: kube.ContextRef) -> kube.AppliedObjects:
    """Apply a remote secret in another cluster (``… | kubectl apply -f - --context into_context``).

    Args:
        secret: what :func:`create_remote_secret` returned.
        into_context: the cluster whose istiod should read the secret's cluster.

    Raises:
        ManifestError: the Istio namespace does not exist there (install Istio first).
    """
    return kube.apply(into_context, [secret])


def kubeconfig_of(secret: Obj) -> tuple[str, str]:
    """The cluster name and kubeconfig YAML a remote secret carries (``stringData`` or ``data``)."""
    name = ((secret.get("metadata") or {}).get("annotations") or {}).get(CLUSTER_ANNOTATION, "")
    string_data = secret.get("stringData") or {}
    if string_data:
        key = name if name in string_data else next(iter(string_data))
        return key, string_data[key]
    data = secret.get("data") or {}
    key = name if name in data else next(iter(data))
    return key, base64.b64decode(data[key]).decode()


def _wait_for_token(context: kube.ContextRef, namespace: str, timeout: float) -> str:
    def token() -> str:
        secret = kube.get_object(context, "v1", "Secret", TOKEN_SECRET, namespace) or {}
        return (secret.get("data") or {}).get("token") or ""

    found = kube.poll(token, timeout=timeout, what=f"a token in secret {namespace}/{TOKEN_SECRET} on {context}",
                      explain=lambda _: [f"secret/{TOKEN_SECRET}: no token yet; the token controller fills it in "
                                         f"for ServiceAccount {READER_ACCOUNT} (does that account exist?)"])
    return base64.b64decode(found).decode()


def redact_kubeconfig(kubeconfig: str) -> str:
    """A kubeconfig with its CA data and token replaced by their sizes, safe to print on a projector."""
    config = yaml.safe_load(kubeconfig)
    for entry in config.get("clusters") or []:
        data = (entry.get("cluster") or {}).get("certificate-authority-data")
        if data:
            entry["cluster"]["certificate-authority-data"] = f"<CA certificate, {len(data)} base64 characters>"
    for entry in config.get("users") or []:
        token = (entry.get("user") or {}).get("token")
        if token:
            entry["user"]["token"] = f"<bearer token, {len(token)} characters: {token[:12]}…>"
    return yaml.safe_dump(config, sort_keys=False)


class RemoteAccess:
    """Act with the credentials a remote secret carries — to show what they allow.

    Args:
        secret: a remote secret (what :func:`create_remote_secret` returned or what a cluster holds).
        folder: where to write its kubeconfig (a private temporary folder by default).
    """

    def __init__(self, secret: Obj, folder: Path | None = None):
        self.cluster, text = kubeconfig_of(secret)
        folder = folder or Path(tempfile.mkdtemp(prefix="labkit-remote-"))
        self.kubeconfig = folder / f"{self.cluster}.kubeconfig"
        self.kubeconfig.write_text(text)
        self.kubeconfig.chmod(0o600)

    def read_secret(self, namespace: str, name: str, key: str) -> str:
        """One key of a Secret of the remote cluster, decoded (raises if the token may not read it)."""
        secret = kube.get_object(self.cluster, "v1", "Secret", name, namespace, kubeconfig=self.kubeconfig)
        if secret is None:
            raise LabkitError(f"secret {namespace}/{name} not found in {self.cluster}")
        return base64.b64decode((secret.get("data") or {}).get(key, "")).decode(errors="replace")

    def rules(self, namespace: str = "default") -> kube.AccessRules:
        """``kubectl auth can-i --list`` in the remote cluster, for this token: everything it may do there."""
        return kube.access_rules(self.cluster, namespace, kubeconfig=self.kubeconfig)

    def can_i(self, verb: str, resource: str, namespace: str | None = None, *, group: str = "") -> bool:
        """``kubectl auth can-i <verb> <resource>`` in the remote cluster, for this token."""
        return kube.can_i(self.cluster, verb, resource, namespace, group=group, kubeconfig=self.kubeconfig)

    def try_create_configmap(self, namespace: str, name: str) -> int:
        """Try to write to the remote cluster; returns the HTTP status (201 created, 403 forbidden …)."""
        body = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}}]
        try:
            kube.apply(self.cluster, body, kubeconfig=self.kubeconfig)
        except KubeApiError as exc:
            return exc.code
        except ManifestError as exc:
            return 403 if "forbidden" in str(exc).lower() else 400
        return 201


def remote_access(secret: Obj) -> RemoteAccess:
    """:class:`RemoteAccess` for a remote secret."""
    return RemoteAccess(secret)


def delete_remote_secret(context: kube.ContextRef, name: str) -> None:
    """Remove the remote secret for cluster ``name`` from ``context`` (its istiod stops reading that cluster)."""
    kube.delete_object(context, "v1", "Secret", f"istio-remote-secret-{name}", ISTIO_NAMESPACE)
