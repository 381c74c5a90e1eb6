"""A proxy's configuration as ADS serves it: separate resources by type, config sources pointing at ADS.

The builders emit EDS, RDS and SDS config sources as file paths (``{xds_dir}/eds/<name>.json`` …, see
:mod:`.names`). Over gRPC, EDS and RDS come on the same ADS stream (``ads: {}``), and SDS from the agent's
socket through the bootstrap's ``sds-grpc`` cluster, as Istio's generated config says. Nothing is inlined:
clusters stay ``EDS`` and listeners keep ``rds``, named as Istio names them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labkit.emulator.mesh.model import ProxyConfig
from labkit.emulator.mesh.xds import common

SDS_CLUSTER = "sds-grpc"
ADS_SOURCE = {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}
SDS_SOURCE = {
    "api_config_source": {"api_type": "GRPC", "transport_api_version": "V3", "set_node_on_first_message_only": True,
                          "grpc_services": [{"envoy_grpc": {"cluster_name": SDS_CLUSTER}}]},
    "initial_fetch_timeout": "0s",
    "resource_api_version": "V3",
}


def _sources(value: Any) -> Any:
    if isinstance(value, Mapping):
        path = (value.get("path_config_source") or {}).get("path") if "path_config_source" in value else None
        if isinstance(path, str):
            return dict(SDS_SOURCE if "/sds/" in path else ADS_SOURCE)
        return {key: _sources(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_sources(item) for item in value]
    return value


def ads_resources(config: ProxyConfig) -> dict[str, dict[str, Mapping[str, Any]]]:
    """type URL → name → resource, with every config source on ADS (EDS, RDS) or the SDS socket (secrets)."""
    return {
        common.CLUSTER: {c["name"]: _sources(c) for c in config.clusters},
        common.CLUSTER_LOAD_ASSIGNMENT: {e["cluster_name"]: _sources(e) for e in config.endpoints},
        common.LISTENER: {listener["name"]: _sources(listener) for listener in config.listeners},
        common.ROUTE_CONFIGURATION: {r["name"]: _sources(r) for r in config.routes},
    }
