"""Deployments → ReplicaSets → pods, as ``kubectl get`` and ``kubectl rollout status`` see them."""

from __future__ import annotations

import re
from typing import Any

from labkit.emulator.controllers import pod_template_hash
from labkit.emulator.controllers.deployments import SAFE_ALPHABET, scaled_value, surge_and_unavailable

HASH = re.compile(f"^[{SAFE_ALPHABET}]{{6,10}}$")


def rollout_status(deployment: dict[str, Any]) -> str:
    """What ``kubectl rollout status`` decides from a Deployment (polymorphichelpers/rollout_status.go)."""
    status = deployment.get("status") or {}
    replicas = deployment["spec"]["replicas"]
    if deployment["metadata"]["generation"] > status.get("observedGeneration", 0):
        return "Waiting for deployment spec update to be observed..."
    for condition in status.get("conditions") or []:
        if condition["type"] == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return "exceeded its progress deadline"
    if status.get("updatedReplicas", 0) < replicas:
        return f"{status.get('updatedReplicas', 0)} out of {replicas} new replicas have been updated..."
    if status.get("replicas", 0) > status.get("updatedReplicas", 0):
        return f"{status.get('replicas', 0) - status.get('updatedReplicas', 0)} old replicas are pending termination..."
    available, updated = status.get("availableReplicas", 0), status.get("updatedReplicas", 0)
    if available < updated:
        return f"{available} of {updated} updated replicas are available..."
    return "successfully rolled out"


def test_pod_template_hash_is_stable_short_and_safe() -> None:
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "x:1"}]}}
    first = pod_template_hash(template)
    assert first == pod_template_hash({**template})
    assert HASH.match(first)
    assert pod_template_hash(template, collision_count=1) != first
    other = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "x:2"}]}}
    assert pod_template_hash(other) != first


def test_surge_and_unavailable_resolve_like_kubernetes() -> None:
    assert scaled_value("25%", 3, round_up=True) == 1
    assert scaled_value("25%", 3, round_up=False) == 0
    assert scaled_value(2, 10, round_up=False) == 2
    zero = {"spec": {"replicas": 3, "strategy": {"type": "RollingUpdate",
                                                 "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}}
    assert surge_and_unavailable(zero) == (0, 1)  # never stuck: one pod may go


def test_deployment_creates_replicaset_and_pods_with_owners(cluster) -> None:
    async def scenario() -> None:
        created = cluster.create(cluster.deployment("web", replicas=2))
        await cluster.settle()
        (rs,) = cluster.list("apps", "replicasets", "default")
        hash_value = rs["metadata"]["labels"]["pod-template-hash"]
        assert HASH.match(hash_value)
        assert rs["metadata"]["name"] == f"web-{hash_value}"
        assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": hash_value}
        assert rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == hash_value
        assert rs["metadata"]["ownerReferences"] == [{
            "apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": created["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True,
        }]
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"

        pods = cluster.list("", "pods", "default")
        assert len(pods) == 2
        for pod in pods:
            assert re.fullmatch(f"web-{hash_value}-[{SAFE_ALPHABET}]{{5}}", pod["metadata"]["name"])
            assert pod["metadata"]["labels"] == {"app": "web", "pod-template-hash": hash_value}
            assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
            assert pod["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
            assert pod["spec"]["nodeName"] == "cluster1-control-plane"
            assert pod["spec"]["restartPolicy"] == "Always"
            assert pod["status"]["phase"] == "Pending"

        deployment = cluster.get("apps", "deployments", "web", "default")
        assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
        assert rollout_status(deployment) == "0 of 2 updated replicas are available..."

        cluster.start_pods()
        await cluster.settle()
        deployment = cluster.get("apps", "deployments", "web", "default")
        status = deployment["status"]
        assert status["replicas"] == status["readyReplicas"] == status["availableReplicas"] == 2
        assert "unavailableReplicas" not in status
        conditions = {c["type"]: c for c in status["conditions"]}
        assert conditions["Available"]["status"] == "True"
        assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
        assert rollout_status(deployment) == "successfully rolled out"
        rs = cluster.get("apps", "replicasets", rs["metadata"]["name"], "default")
        assert rs["status"] == {"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 2,
                                "availableReplicas": 2, "observedGeneration": 1}

    cluster.run(scenario)


def test_scale_up_then_to_zero(cluster) -> None:
    async def scenario() -> None:
        cluster.create(cluster.deployment("web", replicas=1))
        await cluster.settle()
        cluster.start_pods()
        await cluster.settle()

        deployment = cluster.get("apps", "deployments", "web", "default")
        deployment["spec"]["replicas"] = 3
        cluster.update(deployment)
        await cluster.settle()
        assert len(cluster.list("", "pods", "default")) == 3
        assert rollout_status(cluster.get("apps", "deployments", "web", "default")).startswith("1 of 3")
        cluster.start_pods()
        await cluster.settle()
        deployment = cluster.get("apps", "deployments", "web", "default")
        assert deployment["status"]["availableReplicas"] == 3
        assert rollout_status(deployment) == "successfully rolled out"
        assert len(cluster.list("apps", "replicasets", "default")) == 1

        deployment["spec"]["replicas"] = 0
        cluster.update(deployment)
        await cluster.settle()
        assert cluster.list("", "pods", "default") == []
        deployment = cluster.get("apps", "deployments", "web", "default")
        assert deployment["status"]["observedGeneration"] == deployment["metadata"]["generation"] == 3
        assert "replicas" not in deployment["status"]
        assert rollout_status(deployment) == "successfully rolled out"
        (rs,) = cluster.list("apps", "replicasets", "default")
        assert rs["spec"]["replicas"] == 0

    cluster.run(scenario)


def test_rolling_update_respects_surge_and_unavailable(cluster) -> None:
    """v1 → v2 with 4 replicas, maxSurge 1, maxUnavailable 1: never more than 5 pods, never fewer than 3 ready."""

    async def scenario() -> None:
        strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}
        cluster.create(cluster.deployment("web", replicas=4, strategy=strategy))
        await cluster.settle()
        cluster.start_pods()
        await cluster.settle()
        v1_hash = cluster.list("", "pods", "default")[0]["metadata"]["labels"]["pod-template-hash"]

        deployment = cluster.get("apps", "deployments", "web", "default")
        deployment["spec"]["template"]["spec"]["containers"][0]["image"] = "helloworld:v2"
        cluster.update(deployment)
        seen_states = []
        for _ in range(20):
            await cluster.settle()
            pods = cluster.list("", "pods", "default")
            ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                            for c in (p.get("status") or {}).get("conditions") or [])]
            assert len(pods) <= 5, "maxSurge exceeded"
            assert len(ready) >= 3, "maxUnavailable exceeded"
            seen_states.append(rollout_status(cluster.get("apps", "deployments", "web", "default")))
            if seen_states[-1] == "successfully rolled out":
                break
            cluster.start_pods(limit=1)  # the kubelet starts one new pod at a time
        assert seen_states[-1] == "successfully rolled out"
        assert any("new replicas have been updated" in state for state in seen_states)

        pods = cluster.list("", "pods", "default")
        assert len(pods) == 4
        assert all(p["spec"]["containers"][0]["image"] == "helloworld:v2" for p in pods)
        assert all(p["metadata"]["labels"]["pod-template-hash"] != v1_hash for p in pods)
        replica_sets = {rs["metadata"]["labels"]["pod-template-hash"]: rs
                        for rs in cluster.list("apps", "replicasets", "default")}
        assert replica_sets[v1_hash]["spec"]["replicas"] == 0  # kept for `rollout undo`
        (new_hash,) = set(replica_sets) - {v1_hash}
        assert replica_sets[new_hash]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
        deployment = cluster.get("apps", "deployments", "web", "default")
        assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
        progressing = next(c for c in deployment["status"]["conditions"] if c["type"] == "Progressing")
        assert progressing["reason"] == "NewReplicaSetAvailable"
        assert progressing["message"] == f'ReplicaSet "web-{new_hash}" has successfully progressed.'

    cluster.run(scenario)


def test_rollback_reuses_the_old_replicaset_as_a_new_revision(cluster) -> None:
    async def scenario() -> None:
        cluster.create(cluster.deployment("web", replicas=1))
        await cluster.settle()
        cluster.start_pods()
        await cluster.settle()
        for image in ("helloworld:v2", "helloworld:v1"):
            deployment = cluster.get("apps", "deployments", "web", "default")
            deployment["spec"]["template"]["spec"]["containers"][0]["image"] = image
            cluster.update(deployment)
            for _ in range(10):
                await cluster.settle()
                if not cluster.start_pods():
                    break
            await cluster.settle()
        revisions = {rs["spec"]["template"]["spec"]["containers"][0]["image"]:
                     rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                     for rs in cluster.list("apps", "replicasets", "default")}
        assert revisions == {"helloworld:v1": "3", "helloworld:v2": "2"}
        assert rollout_status(cluster.get("apps", "deployments", "web", "default")) == "successfully rolled out"

    cluster.run(scenario)


def test_recreate_stops_old_pods_before_starting_new_ones(cluster) -> None:
    async def scenario() -> None:
        cluster.create(cluster.deployment("web", replicas=2, strategy={"type": "Recreate"}))
        await cluster.settle()
        cluster.start_pods()
        await cluster.settle()
        deployment = cluster.get("apps", "deployments", "web", "default")
        assert "rollingUpdate" not in deployment["spec"]["strategy"]
        deployment["spec"]["template"]["spec"]["containers"][0]["image"] = "helloworld:v2"
        cluster.update(deployment)
        await cluster.settle()
        pods = cluster.list("", "pods", "default")
        assert len(pods) == 2
        assert all(p["spec"]["containers"][0]["image"] == "helloworld:v2" for p in pods)
        cluster.start_pods()
        await cluster.settle()
        assert rollout_status(cluster.get("apps", "deployments", "web", "default")) == "successfully rolled out"

    cluster.run(scenario)


def test_revision_history_limit_deletes_the_oldest_replicasets(cluster) -> None:
    async def scenario() -> None:
        cluster.create(cluster.deployment("web", replicas=1, revisionHistoryLimit=1))
        await cluster.settle()
        cluster.start_pods()
        for image in ("helloworld:v2", "helloworld:v3"):
            await cluster.settle()
            deployment = cluster.get("apps", "deployments", "web", "default")
            deployment["spec"]["template"]["spec"]["containers"][0]["image"] = image
            cluster.update(deployment)
            for _ in range(10):
                await cluster.settle()
                if not cluster.start_pods():
                    break
        await cluster.settle()
        images = sorted(rs["spec"]["template"]["spec"]["containers"][0]["image"]
                        for rs in cluster.list("apps", "replicasets", "default"))
        assert images == ["helloworld:v2", "helloworld:v3"]

    cluster.run(scenario)


def test_replicaset_replaces_a_deleted_pod_and_adopts_orphans(cluster) -> None:
    async def scenario() -> None:
        cluster.create(cluster.deployment("web", replicas=2))
        await cluster.settle()
        victim = cluster.list("", "pods", "default")[0]["metadata"]["name"]
        cluster.delete("", "pods", victim, "default")
        await cluster.settle()
        names = [p["metadata"]["name"] for p in cluster.list("", "pods", "default")]
        assert len(names) == 2 and victim not in names

        # A pod matching the selector without a controller is adopted, and the surplus deleted.
        (rs,) = cluster.list("apps", "replicasets", "default")
        cluster.create({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": "stray", "namespace": "default",
                                     "labels": rs["spec"]["selector"]["matchLabels"]},
                        "spec": {"containers": [{"name": "app", "image": "helloworld:v1"}]}})
        await cluster.settle()
        pods = cluster.list("", "pods", "default")
        assert len(pods) == 2
        assert all(p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"] for p in pods)

    cluster.run(scenario)
