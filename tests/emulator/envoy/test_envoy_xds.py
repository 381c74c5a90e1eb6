"""Publishing filesystem xDS to a real Envoy: live updates, ACK, NACK with Envoy's reason, draining, endpoints."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from envoy_kit import Agent, backend, get, pod_ips, run, running_agent, wait_ready

from labkit.emulator.envoy import admin
from labkit.emulator.envoy.files import EDS, RDS, XdsWriter, config_source, read_rejections
from labkit.emulator.mesh.model import ProxyConfig
from labkit.errors import XdsRejectedError, XdsTimeoutError
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
            "eds_cluster_config": {"service_name": name, "eds_config": config_source(EDS)}, **extra}


def endpoints(name: str, *addresses: tuple[str, int]) -> dict[str, Any]:
    lb_endpoints = [{"endpoint": {"address": {"socket_address": {"address": ip, "port_value": port}}}}
                    for ip, port in addresses]
    return {"@type": CLA, "cluster_name": name, "endpoints": [{"lb_endpoints": lb_endpoints}] if lb_endpoints else []}


def listener(ip: str) -> dict[str, Any]:
    hcm = {"@type": HCM, "stat_prefix": f"outbound_{ip}_{PROXY_PORT}",
           "rds": {"route_config_name": str(PROXY_PORT), "config_source": config_source(RDS)},
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
    writer: XdsWriter
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

    def push(self, config: ProxyConfig, timeout: float = 3.0) -> None:
        run(admin.confirm(self.agent.admin, self.agent.directory, self.writer.publish(config), timeout))

    def call(self, path: str = "/hello") -> tuple[int, str]:
        return get(self.agent.ip, PROXY_PORT, path)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("xds")
    ip, ip_a, ip_b = pod_ips(3)
    with contextlib.ExitStack() as stack:
        address_a = stack.enter_context(backend(ip_a, 5000, "helloworld-a"))
        address_b = stack.enter_context(backend(ip_b, 5000, "helloworld-b"))
        agent = stack.enter_context(running_agent(tmp / "xds", ip, tmp / "istio-proxy.log"))
        wait_ready(agent)
        yield Mesh(agent, XdsWriter(agent.directory), address_a, address_b)


def test_envoy_xds_routes_then_reroutes_live(mesh: Mesh) -> None:
    published = mesh.writer.publish(mesh.config("1"))
    assert [w.kind for w in published.written] == ["EDS", "EDS", "CDS", "RDS", "LDS"]
    run(admin.confirm(mesh.agent.admin, mesh.agent.directory, published, 3.0))
    assert mesh.call() == (200, "helloworld-a /hello\n")
    envoy = mesh.agent.envoy_pid()
    lds_version = published.written[-1].version

    published = mesh.writer.publish(mesh.config("2", to=B))
    assert [w.label for w in published.written] == ["RDS 15080"]  # only what changed is written
    run(admin.confirm(mesh.agent.admin, mesh.agent.directory, published, 3.0))
    assert mesh.call() == (200, "helloworld-b /hello\n")
    assert mesh.agent.envoy_pid() == envoy
    dump = run(admin.config_dump(mesh.agent.admin))
    listeners = next(c for c in dump["configs"] if c["@type"].endswith("ListenersConfigDump"))
    assert listeners["version_info"] == lds_version  # version_info is what Envoy shows back, per file
    assert mesh.writer.publish(mesh.config("3", to=B)).written == ()


def test_envoy_xds_rejected_cluster_names_envoys_reason_and_old_config_serves(mesh: Mesh) -> None:
    mesh.push(mesh.config("10"))
    bad = mesh.config("11", clusters=[eds_cluster(A), eds_cluster(B, lb_policy="NOT_A_POLICY")])
    with pytest.raises(XdsRejectedError) as caught:
        mesh.push(bad)
    error = caught.value
    assert (error.kind, error.resource) == ("CDS", B)
    assert "unknown enum value: 'NOT_A_POLICY'" in error.reason
    assert "helloworld-v1-abc.sample" in str(error) and B in str(error)
    assert mesh.call() == (200, "helloworld-a /hello\n")
    assert read_rejections(mesh.agent.directory)["latest"]["CDS"].reason == error.reason

    with pytest.raises(XdsRejectedError) as caught:
        mesh.push(mesh.config("12", routes=[route(B, bogus_field=1)]))
    assert (caught.value.kind, caught.value.resource) == ("RDS", "15080")
    assert "no such field: 'bogus_field'" in caught.value.reason
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
    # No ClusterLoadAssignment at all: the writer still writes one with no endpoints, never `resources: []`.
    published = mesh.writer.publish(mesh.config("23", eds=[endpoints(B, mesh.backend_b)]))
    eds_file = next(w for w in published.written if w.kind == EDS and w.name == A).path
    assert json.loads(eds_file.read_text())["resources"] == [{"@type": CLA, "cluster_name": A, "endpoints": []}]
    run(admin.confirm(mesh.agent.admin, mesh.agent.directory, published, 3.0))
    assert mesh.call() == (503, "no healthy upstream")


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


def test_envoy_xds_confirm_times_out_without_envoy(tmp_path: Path) -> None:
    writer = XdsWriter(tmp_path / "cluster1" / "sample" / "gone")
    published = writer.publish(ProxyConfig(listeners=(), clusters=(eds_cluster(A),), routes=(), endpoints=()))
    with pytest.raises(XdsTimeoutError, match=r"did not apply CDS, EDS outbound.*does not answer"):
        run(admin.confirm((pod_ips(1)[0], 15000), writer.directory, published, 0.2))
