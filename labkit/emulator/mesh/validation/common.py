"""Checks every Istio kind shares: ports, host names, labels, durations, ``exportTo``.

Each returns Istio's short error phrase (``port number 0 must be in the range 1..65535``) or ``None``;
the kind modules attach the field path and the fix.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from labkit.core.names import is_dns1123_label
from labkit.emulator.mesh.validation.shapes import Message, Problem, parse_go_duration

_WILDCARD_LABEL = re.compile(r"^(\*|\*?[a-z0-9]([-a-z0-9]*[a-z0-9])?)$")
_LABEL_KEY_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
PROTOCOLS = ("HTTP", "HTTPS", "HTTP2", "GRPC", "GRPC-WEB", "TCP", "TLS", "MONGO", "REDIS", "MYSQL", "UDP",
             "HTTP_PROXY")
PORT_RANGE_FIX = "use a port between 1 and 65535"


def port_error(port: Any) -> str | None:
    if isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535:
        return None
    return f"port number {port} must be in the range 1..65535"


def dns1123_labels_error(domain: str) -> str | None:
    parts = domain.split(".")
    if parts[-1].isdigit():
        return f'domain name "{domain}" invalid (top level domain "{parts[-1]}" cannot be all-numeric)'
    for index, label in enumerate(parts):
        if index == len(parts) - 1 and label == "":
            return None
        if not is_dns1123_label(label):
            return f'domain name "{domain}" invalid (label "{label}" invalid)'
    return None


def _preconditions(domain: str) -> str | None:
    if len(domain) > 255:
        return f"domain name {domain} too long (max 255)"
    if not domain:
        return "empty domain name not allowed"
    return None


def fqdn_error(domain: str) -> str | None:
    return _preconditions(domain) or dns1123_labels_error(domain)


def wildcard_domain_error(domain: str) -> str | None:
    """Istio's ``ValidateWildcardDomain``: DNS names, a ``*`` allowed only in the first label."""
    problem = _preconditions(domain)
    if problem:
        return problem
    first, dot, rest = domain.partition(".")
    if not _WILDCARD_LABEL.match(first):
        return f'domain name "{domain}" invalid (label "{first}" invalid)'
    return dns1123_labels_error(rest) if dot else None


def ip_error(address: str) -> str | None:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return f"{address} is not a valid IP"
    return None


def subnet_error(subnet: str) -> str | None:
    try:
        if "/" in subnet:
            ipaddress.ip_network(subnet, strict=False)
        else:
            ipaddress.ip_address(subnet)
    except ValueError:
        return f'"{subnet}" is not a valid CIDR block or IP address'
    return None


def labels_problems(labels: Mapping[str, Any] | None, path: str) -> list[Problem]:
    """Kubernetes label keys and values, as Istio's ``labels.Instance.Validate`` checks them."""
    problems = []
    for key, value in (labels or {}).items():
        prefix, _, name = str(key).rpartition("/")
        if not name or len(name) > 63 or not _LABEL_KEY_NAME.match(name) or (prefix and fqdn_error(prefix)):
            problems.append(Problem(f"{path}[{key}]", f'invalid tag key: "{key}"'))
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            problems.append(Problem(f"{path}[{key}]", f'invalid tag value: "{value}"'))
    return problems


def duration_problems(value: Any, path: str) -> list[Problem]:
    """Istio's ``ValidateDuration`` on a duration that decoded: at least 1 ms, millisecond precision."""
    if not isinstance(value, str):
        return []
    nanoseconds = parse_go_duration(value)
    if isinstance(nanoseconds, str):
        return []  # the shape check reports it
    if nanoseconds < 1_000_000:
        return [Problem(path, "duration must be greater than 1ms", f"got {value}")]
    if nanoseconds % 1_000_000:
        return [Problem(path, "only durations to ms precision are supported", f"got {value}")]
    return []


def export_to_problems(namespace: str, export_to: list[Any] | None, path: str, *,
                       service_entry: bool = False) -> list[Problem]:
    problems = []
    seen: set[str] = set()
    for entry in export_to or ():
        key = namespace if entry == "." else str(entry)
        if key in seen:
            problems.append(Problem(path, f"duplicate entries in exportTo for entry {entry}"))
            continue
        seen.add(key)
        if key not in ("*", "~") and not is_dns1123_label(key):
            problems.append(Problem(path, f"only . or * or ~ or a valid DNS 1123 label is allowed as exportTo "
                                          f"entry, found {entry!r}"))
        if key == "~" and not service_entry:
            problems.append(Problem(path, "exportTo ~ (no one) is only allowed for ServiceEntries"))
    if "*" in seen and len(export_to or ()) > 1:
        problems.append(Problem(path, "cannot have both public (*) and non-public exportTo values for a resource"))
    return problems


def check_nonempty_message(value: Any, shape: Message, path: str, phrase: str) -> list[Problem]:
    """Istio's "must have at least one field" rule for a message that was written but left empty."""
    if isinstance(value, dict) and not any(value.get(name) is not None for name in shape.fields):
        return [Problem(path, phrase)]
    return []
