"""Fold EDS into CDS and RDS into LDS before publishing: what filesystem xDS can afford.

Every filesystem subscription costs Envoy one inotify instance, and Linux allows 128 per user by
default: with one subscription per cluster (EDS) and per route table (RDS), a sidecar needs ~20 and a
lab of ten proxies runs out (Envoy aborts with ``inotify_fd_ >= 0``). So each cluster carries its
``ClusterLoadAssignment`` inline (``type: STATIC``) and each HTTP connection manager its route table
inline; only LDS, CDS and the SDS secrets (``default``, ``ROOTCA`` …) stay subscriptions — four
instances per proxy. The builders still produce Istio's separate resources (and their consistency is
checked before this step), so a gRPC ADS transport could publish them unchanged.

The price: an endpoint change replaces its cluster (connection pools drain gracefully) instead of
updating it in place, and ``config_dump`` shows STATIC clusters where istiod would show EDS ones.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from labkit.emulator.mesh.model import ProxyConfig

_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"


def inline_subscriptions(config: ProxyConfig) -> ProxyConfig:
    """The same configuration with endpoints inside clusters and route tables inside listeners."""
    assignments = {a["cluster_name"]: a for a in config.endpoints}
    routes = {r["name"]: r for r in config.routes}
    clusters = tuple(_inline_cluster(c, assignments) for c in config.clusters)
    listeners = tuple(_walk(copy.deepcopy(dict(listener)), routes) for listener in config.listeners)
    return replace(config, clusters=clusters, listeners=listeners, endpoints=(), routes=())


def _inline_cluster(cluster: Mapping[str, Any], assignments: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any]:
    if cluster.get("type") != "EDS":
        return cluster
    inlined = copy.deepcopy(dict(cluster))
    eds = inlined.pop("eds_cluster_config", {}) or {}
    name = eds.get("service_name") or inlined["name"]
    assignment = copy.deepcopy(dict(assignments.get(name) or {"cluster_name": name, "endpoints": []}))
    assignment.pop("@type", None)
    inlined["type"] = "STATIC"
    inlined["load_assignment"] = assignment
    return inlined


def _walk(node: Any, routes: Mapping[str, Mapping[str, Any]]) -> Any:
    if isinstance(node, dict):
        if node.get("@type") == _HCM and "rds" in node:
            name = node.pop("rds")["route_config_name"]
            table = copy.deepcopy(dict(routes.get(name) or {"name": name}))
            table.pop("@type", None)
            node["route_config"] = table
        for key, value in node.items():
            node[key] = _walk(value, routes)
        return node
    if isinstance(node, list):
        return [_walk(item, routes) for item in node]
    return node
