"""Envoy's own verdict on what the builders make, without a control plane: ``envoy --mode validate``.

EDS is folded into each cluster (``STATIC`` with its ClusterLoadAssignment), RDS into each HTTP connection
manager, and every SDS reference points at a static secret of the same name, so the secrets are checked too.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from labkit.emulator.envoy.binary import find_envoy
from labkit.emulator.mesh.model import ProxyConfig


def _static(value: Any) -> Any:
    """A copy where every SDS reference names a static secret (``{"name": …}`` without ``sds_config``)."""
    if isinstance(value, Mapping):
        if "sds_config" in value and "name" in value:
            return {"name": value["name"]}
        return {key: _static(item) for key, item in value.items() if key != "@type" or not isinstance(item, str)
                or not item.endswith((".Cluster", ".Listener", ".ClusterLoadAssignment", ".RouteConfiguration",
                                      ".Secret"))}
    if isinstance(value, list | tuple):
        return [_static(item) for item in value]
    return value


def envoy_validate(config: ProxyConfig, folder: Path) -> None:
    """Fail the test with Envoy's words unless Envoy accepts every resource of ``config``."""
    assignments = {e["cluster_name"]: e for e in config.endpoints}
    routes = {r["name"]: r for r in config.routes}
    clusters = []
    for cluster in map(_static, config.clusters):
        if cluster["type"] == "EDS":
            cluster.update(type="STATIC", load_assignment=_static(
                assignments[cluster.pop("eds_cluster_config")["service_name"]]))
        clusters.append(cluster)
    listeners = []
    for listener in map(_static, config.listeners):
        for chain in listener["filter_chains"]:
            for typed in (f["typed_config"] for f in chain["filters"]):
                if "rds" in typed:
                    typed["route_config"] = _static(routes[typed.pop("rds")["route_config_name"]])
        listeners.append(listener)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bootstrap.json"
    path.write_text(json.dumps({"node": {"id": "validate", "cluster": "validate"},
                                "static_resources": {"listeners": listeners, "clusters": clusters,
                                                     "secrets": _static(list(config.secrets))}}))
    result = subprocess.run([str(find_envoy().path), "--mode", "validate", "-c", str(path),
                             "--reject-unknown-dynamic-fields", "--disable-hot-restart", "-l", "error"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
