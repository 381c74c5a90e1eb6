"""Jobs, StatefulSets and DaemonSets driven by kubectl and the official client, as a learner drives them."""

from __future__ import annotations

import json
from typing import Any

import pytest

CTX = ("--context", "cluster3")


@pytest.fixture(scope="module")
def workloads(kubectl: Any) -> str:
    kubectl(*CTX, "create", "namespace", "workloads")
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
