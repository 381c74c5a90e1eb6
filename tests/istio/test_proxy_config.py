"""The endpoints table of proxy-config, parsed from Envoy's /clusters?format=json."""

from __future__ import annotations

import json

from labkit.istio import endpoint_table
from labkit.istio.proxy_config import parse_proxy

HELLO = "outbound|5000||helloworld.sample.svc.cluster.local"


def _host(address: str, port: int, weight: int = 1, **health: object) -> dict:
    return {"address": {"socket_address": {"address": address, "port_value": port}}, "weight": weight,
            "health_status": {"eds_health_status": "HEALTHY", **health}}


CLUSTERS = json.dumps({"cluster_statuses": [
    {"name": HELLO, "host_statuses": [_host("10.42.0.16", 5000), _host("10.132.0.112", 15443, 2),
                                      _host("10.132.0.102", 15443, 1, failed_outlier_check=True)]},
    {"name": "outbound|80||sleep.sample.svc.cluster.local", "host_statuses": [_host("10.42.0.20", 80)]},
    {"name": "agent", "host_statuses": [{"address": {"pipe": {"path": "./etc/istio/proxy/XDS"}},
                                         "health_status": {}}]},
]})


def test_one_cluster_like_the_seed_shows_it() -> None:
    table = endpoint_table(CLUSTERS, HELLO)
    assert str(table).splitlines() == [
        "ENDPOINT               STATUS      OUTLIER CHECK     CLUSTER",
        f"10.132.0.102:15443     HEALTHY     FAILED            {HELLO}",
        f"10.132.0.112:15443     HEALTHY     OK                {HELLO}",
        f"10.42.0.16:5000        HEALTHY     OK                {HELLO}",
    ]
    assert [r.weight for r in table.rows] == [1, 2, 1]


def test_all_clusters_and_non_socket_addresses() -> None:
    table = endpoint_table(CLUSTERS)
    assert len(table) == 5
    assert table.rows[0].endpoint == "unix://./etc/istio/proxy/XDS"
    assert table.rows[0].status == "UNKNOWN"


def test_a_dataframe_for_notebooks() -> None:
    frame = endpoint_table(CLUSTERS, HELLO).to_frame()
    assert list(frame.columns) == ["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER", "WEIGHT"]
    assert frame["WEIGHT"].sum() == 4


def test_proxy_names_as_istioctl_takes_them() -> None:
    assert parse_proxy("deploy/sleep.sample") == ("deploy/sleep", "sample")
    assert parse_proxy("sleep-5b4c5d6888-f56s2.sample") == ("sleep-5b4c5d6888-f56s2", "sample")
    assert parse_proxy("deploy/sleep", "sample") == ("deploy/sleep", "sample")
    assert parse_proxy("sleep-abc") == ("sleep-abc", "default")
