"""Readiness: the kubelet's ``httpGet``, ``tcpSocket`` and ``exec`` probes, and the loop that runs them.

Probes go to the address the *app* listens on, not necessarily the pod IP: once a sidecar owns
``<pod IP>:<port>`` the kubelet's plaintext probe would meet Envoy (and mTLS), which is why Istio
rewrites probes to its agent; probing the app directly gives the same answer without that detour.
Probes of the declared proxy, and probes aimed at the ports it declares it serves on the pod IP (Istio's
rewritten ``/app-health/…`` on 15020), go to the pod IP (:func:`probe_host`).

Without a readiness probe a container is ready once it runs and, if it serves, once it accepts connections,
so Endpoints never lead to a port nobody listens on yet. A startup probe holds readiness probing back until it
has succeeded once.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from labkit.emulator.node import spawning
from labkit.emulator.node.pods import ContainerRecord, PodRecord

PORT_POLL = 0.005


def resolve_port(port: Any, container: dict[str, Any]) -> int | None:
    """A probe's ``port``: a number, a numeric string, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if isinstance(port, str):
        if port.isdigit():
            return int(port)
        for declared in container.get("ports") or []:
            if declared.get("name") == port:
                return int(declared["containerPort"])
    return None


async def tcp_open(host: str, port: int, timeout: float) -> bool:
    """Whether ``host:port`` accepts a TCP connection within ``timeout``."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def http_get(host: str, port: int, path: str, *, scheme: str = "HTTP",
                   headers: list[dict[str, str]] | None = None, timeout: float = 1.0) -> bool:
    """The kubelet's HTTP check: a status from 200 to 399 within ``timeout`` (HTTPS without verification)."""
    context = None
    if scheme.upper() == "HTTPS":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, ssl=context)
            names = {header.get("name", "").lower() for header in headers or []}
            lines = [f"GET {path or '/'} HTTP/1.1"]
            if "host" not in names:
                lines.append(f"Host: {host}:{port}")
            if "user-agent" not in names:
                lines.append("User-Agent: kube-probe/1.31")
            lines += [f"{header['name']}: {header.get('value', '')}" for header in headers or []]
            lines += ["Accept: */*", "Connection: close", "", ""]
            writer.write("\r\n".join(lines).encode("latin-1"))
            status_line = await reader.readline()
    except (OSError, TimeoutError, ssl.SSLError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
    parts = status_line.split()
    return len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400


async def check(probe: dict[str, Any], container: dict[str, Any], host: str,
                run_exec: Callable[[list[str], float], Awaitable[bool]]) -> bool:
    """One attempt of ``probe`` against a container whose app listens on ``host``.

    Args:
        probe: the ``readinessProbe`` object.
        container: the container's spec (for named ports).
        host: the address the app listens on.
        run_exec: runs a command as the pod and says whether it exited 0 within the timeout.
    """
    timeout = float(probe.get("timeoutSeconds") or 1)
    if "httpGet" in probe:
        action = probe["httpGet"]
        port = resolve_port(action.get("port"), container)
        if port is None:
            return False
        return await http_get(action.get("host") or host, port, action.get("path", "/"),
                              scheme=action.get("scheme", "HTTP"), headers=action.get("httpHeaders"),
                              timeout=timeout)
    if "tcpSocket" in probe or "grpc" in probe:
        action = probe.get("tcpSocket") or probe["grpc"]
        port = resolve_port(action.get("port"), container)
        return port is not None and await tcp_open(action.get("host") or host, port, timeout)
    if "exec" in probe:
        return await run_exec(list(probe["exec"].get("command") or []), timeout)
    return True


def probe_host(pod: PodRecord, container: ContainerRecord, app_address: str) -> str:
    """Where a container's readiness is checked: the app's address, or the pod IP for what the proxy serves.

    Args:
        pod: the pod's record.
        container: the container's record.
        app_address: where the pod's apps listen.
    """
    if pod.sidecar is None:
        return app_address
    if pod.is_proxy(container):
        return pod.ip
    probe = container.spec.get("readinessProbe") or {}
    action = probe.get("httpGet") or probe.get("tcpSocket") or {}
    return pod.ip if resolve_port(action.get("port"), container.spec) in pod.sidecar.pod_ip_ports else app_address


async def run_exec(pod: PodRecord, container: ContainerRecord, argv: list[str], timeout: float) -> bool:
    """An ``exec`` probe: ``argv`` run as the pod, successful when it exits 0 within ``timeout``.

    Args:
        pod: the pod's record.
        container: the container whose environment the command gets.
        argv: the command.
        timeout: the probe's ``timeoutSeconds``.
    """
    if not argv:
        return False
    program = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=container.env.get("PATH"))
    if program is None:
        return False
    process = await spawning.spawn([program, *argv[1:]], env=container.env, cwd=pod.dir,
                                   stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                                   sandbox=container.sandbox, network=pod.network)
    try:
        return await asyncio.wait_for(process.wait(), timeout) == 0
    except TimeoutError:
        return False
    finally:
        await spawning.terminate(process, 0)


async def readiness(pod: PodRecord, container: ContainerRecord, process: spawning.Process, host: str,
                    listen_port: int | None, *, scale: float, set_ready: Callable[[bool], None],
                    failed: Callable[[], None] | None = None) -> None:
    """Probe one running container until it stops (the caller cancels this when the process ends).

    Args:
        pod: the pod's record.
        container: the container's record.
        process: its process.
        host: where to probe (:func:`probe_host`).
        listen_port: the port its program binds, for containers without a probe.
        scale: multiplies ``periodSeconds`` and ``initialDelaySeconds`` (tests make probes fast).
        set_ready: records a readiness change.
        failed: called on every failed readiness check (the kubelet's ``Unhealthy`` Event).
    """
    probe = container.spec.get("readinessProbe")
    if not probe:
        declared = [int(p["containerPort"]) for p in container.spec.get("ports") or [] if "containerPort" in p]
        port = declared[0] if declared else listen_port
        while port is not None and not await tcp_open(host, port, 1.0):
            if process.returncode is not None:
                return
            await asyncio.sleep(PORT_POLL)
        set_ready(True)
        return
    started = asyncio.get_running_loop().time()

    async def exec_in_pod(argv: list[str], timeout: float) -> bool:
        return await run_exec(pod, container, argv, timeout)

    startup = container.spec.get("startupProbe")
    if startup:
        # As the kubelet: readiness is not probed until the startup probe has succeeded once; a fast startup
        # period (Istio's sidecar: 1 s) is what makes a pod Ready soon after its proxy is.
        await asyncio.sleep(float(startup.get("initialDelaySeconds") or 0) * scale)
        while not await check(startup, container.spec, host, exec_in_pod):
            if process.returncode is not None:
                return
            await asyncio.sleep(float(startup.get("periodSeconds") or 10) * scale)
    delay = float(probe.get("initialDelaySeconds") or 0) * scale
    await asyncio.sleep(max(0.0, started + delay - asyncio.get_running_loop().time()))
    period = float(probe.get("periodSeconds") or 10) * scale
    success_threshold = int(probe.get("successThreshold") or 1)
    failure_threshold = int(probe.get("failureThreshold") or 3)
    successes = failures = 0

    while True:
        if await check(probe, container.spec, host, exec_in_pod):
            successes, failures = successes + 1, 0
            if successes >= success_threshold:
                set_ready(True)
        else:
            successes, failures = 0, failures + 1
            if failed is not None:
                failed()
            if failures >= failure_threshold:
                set_ready(False)
        await asyncio.sleep(period)
