"""``curl`` inside a pod: the machine's real curl, with cluster names resolved the way the pod would.

DESIGN decision 8 runs the machine's curl for ``kubectl exec … -- curl``, but that curl asks the
machine's resolver, which knows nothing of ``helloworld.sample``. A pod's ``/etc/resolv.conf``
(``search <ns>.svc.cluster.local svc.cluster.local cluster.local``, ``options ndots:5``) sends every
short name through the cluster DNS first. This shim does the same lookups against the cluster DNS
server the node names, then runs the real curl with ``--resolve host:port:addr`` for each name it
found, so curl connects where the pod's curl would and still sends ``Host: helloworld:5000``.

Names the cluster DNS does not know are left to curl's own resolver, which is what a cluster does
too (CoreDNS forwards them upstream); a name nobody knows then fails in curl itself, with curl's own
``curl: (6) Could not resolve host: foo.sample`` and exit code 6, per URL, even among many URLs.

In a pod with a sidecar, ``http_proxy`` names the sidecar (DESIGN decision 5): curl sends ``http://``
requests for known names there in absolute form, and Envoy routes them by Host as it would routes
captured by iptables, so no ``--resolve`` is added for them. Unknown names still must fail in curl
rather than reach the proxy (which would answer 404 for a name it has no route for), so they are added
to ``--noproxy`` (with the pod's ``no_proxy`` entries, which that option replaces) and curl resolves
them itself.

The queries are sent from the pod's IP, as a pod's would be, so a DNS server can tell pods apart.
The DNS messages are built with ``struct`` rather than dnslib because this runs on every exec
without site-packages (``python -I -S``: ~12 ms), and an A query is a few dozen bytes.

Configuration comes from the wrapper the node writes into the pod's ``bin/``: ``LABKIT_SHIM_DNS``
(``ip:port`` of the pod's resolver: the cluster DNS, or its sidecar's DNS proxy when the pod declares one, which
answers names of other clusters and ServiceEntries too), ``LABKIT_SHIM_SEARCH`` (the search list),
``LABKIT_SHIM_SOURCE`` (the pod IP), ``LABKIT_SHIM_CURL`` (the real curl).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import socket
import struct
import sys
from urllib.parse import urlsplit

NDOTS = 5
TIMEOUT = 1.0
DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "ws": 80, "wss": 443}

# curl options that take a value, so that value is not mistaken for a URL (a mistake would only cost a lookup).
_LONG_WITH_VALUE = {
    "--header", "--output", "--write-out", "--request", "--data", "--data-raw", "--data-binary", "--data-urlencode",
    "--user", "--user-agent", "--referer", "--cookie", "--cookie-jar", "--form", "--upload-file", "--config",
    "--max-time", "--connect-timeout", "--retry", "--retry-delay", "--retry-max-time", "--cacert", "--capath",
    "--cert", "--key", "--cert-type", "--key-type", "--resolve", "--connect-to", "--interface", "--range",
    "--dump-header", "--trace", "--trace-ascii", "--limit-rate", "--max-filesize", "--proxy-user", "--noproxy",
    "--local-port", "--unix-socket", "--http-version", "--pinnedpubkey", "--ciphers", "--tls-max", "--stderr",
    "--expect100-timeout", "--parallel-max", "--json", "--variable", "--oauth2-bearer", "--aws-sigv4",
    "--speed-limit", "--speed-time", "--time-cond", "--quote", "--keepalive-time", "--dns-servers",
}
_LONG_PROXY = {"--proxy", "--preproxy", "--socks5", "--socks5-hostname", "--socks4", "--socks4a"}
_SHORT_WITH_VALUE = set("AbcCdDeEFHKmoPQrTtuUwXyYz")
_HOSTNAME = re.compile(r"^(?=.*[a-z])[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?$")


def targets(argv: list[str]) -> list[tuple[str, int]]:
    """The ``(host, port)`` pairs curl will connect to by name: URLs and proxies given on the command line."""
    return [(host, port) for _, host, port in schemed_targets(argv)]


def schemed_targets(argv: list[str]) -> list[tuple[str, str, int]]:
    """Like :func:`targets`, with the URL's scheme first (``"proxy"`` for a proxy given with ``-x``)."""
    found: list[tuple[str, str, int]] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        value: str | None = None
        is_proxy = False
        if arg == "--":
            found.extend(_target(url) for url in argv[index + 1:])
            break
        if arg.startswith("--"):
            name, sep, attached = arg.partition("=")
            if name == "--url" or name in _LONG_PROXY:
                value = attached if sep else (argv[index + 1] if index + 1 < len(argv) else None)
                is_proxy = name in _LONG_PROXY
                index += 0 if sep else 1
            elif name in _LONG_WITH_VALUE and not sep:
                index += 1
        elif arg.startswith("-") and len(arg) > 1:
            letters = arg[1:]
            for position, letter in enumerate(letters):
                if letter == "x":
                    is_proxy = True
                    rest = letters[position + 1:]
                    value = rest or (argv[index + 1] if index + 1 < len(argv) else None)
                    index += 0 if rest else 1
                    break
                if letter in _SHORT_WITH_VALUE:
                    index += 0 if letters[position + 1:] else 1
                    break
        else:
            value = arg
        if value:
            found.append(_target(value, 1080 if is_proxy else None))
        index += 1
    return [target for target in found if target[1]]


def _target(url: str, default_port: int | None = None) -> tuple[str, str, int]:
    if "://" not in url:
        url = ("http://" if default_port is None else "socks5://") + url
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or default_port or DEFAULT_PORTS.get(parts.scheme.lower(), 80)
    except ValueError:
        return "", "", 0
    if not _HOSTNAME.match(host) or host == "localhost" or host.endswith(".localhost"):
        return "", "", 0
    return ("proxy" if default_port is not None else parts.scheme.lower()), host, port


def candidates(name: str, search: list[str], ndots: int = NDOTS) -> list[str]:
    """The names a pod's resolver tries, in order (glibc/musl with ``ndots``)."""
    if name.endswith("."):
        return [name.rstrip(".")]
    searched = [f"{name}.{domain}" for domain in search if domain]
    return [name, *searched] if name.count(".") >= ndots else [*searched, name]


def _encode_query(query_id: int, name: str) -> bytes:
    labels = b"".join(bytes([len(label)]) + label.encode("idna" if not label.isascii() else "ascii")
                      for label in name.split(".") if label)
    return struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + labels + b"\x00" + struct.pack("!HH", 1, 1)


def _skip_name(message: bytes, offset: int) -> int:
    while True:
        length = message[offset]
        if length & 0xC0 == 0xC0:
            return offset + 2
        if length == 0:
            return offset + 1
        offset += length + 1


def _name(message: bytes, offset: int) -> str:
    labels: list[str] = []
    for _ in range(128):  # a loop of compression pointers must not hang
        length = message[offset]
        if length & 0xC0 == 0xC0:
            offset = struct.unpack("!H", message[offset:offset + 2])[0] & 0x3FFF
            continue
        if length == 0:
            break
        labels.append(message[offset + 1:offset + 1 + length].decode("ascii", "replace"))
        offset += length + 1
    return ".".join(labels)


def query(name: str, server: tuple[str, int], source: str = "",
          timeout: float = TIMEOUT) -> tuple[int, bool, list[tuple[str, str, str]]] | None:
    """``(rcode, authoritative, [(type, owner, value)])`` for an A query of ``name``; ``None`` without an answer.

    Args:
        name: the fully qualified name.
        server: where to ask.
        source: the pod IP to ask from.
        timeout: seconds to wait.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        if source:
            # If the pod IP is not usable as a source here, asking from anywhere still gets an answer.
            with contextlib.suppress(OSError):
                sock.bind((source, 0))
        sock.settimeout(timeout)
        query_id = random.randrange(1, 0xFFFF)
        try:
            sock.sendto(_encode_query(query_id, name), server)
            while True:
                message, _ = sock.recvfrom(65535)
                # Ours: the same id, and a response (QR set), not an echo of a query.
                if len(message) >= 12:
                    reply_id, reply_flags = struct.unpack("!HH", message[:4])
                    if reply_id == query_id and reply_flags & 0x8000:
                        break
        except OSError:
            return None
    _, flags, questions, answers, _, _ = struct.unpack("!HHHHHH", message[:12])
    offset = 12
    for _ in range(questions):
        offset = _skip_name(message, offset) + 4
    records = []
    for _ in range(answers):
        owner = _name(message, offset)
        offset = _skip_name(message, offset)
        record_type, _, _, length = struct.unpack("!HHIH", message[offset:offset + 10])
        offset += 10
        if record_type == 1 and length == 4:
            records.append(("A", owner, socket.inet_ntoa(message[offset:offset + 4])))
        elif record_type == 5:
            records.append(("CNAME", owner, _name(message, offset)))
        offset += length
    return flags & 0x000F, bool(flags & 0x0400), records


def lookup(name: str, server: tuple[str, int], source: str = "", timeout: float = TIMEOUT) -> list[str]:
    """A records for ``name`` (fully qualified) from ``server``; ``[]`` when there are none or no answer came."""
    try:
        result = query(name, server, source, timeout)
    except (struct.error, IndexError, UnicodeError):  # a reply too broken to read
        return []
    if result is None or result[0] != 0:
        return []
    return [value for kind, _, value in result[2] if kind == "A"]


def resolve(name: str, server: tuple[str, int], search: list[str], source: str = "") -> list[str]:
    """Addresses for ``name`` as the pod's resolver finds them through the cluster DNS."""
    for candidate in candidates(name, search):
        addresses = lookup(candidate, server, source)
        if addresses:
            return addresses
    return []


def bypasses_proxy(host: str, no_proxy: str) -> bool:
    """Whether curl's ``no_proxy`` rules send ``host`` directly (``*``, a name, or a domain suffix)."""
    for entry in (item.strip().lower() for item in no_proxy.split(",")):
        if entry == "*" or (entry and (host == entry.lstrip(".") or host.endswith("." + entry.lstrip(".")))):
            return True
    return False


def resolve_arguments(argv: list[str], server: tuple[str, int], search: list[str], source: str = "",
                      http_proxy: str = "", no_proxy: str = "") -> list[str]:
    """The arguments to put before ``argv``: ``--resolve`` for names curl connects to itself.

    Args:
        argv: curl's arguments.
        server: the cluster DNS.
        search: the pod's search list.
        source: the pod IP, to ask from.
        http_proxy: the proxy ``http://`` URLs go through (a sidecar), ``""`` for none.
        no_proxy: the hosts that bypass it.
    """
    extra: list[str] = []
    unknown: list[str] = []
    done: set[tuple[str, str, int]] = set()
    cache: dict[str, list[str]] = {}
    for scheme, host, port in schemed_targets(argv):
        if (scheme, host, port) in done:
            continue
        done.add((scheme, host, port))
        if host not in cache:
            cache[host] = resolve(host, server, search, source)
        proxied = bool(http_proxy) and scheme == "http" and not bypasses_proxy(host, no_proxy)
        if proxied and not cache[host]:
            unknown.append(host)
        elif cache[host] and not proxied:
            extra += ["--resolve", f"{host}:{port}:{','.join(cache[host])}"]
    if unknown:
        entries = [item.strip() for item in no_proxy.split(",") if item.strip()]
        extra += ["--noproxy", ",".join(dict.fromkeys([*entries, *unknown]))]
    return extra


def main() -> None:
    env = os.environ
    real_curl = env.pop("LABKIT_SHIM_CURL", "") or "/usr/bin/curl"
    dns = env.pop("LABKIT_SHIM_DNS", "")
    search = env.pop("LABKIT_SHIM_SEARCH", "").split()
    source = env.pop("LABKIT_SHIM_SOURCE", "")
    argv = sys.argv[1:]
    extra: list[str] = []
    if dns:
        host, _, port = dns.rpartition(":")
        # curl takes http_proxy only in lower case for http://, and no_proxy in either.
        no_proxy = env.get("no_proxy") or env.get("NO_PROXY") or ""
        extra = resolve_arguments(argv, (host, int(port)), search, source, env.get("http_proxy", ""), no_proxy)
        # The pod's resolv.conf carries only cluster search domains: the machine's must not apply to leftovers.
        env.setdefault("LOCALDOMAIN", "")
    os.execv(real_curl, ["curl", *extra, *argv])


if __name__ == "__main__":
    main()
