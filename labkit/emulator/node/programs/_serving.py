"""A small HTTP/1.1 server, shared by the programs that serve HTTP: one thread per connection.

Why not asyncio: a pod should be up in tens of milliseconds, and ``import asyncio`` alone costs
50–100 ms on a small machine (it pulls in ssl, logging, inspect and typing), more than the rest of
the start together; plain sockets and threads cost ~15 ms. Threads are also the simplest correct
shape for what these programs do (keep-alive connections from one or two Envoys, an occasional
``/delay``). Why not ``http.server``: with keep-alive it stalls ~40 ms per request (Nagle's
algorithm meets the client's delayed ACK). This server writes each response with one ``sendall``
and an exact ``Content-Length``, turns Nagle off, honours ``Connection: close`` and HTTP/1.0, and
logs one access-log line per request on stdout, which is what ``kubectl logs`` shows.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus

MAX_LINE = 16 * 1024
MAX_HEADERS = 200
MAX_BODY = 16 * 1024 * 1024
IDLE_TIMEOUT = 300.0


class Request:
    """One parsed request.

    Args:
        method: ``GET``, ``POST`` …
        target: the request target as sent (path and query).
        version: ``HTTP/1.1`` or ``HTTP/1.0``.
        headers: ``(name, value)`` pairs in the order received, names as sent.
        body: the request body (de-chunked).
        peer: the client's address.
        local: the address the request arrived on, ``(host, port)``.
    """

    __slots__ = ("body", "headers", "local", "method", "peer", "target", "version")

    def __init__(self, method: str, target: str, version: str, headers: list[tuple[str, str]], body: bytes,
                 peer: str, local: tuple[str, int]):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = body
        self.peer = peer
        self.local = local

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    def header(self, name: str, default: str = "") -> str:
        """The first header called ``name`` (case-insensitive)."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return default


# status, headers, body
Response = tuple[int, list[tuple[str, str]], bytes]
Handler = Callable[[Request], Response]

_log_lock = threading.Lock()


def http_date(when: float | None = None) -> str:
    """An RFC 7231 date; strftime's C locale is what Python runs with unless told otherwise."""
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(when))


def access_log(request: Request, status: int, size: int) -> None:
    """One line in the combined log format (nginx's and gunicorn's default look)."""
    referer = request.header("Referer", "-")
    agent = request.header("User-Agent", "-")
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    line = (f'{request.peer} - - [{stamp}] "{request.method} {request.target} {request.version}" '
            f'{status} {size} "{referer}" "{agent}"\n')
    with _log_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def listen_address(default_port: int) -> tuple[str, int]:
    """Where to listen: ``--listen host:port``, else ``LABKIT_LISTEN``, else all addresses on the image's port."""
    value = os.environ.get("LABKIT_LISTEN", "")
    argv = sys.argv[1:]
    for index, arg in enumerate(argv):
        if arg == "--listen" and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith("--listen="):
            value = arg.split("=", 1)[1]
    if not value:
        return "0.0.0.0", default_port
    host, _, port = value.rpartition(":")
    return host or "0.0.0.0", int(port or default_port)


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class _BadRequest(Exception):
    pass


def _readline(rfile: io.BufferedReader) -> bytes:
    line = rfile.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise _BadRequest("line too long")
    return line


def _read_head(rfile: io.BufferedReader) -> tuple[str, str, str, list[tuple[str, str]]] | None:
    line = _readline(rfile)
    while line in {b"\r\n", b"\n"}:  # RFC 9112: ignore empty lines before a request
        line = _readline(rfile)
    if not line:
        return None
    parts = line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise _BadRequest("bad request line")
    headers = []
    while True:
        raw = _readline(rfile)
        if not raw:
            raise _BadRequest("connection closed in headers")
        text = raw.decode("latin-1").rstrip("\r\n")
        if not text:
            break
        name, sep, value = text.partition(":")
        if not sep or not name or name != name.strip() or len(headers) >= MAX_HEADERS:
            raise _BadRequest("bad header")
        headers.append((name, value.strip()))
    return parts[0], parts[1], parts[2], headers


def _read_body(rfile: io.BufferedReader, headers: list[tuple[str, str]]) -> bytes:
    lowered = {key.lower(): value for key, value in headers}
    if "chunked" in lowered.get("transfer-encoding", "").lower():
        chunks = []
        total = 0
        while True:
            try:
                size = int(_readline(rfile).split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise _BadRequest("bad chunk size") from exc
            if size == 0:
                while _readline(rfile) not in {b"\r\n", b"\n", b""}:  # trailers
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY:
                raise _BadRequest("body too large")
            chunks.append(rfile.read(size))
            rfile.readline()
    length = lowered.get("content-length", "")
    if not length:
        return b""
    if not length.isdigit() or int(length) > MAX_BODY:
        raise _BadRequest("bad Content-Length")
    body = rfile.read(int(length))
    if len(body) != int(length):
        raise _BadRequest("body shorter than Content-Length")
    return body


def _keep_alive(version: str, headers: list[tuple[str, str]]) -> bool:
    tokens = {token.strip().lower() for key, value in headers if key.lower() == "connection"
              for token in value.split(",")}
    if version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def render(request_method: str, status: int, headers: list[tuple[str, str]], body: bytes,
           keep_alive: bool, server: str) -> bytes:
    """The response bytes: status line, headers with an exact length, body (none for HEAD)."""
    names = {key.lower() for key, _ in headers}
    lines = [f"HTTP/1.1 {status} {reason(status)}"]
    if "server" not in names and server:
        lines.append(f"Server: {server}")
    if "date" not in names:
        lines.append(f"Date: {http_date()}")
    lines.extend(f"{key}: {value}" for key, value in headers)
    lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if request_method == "HEAD" else head + body


def _connection(conn: socket.socket, peer: str, handler: Handler, server: str) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.settimeout(IDLE_TIMEOUT)
    local = conn.getsockname()[:2]
    rfile = conn.makefile("rb")
    try:
        while True:
            try:
                head = _read_head(rfile)
                if head is None:
                    return
                method, target, version, headers = head
                body = _read_body(rfile, headers)
            except _BadRequest:
                conn.sendall(render("GET", 400, [("Content-Type", "text/plain")], b"Bad Request\n", False, server))
                return
            request = Request(method, target, version, headers, body, peer, local)
            keep_alive = _keep_alive(version, headers)
            try:
                status, response_headers, response_body = handler(request)
            except Exception as exc:  # a bug in a program must not take the connection's peer down with it
                print(f"error handling {method} {target}: {exc!r}", file=sys.stderr, flush=True)
                status, response_headers, response_body = 500, [("Content-Type", "text/plain")], b"error\n"
            # Logged before sending, so whoever has the response can already find its line in `kubectl logs`.
            access_log(request, status, len(response_body))
            conn.sendall(render(method, status, response_headers, response_body, keep_alive, server))
            if not keep_alive:
                return
    except OSError:
        return
    finally:
        rfile.close()
        conn.close()


def _exit(signum: int, frame: object) -> None:
    # Raising in the main thread interrupts accept(); connection threads are daemons and end with the process.
    raise SystemExit(0)


def run(handler: Handler, *, default_port: int, server: str = "") -> None:
    """Serve ``handler`` until SIGTERM or SIGINT, then exit promptly with status 0, as a container should.

    Args:
        handler: turns a request into ``(status, headers, body)``; called on the connection's thread.
        default_port: the image's port, used when the node gives none.
        server: the ``Server`` header value.
    """
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    host, port = listen_address(default_port)
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(1024)
    print(f"Listening at: http://{host}:{port} ({os.getpid()})", flush=True)
    try:
        while True:
            conn, address = listener.accept()
            threading.Thread(target=_connection, args=(conn, address[0], handler, server), daemon=True).start()
    finally:
        listener.close()
        print("Shutting down", flush=True)
