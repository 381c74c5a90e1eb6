"""Parsing and printing of remote-clusters, from istiod's /debug/clusterz JSON and from istioctl's table."""

from __future__ import annotations

import json

import pytest

from labkit.errors import LabkitError
from labkit.istio import RemoteCluster, parse_clusterz, parse_istioctl
from labkit.istio.remote_clusters import format_table

CLUSTERZ = json.dumps([
    {"ID": "cluster1", "SecretName": "", "SyncStatus": "synced"},
    {"ID": "cluster2", "SecretName": "istio-system/istio-remote-secret-cluster2", "SyncStatus": "synced"},
    {"ID": "cluster3", "SecretName": "istio-system/istio-remote-secret-cluster3", "SyncStatus": "timeout",
     "SomethingNew": 1},
])
ISTIOCTL = """\
NAME         SECRET                                        STATUS      ISTIOD
cluster1                                                   synced      istiod-7b7f7f8b9c-abcde
cluster2     istio-system/istio-remote-secret-cluster2     synced      istiod-7b7f7f8b9c-abcde
cluster3     istio-system/istio-remote-secret-cluster3     syncing     istiod-7b7f7f8b9c-abcde
"""


def test_clusterz_json_becomes_rows() -> None:
    rows = parse_clusterz(CLUSTERZ, "istiod-1")
    assert rows == [
        RemoteCluster("cluster1", "", "synced", "istiod-1"),
        RemoteCluster("cluster2", "istio-system/istio-remote-secret-cluster2", "synced", "istiod-1"),
        RemoteCluster("cluster3", "istio-system/istio-remote-secret-cluster3", "timeout", "istiod-1"),
    ]


def test_a_missing_secret_name_is_the_local_cluster() -> None:
    assert parse_clusterz('[{"ID": "cluster1", "SyncStatus": "synced"}]', "istiod-1")[0].secret == ""


@pytest.mark.parametrize("body", ["not json", '{"ID": "cluster1"}'])
def test_a_body_that_is_not_the_list_is_an_error(body: str) -> None:
    with pytest.raises(LabkitError, match="istiod istiod-1 answered /debug/clusterz"):
        parse_clusterz(body, "istiod-1")


def test_istioctl_table_with_a_blank_secret_column() -> None:
    rows = parse_istioctl(ISTIOCTL)
    assert rows[0] == RemoteCluster("cluster1", "", "synced", "istiod-7b7f7f8b9c-abcde")
    assert [r.status for r in rows] == ["synced", "synced", "syncing"]
    assert rows[2].secret == "istio-system/istio-remote-secret-cluster3"


def test_rows_print_as_istioctl_prints_them() -> None:
    table = format_table(parse_clusterz(CLUSTERZ, "istiod-1"))
    assert table.splitlines() == [
        "NAME       SECRET                                      STATUS    ISTIOD",
        "cluster1                                               synced    istiod-1",
        "cluster2   istio-system/istio-remote-secret-cluster2   synced    istiod-1",
        "cluster3   istio-system/istio-remote-secret-cluster3   timeout   istiod-1",
    ]
    assert parse_istioctl(table) == parse_clusterz(CLUSTERZ, "istiod-1")
