"""The byte map: one cell per byte, coloured by what the byte is; plaintext drawn as its characters."""

from __future__ import annotations

import pytest

from labkit.viz import WirePanel, WireStream, wire_chart


def test_each_panel_draws_its_streams_and_only_plaintext_as_characters() -> None:
    request = b"GET / HTTP/1.1\r\n"
    readable = WireStream("#1", "GET / HTTP/1.1", request, ("plaintext",) * len(request))
    noise = WireStream("#2", "TLS", bytes([23, 3, 3, 0, 3, 71, 69, 84]), ("header",) * 5 + ("ciphertext",) * 3)
    figure = wire_chart([WirePanel("DISABLE", "readable", True, [readable]), WirePanel("ISTIO_MUTUAL", "TLS", False,
                                                                                       [noise])])
    left, right = figure.axes
    assert "".join(t.get_text() for t in left.texts if len(t.get_text()) == 1) == "GET/HTTP/1.1"
    assert not [t for t in right.texts if len(t.get_text()) == 1]  # 71 69 84 spell GET, but are ciphertext


def test_a_stream_needs_one_known_kind_per_byte() -> None:
    with pytest.raises(ValueError, match="3 bytes but 2 kinds"):
        WireStream("#1", "", b"abc", ("plaintext", "plaintext"))
    with pytest.raises(ValueError, match="unknown byte kinds"):
        WireStream("#1", "", b"a", ("noise",))
