"""``istioctl proxy-config endpoints``: the endpoints a proxy's Envoy knows, read from Envoy itself.

The table is where seed 001's lesson shows: one local pod endpoint (``10.42.0.16:5000``) next to the
remote clusters' east-west gateways (``…:15443``) for the same ``outbound|5000||helloworld…`` cluster.

Like istioctl, labkit asks the proxy's Envoy admin ``/clusters?format=json`` through
``pilot-agent request GET clusters?format=json`` in the ``istio-proxy`` container; the command exists on
real sidecars and the embedded node provides it, so this module has no backend branch. The parsing is
kept here, small and independent: labkit.istio must not import the emulator, and the rows are those of
Envoy's admin API (``host_statuses[].address.socket_address``, ``health_status.eds_health_status``,
``health_status.failed_outlier_check``), not of any labkit structure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from labkit import kube
from labkit.errors import LabkitError

CLUSTERS_COMMAND = ["pilot-agent", "request", "GET", "clusters?format=json"]
COLUMNS = ("ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER")


@dataclass(frozen=True)
class EndpointRow:
    """One endpoint of one Envoy cluster.

    Args:
        endpoint: ``address:port`` (or ``unix://path``).
        status: Envoy's EDS health status (``HEALTHY``, ``UNHEALTHY``, ``DRAINING`` …).
        outlier_check: ``OK``, or ``FAILED`` when outlier detection ejected it.
        cluster: the Envoy cluster name, e.g. ``outbound|5000||helloworld.sample.svc.cluster.local``.
        weight: its load-balancing weight (remote gateways carry the number of endpoints behind them).
    """

    endpoint: str
    status: str
    outlier_check: str
    cluster: str
    weight: int = 1


@dataclass(frozen=True)
class EndpointTable:
    """The rows of ``istioctl proxy-config endpoints``; prints as istioctl does, converts to a DataFrame.

    Args:
        rows: the endpoints, sorted by cluster then endpoint.
        proxy: the pod the table was read from (``sleep-…\u200b.sample``), empty when parsed offline.
    """

    rows: tuple[EndpointRow, ...]
    proxy: str = ""

    def __str__(self) -> str:
        cells = [COLUMNS, *((r.endpoint, r.status, r.outlier_check, r.cluster) for r in self.rows)]
        widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
        return "\n".join("     ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells)

    def __len__(self) -> int:
        return len(self.rows)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    def to_frame(self) -> pd.DataFrame:
        """The rows as a DataFrame with istioctl's column names plus ``WEIGHT``."""
        return pd.DataFrame([(r.endpoint, r.status, r.outlier_check, r.cluster, r.weight) for r in self.rows],
                            columns=[*COLUMNS, "WEIGHT"])


def endpoint_rows(clusters_json: str | dict[str, Any], cluster: str | None = None) -> tuple[EndpointRow, ...]:
    """Rows from Envoy's ``/clusters?format=json``, optionally for one cluster only.

    Args:
        clusters_json: the admin endpoint's body (text or parsed).
        cluster: keep only this Envoy cluster (``--cluster`` of istioctl).

    Raises:
        LabkitError: the body is not Envoy's clusters JSON.
    """
    try:
        body = json.loads(clusters_json) if isinstance(clusters_json, str) else clusters_json
    except ValueError as exc:
        raise LabkitError(f"Envoy's /clusters answer is not JSON: {str(clusters_json)[:200]!r}") from exc
    if not isinstance(body, dict):
        raise LabkitError("Envoy's /clusters answer is not a JSON object with cluster_statuses")
    rows = []
    for status in body.get("cluster_statuses") or []:
        name = status.get("name", "")
        if cluster is not None and name != cluster:
            continue
        for host in status.get("host_statuses") or []:
            health = host.get("health_status") or {}
            rows.append(EndpointRow(_address(host.get("address") or {}), health.get("eds_health_status", "UNKNOWN"),
                                    "FAILED" if health.get("failed_outlier_check") else "OK", name,
                                    int(host.get("weight", 1))))
    return tuple(sorted(rows, key=lambda r: (r.cluster, r.endpoint)))


def endpoint_table(clusters_json: str | dict[str, Any], cluster: str | None = None, proxy: str = "") -> EndpointTable:
    """:func:`endpoint_rows` as an :class:`EndpointTable`."""
    return EndpointTable(endpoint_rows(clusters_json, cluster), proxy)


def parse_proxy(target: str, namespace: str | None = None) -> tuple[str, str]:
    """istioctl's ``deploy/sleep.sample`` or ``sleep-abc.sample`` → (``deploy/sleep``, ``sample``).

    Args:
        target: the proxy as istioctl takes it.
        namespace: the namespace when the target names none (``default`` otherwise).
    """
    kind, slash, rest = target.rpartition("/")
    name, dot, ns = rest.partition(".")
    return (f"{kind}{slash}{name}", ns if dot else (namespace or "default"))


def proxy_endpoints(
    context: kube.ContextRef,
    proxy: str,
    cluster: str | None = None,
    *,
    namespace: str | None = None,
    timeout: float = 30.0,
) -> EndpointTable:
    """The endpoints a proxy's Envoy knows, like ``istioctl proxy-config endpoints <proxy> --cluster …``.

    Args:
        context: the kubeconfig context (a name, or a :class:`~labkit.kube.Context` with its kubeconfig).
        proxy: ``deploy/sleep.sample``, ``sleep-abc.sample``, or a name with ``namespace``.
        cluster: show only this Envoy cluster, e.g. ``outbound|5000||helloworld.sample.svc.cluster.local``.
        namespace: the namespace when ``proxy`` has no ``.namespace`` suffix.
        timeout: seconds for the exec.

    Raises:
        KubeApiError: the pod is missing or has no ``istio-proxy`` container (not injected?).
        LabkitError: the proxy's admin answer is not Envoy's clusters JSON.
    """
    target, ns = parse_proxy(proxy, namespace)
    result = kube.exec_(context, ns, target, CLUSTERS_COMMAND, container="istio-proxy", timeout=timeout)
    if result.exit_code != 0:
        raise LabkitError(f"{' '.join(CLUSTERS_COMMAND)} in {ns}/{result.pod} on {context} exited with "
                          f"{result.exit_code}: {result.stderr.strip() or result.stdout.strip()}; is the pod injected "
                          f"(kubectl get pod -n {ns} {result.pod} shows 2/2)?")
    return endpoint_table(result.stdout, cluster, f"{result.pod}.{ns}")


def _address(address: dict[str, Any]) -> str:
    socket = address.get("socket_address")
    if socket:
        return f"{socket.get('address', '')}:{socket.get('port_value', 0)}"
    pipe = address.get("pipe")
    if pipe:
        return f"unix://{pipe.get('path', '')}"
    internal = address.get("envoy_internal_address")
    if internal:
        return f"envoy://{internal.get('server_listener_name', '')}/{internal.get('endpoint_id', '')}"
    return ""
