"""``services/proxy`` and ``pods/proxy``: HTTP to a workload through the API server, as ``kubectl proxy`` uses it.

``kubectl proxy`` serves the API on ``127.0.0.1:8001`` with the user's credentials, so
``/api/v1/namespaces/<ns>/services/<name>:<port>/proxy/<path>`` opens a Service (a dashboard, helloworld)
in a browser without any port-forward. The API server picks the target as a real one does
(``ResourceLocation`` of the service and pod registries): ``[scheme:]name[:port]``; for a Service, a port
number is first mapped to the Service port's name, then a ready address of its Endpoints that has that
port is chosen; for a pod, the named port or else the first container port, at the pod IP. The request
goes on without the caller's credentials (the API server drops ``Authorization`` once it has
authenticated); failures are the real Statuses (``no endpoints available for service "x"``, 503
``error trying to reach service: dial tcp …``).
"""

from __future__ import annotations

import random
from typing import Any

import aiohttp
from aiohttp import hdrs, web

from labkit.emulator.api.server import ApiServer, Target
from labkit.emulator.apimachinery import status
from labkit.emulator.apimachinery.status import StatusError

# Hop-by-hop headers (RFC 9110 7.6.1) and what the API server consumes itself.
_DROPPED = {hdrs.CONNECTION, hdrs.KEEP_ALIVE, hdrs.PROXY_AUTHENTICATE, hdrs.PROXY_AUTHORIZATION, hdrs.TE,
            hdrs.TRAILER, hdrs.TRANSFER_ENCODING, hdrs.UPGRADE, hdrs.HOST, hdrs.AUTHORIZATION, hdrs.CONTENT_LENGTH,
            "Impersonate-User", "Impersonate-Group", "Impersonate-Uid"}
_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_read=300)


def _split(identifier: str) -> tuple[str, str, str]:
    """``[scheme:]name[:port]`` → ``(scheme, name, port)``, as ``SplitSchemeNamePort`` reads it."""
    parts = identifier.split(":")
    if len(parts) == 1:
        scheme, name, port = "", parts[0], ""
    elif len(parts) == 2:
        scheme, name, port = "", parts[0], parts[1]
    elif len(parts) == 3:
        scheme, name, port = parts
    else:
        raise status.bad_request(f"invalid request {identifier!r}")
    if not name or scheme not in ("", "http", "https"):
        raise status.bad_request(f"invalid request {identifier!r}")
    return scheme or "http", name, port


def _service_location(server: ApiServer, namespace: str, identifier: str) -> tuple[str, str, int]:
    scheme, name, port = _split(identifier)
    service = server.store.get("", "services", name, namespace)
    if port.isdigit():
        named = next((p for p in (service.get("spec") or {}).get("ports") or [] if p.get("port") == int(port)), None)
        if named is None:
            raise StatusError(503, "ServiceUnavailable", f'no service port {port} found for service "{name}"')
        port = named.get("name", "")
    endpoints = server.store.find("", "endpoints", name, namespace) or {}
    subsets = endpoints.get("subsets") or []
    if not subsets:
        raise StatusError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')
    for subset in random.sample(subsets, len(subsets)):
        addresses = subset.get("addresses") or []
        for endpoint_port in subset.get("ports") or []:
            if addresses and endpoint_port.get("name", "") == port:
                return scheme, random.choice(addresses)["ip"], int(endpoint_port["port"])
    raise StatusError(503, "ServiceUnavailable", f'no endpoints available for service "{identifier}"')


def _pod_location(server: ApiServer, namespace: str, identifier: str) -> tuple[str, str, int | None]:
    scheme, name, port = _split(identifier)
    pod = server.store.get("", "pods", name, namespace)
    containers = (pod.get("spec") or {}).get("containers") or []
    if not port:
        port = next((str(c["ports"][0]["containerPort"]) for c in containers if c.get("ports")), "")
    elif not port.isdigit():  # a named container port
        port = next((str(p["containerPort"]) for c in containers for p in c.get("ports") or []
                     if p.get("name") == port), port)
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        raise status.bad_request("address not allowed")
    if port and not port.isdigit():
        raise status.bad_request(f'invalid port "{port}"')
    return scheme, ip, int(port) if port else None


def _upstream_path(request: web.Request, target: Target) -> str | None:
    """What follows ``…/<name>/proxy`` in the request, with its query: the path the workload is asked for;
    ``None`` when nothing follows (not even ``/``)."""
    # Segments of the raw path, so the workload gets its path as sent (the name may come as ``x%3A5000``).
    path, _, query = request.raw_path.partition("?")
    segments = path.split("/")
    start = next(i for i in range(len(segments) - 2) if segments[i] == target.plural and segments[i + 2] == "proxy")
    if len(segments) == start + 3:
        return None
    rest = "/" + "/".join(segments[start + 3:])
    return rest + ("?" + query if query else "")


async def proxy(server: ApiServer, request: web.Request, target: Target) -> web.StreamResponse:
    """Forward ``request`` to the Service's or pod's workload and stream its answer back."""
    namespace = target.namespace or ""
    upstream_path = _upstream_path(request, target)
    if upstream_path is None:
        # As the API server's proxy handler does (kubernetes#4958): relative links of the page need the slash.
        path, _, query = request.raw_path.partition("?")
        return web.Response(status=301, headers={hdrs.LOCATION: path + "/" + ("?" + query if query else "")})
    if target.plural == "services":
        scheme, host, port = _service_location(server, namespace, target.name)
        what = "service"
    else:
        scheme, host, pod_port = _pod_location(server, namespace, target.name)
        port = pod_port if pod_port is not None else (443 if scheme == "https" else 80)
        what = "pod"
    url = f"{scheme}://{host}:{port}{upstream_path}"
    headers = {k: v for k, v in request.headers.items() if k not in _DROPPED}
    headers[hdrs.HOST] = f"{host}:{port}"
    body = await request.read()
    try:
        async with aiohttp.ClientSession(timeout=_TIMEOUT, auto_decompress=False) as session, \
                session.request(request.method, url, headers=headers, data=body or None, ssl=False,
                                allow_redirects=False) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name not in _DROPPED:
                    response.headers.add(name, value)
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
    except aiohttp.ClientConnectorError as exc:
        raise StatusError(503, "ServiceUnavailable",
                          f"error trying to reach {what}: dial tcp {host}:{port}: connect: connection refused") \
            from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise StatusError(503, "ServiceUnavailable", f"error trying to reach {what}: {exc}") from exc


def install(server: ApiServer) -> None:
    """Serve ``services/proxy`` and ``pods/proxy`` of ``server``."""

    async def handler(request: web.Request, target: Target, user: Any) -> web.StreamResponse:
        return await proxy(server, request, target)

    server.add_stream_handler("proxy", handler)

