"""SPDY/3.1 framing, the server's half: what ``kubectl port-forward`` speaks to a kubelet.

kubectl 1.31+ opens port-forward sessions as SPDY/3.1 carried in WebSocket binary messages (subprotocol
``SPDY/3.1+portforward.k8s.io``) and falls back to SPDY over a plain HTTP ``Upgrade: SPDY/3.1``; either
way the bytes are SPDY frames. No maintained Python package speaks SPDY any more (HTTP/2 replaced it
everywhere but here), and the part Kubernetes uses is small, so it lives here, sans I/O: bytes in,
events out, frames built on request.

What Kubernetes' client (moby/spdystream over Go's SPDY/3 framer) needs from a server, and all this does:
``SYN_STREAM`` opens a stream (its headers are a zlib stream compressed with the SPDY/3 dictionary,
shared by all header blocks of one direction), the server answers ``SYN_REPLY``; ``DATA`` frames carry
bytes, with ``FIN`` closing one direction; ``RST_STREAM`` drops a stream; ``PING`` is echoed;
``GOAWAY`` ends the session. spdystream does no flow control (it ignores ``WINDOW_UPDATE`` and
``SETTINGS``), so neither does this.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
RST_PROTOCOL_ERROR, RST_CANCEL = 1, 5
MAX_DATA = 32 * 1024  # per DATA frame; the length field allows 16 MiB, Go's reader copes with any


def _dictionary() -> bytes:
    """The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00, section 2.6.10.1)."""
    words = [
        "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
        "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
        "content-base", "content-encoding", "content-language", "content-length", "content-location", "content-md5",
        "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host", "if-match",
        "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
        "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after",
        "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
        "www-authenticate", "method", "get", "status",
    ]
    words += ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
    text = ("100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
            "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
            "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
            "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
            "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
            "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
    return b"".join(struct.pack(">I", len(w)) + w.encode() for w in words) + text.encode()


DICTIONARY = _dictionary()


class ProtocolError(Exception):
    """The peer sent something that is not SPDY/3.1; the session cannot go on."""


@dataclass(frozen=True)
class StreamOpened:
    """The client opened ``stream_id`` with ``headers`` (names lower-case); ``fin``: it will send nothing."""

    stream_id: int
    headers: dict[str, str]
    fin: bool


@dataclass(frozen=True)
class DataReceived:
    """Bytes on a stream; ``fin``: the client closed its side of it."""

    stream_id: int
    data: bytes
    fin: bool


@dataclass(frozen=True)
class StreamReset:
    """The client dropped ``stream_id``."""

    stream_id: int


@dataclass(frozen=True)
class Pinged:
    """A PING to echo."""

    ping_id: int


@dataclass(frozen=True)
class WentAway:
    """The client ends the session."""


Event = StreamOpened | DataReceived | StreamReset | Pinged | WentAway


class Session:
    """One SPDY/3.1 session seen from the server: :meth:`receive` parses, the other methods build frames."""

    def __init__(self) -> None:
        self._buffer = b""
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY,
                                         zdict=DICTIONARY)

    def receive(self, data: bytes) -> list[Event]:
        """The events in ``data`` (frames may arrive split anywhere: the rest waits for more bytes)."""
        self._buffer += data
        events: list[Event] = []
        while len(self._buffer) >= 8:
            first, flags_length = struct.unpack(">II", self._buffer[:8])
            length = flags_length & 0xFFFFFF
            if len(self._buffer) < 8 + length:
                break
            flags, payload = flags_length >> 24, self._buffer[8:8 + length]
            self._buffer = self._buffer[8 + length:]
            if first & 0x80000000:
                event = self._control((first >> 16) & 0x7FFF, first & 0xFFFF, flags, payload)
                if event is not None:
                    events.append(event)
            else:
                events.append(DataReceived(first & 0x7FFFFFFF, payload, bool(flags & FLAG_FIN)))
        return events

    def _control(self, version: int, kind: int, flags: int, payload: bytes) -> Event | None:
        if version != VERSION:
            raise ProtocolError(f"SPDY version {version} is not served; the client must speak SPDY/3.1")
        if kind == SYN_STREAM:
            if len(payload) < 10:
                raise ProtocolError("SYN_STREAM frame too short")
            stream_id = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF
            return StreamOpened(stream_id, self._headers(payload[10:]), bool(flags & FLAG_FIN))
        if kind == HEADERS:
            self._headers(payload[4:])  # keeps the shared zlib stream in step; nothing here uses them
            return None
        if kind == RST_STREAM:
            return StreamReset(struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF)
        if kind == PING:
            return Pinged(struct.unpack(">I", payload[:4])[0])
        if kind == GOAWAY:
            return WentAway()
        return None  # SETTINGS, WINDOW_UPDATE, SYN_REPLY (the server opens no streams): nothing to do

    def _headers(self, block: bytes) -> dict[str, str]:
        try:
            raw = self._inflate.decompress(block)
        except zlib.error as exc:
            raise ProtocolError(f"the header block does not decompress: {exc}") from exc
        headers: dict[str, str] = {}
        count, position = struct.unpack(">I", raw[:4])[0], 4
        for _ in range(count):
            size = struct.unpack(">I", raw[position:position + 4])[0]
            name = raw[position + 4:position + 4 + size].decode()
            position += 4 + size
            size = struct.unpack(">I", raw[position:position + 4])[0]
            value = raw[position + 4:position + 4 + size].decode()
            position += 4 + size
            headers[name.lower()] = value.split("\0")[0]
        return headers

    # --- frames the server sends ------------------------------------------------------------------------

    def reply(self, stream_id: int, *, fin: bool = False) -> bytes:
        """``SYN_REPLY``: the stream is accepted (with no headers, as a kubelet answers)."""
        block = self._deflate.compress(struct.pack(">I", 0)) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        return _control(SYN_REPLY, FLAG_FIN if fin else 0, struct.pack(">I", stream_id) + block)

    def data(self, stream_id: int, data: bytes, *, fin: bool = False) -> bytes:
        """``DATA`` frames carrying ``data`` (split to :data:`MAX_DATA`), the last with ``FIN`` when asked."""
        frames = []
        chunks = [data[i:i + MAX_DATA] for i in range(0, len(data), MAX_DATA)] or [b""]
        for index, chunk in enumerate(chunks):
            last = fin and index == len(chunks) - 1
            frames.append(struct.pack(">II", stream_id & 0x7FFFFFFF, ((FLAG_FIN if last else 0) << 24) | len(chunk))
                          + chunk)
        return b"".join(frames)

    @staticmethod
    def pong(ping_id: int) -> bytes:
        """The echo of a ``PING``."""
        return _control(PING, 0, struct.pack(">I", ping_id))

    @staticmethod
    def reset(stream_id: int, code: int = RST_CANCEL) -> bytes:
        """``RST_STREAM``."""
        return _control(RST_STREAM, 0, struct.pack(">II", stream_id, code))

    @staticmethod
    def go_away(last_stream_id: int = 0) -> bytes:
        """``GOAWAY`` with status OK."""
        return _control(GOAWAY, 0, struct.pack(">II", last_stream_id, 0))


def _control(kind: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload
