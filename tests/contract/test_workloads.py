"""Jobs, StatefulSets and DaemonSets driven by kubectl and the official client, as a learner drives them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from labkit.emulator import launching
from labkit.testing import eventually

# The official client leaves pooled TLS sockets to the garbage collector; not what is tested here.
pytestmark = [pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]
CTX = ("--context", "cluster3")


@pytest.fixture(scope="module")
def api(emulator: launching.Emulator) -> Iterator[client.ApiClient]:
    with config.new_client_from_config(str(emulator.kubeconfig), context="cluster3") as api_client:
        yield api_client


@pytest.fixture(scope="module")
def workloads(api: client.ApiClient) -> str:
    client.CoreV1Api(api).create_namespace({"metadata": {"name": "workloads"}})
    return "workloads"


def test_a_busybox_job_completes_and_kubectl_wait_returns(kubectl: Any, workloads: str) -> None:
    ns = ("-n", workloads)
    out = kubectl(*CTX, *ns, "create", "job", "hello", "--image=busybox:1.36", "--", "sh", "-c", "echo job says hi")
    assert out.stdout.strip() == "job.batch/hello created"
    waited = kubectl(*CTX, *ns, "wait", "--for=condition=complete", "job/hello", "--timeout=60s")
    assert waited.stdout.strip() == "job.batch/hello condition met"
    job = json.loads(kubectl(*CTX, *ns, "get", "job", "hello", "-o", "json").stdout)
    uid = job["metadata"]["uid"]
    assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    status = job["status"]
    assert status["succeeded"] == 1 and "active" not in status and status["ready"] == 0
    assert status["startTime"] <= status["completionTime"]
    assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [
        ("SuccessCriteriaMet", "True", "CompletionsReached"), ("Complete", "True", "CompletionsReached")]
    pod = json.loads(kubectl(*CTX, *ns, "get", "pods", "-l", "job-name=hello", "-o", "json").stdout)["items"][0]
    labels = pod["metadata"]["labels"]
    assert labels["batch.kubernetes.io/job-name"] == "hello" and labels["job-name"] == "hello"
    assert labels["controller-uid"] == labels["batch.kubernetes.io/controller-uid"] == uid
    assert pod["status"]["phase"] == "Succeeded"
    assert kubectl(*CTX, *ns, "logs", "job/hello").stdout == "job says hi\n"
    table = kubectl(*CTX, *ns, "get", "jobs").stdout.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert table[1].split()[:3] == ["hello", "Complete", "1/1"]


def test_a_failing_job_fails_after_its_backoff_limit(kubectl: Any, workloads: str) -> None:
    manifest = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "doomed", "namespace": workloads},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "alpine", "command": ["sh", "-c", "echo trying; exit 3"]}]}}},
    }
    kubectl(*CTX, "apply", "-f", "-", input=json.dumps(manifest))
    waited = kubectl(*CTX, "-n", workloads, "wait", "--for=condition=failed", "job/doomed", "--timeout=60s")
    assert waited.stdout.strip() == "job.batch/doomed condition met"
    status = json.loads(kubectl(*CTX, "-n", workloads, "get", "job", "doomed", "-o", "json").stdout)["status"]
    assert status["failed"] == 1 and "succeeded" not in status and "completionTime" not in status
    failed = [c for c in status["conditions"] if c["type"] == "Failed"]
    assert failed[0]["reason"] == "BackoffLimitExceeded"
    assert failed[0]["message"] == "Job has reached the specified backoff limit"
    row = kubectl(*CTX, "-n", workloads, "get", "job", "doomed").stdout.splitlines()[1].split()
    assert row[:3] == ["doomed", "Failed", "0/1"]
    pods = json.loads(kubectl(*CTX, "-n", workloads, "get", "pods", "-l", "job-name=doomed", "-o", "json").stdout)
    assert [p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] for p in pods["items"]] == [3]


def test_a_stateful_set_makes_web_0_before_web_1_and_each_resolves_by_its_stable_name(kubectl: Any,
                                                                                          workloads: str) -> None:
    ns = ("-n", workloads)
    manifests = [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nginx", "labels": {"app": "nginx"}},
         "spec": {"clusterIP": "None", "selector": {"app": "nginx"}, "ports": [{"name": "web", "port": 80}]}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
         "spec": {"serviceName": "nginx", "replicas": 2, "selector": {"matchLabels": {"app": "nginx"}},
                  "template": {"metadata": {"labels": {"app": "nginx"}},
                               "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27",
                                                        "ports": [{"containerPort": 80, "name": "web"}]}]}},
                  "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {
                      "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}},
    ]
    for manifest in manifests:
        kubectl(*CTX, *ns, "apply", "-f", "-", input=json.dumps(manifest))
    kubectl(*CTX, *ns, "rollout", "status", "statefulset/web", "--timeout=60s")
    pods = {p["metadata"]["name"]: p for p in json.loads(
        kubectl(*CTX, *ns, "get", "pods", "-l", "app=nginx", "-o", "json").stdout)["items"]}
    assert sorted(pods) == ["web-0", "web-1"]
    web0, web1 = pods["web-0"], pods["web-1"]
    # OrderedReady: web-1 was created only once web-0 was Running and Ready.
    ready0 = next(c for c in web0["status"]["conditions"] if c["type"] == "Ready")["lastTransitionTime"]
    assert web1["metadata"]["creationTimestamp"] >= ready0
    assert web1["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "web-1"
    assert web1["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "1"
    assert (web1["spec"]["hostname"], web1["spec"]["subdomain"]) == ("web-1", "nginx")
    status = json.loads(kubectl(*CTX, *ns, "get", "sts", "web", "-o", "json").stdout)["status"]
    assert {key: status[key] for key in ("replicas", "readyReplicas", "currentReplicas", "updatedReplicas",
                                         "availableReplicas")} == dict.fromkeys(
        ("replicas", "readyReplicas", "currentReplicas", "updatedReplicas", "availableReplicas"), 2)
    assert kubectl(*CTX, *ns, "get", "sts").stdout.splitlines()[1].split()[:2] == ["web", "2/2"]
    lookup = eventually(lambda: (out := kubectl(*CTX, *ns, "exec", "web-1", "--", "nslookup", "web-0.nginx",
                                                check=False)).returncode == 0 and out, what="web-0.nginx resolving")
    assert f"Name:\tweb-0.nginx.{workloads}.svc.cluster.local" in lookup.stdout
    assert f"Address: {web0['status']['podIP']}" in lookup.stdout
    events = kubectl(*CTX, *ns, "get", "events", "--field-selector", "involvedObject.name=web").stdout
    assert "VolumeClaimTemplatesNotPersistent" in events
    # Scaling down removes the highest ordinal.
    kubectl(*CTX, *ns, "scale", "sts", "web", "--replicas=1")
    eventually(lambda: kubectl(*CTX, *ns, "get", "pods", "-l", "app=nginx", "-o",
                               "jsonpath={.items[*].metadata.name}").stdout == "web-0", what="web-1 gone")


def test_a_daemon_set_runs_one_pod_per_node(kubectl: Any, workloads: str) -> None:
    ns = ("-n", workloads)
    manifest = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
                "spec": {"selector": {"matchLabels": {"app": "agent"}},
                         "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [
                             {"name": "agent", "image": "busybox", "command": ["sleep", "infinity"]}]}}}}
    kubectl(*CTX, *ns, "apply", "-f", "-", input=json.dumps(manifest))
    kubectl(*CTX, *ns, "rollout", "status", "daemonset/agent", "--timeout=60s")
    nodes = kubectl(*CTX, "get", "nodes", "-o", "jsonpath={.items[*].metadata.name}").stdout.split()
    pods = json.loads(kubectl(*CTX, *ns, "get", "pods", "-l", "app=agent", "-o", "json").stdout)["items"]
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(nodes)
    pinned = pods[0]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert pinned == {"nodeSelectorTerms": [{"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": [pods[0]["spec"]["nodeName"]]}]}]}
    status = json.loads(kubectl(*CTX, *ns, "get", "ds", "agent", "-o", "json").stdout)["status"]
    assert (status["desiredNumberScheduled"], status["currentNumberScheduled"], status["numberReady"],
            status["numberAvailable"]) == (len(nodes),) * 4
    row = kubectl(*CTX, *ns, "get", "ds").stdout.splitlines()[1].split()
    assert row[:6] == ["agent", *[str(len(nodes))] * 5]


def test_a_deleted_pod_is_terminating_for_its_grace_period_then_gone(api: client.ApiClient, workloads: str) -> None:
    core = client.CoreV1Api(api)
    # A shell that ignores SIGTERM: only the SIGKILL at the end of the grace period stops it.
    core.create_namespaced_pod(workloads, {
        "metadata": {"name": "stubborn"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [
            {"name": "main", "image": "busybox", "command": ["sh", "-c", "trap '' TERM; while :; do sleep 1; done"]}]}})
    eventually(lambda: core.read_namespaced_pod("stubborn", workloads).status.phase == "Running", what="Running")
    marked = core.delete_namespaced_pod("stubborn", workloads)
    assert marked.metadata.deletion_grace_period_seconds == 1
    assert marked.metadata.deletion_timestamp is not None
    started = time.monotonic()

    def gone() -> bool:
        try:
            core.read_namespaced_pod("stubborn", workloads)
        except ApiException as exc:
            return exc.status == 404
        return False

    eventually(gone, what="the pod removed after its grace period")
    assert time.monotonic() - started >= 0.5  # the SIGKILL came at the end of the grace period, not at once


def test_a_forced_delete_removes_the_pod_at_once(kubectl: Any, workloads: str) -> None:
    ns = ("-n", workloads)
    kubectl(*CTX, *ns, "run", "forced", "--image=busybox", "--", "sleep", "infinity")
    kubectl(*CTX, *ns, "wait", "--for=condition=Ready", "pod/forced", "--timeout=60s")
    out = kubectl(*CTX, *ns, "delete", "pod", "forced", "--grace-period=0", "--force", "--wait=false")
    assert 'pod "forced" force deleted' in out.stdout
    gone = kubectl(*CTX, *ns, "get", "pod", "forced", check=False)
    assert gone.returncode == 1 and 'pods "forced" not found' in gone.stderr


def test_a_finished_pod_goes_at_once_and_a_job_can_be_read_with_the_python_client(api: client.ApiClient,
                                                                                  workloads: str) -> None:
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job(workloads, {
        "metadata": {"name": "quick"},
        "spec": {"completions": 2, "parallelism": 2, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "alpine:3.20", "command": ["echo", "done"]}]}}}})
    job = eventually(lambda: (j := batch.read_namespaced_job("quick", workloads)).status.succeeded == 2 and j,
                     what="two completions")
    assert [c.type for c in job.status.conditions] == ["SuccessCriteriaMet", "Complete"]
    assert job.spec.completions == 2 and job.spec.backoff_limit == 6
    core = client.CoreV1Api(api)
    pods = core.list_namespaced_pod(workloads, label_selector="job-name=quick").items
    assert len(pods) == 2
    deleted = core.delete_namespaced_pod(pods[0].metadata.name, workloads)
    assert deleted.metadata.deletion_grace_period_seconds is None  # a Succeeded pod is not Terminating


def test_a_job_that_would_restart_forever_is_refused(kubectl: Any, workloads: str) -> None:
    manifest = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "forever", "namespace": workloads},
                "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}}}
    out = kubectl(*CTX, "apply", "-f", "-", input=json.dumps(manifest), check=False)
    assert out.returncode == 1
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"' \
        in out.stderr


def test_kubectl_create_cronjob_and_a_job_from_it(kubectl: Any, workloads: str) -> None:
    ns = ("-n", workloads)
    out = kubectl(*CTX, *ns, "create", "cronjob", "tick", "--image=busybox", "--schedule=*/5 * * * *", "--",
                  "echo", "tick")
    assert out.stdout.strip() == "cronjob.batch/tick created"
    row = kubectl(*CTX, *ns, "get", "cj", "tick").stdout.splitlines()
    assert row[0].split() == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"]
    assert row[1].split()[:8] == ["tick", "*/5", "*", "*", "*", "*", "<none>", "False"]
    kubectl(*CTX, *ns, "create", "job", "tick-now", "--from=cronjob/tick")
    kubectl(*CTX, *ns, "wait", "--for=condition=complete", "job/tick-now", "--timeout=60s")
    assert kubectl(*CTX, *ns, "logs", "job/tick-now").stdout == "tick\n"
    refused = kubectl(*CTX, *ns, "create", "cronjob", "bad", "--image=busybox", "--schedule=every minute",
                      check=False)
    assert refused.returncode == 1 and 'spec.schedule: Invalid value: "every minute"' in refused.stderr


def test_discovery_and_field_validation_know_the_workload_kinds(kubectl: Any, workloads: str) -> None:
    resources = kubectl(*CTX, "api-resources", "--api-group=batch", "--no-headers").stdout.splitlines()
    assert [line.split() for line in resources] == [["cronjobs", "cj", "batch/v1", "true", "CronJob"],
                                                     ["jobs", "batch/v1", "true", "Job"]]
    apps = {line.split()[0]: line.split()[1] for line in
            kubectl(*CTX, "api-resources", "--api-group=apps", "--no-headers").stdout.splitlines()}
    assert (apps["statefulsets"], apps["daemonsets"]) == ("sts", "ds")
    manifest = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "typo", "namespace": workloads},
                "spec": {"completion": 2, "template": {"spec": {"restartPolicy": "Never", "containers": [
                    {"name": "main", "image": "busybox"}]}}}}
    refused = kubectl(*CTX, "create", "-f", "-", input=json.dumps(manifest), check=False)
    assert refused.returncode == 1 and 'unknown field "spec.completion"' in refused.stderr


def test_an_indexed_job_tells_each_pod_its_index(kubectl: Any, workloads: str) -> None:
    manifest = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "indexed", "namespace": workloads},
                "spec": {"completions": 2, "parallelism": 2, "completionMode": "Indexed",
                         "template": {"spec": {"restartPolicy": "Never", "containers": [
                             {"name": "main", "image": "busybox",
                              "command": ["sh", "-c", "echo index $JOB_COMPLETION_INDEX"]}]}}}}
    kubectl(*CTX, "apply", "-f", "-", input=json.dumps(manifest))
    kubectl(*CTX, "-n", workloads, "wait", "--for=condition=complete", "job/indexed", "--timeout=60s")
    pods = json.loads(kubectl(*CTX, "-n", workloads, "get", "pods", "-l", "job-name=indexed", "-o",
                              "json").stdout)["items"]
    said = sorted(kubectl(*CTX, "-n", workloads, "logs", p["metadata"]["name"]).stdout.strip() for p in pods)
    assert said == ["index 0", "index 1"]
    status = json.loads(kubectl(*CTX, "-n", workloads, "get", "job", "indexed", "-o", "json").stdout)["status"]
    assert status["completedIndexes"] == "0-1"


def test_the_python_client_reads_stateful_and_daemon_sets_back(api: client.ApiClient, workloads: str) -> None:
    apps = client.AppsV1Api(api)
    labels = {"app": "py-db"}
    template = {"metadata": {"labels": labels}, "spec": {"containers": [
        {"name": "db", "image": "busybox", "command": ["sleep", "infinity"]}]}}
    apps.create_namespaced_stateful_set(workloads, {
        "metadata": {"name": "py-db"},
        "spec": {"serviceName": "py-db", "replicas": 2, "podManagementPolicy": "Parallel",
                 "selector": {"matchLabels": labels}, "template": template}})
    sts = eventually(lambda: (s := apps.read_namespaced_stateful_set("py-db", workloads)).status.ready_replicas == 2
                     and s, what="two ready replicas")
    assert sts.spec.pod_management_policy == "Parallel"
    assert sts.status.current_revision == sts.status.update_revision
    assert sts.status.observed_generation == sts.metadata.generation
    names = sorted(p.metadata.name for p in client.CoreV1Api(api).list_namespaced_pod(
        workloads, label_selector="app=py-db").items)
    assert names == ["py-db-0", "py-db-1"]
    apps.create_namespaced_daemon_set(workloads, {
        "metadata": {"name": "py-agent"},
        "spec": {"selector": {"matchLabels": {"app": "py-agent"}},
                 "template": {**template, "metadata": {"labels": {"app": "py-agent"}}}}})
    ds = eventually(lambda: (d := apps.read_namespaced_daemon_set("py-agent", workloads)).status.number_ready == 1
                    and d, what="the daemon ready")
    assert (ds.status.desired_number_scheduled, ds.status.number_misscheduled) == (1, 0)
    assert ds.spec.update_strategy.rolling_update.max_unavailable == 1
