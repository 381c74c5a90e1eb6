"""Envoy snippets every builder shares: type URLs, TLS contexts, access logs, durations.

Kept in one module so a cluster's UpstreamTlsContext and a listener's DownstreamTlsContext are made by
the same hands (Istio keeps them together in ``pilot/pkg/networking/core/tls.go``), and so a field
Envoy 1.40 rejects under ``--reject-unknown-dynamic-fields`` is fixed in one place. Only stock Envoy
extensions appear: Istio's own filters (``istio.metadata_exchange``, the stats Wasm) do not exist in
upstream Envoy, so the ALPN ``istio-peer-exchange`` is offered without the filter behind it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from labkit.core.selectors import labels_match  # noqa: F401  (the builders call common.labels_match)
from labkit.emulator.mesh.xds import names
from labkit.errors import XdsError

_API = "type.googleapis.com/envoy"
CLUSTER = f"{_API}.config.cluster.v3.Cluster"
LISTENER = f"{_API}.config.listener.v3.Listener"
ROUTE_CONFIGURATION = f"{_API}.config.route.v3.RouteConfiguration"
CLUSTER_LOAD_ASSIGNMENT = f"{_API}.config.endpoint.v3.ClusterLoadAssignment"
SECRET = f"{_API}.extensions.transport_sockets.tls.v3.Secret"
UPSTREAM_TLS = f"{_API}.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
DOWNSTREAM_TLS = f"{_API}.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
RAW_BUFFER = f"{_API}.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
HCM = f"{_API}.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
TCP_PROXY = f"{_API}.extensions.filters.network.tcp_proxy.v3.TcpProxy"
TLS_INSPECTOR = f"{_API}.extensions.filters.listener.tls_inspector.v3.TlsInspector"
FILE_ACCESS_LOG = f"{_API}.extensions.access_loggers.file.v3.FileAccessLog"
ROUTER = f"{_API}.extensions.filters.http.router.v3.Router"
FAULT = f"{_API}.extensions.filters.http.fault.v3.HTTPFault"
CORS = f"{_API}.extensions.filters.http.cors.v3.Cors"
HTTP_PROTOCOL_OPTIONS = f"{_API}.extensions.upstreams.http.v3.HttpProtocolOptions"
PREVIOUS_HOSTS = f"{_API}.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
SPIFFE_VALIDATOR = f"{_API}.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig"

# Istio's ALPN for sidecar-to-sidecar mTLS: the peer-exchange token first, so a server running Istio's
# metadata exchange recognises a mesh client; ``istio`` marks mesh traffic for protocol sniffing.
MTLS_ALPN = ("istio-peer-exchange", "istio")
MAX_U32 = 4294967295
DEFAULT_CONNECT_TIMEOUT = "10s"

# Istio's default text access log (since 1.9, with %UPSTREAM_CLUSTER_RAW% since 1.21): the response flags
# and the upstream transport failure reason are what a learner needs to tell UF,URX from NR.
ACCESS_LOG_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% '
    '%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% '
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" '
    '"%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% '
    '%DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n'
)



def enum_value(value: Any, allowed: Iterable[str], where: str, default: str) -> str:
    """An Istio enum value exactly as written (protobuf JSON is case-sensitive), ``default`` when unset.

    An unknown value is an error naming ``where`` — never a fallback: ``ISTIO_MUTUALL`` read as "no TLS"
    would turn mesh mTLS into plaintext without a word.

    Args:
        value: the value as written (``None`` when unset).
        allowed: the values the builders implement.
        where: the object and field, e.g. ``DestinationRule sample/helloworld: trafficPolicy.tls.mode``.
        default: the meaning of an unset field (the enum's zero value).

    Raises:
        XdsError: ``value`` is not one of ``allowed``.
    """
    if value is None or value == "":
        return default
    allowed = tuple(allowed)
    if value not in allowed:
        raise XdsError(f"{where}: unsupported value {value!r}; use one of {', '.join(allowed)}")
    return str(value)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(value: str | float | int) -> str:
    """An Istio duration (``5s``, ``100ms``, ``1m``, ``1h``) as protobuf JSON wants it (``0.100s``).

    Args:
        value: the Istio spelling, or a number of seconds.

    Raises:
        ValueError: not a duration Istio accepts.
    """
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value).strip())
        if not match:
            raise ValueError(f"{value!r} is not a duration (use e.g. 5s, 100ms, 1m)")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


def socket_address(address: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": address, "port_value": port}}


def typed(name: str, type_url: str, **config: Any) -> dict[str, Any]:
    """A named typed extension (filters, transport sockets, access loggers)."""
    return {"name": name, "typed_config": {"@type": type_url, **config}}


def raw_buffer() -> dict[str, Any]:
    return typed("envoy.transport_sockets.raw_buffer", RAW_BUFFER)


def sds_secret(name: str) -> dict[str, Any]:
    """An SDS reference: from the agent for the workload's own secrets, over ADS for a gateway's credentials."""
    return {"name": name, "sds_config": names.config_source("sds", name)}


def tls_params() -> dict[str, Any]:
    return {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"}


def spiffe_san_matchers(identities: Iterable[str]) -> list[dict[str, Any]]:
    return [{"san_type": "URI", "matcher": {"exact": identity}} for identity in sorted(set(identities))]


def expand_trust_domains(identities: Iterable[str], trust_domains: Iterable[str]) -> list[str]:
    """Every identity re-spelled in every trust domain (Istio's ``ExpandWithTrustDomains``), so a peer whose
    certificate uses an alias of the trust domain still matches.
    """
    domains = list(dict.fromkeys(trust_domains))
    out: list[str] = []
    for identity in identities:
        out.append(identity)
        if identity.startswith("spiffe://"):
            path = identity[len("spiffe://"):].partition("/")[2]
            out.extend(f"spiffe://{domain}/{path}" for domain in domains)
    return sorted(set(out))


def istio_mutual_upstream(sni: str, identities: Iterable[str]) -> dict[str, Any]:
    """A sidecar's client side of mesh mTLS: SDS ``default`` cert, ``ROOTCA`` trust, SAN = the service's accounts.

    Args:
        sni: the cluster's ``outbound_.…`` name; AUTO_PASSTHROUGH gateways route on it.
        identities: the SPIFFE IDs the server may present (empty: any certificate ROOTCA trusts).
    """
    default_validation: dict[str, Any] = {}
    matchers = spiffe_san_matchers(identities)
    if matchers:
        default_validation["match_typed_subject_alt_names"] = matchers
    context = {
        "tls_params": tls_params(),
        "alpn_protocols": list(MTLS_ALPN),
        "tls_certificate_sds_secret_configs": [sds_secret(names.SDS_DEFAULT)],
        "combined_validation_context": {
            "default_validation_context": default_validation,
            "validation_context_sds_secret_config": sds_secret(names.SDS_ROOT),
        },
    }
    return typed("envoy.transport_sockets.tls", UPSTREAM_TLS, common_tls_context=context, sni=sni)


def istio_mutual_downstream(alpn: Iterable[str], trust_domains: Iterable[str]) -> dict[str, Any]:
    """A sidecar's or gateway's server side of mesh mTLS: a client certificate is required and must carry a
    SPIFFE ID of one of the mesh's trust domains.

    Args:
        alpn: protocols offered to the client.
        trust_domains: the trust domain and its aliases.
    """
    matchers = [{"san_type": "URI", "matcher": {"prefix": f"spiffe://{domain}/"}}
                for domain in dict.fromkeys(trust_domains)]
    context = {
        "tls_params": tls_params(),
        "alpn_protocols": list(alpn),
        "tls_certificate_sds_secret_configs": [sds_secret(names.SDS_DEFAULT)],
        "combined_validation_context": {
            "default_validation_context": {"match_typed_subject_alt_names": matchers},
            "validation_context_sds_secret_config": sds_secret(names.SDS_ROOT),
        },
    }
    return typed("envoy.transport_sockets.tls", DOWNSTREAM_TLS, common_tls_context=context,
                 require_client_certificate=True)


def access_log(path: str, *, listener: bool = False) -> list[dict[str, Any]]:
    """Istio's file access log; the listener-level one logs only ``NR`` (no filter chain / no route), which is how
    any gateway or sidecar listener shows ``filter_chain_not_found`` (an SNI no Gateway server names, a plaintext
    connection to a TLS-only chain): Envoy writes it when it closes a connection no filter chain matches.

    Args:
        path: ``meshConfig.accessLogFile``; empty turns logging off.
        listener: the listener-level variant.
    """
    if not path:
        return []
    entry = typed("envoy.access_loggers.file", FILE_ACCESS_LOG, path=path,
                  log_format={"text_format_source": {"inline_string": ACCESS_LOG_FORMAT}})
    if listener:
        entry["filter"] = {"response_flag_filter": {"flags": ["NR"]}}
    return [entry]


def metadata(**istio: Any) -> dict[str, Any]:
    return {"filter_metadata": {"istio": istio}}


def locality(value: str) -> dict[str, str]:
    """``region/zone/subzone`` as an Envoy Locality (empty parts left out)."""
    parts = locality_parts(value)
    return {key: part for key, part in zip(("region", "zone", "sub_zone"), parts, strict=True) if part}


def locality_parts(value: str) -> list[str]:
    """``region/zone/subzone`` → three strings, missing parts empty."""
    return [*value.split("/"), "", "", ""][:3] if value else ["", "", ""]
