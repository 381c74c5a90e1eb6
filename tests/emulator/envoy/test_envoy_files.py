"""The xDS file contract without Envoy: layout, references, order, change detection, guards, rejections, bootstrap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labkit.emulator.envoy import files
from labkit.emulator.envoy.bootstrap import bootstrap, node_id
from labkit.emulator.envoy.files import (
    CDS,
    EDS,
    LDS,
    RDS,
    SDS,
    Rejection,
    XdsWriter,
    config_source,
    read_rejections,
    record_rejections,
    resource_file,
    stat_name,
    subscription_file,
    xds_dir,
)
from labkit.emulator.mesh.model import ProxyConfig
from labkit.errors import XdsInconsistentError

A = "outbound|5000||helloworld.sample.svc.cluster.local"
SECRET = "kubernetes://default"


def cluster(name: str = A, **extra: Any) -> dict[str, Any]:
    tls = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": {"tls_certificate_sds_secret_configs": [
            {"name": SECRET, "sds_config": config_source(SDS)}]}}}
    return {"@type": files.TYPE_URLS[CDS], "name": name, "type": "EDS", "transport_socket": tls,
            "eds_cluster_config": {"service_name": name, "eds_config": config_source(EDS)}, **extra}


def listener(route: str = "5000", log: str = "{xds_dir}/access.log") -> dict[str, Any]:
    return {"@type": files.TYPE_URLS[LDS], "name": "0.0.0.0_5000", "filter_chains": [{"filters": [{
        "name": "hcm", "typed_config": {"stat_prefix": "outbound_0.0.0.0_5000", "access_log_path": log,
                                        "rds": {"route_config_name": route, "config_source": config_source(RDS)}}}]}]}


def config(version: str = "1", **overrides: Any) -> ProxyConfig:
    parts: dict[str, Any] = {
        "listeners": (listener(),), "clusters": (cluster(),),
        "routes": ({"@type": files.TYPE_URLS[RDS], "name": "5000", "virtual_hosts": []},),
        "endpoints": ({"@type": files.TYPE_URLS[EDS], "cluster_name": A, "endpoints": []},),
        "secrets": ({"@type": files.TYPE_URLS[SDS], "name": SECRET},),
    }
    parts.update(overrides)
    return ProxyConfig(version=version, **parts)


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def test_envoy_files_layout_is_one_file_per_eds_rds_sds_resource(tmp_path: Path) -> None:
    directory = xds_dir(tmp_path, "0b6e2f3c-uid")
    assert directory == tmp_path / "0b6e2f3c-uid"
    assert resource_file(directory, LDS) == directory / "lds.json"
    assert resource_file(directory, EDS, A) == directory / "eds" / f"{A}.json"
    assert resource_file(directory, SDS, SECRET) == directory / "sds" / "kubernetes%3A%2F%2Fdefault.json"
    assert stat_name(SECRET) == "kubernetes_default"


def test_envoy_files_references_point_at_each_resources_file(tmp_path: Path) -> None:
    writer = XdsWriter(tmp_path)
    published = writer.publish(config())
    cds = load(tmp_path / "cds.json")["resources"][0]
    assert cds["eds_cluster_config"]["eds_config"]["path_config_source"]["path"] == str(tmp_path / "eds" / f"{A}.json")
    sds = cds["transport_socket"]["typed_config"]["common_tls_context"]["tls_certificate_sds_secret_configs"][0]
    assert sds["sds_config"]["path_config_source"]["path"] == str(resource_file(tmp_path, SDS, SECRET))
    hcm = load(tmp_path / "lds.json")["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["rds"]["config_source"]["path_config_source"]["path"] == str(tmp_path / "rds" / "5000.json")
    assert hcm["access_log_path"] == f"{tmp_path}/access.log"  # any other {xds_dir} is substituted
    assert {w.label: w.subscriptions for w in published.written} == {
        f"SDS {SECRET}": (("sds.kubernetes_default",),),
        f"EDS {A}": ((f"cluster.{A}",),),
        "CDS": (("cluster_manager.cds",),),
        "RDS 5000": (("http.outbound_0.0.0.0_5000.rds.5000",),),
        "LDS": (("listener_manager.lds",),),
    }
    assert "{xds_dir}" not in "".join(p.read_text() for p in tmp_path.rglob("*.json"))


def test_envoy_files_written_in_dependency_order_and_atomically(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    real = files.write_atomic

    def spy(path: Path, data: bytes) -> None:
        order.append(path.relative_to(tmp_path).parts[0])
        real(path, data)

    monkeypatch.setattr(files, "write_atomic", spy)
    XdsWriter(tmp_path).publish(config())
    assert order == ["sds", "eds", "cds.json", "rds", "lds.json"]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_envoy_files_only_changes_are_written_with_content_unique_versions(tmp_path: Path) -> None:
    writer = XdsWriter(tmp_path)
    first = writer.publish(config("1"))
    assert len(first.written) == 5
    assert writer.publish(config("2")).written == ()
    assert XdsWriter(tmp_path).publish(config("3")).written == ()  # a new writer learns what is on disk
    moved = config("4", endpoints=({"@type": files.TYPE_URLS[EDS], "cluster_name": A,
                                    "endpoints": [{"lb_endpoints": []}]},))
    second = writer.publish(moved)
    assert [w.label for w in second.written] == [f"EDS {A}"]
    assert second.written[0].version.startswith("4/")
    assert second.written[0].version != first.written[1].version
    assert load(second.written[0].path)["version_info"] == second.written[0].version


def test_envoy_files_removed_resources_lose_their_files(tmp_path: Path) -> None:
    writer = XdsWriter(tmp_path)
    writer.publish(config())
    other = "outbound|80||other.sample.svc.cluster.local"
    published = writer.publish(config("2", clusters=(cluster(other),), endpoints=()))
    assert published.removed == (resource_file(tmp_path, EDS, A),)
    assert load(resource_file(tmp_path, EDS, other))["resources"] == [
        {"@type": files.TYPE_URLS[EDS], "cluster_name": other, "endpoints": []}]


def test_envoy_files_eds_is_never_an_empty_resource_list(tmp_path: Path) -> None:
    XdsWriter(tmp_path).publish(config(endpoints=()))
    document = load(resource_file(tmp_path, EDS, A))
    assert document["resources"] == [{"@type": files.TYPE_URLS[EDS], "cluster_name": A, "endpoints": []}]


def test_envoy_files_inconsistent_configs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(XdsInconsistentError, match="route configs it does not contain: 8080"):
        XdsWriter(tmp_path).publish(config(listeners=(listener("8080"),)))
    with pytest.raises(XdsInconsistentError, match="secrets it does not contain: kubernetes://default"):
        XdsWriter(tmp_path).publish(config(secrets=()))
    with pytest.raises(XdsInconsistentError, match="appear more than once"):
        XdsWriter(tmp_path).publish(config(clusters=(cluster(), cluster())))
    with pytest.raises(XdsInconsistentError, match="without a name"):
        XdsWriter(tmp_path).publish(config(routes=({"virtual_hosts": []},)))
    assert not (tmp_path / "lds.json").exists()  # nothing was written


def test_envoy_files_rejections_round_trip_and_map_to_files(tmp_path: Path) -> None:
    XdsWriter(tmp_path).publish(config())
    assert subscription_file(tmp_path, "cluster_manager.cds") == (CDS, "", tmp_path / "cds.json")
    assert subscription_file(tmp_path, f"cluster.{A}") == (EDS, A, resource_file(tmp_path, EDS, A))
    assert subscription_file(tmp_path, "http.outbound_0.0.0.0_5000.rds.5000") == (
        RDS, "5000", resource_file(tmp_path, RDS, "5000"))
    assert subscription_file(tmp_path, "sds.kubernetes_default") == (
        SDS, SECRET, resource_file(tmp_path, SDS, SECRET))
    assert read_rejections(tmp_path) == {"latest": {}, "subscriptions": {}}
    first = Rejection(CDS, "", "cluster_manager.cds", "1/ab", "bad", 1.0)
    second = Rejection(EDS, A, f"cluster.{A}", "2/cd", "worse", 2.0)
    record_rejections(tmp_path, [first])
    record_rejections(tmp_path, [second])
    recorded = read_rejections(tmp_path)
    assert recorded["latest"] == {CDS: first, EDS: second}
    assert recorded["subscriptions"][f"cluster.{A}"] == second


def test_envoy_files_bootstrap_binds_the_pod_ip_and_serves_readiness_from_admin(tmp_path: Path) -> None:
    ip = "127.150.1.7"
    config = bootstrap(node_id=node_id("router", ip, "gw-1", "istio-system"), cluster="gw.istio-system",
                       metadata={"NETWORK": "network1"}, admin_address=(ip, 15000), xds_dir=tmp_path,
                       status_address=(ip, 15021), access_log=False)
    assert config["node"] == {"id": f"router~{ip}~gw-1.istio-system~istio-system.svc.cluster.local",
                              "cluster": "gw.istio-system", "metadata": {"NETWORK": "network1"}}
    assert config["admin"] == {"address": {"socket_address": {"address": ip, "port_value": 15000}}}
    assert config["dynamic_resources"]["lds_config"]["path_config_source"]["path"] == str(tmp_path / "lds.json")
    status = config["static_resources"]["listeners"][0]
    assert status["address"]["socket_address"] == {"address": ip, "port_value": 15021}
    hcm = status["filter_chains"][0]["filters"][0]["typed_config"]
    [ready] = hcm["route_config"]["virtual_hosts"][0]["routes"]
    assert ready["match"] == {"path": "/healthz/ready"}
    assert (ready["route"]["cluster"], ready["route"]["prefix_rewrite"]) == ("agent", "/ready")
    without = bootstrap(node_id="n", cluster="c", metadata={}, admin_address=(ip, 15000), xds_dir=tmp_path,
                        status_address=None, access_log=True)
    assert without["static_resources"] == {"listeners": [], "clusters": []}
    assert without["admin"]["access_log"][0]["typed_config"]["path"] == "/dev/stdout"
