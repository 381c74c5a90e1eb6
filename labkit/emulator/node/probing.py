"""Readiness checks: the kubelet's ``httpGet``, ``tcpSocket`` and ``exec`` probes, one attempt each.

Probes go to the address the *app* listens on, not necessarily the pod IP: once a sidecar owns
``<pod IP>:<port>`` the kubelet's plaintext probe would meet Envoy (and mTLS), which is why Istio
rewrites probes to its agent; probing the app directly gives the same answer without that detour.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from typing import Any


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
