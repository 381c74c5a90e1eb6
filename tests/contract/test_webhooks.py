"""Admission webhooks end to end: the official client creates objects, the emulator calls a webhook in this test."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from labkit.emulator import launching
from labkit.pki import new_root

pytestmark = [pytest.mark.filterwarnings("ignore::ResourceWarning")]

Obj = dict[str, Any]
Decide = Callable[[Obj], Obj]
NAMESPACE = "webhooked"


class WebhookServer:
    """A stdlib HTTPS webhook in a thread (the client under test blocks), answering with ``decide``."""

    def __init__(self, decide: Decide):
        self.root = new_root(organization="test", common_name="webhook CA", key="ec-p256")
        credential = self.root.issue_server("webhook", ip_addresses=["127.0.0.1"])
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory(prefix="webhook-") as folder:
            cert, key = Path(folder) / "tls.crt", Path(folder) / "tls.key"
            cert.write_text(credential.cert_chain_pem)
            key.write_text(credential.key_pem)
            context.load_cert_chain(cert, key)
        self.requests: list[Obj] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append(review["request"])
                answer = {"uid": review["request"]["uid"], **decide(review["request"])}
                body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                   "response": answer}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def ca_bundle(self) -> str:
        return base64.b64encode(self.root.cert_pem.encode()).decode()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/inject"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def inject_label(request: Obj) -> Obj:
    ops = [{"op": "add", "path": "/metadata/labels/injected", "value": "yes"}]
    return {"allowed": True, "patchType": "JSONPatch", "patch": base64.b64encode(json.dumps(ops).encode()).decode()}


def deny(request: Obj) -> Obj:
    return {"allowed": False, "status": {"message": "pods here must say who owns them"}}


@pytest.fixture(scope="module")
def api(emulator: launching.Emulator) -> Iterator[client.ApiClient]:
    with config.new_client_from_config(str(emulator.kubeconfig), context="cluster2") as api_client:
        core = client.CoreV1Api(api_client)
        for name, labels in ((NAMESPACE, {"inject": "enabled"}), (f"{NAMESPACE}-plain", {})):
            core.create_namespace({"metadata": {"name": name, "labels": labels}})
        yield api_client


@pytest.fixture
def admission(api: client.ApiClient) -> Iterator[client.AdmissionregistrationV1Api]:
    """The admissionregistration API; every webhook configuration a test makes is gone afterwards."""
    registration = client.AdmissionregistrationV1Api(api)
    yield registration
    for item in registration.list_mutating_webhook_configuration().items:
        if item.metadata.name.startswith("test-"):
            registration.delete_mutating_webhook_configuration(item.metadata.name)
    for item in registration.list_validating_webhook_configuration().items:
        if item.metadata.name.startswith("test-"):
            registration.delete_validating_webhook_configuration(item.metadata.name)


def hook(name: str, client_config: Obj, **extra: Any) -> Obj:
    # Only this module's namespaces: the emulator is shared with every other contract test.
    return {"name": name, "clientConfig": client_config, "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "namespaceSelector": {"matchLabels": {"inject": "enabled"}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            **extra}


def pod(name: str, **labels: str) -> Obj:
    return {"metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "infinity"]}]}}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_mutating_webhook_labels_pods_in_enabled_namespaces_unless_opted_out(
        api: client.ApiClient, admission: client.AdmissionregistrationV1Api) -> None:
    core = client.CoreV1Api(api)
    server = WebhookServer(inject_label)
    try:
        opt_out = {"matchExpressions": [{"key": "inject", "operator": "NotIn", "values": ["false"]}]}
        admission.create_mutating_webhook_configuration({
            "metadata": {"name": "test-injector"},
            "webhooks": [hook("inject.test.io", {"url": server.url, "caBundle": server.ca_bundle},
                              objectSelector=opt_out, failurePolicy="Fail")]})
        created = core.create_namespaced_pod(NAMESPACE, pod("injected", app="a"))
        plain = core.create_namespaced_pod(f"{NAMESPACE}-plain", pod("plain", app="a"))
        opted_out = core.create_namespaced_pod(NAMESPACE, pod("opted-out", app="a", inject="false"))
    finally:
        server.close()
    assert created.metadata.labels == {"app": "a", "injected": "yes"}
    assert core.read_namespaced_pod("injected", NAMESPACE).metadata.labels["injected"] == "yes"
    assert "injected" not in plain.metadata.labels
    assert "injected" not in opted_out.metadata.labels
    assert [r["name"] for r in server.requests] == ["injected"]
    assert server.requests[0]["namespace"] == NAMESPACE and server.requests[0]["operation"] == "CREATE"


def test_validating_webhook_denial_reaches_the_client(api: client.ApiClient,
                                                      admission: client.AdmissionregistrationV1Api) -> None:
    server = WebhookServer(deny)
    try:
        admission.create_validating_webhook_configuration({
            "metadata": {"name": "test-owners"},
            "webhooks": [hook("owners.test.io", {"url": server.url, "caBundle": server.ca_bundle})]})
        with pytest.raises(ApiException) as caught:
            client.CoreV1Api(api).create_namespaced_pod(NAMESPACE, pod("denied"))
    finally:
        server.close()
    assert caught.value.status == 400
    body = json.loads(caught.value.body)
    assert body["message"] == 'admission webhook "owners.test.io" denied the request: pods here must say who owns them'


def test_failure_policy_decides_what_a_dead_webhook_does(api: client.ApiClient,
                                                         admission: client.AdmissionregistrationV1Api) -> None:
    core = client.CoreV1Api(api)
    port = closed_port()
    url = f"https://127.0.0.1:{port}/inject"
    admission.create_mutating_webhook_configuration({
        "metadata": {"name": "test-dead-strict"},
        "webhooks": [hook("strict.test.io", {"url": url})]})
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_pod(NAMESPACE, pod("strict"))
    assert caught.value.status == 500
    assert json.loads(caught.value.body)["message"] == (
        f'Internal error occurred: failed calling webhook "strict.test.io": failed to call webhook: '
        f'Post "https://127.0.0.1:{port}/inject?timeout=10s": dial tcp 127.0.0.1:{port}: connect: connection refused')
    admission.delete_mutating_webhook_configuration("test-dead-strict")
    admission.create_mutating_webhook_configuration({
        "metadata": {"name": "test-dead-lenient"},
        "webhooks": [hook("lenient.test.io", {"url": url}, failurePolicy="Ignore")]})
    assert core.create_namespaced_pod(NAMESPACE, pod("lenient")).metadata.name == "lenient"


def test_service_reference_without_endpoints_fails_as_in_primary_remote(
        api: client.ApiClient, admission: client.AdmissionregistrationV1Api) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_service(NAMESPACE, {
        "metadata": {"name": "istiod"},
        "spec": {"selector": {"app": "istiod-nowhere"}, "ports": [{"name": "https-webhook", "port": 443,
                                                                  "targetPort": 15017}]}})
    admission.create_mutating_webhook_configuration({
        "metadata": {"name": "test-injector-service"},
        "webhooks": [hook("sidecar-injector.istio.io", {
            "service": {"name": "istiod", "namespace": NAMESPACE, "path": "/inject", "port": 443}})]})
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_pod(NAMESPACE, pod("no-endpoints"))
    assert json.loads(caught.value.body)["message"] == (
        'Internal error occurred: failed calling webhook "sidecar-injector.istio.io": failed to call webhook: '
        f'Post "https://istiod.{NAMESPACE}.svc:443/inject?timeout=10s": no endpoints available for service "istiod"')
