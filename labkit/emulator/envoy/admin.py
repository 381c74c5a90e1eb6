"""Envoy's admin API for istiod and the tools: stats, clusters, config dump, readiness, and ACK/NACK.

Filesystem xDS has no acknowledgement channel, so :func:`confirm` reads one back from Envoy itself.
Every subscription shows the ``version_info`` of the last update it *applied* as a text readout
(``listener_manager.lds.version_text``, ``cluster_manager.cds.version_text``,
``http.<stat_prefix>.rds.<route>.version_text``, ``cluster.<cluster>.version_text`` for EDS,
``sds.<secret>.version_text``), next to its counters (``update_success``, ``update_rejected`` …).
``version_info`` is display-only for Envoy, but :class:`~labkit.emulator.envoy.files.XdsWriter` makes it
unique to each file's content, so "the readout equals what was written" is an exact ACK, also for
subscriptions born with the update (a new cluster's EDS), where a rising counter has no baseline.
A NACK is the agent's record in ``rejections.json``: the subscription whose ``update_rejected`` rose,
the version of the file it refused, and Envoy's reason.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from labkit.emulator.envoy import files
from labkit.errors import XdsRejectedError, XdsTimeoutError

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


def _proxy_name(xds_dir: Path) -> str:
    """``<pod>.<namespace>`` from the node id the agent put in the bootstrap (``sidecar~ip~pod.ns~…``)."""
    try:
        node = json.loads((xds_dir / files.BOOTSTRAP).read_text())["node"]["id"]
        return node.split("~")[2]
    except (OSError, ValueError, KeyError, IndexError):
        return xds_dir.name


def _resource(item: files.WrittenFile, reason: str) -> str:
    if item.name:
        return item.name
    match = _INDEX.search(reason)
    if match and int(match.group(1)) < len(item.resources):
        return item.resources[int(match.group(1))]
    named = [name for name in item.resources if re.search(rf"(?<![\w.|-]){re.escape(name)}(?![\w.|-])", reason)]
    if len(named) == 1:
        return named[0]
    # Envoy's parse errors rarely name the resource; when one resource changed, it is the one.
    return item.changed[0] if len(item.changed) == 1 else ""


def _rejected_error(proxy: str, nacked: Sequence[tuple[files.WrittenFile, files.Rejection]]) -> XdsRejectedError:
    lines = []
    for item, rejection in nacked:
        resource = _resource(item, rejection.reason)
        what = f"{files.KIND_NAMES[item.kind]} {resource}" if resource else "an update"
        lines.append(f"{what} ({item.kind}, version {item.version}): {rejection.reason}")
    item, rejection = nacked[0]
    message = (f"Envoy of proxy {proxy} rejected " + "; and ".join(lines) +
               ". It keeps serving its last accepted configuration; fix the resource istiod built.")
    return XdsRejectedError(proxy, item.kind, _resource(item, rejection.reason), rejection.reason, message)


def _applied(texts: dict[str, int | str], item: files.WrittenFile, alternatives: Sequence[str]) -> bool | None:
    """``True`` applied, ``False`` a known subscription still shows another version, ``None`` not there yet."""
    present = [texts[f"{alt}.version_text"] for alt in alternatives if f"{alt}.version_text" in texts]
    if not present and item.kind == files.RDS:
        # Envoy counts a route config under the stat_prefix of the first listener that asked for it.
        suffix = f".rds.{files.stat_name(item.name)}.version_text"
        present = [v for k, v in texts.items() if k.startswith("http.") and k.endswith(suffix)]
    if not present:
        return None
    return item.version in present


async def confirm(admin_address: Address, xds_dir: Path, published: files.Published, timeout: float = 5.0) -> None:
    """Wait until Envoy has applied every file ``published`` wrote (ACK), or raise on its refusal (NACK).

    Files of resources nothing refers to are not waited for: Envoy never reads them.

    Args:
        admin_address: the proxy's Envoy admin ``(pod IP, 15000)``.
        xds_dir: the proxy's xDS directory (``rejections.json`` is there).
        published: what :meth:`~labkit.emulator.envoy.files.XdsWriter.publish` returned.
        timeout: seconds to wait.

    Raises:
        XdsRejectedError: Envoy refused an update; names the proxy, type, resource and Envoy's reason.
        XdsTimeoutError: neither happened in time (Envoy not running, or an update never reached it).
    """
    proxy = _proxy_name(xds_dir)
    waiting = [(item, alternatives) for item in published.written for alternatives in item.subscriptions]
    if not waiting:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    problem = ""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=max(timeout, 1.0))) as session:
        while True:
            try:
                texts = await stats(admin_address, r"version_text$", session=session)
                problem = ""
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                texts, problem = {}, f"Envoy's admin at {admin_address[0]}:{admin_address[1]} does not answer ({exc})"
            rejections = files.read_rejections(Path(xds_dir))["subscriptions"]
            nacked: list[tuple[files.WrittenFile, files.Rejection]] = []
            pending: list[files.WrittenFile] = []
            for item, alternatives in waiting:
                if _applied(texts, item, alternatives):
                    continue
                rejection = next((rejections[alt] for alt in alternatives
                                  if alt in rejections and rejections[alt].version == item.version), None)
                if rejection is None and item.kind == files.RDS:
                    rejection = next((r for prefix, r in rejections.items()
                                      if prefix.endswith(f".rds.{files.stat_name(item.name)}")
                                      and r.version == item.version), None)
                if rejection is not None:
                    nacked.append((item, rejection))
                else:
                    pending.append(item)
            if nacked:
                raise _rejected_error(proxy, nacked)
            if not pending:
                return
            if loop.time() >= deadline:
                raise _timeout_error(proxy, Path(xds_dir), pending, timeout, problem)
            await asyncio.sleep(POLL)


def _timeout_error(proxy: str, xds_dir: Path, pending: Sequence[files.WrittenFile], timeout: float,
                   problem: str) -> XdsTimeoutError:
    labels = sorted({item.label for item in pending})
    shown = ", ".join(labels[:5]) + (f" and {len(labels) - 5} more" if len(labels) > 5 else "")
    latest = files.read_rejections(xds_dir)["latest"]
    hints = [f"last {kind} refusal: {r.reason}" for kind, r in sorted(latest.items())
             if kind in {item.kind for item in pending}]
    detail = problem or "; ".join(hints) or "is its istio-proxy container running?"
    return XdsTimeoutError(f"Envoy of proxy {proxy} did not apply {shown} within {timeout:g} s: {detail}.")
