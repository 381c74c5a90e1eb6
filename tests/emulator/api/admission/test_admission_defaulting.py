"""Defaulting of built-in kinds: what a real API server fills in on create and update."""

from __future__ import annotations

import base64

import pytest

from labkit.emulator.api.admission import default_object, image_pull_policy


def test_deployment_defaults() -> None:
    deployment = default_object({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx",
                                                       "ports": [{"containerPort": 80}]}]}}},
    })
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    pod_spec = spec["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Always"
    assert pod_spec["dnsPolicy"] == "ClusterFirst"
    assert pod_spec["terminationGracePeriodSeconds"] == 30
    assert pod_spec["serviceAccountName"] == "default"
    assert pod_spec["schedulerName"] == "default-scheduler"
    (container,) = pod_spec["containers"]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "File"
    assert container["imagePullPolicy"] == "Always"
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert default_object(deployment) == deployment  # idempotent


@pytest.mark.parametrize(("image", "policy"), [
    ("nginx", "Always"), ("nginx:latest", "Always"), ("docker.io/istio/examples-helloworld-v1:1.0", "IfNotPresent"),
    ("localhost:5000/app", "Always"), ("app@sha256:abc", "IfNotPresent"),
])
def test_image_pull_policy(image: str, policy: str) -> None:
    assert image_pull_policy(image) == policy


def test_service_secret_and_namespace_defaults() -> None:
    service = default_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                              "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["sessionAffinity"] == "None"
    assert service["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert service["spec"]["ipFamilies"] == ["IPv4"]
    assert service["spec"]["internalTrafficPolicy"] == "Cluster"

    secret = default_object({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                             "stringData": {"password": "hunter2"}})
    assert secret["type"] == "Opaque"
    assert "stringData" not in secret
    assert base64.b64decode(secret["data"]["password"]) == b"hunter2"

    namespace = default_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "sample"}})
    assert namespace["spec"]["finalizers"] == ["kubernetes"]

    custom = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "spec": {}}
    assert default_object(custom) == custom


def test_a_job_selects_its_pods_by_its_own_uid() -> None:
    job = default_object({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "uid": "u-1"},
                          "spec": {"template": {"spec": {"restartPolicy": "Never",
                                                         "containers": [{"name": "pi", "image": "busybox"}]}}}})
    spec = job["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 6)
    assert (spec["completionMode"], spec["suspend"], spec["podReplacementPolicy"]) == \
        ("NonIndexed", False, "TerminatingOrFailed")
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}
    assert spec["template"]["metadata"]["labels"] == {
        "job-name": "pi", "batch.kubernetes.io/job-name": "pi",
        "controller-uid": "u-1", "batch.kubernetes.io/controller-uid": "u-1"}
    assert default_object(job) == job
    queue = default_object({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "q", "uid": "u-2"},
                            "spec": {"parallelism": 3, "manualSelector": True, "selector": {"matchLabels": {"a": "b"}},
                                     "template": {"metadata": {"labels": {"a": "b"}}, "spec": {}}}})
    assert "completions" not in queue["spec"]
    assert queue["spec"]["selector"] == {"matchLabels": {"a": "b"}}
    assert queue["spec"]["template"]["metadata"]["labels"] == {"a": "b"}


def test_stateful_and_daemon_set_defaults() -> None:
    sts = default_object({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
                          "spec": {"template": {"spec": {}}}})["spec"]
    assert (sts["replicas"], sts["podManagementPolicy"], sts["revisionHistoryLimit"]) == (1, "OrderedReady", 10)
    assert sts["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    ds = default_object({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
                         "spec": {"template": {"spec": {}}}})["spec"]
    assert ds["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    cron = default_object({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
                           "spec": {"schedule": "@hourly", "jobTemplate": {"spec": {"template": {"spec": {}}}}}})
    assert (cron["spec"]["concurrencyPolicy"], cron["spec"]["successfulJobsHistoryLimit"]) == ("Allow", 3)
    assert "selector" not in cron["spec"]["jobTemplate"]["spec"]
