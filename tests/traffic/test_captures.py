"""Captured bytes read as a learner reads them: TLS records and their SNI, or plaintext HTTP.

The lab 3 checkpoint itself is run here against both kinds of capture: it must pass on TLS and fail on
readable bytes, so the notebook fails exactly when ISTIO_MUTUAL stops encrypting the load balancer hop.
"""

from __future__ import annotations

import base64
import functools
import ssl
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from labkit.errors import CheckpointFailed
from labkit.lab import Lab
from labkit.traffic.captures import Capture, Stream, byte_kinds, client_hello_sni, from_status, tls_records

SNI = "outbound_.443_._.newlb.secure.svc.cluster.local"
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "03-nlb-headless.ipynb"
REQUEST = b"GET / HTTP/1.1\r\nHost: newlb.secure.svc.cluster.local:443\r\nUser-Agent: curl/7.88.1\r\n\r\n"


def client_hello(server_name: str = SNI) -> bytes:
    """The first flight a real TLS client sends (Python's ssl, not hand-made bytes)."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


def capture_of(*streams: bytes) -> Capture:
    return Capture("istio-system/svc/cluster-load-balancer", 3.0, tuple(
        Stream(i, "to_endpoint", f"127.0.0.1:{50000 + i}", "127.1.2.3:8443", data) for i, data in enumerate(streams)))


def test_a_real_client_hello_is_tls_with_its_sni() -> None:
    hello = client_hello()
    (record,) = tls_records(hello)
    assert (record.type, record.handshake, record.sni) == ("Handshake", "ClientHello", SNI)
    assert record.version.startswith("03 0")
    assert client_hello_sni(hello[5:]) == SNI
    capture = capture_of(hello + bytes([23, 3, 3, 0, 4]) + b"\x00" * 4)
    assert capture.encrypted and not capture.readable and capture.sni == [SNI]
    assert f"TLS Handshake (ClientHello), SNI {SNI}" in capture.render()


def test_plaintext_http_is_readable_and_not_encrypted() -> None:
    capture = capture_of(REQUEST)
    assert capture.readable and not capture.encrypted
    rendered = capture.render()
    assert "plaintext HTTP: GET / HTTP/1.1" in rendered
    assert "47 45 54 20 2f 20 48 54 54 50 2f 31 2e 31" in rendered  # as ngrep's hex dump shows it


def test_each_byte_is_told_apart_as_tls_header_handshake_ciphertext_or_plaintext() -> None:
    hello = client_hello()
    data = hello + bytes([23, 3, 3, 0, 4]) + b"\x9a\x01\xfe\x33"
    kinds = byte_kinds(data)
    assert kinds[:5] == ["header"] * 5 and set(kinds[5:len(hello)]) == {"handshake"}
    assert kinds[len(hello):] == ["header"] * 5 + ["ciphertext"] * 4
    assert set(byte_kinds(REQUEST)) == {"plaintext"}
    assert set(byte_kinds(b"\x00\x01binary")) == {"other"}


def test_application_data_of_an_earlier_connection_is_still_ciphertext() -> None:
    assert capture_of(bytes([23, 3, 3, 0, 2]) + b"\xab\xcd").encrypted
    assert not capture_of(b"").encrypted  # nothing crossed: nothing to claim


def test_status_of_a_packet_capture_becomes_streams_per_connection() -> None:
    hello = client_hello()
    status = {"phase": "Complete", "seconds": 2, "truncated": False,
              "connections": [{"connection": 7, "client": "127.0.0.1:5000", "frontend": "127.9.200.250:443",
                               "endpoint": "127.9.2.3:8443"}],
              "chunks": [{"connection": 7, "direction": "to_client", "at": 0.2,
                          "data": base64.b64encode(b"\x16\x03\x03\x00\x00").decode()},
                         {"connection": 7, "direction": "to_endpoint", "at": 0.1,
                          "data": base64.b64encode(hello[:40]).decode()},
                         {"connection": 7, "direction": "to_endpoint", "at": 0.1,
                          "data": base64.b64encode(hello[40:]).decode()}]}
    capture = from_status("istio-system/svc/cluster-load-balancer", status)
    assert [s.direction for s in capture.streams] == ["to_endpoint", "to_client"]  # the request first
    assert capture.streams[0].data == hello and capture.sni == [SNI]
    assert capture.streams[0].client == "127.0.0.1:5000"


def _lab3_checkpoint(capture: Capture) -> None:
    """Run the notebook's own ISTIO_MUTUAL capture checkpoint against ``capture``."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (cell,) = [c for c in notebook.cells if "with ISTIO_MUTUAL only TLS records cross" in c.source]
    lab = SimpleNamespace(checkpoint=functools.partial(Lab.checkpoint, None))
    exec(compile(cell.source, "lab3-checkpoint", "exec"), {"lab": lab, "encrypted": capture})


def test_lab3_checkpoint_passes_on_tls_and_fails_on_readable_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    _lab3_checkpoint(capture_of(client_hello()))
    assert "✅ with ISTIO_MUTUAL only TLS records cross the load balancer" in capsys.readouterr().out
    with pytest.raises(CheckpointFailed):
        _lab3_checkpoint(capture_of(REQUEST))
    with pytest.raises(CheckpointFailed):  # TLS, but not to the gateway's outbound_ SNI
        _lab3_checkpoint(capture_of(client_hello("newlb.secure.svc.cluster.local")))


def test_repeated_connections_are_dumped_twice_then_counted_and_earlier_ones_only_counted() -> None:
    earlier = Stream(99, "to_endpoint", "?", "127.1.2.3:8443", bytes([23, 3, 3, 0, 2]) + b"\xab\xcd")
    capture = capture_of(*[REQUEST] * 6)
    capture = Capture(capture.target, capture.seconds, (earlier, *capture.streams))
    rendered = capture.render()
    assert rendered.count("plaintext HTTP: GET / HTTP/1.1") == 3  # two dumps and the "more" line
    assert "… 4 more like this (client -> endpoint: plaintext HTTP: GET / HTTP/1.1)" in rendered
    assert "1 connection(s) opened before the capture began, not shown" in rendered
    assert "#99" not in rendered
    assert capture.readable and len(capture.outbound) == 7  # trimming is for the eye only
