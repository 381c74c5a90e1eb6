"""``istioctl proxy-config endpoints`` from ``/clusters?format=json``: golden input, istioctl's exact layout."""

from __future__ import annotations

from typing import Any

from labkit.emulator.envoy.tables import endpoint_table, format_table

HW = "outbound|5000||helloworld.sample.svc.cluster.local"


def host(address: str, port: int, health: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"address": {"socket_address": {"address": address, "port_value": port}},
            "stats": [{"name": "cx_total", "value": "3"}], "health_status": health or {}, "weight": 1}


CLUSTERS: dict[str, Any] = {"cluster_statuses": [
    {"name": HW, "added_via_api": True, "host_statuses": [
        host("10.0.0.2", 5000, {"eds_health_status": "HEALTHY"}),
        host("10.0.0.1", 15443, {"eds_health_status": "HEALTHY", "failed_outlier_check": True}),
        host("10.0.0.1", 5000, {"eds_health_status": "UNHEALTHY"}),
    ]},
    {"name": "agent", "host_statuses": [host("127.0.0.1", 15020)]},
    {"name": "sds-grpc", "host_statuses": [{
        "address": {"pipe": {"path": "./var/run/secrets/workload-spiffe-uds/socket"}},
        "health_status": {"eds_health_status": "HEALTHY"}}]},
    {"name": "BlackHoleCluster"},
]}


def test_envoy_tables_rows_follow_istioctl() -> None:
    assert endpoint_table(CLUSTERS) == [
        ("10.0.0.1:5000", "UNHEALTHY", "OK", HW),
        ("10.0.0.1:15443", "HEALTHY", "FAILED", HW),
        ("10.0.0.2:5000", "HEALTHY", "OK", HW),
        ("127.0.0.1:15020", "UNKNOWN", "OK", "agent"),
        ("unix://./var/run/secrets/workload-spiffe-uds/socket", "HEALTHY", "OK", "sds-grpc"),
    ]


def test_envoy_tables_filters_like_istioctl_flags() -> None:
    assert [r[0] for r in endpoint_table(CLUSTERS, HW.upper())] == ["10.0.0.1:5000", "10.0.0.1:15443",
                                                                    "10.0.0.2:5000"]
    assert endpoint_table(CLUSTERS, "nope") == []
    assert [r[0] for r in endpoint_table(CLUSTERS, address="10.0.0.1", port=15443)] == ["10.0.0.1:15443"]
    assert [r[0] for r in endpoint_table(CLUSTERS, status="unhealthy")] == ["10.0.0.1:5000"]


def test_envoy_tables_layout_is_gos_tabwriter_with_padding_five() -> None:
    assert format_table(endpoint_table(CLUSTERS, HW)) == (
        "ENDPOINT           STATUS        OUTLIER CHECK     CLUSTER\n"
        f"10.0.0.1:5000      UNHEALTHY     OK                {HW}\n"
        f"10.0.0.1:15443     HEALTHY       FAILED            {HW}\n"
        f"10.0.0.2:5000      HEALTHY       OK                {HW}\n"
    )
    assert format_table([]) == "ENDPOINT     STATUS     OUTLIER CHECK     CLUSTER\n"
