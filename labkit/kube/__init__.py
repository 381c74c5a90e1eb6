"""The only door to Kubernetes: contexts, apply, wait, exec. The only importer of ``kubernetes``."""

from labkit.kube.contexts import KubeContext, list_contexts

__all__ = ["KubeContext", "list_contexts"]
