"""The Store: server-owned metadata, preconditions, generation, finalizers, watch and isolation."""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

import pytest

from labkit.emulator.apimachinery import record_update
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.store import ADDED, DELETED, MODIFIED, Store, WatchEvent, WatchFilter
from labkit.errors import InvalidSelectorError

NOW = "2024-05-01T10:00:00Z"
LATER = "2024-05-01T10:05:00Z"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> str:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> Store:
    uids = iter(f"uid-{i}" for i in range(1000))
    return Store(clock=clock, new_uid=lambda: next(uids))


def deployment(name: str = "helloworld-v1", namespace: str = "sample", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": "helloworld"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "helloworld"}},
            "template": {
                "metadata": {"labels": {"app": "helloworld"}},
                "spec": {"containers": [{"name": "helloworld", "image": "helloworld:1"}]},
            },
        },
    }


def configmap(name: str, namespace: str = "sample", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": {"k": "v"},
    }


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


# --- create / get / list -------------------------------------------------------------------------


def test_create_sets_server_owned_metadata(store: Store) -> None:
    created = store.create("apps", "deployments", deployment())
    meta = created["metadata"]
    assert meta["uid"] == "uid-0"
    assert meta["generation"] == 1
    assert meta["creationTimestamp"] == NOW
    assert rv(created) == int(store.resource_version)
    assert store.get("apps", "deployments", "helloworld-v1", "sample") == created


def test_default_timestamps_and_uids_look_like_kubernetes() -> None:
    created = Store().create("", "configmaps", configmap("c"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created["metadata"]["creationTimestamp"])
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", created["metadata"]["uid"]
    )


def test_resource_versions_increase_across_all_resources(store: Store) -> None:
    first = store.create("", "configmaps", configmap("a"))
    second = store.create("apps", "deployments", deployment())
    third = store.create("", "configmaps", configmap("a", namespace="other"))
    assert rv(first) < rv(second) < rv(third)
    assert store.resource_version == str(rv(third))


def test_create_twice_is_already_exists_not_conflict(store: Store) -> None:
    store.create("apps", "deployments", deployment())
    with pytest.raises(StatusError) as caught:
        store.create("apps", "deployments", deployment())
    assert (caught.value.code, caught.value.reason) == (409, "AlreadyExists")
    assert caught.value.message == 'deployments.apps "helloworld-v1" already exists'


def test_missing_object_is_404_with_kubectl_message(store: Store) -> None:
    with pytest.raises(StatusError) as caught:
        store.get("apps", "deployments", "nope", "sample")
    assert caught.value.code == 404
    assert caught.value.message == 'deployments.apps "nope" not found'
    assert caught.value.details == {"name": "nope", "kind": "deployments", "group": "apps"}
    assert store.find("apps", "deployments", "nope", "sample") is None


def test_create_with_resource_version_or_without_name_is_rejected(store: Store) -> None:
    with_rv = configmap("c")
    with_rv["metadata"]["resourceVersion"] = "5"
    with pytest.raises(StatusError) as caught:
        store.create("", "configmaps", with_rv)
    assert caught.value.code == 400
    assert caught.value.message == "resourceVersion should not be set on objects to be created"

    nameless = configmap("")
    with pytest.raises(StatusError) as caught:
        store.create("", "configmaps", nameless)
    assert caught.value.code == 422
    assert "metadata.name: Required value: name or generateName is required" in caught.value.message


def test_generate_name_appends_five_characters(store: Store) -> None:
    obj = configmap("")
    obj["metadata"]["generateName"] = "istio-ca-"
    created = store.create("", "configmaps", obj)
    assert re.fullmatch(r"istio-ca-[bcdfghjklmnpqrstvwxz2456789]{5}", created["metadata"]["name"])


def test_create_drops_status_of_kinds_with_a_status_subresource(store: Store) -> None:
    obj = deployment()
    obj["status"] = {"replicas": 9}
    assert "status" not in store.create("apps", "deployments", obj)
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "status": {"ok": True},
    }
    assert store.create("example.com", "widgets", widget)["status"] == {"ok": True}


def test_list_filters_by_namespace_and_selectors_sorted(store: Store) -> None:
    store.create("", "configmaps", configmap("b", app="x"))
    store.create("", "configmaps", configmap("a", app="y"))
    store.create("", "configmaps", configmap("a", namespace="istio-system", app="x"))
    store.create("apps", "deployments", deployment())
    everything = store.list("", "configmaps")
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in everything.items] == [
        ("istio-system", "a"),
        ("sample", "a"),
        ("sample", "b"),
    ]
    assert everything.resource_version == store.resource_version
    assert [o["metadata"]["name"] for o in store.list("", "configmaps", namespace="sample").items] == [
        "a",
        "b",
    ]
    selected = store.list(
        "", "configmaps", label_selector="app=x", field_selector="metadata.namespace=sample"
    )
    assert [o["metadata"]["name"] for o in selected.items] == ["b"]
    with pytest.raises(InvalidSelectorError, match='"app in \\(x"'):
        store.list("", "configmaps", label_selector="app in (x")


# --- update: preconditions, generation, status --------------------------------------------------


def test_stale_resource_version_is_a_conflict(store: Store) -> None:
    created = store.create("apps", "deployments", deployment())
    first = copy.deepcopy(created)
    first["spec"]["replicas"] = 2
    store.update("apps", "deployments", first)
    stale = copy.deepcopy(created)
    stale["spec"]["replicas"] = 3
    with pytest.raises(StatusError) as caught:
        store.update("apps", "deployments", stale)
    assert (caught.value.code, caught.value.reason) == (409, "Conflict")
    assert caught.value.message == (
        'Operation cannot be fulfilled on deployments.apps "helloworld-v1": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    assert store.get("apps", "deployments", "helloworld-v1", "sample")["spec"]["replicas"] == 2


def test_update_without_resource_version_is_unconditional(store: Store) -> None:
    store.create("apps", "deployments", deployment())
    blind = deployment()
    blind["spec"]["replicas"] = 4
    updated = store.update("apps", "deployments", blind)
    assert updated["spec"]["replicas"] == 4
    assert updated["metadata"]["uid"] == "uid-0"
    assert updated["metadata"]["creationTimestamp"] == NOW


def test_update_with_another_uid_is_a_conflict(store: Store) -> None:
    created = store.create("apps", "deployments", deployment())
    other = copy.deepcopy(created)
    other["metadata"]["uid"] = "someone-else"
    with pytest.raises(StatusError) as caught:
        store.update("apps", "deployments", other)
    assert caught.value.code == 409
    assert (
        "Precondition failed: UID in precondition: someone-else, UID in object meta: uid-0"
        in caught.value.message
    )


def test_update_of_missing_object_is_404(store: Store) -> None:
    with pytest.raises(StatusError) as caught:
        store.update("apps", "deployments", deployment())
    assert caught.value.code == 404


def test_generation_bumps_on_spec_changes_only(store: Store) -> None:
    live = store.create("apps", "deployments", deployment())
    relabelled = copy.deepcopy(live)
    relabelled["metadata"]["labels"]["tier"] = "frontend"
    live = store.update("apps", "deployments", relabelled)
    assert live["metadata"]["generation"] == 1

    live = store.update_status("apps", "deployments", {**live, "status": {"observedGeneration": 1}})
    assert live["metadata"]["generation"] == 1

    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 3
    scaled["metadata"]["generation"] = 42  # clients cannot set it
    live = store.update("apps", "deployments", scaled)
    assert live["metadata"]["generation"] == 2


def test_main_resource_ignores_status_and_status_ignores_the_rest(store: Store) -> None:
    live = store.create("apps", "deployments", deployment())
    attempt = copy.deepcopy(live)
    attempt["status"] = {"replicas": 5}
    attempt["spec"]["replicas"] = 2
    live = store.update("apps", "deployments", attempt)
    assert "status" not in live
    assert live["spec"]["replicas"] == 2

    status_write = copy.deepcopy(live)
    status_write["status"] = {"replicas": 2, "readyReplicas": 2}
    status_write["spec"]["replicas"] = 10
    status_write["metadata"]["labels"] = {"hijacked": "yes"}
    live = store.update_status("apps", "deployments", status_write)
    assert live["status"] == {"replicas": 2, "readyReplicas": 2}
    assert live["spec"]["replicas"] == 2
    assert live["metadata"]["labels"] == {"app": "helloworld"}


def test_custom_resources_choose_their_status_subresource(store: Store) -> None:
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": 1},
    }
    store.set_status_subresource("example.com", "widgets")
    live = store.create("example.com", "widgets", widget)
    live = store.update("example.com", "widgets", {**live, "status": {"ready": True}})
    assert "status" not in live
    store.set_status_subresource("example.com", "widgets", enabled=False)
    assert store.update("example.com", "widgets", {**live, "status": {"ready": True}})["status"] == {
        "ready": True
    }


def test_no_op_update_keeps_resource_version_and_emits_nothing(store: Store) -> None:
    live = store.create("apps", "deployments", deployment())
    events: list[WatchEvent] = []
    store.subscribe(events.append)
    same = store.update("apps", "deployments", copy.deepcopy(live))
    assert same == live
    same_status = store.update_status("apps", "deployments", copy.deepcopy(live))
    assert rv(same_status) == rv(live)
    assert events == []


def test_managed_fields_are_kept_when_an_update_omits_them(store: Store) -> None:
    live = store.create("apps", "deployments", record_update(None, deployment(), "kubectl-create", NOW))
    body = copy.deepcopy(live)
    del body["metadata"]["managedFields"]
    assert store.update("apps", "deployments", body) == live


# --- delete and finalizers -----------------------------------------------------------------------


def test_delete_without_finalizers_removes_and_returns_last_state(store: Store) -> None:
    live = store.create("", "configmaps", configmap("c"))
    gone = store.delete("", "configmaps", "c", "sample")
    assert gone["data"] == {"k": "v"}
    assert rv(gone) > rv(live)
    with pytest.raises(StatusError) as caught:
        store.get("", "configmaps", "c", "sample")
    assert caught.value.message == 'configmaps "c" not found'
    with pytest.raises(StatusError):
        store.delete("", "configmaps", "c", "sample")


def test_finalizers_hold_deletion_until_the_last_one_is_removed(store: Store, clock: Clock) -> None:
    obj = configmap("guarded")
    obj["metadata"]["finalizers"] = ["example.com/a", "example.com/b"]
    store.create("", "configmaps", obj)
    events: list[WatchEvent] = []
    store.subscribe(events.append)

    clock.now = LATER
    marked = store.delete("", "configmaps", "guarded", "sample")
    assert marked["metadata"]["deletionTimestamp"] == LATER
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 0
    assert store.get("", "configmaps", "guarded", "sample") == marked
    assert store.delete("", "configmaps", "guarded", "sample") == marked  # deleting again changes nothing

    one_left = copy.deepcopy(marked)
    one_left["metadata"]["finalizers"] = ["example.com/b"]
    one_left = store.update("", "configmaps", one_left)
    assert one_left["metadata"]["deletionTimestamp"] == LATER

    none_left = copy.deepcopy(one_left)
    none_left["metadata"]["finalizers"] = []
    final = store.update("", "configmaps", none_left)
    assert store.find("", "configmaps", "guarded", "sample") is None
    assert [e.type for e in events] == [MODIFIED, MODIFIED, DELETED]
    assert events[-1].resource_version == rv(final)


def test_no_new_finalizers_on_an_object_being_deleted(store: Store) -> None:
    obj = configmap("guarded")
    obj["metadata"]["finalizers"] = ["example.com/a"]
    store.create("", "configmaps", obj)
    marked = store.delete("", "configmaps", "guarded", "sample")
    marked["metadata"]["finalizers"].append("example.com/late")
    with pytest.raises(StatusError) as caught:
        store.update("", "configmaps", marked)
    assert caught.value.code == 422
    assert "no new finalizers can be added if the object is being deleted" in caught.value.message


def test_clients_cannot_set_deletion_timestamp(store: Store) -> None:
    live = store.create("", "configmaps", configmap("c"))
    live["metadata"]["deletionTimestamp"] = LATER
    assert "deletionTimestamp" not in store.update("", "configmaps", live)["metadata"]


def test_delete_preconditions(store: Store) -> None:
    live = store.create("", "configmaps", configmap("c"))
    with pytest.raises(StatusError) as caught:
        store.delete("", "configmaps", "c", "sample", uid="other")
    assert caught.value.code == 409
    with pytest.raises(StatusError) as caught:
        store.delete("", "configmaps", "c", "sample", resource_version="1")
    assert "ResourceVersion in precondition: 1, ResourceVersion in object meta:" in caught.value.message
    store.delete(
        "",
        "configmaps",
        "c",
        "sample",
        uid=live["metadata"]["uid"],
        resource_version=live["metadata"]["resourceVersion"],
    )
    assert store.find("", "configmaps", "c", "sample") is None


# --- watch ---------------------------------------------------------------------------------------


def test_events_replay_strictly_after_a_resource_version(store: Store) -> None:
    created = store.create("", "configmaps", configmap("c"))
    changed = copy.deepcopy(created)
    changed["data"] = {"k": "v2"}
    modified = store.update("", "configmaps", changed)
    store.delete("", "configmaps", "c", "sample")
    replay = store.events_since(created["metadata"]["resourceVersion"])
    assert [(e.type, e.object["data"]["k"]) for e in replay] == [(MODIFIED, "v2"), (DELETED, "v2")]
    assert replay[0].object == modified
    assert [e.type for e in store.events_since("1")] == [ADDED, MODIFIED, DELETED]
    assert store.events_since(store.resource_version) == []


def test_too_old_resource_version_is_410_expired(clock: Clock) -> None:
    store = Store(history=3, clock=clock)
    first = store.create("", "configmaps", configmap("c0"))
    for i in range(1, 5):
        store.create("", "configmaps", configmap(f"c{i}"))
    # Kept: the last three events (rv 4, 5, 6); resuming after 3 is still complete.
    assert [e.object["metadata"]["name"] for e in store.events_since("3")] == ["c2", "c3", "c4"]
    with pytest.raises(StatusError) as caught:
        store.events_since(first["metadata"]["resourceVersion"])
    assert (caught.value.code, caught.value.reason) == (410, "Expired")
    assert caught.value.message == "too old resource version: 2 (3)"
    with pytest.raises(StatusError) as caught:
        store.events_since("abc")
    assert caught.value.code == 400


def test_watch_from_zero_sends_synthetic_added_then_live_events(store: Store) -> None:
    store.create("", "configmaps", configmap("a", app="x"))
    store.create("", "configmaps", configmap("b", app="y"))
    store.create("", "configmaps", configmap("c", namespace="other", app="x"))
    seen: list[WatchEvent] = []
    stop = store.watch(WatchFilter.parse("", "configmaps", "sample", "app=x"), "0", seen.append)
    store.create("", "configmaps", configmap("d", app="x"))
    store.create("", "configmaps", configmap("e", app="y"))
    store.create("apps", "deployments", deployment())
    stop()
    store.create("", "configmaps", configmap("f", app="x"))
    assert [(e.type, e.object["metadata"]["name"]) for e in seen] == [(ADDED, "a"), (ADDED, "d")]


def test_watch_resumes_from_a_list_resource_version(store: Store) -> None:
    store.create("", "configmaps", configmap("a"))
    listed = store.list("", "configmaps")
    store.create("", "configmaps", configmap("b"))
    seen: list[WatchEvent] = []
    store.watch(WatchFilter("", "configmaps"), listed.resource_version, seen.append)
    store.create("", "configmaps", configmap("c"))
    assert [e.object["metadata"]["name"] for e in seen] == ["b", "c"]


def test_selector_watch_sees_objects_enter_and_leave(store: Store) -> None:
    live = store.create("", "configmaps", configmap("a", app="x"))
    seen: list[WatchEvent] = []
    store.watch(
        WatchFilter.parse("", "configmaps", label_selector="app=y"), store.resource_version, seen.append
    )
    moved_in = copy.deepcopy(live)
    moved_in["metadata"]["labels"] = {"app": "y"}
    live = store.update("", "configmaps", moved_in)
    touched = copy.deepcopy(live)
    touched["data"] = {"k": "v2"}
    live = store.update("", "configmaps", touched)
    moved_out = copy.deepcopy(live)
    moved_out["metadata"]["labels"] = {"app": "z"}
    final = store.update("", "configmaps", moved_out)
    assert [e.type for e in seen] == [ADDED, MODIFIED, DELETED]
    # The DELETED of an object leaving the selection carries its last matching content.
    assert seen[-1].object["metadata"]["labels"] == {"app": "y"}
    assert seen[-1].object["metadata"]["resourceVersion"] == final["metadata"]["resourceVersion"]


def test_a_failing_listener_does_not_fail_the_write(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: WatchEvent) -> None:
        raise RuntimeError("boom")

    seen: list[WatchEvent] = []
    store.subscribe(broken)
    store.subscribe(seen.append)
    with caplog.at_level(logging.ERROR):
        store.create("", "configmaps", configmap("c"))
    assert [e.type for e in seen] == [ADDED]
    assert "watch listener" in caplog.text


# --- isolation -----------------------------------------------------------------------------------


def test_callers_cannot_mutate_stored_objects(store: Store) -> None:
    submitted = deployment()
    created = store.create("apps", "deployments", submitted)
    submitted["spec"]["replicas"] = 100
    created["spec"]["template"]["spec"]["containers"][0]["image"] = "evil"
    store.get("apps", "deployments", "helloworld-v1", "sample")["metadata"]["labels"]["x"] = "y"
    store.list("apps", "deployments").items[0]["spec"]["replicas"] = 50
    stored = store.get("apps", "deployments", "helloworld-v1", "sample")
    assert stored["spec"]["replicas"] == 1
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == "helloworld:1"
    assert stored["metadata"]["labels"] == {"app": "helloworld"}


def test_listeners_get_their_own_copies(store: Store) -> None:
    def vandal(event: WatchEvent) -> None:
        event.object["metadata"]["labels"]["vandal"] = "yes"

    seen: list[WatchEvent] = []
    store.subscribe(vandal)
    store.subscribe(seen.append)
    store.create("apps", "deployments", deployment())
    assert seen[0].object["metadata"]["labels"] == {"app": "helloworld"}
    assert store.get("apps", "deployments", "helloworld-v1", "sample")["metadata"]["labels"] == {
        "app": "helloworld"
    }
    assert store.events_since("1")[0].object["metadata"]["labels"] == {"app": "helloworld"}


def test_status_writes_keep_their_managed_fields(store: Store) -> None:
    live = store.create("apps", "deployments", record_update(None, deployment(), "kubectl-create", NOW))
    with_status = record_update(live, {**live, "status": {"replicas": 1}}, "kcm", LATER, subresource="status")
    stored = store.update_status("apps", "deployments", with_status)
    assert [(e["manager"], e.get("subresource", "")) for e in stored["metadata"]["managedFields"]] == [
        ("kubectl-create", ""),
        ("kcm", "status"),
    ]


def test_a_grace_period_marks_the_object_until_a_delete_without_one(store: Store, clock: Clock) -> None:
    store.create("", "configmaps", configmap("running"))
    events: list[WatchEvent] = []
    store.subscribe(events.append)
    marked = store.delete("", "configmaps", "running", "sample", grace_period=30)
    assert marked["metadata"]["deletionTimestamp"] == "2024-05-01T10:00:30Z"  # now + the grace period
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 30
    assert store.delete("", "configmaps", "running", "sample", grace_period=60) == marked  # never lengthened
    shorter = store.delete("", "configmaps", "running", "sample", grace_period=5)
    assert shorter["metadata"]["deletionGracePeriodSeconds"] == 5
    assert shorter["metadata"]["deletionTimestamp"] == "2024-05-01T10:00:05Z"
    store.delete("", "configmaps", "running", "sample")
    assert store.find("", "configmaps", "running", "sample") is None
    assert [e.type for e in events] == [MODIFIED, MODIFIED, DELETED]


def test_the_api_server_may_choose_the_uid_before_admission(store: Store) -> None:
    uid = store.new_uid()
    created = store.create("", "configmaps", {**configmap("c"), "metadata": {"name": "c", "namespace": "sample",
                                                                              "uid": "from-the-client"}}, uid=uid)
    assert created["metadata"]["uid"] == uid
    assert store.create("", "configmaps", {**configmap("d"), "metadata": {
        "name": "d", "namespace": "sample", "uid": "from-the-client"}})["metadata"]["uid"] != "from-the-client"
