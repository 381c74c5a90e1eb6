"""Shares of traffic: what a call loop measured, and what the endpoints' weights say it should be.

Seed 001's lesson is a comparison: cluster1's sidecar knows one local helloworld pod and two remote
east-west gateways, weighted by how many endpoints each fronts, so from cluster1 a third of the calls
should stay local and a third go through each other cluster. :func:`expected_shares` turns an endpoint
table into those fractions, keyed the way the calls are (instance, version or any label a lab picks),
and :func:`summarize` turns a call loop into fractions with the same keys, so a checkpoint compares two
dicts with a tolerance instead of eyeballing a chart.

Failed requests stay in the denominator under ``(error)``: when a lab scales a version to zero, the share
that now fails is the lesson, and dropping it would make the survivors look like 100 %.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

ERROR_KEY = "(error)"
OTHER_KEY = "(other)"
_HEALTHY = {"HEALTHY", ""}


def summarize(calls: pd.DataFrame, by: str = "instance") -> pd.DataFrame:
    """How calls spread over ``by`` per source: counts and fractions that sum to 1 per source.

    Args:
        calls: rows from :func:`labkit.traffic.call` (several loops may be concatenated).
        by: the column to group by: ``instance``, ``version``, ``status``, ``url`` …; a failed request
            with no value counts as ``(error)``, a successful one without it (not helloworld) as ``(other)``.

    Returns:
        A DataFrame with columns ``source``, ``by``, ``count``, ``share``, sorted by source then key.

    Raises:
        KeyError: ``by`` is not a column of ``calls``.
    """
    if by not in calls.columns:
        raise KeyError(f"calls have no column {by!r}; use one of {', '.join(map(str, calls.columns))}")
    columns = ["source", by, "count", "share"]
    if calls.empty:
        return pd.DataFrame(columns=columns)
    errors = calls["error"] if "error" in calls.columns else pd.Series("", index=calls.index)
    keys = [str(value) if _present(value) else (ERROR_KEY if _present(error) and error else OTHER_KEY)
            for value, error in zip(calls[by], errors, strict=True)]
    counted = (pd.DataFrame({"source": calls["source"].to_numpy(), by: keys})
               .groupby(["source", by], sort=True).size().rename("count").reset_index())
    counted["share"] = counted["count"] / counted.groupby("source")["count"].transform("sum")
    return counted[columns].reset_index(drop=True)


def shares_of(summary: pd.DataFrame, source: str) -> dict[str, float]:
    """One source's shares from :func:`summarize` as ``{key: fraction}``, to compare with :func:`expected_shares`.

    Args:
        summary: the result of :func:`summarize`.
        source: the source (cluster name) to read.
    """
    key = next(c for c in summary.columns if c not in ("source", "count", "share"))
    rows = summary[summary["source"] == source]
    return {str(k): float(s) for k, s in zip(rows[key], rows["share"], strict=True)}


def expected_shares(
    endpoint_rows: Any,
    instances_by_endpoint: Mapping[str, str | Sequence[str]],
    *,
    cluster: str | None = None,
    healthy_only: bool = True,
) -> dict[str, float]:
    """The fractions of calls each key should get, from the weights of the endpoints a proxy balances over.

    Envoy picks an endpoint with probability weight / total weight (Istio's default ``LEAST_REQUEST`` behaves so
    for sequential calls); behind a remote gateway, that gateway spreads its share evenly over the endpoints it
    fronts. So a local pod of weight 1 and gateways of weight 1 and 2 give 1/4, 1/4 and 1/2, and within each
    the share is split evenly over the keys mapped to it.

    Args:
        endpoint_rows: the endpoints: an ``EndpointTable`` from ``labkit.istio.proxy_endpoints``, its
            ``to_frame()`` (``ENDPOINT``/``WEIGHT`` columns), or an iterable of rows with ``endpoint`` and
            ``weight`` (attributes or mapping keys) or ``(endpoint, weight)`` pairs.
        instances_by_endpoint: for each endpoint address, the key (``"helloworld-v1-…"``, ``"v2"``,
            ``"cluster2"``) or the keys it leads to. Endpoints not listed are keyed by their address, so a
            missing mapping shows in the result instead of vanishing.
        cluster: keep only rows of this Envoy cluster (exact name, or a part of it such as ``helloworld``);
            needed when the rows hold more than one.
        healthy_only: leave out endpoints Envoy would not pick (not ``HEALTHY``, or ejected by outlier detection).

    Returns:
        ``{key: fraction}`` summing to 1 (empty when no endpoint is left).

    Raises:
        ValueError: rows of several Envoy clusters and no ``cluster``, or a negative weight.
    """
    rows = [row for row in _rows(endpoint_rows)
            if cluster is None or row["cluster"] == cluster or cluster in row["cluster"]]
    names = {row["cluster"] for row in rows if row["cluster"]}
    if len(names) > 1:
        raise ValueError(f"the endpoints belong to {len(names)} Envoy clusters ({', '.join(sorted(names))}); "
                         f"pick one with cluster=…")
    if healthy_only:
        rows = [row for row in rows if row["status"] in _HEALTHY and row["outlier_check"] in ("OK", "")]
    total = sum(row["weight"] for row in rows)
    if any(row["weight"] < 0 for row in rows):
        raise ValueError("endpoint weights must not be negative")
    shares: dict[str, float] = {}
    if total <= 0:
        return shares
    for row in rows:
        mapped = instances_by_endpoint.get(row["endpoint"], row["endpoint"])
        keys = [mapped] if isinstance(mapped, str) else list(mapped)
        for key in keys or [row["endpoint"]]:
            shares[key] = shares.get(key, 0.0) + row["weight"] / total / max(len(keys), 1)
    return shares


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _rows(endpoint_rows: Any) -> Iterable[dict[str, Any]]:
    # Duck-typed on purpose: labkit.traffic reads istio's endpoint rows without depending on their class.
    source = getattr(endpoint_rows, "rows", endpoint_rows)
    if isinstance(source, pd.DataFrame):
        lower = {str(c).lower().replace(" ", "_"): c for c in source.columns}
        records = [{name: record[column] for name, column in lower.items()}
                   for record in source.to_dict("records")]
    else:
        records = list(source)
    for record in records:
        if isinstance(record, Mapping):
            get = record.get
        elif isinstance(record, tuple) and not hasattr(record, "endpoint"):
            get = dict(zip(("endpoint", "weight"), record, strict=False)).get
        else:
            def get(name: str, default: Any = None, _record: Any = record) -> Any:
                return getattr(_record, name, default)
        yield {"endpoint": str(get("endpoint")), "weight": float(get("weight", 1) or 0),
               "cluster": str(get("cluster", "") or ""), "status": str(get("status", "") or "").upper(),
               "outlier_check": str(get("outlier_check", "") or "").upper()}
