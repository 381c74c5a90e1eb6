"""Events expire: an hour after they last happened, as kube-apiserver's ``--event-ttl`` (etcd leases) does.

Recorders fold repeats into one object, but every new pod, container and rollout still brings new
Events; a lab that runs all day must not keep them all. A real server attaches a lease to each write,
so the clock restarts whenever an Event is counted up; here a sweep every minute deletes the Events
whose last occurrence (``series.lastObservedTime``, ``lastTimestamp`` or ``eventTime``) is older than
the TTL, and those the API was given without any time at all once their creation is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from labkit.core.kubetime import timestamp
from labkit.core.wire import Obj
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.store import Store

EVENT_TTL = 3600.0
"""Seconds an Event lives after its last occurrence (kube-apiserver's default ``--event-ttl=1h``)."""
SWEEP_PERIOD = 60.0

_log = logging.getLogger(__name__)


def last_seen(event: Obj) -> float | None:
    """When an Event last happened, in seconds since the epoch (``None`` when it carries no time at all).

    Args:
        event: a core/v1 Event.
    """
    moments = [timestamp((event.get("series") or {}).get("lastObservedTime")), timestamp(event.get("lastTimestamp")),
               timestamp(event.get("eventTime")), timestamp((event.get("metadata") or {}).get("creationTimestamp"))]
    known = [moment for moment in moments if moment is not None]
    return max(known) if known else None


def expired_events(events: list[Obj], now: float, ttl: float = EVENT_TTL) -> list[Obj]:
    """The Events of ``events`` whose last occurrence is more than ``ttl`` seconds before ``now``.

    Args:
        events: core/v1 Events.
        now: seconds since the epoch.
        ttl: their lifetime after the last occurrence.
    """
    return [event for event in events if (seen := last_seen(event)) is not None and now - seen > ttl]


class EventExpiry:
    """Deletes expired Events from one cluster's store, every :data:`SWEEP_PERIOD` seconds.

    Args:
        store: the cluster's store.
        ttl: an Event's lifetime after its last occurrence.
        period: seconds between sweeps.
        clock: seconds since the epoch; injectable for tests.
    """

    def __init__(self, store: Store, *, ttl: float = EVENT_TTL, period: float = SWEEP_PERIOD,
                 clock: Callable[[], float] = time.time):
        self._store = store
        self.ttl = ttl
        self.period = period
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def sweep(self) -> int:
        """Delete the expired Events now; returns how many went."""
        gone = 0
        for event in expired_events(self._store.list("", "events").items, self._clock(), self.ttl):
            metadata = event["metadata"]
            with contextlib.suppress(StatusError):  # deleted meanwhile
                self._store.delete("", "events", metadata["name"], metadata.get("namespace", ""))
                gone += 1
        return gone

    def start(self) -> None:
        """Sweep periodically on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="event-expiry")

    async def stop(self) -> None:
        """Stop sweeping."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            try:
                self.sweep()
            except Exception:  # a bad sweep must not end expiry for the life of the cluster
                _log.exception("sweeping expired events failed")
