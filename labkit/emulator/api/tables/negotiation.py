"""Content negotiation: whether a request wants a ``meta.k8s.io`` Table, and which version.

kubectl asks with ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io,…,application/json``; the official
Python client asks for plain JSON. The best-ranked clause the server can satisfy decides, as a real server
negotiates.
"""

from __future__ import annotations

from collections.abc import Mapping

TABLE_V1 = "meta.k8s.io/v1"
TABLE_V1BETA1 = "meta.k8s.io/v1beta1"


def table_version(accept: str) -> str | None:
    """The Table apiVersion to answer with, or None when the client does not want a Table.

    The best-ranked clause of ``accept`` the server can satisfy decides (q-values first, then order),
    as a real server negotiates. When that clause asks for a Table, the answer is ``meta.k8s.io/v1``
    if any Table clause offered v1, else ``meta.k8s.io/v1beta1``.

    Args:
        accept: the ``Accept`` header, e.g. ``application/json;as=Table;v=v1;g=meta.k8s.io,application/json``.
    """
    clauses = []
    for position, raw in enumerate(accept.split(",")):
        media, *raw_params = (part.strip() for part in raw.split(";"))
        params = {key.strip().lower(): value.strip() for key, _, value in (p.partition("=") for p in raw_params)}
        try:
            quality = float(params.pop("q", "1"))
        except ValueError:
            quality = 1.0
        if media and quality > 0:
            clauses.append((-quality, position, media.lower(), params))
    clauses.sort(key=lambda clause: clause[:2])
    offered = {params.get("v") for _, _, media, params in clauses if _is_table_clause(media, params)}
    for _, _, media, params in clauses:
        if _is_table_clause(media, params):
            return TABLE_V1 if "v1" in offered else TABLE_V1BETA1
        if "as" not in params and media in ("application/json", "application/*", "*/*"):
            return None
    return None


def wants_table(accept: str) -> bool:
    """Whether the ``Accept`` header asks for a Table (``kubectl get`` does; the Python client does not).

    Args:
        accept: the ``Accept`` header.
    """
    return table_version(accept) is not None


def _is_table_clause(media: str, params: Mapping[str, str]) -> bool:
    return (media == "application/json" and params.get("as") == "Table"
            and params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"))
