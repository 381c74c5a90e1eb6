"""Envoy's admin API for the tools and tests: stats, clusters, config dump, readiness.

ACK and NACK are not read here: they come back to istiod on the ADS stream (:mod:`labkit.emulator.mesh.serving`).
"""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp

Address = tuple[str, int]
POLL = 0.005
_INDEX = re.compile(r"\bresources\[(\d+)\]")


def _url(admin_address: Address, path: str) -> str:
    return f"http://{admin_address[0]}:{admin_address[1]}/{path.lstrip('/')}"


async def _get(admin_address: Address, path: str, session: aiohttp.ClientSession | None,
               params: dict[str, str] | None = None, timeout: float = 5.0) -> tuple[int, str]:
    if session is None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as own:
            return await _get(admin_address, path, own, params, timeout)
    async with session.get(_url(admin_address, path), params=params) as response:
        return response.status, await response.text()


def parse_stats(text: str) -> dict[str, int | str]:
    """Envoy's plain ``/stats``: counters and gauges as ints, text readouts as strings (histograms as text)."""
    result: dict[str, int | str] = {}
    for line in text.splitlines():
        name, separator, value = line.partition(": ")
        if not separator:
            continue
        if value.startswith('"') and value.endswith('"'):
            result[name] = value[1:-1]
        elif value.isdigit():
            result[name] = int(value)
        else:
            result[name] = value
    return result


async def stats(admin_address: Address, filter: str | None = None, *,
                session: aiohttp.ClientSession | None = None) -> dict[str, int | str]:
    """``/stats``, optionally narrowed by a regular expression (Envoy's ``filter``).

    Args:
        admin_address: Envoy's admin ``(host, port)``.
        filter: e.g. ``update_rejected$``.
        session: reuse a session (polling loops); one is opened and closed otherwise.
    """
    _, text = await _get(admin_address, "stats", session, {"filter": filter} if filter else None)
    return parse_stats(text)


async def clusters_json(admin_address: Address, *, session: aiohttp.ClientSession | None = None) -> dict[str, Any]:
    """``/clusters?format=json``: per host health and outlier state (what ``proxy-config endpoints`` shows)."""
    _, text = await _get(admin_address, "clusters", session, {"format": "json"})
    return json.loads(text)


async def config_dump(admin_address: Address, *, include_eds: bool = False,
                      session: aiohttp.ClientSession | None = None) -> dict[str, Any]:
    """``/config_dump`` (with endpoints when ``include_eds``)."""
    _, text = await _get(admin_address, "config_dump", session, {"include_eds": "true"} if include_eds else None)
    return json.loads(text)


async def ready(admin_address: Address, *, session: aiohttp.ClientSession | None = None) -> bool:
    """Whether Envoy is ``LIVE`` (``/ready`` answers 200); ``False`` when nothing answers."""
    try:
        status, _ = await _get(admin_address, "ready", session, timeout=1.0)
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False
    return status == 200
