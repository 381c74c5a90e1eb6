"""Kubeconfig contexts: which clusters this machine can reach.

labkit reaches real and embedded clusters alike through a kubeconfig, so listing contexts is the
first thing ``labkit doctor`` and a lab's preflight do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kubernetes import config
from kubernetes.config.config_exception import ConfigException


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
