"""Traffic: call loops from a client pod into DataFrames, the shares a lab compares them with, and captures of
what crossed a load balancer (with what each captured byte is: TLS header, handshake, ciphertext, plaintext).

Sits above ``labkit.istio`` (it may read its endpoint tables) and reaches clusters only through
``labkit.kube``: one exec per loop, one curl with N URLs (DESIGN.md), on real and embedded clusters alike.
"""

from labkit.traffic.calling import COLUMNS, Source, call, curl_argv, parse_curl_output
from labkit.traffic.captures import Capture, Stream, byte_kinds, capture, tls_records
from labkit.traffic.lookups import nslookup_addresses
from labkit.traffic.shares import ERROR_KEY, OTHER_KEY, expected_shares, shares_of, summarize

__all__ = [
    "COLUMNS",
    "ERROR_KEY",
    "OTHER_KEY",
    "Capture",
    "Source",
    "Stream",
    "byte_kinds",
    "call",
    "capture",
    "curl_argv",
    "expected_shares",
    "nslookup_addresses",
    "parse_curl_output",
    "shares_of",
    "summarize",
    "tls_records",
]
