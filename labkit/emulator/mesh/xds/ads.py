"""A proxy's configuration as ADS serves it: resources by type URL, then by name.

The builders already point every EDS, RDS and gateway-credential source at ADS and the workload's secrets at the
agent's ``sds-grpc`` socket (:func:`.names.config_source`), so nothing is rewritten or inlined here: clusters stay
``EDS``, listeners keep ``rds``, named as Istio names them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labkit.emulator.mesh.model import ProxyConfig
from labkit.emulator.mesh.xds import common


def ads_resources(config: ProxyConfig) -> dict[str, dict[str, Mapping[str, Any]]]:
    """type URL → name → resource, for every type a proxy subscribes to over ADS."""
    return {
        common.CLUSTER: {c["name"]: c for c in config.clusters},
        common.CLUSTER_LOAD_ASSIGNMENT: {e["cluster_name"]: e for e in config.endpoints},
        common.LISTENER: {listener["name"]: listener for listener in config.listeners},
        common.ROUTE_CONFIGURATION: {r["name"]: r for r in config.routes},
        common.SECRET: {s["name"]: s for s in config.secrets if s["name"].startswith("kubernetes://")},
    }
