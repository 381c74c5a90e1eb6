"""Garbage collection by ownerReferences: Background, Foreground and Orphan, as kubectl delete --cascade."""

from __future__ import annotations

import pytest

from labkit.emulator.api.admission import finalizers_for_delete
from labkit.emulator.apimachinery.status import StatusError


def test_finalizers_for_delete_translate_the_propagation_policy() -> None:
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "finalizers": ["x"]}}
    assert finalizers_for_delete(obj) is None
    assert finalizers_for_delete(obj, "Background") is None
    assert finalizers_for_delete(obj, "Foreground")["metadata"]["finalizers"] == ["x", "foregroundDeletion"]
    assert finalizers_for_delete(obj, "Orphan")["metadata"]["finalizers"] == ["x", "orphan"]
    assert finalizers_for_delete(obj, orphan_dependents=True)["metadata"]["finalizers"] == ["x", "orphan"]
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"},
                 "spec": {"finalizers": ["kubernetes"]}}
    assert finalizers_for_delete(namespace)["metadata"]["finalizers"] == ["kubernetes"]
    with pytest.raises(StatusError, match="Unsupported value"):
        finalizers_for_delete(obj, "Sideways")


def test_background_deletion_removes_replicasets_and_pods(cluster) -> None:
    async def scenario() -> None:
        cluster.create(cluster.deployment("web", replicas=2))
        await cluster.settle()
        cluster.delete("apps", "deployments", "web", "default")
        assert cluster.find("apps", "deployments", "web", "default") is None  # gone at once
        await cluster.settle()
        assert cluster.list("apps", "replicasets", "default") == []
        assert cluster.list("", "pods", "default") == []

    cluster.run(scenario)


def test_foreground_deletion_keeps_the_owner_until_dependents_are_gone(cluster) -> None:
    async def scenario() -> None:
        cluster.create(cluster.deployment("web", replicas=2))
        await cluster.settle()
        (pod,) = cluster.list("", "pods", "default")[:1]
        pod["metadata"]["finalizers"] = ["test.labkit.io/hold"]
        cluster.store.update("", "pods", pod)

        cluster.delete("apps", "deployments", "web", "default", policy="Foreground")
        await cluster.settle()
        deployment = cluster.get("apps", "deployments", "web", "default")
        assert deployment["metadata"]["deletionTimestamp"]
        assert deployment["metadata"]["finalizers"] == ["foregroundDeletion"]
        (rs,) = cluster.list("apps", "replicasets", "default")
        assert rs["metadata"]["finalizers"] == ["foregroundDeletion"]  # the wait is transitive
        (left,) = cluster.list("", "pods", "default")
        assert left["metadata"]["name"] == pod["metadata"]["name"]

        left["metadata"]["finalizers"] = []
        cluster.store.update("", "pods", left)
        await cluster.settle()
        assert cluster.find("apps", "deployments", "web", "default") is None
        assert cluster.list("apps", "replicasets", "default") == []

    cluster.run(scenario)


def test_orphan_deletion_leaves_dependents_without_the_owner(cluster) -> None:
    async def scenario() -> None:
        cluster.create(cluster.deployment("web", replicas=2))
        await cluster.settle()
        cluster.delete("apps", "deployments", "web", "default", policy="Orphan")
        await cluster.settle()
        assert cluster.find("apps", "deployments", "web", "default") is None
        (rs,) = cluster.list("apps", "replicasets", "default")
        assert "ownerReferences" not in rs["metadata"]
        assert len(cluster.list("", "pods", "default")) == 2  # the ReplicaSet still runs them

    cluster.run(scenario)


def test_a_dependent_with_another_live_owner_only_loses_the_dangling_reference(cluster) -> None:
    async def scenario() -> None:
        first = cluster.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "x"}})
        second = cluster.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "x"}})
        refs = [{"apiVersion": "v1", "kind": "ConfigMap", "name": o["metadata"]["name"], "uid": o["metadata"]["uid"]}
                for o in (first, second)]
        cluster.create({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "dep", "namespace": "x", "ownerReferences": refs}})
        cluster.create({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "only-a", "namespace": "x", "ownerReferences": refs[:1]}})
        await cluster.settle()
        cluster.delete("", "configmaps", "a", "x")
        await cluster.settle()
        assert cluster.find("", "secrets", "only-a", "x") is None
        assert cluster.get("", "secrets", "dep", "x")["metadata"]["ownerReferences"] == refs[1:]

        # A dependent created for an owner that no longer exists is collected too.
        cluster.create({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "late", "namespace": "x", "ownerReferences": refs[:1]}})
        await cluster.settle()
        assert cluster.find("", "secrets", "late", "x") is None

    cluster.run(scenario)
