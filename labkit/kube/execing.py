"""``kubectl exec`` for notebooks: run a command in a pod and get its output and exit code back.

Every call a lab makes (curl from the sleep pod, ``pilot-agent request`` in a sidecar) is an exec, on
real and embedded clusters alike (DESIGN decision 8). Targets are written as in kubectl: a pod name,
or ``deploy/sleep`` which picks a ready pod of the Deployment's selector, so a cell does not break when
a rollout replaced the pod it ran in last time.

The exit code comes from the final Status the server sends on the error channel, as kubectl reads it;
a non-zero code is a result to look at (``curl: (7)``), not an exception.

Objects are read as raw JSON rather than through the typed models, which reject objects missing
fields they consider required; labkit only needs a few fields and should not break on the rest.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream
from kubernetes.stream.ws_client import ERROR_CHANNEL, STDIN_CHANNEL
from websocket import WebSocketException

from labkit.core.selectors import selector_string
from labkit.errors import KubeApiError, WaitTimeoutError
from labkit.kube.clients import client_for, raise_api_error
from labkit.kube.contexts import ContextRef
from labkit.kube.reading import get_object, list_objects

# kubectl's resource names and short names for the kinds a lab execs into or waits for.
WORKLOAD_KINDS = {
    "deploy": "Deployment", "deployment": "Deployment", "deployments": "Deployment", "deployment.apps": "Deployment",
    "sts": "StatefulSet", "statefulset": "StatefulSet", "statefulsets": "StatefulSet",
    "statefulset.apps": "StatefulSet",
    "ds": "DaemonSet", "daemonset": "DaemonSet", "daemonsets": "DaemonSet", "daemonset.apps": "DaemonSet",
    "rs": "ReplicaSet", "replicaset": "ReplicaSet", "replicasets": "ReplicaSet", "replicaset.apps": "ReplicaSet",
    "po": "Pod", "pod": "Pod", "pods": "Pod",
}


@dataclass(frozen=True)
class ExecResult:
    """What a command printed and how it exited.

    Args:
        stdout: its standard output.
        stderr: its standard error.
        exit_code: its exit status (0 for success).
        pod: the pod it ran in.
    """

    stdout: str
    stderr: str
    exit_code: int
    pod: str = ""

    @property
    def ok(self) -> bool:
        """Whether it exited with 0."""
        return self.exit_code == 0


@dataclass(frozen=True)
class Pod:
    """The facts about a pod a lab looks at (``kubectl get pods -o wide``).

    Args:
        name: the pod name.
        namespace: its namespace.
        phase: ``Pending``, ``Running`` …
        ready: whether its Ready condition is True.
        ip: its pod IP (empty before it has one).
        node: the node it is bound to.
        labels: its labels.
        containers: its container names, in order.
        waiting: why containers are not running (``ErrImagePull: …``), empty when they all run.
    """

    name: str
    namespace: str
    phase: str
    ready: bool
    ip: str
    node: str
    labels: dict[str, str] = field(default_factory=dict)
    containers: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()


def parse_target(target: str) -> tuple[str, str]:
    """``deploy/sleep`` → ``("Deployment", "sleep")``; a bare name is a pod.

    Raises:
        KubeApiError: an unknown resource type (the message lists the ones understood).
    """
    if "/" not in target:
        return "Pod", target
    kind, _, name = target.partition("/")
    resolved = WORKLOAD_KINDS.get(kind.lower())
    if resolved is None or not name:
        raise KubeApiError(400, "BadRequest", f"cannot use {target!r}: write a pod name or one of "
                                              f"deploy/NAME, sts/NAME, ds/NAME, rs/NAME, pod/NAME")
    return resolved, name


def pods(context: ContextRef, namespace: str, selector: str | None = None, *,
         kubeconfig: Path | str | None = None) -> list[Pod]:
    """The pods of a namespace matching a label selector, oldest first.

    Args:
        context: the kubeconfig context.
        namespace: the namespace.
        selector: a label selector such as ``app=sleep``; all pods when None.
        kubeconfig: the kubeconfig file; by default ``KUBECONFIG`` or ``~/.kube/config``.
    """
    listed = list_objects(context, "v1", "Pod", namespace, selector=selector or None, kubeconfig=kubeconfig)
    listed.sort(key=lambda item: (str(item["metadata"].get("creationTimestamp", "")), item["metadata"]["name"]))
    return [_pod(item) for item in listed]


def workload_selector(context: ContextRef, namespace: str, kind: str, name: str, *,
                      kubeconfig: Path | str | None = None) -> str:
    """The label selector of a Deployment, StatefulSet, DaemonSet or ReplicaSet, as ``k=v,…``.

    Raises:
        KubeApiError: the workload does not exist (404) or is not readable.
    """
    workload = get_object(context, "apps/v1", kind, name, namespace, kubeconfig=kubeconfig)
    if workload is None:
        raise KubeApiError(404, "NotFound", f'{kind.lower()}s.apps "{name}" not found in namespace {namespace} '
                                            f"on {context}")
    return selector_string((workload.get("spec") or {}).get("selector"))


def resolve_pod(context: ContextRef, namespace: str, target: str, *, kubeconfig: Path | str | None = None) -> str:
    """The pod ``target`` names: itself, or a ready (else running) pod of the workload.

    Args:
        context: the kubeconfig context.
        namespace: the namespace.
        target: a pod name or ``deploy/NAME`` (any of kubectl's workload forms).
        kubeconfig: the kubeconfig file; by default ``KUBECONFIG`` or ``~/.kube/config``.

    Raises:
        KubeApiError: 404 when the workload has no running pod (the message says how to look).
    """
    kind, name = parse_target(target)
    if kind == "Pod":
        return name
    selector = workload_selector(context, namespace, kind, name, kubeconfig=kubeconfig)
    candidates = pods(context, namespace, selector, kubeconfig=kubeconfig)
    for chosen in ([p for p in candidates if p.ready], [p for p in candidates if p.phase == "Running"]):
        if chosen:
            return chosen[0].name
    states = "; ".join(f"{p.name} {p.phase} {' '.join(p.waiting)}".strip() for p in candidates) or "no pods"
    raise KubeApiError(404, "NotFound", f"no running pod for {kind.lower()} {namespace}/{name} on {context} "
                                        f"({states}); look with: kubectl --context {context} -n {namespace} get pods "
                                        f"-l {selector}")


def exec_(
    context: ContextRef,
    namespace: str,
    pod_or_workload: str,
    command: list[str],
    *,
    container: str | None = None,
    stdin: str | None = None,
    timeout: float = 60.0,
    kubeconfig: Path | str | None = None,
) -> ExecResult:
    """Run ``command`` in a pod, like ``kubectl exec [-i] -n NS TARGET [-c C] -- COMMAND``.

    Args:
        context: the kubeconfig context.
        namespace: the pod's namespace.
        pod_or_workload: a pod name or ``deploy/NAME`` (any of kubectl's workload forms).
        command: the argv to run.
        container: the container; the server picks the pod's first one by default.
        stdin: text to feed the command's standard input, closed after it (``kubectl exec -i … < file``);
            ``None`` gives the command no standard input.
        timeout: seconds to wait for the command to finish.
        kubeconfig: the kubeconfig file; by default ``KUBECONFIG`` or ``~/.kube/config``.

    Raises:
        KubeApiError: the pod or container does not exist, exec is refused, or the command cannot be started.
        WaitTimeoutError: the command did not finish within ``timeout``.
    """
    pod = resolve_pod(context, namespace, pod_or_workload, kubeconfig=kubeconfig)
    doing = f"exec in pod {namespace}/{pod} on {context}"
    # A client of its own: kubernetes.stream() swaps the ApiClient's request method for a WebSocket one while it
    # runs, and any other request on a shared client meanwhile (a live chart's batch in a worker thread, a cell
    # reading an object) would go out as a WebSocket handshake.
    api = client.ApiClient(client_for(context, kubeconfig).configuration)
    v1 = client.CoreV1Api(api)
    options: dict[str, Any] = {"command": list(command), "stdout": True, "stderr": True, "stdin": stdin is not None,
                               "tty": False, "_preload_content": False}
    if container:
        options["container"] = container
    try:
        session = stream(v1.connect_get_namespaced_pod_exec, pod, namespace, **options)
    except ApiException as exc:
        api.close()
        raise_api_error(exc, doing)
    stdout: list[str] = []
    stderr: list[str] = []
    try:
        if stdin is not None:
            session.write_stdin(stdin)
            # End of input, as the shell's `< file` gives it (the v5 stream protocol's close of channel 0).
            session.close_channel(STDIN_CHANNEL)
        deadline = time.monotonic() + timeout
        while session.is_open():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeoutError(f"{' '.join(command)!r} ({doing}) did not finish within {timeout:.0f} s; "
                                       f"pass a larger timeout= or check the command", [doing])
            session.update(timeout=min(remaining, 1.0))
            if session.peek_stdout():
                stdout.append(session.read_stdout())
            if session.peek_stderr():
                stderr.append(session.read_stderr())
        stdout.append(session.read_stdout() or "")
        stderr.append(session.read_stderr() or "")
        code = _exit_code(session.read_channel(ERROR_CHANNEL), doing)
    except (WebSocketException, OSError) as exc:
        raise KubeApiError(0, "StreamError", f"{doing} failed: {exc}") from exc
    finally:
        session.close()
        api.close()
    return ExecResult("".join(stdout), "".join(stderr), code, pod)


def _exit_code(raw: str, doing: str) -> int:
    # The final Status: Success, NonZeroExitCode with causes[ExitCode], or a failure to run at all
    # (no such container, executable not found) that is the server's error rather than the command's.
    if not raw:
        return 0
    try:
        status = json.loads(raw)
    except ValueError:
        return 0
    if status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            return int(cause.get("message", 1))
    raise KubeApiError(int(status.get("code") or 500), str(status.get("reason") or "InternalError"),
                       f"{doing}: {status.get('message') or 'the command could not be run'}", status)


def _pod(item: dict[str, Any]) -> Pod:
    metadata, spec, status = item["metadata"], item.get("spec") or {}, item.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    waiting = []
    for container_status in status.get("containerStatuses") or []:
        state = (container_status.get("state") or {}).get("waiting")
        if state is not None:
            reason = state.get("reason") or "Waiting"
            waiting.append(f"{reason}: {state['message']}" if state.get("message") else reason)
    return Pod(metadata["name"], metadata.get("namespace", ""), status.get("phase") or "Pending", ready,
               status.get("podIP") or "", spec.get("nodeName") or "", dict(metadata.get("labels") or {}),
               tuple(c["name"] for c in spec.get("containers") or []), tuple(waiting))


def logs(context: ContextRef, namespace: str, target: str, *, container: str | None = None, tail: int | None = None,
         kubeconfig: Path | str | None = None) -> str:
    """A container's log (``kubectl logs [-c container] [--tail N] deploy/x``).

    Args:
        context: the kubeconfig context.
        namespace: the pod's namespace.
        target: a pod name or ``deploy/<name>`` (a ready pod of it is chosen).
        container: the container; the pod's first by default.
        tail: only the last ``tail`` lines.
        kubeconfig: the kubeconfig file; by default ``KUBECONFIG`` or ``~/.kube/config``.
    """
    pod = resolve_pod(context, namespace, target, kubeconfig=kubeconfig)
    api = client.CoreV1Api(client_for(context, kubeconfig))
    try:
        return api.read_namespaced_pod_log(pod, namespace, container=container, tail_lines=tail)
    except ApiException as exc:
        raise_api_error(exc, f"reading the log of {namespace}/{pod}")
