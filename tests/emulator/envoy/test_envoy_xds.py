"""istiod's ADS to a real Envoy through its agent: live updates, ACK, NACK with Envoy's reason, draining, endpoints."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from envoy_kit import Agent, StandInIstiod, backend, get, pod_ips, run, running_agent, wait_ready

from labkit.emulator.envoy import admin
from labkit.emulator.mesh.model import ProxyConfig
from labkit.emulator.mesh.xds.names import config_source
from labkit.errors import XdsRejectedError
from labkit.istio import endpoint_table

pytestmark = pytest.mark.slow

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
CLA = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
A = "outbound|5000||helloworld-a.sample.svc.cluster.local"
B = "outbound|5000||helloworld-b.sample.svc.cluster.local"
PROXY_PORT = 15080


def eds_cluster(name: str, **extra: Any) -> dict[str, Any]:
    return {"@type": CLUSTER, "name": name, "type": "EDS", "connect_timeout": "1s",
            "eds_cluster_config": {"service_name": name, "eds_config": config_source("eds", name)}, **extra}


def endpoints(name: str, *addresses: tuple[str, int]) -> dict[str, Any]:
    lb_endpoints = [{"endpoint": {"address": {"socket_address": {"address": ip, "port_value": port}}}}
                    for ip, port in addresses]
    return {"@type": CLA, "cluster_name": name, "endpoints": [{"lb_endpoints": lb_endpoints}] if lb_endpoints else []}


def listener(ip: str) -> dict[str, Any]:
    hcm = {"@type": HCM, "stat_prefix": f"outbound_{ip}_{PROXY_PORT}",
           "rds": {"route_config_name": str(PROXY_PORT), "config_source": config_source("rds", str(PROXY_PORT))},
           "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}
    return {"@type": LISTENER, "name": f"{ip}_{PROXY_PORT}",
            "address": {"socket_address": {"address": ip, "port_value": PROXY_PORT}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": hcm}]}]}


def route(cluster: str, **vhost_extra: Any) -> dict[str, Any]:
    return {"@type": ROUTE, "name": str(PROXY_PORT), "virtual_hosts": [{
        "name": "helloworld", "domains": ["*"],
        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}], **vhost_extra}]}


@dataclass
class Mesh:
    agent: Agent
    backend_a: tuple[str, int]
    backend_b: tuple[str, int]

    def config(self, version: str, *, to: str = A, clusters: list[dict[str, Any]] | None = None,
               eds: list[dict[str, Any]] | None = None, routes: list[dict[str, Any]] | None = None) -> ProxyConfig:
        return ProxyConfig(
            listeners=(listener(self.agent.ip),),
            clusters=tuple(clusters if clusters is not None else [eds_cluster(A), eds_cluster(B)]),
            routes=tuple(routes if routes is not None else [route(to)]),
            endpoints=tuple(eds if eds is not None else [endpoints(A, self.backend_a), endpoints(B, self.backend_b)]),
            version=version)

    def push(self, config: ProxyConfig, timeout: float = 5.0) -> None:
        self.agent.istiod.push(self.agent.node_id, config, timeout)

    def call(self, path: str = "/hello") -> tuple[int, str]:
        return get(self.agent.ip, PROXY_PORT, path)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("xds")
    ip, ip_a, ip_b, ip_istiod = pod_ips(4)
    with contextlib.ExitStack() as stack:
        address_a = stack.enter_context(backend(ip_a, 5000, "helloworld-a"))
        address_b = stack.enter_context(backend(ip_b, 5000, "helloworld-b"))
        istiod = stack.enter_context(StandInIstiod(ip_istiod))
        agent = stack.enter_context(running_agent(tmp / "pod", ip, tmp / "istio-proxy.log", istiod=istiod))
        wait_ready(agent)
        yield Mesh(agent, address_a, address_b)


def test_envoy_xds_routes_then_reroutes_live(mesh: Mesh) -> None:
    mesh.push(mesh.config("1"))
    assert mesh.call() == (200, "helloworld-a /hello\n")
    envoy = mesh.agent.envoy_pid()
    connection = mesh.agent.istiod.connection(mesh.agent.node_id)
    assert connection is not None
    lds_version = connection.types[LISTENER].acked_version

    mesh.push(mesh.config("2", to=B))
    assert mesh.call() == (200, "helloworld-b /hello\n")
    assert mesh.agent.envoy_pid() == envoy  # no restart: the stream carried the change
    assert connection.types[LISTENER].acked_version == lds_version  # only what changed was sent
    dump = run(admin.config_dump(mesh.agent.admin))
    listeners = next(c for c in dump["configs"] if c["@type"].endswith("ListenersConfigDump"))
    assert listeners["version_info"] == lds_version  # the version Envoy shows back is the one it ACKed


def test_envoy_xds_rejected_cluster_names_envoys_reason_and_old_config_serves(mesh: Mesh) -> None:
    mesh.push(mesh.config("10"))
    bad = mesh.config("11", clusters=[eds_cluster(A), eds_cluster(B, connect_timeout="0s")])
    with pytest.raises(XdsRejectedError) as caught:
        mesh.push(bad)
    error = caught.value
    assert (error.kind, error.resource) == ("CDS", B)
    assert "ConnectTimeout: value must be greater than 0s" in error.reason
    assert "helloworld-v1-abc.sample" in str(error) and B in str(error)
    assert mesh.call() == (200, "helloworld-a /hello\n")

    two_wildcards = route(B)
    two_wildcards["virtual_hosts"].append({**two_wildcards["virtual_hosts"][0], "name": "again"})
    with pytest.raises(XdsRejectedError) as caught:
        mesh.push(mesh.config("12", routes=[two_wildcards]))
    assert (caught.value.kind, caught.value.resource) == ("RDS", "15080")
    assert "Only a single wildcard domain is permitted" in caught.value.reason
    assert mesh.call() == (200, "helloworld-a /hello\n")

    mesh.push(mesh.config("13", to=B))  # fixed: accepted again
    assert mesh.call() == (200, "helloworld-b /hello\n")


def test_envoy_xds_empty_endpoints_drain_the_cluster(mesh: Mesh) -> None:
    mesh.push(mesh.config("20"))
    assert mesh.call()[0] == 200
    mesh.push(mesh.config("21", eds=[endpoints(A), endpoints(B, mesh.backend_b)]))
    assert mesh.call() == (503, "no healthy upstream")
    mesh.push(mesh.config("22"))
    assert mesh.call()[0] == 200


def test_envoy_xds_endpoint_table_reads_real_clusters_json(mesh: Mesh) -> None:
    # labkit.istio's proxy-config table (what notebooks print, on real and embedded clusters alike), fed with a
    # real Envoy's /clusters?format=json.
    mesh.push(mesh.config("30"))
    clusters = run(admin.clusters_json(mesh.agent.admin))
    rows = {(r.endpoint, r.status, r.outlier_check, r.cluster) for r in endpoint_table(clusters).rows}
    ip_a, port_a = mesh.backend_a
    assert (f"{ip_a}:{port_a}", "HEALTHY", "OK", A) in rows
    only_b = endpoint_table(clusters, B).rows
    assert [(r.endpoint, r.status, r.outlier_check, r.cluster) for r in only_b] == [
        (f"{mesh.backend_b[0]}:5000", "HEALTHY", "OK", B)]
    table = str(endpoint_table(clusters, A))
    assert table.splitlines()[0].split() == ["ENDPOINT", "STATUS", "OUTLIER", "CHECK", "CLUSTER"]
    assert table.splitlines()[1].split() == [f"{ip_a}:{port_a}", "HEALTHY", "OK", A]
