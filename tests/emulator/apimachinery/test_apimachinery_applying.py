"""Server-side apply: create, merge, pruning, shared ownership, no-ops, conflicts, managedFields."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from labkit.emulator.apimachinery import (
    BEFORE_FIRST_APPLY,
    apply,
    fields_v1,
    managed_fields,
    parse_fields_v1,
    record_update,
)
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.store import Store

DEPLOYMENT = ("apps", "Deployment")
T0, T1, T2, T3 = (
    "2024-05-01T10:00:00Z",
    "2024-05-01T11:00:00Z",
    "2024-05-01T12:00:00Z",
    "2024-05-01T13:00:00Z",
)


def manifest() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "helloworld-v1", "namespace": "sample", "labels": {"app": "helloworld"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "helloworld"}},
            "template": {
                "metadata": {"labels": {"app": "helloworld"}},
                "spec": {
                    "containers": [
                        {
                            "name": "helloworld",
                            "image": "docker.io/istio/examples-helloworld-v1:1.0",
                            "ports": [{"containerPort": 5000}],
                            "env": [{"name": "SERVICE_VERSION", "value": "v1"}],
                        }
                    ]
                },
            },
        },
    }


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return obj["spec"]["template"]["spec"]["containers"]


def ssa(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    manager: str = "kubectl",
    *,
    force: bool = False,
    now: str = T1,
) -> dict[str, Any]:
    return apply(live, applied, manager, kind_key=DEPLOYMENT, force=force, now=now)


@pytest.fixture
def store() -> Store:
    uids = iter(f"uid-{i}" for i in range(1000))
    return Store(clock=lambda: T0, new_uid=lambda: next(uids))


def create_applied(store: Store, applied: dict[str, Any], manager: str = "kubectl") -> dict[str, Any]:
    return store.create("apps", "deployments", ssa(None, applied, manager, now=T0))


def test_apply_creates_with_the_real_fields_v1_encoding() -> None:
    created = ssa(None, manifest(), now=T0)
    assert created["spec"] == manifest()["spec"]
    assert created["metadata"]["managedFields"] == [
        {
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": "apps/v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {"f:matchLabels": {"f:app": {}}},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {
                            "f:containers": {
                                'k:{"name":"helloworld"}': {
                                    ".": {},
                                    "f:env": {
                                        'k:{"name":"SERVICE_VERSION"}': {".": {}, "f:name": {}, "f:value": {}}
                                    },
                                    "f:image": {},
                                    "f:name": {},
                                    "f:ports": {
                                        'k:{"containerPort":5000,"protocol":"TCP"}': {
                                            ".": {},
                                            "f:containerPort": {},
                                        }
                                    },
                                }
                            }
                        },
                    },
                },
            },
        }
    ]


def test_fields_v1_round_trips() -> None:
    tree = ssa(None, manifest())["metadata"]["managedFields"][0]["fieldsV1"]
    assert fields_v1(parse_fields_v1(tree)) == tree


def test_server_owned_fields_are_never_applied_or_owned() -> None:
    applied = manifest()
    applied["metadata"].update(
        uid="forged",
        resourceVersion="999",
        generation=7,
        creationTimestamp=T3,
        managedFields=[{"manager": "forged"}],
    )
    applied["status"] = {"replicas": 100}
    created = ssa(None, applied)
    assert set(created["metadata"]) == {"name", "namespace", "labels", "managedFields"}
    assert "status" not in created
    assert set(created["metadata"]["managedFields"][0]["fieldsV1"]) == {"f:metadata", "f:spec"}


def test_reapplying_an_unchanged_manifest_is_a_no_op_without_rv_bump(store: Store) -> None:
    live = create_applied(store, manifest())
    events = []
    store.subscribe(events.append)
    again = ssa(live, manifest(), now=T2)
    assert again == live  # same managedFields, time not bumped
    stored = store.replace_with("apps", "deployments", again)
    assert stored["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]
    assert events == []


def test_apply_merges_into_fields_set_by_others(store: Store) -> None:
    live = create_applied(store, manifest())
    # A controller annotated it and the status writer filled status.
    live["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "1"}
    live = store.update("apps", "deployments", live)
    live = store.update_status("apps", "deployments", {**live, "status": {"replicas": 2}})
    changed = manifest()
    containers(changed)[0]["image"] = "docker.io/istio/examples-helloworld-v1:2.0"
    result = ssa(live, changed)
    assert result["metadata"]["annotations"] == {"deployment.kubernetes.io/revision": "1"}
    assert result["status"] == {"replicas": 2}
    assert result["metadata"]["uid"] == live["metadata"]["uid"]
    assert containers(result)[0]["image"] == "docker.io/istio/examples-helloworld-v1:2.0"
    assert managed_fields(result)[("kubectl", "Apply", "")] == managed_fields(live)[("kubectl", "Apply", "")]
    assert result["metadata"]["managedFields"][0]["time"] == T1


def test_fields_dropped_from_the_manifest_are_removed(store: Store) -> None:
    first = manifest()
    first["metadata"]["labels"]["tier"] = "frontend"
    containers(first)[0]["env"].append({"name": "LOG_LEVEL", "value": "debug"})
    live = create_applied(store, first)
    result = ssa(live, manifest())
    assert result["metadata"]["labels"] == {"app": "helloworld"}
    assert containers(result)[0]["env"] == [{"name": "SERVICE_VERSION", "value": "v1"}]
    assert ".metadata.labels.tier" not in managed_fields(result)[("kubectl", "Apply", "")]


def test_dropping_every_env_var_removes_the_list_and_a_dropped_container_goes() -> None:
    first = manifest()
    containers(first).append({"name": "sidecar", "image": "busybox"})
    live = ssa(None, first, now=T0)
    second = manifest()
    del containers(second)[0]["env"]
    result = ssa(live, second)
    assert containers(result) == [
        {
            "name": "helloworld",
            "image": "docker.io/istio/examples-helloworld-v1:1.0",
            "ports": [{"containerPort": 5000}],
        }
    ]


def test_fields_shared_with_another_manager_survive_when_one_drops_them() -> None:
    live = ssa(None, manifest(), "team-a", now=T0)
    other = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "helloworld-v1", "namespace": "sample", "labels": {"app": "helloworld"}},
    }
    shared = ssa(live, other, "team-b")
    assert managed_fields(shared)[("team-b", "Apply", "")] == {".metadata.labels.app"}
    assert ".metadata.labels.app" in managed_fields(shared)[("team-a", "Apply", "")]

    without_labels = manifest()
    del without_labels["metadata"]["labels"]
    result = ssa(shared, without_labels, "team-a", now=T2)
    assert result["metadata"]["labels"] == {"app": "helloworld"}  # team-b still owns it
    assert ".metadata.labels.app" not in managed_fields(result)[("team-a", "Apply", "")]


def test_changing_a_field_owned_by_another_manager_is_a_409_conflict() -> None:
    live = ssa(None, manifest(), now=T0)
    scaled = record_update(
        live, {**live, "spec": {**live["spec"], "replicas": 5}}, "kubectl-client-side-apply", T1
    )
    with pytest.raises(StatusError) as caught:
        ssa(scaled, manifest(), now=T2)
    error = caught.value
    assert error.code == 409
    assert error.reason == "Conflict"
    assert (
        error.message
        == 'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: '
        ".spec.replicas"
    )
    assert error.details == {
        "causes": [
            {
                "type": "FieldManagerConflict",
                "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
                "field": ".spec.replicas",
            }
        ]
    }


def test_same_value_is_shared_not_a_conflict() -> None:
    live = ssa(None, manifest(), "team-a", now=T0)
    applied = manifest()
    applied["spec"] = {"replicas": 2}
    result = ssa(live, applied, "team-b")
    assert ".spec.replicas" in managed_fields(result)[("team-a", "Apply", "")]
    assert managed_fields(result)[("team-b", "Apply", "")] == {".spec.replicas", ".metadata.labels.app"}


def test_force_takes_ownership_from_the_other_manager() -> None:
    live = ssa(None, manifest(), now=T0)
    scaled = record_update(live, {**live, "spec": {**live["spec"], "replicas": 5}}, "hpa", T1)
    forced = ssa(scaled, manifest(), force=True, now=T2)
    assert forced["spec"]["replicas"] == 2
    assert ("hpa", "Update", "") not in managed_fields(forced)  # its only field was taken
    assert ".spec.replicas" in managed_fields(forced)[("kubectl", "Apply", "")]


def test_several_conflicts_are_listed_per_manager() -> None:
    live = ssa(None, manifest(), "ci", now=T0)
    applied = manifest()
    applied["spec"]["replicas"] = 3
    containers(applied)[0]["image"] = "other:2"
    with pytest.raises(StatusError) as caught:
        ssa(live, applied, "laptop")
    assert caught.value.message == (
        'Apply failed with 2 conflicts: conflicts with "ci":\n'
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="helloworld"].image'
    )


def test_objects_without_managed_fields_belong_to_before_first_apply() -> None:
    live = copy.deepcopy(manifest())
    live["spec"]["replicas"] = 7
    with pytest.raises(StatusError) as caught:
        ssa(live, manifest())
    assert f'conflict with "{BEFORE_FIRST_APPLY}" using apps/v1: .spec.replicas' in caught.value.message
    taken = ssa(live, manifest(), force=True)
    assert taken["spec"]["replicas"] == 2
    assert (
        '.spec.template.spec.containers[name="helloworld"].image'
        in managed_fields(taken)[(BEFORE_FIRST_APPLY, "Update", "")]
    )


def test_list_item_without_its_key_is_400() -> None:
    applied = manifest()
    containers(applied).append({"image": "busybox"})
    with pytest.raises(StatusError) as caught:
        ssa(None, applied)
    assert caught.value.code == 400
    assert caught.value.message == (
        "failed to create typed patch object (sample/helloworld-v1; apps/v1, Kind=Deployment): "
        ".spec.template.spec.containers: element 1: associative list with keys has an element that omits "
        'key field "name" (and doesn\'t have default value)'
    )


def test_apply_needs_api_version_and_kind() -> None:
    with pytest.raises(StatusError) as caught:
        ssa(None, {"kind": "Deployment", "metadata": {"name": "x"}})
    assert caught.value.code == 400
    assert "apiVersion must be set" in caught.value.message


def test_custom_resources_merge_maps_and_replace_lists() -> None:
    kind = ("networking.istio.io", "VirtualService")
    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "helloworld", "namespace": "sample"},
        "spec": {
            "hosts": ["helloworld"],
            "http": [
                {
                    "route": [
                        {"destination": {"host": "helloworld", "subset": "v1"}, "weight": 90},
                        {"destination": {"host": "helloworld", "subset": "v2"}, "weight": 10},
                    ]
                },
            ],
        },
    }
    live = apply(None, vs, "kubectl", kind_key=kind, force=False, now=T0)
    assert live["metadata"]["managedFields"][0]["fieldsV1"] == {"f:spec": {"f:hosts": {}, "f:http": {}}}
    edited = copy.deepcopy(live)
    edited["spec"]["gateways"] = ["mesh"]  # someone else's field, kept by the merge
    live = record_update(live, edited, "editor", T1)
    shifted = copy.deepcopy(vs)
    shifted["spec"]["http"] = [{"route": [{"destination": {"host": "helloworld", "subset": "v2"}}]}]
    result = apply(live, shifted, "kubectl", kind_key=kind, force=False, now=T2)
    assert result["spec"] == {
        "hosts": ["helloworld"],
        "gateways": ["mesh"],
        "http": [{"route": [{"destination": {"host": "helloworld", "subset": "v2"}}]}],
    }


def test_custom_resource_status_is_owned_unless_it_has_a_status_subresource() -> None:
    kind = ("example.com", "Widget")
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": 1},
        "status": {"ready": True},
    }
    plain = apply(None, widget, "m", kind_key=kind, force=False, now=T0)
    assert plain["status"] == {"ready": True}
    with_subresource = apply(None, widget, "m", kind_key=kind, force=False, now=T0, status_subresource=True)
    assert "status" not in with_subresource


def test_service_ports_are_keyed_by_port_and_defaulted_protocol() -> None:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "helloworld"},
        "spec": {"ports": [{"port": 5000, "name": "http"}, {"port": 5000, "protocol": "UDP", "name": "dns"}]},
    }
    live = apply(None, svc, "kubectl", kind_key=("", "Service"), force=False, now=T0)
    assert set(live["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:ports"]) == {
        'k:{"port":5000,"protocol":"TCP"}',
        'k:{"port":5000,"protocol":"UDP"}',
    }
    only_tcp = copy.deepcopy(svc)
    only_tcp["spec"]["ports"] = [{"port": 5000, "name": "http"}]
    result = apply(live, only_tcp, "kubectl", kind_key=("", "Service"), force=False, now=T1)
    assert result["spec"]["ports"] == [{"port": 5000, "name": "http"}]


def test_new_list_items_follow_the_applied_order() -> None:
    live = ssa(None, manifest(), now=T0)
    applied = manifest()
    containers(applied).insert(0, {"name": "init-helper", "image": "busybox"})
    containers(applied).append({"name": "sidecar", "image": "envoy"})
    result = ssa(live, applied)
    assert [c["name"] for c in containers(result)] == ["init-helper", "helloworld", "sidecar"]


def test_record_update_gives_the_writer_the_fields_it_changed(store: Store) -> None:
    created = record_update(None, manifest(), "kubectl-create", T0)
    entry = created["metadata"]["managedFields"][0]
    assert (entry["manager"], entry["operation"], entry["time"]) == ("kubectl-create", "Update", T0)
    assert parse_fields_v1(entry["fieldsV1"]) == parse_fields_v1(
        ssa(None, manifest())["metadata"]["managedFields"][0]["fieldsV1"]
    )
    live = store.create("apps", "deployments", created)

    labelled = copy.deepcopy(live)
    labelled["metadata"]["labels"]["tier"] = "frontend"
    labelled["spec"]["replicas"] = 4
    after = record_update(live, labelled, "kubectl-label", T1)
    assert managed_fields(after)[("kubectl-label", "Update", "")] == {
        ".metadata.labels.tier",
        ".spec.replicas",
    }
    assert ".spec.replicas" not in managed_fields(after)[("kubectl-create", "Update", "")]


def test_record_update_of_an_unchanged_object_keeps_managed_fields_verbatim(store: Store) -> None:
    live = store.create("apps", "deployments", record_update(None, manifest(), "kubectl-create", T0))
    resent = copy.deepcopy(live)
    resent["metadata"]["managedFields"] = []  # a client sending something else changes nothing
    after = record_update(live, resent, "kubectl-edit", T2)
    assert after == live
    assert (
        store.update("apps", "deployments", after)["metadata"]["resourceVersion"]
        == live["metadata"]["resourceVersion"]
    )


def test_status_writes_are_tracked_under_the_status_subresource() -> None:
    live = record_update(None, manifest(), "kubectl-create", T0)
    with_status = {**live, "status": {"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]}}
    after = record_update(live, with_status, "kube-controller-manager", T1, subresource="status")
    assert managed_fields(after)[("kube-controller-manager", "Update", "status")] == {
        ".status.replicas",
        '.status.conditions[type="Available"]',
        '.status.conditions[type="Available"].type',
        '.status.conditions[type="Available"].status',
    }
    entry = next(e for e in after["metadata"]["managedFields"] if e["manager"] == "kube-controller-manager")
    assert entry["subresource"] == "status"
