"""Lab 3's analysis: the two captures at the load balancer, and the picture that puts them side by side.

The lab captures what crosses the load balancer between the clusters twice: with the DestinationRule in
``ISTIO_MUTUAL`` (TLS records only, a ClientHello naming the ``outbound_`` SNI) and in ``DISABLE`` (a readable
``GET / HTTP/1.1``). :func:`compare` draws both as byte maps — the same request, once as ciphertext and once in
the clear — and :func:`verdict` says in one line what a capture shows.

A TLS connection is drawn from its first application-data record (the request, encrypted); the handshake
before it is named in the caption with its SNI. So both panels show the request, and only one can be read.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from labkit import traffic, viz

LOAD_BALANCER = "istio-system/svc/cluster-load-balancer"
SNI = "outbound_.443_._.newlb.secure.svc.cluster.local"


def compare(encrypted: traffic.Capture, plain: traffic.Capture, *, streams: int = 2) -> Figure:
    """The ``ISTIO_MUTUAL`` capture beside the ``DISABLE`` one: noise beside a request anyone can read.

    Args:
        encrypted: the capture taken with ``ISTIO_MUTUAL``.
        plain: the capture taken with ``DISABLE``.
        streams: client connections drawn per capture (readable ones first, then those seen from their start).
    """
    panels = [panel("ISTIO_MUTUAL", encrypted, streams=streams), panel("DISABLE", plain, streams=streams)]
    return viz.wire_chart(panels, title="What crossed the load balancer: ISTIO_MUTUAL versus DISABLE")


def panel(label: str, capture: traffic.Capture, *, streams: int = 2) -> viz.WirePanel:
    """One capture as a panel of :func:`labkit.viz.wire_chart`: a few client connections and a verdict."""
    # What the verdict is about first: a readable request, then connections seen from their start; one opened
    # before the capture (still busy from an earlier step) shows only its middle.
    ordered = sorted(capture.outbound, key=lambda s: (not s.request_line, s.client == "?", s.connection))
    return viz.WirePanel(label, verdict(capture), capture.readable, [_wire_stream(s) for s in ordered[:streams]])


def verdict(capture: traffic.Capture) -> str:
    """One line: how many client connections, and whether only TLS crossed or a request was readable."""
    count = f"{len(capture.outbound)} connection(s)"
    if capture.readable:
        return f"{count}: readable HTTP in the clear"
    if capture.encrypted:
        return f"{count}: only TLS records, nothing readable"
    return f"{count}: neither TLS nor readable HTTP" if capture.outbound else "nothing crossed"


def _wire_stream(stream: traffic.Stream) -> viz.WireStream:
    kinds = traffic.byte_kinds(stream.data)
    start = kinds.index("ciphertext") - 5 if "ciphertext" in kinds else 0  # from its record header
    client = "client (connected before the capture)" if stream.client == "?" else stream.client
    title = f"#{stream.connection} {client} → {stream.endpoint}  ({len(stream.data)} bytes)"
    return viz.WireStream(title, stream.request_line or _tls_caption(stream, start), stream.data[start:],
                          tuple(kinds[start:]))


def _tls_caption(stream: traffic.Stream, start: int) -> str:
    records = stream.records
    if not records:
        return "neither TLS nor HTTP"
    hello = next((r for r in records if r.handshake == "ClientHello"), None)
    opening = f"TLS ClientHello (SNI {hello.sni})" if hello and hello.sni else f"TLS {records[0].type}"
    return f"{opening}, then application data (drawn from byte {start})" if start else opening


def outcomes(calls: pd.DataFrame) -> str:
    """What curl saw, one line per distinct answer: ``3 × 503 upstream connect error … connection termination``.

    Args:
        calls: rows as :meth:`labkit.cluster.Cluster.call` returns them.
    """
    if calls.empty:
        return "no calls"
    answers = calls.assign(error=calls["error"].fillna("")).groupby(["status", "error"], sort=False).size()
    return "\n".join(f"{count} × {status}{'  ' + error if error else ''}" for (status, error), count in answers.items())


def dropped_at_handshake(calls: pd.DataFrame) -> bool:
    """Whether every call failed the way a Gateway with no filter chain for the ``outbound_`` SNI fails them: 503
    with the TLS connection reset (``connection failure``), which is not how the plaintext calls of the DISABLE step
    fail (``connection termination``). Waiting for 503s alone would stop on calls still sent under the old
    DestinationRule, before the gateway ever sees the ``outbound_`` SNI.

    Args:
        calls: rows as :meth:`labkit.cluster.Cluster.call` returns them.
    """
    errors = calls["error"].fillna("")
    return not calls.empty and bool((calls["status"] == 503).all() and errors.str.contains("connection failure").all())
