"""Where the agent finds istiod: ``discoveryAddress`` from the mesh config, resolved through the pod's own DNS.

In a remote cluster ``istiod.istio-system.svc`` is the selector-less Service whose Endpoints name the primary's
east-west gateway, so configuration, certificates and the DNS proxy's name table (NDS, which the agent's xDS
proxy asks for on Envoy's own stream, :class:`~.workload.AdsProxy`) arrive only by a path that exists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from dnslib import QTYPE, DNSRecord

DEFAULT_DISCOVERY = "istiod.istio-system.svc:15012"


def discovery_address(env: Mapping[str, str]) -> tuple[str, int]:
    """``defaultConfig.discoveryAddress`` from ``PROXY_CONFIG`` (Istio's default when absent)."""
    try:
        config = json.loads(env.get("PROXY_CONFIG") or "{}")
    except ValueError:
        config = {}
    host, _, port = str(config.get("discoveryAddress") or DEFAULT_DISCOVERY).rpartition(":")
    return host, int(port) if port.isdigit() else 15012


def resolve(host: str, server: tuple[str, int], search: Sequence[str], timeout: float = 2.0) -> str:
    """The first A record of ``host`` from the pod's resolver, with its search list as ``resolv.conf`` would.

    Raises:
        OSError: no answer (the message names the host and the resolver).
    """
    candidates = [host] if host.endswith(".") else [f"{host}.{domain}" for domain in search] + [host]
    for name in candidates:
        answer = DNSRecord.parse(DNSRecord.question(name.rstrip("."), "A").send(server[0], server[1],
                                                                                 timeout=timeout))
        for record in answer.rr:
            if record.rtype == QTYPE.A:
                return str(record.rdata)
    raise OSError(f"{host} does not resolve through {server[0]}:{server[1]}")
