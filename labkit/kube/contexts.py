"""Kubeconfig contexts: which clusters this machine can reach.

labkit reaches real and embedded clusters alike through a kubeconfig, so listing contexts is the
first thing ``labkit doctor`` and a lab's preflight do.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes import config
from kubernetes.config.config_exception import ConfigException

from labkit.core.names import ContextName
from labkit.errors import LabkitError


@dataclass(frozen=True)
class Context:
    """A kubeconfig context bound to the kubeconfig that defines it: everything a request needs to find its cluster.

    Every function of :mod:`labkit.kube` (and of the layers above) takes either a context name, resolved against
    ``KUBECONFIG`` at call time, or this value, which carries its own kubeconfig; a lab's cluster handle passes
    this value down, so no cell names a kubeconfig by hand and two labs' kubeconfigs never mix.

    Args:
        name: the context's name.
        kubeconfig: the kubeconfig file defining it; None for ``KUBECONFIG`` or ``~/.kube/config``.
    """

    name: ContextName
    kubeconfig: Path | None = None

    def __str__(self) -> str:
        # Messages and tool command lines (``istioctl --context …``) name the context as a user typed it.
        return self.name


ContextRef = Context | str
"""A context name or a :class:`Context`: what every ``context`` argument in the client layers accepts."""


def resolve(context: ContextRef, kubeconfig: Path | str | None = None) -> tuple[str, Path | str | None]:
    """The context's name and kubeconfig: a :class:`Context`'s own, unless ``kubeconfig`` is given explicitly.

    Args:
        context: a context name or a :class:`Context`.
        kubeconfig: an explicit kubeconfig file (wins over the one a :class:`Context` carries).
    """
    if isinstance(context, Context):
        return context.name, kubeconfig or context.kubeconfig
    return context, kubeconfig


@dataclass(frozen=True)
class KubeContext:
    """One context of a kubeconfig."""

    name: str
    cluster: str
    user: str
    namespace: str | None
    current: bool


def kubeconfig_paths() -> list[Path]:
    """The files ``KUBECONFIG`` names (colon-separated), or ``~/.kube/config``."""
    value = os.environ.get("KUBECONFIG", "")
    if value:
        return [Path(p) for p in value.split(os.pathsep) if p]
    return [Path.home() / ".kube" / "config"]


def list_contexts(config_file: str | Path | None = None) -> list[KubeContext]:
    """The contexts of a kubeconfig (the default one when ``config_file`` is None); empty if there is none.

    Args:
        config_file: a kubeconfig path; by default the files of ``KUBECONFIG`` or ``~/.kube/config``.
    """
    files = [Path(config_file)] if config_file else kubeconfig_paths()
    contexts: list[KubeContext] = []
    seen: set[str] = set()
    for path in files:
        if not path.is_file():
            continue
        try:
            entries, current = config.list_kube_config_contexts(config_file=str(path))
        except ConfigException:
            continue
        current_name = (current or {}).get("name")
        for entry in entries:
            name = entry["name"]
            if name in seen:
                continue
            seen.add(name)
            body = entry.get("context") or {}
            contexts.append(KubeContext(name, body.get("cluster", ""), body.get("user", ""),
                                        body.get("namespace"), name == current_name))
    return contexts


@dataclass(frozen=True)
class ClusterEndpoint:
    """Where a context's API server is and how to trust it: what a remote secret's kubeconfig carries.

    Args:
        context: the context name.
        server: the API server URL as the kubeconfig has it.
        ca_data: the base64 PEM CA bundle (``certificate-authority-data``); empty when none is configured.
    """

    context: str
    server: str
    ca_data: str


def cluster_endpoint(context: ContextRef, config_file: str | Path | None = None) -> ClusterEndpoint:
    """The server URL and CA data of ``context``, read from the kubeconfig.

    Args:
        context: the context name.
        config_file: a kubeconfig path; by default the files of ``KUBECONFIG`` or ``~/.kube/config``.

    Raises:
        LabkitError: no such context (or its cluster entry) in the kubeconfig.
    """
    context, config_file = resolve(context, config_file)
    files = [Path(config_file)] if config_file else kubeconfig_paths()
    documents = []
    for path in files:
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(loaded, dict):
            documents.append((path, loaded))
    cluster_name = next((entry.get("context", {}).get("cluster") for _, doc in documents
                         for entry in doc.get("contexts") or [] if entry.get("name") == context), None)
    if cluster_name is None:
        raise LabkitError(f"context {context!r} is not in {', '.join(str(f) for f in files)}; "
                          f"`kubectl config get-contexts` lists the ones that are.")
    for path, doc in documents:
        for entry in doc.get("clusters") or []:
            if entry.get("name") != cluster_name:
                continue
            body = entry.get("cluster") or {}
            ca_data = body.get("certificate-authority-data") or ""
            if not ca_data and body.get("certificate-authority"):
                ca_file = Path(body["certificate-authority"])
                ca_file = ca_file if ca_file.is_absolute() else path.parent / ca_file
                ca_data = base64.b64encode(ca_file.read_bytes()).decode()
            return ClusterEndpoint(context, body.get("server", ""), ca_data)
    raise LabkitError(f"context {context!r} names cluster {cluster_name!r}, which no kubeconfig file defines.")
