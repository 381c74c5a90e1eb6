"""Shares: what a loop measured per source, and what endpoint weights predict, keyed alike."""

from __future__ import annotations

import pandas as pd
import pytest

from labkit.istio import EndpointRow, EndpointTable
from labkit.traffic import ERROR_KEY, OTHER_KEY, expected_shares, parse_curl_output, shares_of, summarize

HELLO = "outbound|5000||helloworld.sample.svc.cluster.local"


def _calls(source: str, answers: list[str]) -> pd.DataFrame:
    """A loop whose requests got these answers: a version (helloworld), ``refused`` or ``nginx``."""
    frames = []
    for number, answer in enumerate(answers):
        if answer == "refused":
            frames.append(f"\n<<<labkit {number} 000 0.0001 7 Failed to connect to 10.0.0.1 port 5000>>>\n")
        elif answer == "nginx":
            frames.append(f"<h1>Welcome to nginx!</h1>\n<<<labkit {number} 200 0.001 0 >>>\n")
        else:
            body = f"Hello version: {answer}, instance: helloworld-{answer}-x"
            frames.append(f"{body}\n<<<labkit {number} 200 0.001 0 >>>\n")
    return parse_curl_output("".join(frames), source=source, urls=["http://helloworld:5000/hello"] * len(answers))


def test_summarize_gives_shares_per_source() -> None:
    calls = pd.concat([_calls("cluster1", ["v1", "v2", "v1", "v1"]), _calls("cluster2", ["v2", "v2"])],
                      ignore_index=True)
    summary = summarize(calls, by="version")
    assert summary.to_dict("records") == [
        {"source": "cluster1", "version": "v1", "count": 3, "share": 0.75},
        {"source": "cluster1", "version": "v2", "count": 1, "share": 0.25},
        {"source": "cluster2", "version": "v2", "count": 2, "share": 1.0},
    ]
    assert summary.groupby("source")["share"].sum().tolist() == [1.0, 1.0]
    assert shares_of(summary, "cluster1") == {"v1": 0.75, "v2": 0.25}
    by_instance = summarize(calls)
    assert list(by_instance.columns) == ["source", "instance", "count", "share"]
    assert set(by_instance["instance"]) == {"helloworld-v1-x", "helloworld-v2-x"}


def test_failures_stay_in_the_denominator() -> None:
    summary = summarize(_calls("cluster1", ["v1", "refused", "refused", "nginx"]), by="version")
    assert shares_of(summary, "cluster1") == {ERROR_KEY: 0.5, OTHER_KEY: 0.25, "v1": 0.25}
    by_status = summarize(_calls("cluster1", ["v1", "refused"]), by="status")
    assert shares_of(by_status, "cluster1") == {"0": 0.5, "200": 0.5}


def test_summarize_refuses_unknown_columns_and_keeps_columns_when_empty() -> None:
    with pytest.raises(KeyError, match="no column 'pod'"):
        summarize(_calls("c", ["v1"]), by="pod")
    assert list(summarize(_calls("c", []), by="version").columns) == ["source", "version", "count", "share"]


# Seed 001 from cluster1: the local pod (weight 1), cluster2's gateway fronting one pod (weight 1) and
# cluster3's fronting two (weight 2).
TABLE = EndpointTable((
    EndpointRow("10.10.0.16:5000", "HEALTHY", "OK", HELLO, 1),
    EndpointRow("172.18.0.2:15443", "HEALTHY", "OK", HELLO, 1),
    EndpointRow("172.18.0.3:15443", "HEALTHY", "OK", HELLO, 2),
    EndpointRow("10.10.0.20:9080", "HEALTHY", "OK", "outbound|9080||reviews.sample.svc.cluster.local", 1),
))
BEHIND = {"10.10.0.16:5000": "helloworld-v1-a", "172.18.0.2:15443": "helloworld-v2-b",
          "172.18.0.3:15443": ["helloworld-v1-c", "helloworld-v2-d"]}


def test_expected_shares_follow_the_weights() -> None:
    shares = expected_shares(TABLE, BEHIND, cluster="helloworld")
    assert shares == pytest.approx({"helloworld-v1-a": 0.25, "helloworld-v2-b": 0.25,
                                    "helloworld-v1-c": 0.25, "helloworld-v2-d": 0.25})
    by_cluster = expected_shares(TABLE, {"10.10.0.16:5000": "cluster1", "172.18.0.2:15443": "cluster2",
                                         "172.18.0.3:15443": "cluster3"}, cluster=HELLO)
    assert by_cluster == pytest.approx({"cluster1": 0.25, "cluster2": 0.25, "cluster3": 0.5})
    by_version = expected_shares(TABLE, {"10.10.0.16:5000": "v1", "172.18.0.2:15443": "v2",
                                         "172.18.0.3:15443": ["v1", "v2"]}, cluster=HELLO)
    assert by_version == pytest.approx({"v1": 0.5, "v2": 0.5})


def test_one_third_each_and_other_row_shapes() -> None:
    pairs = [("10.10.0.16:5000", 1), ("172.18.0.2:15443", 1), ("172.18.0.3:15443", 1)]
    names = {"10.10.0.16:5000": "local", "172.18.0.2:15443": "via cluster2", "172.18.0.3:15443": "via cluster3"}
    assert expected_shares(pairs, names) == pytest.approx({key: 1 / 3 for key in names.values()})
    dicts = [{"endpoint": e, "weight": w} for e, w in pairs]
    assert expected_shares(dicts, names) == expected_shares(pairs, names)
    frame = TABLE.to_frame()
    assert expected_shares(frame, BEHIND, cluster="helloworld") == expected_shares(TABLE, BEHIND, cluster="helloworld")
    # An endpoint nobody mapped keeps its address, so the gap shows.
    assert expected_shares(pairs[:2], {"10.10.0.16:5000": "local"}) == {"local": 0.5, "172.18.0.2:15443": 0.5}


def test_unhealthy_endpoints_get_nothing_and_clusters_must_be_chosen() -> None:
    rows = [EndpointRow("10.10.0.16:5000", "HEALTHY", "OK", HELLO, 1),
            EndpointRow("172.18.0.2:15443", "UNHEALTHY", "OK", HELLO, 1),
            EndpointRow("172.18.0.3:15443", "HEALTHY", "FAILED", HELLO, 2)]
    assert expected_shares(rows, {"10.10.0.16:5000": "local"}) == {"local": 1.0}
    assert len(expected_shares(rows, {}, healthy_only=False)) == 3
    assert expected_shares(rows[1:], {}) == {}
    with pytest.raises(ValueError, match="2 Envoy clusters"):
        expected_shares(TABLE, BEHIND)
