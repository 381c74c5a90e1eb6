"""A pod looks like a container from the inside: kubectl and the official client look at one as a learner would.

Its hostname is its name, its service-account files are at the standard path and authenticate it, ``kubectl cp``
into its ``/tmp`` stays in the pod, a ConfigMap volume is at its ``mountPath`` and follows the ConfigMap, and
``envFrom`` and the Downward API show in ``env``. Skipped where the machine cannot make sandboxes.
"""

from __future__ import annotations

import gc
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.stream import stream

from labkit.emulator import launching
from labkit.emulator.node import sandboxing
from labkit.testing import eventually

pytestmark = [pytest.mark.skipif(not sandboxing.available(), reason="this machine cannot make pod sandboxes"),
              # The official client leaves pooled TLS sockets to the garbage collector after exec streams.
              pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]
CTX = ("--context", "cluster1", "-n", "sandbox")
ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
MANIFESTS = """
apiVersion: v1
kind: Namespace
metadata: {name: sandbox}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: sandbox}
data: {greeting: hello, LOG_LEVEL: debug}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: sandbox}
stringData: {PASSWORD: s3cret}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: reader, namespace: sandbox}
---
apiVersion: v1
kind: Pod
metadata:
  name: box
  namespace: sandbox
  labels: {app: box, tier: back}
  annotations: {owner: team-a}
spec:
  serviceAccountName: reader
  containers:
  - name: main
    image: busybox:1.36
    command: [sleep, infinity]
    resources: {limits: {memory: 64Mi, cpu: 500m}}
    envFrom:
    - configMapRef: {name: settings}
      prefix: CFG_
    - secretRef: {name: creds}
    - configMapRef: {name: absent, optional: true}
    env:
    - {name: MY_POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: MY_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: MY_UID, valueFrom: {fieldRef: {fieldPath: metadata.uid}}}
    - {name: MY_TIER, valueFrom: {fieldRef: {fieldPath: "metadata.labels['tier']"}}}
    - {name: MY_OWNER, valueFrom: {fieldRef: {fieldPath: "metadata.annotations['owner']"}}}
    - {name: MY_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: MY_NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: MY_ACCOUNT, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
    - {name: MEMORY_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
    - {name: CPU_CORES, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}
    - {name: CPU_MILLIS, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}}
    - {name: LOG_LEVEL, value: "from env, which wins"}
    volumeMounts:
    - {name: settings, mountPath: /etc/settings}
  volumes:
  - {name: settings, configMap: {name: settings}}
"""


@pytest.fixture(scope="module")
def api(emulator: launching.Emulator) -> Iterator[client.ApiClient]:
    with config.new_client_from_config(str(emulator.kubeconfig), context="cluster1") as api_client:
        yield api_client
    # The exec streams' sockets go now, under this module's warning filters, not in the next module's setup.
    gc.collect()


@pytest.fixture(scope="module")
def box(kubectl: Any) -> str:
    kubectl("--context", "cluster1", "apply", "-f", "-", input=MANIFESTS)
    kubectl(*CTX, "wait", "--for=condition=Ready", "pod/box", "--timeout=60s")
    return "box"


def _exec(api: client.ApiClient, pod: str, command: list[str]) -> str:
    session = stream(client.CoreV1Api(api).connect_get_namespaced_pod_exec, pod, "sandbox", command=command,
                     stdout=True, stderr=True, stdin=False, tty=False, _preload_content=False)
    session.run_forever(timeout=20)
    assert session.returncode == 0, session.read_stderr()
    return session.read_stdout()


def test_exec_hostname_is_the_pod_name(kubectl: Any, box: str) -> None:
    assert kubectl(*CTX, "exec", box, "--", "hostname").stdout == "box\n"
    assert kubectl(*CTX, "exec", box, "--", "sh", "-c", "echo $HOSTNAME").stdout == "box\n"


def test_the_token_file_authenticates_as_the_pods_service_account(kubectl: Any, box: str) -> None:
    review = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    script = (f'curl -sS --cacert {ACCOUNT}/ca.crt -H "Authorization: Bearer $(cat {ACCOUNT}/token)" '
              f'-H "Content-Type: application/json" -X POST -d \'{review}\' '
              f'"https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/apis/authentication.k8s.io/v1/'
              f'selfsubjectreviews"')
    out = kubectl(*CTX, "exec", box, "--", "sh", "-c", script).stdout
    user = json.loads(out)["status"]["userInfo"]
    assert user["username"] == "system:serviceaccount:sandbox:reader"
    assert "system:serviceaccounts:sandbox" in user["groups"]
    assert kubectl(*CTX, "exec", box, "--", "cat", f"{ACCOUNT}/namespace").stdout == "sandbox"


def test_kubectl_cp_round_trips_inside_the_pod_and_the_machines_tmp_is_untouched(
        kubectl: Any, box: str, tmp_path: Path) -> None:
    name = f"labkit-cp-{uuid.uuid4().hex}.txt"
    local = tmp_path / "upload.txt"
    local.write_text("copied into the pod\n")
    kubectl(*CTX, "cp", str(local), f"{box}:/tmp/{name}")
    assert kubectl(*CTX, "exec", box, "--", "cat", f"/tmp/{name}").stdout == "copied into the pod\n"
    assert not Path("/tmp", name).exists()
    kubectl(*CTX, "cp", f"{box}:/tmp/{name}", str(tmp_path / "download.txt"))
    assert (tmp_path / "download.txt").read_text() == "copied into the pod\n"
    kubectl(*CTX, "exec", box, "--", "rm", f"/tmp/{name}")
    assert kubectl(*CTX, "exec", box, "--", "ls", "/tmp").stdout.count(name) == 0


def test_a_config_map_volume_is_read_by_the_pods_shell_and_follows_the_config_map(
        kubectl: Any, api: client.ApiClient, box: str) -> None:
    assert kubectl(*CTX, "exec", box, "--", "sh", "-c", "cat /etc/settings/greeting").stdout == "hello"
    client.CoreV1Api(api).patch_namespaced_config_map("settings", "sandbox", {"data": {"greeting": "changed"}})
    eventually(lambda: _exec(api, box, ["cat", "/etc/settings/greeting"]) == "changed", timeout=20,
               what="the ConfigMap's change in the pod's volume")
    out = kubectl(*CTX, "exec", box, "--", "sh", "-c", "echo x > /etc/settings/greeting", check=False)
    assert out.returncode != 0 and "Read-only file system" in out.stderr
    client.CoreV1Api(api).patch_namespaced_config_map("settings", "sandbox", {"data": {"greeting": "hello"}})


def test_env_from_and_the_downward_api_show_in_exec_env(api: client.ApiClient, box: str) -> None:
    pod = client.CoreV1Api(api).read_namespaced_pod(box, "sandbox")
    env = dict(line.split("=", 1) for line in _exec(api, box, ["env"]).splitlines() if "=" in line)
    assert {key: env.get(key) for key in ("CFG_greeting", "CFG_LOG_LEVEL", "PASSWORD", "LOG_LEVEL")} == {
        "CFG_greeting": "hello", "CFG_LOG_LEVEL": "debug", "PASSWORD": "s3cret", "LOG_LEVEL": "from env, which wins"}
    assert {key: env.get(key) for key in ("MY_POD", "MY_NAMESPACE", "MY_UID", "MY_TIER", "MY_OWNER", "MY_IP",
                                          "MY_NODE", "MY_ACCOUNT")} == {
        "MY_POD": "box", "MY_NAMESPACE": "sandbox", "MY_UID": pod.metadata.uid, "MY_TIER": "back",
        "MY_OWNER": "team-a", "MY_IP": pod.status.pod_ip, "MY_NODE": pod.spec.node_name, "MY_ACCOUNT": "reader"}
    assert (env.get("MEMORY_MI"), env.get("CPU_CORES"), env.get("CPU_MILLIS")) == ("64", "1", "500")


def test_a_missing_env_from_source_holds_the_container_until_it_exists(kubectl: Any, box: str) -> None:
    """A kubelet will not start a container whose ``envFrom`` names a missing, non-optional object: it waits in
    CreateContainerConfigError, says why in an Event, and starts it once the object is created."""
    kubectl(*CTX, "run", "needs-config", "--image=busybox:1.36", "--restart=Never", "--overrides",
            '{"spec": {"containers": [{"name": "needs-config", "image": "busybox:1.36", "command": ["sleep", "60"],'
            ' "envFrom": [{"configMapRef": {"name": "late"}}]}]}}')

    def waiting() -> dict[str, str]:
        pod = json.loads(kubectl(*CTX, "get", "pod", "needs-config", "-o", "json").stdout)
        return ((pod["status"].get("containerStatuses") or [{}])[0].get("state") or {}).get("waiting") or {}

    state = eventually(lambda: waiting().get("reason") == "CreateContainerConfigError" and waiting(), 30,
                       "CreateContainerConfigError")
    assert state["message"] == 'configmap "late" not found'
    events = kubectl(*CTX, "get", "events", "--field-selector", "involvedObject.name=needs-config").stdout
    assert 'Error: configmap "late" not found' in events
    kubectl(*CTX, "create", "configmap", "late", "--from-literal=ARRIVED=yes")
    kubectl(*CTX, "wait", "--for=condition=Ready", "pod/needs-config", "--timeout=30s")
    assert kubectl(*CTX, "exec", "needs-config", "--", "sh", "-c", "echo $ARRIVED").stdout == "yes\n"
    kubectl(*CTX, "delete", "pod", "needs-config", "--grace-period=0", "--force")


FILES = """
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config, namespace: sandbox}
data: {app.conf: "listen 8080\\n", motd: welcome}
---
apiVersion: v1
kind: Pod
metadata: {name: files, namespace: sandbox}
spec:
  containers:
  - name: writer
    image: busybox:1.36
    command: [sh, -c, "echo hi > /data/note && mkdir -p /data/logs && echo line > /data/logs/app.log && sleep infinity"]
    env:
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    volumeMounts:
    - {name: shared, mountPath: /data}
    - {name: shared, mountPath: /mine, subPathExpr: "by-pod/$(POD_NAME)"}
  - name: reader
    image: busybox:1.36
    command: [sleep, infinity]
    volumeMounts:
    - {name: shared, mountPath: /srv/shared}
    - {name: shared, mountPath: /var/log/app, subPath: logs}
    - {name: config, mountPath: /etc/app.conf, subPath: app.conf}
    - {name: config, mountPath: /etc/web-config}
  volumes:
  - {name: shared, emptyDir: {}}
  - {name: config, configMap: {name: web-config}}
"""


@pytest.fixture
def files(kubectl: Any, box: str) -> Iterator[str]:
    kubectl("--context", "cluster1", "apply", "-f", "-", input=FILES)
    try:
        kubectl(*CTX, "wait", "--for=condition=Ready", "pod/files", "--timeout=60s")
        yield "files"
    finally:
        kubectl(*CTX, "delete", "pod", "files", "--grace-period=0", "--force", "--ignore-not-found")
        kubectl(*CTX, "delete", "configmap", "web-config", "--ignore-not-found")


def test_an_empty_dir_is_one_folder_for_every_container_and_sub_path_mounts_a_part_of_it(
        kubectl: Any, files: str) -> None:
    def read(path: str) -> str:
        return kubectl(*CTX, "exec", files, "-c", "reader", "--", "cat", path, check=False).stdout

    # The writer's /data is the reader's /srv/shared: one emptyDir, mounted at different paths.
    eventually(lambda: read("/srv/shared/note") == "hi\n", timeout=20, what="the writer's note in the reader's mount")
    # subPath mounts one folder of the volume ...
    eventually(lambda: read("/var/log/app/app.log") == "line\n", timeout=20, what="the log folder by subPath")
    # ... and subPathExpr one named from the container's environment, made when missing.
    kubectl(*CTX, "exec", files, "-c", "writer", "--", "sh", "-c", "echo mine > /mine/f")
    assert read("/srv/shared/by-pod/files/f") == "mine\n"


def test_a_config_map_key_by_sub_path_is_one_read_only_file_that_keeps_its_content(
        kubectl: Any, api: client.ApiClient, files: str) -> None:
    reader = (*CTX, "exec", files, "-c", "reader", "--")
    assert kubectl(*reader, "cat", "/etc/app.conf").stdout == "listen 8080\n"
    # One file, not a folder over /etc: the image's own files stay beside it.
    assert "root:" in kubectl(*reader, "cat", "/etc/passwd").stdout
    out = kubectl(*reader, "sh", "-c", "echo x > /etc/app.conf", check=False)
    assert out.returncode != 0 and "Read-only file system" in out.stderr
    # The whole volume follows the ConfigMap; a file mounted by subPath does not, as on a kubelet.
    client.CoreV1Api(api).patch_namespaced_config_map("web-config", "sandbox", {"data": {"app.conf": "listen 9090\n"}})
    eventually(lambda: kubectl(*reader, "cat", "/etc/web-config/app.conf").stdout == "listen 9090\n", timeout=20,
               what="the ConfigMap's change in the whole volume")
    assert kubectl(*reader, "cat", "/etc/app.conf").stdout == "listen 8080\n"
