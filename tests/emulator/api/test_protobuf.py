"""The protobuf body decoder: golden wire bytes, round trips, errors, and bodies captured from real kubectl.

The golden bodies are encoded by hand here (small varints, not via ``encode_object``) so a wrong field
number in the schema tables cannot hide behind a symmetric encoder bug. The capture tests run kubectl
against a throwaway HTTP server on 127.0.0.1 and compare the decoded protobuf with the JSON kubectl
itself prints for the same command (``--dry-run=client -o json``).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from labkit.emulator.api.protobuf import CONTENT_TYPE, MAGIC, SUPPORTED_KINDS, decode_object, encode_object
from labkit.emulator.apimachinery.status import StatusError

# ---------------------------------------------------------------------------------------------------------
# Hand-made wire bytes


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field; every tag and length in these tests fits one varint byte."""
    assert number < 16 and len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def _envelope(api_version: bytes, kind: bytes, raw: bytes) -> bytes:
    type_meta = _field(1, api_version) + _field(2, kind)
    return MAGIC + _field(1, type_meta) + _field(2, raw) + _field(3, b"") + _field(4, b"")


def test_namespace_from_hand_encoded_bytes() -> None:
    # ObjectMeta: name (1) "demo", generateName (2) "" as gogo writes it, labels (11) {"team": "a"},
    # creationTimestamp (8) as an empty Time; then an empty NamespaceSpec (2) and NamespaceStatus (3).
    labels_entry = _field(1, b"team") + _field(2, b"a")
    metadata = _field(1, b"demo") + _field(2, b"") + bytes([0x42, 0x00]) + _field(11, labels_entry)
    raw = _field(1, metadata) + _field(2, b"") + _field(3, b"")
    assert decode_object(_envelope(b"v1", b"Namespace", raw)) == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "demo", "labels": {"team": "a"}, "creationTimestamp": None},
        "spec": {},
        "status": {},
    }


def test_secret_from_hand_encoded_bytes() -> None:
    metadata = _field(1, b"s") + _field(3, b"demo") + _field(8, bytes([0x08, 0x80, 0x81, 0xC8, 0xAC, 0x06]))
    raw = (
        _field(1, metadata)
        + _field(2, _field(1, b"a") + _field(2, b"b"))          # data: bytes value → base64
        + _field(2, _field(1, b"bin") + _field(2, b"\x00\xff"))
        + _field(4, _field(1, b"plain") + _field(2, b"text"))   # stringData
        + _field(3, b"Opaque")                                   # type
        + bytes([5 << 3, 0x01])                                  # immutable: true (varint)
        + bytes([15 << 3, 0x2A])                                 # an unknown varint field: skipped
        + _field(14, b"future")                                  # an unknown length-delimited field
    )
    assert decode_object(_envelope(b"v1", b"Secret", raw)) == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "demo", "creationTimestamp": "2024-01-01T00:00:00Z"},
        "data": {"a": "Yg==", "bin": "AP8="},
        "stringData": {"plain": "text"},
        "type": "Opaque",
        "immutable": True,
    }


def test_zero_values_dropped_unless_pointer_or_required() -> None:
    # DeploymentSpec: replicas (1, a pointer) = 0 must survive; minReadySeconds (5) = 0 and paused (7) = false
    # are plain fields and mean "unset". A strategy with maxUnavailable 0 (a pointer IntOrString) survives.
    intstr_zero = bytes([0x08, 0x00, 0x10, 0x00]) + _field(3, b"")
    strategy = _field(1, b"") + _field(2, _field(1, intstr_zero))
    spec = bytes([0x08, 0x00, 0x28, 0x00, 0x38, 0x00]) + _field(4, strategy)
    decoded = decode_object(_envelope(b"apps/v1", b"Deployment", _field(2, spec)))
    assert decoded["spec"] == {"replicas": 0, "strategy": {"rollingUpdate": {"maxUnavailable": 0}}}


def test_negative_and_multi_byte_varints() -> None:
    # terminationGracePeriodSeconds (PodSpec 4, int64) = -1 is ten bytes on the wire; priority (25) = 300.
    minus_one = bytes([0xFF] * 9 + [0x01])
    pod_spec = bytes([0x20]) + minus_one + bytes([0xC8, 0x01, 0xAC, 0x02])
    template = _field(2, pod_spec)
    decoded = decode_object(_envelope(b"apps/v1", b"Deployment", _field(2, _field(3, template))))
    assert decoded["spec"]["template"]["spec"] == {"terminationGracePeriodSeconds": -1, "priority": 300}


# ---------------------------------------------------------------------------------------------------------
# Round trips of realistic objects


NGINX_DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "nginx", "namespace": "secure", "labels": {"app": "nginx"},
                 "creationTimestamp": None},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "nginx"},
                     "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]},
        "template": {
            "metadata": {"labels": {"app": "nginx"}, "annotations": {"sidecar.istio.io/inject": "true"},
                         "creationTimestamp": None},
            "spec": {
                "containers": [{
                    "name": "nginx",
                    "image": "nginx",
                    "args": ["-g", "daemon off;"],
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "env": [
                        {"name": "MODE", "value": "demo"},
                        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "s", "key": "a"}}},
                        {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "x",
                                                                            "optional": False}}},
                        {"name": "POD", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                                  "fieldPath": "metadata.name"}}},
                    ],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                  "limits": {"memory": "128Mi"}},
                    "volumeMounts": [{"name": "certs", "mountPath": "/etc/certs", "readOnly": True}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": 80, "scheme": "HTTP"},
                                       "periodSeconds": 5, "failureThreshold": 3},
                    "livenessProbe": {"tcpSocket": {"port": "http"}, "initialDelaySeconds": 10},
                    "startupProbe": {"exec": {"command": ["cat", "/tmp/ready"]}},
                    "imagePullPolicy": "IfNotPresent",
                }],
                "volumes": [
                    {"name": "certs", "secret": {"secretName": "s", "defaultMode": 420}},
                    {"name": "conf", "configMap": {"name": "c", "items": [{"key": "x", "path": "x.conf"}]}},
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "token", "projected": {"sources": [
                        {"serviceAccountToken": {"audience": "istio-ca", "expirationSeconds": 43200,
                                                 "path": "istio-token"}},
                    ]}},
                ],
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst",
                "serviceAccountName": "nginx",
                "schedulerName": "default-scheduler",
                "securityContext": {},
                "nodeSelector": {"kubernetes.io/os": "linux"},
            },
        },
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}},
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
        "minReadySeconds": 5,
        "paused": True,
    },
    "status": {},
}

NGINX_SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "nginx", "namespace": "secure", "labels": {"app": "nginx"},
                 "creationTimestamp": None},
    "spec": {
        "ports": [{"name": "http", "protocol": "TCP", "appProtocol": "http", "port": 80, "targetPort": 8080},
                  {"name": "grpc", "port": 9090, "targetPort": "grpc", "nodePort": 30090}],
        "selector": {"app": "nginx"},
        "clusterIP": "10.96.0.10",
        "clusterIPs": ["10.96.0.10"],
        "type": "LoadBalancer",
        "externalIPs": ["192.0.2.1"],
        "sessionAffinity": "None",
        "loadBalancerIP": "192.0.2.10",
        "externalTrafficPolicy": "Local",
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "internalTrafficPolicy": "Cluster",
        "publishNotReadyAddresses": True,
    },
    "status": {"loadBalancer": {"ingress": [{"ip": "172.18.255.1"}]}},
}

RBAC_OBJECTS: list[dict[str, Any]] = [
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
     "metadata": {"name": "reader", "creationTimestamp": "2024-05-06T07:08:09Z", "uid": "u-1",
                  "resourceVersion": "42", "generation": 3, "finalizers": ["x/y"],
                  "ownerReferences": [{"apiVersion": "v1", "kind": "Namespace", "name": "demo", "uid": "u-2",
                                       "controller": True, "blockOwnerDeletion": False}]},
     "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["p"]},
               {"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
     "metadata": {"name": "rb", "namespace": "demo", "creationTimestamp": None},
     "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "demo"},
                  {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}],
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}},
    {"apiVersion": "v1", "kind": "ServiceAccount",
     "metadata": {"name": "nginx", "namespace": "demo", "creationTimestamp": None},
     "automountServiceAccountToken": False, "imagePullSecrets": [{"name": "regcred"}]},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "creationTimestamp": None},
     "data": {"x": "y", "empty": ""}, "binaryData": {"b": "AAE="}},
]


@pytest.mark.parametrize("obj", [NGINX_DEPLOYMENT, NGINX_SERVICE, *RBAC_OBJECTS],
                         ids=lambda obj: obj["kind"])
def test_round_trip(obj: dict[str, Any]) -> None:
    body = encode_object(obj)
    assert body.startswith(MAGIC)
    assert decode_object(body) == obj


def test_every_supported_kind_round_trips_its_metadata() -> None:
    for api_version, kind in SUPPORTED_KINDS:
        obj = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x", "creationTimestamp": None}}
        assert decode_object(encode_object(obj)) == obj


# ---------------------------------------------------------------------------------------------------------
# Errors


def _bad_request(body: bytes) -> StatusError:
    with pytest.raises(StatusError) as caught:
        decode_object(body)
    assert caught.value.code == 400 and caught.value.reason == "BadRequest"
    return caught.value


def test_missing_magic() -> None:
    error = _bad_request(b'{"kind": "Namespace"}')
    assert "k8s\\x00" in error.message and "application/json" in error.message
    assert "empty body" in _bad_request(b"").message


@pytest.mark.parametrize("cut", [5, 12, 30, -3, -1])
def test_truncated_message(cut: int) -> None:
    body = encode_object(NGINX_DEPLOYMENT)
    assert "truncated or corrupt" in _bad_request(body[:cut]).message


def test_wrong_wire_type_names_the_field() -> None:
    # metadata.name (ObjectMeta 1) sent as a varint instead of a string.
    error = _bad_request(_envelope(b"v1", b"Namespace", _field(1, bytes([0x08, 0x01]))))
    assert "metadata.name" in error.message


def test_unsupported_kind_lists_what_is_supported() -> None:
    error = _bad_request(_envelope(b"v1", b"Pod", b""))
    assert "Pod (v1)" in error.message
    for _, kind in SUPPORTED_KINDS:
        assert kind in error.message
    assert "kubectl apply -f" in error.message and "--validate=false" in error.message


def test_unsupported_api_version() -> None:
    error = _bad_request(_envelope(b"apps/v1beta1", b"Deployment", b""))
    assert "Deployment (apps/v1beta1)" in error.message


def test_encoded_raw_object_is_rejected() -> None:
    type_meta = _field(1, b"v1") + _field(2, b"Namespace")
    body = MAGIC + _field(1, type_meta) + _field(2, b"\x1f\x8b") + _field(3, b"gzip")
    assert "gzip" in _bad_request(body).message


def test_corrupt_bodies_fail_only_with_bad_request() -> None:
    # Whatever a broken client sends, the server must answer 400, never crash with another exception.
    body = bytearray(encode_object(NGINX_DEPLOYMENT))
    rng = random.Random(7)
    for _ in range(500):
        mutated = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(MAGIC), len(mutated))] = rng.randrange(256)
        try:
            decode_object(bytes(mutated))
        except StatusError as exc:
            assert exc.code == 400


def test_encode_rejects_unknown_kinds_and_bad_values() -> None:
    with pytest.raises(ValueError, match="Pod"):
        encode_object({"apiVersion": "v1", "kind": "Pod"})
    with pytest.raises(ValueError, match=r"spec\.replicas"):
        encode_object({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": "one"}})


# ---------------------------------------------------------------------------------------------------------
# Bodies captured from real kubectl

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH: nothing to capture")

_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def _resource(name: str, kind: str, namespaced: bool, short: list[str] | None = None) -> dict[str, Any]:
    return {"name": name, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
            "verbs": _VERBS, "shortNames": short or []}


_DISCOVERY: dict[str, dict[str, Any]] = {
    "/api": {"kind": "APIVersions", "versions": ["v1"],
             "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": group, "versions": [{"groupVersion": f"{group}/v1", "version": "v1"}],
         "preferredVersion": {"groupVersion": f"{group}/v1", "version": "v1"}}
        for group in ("apps", "rbac.authorization.k8s.io")
    ]},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        _resource("namespaces", "Namespace", False, ["ns"]),
        _resource("secrets", "Secret", True),
        _resource("configmaps", "ConfigMap", True, ["cm"]),
        _resource("services", "Service", True, ["svc"]),
        _resource("serviceaccounts", "ServiceAccount", True, ["sa"]),
        _resource("pods", "Pod", True, ["po"]),
    ]},
    "/apis/apps/v1": {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": [
        _resource("deployments", "Deployment", True, ["deploy"]),
    ]},
    "/apis/rbac.authorization.k8s.io/v1": {
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "rbac.authorization.k8s.io/v1",
        "resources": [
            _resource("roles", "Role", True),
            _resource("rolebindings", "RoleBinding", True),
            _resource("clusterroles", "ClusterRole", False),
            _resource("clusterrolebindings", "ClusterRoleBinding", False),
        ],
    },
}


class _Capture(ThreadingHTTPServer):
    """A server that answers discovery, records POST bodies and echoes the decoded object with 201."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.posts: list[tuple[str, str, bytes]] = []
        self.objects: dict[str, dict[str, Any]] = {}


class _Handler(BaseHTTPRequestHandler):
    server: _Capture

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean

    def _reply(self, code: int, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        found = _DISCOVERY.get(path) or self.server.objects.get(path)
        if found is None:
            self._reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                              "code": 404, "message": f"{path} not found"})
        else:
            self._reply(200, found)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        content_type = self.headers.get("Content-Type", "")
        self.server.posts.append((path, content_type, body))
        try:
            obj = decode_object(body) if content_type.startswith(CONTENT_TYPE) else json.loads(body)
        except StatusError as exc:
            self._reply(exc.code, exc.to_status())
            return
        self.server.objects[f"{path}/{obj['metadata']['name']}"] = obj
        self._reply(201, obj)


# Each command and the API path it POSTs to. The service command reads the deployment created before it.
_COMMANDS: dict[str, tuple[list[str], str]] = {
    "namespace": (["create", "ns", "demo"], "/api/v1/namespaces"),
    "secret": (["create", "secret", "generic", "s", "--from-literal=a=b", "-n", "demo"],
               "/api/v1/namespaces/demo/secrets"),
    "deployment": (["create", "deploy", "nginx", "--image=nginx", "--port=80", "-n", "demo"],
                   "/apis/apps/v1/namespaces/demo/deployments"),
    "configmap": (["create", "configmap", "c", "--from-literal=x=y"],
                  "/api/v1/namespaces/default/configmaps"),
    "role": (["create", "role", "r", "--verb=get", "--resource=pods"],
             "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles"),
    "service": (["expose", "deploy", "nginx", "--port", "80", "-n", "demo"],
                "/api/v1/namespaces/demo/services"),
}
# kubectl 1.32.4 builds the exposed Service as an unstructured object and so POSTs it as JSON; the others
# are typed and go out as protobuf.
_PROTOBUF_COMMANDS = [name for name in _COMMANDS if name != "service"]


@pytest.fixture(scope="module")
def kubectl_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Run kubectl against a capture server; yields ``run(args) -> CompletedProcess`` and the server."""
    home = tmp_path_factory.mktemp("kubectl-home")
    server = _Capture()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    kubeconfig = Path(home, "config")
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "capture",
        "clusters": [{"name": "capture", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "capture", "user": {"token": "capture-token"}}],
        "contexts": [{"name": "capture", "context": {"cluster": "capture", "user": "capture"}}],
    }))
    env = {"PATH": str(Path(KUBECTL or "kubectl").parent), "HOME": str(home), "KUBECONFIG": str(kubeconfig)}

    def run(args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([KUBECTL or "kubectl", *args, f"--cache-dir={home}/cache"], env=env,
                              capture_output=True, text=True, timeout=30, check=False)

    try:
        yield run, server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def captured(kubectl_run: Any) -> dict[str, tuple[str, str, bytes, dict[str, Any]]]:
    """Per command: the path kubectl posted to, its Content-Type, the body and kubectl's own dry-run JSON."""
    run, server = kubectl_run
    results = {}
    for name, (args, _) in _COMMANDS.items():
        dry = run([*args, "--dry-run=client", "-o", "json"])
        assert dry.returncode == 0, dry.stderr
        before = len(server.posts)
        done = run(args)
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        assert len(server.posts) == before + 1, f"kubectl {' '.join(args)} posted {server.posts[before:]}"
        path, content_type, body = server.posts[-1]
        results[name] = (path, content_type, body, json.loads(dry.stdout))
    return results


@needs_kubectl
@pytest.mark.parametrize("name", _PROTOBUF_COMMANDS)
def test_kubectl_body_decodes_to_its_json(name: str, captured: dict[str, Any]) -> None:
    path, content_type, body, dry_run_json = captured[name]
    assert path == _COMMANDS[name][1]
    assert content_type.startswith(CONTENT_TYPE), "kubectl sent JSON: this test no longer covers protobuf"
    assert decode_object(body) == dry_run_json


@needs_kubectl
def test_kubectl_bodies_hold_what_the_commands_asked_for(captured: dict[str, Any]) -> None:
    decoded = {name: decode_object(captured[name][2]) for name in _PROTOBUF_COMMANDS}
    assert decoded["namespace"]["metadata"] == {"name": "demo", "creationTimestamp": None}
    assert decoded["secret"]["data"] == {"a": "Yg=="}
    assert decoded["secret"]["metadata"]["namespace"] == "demo"
    deployment = decoded["deployment"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "nginx"}}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == "nginx" and container["image"] == "nginx"
    assert container["ports"] == [{"containerPort": 80}]
    assert decoded["configmap"]["data"] == {"x": "y"}
    assert decoded["role"]["rules"] == [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]


@needs_kubectl
def test_kubectl_expose_service(captured: dict[str, Any]) -> None:
    path, content_type, body, dry_run_json = captured["service"]
    assert path == _COMMANDS["service"][1]
    sent = decode_object(body) if content_type.startswith(CONTENT_TYPE) else json.loads(body)
    # The dry run names the namespace in the object; the real request names it in the URL only.
    assert dry_run_json["metadata"]["namespace"] == "demo"
    metadata = {key: value for key, value in dry_run_json["metadata"].items() if key != "namespace"}
    assert sent == {**dry_run_json, "metadata": metadata}
    assert sent["spec"]["selector"] == {"app": "nginx"}
    assert sent["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    # Should a later kubectl send it as protobuf, the same object must survive the trip.
    assert decode_object(encode_object(sent)) == sent


@needs_kubectl
def test_kubectl_bodies_survive_re_encoding(captured: dict[str, Any]) -> None:
    for name in _PROTOBUF_COMMANDS:
        decoded = decode_object(captured[name][2])
        assert decode_object(encode_object(decoded)) == decoded, name
