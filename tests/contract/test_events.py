"""Events as users meet them: ``kubectl describe``, ``kubectl events``, both Event APIs, and waits that quote them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, config

from labkit.emulator import launching
from labkit.errors import WaitTimeoutError
from labkit.kube import events_for, wait_ready

from .conftest import Kubectl

pytestmark = [pytest.mark.filterwarnings("ignore::ResourceWarning")]

CONTEXT = "cluster3"
NAMESPACE = "events-demo"
HOOKED = "events-hooked"


@pytest.fixture(scope="module")
def api(emulator: launching.Emulator) -> Iterator[client.ApiClient]:
    with config.new_client_from_config(str(emulator.kubeconfig), context=CONTEXT) as api_client:
        core = client.CoreV1Api(api_client)
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        core.create_namespace({"metadata": {"name": HOOKED, "labels": {"events-inject": "enabled"}}})
        yield api_client
        for name in (NAMESPACE, HOOKED):  # the emulator is shared: leave no back-off looping behind
            core.delete_namespace(name)


def deployment(name: str, image: str) -> dict[str, Any]:
    return {"metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "main", "image": image}]}}}}


def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns something truthy (the value), or fail with its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value, f"still {value!r} after {timeout} s"
            return value
        time.sleep(0.2)


def describe(kubectl: Kubectl, *args: str) -> str:
    return kubectl("--context", CONTEXT, "describe", *args).stdout


def events_section(text: str) -> str:
    return text.split("\nEvents:", 1)[1]


def described_events_once(kubectl: Kubectl, word: str, *args: str) -> str:
    """The Events section of ``kubectl describe ARGS`` once it mentions ``word``."""
    def check() -> str:
        section = events_section(describe(kubectl, *args))
        return section if word in section else ""
    return eventually(check)


def test_describe_of_a_running_pod_tells_its_story(api: client.ApiClient, kubectl: Kubectl) -> None:
    client.AppsV1Api(api).create_namespaced_deployment(NAMESPACE, deployment("story", "nginx:1.25"))
    section = described_events_once(kubectl, "Started", "pod", "-n", NAMESPACE, "-l", "app=story")
    for reason, source, message in (
            ("Scheduled", "default-scheduler", f"Successfully assigned {NAMESPACE}/story-"),
            ("Pulled", "kubelet", 'Container image "nginx:1.25" already present on machine'),
            ("Created", "kubelet", "Created container: main"),
            ("Started", "kubelet", "Started container main")):
        line = next(line for line in section.splitlines() if f" {reason} " in line)
        assert "Normal" in line and source in line and message in line
    rs = events_section(describe(kubectl, "rs", "-n", NAMESPACE, "-l", "app=story"))
    assert "SuccessfulCreate" in rs and "replicaset-controller" in rs and "Created pod: story-" in rs
    deploy = events_section(describe(kubectl, "deploy", "story", "-n", NAMESPACE))
    assert "ScalingReplicaSet" in deploy and "Scaled up replica set story-" in deploy and "from 0 to 1" in deploy


def test_an_unknown_image_fails_naming_the_images_that_run_and_backs_off_counting(
        api: client.ApiClient, kubectl: Kubectl) -> None:
    client.AppsV1Api(api).create_namespaced_deployment(NAMESPACE, deployment("typo", "ngnix:1.25"))

    def backed_off_twice() -> str:
        section = events_section(describe(kubectl, "pod", "-n", NAMESPACE, "-l", "app=typo"))
        backoff = [line for line in section.splitlines() if " BackOff " in line]
        return section if backoff and "(x" in backoff[0] else ""

    section = eventually(backed_off_twice)
    failed = [line for line in section.splitlines() if " Failed " in line]
    assert any('Failed to pull image "ngnix:1.25"' in line and "nginx" in line for line in failed)
    assert any("Error: ErrImagePull" in line for line in failed)
    assert all("Warning" in line for line in failed)
    backoff = next(line for line in section.splitlines() if " BackOff " in line)
    assert 'Back-off pulling image "ngnix:1.25"' in backoff


def test_a_dead_injection_webhook_leaves_failed_create_on_the_replicaset_and_the_wait_quotes_it(
        api: client.ApiClient, kubectl: Kubectl, emulator: launching.Emulator) -> None:
    core, registration = client.CoreV1Api(api), client.AdmissionregistrationV1Api(api)
    # istiod scaled to 0: its Service is there, no endpoint answers, and the webhook must not be skipped.
    core.create_namespaced_service(HOOKED, {
        "metadata": {"name": "istiod"},
        "spec": {"selector": {"app": "istiod"}, "ports": [{"name": "https-webhook", "port": 443,
                                                           "targetPort": 15017}]}})
    registration.create_mutating_webhook_configuration({
        "metadata": {"name": "events-injector"},
        "webhooks": [{"name": "namespace.sidecar-injector.istio.io", "sideEffects": "None",
                      "admissionReviewVersions": ["v1"], "failurePolicy": "Fail",
                      "namespaceSelector": {"matchLabels": {"events-inject": "enabled"}},
                      "clientConfig": {"service": {"name": "istiod", "namespace": HOOKED, "path": "/inject",
                                                   "port": 443}},
                      "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                 "resources": ["pods"]}]}]})
    try:
        client.AppsV1Api(api).create_namespaced_deployment(HOOKED, deployment("helloworld", "nginx:1.25"))
        expected = ('Error creating: Internal error occurred: failed calling webhook '
                    '"namespace.sidecar-injector.istio.io": failed to call webhook: '
                    f'Post "https://istiod.{HOOKED}.svc:443/inject?timeout=10s": '
                    'no endpoints available for service "istiod"')
        rs_name = eventually(lambda: [rs.metadata.name for rs in
                                      client.AppsV1Api(api).list_namespaced_replica_set(HOOKED).items])[0]
        failed = eventually(lambda: [e for e in events_for(CONTEXT, "ReplicaSet", rs_name, HOOKED,
                                                           kubeconfig=emulator.kubeconfig, warnings_only=True)
                                     if e.reason == "FailedCreate"])
        assert failed[0].message == expected and failed[0].source == "replicaset-controller"
        section = events_section(describe(kubectl, "rs", rs_name, "-n", HOOKED))
        assert "Warning  FailedCreate" in section and "failed calling webhook" in section
        with pytest.raises(WaitTimeoutError) as timed_out:
            wait_ready(CONTEXT, HOOKED, "deploy/helloworld", timeout=1, kubeconfig=emulator.kubeconfig)
        assert f"Warning FailedCreate replicaset/{rs_name}" in str(timed_out.value)
        assert expected in str(timed_out.value)
    finally:
        registration.delete_mutating_webhook_configuration("events-injector")


def test_kubectl_events_and_get_events_list_them_and_both_apis_select_by_object(
        api: client.ApiClient, kubectl: Kubectl) -> None:
    client.AppsV1Api(api).create_namespaced_deployment(NAMESPACE, deployment("listed", "nginx:1.25"))
    eventually(lambda: any(e.reason == "ScalingReplicaSet" and e.involved_object.name == "listed"
                           for e in client.CoreV1Api(api).list_namespaced_event(NAMESPACE).items))
    printed = kubectl("--context", CONTEXT, "get", "events", "-n", NAMESPACE).stdout
    assert printed.splitlines()[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert "deployment/listed" in printed and "ScalingReplicaSet" in printed
    assert "Deployment/listed" in kubectl("--context", CONTEXT, "events", "-n", NAMESPACE).stdout
    selected = kubectl("--context", CONTEXT, "get", "events", "-n", NAMESPACE, "-o", "json", "--field-selector",
                       "involvedObject.kind=Deployment,involvedObject.name=listed").stdout
    assert {item["reason"] for item in json.loads(selected)["items"]} == {"ScalingReplicaSet"}
    # Raw JSON: Events written through core/v1 carry eventTime null in events.k8s.io/v1, as on a real server,
    # which the Python client's EventsV1Event model refuses (kubernetes-client/python#1616).
    response = client.EventsV1Api(api).list_namespaced_event(
        NAMESPACE, field_selector="regarding.kind=Deployment,regarding.name=listed", _preload_content=False)
    new_api = json.loads(response.data)["items"]
    assert [(e["reason"], e["reportingController"], e["regarding"]["name"], e["eventTime"]) for e in new_api] == [
        ("ScalingReplicaSet", "deployment-controller", "listed", None)]
    assert new_api[0]["note"].startswith("Scaled up replica set listed-") and new_api[0]["deprecatedCount"] == 1


def test_a_load_balancer_service_reports_ensuring_and_ensured(api: client.ApiClient, kubectl: Kubectl) -> None:
    client.CoreV1Api(api).create_namespaced_service(NAMESPACE, {
        "metadata": {"name": "gateway"},
        "spec": {"type": "LoadBalancer", "selector": {"app": "gateway"}, "ports": [{"port": 15443}]}})
    section = described_events_once(kubectl, "EnsuredLoadBalancer", "svc", "gateway", "-n", NAMESPACE)
    assert "EnsuringLoadBalancer" in section and "service-controller" in section
