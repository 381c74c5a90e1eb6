"""``pods/portforward``: TCP connections into a pod, over each protocol real clients speak.

* kubectl 1.31+ (``PortForwardWebsockets``, on by default) opens a WebSocket with the subprotocol
  ``SPDY/3.1+portforward.k8s.io`` and speaks SPDY/3.1 inside its binary messages; told
  ``KUBECTL_PORT_FORWARD_WEBSOCKETS=false``, or when that upgrade fails, it falls back to a plain HTTP
  ``Upgrade: SPDY/3.1`` with ``X-Stream-Protocol-Version: portforward.k8s.io``. Both are served, by one
  session (:class:`_SpdyForwarder`): each local connection kubectl accepts opens an *error* stream and a
  *data* stream sharing a ``requestID`` header; the pair is one TCP connection into the pod, and a failure
  to connect travels as text on the error stream (kubectl prints ``an error occurred forwarding 8080 -> 80:
  …``).
* The official Python client uses the WebSocket channel protocol (``v4.channel.k8s.io``) with ``?ports=``:
  channel ``2i`` carries port *i*'s data and ``2i+1`` its errors, each opened by a frame holding the port
  number (two bytes, little-endian); one connection per port, and the socket closes when they end, as a
  kubelet's WebSocket port-forward does.

The pod end is the node's (``PodIO.connect``): a kubelet dials ``localhost:<port>`` inside the pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, hdrs, web

from labkit.emulator.api import spdy
from labkit.emulator.api.server import ApiServer, PodIO, Target
from labkit.emulator.apimachinery import status

PORT_FORWARD_PROTOCOL = "portforward.k8s.io"
TUNNEL_PROTOCOL = "SPDY/3.1+" + PORT_FORWARD_PROTOCOL
CHANNEL_PROTOCOLS = ("v4.channel.k8s.io",)
STREAM_TYPE, PORT, REQUEST_ID = "streamtype", "port", "requestid"
CHUNK = 32 * 1024

Connect = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
Send = Callable[[bytes], Awaitable[None]]


async def port_forward(server: ApiServer, pod_io: PodIO, request: web.Request, target: Target) -> web.StreamResponse:
    """Serve one ``pods/<name>/portforward`` request on whichever protocol the client asked for."""
    namespace = target.namespace or ""
    pod = server.store.get("", "pods", target.name, namespace)
    uid = pod["metadata"].get("uid", "")

    async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await pod_io.connect(namespace, target.name, port)

    def failure(port: int, exc: OSError) -> str:
        # The kubelet's (CRI's) wording; pods here share the machine's network namespace.
        return (f'error forwarding port {port} to pod {uid}, uid : failed to execute portforward in network '
                f'namespace "host": failed to connect to localhost:{port} inside namespace "{uid}", IPv4: {exc} ')

    upgrade = request.headers.get(hdrs.UPGRADE, "").lower()
    offered = [p.strip() for p in request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, "").split(",") if p.strip()]
    if upgrade == "websocket" and TUNNEL_PROTOCOL in offered:
        return await _tunnelled(request, connect, failure)
    if upgrade == "websocket":
        return await _channels(request, connect, failure)
    if upgrade == "spdy/3.1":
        return await _upgraded(request, connect, failure)
    raise status.bad_request("Upgrade request required")


# --- kubectl: SPDY/3.1, tunnelled in a WebSocket or upgraded from HTTP ----------------------------------------


@dataclass
class _Pair:
    """One forwarded connection: kubectl's error and data streams, and the pod end once dialled."""

    port: int
    error_stream: int = 0
    data_stream: int = 0
    writer: asyncio.StreamWriter | None = None
    pending: list[bytes] = field(default_factory=list)  # client bytes that came before the pod end was open
    client_done: bool = False
    task: asyncio.Task[None] | None = None


class _SpdyForwarder:
    """The kubelet's side of a port-forward session, fed with SPDY bytes, answering through ``send``."""

    def __init__(self, send: Send, connect: Connect, failure: Callable[[int, OSError], str]):
        self._session = spdy.Session()
        self._send_raw = send
        self._connect = connect
        self._failure = failure
        self._sending = asyncio.Lock()
        self._pairs: dict[str, _Pair] = {}
        self._by_stream: dict[int, _Pair] = {}

    async def _send(self, build: Callable[[], bytes]) -> None:
        # Built under the lock: header blocks share one zlib stream, so frames must leave in the order built.
        async with self._sending:
            await self._send_raw(build())

    async def feed(self, data: bytes) -> bool:
        """Handle bytes from the client; ``False`` once the client went away (GOAWAY)."""
        for event in self._session.receive(data):
            if isinstance(event, spdy.StreamOpened):
                await self._opened(event)
            elif isinstance(event, spdy.DataReceived):
                await self._data(event)
            elif isinstance(event, spdy.Pinged):
                await self._send(lambda ping=event.ping_id: self._session.pong(ping))
            elif isinstance(event, spdy.StreamReset):
                pair = self._by_stream.get(event.stream_id)
                if pair is not None and pair.task is not None:
                    pair.task.cancel()
            elif isinstance(event, spdy.WentAway):
                return False
        return True

    async def _opened(self, event: spdy.StreamOpened) -> None:
        kind, port = event.headers.get(STREAM_TYPE, ""), event.headers.get(PORT, "")
        if kind not in ("error", "data") or not port.isdigit() or not 0 < int(port) < 65536:
            await self._send(lambda: self._session.reset(event.stream_id, spdy.RST_PROTOCOL_ERROR))
            return
        await self._send(lambda: self._session.reply(event.stream_id))
        request_id = event.headers.get(REQUEST_ID) or str(event.stream_id - (2 if kind == "data" else 0))
        pair = self._pairs.setdefault(request_id, _Pair(int(port)))
        self._by_stream[event.stream_id] = pair
        if kind == "error":
            pair.error_stream = event.stream_id
        else:
            pair.data_stream = event.stream_id
            pair.client_done = event.fin
        if pair.error_stream and pair.data_stream and pair.task is None:
            del self._pairs[request_id]
            pair.task = asyncio.create_task(self._forward(pair), name=f"port-forward {pair.port}")

    async def _data(self, event: spdy.DataReceived) -> None:
        pair = self._by_stream.get(event.stream_id)
        if pair is None or event.stream_id != pair.data_stream:
            return  # the error stream carries nothing from the client; unknown streams were reset
        if pair.writer is None:
            pair.pending.append(event.data)
            pair.client_done = pair.client_done or event.fin
            return
        with contextlib.suppress(ConnectionError):
            if event.data:
                pair.writer.write(event.data)
                await pair.writer.drain()
            if event.fin and pair.writer.can_write_eof():
                pair.writer.write_eof()

    async def _forward(self, pair: _Pair) -> None:
        try:
            try:
                reader, writer = await self._connect(pair.port)
            except OSError as exc:
                message = self._failure(pair.port, exc).encode()
                await self._send(lambda: self._session.data(pair.error_stream, message, fin=True))
                await self._send(lambda: self._session.data(pair.data_stream, b"", fin=True))
                return
            pair.writer = writer
            try:
                for chunk in pair.pending:
                    writer.write(chunk)
                pair.pending.clear()
                if pair.client_done and writer.can_write_eof():
                    writer.write_eof()
                while chunk := await reader.read(CHUNK):
                    await self._send(lambda data=chunk: self._session.data(pair.data_stream, data))
            except ConnectionError:
                pass
            finally:
                writer.close()
            # Both of the kubelet's streams close when the pod end does; kubectl then closes its local connection.
            await self._send(lambda: self._session.data(pair.data_stream, b"", fin=True))
            await self._send(lambda: self._session.data(pair.error_stream, b"", fin=True))
        except (ConnectionError, RuntimeError):
            pass  # the client left

    async def close(self) -> None:
        """The session ended: drop every forwarded connection."""
        tasks = [pair.task for pair in self._by_stream.values() if pair.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for pair in self._by_stream.values():
            if pair.writer is not None:
                pair.writer.close()


async def _tunnelled(request: web.Request, connect: Connect,
                     failure: Callable[[int, OSError], str]) -> web.StreamResponse:
    socket = web.WebSocketResponse(protocols=(TUNNEL_PROTOCOL,), max_msg_size=0)
    await socket.prepare(request)
    forwarder = _SpdyForwarder(socket.send_bytes, connect, failure)
    try:
        async for message in socket:
            if message.type != WSMsgType.BINARY or not await forwarder.feed(message.data):
                break
    except spdy.ProtocolError:
        pass  # nothing sensible can go back: the session is over
    finally:
        await forwarder.close()
        await socket.close()
    return socket


class _RawReader:
    """Takes the connection's bytes after an ``Upgrade: SPDY/3.1``, as aiohttp's WebSocket reader does for its own."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.queue.put_nowait(data)
        return False, b""

    def feed_eof(self) -> None:
        self.queue.put_nowait(None)


async def _upgraded(request: web.Request, connect: Connect,
                    failure: Callable[[int, OSError], str]) -> web.StreamResponse:
    # httpstream.Handshake's checks and wording.
    versions = [v.strip() for v in request.headers.getall("X-Stream-Protocol-Version", []) for v in v.split(",")]
    if not versions:
        raise status.bad_request("unable to upgrade: X-Stream-Protocol-Version is required")
    if PORT_FORWARD_PROTOCOL not in versions:
        raise status.forbidden(f"unable to upgrade: unable to negotiate protocol: client supports "
                               f"[{' '.join(versions)}], server accepts [{PORT_FORWARD_PROTOCOL}]")
    protocol, transport = request.protocol, request.transport
    if protocol is None or transport is None:
        raise status.internal("the connection closed before the upgrade")
    raw = _RawReader()
    # aiohttp hands a connection over after an upgrade only to WebSockets; the same hook serves SPDY's bytes.
    protocol.set_parser(raw)  # type: ignore[arg-type]
    response = web.StreamResponse(status=101, headers={
        hdrs.CONNECTION: "Upgrade", hdrs.UPGRADE: "SPDY/3.1", "X-Stream-Protocol-Version": PORT_FORWARD_PROTOCOL})
    writer = await response.prepare(request)
    assert writer is not None

    async def send(frame: bytes) -> None:
        if transport.is_closing():
            raise ConnectionResetError("the client left")
        transport.write(frame)
        await writer.drain()

    forwarder = _SpdyForwarder(send, connect, failure)
    try:
        while (data := await raw.queue.get()) is not None and await forwarder.feed(data):
            pass
    except (spdy.ProtocolError, ConnectionError):
        pass
    finally:
        await forwarder.close()
        protocol.force_close()
        transport.close()
    return response


# --- the Python client: WebSocket channels ----------------------------------------------------------------


async def _channels(request: web.Request, connect: Connect,
                    failure: Callable[[int, OSError], str]) -> web.StreamResponse:
    ports = _ports(request)
    socket = web.WebSocketResponse(protocols=CHANNEL_PROTOCOLS, max_msg_size=0)
    await socket.prepare(request)
    sending = asyncio.Lock()
    writers: dict[int, asyncio.StreamWriter] = {}
    pending: dict[int, list[bytes]] = {index: [] for index in range(len(ports))}
    opened = {index: asyncio.Event() for index in range(len(ports))}

    async def send(channel: int, data: bytes) -> None:
        async with sending:
            await socket.send_bytes(bytes([channel]) + data)

    async def forward(index: int, port: int) -> None:
        try:
            reader, writer = await connect(port)
        except OSError as exc:
            opened[index].set()
            await send(2 * index + 1, failure(port, exc).encode())
            return
        writers[index] = writer
        for chunk in pending.pop(index):
            writer.write(chunk)
        opened[index].set()
        try:
            while chunk := await reader.read(CHUNK):
                await send(2 * index, chunk)
        finally:
            writer.close()

    async def receive() -> None:
        async for message in socket:
            if message.type != WSMsgType.BINARY or not message.data:
                break
            channel, data = message.data[0], message.data[1:]
            index = channel // 2
            if channel % 2 or index >= len(ports) or not data:
                continue
            writer = writers.get(index)
            if writer is None and not opened[index].is_set():
                pending[index].append(data)
            elif writer is not None:
                with contextlib.suppress(ConnectionError):
                    writer.write(data)
                    await writer.drain()

    for index, port in enumerate(ports):
        prefix = struct.pack("<H", port)
        await send(2 * index, prefix)
        await send(2 * index + 1, prefix)
    receiver = asyncio.create_task(receive())
    forwards = asyncio.gather(*(forward(index, port) for index, port in enumerate(ports)))
    try:
        # Done when every port's connection has ended, or when the client leaves (then they are dropped).
        await asyncio.wait({receiver, forwards}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (receiver, forwards):
            task.cancel()
        await asyncio.gather(receiver, forwards, return_exceptions=True)
        for writer in writers.values():
            writer.close()
        await socket.close()
    return socket


def _ports(request: web.Request) -> list[int]:
    values = [p for q in request.query.getall("ports", []) + request.query.getall("port", []) for p in q.split(",")]
    if not values:
        raise status.bad_request('query parameter "port" is required')
    ports = []
    for value in values:
        if not value.strip().isdigit():
            raise status.bad_request(f'unable to parse "{value}" as a port: strconv.ParseUint: parsing "{value}": '
                                     f"invalid syntax")
        if int(value) < 1 or int(value) > 65535:
            raise status.bad_request(f'port "{value}" must be > 0')
        ports.append(int(value))
    return ports


def install(server: ApiServer, pod_io: PodIO) -> None:
    """Serve ``pods/portforward`` of ``server`` through ``pod_io``."""

    async def handler(request: web.Request, target: Target, user: Any) -> web.StreamResponse:
        return await port_forward(server, pod_io, request, target)

    server.add_stream_handler("portforward", handler)
