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
