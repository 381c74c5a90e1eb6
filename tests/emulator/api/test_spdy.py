"""SPDY/3.1 framing as kubectl's client (spdystream over Go's SPDY/3 framer) writes and reads it."""

from __future__ import annotations

import struct
import zlib

import pytest

from labkit.emulator.api import spdy


def _client_headers(deflate: zlib._Compress, headers: dict[str, str]) -> bytes:
    block = struct.pack(">I", len(headers))
    for name, value in headers.items():
        block += struct.pack(">I", len(name)) + name.encode() + struct.pack(">I", len(value)) + value.encode()
    return deflate.compress(block) + deflate.flush(zlib.Z_SYNC_FLUSH)


def _syn_stream(deflate: zlib._Compress, stream_id: int, headers: dict[str, str], flags: int = 0) -> bytes:
    payload = struct.pack(">IIH", stream_id, 0, 0) + _client_headers(deflate, headers)
    return struct.pack(">HHI", 0x8003, spdy.SYN_STREAM, (flags << 24) | len(payload)) + payload


def test_streams_data_and_pings_parse_whatever_way_the_bytes_arrive() -> None:
    deflate = zlib.compressobj(zdict=spdy.DICTIONARY)
    wire = (_syn_stream(deflate, 1, {"streamtype": "error", "port": "80", "requestid": "0"})
            + _syn_stream(deflate, 3, {"streamtype": "data", "port": "80", "requestid": "0"})
            + struct.pack(">II", 3, (spdy.FLAG_FIN << 24) | 5) + b"hello"
            + struct.pack(">HHII", 0x8003, spdy.PING, 4, 7))
    session = spdy.Session()
    events = [event for i in range(len(wire)) for event in session.receive(wire[i:i + 1])]  # one byte at a time
    assert events == [spdy.StreamOpened(1, {"streamtype": "error", "port": "80", "requestid": "0"}, False),
                      spdy.StreamOpened(3, {"streamtype": "data", "port": "80", "requestid": "0"}, False),
                      spdy.DataReceived(3, b"hello", True), spdy.Pinged(7)]


def test_replies_decompress_with_the_spdy3_dictionary_and_data_is_split_and_finished() -> None:
    session = spdy.Session()
    inflate = zlib.decompressobj(zdict=spdy.DICTIONARY)
    for stream_id in (1, 3):  # one zlib stream across frames, as Go's reader keeps it
        reply = session.reply(stream_id)
        first, flags_length, sid = struct.unpack(">III", reply[:12])
        assert (first, flags_length & 0xFFFFFF, sid) == (0x80030002, len(reply) - 8, stream_id)
        assert inflate.decompress(reply[12:]) == struct.pack(">I", 0)
    frames = session.data(3, b"x" * (spdy.MAX_DATA + 1), fin=True)
    header = struct.unpack(">II", frames[:8])
    assert header == (3, spdy.MAX_DATA)
    tail = frames[8 + spdy.MAX_DATA:]
    assert struct.unpack(">II", tail[:8]) == (3, (spdy.FLAG_FIN << 24) | 1)


def test_other_versions_are_refused() -> None:
    with pytest.raises(spdy.ProtocolError, match="SPDY version 2"):
        spdy.Session().receive(struct.pack(">HHII", 0x8002, spdy.PING, 4, 1))
