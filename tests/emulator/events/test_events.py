"""The event recorder, its aggregation, the events.k8s.io view, expiry, and the Events controllers and kubelet emit."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from labkit.core.kubetime import format_time
from labkit.emulator.api.resources import Registry
from labkit.emulator.api.tables import render_row
from labkit.emulator.apimachinery.status import StatusError, internal
from labkit.emulator.controllers.replicasets import ReplicaSetController
from labkit.emulator.events import (
    EventExpiry,
    EventRecorder,
    EventsView,
    core_to_events_v1,
    events_v1_to_core,
    expired_events,
    recording,
)
from labkit.emulator.node.reporting import KubeletEvents, PodRef
from labkit.emulator.store import Store, WatchEvent, WatchFilter

T0 = 1_800_000_000.0
POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "web-1", "namespace": "demo", "uid": "u-1", "resourceVersion": "7"}}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def events(store: Store, namespace: str = "demo") -> list[dict[str, Any]]:
    return store.list("", "events", namespace=namespace).items


def new_store() -> Store:
    """A store with the namespace these Events go to (a recorder writes none into a missing namespace)."""
    store = Store()
    store.create("", "namespaces", {"metadata": {"name": "demo"}})
    return store


def test_an_event_names_its_object_source_and_time() -> None:
    store, clock = new_store(), Clock()
    recorder = EventRecorder(store, "kubelet", "node-1", clock=clock)
    recorder(POD, "Normal", "Started", "Started container web", field_path="spec.containers{web}")
    (event,) = events(store)
    assert event["metadata"]["name"] == f"web-1.{int(T0 * 1e9):x}"
    assert event["involvedObject"] == {"kind": "Pod", "namespace": "demo", "name": "web-1", "uid": "u-1",
                                       "apiVersion": "v1", "resourceVersion": "7",
                                       "fieldPath": "spec.containers{web}"}
    assert event["source"] == {"component": "kubelet", "host": "node-1"}
    assert (event["reportingComponent"], event["reportingInstance"]) == ("kubelet", "node-1")
    assert event["firstTimestamp"] == event["lastTimestamp"] == format_time(T0) and event["count"] == 1


def test_repeats_count_up_one_object_and_other_messages_make_new_ones() -> None:
    store, clock = new_store(), Clock()
    recorder = EventRecorder(store, "kubelet", "node-1", clock=clock)
    for step in range(3):
        clock.now = T0 + step * 10
        recorder(POD, "Normal", "BackOff", 'Back-off pulling image "x"')
    recorder(POD, "Warning", "Failed", "Error: ImagePullBackOff")
    backoff, failed = sorted(events(store), key=lambda e: e["reason"])
    assert backoff["count"] == 3 and backoff["firstTimestamp"] == format_time(T0)
    assert backoff["lastTimestamp"] == format_time(T0 + 20)
    assert failed["count"] == 1


def test_series_recorders_count_in_series_as_events_k8s_io_does() -> None:
    store, clock = new_store(), Clock()
    recorder = EventRecorder(store, "default-scheduler", "default-scheduler-node", series=True, clock=clock)
    recorder(POD, "Warning", "FailedScheduling", "0/1 nodes are available", action="Scheduling")
    (event,) = events(store)
    assert event["eventTime"].startswith("2027-01-15T08:00:00.") and event["action"] == "Scheduling"
    assert event["firstTimestamp"] is None and "count" not in event and "series" not in event
    clock.now += 30
    recorder(POD, "Warning", "FailedScheduling", "0/1 nodes are available", action="Scheduling")
    (event,) = events(store)
    assert event["series"]["count"] == 2 and event["series"]["lastObservedTime"].startswith("2027-01-15T08:00:30.")


def test_the_aggregation_cache_is_bounded_and_forgets_deleted_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recording, "CACHE_SIZE", 2)
    store, clock = new_store(), Clock()
    recorder = EventRecorder(store, "kubelet", clock=clock)
    for reason in ("A", "B", "C"):
        clock.now += 1
        recorder(POD, "Normal", reason, reason)
    clock.now += 1
    recorder(POD, "Normal", "A", "A")  # evicted: a new object, as client-go's LRU would make
    assert sorted(e["reason"] for e in events(store)) == ["A", "A", "B", "C"]
    (c,) = [e for e in events(store) if e["reason"] == "C"]
    store.delete("", "events", c["metadata"]["name"], "demo")
    clock.now += 1
    recorder(POD, "Normal", "C", "C")
    assert [e["count"] for e in events(store) if e["reason"] == "C"] == [1]


def test_events_k8s_io_is_a_view_of_the_same_objects() -> None:
    store = new_store()
    view = EventsView(store)
    EventRecorder(store, "replicaset-controller", clock=Clock())(
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web", "namespace": "demo", "uid": "r"}},
        "Warning", "FailedCreate", "Error creating: nope")
    (new,) = view.list("events.k8s.io", "events", namespace="demo",
                       field_selector="regarding.kind=ReplicaSet,regarding.name=web,reportingController="
                                      "replicaset-controller").items
    assert new["apiVersion"] == "events.k8s.io/v1" and new["note"] == "Error creating: nope"
    assert new["regarding"]["uid"] == "r" and new["deprecatedCount"] == 1 and new["eventTime"] is None
    assert view.list("events.k8s.io", "events", namespace="demo", field_selector="regarding.name=other").items == []
    created = view.create("events.k8s.io", "events", {
        "metadata": {"name": "mine", "namespace": "demo"}, "eventTime": "2027-01-15T08:00:00.000000Z",
        "reportingController": "me", "reportingInstance": "me-1", "action": "Act", "reason": "Did",
        "note": "did it", "type": "Normal", "regarding": {"kind": "Pod", "name": "p", "namespace": "demo"}})
    assert created["note"] == "did it"
    core = store.get("", "events", "mine", "demo")
    assert (core["message"], core["reportingComponent"], core["involvedObject"]["name"]) == ("did it", "me", "p")
    assert events_v1_to_core(core_to_events_v1(core))["message"] == "did it"


def test_an_events_k8s_io_watch_sees_core_writes_converted() -> None:
    store = new_store()
    seen: list[WatchEvent] = []
    stop = EventsView(store).watch(WatchFilter.parse("events.k8s.io", "events", "demo", "", "regarding.name=web-1"),
                                   None, seen.append)
    recorder = EventRecorder(store, "kubelet", clock=Clock())
    recorder(POD, "Normal", "Pulled", "pulled")
    recorder({**POD, "metadata": {**POD["metadata"], "name": "other"}}, "Normal", "Pulled", "pulled")
    stop()
    assert [(e.type, e.group, e.object["note"]) for e in seen] == [("ADDED", "events.k8s.io", "pulled")]


def test_events_expire_an_hour_after_they_last_happened() -> None:
    store, clock = new_store(), Clock()
    recorder = EventRecorder(store, "kubelet", clock=clock)
    recorder(POD, "Normal", "Old", "old")
    recorder(POD, "Normal", "Repeated", "again")
    clock.now = T0 + 3000
    recorder(POD, "Normal", "Repeated", "again")  # counted up: its hour starts again
    clock.now = T0 + 3700
    assert [e["reason"] for e in expired_events(events(store), clock.now)] == ["Old"]
    assert EventExpiry(store, clock=clock).sweep() == 1
    assert [e["reason"] for e in events(store)] == ["Repeated"]


def test_failed_create_on_the_replicaset_quotes_the_admission_error() -> None:
    store = new_store()
    rs = store.create("apps", "replicasets", {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {
        "name": "web", "namespace": "demo"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                                                     "template": {"metadata": {"labels": {"app": "web"}},
                                                                  "spec": {"containers": [{"name": "c"}]}}}})
    message = 'Internal error occurred: failed calling webhook "namespace.sidecar-injector.istio.io": no endpoints'

    async def refuse(pod: dict[str, Any]) -> dict[str, Any]:
        raise internal(message)

    controller = ReplicaSetController(store, "node", create_pod=refuse)
    for _ in range(2):
        with pytest.raises(StatusError):
            asyncio.run(controller.reconcile(("demo", "web")))
    (event,) = events(store)
    assert (event["type"], event["reason"], event["count"]) == ("Warning", "FailedCreate", 2)
    assert event["message"] == f"Error creating: {message}"
    assert event["involvedObject"]["uid"] == rs["metadata"]["uid"]
    assert event["source"] == {"component": "replicaset-controller"}


def test_kubelet_wording() -> None:
    said: list[tuple[str, str, str, str]] = []

    def sink(involved: Any, type: str, reason: str, message: str, *, field_path: str = "") -> None:
        said.append((type, reason, message, field_path))

    kubelet, pod = KubeletEvents(sink), PodRef("demo", "web-1", "u-1")
    kubelet.image_ready(pod, "web", "nginx:1.25", "IfNotPresent")
    kubelet.image_ready(pod, "web", "nginx", "Always")
    kubelet.pull_failed(pod, "web", "ngnix")
    assert said[0] == ("Normal", "Pulled", 'Container image "nginx:1.25" already present on machine',
                       "spec.containers{web}")
    assert [s[1] for s in said[1:3]] == ["Pulling", "Pulled"]
    assert said[2][2].startswith('Successfully pulled image "nginx" in ')
    assert said[4][:2] == ("Warning", "Failed") and 'Failed to pull image "ngnix"' in said[4][2]
    assert "nginx" in said[4][2].split("knows:")[1]
    assert said[5][:3] == ("Warning", "Failed", "Error: ErrImagePull")


def test_a_scheduler_event_prints_its_reporting_component_as_source() -> None:
    store, clock = new_store(), Clock()
    EventRecorder(store, "default-scheduler", "default-scheduler-node", series=True, clock=clock)(
        POD, "Normal", "Scheduled", "Successfully assigned demo/web-1 to node", action="Binding")
    (event,) = events(store)
    core_events = Registry().get("", "v1", "events")
    assert core_events is not None
    row = render_row(core_events, event, dt.datetime.fromtimestamp(T0 + 5, dt.UTC))
    assert row[0] == "5s" and row[5] == "default-scheduler, default-scheduler-node" and row[7] == "5s"


def test_no_new_event_in_a_namespace_that_is_gone_or_going() -> None:
    store, clock = new_store(), Clock()
    recorder = EventRecorder(store, "kubelet", clock=clock)
    recorder({**POD, "metadata": {**POD["metadata"], "namespace": "elsewhere"}}, "Normal", "Killing", "Stopping")
    namespace = store.get("", "namespaces", "demo")
    namespace["metadata"]["finalizers"] = ["test/hold"]
    store.update("", "namespaces", namespace)
    store.delete("", "namespaces", "demo")  # terminating: held by its finalizer
    recorder(POD, "Normal", "Killing", "Stopping container main")
    assert store.list("", "events").items == []


def test_the_tenth_distinct_message_of_a_reason_joins_one_combined_event() -> None:
    store, clock = new_store(), Clock()
    recorder = EventRecorder(store, "replicaset-controller", clock=clock)
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web", "namespace": "demo", "uid": "r"}}
    for index in range(12):
        clock.now += 1
        recorder(rs, "Normal", "SuccessfulCreate", f"Created pod: web-{index}")
    created = events(store)
    plain = [e for e in created if not e["message"].startswith("(combined")]
    (combined,) = [e for e in created if e["message"].startswith("(combined")]
    assert len(plain) == 9
    assert combined["message"] == "(combined from similar events): Created pod: web-11"
    assert combined["count"] == 3
    clock.now += 601  # ten quiet minutes later, messages count afresh
    recorder(rs, "Normal", "SuccessfulCreate", "Created pod: web-12")
    assert any(e["message"] == "Created pod: web-12" for e in events(store))
