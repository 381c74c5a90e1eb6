"""Endpoints and route tables folded into clusters and listeners keep every subscription but LDS/CDS/SDS away."""

from __future__ import annotations

import json

from labkit.emulator.mesh.model import ProxyConfig
from labkit.emulator.mesh.xds.inlining import inline_subscriptions

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
CLUSTER = "outbound|5000||helloworld.sample.svc.cluster.local"


def config() -> ProxyConfig:
    eds_cluster = {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": CLUSTER, "type": "EDS",
                   "eds_cluster_config": {"service_name": CLUSTER, "eds_config": {"path_config_source": {
                       "path": "{xds_dir}/eds.json"}}}, "lb_policy": "LEAST_REQUEST"}
    static = {"name": "BlackHoleCluster", "type": "STATIC"}
    listener = {"name": "127.0.0.5_15080", "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
        "@type": HCM, "stat_prefix": "x", "rds": {"route_config_name": "http_proxy", "config_source": {}}}}]}]}
    assignment = {"@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
                  "cluster_name": CLUSTER, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                      "socket_address": {"address": "127.1.1.5", "port_value": 5000}}}}]}]}
    table = {"@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "name": "http_proxy",
             "virtual_hosts": [{"name": "hw", "domains": ["helloworld:5000"], "routes": []}]}
    return ProxyConfig((listener,), (eds_cluster, static), (table,), (assignment,), version="3")


def test_clusters_carry_their_endpoints_and_listeners_their_routes() -> None:
    original = config()
    inlined = inline_subscriptions(original)
    assert inlined.endpoints == () and inlined.routes == ()
    cluster = inlined.clusters[0]
    assert cluster["type"] == "STATIC" and "eds_cluster_config" not in cluster
    assert cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"][
        "address"] == "127.1.1.5"
    assert "@type" not in cluster["load_assignment"]
    assert inlined.clusters[1] == original.clusters[1]
    hcm = inlined.listeners[0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert "rds" not in hcm and hcm["route_config"]["virtual_hosts"][0]["domains"] == ["helloworld:5000"]
    assert "{xds_dir}" not in json.dumps(inlined.listeners) + json.dumps(inlined.clusters)
    # The builders' output is left untouched.
    assert original.clusters[0]["type"] == "EDS" and "rds" in json.dumps(original.listeners)


def test_a_cluster_without_endpoints_is_drained_not_dropped() -> None:
    lonely = config()
    lonely = ProxyConfig(lonely.listeners, lonely.clusters, lonely.routes, (), version="4")
    cluster = inline_subscriptions(lonely).clusters[0]
    assert cluster["load_assignment"] == {"cluster_name": CLUSTER, "endpoints": []}
