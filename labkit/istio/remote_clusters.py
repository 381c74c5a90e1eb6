"""``istioctl remote-clusters``: which clusters each istiod watches, and whether it keeps up.

The contract, on both backends:

- **Source.** istiod's debug endpoint ``GET /debug/clusterz`` (monitoring port 15014) answers a JSON list,
  one entry per cluster that istiod's multicluster controller knows, its own cluster included::

      [{"ID": "cluster1", "SecretName": "", "SyncStatus": "synced"},
       {"ID": "cluster2", "SecretName": "istio-system/istio-remote-secret-cluster2", "SyncStatus": "synced"}]

  ``SyncStatus`` is ``synced`` (informers caught up), ``syncing`` (still listing) or ``timeout`` (the remote
  API server was not reachable in time: a wrong server URL in the remote secret, istio.md mistake 2).
  Unknown keys are ignored; a missing ``SecretName`` means the local cluster.
- **Embedded clusters.** labkit execs ``pilot-discovery request GET /debug/clusterz`` in the ``discovery``
  container of each running istiod pod (``app=istiod`` in istio-system); the emulated istiod provides that
  command and prints the JSON above on stdout, exit code 0.
- **Real clusters.** labkit runs ``istioctl remote-clusters --context <ctx>`` and parses its table
  (``NAME  SECRET  STATUS  ISTIOD``; SECRET is blank for the local cluster).

Both give :class:`RemoteCluster` rows printed as istioctl prints them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from labkit import kube
from labkit.errors import LabkitError
from labkit.istio.asking import istioctl, istiod_debug
from labkit.istio.operator import ISTIO_NAMESPACE

HEADER = ("NAME", "SECRET", "STATUS", "ISTIOD")


@dataclass(frozen=True)
class RemoteCluster:
    """One row of ``istioctl remote-clusters``.

    Args:
        name: the cluster ID.
        secret: ``namespace/name`` of its remote secret (empty for istiod's own cluster).
        status: ``synced``, ``syncing`` or ``timeout``.
        istiod: the istiod pod that reported it.
    """

    name: str
    secret: str
    status: str
    istiod: str


def parse_clusterz(text: str, istiod: str) -> list[RemoteCluster]:
    """Rows from the JSON of ``/debug/clusterz``.

    Args:
        text: the endpoint's body.
        istiod: the pod that answered.

    Raises:
        LabkitError: the body is not the JSON list described in the module docstring.
    """
    try:
        entries = json.loads(text)
    except ValueError as exc:
        raise LabkitError(f"istiod {istiod} answered /debug/clusterz with something that is not JSON: "
                          f"{text[:200]!r}") from exc
    if not isinstance(entries, list):
        raise LabkitError(f"istiod {istiod} answered /debug/clusterz with {type(entries).__name__}, expected a list")
    return [RemoteCluster(str(e.get("ID", "")), str(e.get("SecretName") or ""), str(e.get("SyncStatus", "")),
                          istiod) for e in entries if isinstance(e, dict)]


def parse_istioctl(text: str) -> list[RemoteCluster]:
    """Rows from ``istioctl remote-clusters`` output (SECRET is blank for the local cluster)."""
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or tuple(fields) == HEADER:
            continue
        if len(fields) == 4:
            rows.append(RemoteCluster(*fields))
        elif len(fields) == 3:
            rows.append(RemoteCluster(fields[0], "", fields[1], fields[2]))
    return rows


def format_table(rows: list[RemoteCluster]) -> str:
    """Rows as istioctl prints them: left-aligned columns, three spaces apart."""
    cells = [HEADER, *((r.name, r.secret, r.status, r.istiod) for r in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER))]
    return "\n".join("   ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


def remote_clusters(context: kube.ContextRef, *, namespace: str = ISTIO_NAMESPACE,
                    quiet: bool = False) -> list[RemoteCluster]:
    """The clusters each istiod of ``context`` watches, printed like ``istioctl remote-clusters``.

    Args:
        context: the kubeconfig context (a name, or a :class:`~labkit.kube.Context` with its kubeconfig).
        namespace: the Istio namespace.
        quiet: return the rows without printing them.

    Raises:
        LabkitError: no running istiod, or its debug request failed, on an embedded cluster; istioctl failed.
        KubeApiError: the API server refused the exec.
        ToolNotFoundError: istioctl missing on a real cluster.
    """
    if kube.is_embedded(context):
        answers = istiod_debug(context, namespace, "/debug/clusterz")
        rows = [row for pod, body in answers for row in parse_clusterz(body, pod)]
    else:
        rows = parse_istioctl(istioctl(context, namespace, "remote-clusters"))
    if not quiet:
        print(format_table(rows))
    return rows
