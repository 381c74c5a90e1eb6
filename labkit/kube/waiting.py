"""Wait until workloads are ready, and when they are not, say which and why.

A lab cell that installs istiod or deploys helloworld waits before the next cell calls it. The checks
are kubectl's: a Deployment is rolled out when the controller has seen its latest generation and all
its replicas are updated and available (``kubectl rollout status``); a pod is ready when its Ready
condition is True (``kubectl wait --for=condition=Ready``).

Polling with a deadline rather than a watch: the answer is needed once, a poll works the same against
every server, and a failed wait reports the state it last saw — ``istiod-… ErrImagePull: …`` is the
message a learner needs, not "timed out".
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labkit.errors import WaitTimeoutError
from labkit.kube.events import warning_lines
from labkit.kube.execing import parse_target, pods, selector_text
from labkit.kube.reading import get_object


def wait_ready(
    context: str,
    namespace: str,
    targets: str | Sequence[str] | None = None,
    *,
    selector: str | None = None,
    timeout: float = 120.0,
    interval: float = 0.25,
    kubeconfig: Path | str | None = None,
) -> None:
    """Block until every target is ready, or raise naming what is not.

    Args:
        context: the kubeconfig context.
        namespace: the namespace of the targets.
        targets: ``deploy/NAME``, ``sts/NAME``, ``ds/NAME``, ``pod/NAME`` (or a pod name), or a list of them.
        selector: wait for the pods matching this label selector (at least one, all Ready).
        timeout: seconds before giving up.
        interval: seconds between polls.
        kubeconfig: the kubeconfig file; by default ``KUBECONFIG`` or ``~/.kube/config``.

    Raises:
        WaitTimeoutError: something was still not ready at the deadline; ``not_ready`` says what and why.
        KubeApiError: a target does not exist or cannot be read.
    """
    names = [targets] if isinstance(targets, str) else list(targets or [])
    if not names and not selector:
        raise ValueError("wait_ready needs targets (e.g. 'deploy/istiod') or a selector")
    deadline = time.monotonic() + timeout
    while True:
        not_ready = [reason for target in names for reason in _not_ready(context, namespace, target, kubeconfig)]
        if selector:
            not_ready += _pods_not_ready(context, namespace, selector, f"pods -l {selector}", kubeconfig)
        if not not_ready:
            return
        if time.monotonic() >= deadline:
            waited = ", ".join(names + ([f"pods -l {selector}"] if selector else []))
            lines = "\n".join(f"  - {line}" for line in not_ready)
            lines += "".join(f"\n  - {line}" for line in warning_lines(context, namespace, names, selector, kubeconfig))
            raise WaitTimeoutError(f"not ready after {timeout:.0f} s in {context}/{namespace} ({waited}):\n{lines}\n"
                                   f"Look closer with: kubectl --context {context} -n {namespace} get pods; "
                                   f"kubectl describe pod …", not_ready)
        time.sleep(interval)


def _not_ready(context: str, namespace: str, target: str, kubeconfig: Path | str | None) -> list[str]:
    kind, name = parse_target(target)
    label = f"{kind.lower()}/{name}"
    if kind == "Pod":
        return _pods_not_ready(context, namespace, None, label, kubeconfig, only=name)
    workload = get_object(context, "apps/v1", kind, name, namespace, kubeconfig=kubeconfig)
    if workload is None:
        return [f"{label}: not found"]
    problem = rollout_problem(kind, workload)
    if problem is None:
        return []
    why = _pods_not_ready(context, namespace, selector_text((workload.get("spec") or {}).get("selector")), label,
                          kubeconfig)
    return [f"{label}: {problem}" + (f" ({'; '.join(why)})" if why else "")]


def rollout_problem(kind: str, workload: dict[str, Any]) -> str | None:
    """Why a workload is not rolled out yet (as ``kubectl rollout status`` judges it), or None when it is.

    Args:
        kind: ``Deployment``, ``StatefulSet``, ``DaemonSet`` or ``ReplicaSet``.
        workload: the object as the server returned it.
    """
    spec, status = workload.get("spec") or {}, workload.get("status") or {}
    generation = (workload.get("metadata") or {}).get("generation") or 0
    if (status.get("observedGeneration") or 0) < generation:
        return "waiting for the controller to observe the latest spec"
    if kind == "DaemonSet":
        wanted, ready = status.get("desiredNumberScheduled") or 0, status.get("numberReady") or 0
        return None if ready >= wanted else f"{ready} of {wanted} pods ready"
    wanted = spec["replicas"] if spec.get("replicas") is not None else 1
    total = status.get("replicas") or 0
    updated = total if kind == "ReplicaSet" else status.get("updatedReplicas") or 0
    available = status.get("readyReplicas" if kind == "StatefulSet" else "availableReplicas") or 0
    if updated < wanted:
        return f"{updated} of {wanted} replicas updated"
    if total > updated:
        return f"{total - updated} old replicas pending termination"
    if available < updated:
        return f"{available} of {updated} updated replicas available"
    return None


def _pods_not_ready(context: str, namespace: str, selector: str | None, label: str, kubeconfig: Path | str | None,
                    only: str | None = None) -> list[str]:
    found = pods(context, namespace, selector, kubeconfig=kubeconfig)
    if only is not None:
        found = [p for p in found if p.name == only]
    if not found:
        return [f"{label}: no pods yet"]
    return [f"{p.name} {p.phase}" + (f" {'; '.join(p.waiting)}" if p.waiting else "")
            for p in found if not p.ready]


def not_ready(context: str, namespace: str, targets: str | Sequence[str], *,
              kubeconfig: Path | str | None = None) -> list[str]:
    """Why each of ``targets`` (``deploy/x``) is not ready yet, one line each; empty when all are."""
    names = [targets] if isinstance(targets, str) else list(targets)
    return [reason for target in names for reason in _not_ready(context, namespace, target, kubeconfig)]
