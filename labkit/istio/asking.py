"""Asking istiod what it knows: its debug endpoints on embedded clusters, ``istioctl`` on real ones.

``istioctl remote-clusters`` and ``istioctl proxy-status`` read istiod's own state (``/debug/clusterz``,
``/debug/syncz``). On embedded clusters labkit reads the same endpoints the same way a user can — ``pilot-discovery
request GET …`` exec'd in each running istiod pod — and on real clusters it runs istioctl. Both paths live here
once, so every table built from istiod's state fails with the same clear message when istiod or istioctl is missing.
"""

from __future__ import annotations

import shutil
import subprocess

from labkit import kube
from labkit.errors import LabkitError, ToolNotFoundError


def istiod_debug(context: kube.ContextRef, namespace: str, path: str) -> list[tuple[str, str]]:
    """``pilot-discovery request GET <path>`` in every running istiod pod: (pod name, body) pairs.

    Args:
        context: the kubeconfig context (a name, or a :class:`~labkit.kube.Context` with its kubeconfig).
        namespace: the Istio namespace.
        path: the debug path, e.g. ``/debug/syncz``.

    Raises:
        LabkitError: no running istiod, or the request failed in one of them.
    """
    pods = [p for p in kube.pods(context, namespace, "app=istiod") if p.phase == "Running"]
    if not pods:
        raise LabkitError(f"no running istiod in {context}/{namespace}: install Istio first "
                          f"(labkit.istio.install) and check kubectl --context {context} -n {namespace} get pods")
    command = ["pilot-discovery", "request", "GET", path]
    answers = []
    for pod in pods:
        result = kube.exec_(context, namespace, pod.name, command, container="discovery")
        if result.exit_code != 0:
            raise LabkitError(f"{' '.join(command)} in {namespace}/{pod.name} on {context} exited with "
                              f"{result.exit_code}: {result.stderr.strip() or result.stdout.strip()}")
        answers.append((pod.name, result.stdout))
    return answers


def istioctl(context: kube.ContextRef, namespace: str, *args: str, timeout: float = 60.0) -> str:
    """``istioctl <args> --context … --istioNamespace …`` against a real cluster; its standard output.

    Args:
        context: the kubeconfig context (its kubeconfig is passed on when it carries one).
        namespace: the Istio namespace.
        args: the subcommand and its flags, e.g. ``"proxy-status"``.
        timeout: seconds before giving up.

    Raises:
        ToolNotFoundError: istioctl is not installed.
        LabkitError: istioctl failed (its stderr is quoted).
    """
    name, kubeconfig = kube.resolve(context)
    binary = shutil.which("istioctl")
    if binary is None:
        raise ToolNotFoundError("istioctl", f"Context {name!r} is a real cluster, where labkit asks istioctl: "
                                            f"install it (curl -L https://istio.io/downloadIstio | sh -).")
    command = [binary, *args, "--context", name, "--istioNamespace", namespace]
    if kubeconfig:
        command += ["--kubeconfig", str(kubeconfig)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise LabkitError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout
