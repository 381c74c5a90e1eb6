"""``istioctl proxy-config endpoints`` from Envoy's ``/clusters?format=json``, column for column.

Pure on purpose: the client side runs it on real clusters' admin output (fetched with ``pilot-agent
request GET clusters?format=json``), the emulator on its own Envoys', and both must print what
istioctl prints. The rules are istioctl's (``istioctl/pkg/writer/envoy/clusters``): STATUS is the
host's ``eds_health_status`` (``UNKNOWN`` when Envoy leaves it out), OUTLIER CHECK is ``FAILED`` when
``failed_outlier_check`` is set, rows are sorted by address, port, cluster, and the table is Go's
``tabwriter`` with padding 5.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

HEADER = ("ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER")
PADDING = 5  # tabwriter.NewWriter(out, 0, 8, 5, ' ', 0)

Row = tuple[str, str, str, str]


def _address(host: Mapping[str, Any]) -> tuple[str, int]:
    address = host.get("address") or {}
    socket = address.get("socket_address")
    if socket is not None:
        return str(socket.get("address", "")), int(socket.get("port_value") or 0)
    return "unix://" + str((address.get("pipe") or {}).get("path", "")), 0


def endpoint_table(clusters_json: Mapping[str, Any], cluster_filter: str | None = None, *,
                   address: str | None = None, port: int | None = None, status: str | None = None) -> list[Row]:
    """Rows ``(ENDPOINT, STATUS, OUTLIER CHECK, CLUSTER)`` as ``istioctl proxy-config endpoints`` prints them.

    Args:
        clusters_json: Envoy's ``/clusters?format=json`` document.
        cluster_filter: ``--cluster``: only this cluster (case-insensitive, as istioctl).
        address: ``--address``: only endpoints with this address.
        port: ``--port``: only endpoints with this port.
        status: ``--status``: only endpoints with this health status (``healthy``, ``unhealthy`` …).
    """
    found: list[tuple[str, int, str, str, bool]] = []
    for cluster in clusters_json.get("cluster_statuses") or []:
        name = str(cluster.get("name", ""))
        if cluster_filter and name.lower() != cluster_filter.lower():
            continue
        for host in cluster.get("host_statuses") or []:
            host_address, host_port = _address(host)
            health = host.get("health_status") or {}
            health_status = str(health.get("eds_health_status") or "UNKNOWN")
            if address and host_address.lower() != address.lower():
                continue
            if port and host_port != port:
                continue
            if status and health_status.lower() != status.lower():
                continue
            found.append((host_address, host_port, name, health_status, bool(health.get("failed_outlier_check"))))
    found.sort(key=lambda item: (item[0], item[1], item[2]))
    return [(f"{a}:{p}" if p else a, health, "FAILED" if failed else "OK", name)
            for a, p, name, health, failed in found]


def format_table(rows: Iterable[Sequence[str]], header: Sequence[str] = HEADER) -> str:
    """The rows under ``header`` laid out as Go's ``tabwriter`` (padding 5, the last column unpadded)."""
    lines = [tuple(header), *(tuple(row) for row in rows)]
    columns = max(len(line) for line in lines)
    widths = [max((len(line[i]) for line in lines if i < len(line) - 1), default=0) for i in range(columns)]
    out = []
    for line in lines:
        cells = [cell.ljust(widths[i] + PADDING) for i, cell in enumerate(line[:-1])]
        out.append("".join(cells) + line[-1])
    return "".join(f"{line}\n" for line in out)
