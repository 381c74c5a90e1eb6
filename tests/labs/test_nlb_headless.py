"""Lab 3's picture: the two captures side by side, TLS records on one side, the readable request on the other."""

from __future__ import annotations

import ssl

import matplotlib
import pytest

matplotlib.use("Agg")

from matplotlib.text import Text  # after the backend is chosen

from labkit.labs import nlb_headless
from labkit.traffic.captures import Capture, Stream

SNI = nlb_headless.SNI
REQUEST = b"GET / HTTP/1.1\r\nHost: newlb.secure.svc.cluster.local:443\r\nUser-Agent: curl/7.88.1\r\n\r\n"


def client_hello() -> bytes:
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname=SNI)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


def capture_of(*streams: bytes) -> Capture:
    return Capture(nlb_headless.LOAD_BALANCER, 3.0, tuple(
        Stream(i, "to_endpoint", f"127.0.0.1:{50000 + i}", "127.1.2.3:8443", data) for i, data in enumerate(streams)))


def test_the_two_captures_sit_side_by_side_and_only_the_plaintext_one_reads_as_a_request() -> None:
    encrypted = capture_of(client_hello() + bytes([23, 3, 3, 0, 4]) + b"\x00GET")
    plain = capture_of(REQUEST)
    figure = nlb_headless.compare(encrypted, plain)
    left, right = figure.axes
    assert left.get_title() == "ISTIO_MUTUAL\n1 connection(s): only TLS records, nothing readable"
    assert right.get_title() == "DISABLE\n1 connection(s): readable HTTP in the clear"

    def cells(ax) -> str:
        return "".join(t.get_text() for t in ax.findobj(Text) if len(t.get_text()) == 1)

    # The request's words can be read off the right panel's cells; the left panel has no readable cell (not even
    # ciphertext bytes that happen to spell something), and names the handshake and its SNI in its caption.
    assert cells(right).startswith("GET/HTTP/1.1Host:newlb")
    assert cells(left) == ""
    captions = " ".join(t.get_text().replace("\n", " ") for t in left.texts)  # wrapped to stay inside its panel
    assert f"TLS ClientHello (SNI {SNI}), then application data" in captions
    assert len(left.images) == len(right.images) == 1


def test_verdicts_name_what_crossed() -> None:
    assert nlb_headless.verdict(capture_of()) == "nothing crossed"
    assert nlb_headless.verdict(capture_of(REQUEST, REQUEST)) == "2 connection(s): readable HTTP in the clear"


def test_a_readable_request_is_drawn_before_a_connection_left_over_from_the_tls_step() -> None:
    leftover = Stream(16, "to_endpoint", "?", "?", bytes([23, 3, 3, 0, 4]) + b"\x01\x02\x03\x04")
    request = Stream(17, "to_endpoint", "127.0.0.1:50001", "127.1.2.3:8443", REQUEST)
    plain = Capture(nlb_headless.LOAD_BALANCER, 3.0, (leftover, request))
    panel = nlb_headless.panel("DISABLE", plain, streams=1)
    assert [s.caption for s in panel.streams] == ["GET / HTTP/1.1"]


def test_outcomes_says_what_curl_saw_once_per_distinct_answer() -> None:
    import pandas as pd

    reset = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
    calls = pd.DataFrame({"status": [503, 503, 503, 200], "error": [reset, reset, reset, None]})
    assert nlb_headless.outcomes(calls) == f"3 × 503  {reset}\n1 × 200"
    assert nlb_headless.outcomes(calls.iloc[0:0]) == "no calls"


def test_only_calls_reset_at_the_tls_handshake_count_as_dropped_by_the_gateway() -> None:
    import pandas as pd

    reset = ("upstream connect error or disconnect/reset before headers. retried and the latest reset reason: "
             "remote connection failure")
    plaintext = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
    assert nlb_headless.dropped_at_handshake(pd.DataFrame({"status": [503, 503], "error": [reset, reset]}))
    # The DISABLE step's failures (and a mix) are not yet the gateway's filter chain miss.
    assert not nlb_headless.dropped_at_handshake(pd.DataFrame({"status": [503, 503], "error": [plaintext, plaintext]}))
    assert not nlb_headless.dropped_at_handshake(pd.DataFrame({"status": [503, 503], "error": [reset, plaintext]}))
    assert not nlb_headless.dropped_at_handshake(pd.DataFrame({"status": [200], "error": [None]}))
    assert not nlb_headless.dropped_at_handshake(pd.DataFrame({"status": [], "error": []}))
