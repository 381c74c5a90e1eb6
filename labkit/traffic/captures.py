"""What crossed the wire: captures at a load balancer, shown the way ngrep shows them.

Lab 3's teaching point is a picture of bytes. With the DestinationRule in ``ISTIO_MUTUAL`` the load
balancer between the clusters relays TLS records — ``16 03 01 …`` opening a ClientHello whose SNI is
``outbound_.443_._.newlb.secure.svc.cluster.local``, then ``17 03 03 …`` application data; with ``DISABLE`` it
relays ``GET / HTTP/1.1`` in the clear. :class:`Capture` holds the bytes per connection and direction and says
which of the two it saw (:attr:`Capture.encrypted`, :attr:`Capture.readable`), so a checkpoint can assert it.

On embedded clusters the capture is a ``PacketCapture`` object (labkit.io/v1) the cluster's service proxy
fills in; real clusters have no such add-on and the error says what to run there instead.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labkit import kube
from labkit.core.contract import CAPTURE_API_VERSION, CAPTURE_KIND
from labkit.errors import LabkitError, WaitTimeoutError

TO_ENDPOINT, TO_CLIENT = "to_endpoint", "to_client"
_RECORD_TYPES = {20: "ChangeCipherSpec", 21: "Alert", 22: "Handshake", 23: "ApplicationData"}
_HANDSHAKES = {1: "ClientHello", 2: "ServerHello", 11: "Certificate", 4: "NewSessionTicket"}
_HTTP = re.compile(rb"^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|CONNECT) \S+ HTTP/1\.[01]\r\n")


@dataclass(frozen=True)
class TlsRecord:
    """One TLS record header (and, for a handshake, what it opens)."""

    type: str
    version: str
    length: int
    handshake: str = ""
    sni: str = ""


@dataclass(frozen=True)
class Stream:
    """The bytes of one connection in one direction, in order."""

    connection: int
    direction: str
    client: str
    endpoint: str
    data: bytes

    @property
    def records(self) -> list[TlsRecord]:
        return tls_records(self.data)

    @property
    def request_line(self) -> str:
        match = _HTTP.match(self.data)
        return match.group(0).decode().strip() if match else ""


@dataclass(frozen=True)
class Capture:
    """Everything a capture saw, per connection and direction."""

    target: str
    seconds: float
    streams: tuple[Stream, ...] = field(default=())
    truncated: bool = False

    @property
    def outbound(self) -> list[Stream]:
        """What clients sent towards the endpoint (the direction that carries the request)."""
        return [s for s in self.streams if s.direction == TO_ENDPOINT and s.data]

    @property
    def encrypted(self) -> bool:
        """Every client stream is TLS records from its first byte to its last, and none is a readable request.

        A connection opened before the capture began shows no ClientHello, only application data: still TLS.
        """
        outbound = self.outbound
        return bool(outbound) and all(_all_tls(s.data) and not s.request_line for s in outbound)

    @property
    def readable(self) -> bool:
        """Some client stream carried an HTTP request in the clear."""
        return any(s.request_line for s in self.outbound)

    @property
    def sni(self) -> list[str]:
        return sorted({r.sni for s in self.outbound for r in s.records if r.sni})

    def __str__(self) -> str:
        return self.render()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.render())

    def render(self, *, bytes_per_stream: int = 96, alike: int = 2) -> str:
        """ngrep's view: a header per connection and direction, a hex/ASCII dump, and what the bytes are.

        Connections repeat (three calls make three identical ``GET`` dumps), so only the first ``alike`` of a
        kind are dumped, then ``… N more like this``; connections opened before the capture (still busy from an
        earlier step, no client address known) are counted, not dumped.

        Args:
            bytes_per_stream: bytes dumped per connection and direction.
            alike: connections dumped per kind of content and direction.
        """
        if not self.streams:
            return f"{self.target}: nothing crossed during {self.seconds:.0f} s"
        lines = [f"{self.target}: {len(self.outbound)} connection(s) in {self.seconds:.0f} s"
                 + (" (truncated)" if self.truncated else "")]
        earlier = {s.connection for s in self.streams if s.client == "?" and s.data}
        if earlier:
            lines.append(f"({len(earlier)} connection(s) opened before the capture began, not shown: "
                         "their first bytes were sent earlier)")
        shown: dict[tuple[str, str], int] = {}
        for stream in self.streams:
            if not stream.data or stream.client == "?":
                continue
            kind = (stream.direction, _describe(stream))
            shown[kind] = shown.get(kind, 0) + 1
            if shown[kind] > alike:
                continue
            arrow = f"{stream.client} -> {stream.endpoint}" if stream.direction == TO_ENDPOINT else \
                f"{stream.endpoint} -> {stream.client}"
            lines.append(f"\nT {arrow}  #{stream.connection} ({len(stream.data)} bytes)")
            lines += _dump(stream.data[:bytes_per_stream])
            lines.append(f"  = {kind[1]}")
        more = [(kind, count - alike) for kind, count in shown.items() if count > alike]
        for (direction, description), count in more:
            way = "client -> endpoint" if direction == TO_ENDPOINT else "endpoint -> client"
            lines.append(f"\n… {count} more like this ({way}: {description})")
        return "\n".join(lines)


def tls_records(data: bytes) -> list[TlsRecord]:
    """The TLS records a byte stream starts with (empty when it does not start as TLS)."""
    records, offset = [], 0
    while offset + 5 <= len(data):
        kind, major, minor, length = data[offset], data[offset + 1], data[offset + 2], \
            int.from_bytes(data[offset + 3:offset + 5], "big")
        if kind not in _RECORD_TYPES or major != 3 or minor > 4:
            break
        body = data[offset + 5:offset + 5 + length]
        handshake = sni = ""
        if kind == 22 and body and body[0] in _HANDSHAKES:
            handshake = _HANDSHAKES[body[0]]
            if body[0] == 1:
                sni = client_hello_sni(body)
        records.append(TlsRecord(_RECORD_TYPES[kind], f"{major:02x} {minor:02x}", length, handshake, sni))
        offset += 5 + length
    return records


def byte_kinds(data: bytes) -> list[str]:
    """What each byte of a client stream is: ``header`` (a TLS record header), ``handshake``, ``ciphertext``
    (TLS application data), ``plaintext`` (an HTTP stream) or ``other``.

    Args:
        data: the bytes one connection carried in one direction, from the first.
    """
    kinds: list[str] = []
    for record in tls_records(data):
        body = "handshake" if record.type in ("Handshake", "ChangeCipherSpec", "Alert") else "ciphertext"
        kinds += ["header"] * 5 + [body] * record.length
    if not kinds:
        readable = bool(_HTTP.match(data)) or data.startswith(b"HTTP/")
        return ["plaintext" if readable else "other"] * len(data)
    kinds = kinds[:len(data)]
    return kinds + ["other"] * (len(data) - len(kinds))


def _all_tls(data: bytes) -> bool:
    """Whether the bytes are whole TLS records end to end (a chunk cut mid-record counts as its start)."""
    return bool(data) and sum(5 + record.length for record in tls_records(data)) >= len(data)


def client_hello_sni(handshake: bytes) -> str:
    """The server name a ClientHello asks for (``""`` when absent or cut off)."""
    try:
        position = 4 + 2 + 32  # handshake header, client version, random
        position += 1 + handshake[position]  # session id
        position += 2 + int.from_bytes(handshake[position:position + 2], "big")  # cipher suites
        position += 1 + handshake[position]  # compression methods
        end = position + 2 + int.from_bytes(handshake[position:position + 2], "big")
        position += 2
        while position + 4 <= end:
            kind = int.from_bytes(handshake[position:position + 2], "big")
            size = int.from_bytes(handshake[position + 2:position + 4], "big")
            if kind == 0:  # server_name: list length, name type, name length, name
                length = int.from_bytes(handshake[position + 7:position + 9], "big")
                return handshake[position + 9:position + 9 + length].decode(errors="replace")
            position += 4 + size
    except IndexError:
        return ""
    return ""


def _dump(data: bytes) -> list[str]:
    lines = []
    for start in range(0, len(data), 16):
        chunk = data[start:start + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"  {hexes:<47}   {text}")
    return lines


def _describe(stream: Stream) -> str:
    if stream.request_line:
        return f"plaintext HTTP: {stream.request_line}"
    records = stream.records
    if records:
        first = records[0]
        what = f"TLS {first.type}" + (f" ({first.handshake})" if first.handshake else "")
        if first.sni:
            what += f", SNI {first.sni}"
        return what + f"; {len(records)} TLS record(s) readable as headers only"
    if stream.data[:5].startswith(b"HTTP/"):
        return "plaintext HTTP response: " + stream.data.split(b"\r\n", 1)[0].decode(errors="replace")
    return "not TLS, not HTTP"


def capture(context: kube.ContextRef, target: str, *, seconds: float = 3.0,
            during: Callable[[], Any] | None = None) -> Capture:
    """Record what crosses a Service's relay (a load balancer) for ``seconds``, while ``during()`` runs.

    Args:
        context: the kubeconfig context of the cluster the Service is in.
        target: ``<namespace>/svc/<name>``, e.g. ``istio-system/svc/cluster-load-balancer``.
        seconds: how long to listen.
        during: traffic to send while listening (called once the capture has started).

    Raises:
        LabkitError: a real cluster (the message says what to run there), or a capture that failed.
    """
    namespace, _, name = target.partition("/svc/")
    if not name:
        raise LabkitError(f"capture target {target!r}: write it as <namespace>/svc/<name>")
    if not kube.is_embedded(context):
        raise LabkitError(
            f"{context} is a real cluster: capture on the load balancer's targets instead, e.g. "
            f"`kubectl --context {context} debug node/<node> -it --image=nicolaka/netshoot -- "
            f"ngrep -d any -W byline -x port <targetPort>`")
    capture_name = f"{name}-{int(time.time() * 1000) % 10**9}"
    kube.apply(context, [{"apiVersion": CAPTURE_API_VERSION, "kind": CAPTURE_KIND,
                          "metadata": {"name": capture_name, "namespace": namespace},
                          "spec": {"service": name, "seconds": seconds}}])
    try:
        _wait_phase(context, namespace, capture_name, ("Capturing", "Complete", "Failed"), 10.0)
        if during is not None:
            during()
        status = _wait_phase(context, namespace, capture_name, ("Complete", "Failed"), seconds + 15.0)
    finally:
        kube.delete_object(context, CAPTURE_API_VERSION, CAPTURE_KIND, capture_name, namespace)
    if status.get("phase") == "Failed":
        raise LabkitError(f"capture at {target} failed: {status.get('message', '')}")
    return from_status(target, status)


def from_status(target: str, status: dict[str, Any]) -> Capture:
    """A :class:`Capture` from a PacketCapture's status."""
    connections = {c["connection"]: c for c in status.get("connections") or []}
    joined: dict[tuple[int, str], bytearray] = {}
    for chunk in status.get("chunks") or []:
        joined.setdefault((chunk["connection"], chunk["direction"]), bytearray()).extend(
            base64.b64decode(chunk["data"]))
    streams = tuple(Stream(connection, direction, connections.get(connection, {}).get("client", "?"),
                           connections.get(connection, {}).get("endpoint", "?"), bytes(data))
                    # Per connection, the client's bytes first: the request, then what came back.
                    for (connection, direction), data in sorted(joined.items(),
                                                                key=lambda i: (i[0][0], i[0][1] != TO_ENDPOINT)))
    return Capture(target, float(status.get("seconds", 0)), streams, bool(status.get("truncated")))


def _wait_phase(context: kube.ContextRef, namespace: str, name: str, phases: tuple[str, ...],
                timeout: float) -> dict[str, Any]:
    def status() -> dict[str, Any]:
        obj = kube.get_object(context, CAPTURE_API_VERSION, CAPTURE_KIND, name, namespace)
        found = (obj or {}).get("status") or {}
        return found if found.get("phase") in phases else {}

    try:
        return kube.poll(status, timeout=timeout, what=f"capture {namespace}/{name}", interval=0.05, max_interval=0.2)
    except WaitTimeoutError as exc:
        raise LabkitError(f"capture {namespace}/{name} did not reach {' or '.join(phases)} in {timeout:.0f} s") \
            from exc
