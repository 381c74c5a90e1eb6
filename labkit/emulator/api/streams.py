"""``pods/exec``, ``pods/attach`` and ``pods/log``: the streaming subresources, over the protocols real clients speak.

Exec and attach are a WebSocket with Kubernetes' channel framing (``v5.channel.k8s.io`` for kubectl 1.30+,
``v4.channel.k8s.io`` for the Python client): every frame starts with a channel byte — 0 stdin,
1 stdout, 2 stderr, 3 a final ``Status``, 4 the client's terminal size — and v5 lets the client close stdin
with ``[255, 0]``. The exit code travels in that final Status (``NonZeroExitCode`` with an ``ExitCode``
cause), which is how ``kubectl exec`` prints ``command terminated with exit code 7`` and exits 1, and how a
loop of calls learns that curl failed. The command itself runs in the node runtime as the pod, on a
terminal of its own when asked (``exec -t``). Attach joins the container's own process (``kubectl run -i``).

Logs answer ``kubectl logs`` with its options: ``tailLines``, ``limitBytes``, ``timestamps``,
``sinceSeconds``/``sinceTime``, ``previous``, and ``follow`` (streamed until the container ends or the
client leaves).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from aiohttp import WSMsgType, web

from labkit.core import kubetime
from labkit.emulator.api.auth import User
from labkit.emulator.api.server import ApiServer, PodIO, Target
from labkit.emulator.apimachinery import status
from labkit.emulator.node import terminals

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
FIRST_SIZE_WAIT = 0.5  # seconds a terminal session waits for the client's window size before it starts the command
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io")


def install(server: ApiServer, pod_io: PodIO) -> None:
    """Serve exec and log for pods of ``server`` through ``pod_io``."""

    async def exec_handler(request: web.Request, target: Target, user: User) -> web.StreamResponse:
        return await _exec(server, pod_io, request, target)

    async def log_handler(request: web.Request, target: Target, user: User) -> web.StreamResponse:
        return await _log(server, pod_io, request, target)

    async def attach_handler(request: web.Request, target: Target, user: User) -> web.StreamResponse:
        return await _attach(server, pod_io, request, target)

    server.add_stream_handler("exec", exec_handler)
    server.add_stream_handler("attach", attach_handler)
    server.add_stream_handler("log", log_handler)


def _container(pod: dict[str, Any], requested: str | None) -> str:
    names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    if not requested:
        default = ((pod.get("metadata") or {}).get("annotations") or {}).get("kubectl.kubernetes.io/default-container")
        return default if default in names else names[0]
    if requested not in names:
        raise status.bad_request(f'container {requested} is not valid for pod {pod["metadata"]["name"]}')
    return requested


def _running(pod: dict[str, Any], container: str) -> None:
    phase = (pod.get("status") or {}).get("phase")
    states = {c.get("name"): c.get("state") or {} for c in (pod.get("status") or {}).get("containerStatuses") or []}
    if phase != "Running" or "running" not in states.get(container, {}):
        raise status.bad_request(f"unable to upgrade connection: container {container} in pod "
                                 f"{pod['metadata']['name']} is not running (phase {phase or 'Pending'})")


def _exit_status(code: int) -> dict[str, Any]:
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure", "message": f"command terminated with non-zero exit code: exit "
                                                             f"status {code}",
            "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


async def _exec(server: ApiServer, pod_io: PodIO, request: web.Request, target: Target) -> web.StreamResponse:
    pod = server.store.get("", "pods", target.name, target.namespace or "")
    container = _container(pod, request.query.get("container"))
    _running(pod, container)
    argv = request.query.getall("command", [])
    if not argv:
        raise status.bad_request("you must specify at least one command for the container")
    with_stdin = request.query.get("stdin") in ("true", "1")
    tty = request.query.get("tty") in ("true", "1")
    socket = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=0)
    if not socket.can_prepare(request).ok:
        raise status.bad_request("exec needs a WebSocket upgrade (v4 or v5.channel.k8s.io); SPDY is not served: "
                                 "unset KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false")
    await socket.prepare(request)
    early: list[bytes] = []
    size = await _first_size(socket, early) if tty else None
    try:
        process = await pod_io.exec(target.namespace or "", target.name, container, argv, stdin=with_stdin, tty=tty,
                                    size=size)
    except Exception as exc:  # after the upgrade, every failure must travel as a Status on the error channel
        failure = exc if isinstance(exc, status.StatusError) else status.internal(
            f"error executing command in container: {exc}")
        await socket.send_bytes(bytes([ERROR]) + json.dumps(failure.to_status()).encode())
        await socket.close()
        return socket

    # stdout and stderr are pumped concurrently; a frame must go out whole before the next one starts.
    sending = asyncio.Lock()

    async def pump(stream: asyncio.StreamReader | None, channel: int) -> None:
        if stream is None:
            return
        while chunk := await stream.read(65536):
            async with sending:
                await socket.send_bytes(bytes([channel]) + chunk)

    async def handle(data: bytes) -> None:
        if data[0] == STDIN and process.stdin is not None:
            process.stdin.write(data[1:])
            with contextlib.suppress(ConnectionError):
                await process.stdin.drain()
        elif data[0] == RESIZE and tty:
            _resize(process, data[1:])
        elif data[0] == CLOSE and len(data) > 1 and data[1] == STDIN and process.stdin is not None:
            _close_stdin(process)

    async def feed() -> None:
        for data in early:
            await handle(data)
        if not socket.closed:
            async for message in socket:
                if message.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                    break
                data = message.data if isinstance(message.data, bytes) else message.data.encode()
                if data:
                    await handle(data)
        if process.stdin is not None and not process.stdin.is_closing():
            _close_stdin(process)

    feeder = asyncio.create_task(feed())
    try:
        await asyncio.gather(pump(process.stdout, STDOUT), pump(process.stderr, STDERR))
        code = await process.wait()
        await socket.send_bytes(bytes([ERROR]) + json.dumps(_exit_status(code)).encode())
    except (ConnectionResetError, RuntimeError):
        pass  # the client left: stop the command below
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
        if isinstance(process, terminals.TerminalProcess):
            process.close()
        await socket.close()
    return socket


async def _attach(server: ApiServer, pod_io: PodIO, request: web.Request, target: Target) -> web.StreamResponse:
    pod = server.store.get("", "pods", target.name, target.namespace or "")
    container = _container(pod, request.query.get("container"))
    _running(pod, container)
    with_stdin = request.query.get("stdin") in ("true", "1")
    attachment = await pod_io.attach(target.namespace or "", target.name, container)
    socket = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=0)
    if not socket.can_prepare(request).ok:
        raise status.bad_request("attach needs a WebSocket upgrade (v4 or v5.channel.k8s.io); SPDY is not served: "
                                 "unset KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false")
    await socket.prepare(request)

    async def feed() -> None:
        async for message in socket:
            if message.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                break
            data = message.data if isinstance(message.data, bytes) else message.data.encode()
            if not data:
                continue
            if data[0] == STDIN and with_stdin:
                await attachment.write(data[1:])
            elif data[0] == RESIZE:
                width, height = _size(data[1:])
                attachment.resize(width, height)
            elif data[0] == CLOSE and len(data) > 1 and data[1] == STDIN and with_stdin:
                attachment.close_stdin()

    async def pump() -> None:
        async for chunk in attachment.output:
            await socket.send_bytes(bytes([STDOUT]) + chunk)
        # The kubelet reports an attach that ran its course as a success, whatever the exit code.
        await socket.send_bytes(bytes([ERROR]) + json.dumps(_exit_status(0)).encode())

    tasks = {asyncio.create_task(pump()), asyncio.create_task(feed())}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)  # the container ended, or the client left
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if with_stdin:
            attachment.leave()
        await socket.close()
    return socket


async def _first_size(socket: web.WebSocketResponse, early: list[bytes]) -> tuple[int, int] | None:
    """The client's window size, which kubectl sends first on a terminal session: the command's terminal must have
    it before the command starts (``stty size``, a full-screen program); frames that come before it go to ``early``.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(FIRST_SIZE_WAIT):
            while True:
                message = await socket.receive()
                if message.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                    return None  # the client left already
                data = message.data if isinstance(message.data, bytes) else message.data.encode()
                if data and data[0] == RESIZE:
                    width, height = _size(data[1:])
                    if width > 0 and height > 0:
                        return width, height
                elif data:
                    early.append(data)
    return None


def _size(payload: bytes) -> tuple[int, int]:
    """Channel 4's window size (``{"Width": 80, "Height": 24}``) as ``(width, height)``; zeros when malformed."""
    try:
        size = json.loads(payload)
        return int(size.get("Width") or 0), int(size.get("Height") or 0)
    except (ValueError, TypeError, AttributeError):
        return 0, 0  # a malformed size is dropped, as a kubelet logs and goes on


def _resize(process: Any, payload: bytes) -> None:
    """Channel 4: the client's window size, set on the command's terminal."""
    width, height = _size(payload)
    if width > 0 and height > 0 and isinstance(process, terminals.TerminalProcess):
        process.resize(width, height)


def _close_stdin(process: Any) -> None:
    if isinstance(process, terminals.TerminalProcess):
        process.close_stdin()  # a terminal reads Ctrl-D: closing it would hang the command up
    elif not process.stdin.is_closing():
        process.stdin.close()


async def _log(server: ApiServer, pod_io: PodIO, request: web.Request, target: Target) -> web.StreamResponse:
    pod = server.store.get("", "pods", target.name, target.namespace or "")
    container = _container(pod, request.query.get("container"))
    query = request.query
    tail, limit = _number(query, "tailLines"), _number(query, "limitBytes")
    previous, timestamps = _flag(query, "previous"), _flag(query, "timestamps")
    since = _since(query)
    _loggable(pod, container, previous)
    namespace = target.namespace or ""
    if not _flag(query, "follow") or previous:  # a previous instance has ended: there is nothing to follow
        data = pod_io.logs(namespace, target.name, container, tail=tail, previous=previous, timestamps=timestamps,
                           since=since)
        return web.Response(body=data[:limit] if limit else data, content_type="text/plain")
    chunks = pod_io.follow_logs(namespace, target.name, container, tail=tail, timestamps=timestamps, since=since)
    first = await anext(chunks, b"")  # an unknown pod or container fails here, before the 200 goes out
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    sent = 0
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        chunk = first
        while True:
            if limit and sent + len(chunk) >= limit:
                await response.write(chunk[:limit - sent])
                break
            if chunk:
                await response.write(chunk)
                sent += len(chunk)
            chunk = await anext(chunks, None)
            if chunk is None:
                break
    await chunks.aclose()
    return response


def _loggable(pod: dict[str, Any], container: str, previous: bool) -> None:
    """The kubelet's checks before it reads a log (``validateContainerLogStatus``), with its wording."""
    name = pod["metadata"]["name"]
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    status_ = next((s for s in statuses if s.get("name") == container), None)
    if status_ is None:
        raise status.bad_request(f'container "{container}" in pod "{name}" is waiting to start - no logs yet')
    state, last = status_.get("state") or {}, (status_.get("lastState") or {}).get("terminated")
    if previous:
        if not last or not last.get("containerID"):
            raise status.bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
        return
    if "running" in state:
        return
    if "terminated" in state or last:
        if not (state.get("terminated") or {}).get("containerID") and not (last or {}).get("containerID"):
            raise status.bad_request(f'container "{container}" in pod "{name}" is terminated')
        return
    reason = (state.get("waiting") or {}).get("reason")
    if reason == "ErrImagePull":
        raise status.bad_request(f'container "{container}" in pod "{name}" is waiting to start: image can\'t be pulled')
    if reason == "ImagePullBackOff":
        raise status.bad_request(f'container "{container}" in pod "{name}" is waiting to start: trying and failing '
                                 f"to pull image")
    if reason:
        raise status.bad_request(f'container "{container}" in pod "{name}" is waiting to start: {reason}')
    raise status.bad_request(f'container "{container}" in pod "{name}" is waiting to start - no logs yet')


def _flag(query: Any, name: str) -> bool:
    return query.get(name) in ("true", "1")


def _number(query: Any, name: str) -> int | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise status.bad_request(f'{name}: Invalid value: "{value}": must be an integer') from exc


def _since(query: Any) -> float | None:
    """``sinceSeconds`` (``kubectl logs --since=5m``) or ``sinceTime`` (``--since-time``) as a moment."""
    seconds = _number(query, "sinceSeconds")
    if seconds is not None:
        if seconds < 1:
            raise status.bad_request(f"sinceSeconds: Invalid value: {seconds}: must be greater than 0")
        return time.time() - seconds
    if query.get("sinceTime"):
        moment = kubetime.timestamp(query["sinceTime"])
        if moment is None:
            raise status.bad_request(f'sinceTime: Invalid value: "{query["sinceTime"]}": must be RFC 3339')
        return moment
    return None
