"""The official Python client against embedded clusters: typed APIs, DynamicClient, watch, exec, RBAC."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from kubernetes import client, config, dynamic, watch
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream

from labkit.emulator import launching
from labkit.testing import eventually

from .conftest import WATCH_HISTORY

# The official client leaves pooled TLS sockets to the garbage collector after watch and exec
# streams; those warnings are about the client library, not about the behaviour tested here.
pytestmark = [pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


@pytest.fixture(scope="module")
def api(emulator: launching.Emulator) -> Iterator[client.ApiClient]:
    with config.new_client_from_config(str(emulator.kubeconfig), context="cluster1") as api_client:
        yield api_client


@pytest.fixture(scope="module")
def namespace(api: client.ApiClient) -> str:
    client.CoreV1Api(api).create_namespace({"metadata": {"name": "pyclient"}})
    return "pyclient"


def _deployment(name: str, image: str, **extra) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": name, "image": image, **extra}]}}}}


def _wait_ready(api: client.ApiClient, namespace: str, app: str, timeout: float = 60) -> client.V1Pod:
    v1 = client.CoreV1Api(api)

    def ready() -> client.V1Pod | None:
        return next((pod for pod in v1.list_namespaced_pod(namespace, label_selector=f"app={app}").items
                     if any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])), None)

    return eventually(ready, timeout, f"a ready pod with app={app} in {namespace}")


def test_typed_apis_create_list_patch_delete(api: client.ApiClient, namespace: str) -> None:
    v1 = client.CoreV1Api(api)
    created = v1.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"}, "data": {"a": "1"}})
    assert created.metadata.uid and created.metadata.resource_version
    patched = v1.patch_namespaced_config_map("settings", namespace, {"data": {"b": "2"}})
    assert patched.data == {"a": "1", "b": "2"}
    assert int(patched.metadata.resource_version) > int(created.metadata.resource_version)
    with pytest.raises(ApiException) as conflict:
        v1.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"}})
    assert conflict.value.status == 409 and '"reason":"AlreadyExists"' in conflict.value.body
    v1.delete_namespaced_config_map("settings", namespace)
    with pytest.raises(ApiException) as missing:
        v1.read_namespaced_config_map("settings", namespace)
    assert missing.value.status == 404 and 'configmaps \\"settings\\" not found' in missing.value.body


def test_malformed_selectors_are_bad_requests_quoting_them(api: client.ApiClient, namespace: str) -> None:
    v1 = client.CoreV1Api(api)
    with pytest.raises(ApiException) as label:
        v1.list_namespaced_pod(namespace, label_selector="app=hello world")
    assert label.value.status == 400 and '"reason":"BadRequest"' in label.value.body
    assert 'unable to parse label selector \\"app=hello world\\"' in label.value.body
    with pytest.raises(ApiException) as field:
        v1.list_namespaced_pod(namespace, field_selector="metadata.name")
    assert field.value.status == 400 and 'invalid field selector \\"metadata.name\\"' in field.value.body


def test_dynamic_client_with_a_custom_resource(api: client.ApiClient, namespace: str, tmp_path) -> None:
    dyn = dynamic.DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))
    crds = dyn.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    crds.create(body={
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gateways.networking.example.io"},
        "spec": {"group": "networking.example.io", "scope": "Namespaced",
                 "names": {"plural": "gateways", "singular": "gateway", "kind": "Gateway", "shortNames": ["gw"]},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object",
                                                              "x-kubernetes-preserve-unknown-fields": True}}}]}})
    dyn = dynamic.DynamicClient(api, cache_file=str(tmp_path / "discovery2.json"))
    gateways = dyn.resources.get(api_version="networking.example.io/v1", kind="Gateway")
    gateways.create(namespace=namespace, body={"apiVersion": "networking.example.io/v1", "kind": "Gateway",
                                               "metadata": {"name": "cross-network"},
                                               "spec": {"servers": [{"port": {"number": 15443}}]}})
    found = gateways.get(namespace=namespace, name="cross-network")
    assert found.spec.servers[0].port.number == 15443
    body = {"apiVersion": "networking.example.io/v1", "kind": "Gateway", "metadata": {"name": "cross-network"},
            "spec": {"servers": [{"port": {"number": 15443}, "hosts": ["*.local"]}]}}
    # The creator owns spec.servers: another manager changing it conflicts, as on a real server...
    with pytest.raises(dynamic.exceptions.ConflictError) as conflict:
        gateways.server_side_apply(namespace=namespace, field_manager="labkit", body=body)
    assert "Apply failed with 1 conflict" in conflict.value.body and ".spec.servers" in conflict.value.body
    # ... until it forces the change (kubectl apply --server-side --force-conflicts).
    applied = gateways.server_side_apply(namespace=namespace, field_manager="labkit", body=body, force_conflicts=True)
    assert applied.spec.servers[0].hosts == ["*.local"]


def test_watch_resumes_from_a_resource_version_and_expires(api: client.ApiClient, namespace: str) -> None:
    v1 = client.CoreV1Api(api)
    listed = v1.list_namespaced_config_map(namespace)
    v1.create_namespaced_config_map(namespace, {"metadata": {"name": "watched"}})
    events = []
    for event in watch.Watch().stream(v1.list_namespaced_config_map, namespace,
                                      resource_version=listed.metadata.resource_version, timeout_seconds=2):
        events.append((event["type"], event["object"].metadata.name))
    assert ("ADDED", "watched") in events
    # Push the listed version out of the emulator's (deliberately small, see conftest) watch history.
    for i in range(WATCH_HISTORY + 10):
        v1.patch_namespaced_config_map("watched", namespace, {"data": {"n": str(i)}})
    with pytest.raises(ApiException) as gone:
        for _ in watch.Watch().stream(v1.list_namespaced_config_map, namespace,
                                      resource_version=listed.metadata.resource_version, timeout_seconds=2):
            pass
    assert gone.value.status == 410


def test_exec_returns_output_and_exit_code(api: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, _deployment("sleep", "curlimages/curl",
                                                             command=["/bin/sleep", "infinity"]))
    apps.create_namespaced_deployment(namespace, _deployment("web", "nginx", ports=[{"containerPort": 80}]))
    client.CoreV1Api(api).create_namespaced_service(namespace, {
        "metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    sleeper = _wait_ready(api, namespace, "sleep")
    _wait_ready(api, namespace, "web")
    session = stream(client.CoreV1Api(api).connect_get_namespaced_pod_exec, sleeper.metadata.name, namespace,
                     command=["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "web"], stdout=True,
                     stderr=True, stdin=False, tty=False, _preload_content=False)
    session.run_forever(timeout=20)
    assert session.read_stdout() == "200" and session.returncode == 0
    failing = stream(client.CoreV1Api(api).connect_get_namespaced_pod_exec, sleeper.metadata.name, namespace,
                     command=["curl", "-sS", "web:81"], stdout=True, stderr=True, stdin=False, tty=False,
                     _preload_content=False)
    failing.run_forever(timeout=20)
    assert failing.returncode == 7


def test_read_only_token_is_refused_writes_and_revoked_with_its_secret(
        api: client.ApiClient, namespace: str, emulator: launching.Emulator) -> None:
    v1, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    v1.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    rbac.create_cluster_role({"metadata": {"name": "reader"},
                              "rules": [{"apiGroups": [""], "resources": ["pods", "services", "secrets"],
                                         "verbs": ["get", "list", "watch"]}]})
    rbac.create_cluster_role_binding({"metadata": {"name": "reader"},
                                      "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                                  "name": "reader"},
                                      "subjects": [{"kind": "ServiceAccount", "name": "reader",
                                                    "namespace": namespace}]})
    v1.create_namespaced_secret(namespace, {"metadata": {"name": "reader-token", "annotations": {
        "kubernetes.io/service-account.name": "reader"}}, "type": "kubernetes.io/service-account-token"})
    filled = eventually(lambda: (v1.read_namespaced_secret("reader-token", namespace).data or {}).get("token"), 20,
                        "the reader token filled in")
    token = base64.b64decode(filled).decode()

    configuration = client.Configuration()
    configuration.host = emulator.clusters["cluster1"]
    configuration.ssl_ca_cert = str(emulator.state_dir / "clusters" / "cluster1" / "ca.crt")
    configuration.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(configuration) as reader:
        as_reader = client.CoreV1Api(reader)
        assert any(s.metadata.name == "kubernetes" for s in as_reader.list_namespaced_service("default").items)
        assert as_reader.read_namespaced_secret("reader-token", namespace).data["token"]
        with pytest.raises(ApiException) as denied:
            as_reader.create_namespaced_config_map(namespace, {"metadata": {"name": "nope"}})
        assert denied.value.status == 403
        assert (f'User \\"system:serviceaccount:{namespace}:reader\\" cannot create resource \\"configmaps\\"'
                in denied.value.body)
        v1.delete_namespaced_secret("reader-token", namespace)
        with pytest.raises(ApiException) as revoked:
            as_reader.list_namespaced_service("default")
        assert revoked.value.status == 401
