"""Jobs, StatefulSets and DaemonSets against a store and a hand-driven kubelet: what kubectl would show at each step."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from labkit.core import kubetime
from labkit.emulator.api.admission import default_object
from labkit.emulator.controllers import (
    ControllerManager,
    CronJobController,
    DaemonSetController,
    GarbageCollector,
    JobController,
    StatefulSetController,
)
from labkit.emulator.controllers.daemonsets import should_run
from labkit.emulator.controllers.statefulsets import ordinal

from .conftest import NODE, Cluster

BACKOFF = 0.05


def workload_cluster() -> Cluster:
    cluster = Cluster()
    store = cluster.store
    cluster.manager = ControllerManager([
        JobController(store, NODE, backoff=BACKOFF),
        StatefulSetController(store, NODE),
        DaemonSetController(store),
        GarbageCollector(store),
    ])
    return cluster


def create(cluster: Cluster, obj: dict[str, Any]) -> dict[str, Any]:
    """What the API server does: a uid before admission (a Job's selector names it), defaulting, the write."""
    group = obj["apiVersion"].rpartition("/")[0]
    plural = {"Job": "jobs", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets", "Node": "nodes"}[obj["kind"]]
    uid = cluster.store.new_uid()
    obj["metadata"]["uid"] = uid
    return cluster.store.create(group, plural, default_object(obj), uid=uid)


def job(name: str = "pi", *, restart: str = "Never", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "default"},
            "spec": {**spec, "template": {"spec": {"restartPolicy": restart, "containers": [
                {"name": "main", "image": "busybox", "command": ["sh", "-c", "echo hi"]}]}}}}


def finish(cluster: Cluster, pod: dict[str, Any], exit_code: int, restarts: int = 0) -> None:
    """The kubelet's report of a container that ended (``Never``) or keeps failing (``OnFailure``)."""
    pod = cluster.get("", "pods", pod["metadata"]["name"], "default")
    stamp = kubetime.now()
    terminated = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                  "startedAt": stamp, "finishedAt": stamp}
    phase = "Running" if restarts else ("Succeeded" if exit_code == 0 else "Failed")
    state = {"running": {"startedAt": stamp}} if restarts else {"terminated": terminated}
    pod["status"] = {"phase": phase, "containerStatuses": [
        {"name": "main", "state": state, "restartCount": restarts, "ready": False, "image": "busybox"}]}
    cluster.store.update_status("", "pods", pod)


def pods_of(cluster: Cluster, selector: str) -> list[dict[str, Any]]:
    return sorted(cluster.list("", "pods", "default", selector), key=lambda p: p["metadata"]["creationTimestamp"])


def conditions(obj: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c["type"], c["status"], c.get("reason", "")) for c in obj["status"].get("conditions") or ()]


def settle_until(cluster: Cluster, check: Any) -> Any:
    async def wait() -> Any:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            await cluster.settle()
            if result := check():
                return result
            await asyncio.sleep(BACKOFF / 2)
        raise AssertionError("condition not reached")
    return wait()


# --- Jobs -------------------------------------------------------------------------------------------------------


def test_a_job_runs_parallel_pods_until_its_completions_succeed() -> None:
    cluster = workload_cluster()

    async def scenario() -> None:
        created = create(cluster, job(completions=3, parallelism=2))
        uid = created["metadata"]["uid"]
        assert created["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        await cluster.settle()
        pods = pods_of(cluster, "job-name=pi")
        assert len(pods) == 2
        assert all(p["metadata"]["labels"]["controller-uid"] == uid for p in pods)
        assert all(p["metadata"]["ownerReferences"][0]["kind"] == "Job" for p in pods)
        status = cluster.get("batch", "jobs", "pi", "default")["status"]
        assert status["active"] == 2 and status["ready"] == 0 and "startTime" in status
        finish(cluster, pods[0], 0)
        await cluster.settle()
        # One succeeded, two missing: still two at once, no more than the completions left.
        status = cluster.get("batch", "jobs", "pi", "default")["status"]
        assert (status["active"], status["succeeded"]) == (2, 1)
        for pod in pods_of(cluster, "job-name=pi"):
            if pod["status"].get("phase") != "Succeeded":
                finish(cluster, pod, 0)
        await cluster.settle()
        done = cluster.get("batch", "jobs", "pi", "default")
        assert conditions(done) == [("SuccessCriteriaMet", "True", "CompletionsReached"),
                                    ("Complete", "True", "CompletionsReached")]
        assert done["status"]["succeeded"] == 3 and "active" not in done["status"]
        assert done["status"]["completionTime"] >= done["status"]["startTime"]
        assert len(pods_of(cluster, "job-name=pi")) == 3

    cluster.run(scenario)


def test_failed_pods_are_replaced_after_a_back_off_until_the_backoff_limit() -> None:
    cluster = workload_cluster()

    async def scenario() -> None:
        create(cluster, job(backoffLimit=2))
        await cluster.settle()
        for attempt in range(3):
            active = [p for p in pods_of(cluster, "job-name=pi") if p["status"].get("phase") == "Pending"]
            assert len(active) == 1, f"attempt {attempt}"
            finish(cluster, active[0], 1)
            if attempt < 2:
                await settle_until(cluster, lambda: any(p["status"].get("phase") == "Pending"
                                                        for p in pods_of(cluster, "job-name=pi")))
        await cluster.settle()
        failed = cluster.get("batch", "jobs", "pi", "default")
        assert failed["status"]["failed"] == 3
        assert conditions(failed) == [("FailureTarget", "True", "BackoffLimitExceeded"),
                                      ("Failed", "True", "BackoffLimitExceeded")]
        assert "completionTime" not in failed["status"]
        assert len(pods_of(cluster, "job-name=pi")) == 3  # no fourth attempt

    cluster.run(scenario)


def test_on_failure_restarts_count_against_the_backoff_limit() -> None:
    cluster = workload_cluster()

    async def scenario() -> None:
        create(cluster, job(backoffLimit=2, restart="OnFailure"))
        await cluster.settle()
        (pod,) = pods_of(cluster, "job-name=pi")
        finish(cluster, pod, 1, restarts=1)
        await cluster.settle()
        assert not conditions(cluster.get("batch", "jobs", "pi", "default"))
        finish(cluster, pod, 1, restarts=2)
        await cluster.settle()
        # Decided at once, final once the running pod has stopped.
        failing = cluster.get("batch", "jobs", "pi", "default")
        assert conditions(failing) == [("FailureTarget", "True", "BackoffLimitExceeded")]
        assert failing["status"]["terminating"] == 1 and "active" not in failing["status"]
        (pod,) = pods_of(cluster, "job-name=pi")
        assert pod["metadata"].get("deletionTimestamp")
        kubelet_removes_terminating(cluster)
        await cluster.settle()
        failed = cluster.get("batch", "jobs", "pi", "default")
        assert conditions(failed) == [("FailureTarget", "True", "BackoffLimitExceeded"),
                                      ("Failed", "True", "BackoffLimitExceeded")]
        assert failed["status"]["terminating"] == 0

    cluster.run(scenario)


def test_a_job_past_its_deadline_fails() -> None:
    cluster = workload_cluster()

    async def scenario() -> None:
        create(cluster, job(activeDeadlineSeconds=1))
        await cluster.settle()  # returns once the deadline has passed and been acted on
        assert all(p["metadata"].get("deletionTimestamp") for p in pods_of(cluster, "job-name=pi"))
        kubelet_removes_terminating(cluster)
        await cluster.settle()
        failed = cluster.get("batch", "jobs", "pi", "default")
        assert conditions(failed)[-1] == ("Failed", "True", "DeadlineExceeded")

    cluster.run(scenario)


def test_a_finished_job_goes_with_its_pods_after_its_ttl() -> None:
    cluster = workload_cluster()

    async def scenario() -> None:
        create(cluster, job(ttlSecondsAfterFinished=0))
        await cluster.settle()
        finish(cluster, pods_of(cluster, "job-name=pi")[0], 0)
        await cluster.settle()
        assert cluster.find("batch", "jobs", "pi", "default") is None
        assert pods_of(cluster, "job-name=pi") == []

    cluster.run(scenario)


# --- StatefulSets -----------------------------------------------------------------------------------------------


def stateful_set(replicas: int = 3, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"serviceName": "nginx", "replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}, **spec}}


def names(cluster: Cluster, selector: str = "app=web") -> list[str]:
    return sorted(p["metadata"]["name"] for p in cluster.list("", "pods", "default", selector))


def kubelet_removes_terminating(cluster: Cluster) -> None:
    for pod in cluster.list("", "pods", "default"):
        if pod["metadata"].get("deletionTimestamp"):
            cluster.store.delete("", "pods", pod["metadata"]["name"], "default")


def test_ordered_ready_creates_each_ordinal_after_the_previous_is_ready_and_scales_down_in_reverse() -> None:
    cluster = workload_cluster()

    async def scenario() -> None:
        create(cluster, stateful_set(3))
        await cluster.settle()
        assert names(cluster) == ["web-0"]
        web0 = cluster.get("", "pods", "web-0", "default")
        assert web0["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "web-0"
        assert web0["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "0"
        assert (web0["spec"]["hostname"], web0["spec"]["subdomain"]) == ("web-0", "nginx")
        cluster.start_pods(ready=False)
        await cluster.settle()
        assert names(cluster) == ["web-0"]  # Running but not Ready: web-1 waits
        for expected in (["web-0", "web-1"], ["web-0", "web-1", "web-2"]):
            cluster.start_pods()
            await cluster.settle()
            assert names(cluster) == expected
        cluster.start_pods()
        await cluster.settle()
        status = cluster.get("apps", "statefulsets", "web", "default")["status"]
        assert {k: status[k] for k in ("replicas", "readyReplicas", "currentReplicas", "updatedReplicas",
                                       "availableReplicas")} == dict.fromkeys(
            ("replicas", "readyReplicas", "currentReplicas", "updatedReplicas", "availableReplicas"), 3)
        assert status["currentRevision"] == status["updateRevision"] and status["observedGeneration"] == 1

        sts = cluster.get("apps", "statefulsets", "web", "default")
        sts["spec"]["replicas"] = 1
        cluster.store.update("apps", "statefulsets", sts)
        await cluster.settle()
        terminating = [p["metadata"]["name"] for p in cluster.list("", "pods", "default")
                       if p["metadata"].get("deletionTimestamp")]
        assert terminating == ["web-2"]  # the highest ordinal first, and only it until it is gone
        kubelet_removes_terminating(cluster)
        await cluster.settle()
        kubelet_removes_terminating(cluster)
        await cluster.settle()
        assert names(cluster) == ["web-0"]

    cluster.run(scenario)


def test_parallel_creates_every_pod_at_once_and_a_template_change_rolls_from_the_top() -> None:
    cluster = workload_cluster()

    async def scenario() -> None:
        create(cluster, stateful_set(3, podManagementPolicy="Parallel"))
        await cluster.settle()
        assert names(cluster) == ["web-0", "web-1", "web-2"]
        cluster.start_pods()
        await cluster.settle()
        old = cluster.get("apps", "statefulsets", "web", "default")
        old["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.28"
        cluster.store.update("apps", "statefulsets", old)
        await cluster.settle()
        terminating = [p["metadata"]["name"] for p in cluster.list("", "pods", "default")
                       if p["metadata"].get("deletionTimestamp")]
        assert terminating == ["web-2"]
        kubelet_removes_terminating(cluster)
        await cluster.settle()
        web2 = cluster.get("", "pods", "web-2", "default")
        assert web2["spec"]["containers"][0]["image"] == "nginx:1.28"
        status = cluster.get("apps", "statefulsets", "web", "default")["status"]
        assert status["updatedReplicas"] == 1 and status["currentRevision"] != status["updateRevision"]

    cluster.run(scenario)


def test_ordinals_belong_to_their_set_only() -> None:
    assert ordinal("web", {"metadata": {"name": "web-12"}}) == 12
    assert ordinal("web", {"metadata": {"name": "web-a"}}) is None
    assert ordinal("web", {"metadata": {"name": "webby-1"}}) is None


# --- DaemonSets -------------------------------------------------------------------------------------------------


def node(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                                                       **labels}}}


def daemon_set(**template_spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "agent", "image": "busybox"}], **template_spec}}}}


def test_a_daemon_set_runs_one_pinned_pod_on_each_matching_node() -> None:
    cluster = workload_cluster()

    async def scenario() -> None:
        for name, labels in ((NODE, {"disk": "ssd"}), ("worker-1", {"disk": "ssd"}), ("worker-2", {})):
            create(cluster, node(name, **labels))
        create(cluster, daemon_set(nodeSelector={"disk": "ssd"}))
        await cluster.settle()
        pods = cluster.list("", "pods", "default", "app=agent")
        assert sorted(p["spec"]["nodeName"] for p in pods) == sorted([NODE, "worker-1"])
        for pod in pods:
            term = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            assert term["nodeSelectorTerms"][0]["matchFields"][0]["values"] == [pod["spec"]["nodeName"]]
            assert {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"} in \
                pod["spec"]["tolerations"]
        cluster.start_pods()
        await cluster.settle()
        status = cluster.get("apps", "daemonsets", "agent", "default")["status"]
        assert status == {"currentNumberScheduled": 2, "desiredNumberScheduled": 2, "numberMisscheduled": 0,
                          "numberReady": 2, "observedGeneration": 1, "updatedNumberScheduled": 2,
                          "numberAvailable": 2}
        cluster.store.delete("", "nodes", "worker-1")
        await cluster.settle()
        kubelet_removes_terminating(cluster)
        await cluster.settle()
        assert [p["spec"]["nodeName"] for p in cluster.list("", "pods", "default", "app=agent")] == [NODE]

    cluster.run(scenario)


def test_node_affinity_decides_where_a_daemon_runs() -> None:
    required = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}
    ds = daemon_set(affinity=required)
    assert should_run(ds, node("n1", zone="a"))
    assert not should_run(ds, node("n2", zone="b"))
    assert not should_run(ds, node("n3"))
    assert should_run(daemon_set(), node("n4"))


# --- CronJobs ---------------------------------------------------------------------------------------------------


def cron_job(policy: str = "Allow", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick", "namespace": "default"},
            "spec": {"schedule": "*/5 * * * *", "concurrencyPolicy": policy, **spec,
                     "jobTemplate": {"metadata": {"labels": {"app": "tick"}}, "spec": job()["spec"]}}}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def complete(cluster: Cluster, name: str) -> None:
    found = cluster.get("batch", "jobs", name, "default")
    stamp = kubetime.now()
    found["status"] = {"startTime": stamp, "completionTime": stamp, "succeeded": 1,
                       "conditions": [{"type": "Complete", "status": "True"}]}
    cluster.store.update_status("batch", "jobs", found)


def cron_setup(policy: str = "Allow", **spec: Any) -> tuple[Cluster, CronJobController, Clock, float]:
    cluster = Cluster()
    created = cluster.store.create("batch", "cronjobs", default_object(cron_job(policy, **spec)))
    born = kubetime.timestamp(created["metadata"]["creationTimestamp"]) or 0.0
    clock = Clock(born)

    async def create_job(obj: dict[str, Any]) -> dict[str, Any]:
        return create(cluster, obj)

    return cluster, CronJobController(cluster.store, clock=clock, create_job=create_job), clock, born


def test_a_cron_job_makes_one_job_per_scheduled_time_named_after_it() -> None:
    cluster, controller, clock, born = cron_setup(successfulJobsHistoryLimit=1)
    key = ("default", "tick")

    async def scenario() -> None:
        await controller.reconcile(key)
        assert cluster.list("batch", "jobs", "default") == []  # nothing due since creation
        clock.now = born + 600
        await controller.reconcile(key)
        await controller.reconcile(key)  # the same time is not run twice
        (first,) = cluster.list("batch", "jobs", "default")
        due = (born + 600) // 300 * 300
        assert first["metadata"]["name"] == f"tick-{int(due // 60)}"
        assert first["metadata"]["labels"] == {"app": "tick"}
        assert first["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] == \
            kubetime.format_time(due)
        assert first["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
        assert first["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"] == \
            first["metadata"]["uid"]
        status = cluster.get("batch", "cronjobs", "tick", "default")["status"]
        assert status["lastScheduleTime"] == kubetime.format_time(due)
        assert [ref["name"] for ref in status["active"]] == [first["metadata"]["name"]]
        complete(cluster, first["metadata"]["name"])
        clock.now += 300
        await controller.reconcile(key)
        complete(cluster, f"tick-{int((due + 300) // 60)}")
        await controller.reconcile(key)
        # History: one successful Job kept, the older one deleted.
        assert [j["metadata"]["name"] for j in cluster.list("batch", "jobs", "default")] == \
            [f"tick-{int((due + 300) // 60)}"]
        status = cluster.get("batch", "cronjobs", "tick", "default")["status"]
        assert "active" not in status and "lastSuccessfulTime" in status

    asyncio.run(scenario())


def test_forbid_skips_a_run_while_one_is_active_and_replace_deletes_it() -> None:
    for policy, expected in (("Forbid", 1), ("Replace", 1), ("Allow", 2)):
        cluster, controller, clock, born = cron_setup(policy)

        async def scenario(cluster: Cluster = cluster, controller: CronJobController = controller,
                           clock: Clock = clock, born: float = born) -> list[str]:
            clock.now = born + 600
            await controller.reconcile(("default", "tick"))
            clock.now += 300
            await controller.reconcile(("default", "tick"))
            return sorted(j["metadata"]["name"] for j in cluster.list("batch", "jobs", "default"))

        names = asyncio.run(scenario())
        assert len(names) == expected, policy
        if policy == "Replace":
            assert names[0].endswith(str(int(((born + 600) // 300 * 300 + 300) // 60)))


def test_a_suspended_cron_job_and_a_missed_starting_deadline_run_nothing() -> None:
    for spec in ({"suspend": True}, {"startingDeadlineSeconds": 10}):
        cluster, controller, clock, born = cron_setup(**spec)
        clock.now = (born + 600) // 300 * 300 + 60  # a minute after a scheduled time: past a 10 s deadline
        asyncio.run(controller.reconcile(("default", "tick")))
        assert cluster.list("batch", "jobs", "default") == [], spec
    cluster, controller, clock, born = cron_setup(startingDeadlineSeconds=120)
    clock.now = (born + 600) // 300 * 300 + 60
    asyncio.run(controller.reconcile(("default", "tick")))
    assert len(cluster.list("batch", "jobs", "default")) == 1


def test_an_indexed_job_runs_each_index_until_it_succeeds_once() -> None:
    cluster = workload_cluster()

    async def scenario() -> None:
        create(cluster, job(completions=3, parallelism=2, completionMode="Indexed"))
        await cluster.settle()
        pods = pods_of(cluster, "job-name=pi")
        indexes = sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods)
        assert indexes == ["0", "1"]
        zero = next(p for p in pods if p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == "0")
        assert zero["metadata"]["name"].startswith("pi-0-") and zero["spec"]["hostname"] == "pi-0"
        assert {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}} in \
            zero["spec"]["containers"][0]["env"]
        finish(cluster, zero, 0)
        await cluster.settle()
        running = [p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
                   for p in pods_of(cluster, "job-name=pi") if p["status"].get("phase") != "Succeeded"]
        assert sorted(running) == ["1", "2"]
        assert cluster.get("batch", "jobs", "pi", "default")["status"]["completedIndexes"] == "0"
        for pod in pods_of(cluster, "job-name=pi"):
            if pod["status"].get("phase") != "Succeeded":
                finish(cluster, pod, 0)
        await cluster.settle()
        done = cluster.get("batch", "jobs", "pi", "default")
        assert done["status"]["completedIndexes"] == "0-2" and done["status"]["succeeded"] == 3
        assert conditions(done)[-1] == ("Complete", "True", "CompletionsReached")

    cluster.run(scenario)
