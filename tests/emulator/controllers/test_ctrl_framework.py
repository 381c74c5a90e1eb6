"""The work queue and controller loop: deduplication, back-off, idleness, clean shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import pytest

from labkit.emulator.controllers import Controller, ControllerManager, WorkQueue
from labkit.emulator.store import Store, WatchEvent


class Recorder(Controller):
    """Reconciles ConfigMaps by name; fails the first ``failures`` attempts of each key."""

    name = "recorder"

    def __init__(self, store: Store, failures: int = 0):
        super().__init__(store)
        self.failures = failures
        self.calls: list[str] = []

    def keys_for(self, event: WatchEvent) -> Iterable[str]:
        return [event.object["metadata"]["name"]] if event.resource == "configmaps" else []

    def initial_keys(self) -> Iterable[str]:
        return [cm["metadata"]["name"] for cm in self.store.list("", "configmaps").items]

    async def reconcile(self, key: str) -> None:
        self.calls.append(key)
        if self.calls.count(key) <= self.failures:
            raise RuntimeError(f"boom {key}")


def configmap(name: str, value: str = "1") -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "x"},
            "data": {"v": value}}


def test_queue_deduplicates_and_requeues_keys_added_while_processing() -> None:
    async def scenario() -> None:
        queue = WorkQueue()
        for key in ("a", "b", "a", "a"):
            queue.add(key)
        assert await queue.get() == "a"
        queue.add("a")  # changed while being reconciled: must be looked at again
        assert await queue.get() == "b"
        queue.done("b")
        assert await queue.get() == "a"
        queue.done("a")
        queue.done("a")
        assert queue.idle
        await queue.wait_idle()

    asyncio.run(scenario())


def test_events_before_the_worker_runs_are_one_reconcile() -> None:
    async def scenario() -> None:
        store = Store()
        recorder = Recorder(store)
        async with ControllerManager([recorder]) as manager:
            store.create("", "configmaps", configmap("a"))
            for value in "234":
                cm = store.get("", "configmaps", "a", "x")
                cm["data"]["v"] = value
                store.update("", "configmaps", cm)
            await manager.wait_idle()
        assert recorder.calls == ["a"]
        assert not recorder.running

    asyncio.run(scenario())


def test_failures_are_logged_and_retried_with_back_off(caplog) -> None:
    async def scenario() -> None:
        store = Store()
        store.create("", "configmaps", configmap("a"))
        recorder = Recorder(store, failures=3)
        async with ControllerManager([recorder]) as manager:
            await manager.wait_idle()
        assert recorder.calls == ["a"] * 4

    with caplog.at_level(logging.ERROR, logger="labkit.emulator.controllers.framework"):
        asyncio.run(scenario())
    assert [r.message.split(";")[0] for r in caplog.records] == ["recorder: reconcile 'a' failed"] * 3
    assert "RuntimeError: boom a" in caplog.text


def test_wait_idle_names_a_controller_that_never_settles(caplog) -> None:
    async def scenario() -> None:
        store = Store()
        store.create("", "configmaps", configmap("a"))
        manager = ControllerManager([Recorder(store, failures=1_000)])
        await manager.start()
        try:
            with pytest.raises(TimeoutError, match="controllers still busy after 0.2s: recorder"):
                await manager.wait_idle(timeout=0.2)
        finally:
            await manager.stop()
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []

    with caplog.at_level(logging.CRITICAL):
        asyncio.run(scenario())


def test_manager_refuses_duplicate_names_and_double_start() -> None:
    store = Store()
    with pytest.raises(ValueError, match="distinct names"):
        ControllerManager([Recorder(store), Recorder(store)])

    async def scenario() -> None:
        recorder = Recorder(store)
        recorder.start()
        try:
            with pytest.raises(RuntimeError, match="already running"):
                recorder.start()
        finally:
            await recorder.stop()

    asyncio.run(scenario())
