"""Pod streams through real clients: port-forward, proxy, logs and attach, as the labs' tools use them.

Istio's docs reach every dashboard with ``kubectl port-forward``; these tests do what a learner does
(forward, then ask over HTTP) and check that the answer comes from the pod.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import termios
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.stream import portforward, stream

from labkit import kube
from labkit.emulator import launching
from labkit.testing import eventually

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
CTX = ("--context", "cluster3", "-n", "streams")

pytestmark = [pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


@pytest.fixture(scope="module")
def hello(emulator: launching.Emulator) -> str:
    """helloworld v1 and its Service in namespace streams of cluster3 (no sidecar); the pod's name.

    Deployed through the Python client, so its tests need no kubectl.
    """
    config_file = emulator.kubeconfig
    kube.apply("cluster3", [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "streams"}}],
               kubeconfig=config_file)
    for selector in ("service=helloworld", "version=v1"):
        kube.apply("cluster3", SAMPLES / "helloworld.yaml", namespace="streams", selector=selector,
                   kubeconfig=config_file)
    kube.wait_ready("cluster3", "streams", ["deploy/helloworld-v1"], timeout=60, kubeconfig=config_file)
    (pod,) = kube.pods("cluster3", "streams", "app=helloworld", kubeconfig=config_file)
    return pod.name


@contextlib.contextmanager
def forwarding(kubectl: Any, target: str, port: int, **env: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """``kubectl port-forward <target> :<port>``: the local port kubectl chose, while it runs."""
    command = [shutil.which("kubectl") or "kubectl", *CTX, "port-forward", target, f":{port}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(kubectl.env, **env))
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline() if ready else ""
        found = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line)
        if not found:
            process.kill()
            raise AssertionError(f"kubectl port-forward printed {line!r}; stderr: {process.communicate()[1]}")
        assert int(found.group(2)) == port
        yield int(found.group(1)), process
    finally:
        process.kill()
        process.communicate()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_port_forward_to_a_pod_answers_from_it(kubectl: Any, hello: str) -> None:
    with forwarding(kubectl, f"pod/{hello}", 5000) as (local, _):
        for _ in range(3):  # one session carries many connections
            assert _get(f"http://127.0.0.1:{local}/hello") == f"Hello version: v1, instance: {hello}\n"


def test_port_forward_to_a_service_reaches_its_target_port(kubectl: Any, hello: str) -> None:
    with forwarding(kubectl, "svc/helloworld", 5000) as (local, _):
        assert _get(f"http://127.0.0.1:{local}/hello").startswith("Hello version: v1, instance: helloworld-v1-")


def test_port_forward_over_spdy_when_websockets_are_off(kubectl: Any, hello: str) -> None:
    with forwarding(kubectl, f"pod/{hello}", 5000, KUBECTL_PORT_FORWARD_WEBSOCKETS="false") as (local, _):
        assert _get(f"http://127.0.0.1:{local}/hello") == f"Hello version: v1, instance: {hello}\n"


def test_port_forward_to_a_closed_port_reports_the_kubelets_error(kubectl: Any, hello: str) -> None:
    with forwarding(kubectl, f"pod/{hello}", 5999) as (local, process):
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            _get(f"http://127.0.0.1:{local}/")
        process.kill()
        _, stderr = process.communicate()
    assert "an error occurred forwarding" in stderr and "-> 5999" in stderr
    assert "failed to connect to localhost:5999 inside namespace" in stderr and "connection refused" in stderr


@pytest.fixture(scope="module")
def api(emulator: launching.Emulator) -> Iterator[client.ApiClient]:
    with config.new_client_from_config(str(emulator.kubeconfig), context="cluster3") as api_client:
        yield api_client


def test_python_client_port_forward_answers_from_the_pod(api: client.ApiClient, hello: str) -> None:
    forward = portforward(client.CoreV1Api(api).connect_get_namespaced_pod_portforward, hello, "streams",
                          ports="5000")
    connection = forward.socket(5000)
    connection.setblocking(True)
    connection.sendall(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    received = b""
    while not received.endswith(b"\n") or b"Hello version" not in received:
        ready, _, _ = select.select([connection], [], [], 10)
        assert ready, f"no answer through the port-forward; so far {received!r}"
        data = connection.recv(4096)
        if not data:
            break
        received += data
    connection.close()
    assert received.startswith(b"HTTP/1.") and f"Hello version: v1, instance: {hello}".encode() in received
    assert forward.error(5000) is None
    eventually(lambda: not forward.connected, 10, "the port-forward's socket to close")


@contextlib.contextmanager
def proxying(kubectl: Any) -> Iterator[str]:
    """``kubectl proxy --port=0``: the base URL it serves the API on, while it runs."""
    command = [shutil.which("kubectl") or "kubectl", "--context", "cluster3", "proxy", "--port=0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=kubectl.env)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline() if ready else ""
        found = re.match(r"Starting to serve on 127\.0\.0\.1:(\d+)", line)
        assert found, f"kubectl proxy printed {line!r}"
        yield f"http://127.0.0.1:{found.group(1)}"
    finally:
        process.kill()
        process.communicate()


def test_kubectl_proxy_reaches_a_service_and_a_pod(kubectl: Any, hello: str) -> None:
    with proxying(kubectl) as base:
        for service in ("helloworld:5000", "helloworld:http", "http:helloworld:5000"):
            answer = _get(f"{base}/api/v1/namespaces/streams/services/{service}/proxy/hello")
            assert answer == f"Hello version: v1, instance: {hello}\n"
        assert _get(f"{base}/api/v1/namespaces/streams/pods/{hello}:5000/proxy/hello") == \
            f"Hello version: v1, instance: {hello}\n"
        assert _get(f"{base}/api/v1/namespaces/streams/pods/{hello}/proxy/hello").startswith("Hello version: v1")
        # Without the slash after proxy, the API server redirects to it (relative links need it).
        connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=10)
        connection.request("GET", "/api/v1/namespaces/streams/services/helloworld:5000/proxy")
        response = connection.getresponse()
        assert response.status == 301
        assert response.headers["Location"] == "/api/v1/namespaces/streams/services/helloworld:5000/proxy/"
        connection.close()


def test_service_proxy_without_endpoints_is_503_with_the_real_message(kubectl: Any, hello: str) -> None:
    kubectl(*CTX, "create", "service", "clusterip", "nobody", "--tcp=80:8080")
    out = kubectl(*CTX, "get", "--raw", "/api/v1/namespaces/streams/services/nobody:80/proxy/", check=False)
    assert out.returncode == 1
    assert 'no endpoints available for service \\"nobody\\"' in out.stderr or \
        'no endpoints available for service "nobody"' in out.stderr
    out = kubectl(*CTX, "get", "--raw", "/api/v1/namespaces/streams/services/helloworld:81/proxy/", check=False)
    assert "no service port 81 found for service" in out.stderr


def test_python_client_service_and_pod_proxy(api: client.ApiClient, hello: str) -> None:
    v1 = client.CoreV1Api(api)
    answer = v1.connect_get_namespaced_service_proxy_with_path("helloworld:5000", "streams", "hello")
    assert answer == f"Hello version: v1, instance: {hello}\n"
    assert v1.connect_get_namespaced_pod_proxy_with_path(f"{hello}:5000", "streams", "hello") == answer


def _busybox(kubectl: Any, name: str, script: str, restart: str = "Never") -> None:
    kubectl(*CTX, "run", name, "--image=busybox:1.36", f"--restart={restart}", "--", "sh", "-c", script)


def test_logs_follow_until_the_container_ends_with_timestamps(kubectl: Any, hello: str) -> None:
    _busybox(kubectl, "counter", "echo one; sleep 1; echo two; sleep 1; echo three")
    eventually(lambda: "one" in kubectl(*CTX, "logs", "counter", check=False).stdout, 30, "the first line")
    followed = kubectl(*CTX, "logs", "-f", "--timestamps", "counter", timeout=30).stdout  # returns when it ends
    stamped = [line.split(" ", 1) for line in followed.splitlines()]
    assert [text for _, text in stamped] == ["one", "two", "three"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", stamp) for stamp, _ in stamped)
    assert stamped[0][0] < stamped[1][0] < stamped[2][0]  # written a second apart, stamped as they came
    assert kubectl(*CTX, "logs", "counter", "--tail=1").stdout == "three\n"


def test_logs_since_keeps_only_recent_lines(kubectl: Any, hello: str) -> None:
    _busybox(kubectl, "slow", "echo early; sleep 9; echo late; sleep 3600")
    eventually(lambda: "late" in kubectl(*CTX, "logs", "slow", check=False).stdout, 40, "the late line")
    assert kubectl(*CTX, "logs", "slow", "--since=6s").stdout == "late\n"  # room for a slow machine either side
    assert kubectl(*CTX, "logs", "slow", "--since=1h").stdout == "early\nlate\n"


def test_logs_previous_after_a_restart_and_the_error_without_one(kubectl: Any, hello: str) -> None:
    _busybox(kubectl, "crashy", "echo attempt $(date +%s%N); exit 3", restart="Always")
    restarted = eventually(lambda: kubectl(*CTX, "get", "pod", "crashy", "-o",
                                           "jsonpath={.status.containerStatuses[0].restartCount}").stdout
                           not in ("", "0"), 60, "a restart")
    assert restarted
    assert kubectl(*CTX, "logs", "crashy", "--previous").stdout.startswith("attempt ")
    out = kubectl(*CTX, "logs", "counter", "--previous", check=False)
    assert out.returncode == 1
    assert out.stderr.strip() == 'Error from server (BadRequest): previous terminated container "counter" in ' \
                                 'pod "counter" not found'


def _on_terminal(kubectl: Any, *args: str, typed: bytes, until: bytes, size: tuple[int, int] = (33, 101)) -> bytes:
    """Run kubectl with a terminal of its own (rows × columns ``size``), type ``typed``, read until ``until``."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    process = subprocess.Popen([shutil.which("kubectl") or "kubectl", *args], stdin=slave, stdout=slave,
                               stderr=slave, env=kubectl.env, start_new_session=True)
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        sent = False
        while until not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break  # kubectl ended
            if not sent and b"$ " in seen:  # the prompt: the command is reading
                os.write(master, typed)
                sent = True
        return seen
    finally:
        process.kill()
        process.wait()
        os.close(master)


def test_exec_it_runs_the_command_on_a_terminal_of_the_clients_size(kubectl: Any, hello: str) -> None:
    seen = _on_terminal(kubectl, *CTX, "exec", "-it", hello, "--", "sh", "-c",
                        "tty; stty size; printf '$ '; read answer; echo got $answer; exit 4",
                        typed=b"hello\r", until=b"exit code 4")
    assert b"/dev/pts/" in seen
    assert b"33 101" in seen
    assert b"got hello" in seen
    assert b"command terminated with exit code 4" in seen  # the terminal's end is the command's end


def test_run_i_rm_feeds_stdin_prints_output_and_deletes_the_pod(kubectl: Any, hello: str) -> None:
    out = kubectl(*CTX, "run", "greeter", "-i", "--rm", "--restart=Never", "--image=busybox", "--", "sh", "-c",
                  "read name; echo hello $name", input="world\n", timeout=90)
    assert "hello world" in out.stdout
    assert 'pod "greeter" deleted' in out.stdout
    assert "greeter" not in kubectl(*CTX, "get", "pods").stdout


def test_run_i_of_a_quick_command_loses_none_of_its_output(kubectl: Any, hello: str) -> None:
    out = kubectl(*CTX, "run", "quick", "-i", "--rm", "--restart=Never", "--image=busybox", "--", "sh", "-c",
                  "echo first; echo second", timeout=90)
    assert "first\nsecond\n" in out.stdout


def test_attach_writes_to_the_containers_own_stdin(kubectl: Any, api: client.ApiClient, hello: str) -> None:
    kubectl(*CTX, "apply", "-f", "-", input="""
apiVersion: v1
kind: Pod
metadata: {name: echoer}
spec:
  containers:
  - name: echoer
    image: busybox
    stdin: true
    command: [sh, -c, 'while read line; do echo "got $line"; done']
""")
    kubectl(*CTX, "wait", "--for=condition=Ready", "pod/echoer", "--timeout=60s")
    command = [shutil.which("kubectl") or "kubectl", *CTX, "attach", "-i", "echoer"]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=kubectl.env)
    try:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(b"one\n")
        process.stdin.flush()
        seen = b""
        deadline = time.monotonic() + 30
        while b"got one" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([process.stdout], [], [], 1)
            if ready:
                seen += os.read(process.stdout.fileno(), 4096)
        assert b"got one" in seen
    finally:
        process.kill()
        process.communicate()
    # The container's stdin outlives that attach (no stdinOnce): the Python client's attach reaches it too.
    session = stream(client.CoreV1Api(api).connect_get_namespaced_pod_attach, "echoer", "streams", stdin=True,
                     stdout=True, stderr=True, tty=False, _preload_content=False)
    try:
        session.write_stdin("two\n")
        heard = ""
        deadline = time.monotonic() + 30
        while "got two" not in heard and time.monotonic() < deadline:
            session.update(timeout=1)
            heard += session.read_stdout() if session.peek_stdout() else ""
        assert "got two" in heard and "got one" not in heard  # output from the attach on, as a kubelet gives it
    finally:
        session.close()
    assert kubectl(*CTX, "get", "pod", "echoer", "-o", "jsonpath={.status.phase}").stdout == "Running"


def test_run_it_gives_the_containers_shell_a_terminal(kubectl: Any, hello: str) -> None:
    seen = _on_terminal(kubectl, *CTX, "run", "shell", "-it", "--rm", "--restart=Never", "--image=busybox", "--",
                        "sh", "-c", "tty; printf '$ '; read answer; echo got $answer",
                        typed=b"yes\r", until=b'pod "shell" deleted')
    assert b"/dev/pts/" in seen and b"got yes" in seen


# Reads each connection to its end, answers "<bytes> <sha256>", closes.
SUMS = """
import hashlib, os, socket
server = socket.create_server((os.environ["POD_IP"], 9000))
while True:
    connection, _ = server.accept()
    digest, size = hashlib.sha256(), 0
    while data := connection.recv(65536):
        digest.update(data)
        size += len(data)
    connection.sendall(f"{size} {digest.hexdigest()}".encode())
    connection.close()
"""


@pytest.mark.parametrize("websockets", ["true", "false"], ids=["websocket-tunnel", "spdy-upgrade"])
def test_port_forward_carries_large_bodies_both_ways_and_parallel_connections(kubectl: Any, hello: str,
                                                                               websockets: str) -> None:
    # A file server and a checksum server in a busybox pod (the machine's python3 plays them), on its pod IP.
    pod_ip = {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    files = {"name": "files", "image": "busybox", "env": [pod_ip], "ports": [{"containerPort": 8000}],
             "command": ["sh", "-c", 'head -c 3000000 /dev/urandom > big && '
                                     'exec python3 -m http.server 8000 --bind "$POD_IP"']}
    sums = {"name": "sums", "image": "busybox", "env": [pod_ip], "ports": [{"containerPort": 9000}],
            "command": ["python3", "-c", SUMS]}
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "files"},
                "spec": {"containers": [files, sums]}}
    kubectl(*CTX, "apply", "-f", "-", input=json.dumps(manifest))
    kubectl(*CTX, "wait", "--for=condition=Ready", "pod/files", "--timeout=60s")
    expected = kubectl(*CTX, "exec", "files", "--", "sha256sum", "big").stdout.split()[0]
    env = {"KUBECTL_PORT_FORWARD_WEBSOCKETS": websockets}
    with forwarding(kubectl, "pod/files", 8000, **env) as (local, _):
        with urllib.request.urlopen(f"http://127.0.0.1:{local}/big", timeout=30) as response:
            body = response.read()
        assert len(body) == 3_000_000 and hashlib.sha256(body).hexdigest() == expected
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            listings = list(pool.map(lambda _: _get(f"http://127.0.0.1:{local}/"), range(24)))
        assert all("big" in listing for listing in listings)
    # Upload, then half-close: the pod reads to the end of what was sent and answers after it.
    upload = os.urandom(2_000_000)
    with forwarding(kubectl, "pod/files", 9000, **env) as (local, _), \
            socket.create_connection(("127.0.0.1", local), timeout=30) as connection:
        connection.sendall(upload)
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(4096):
            answer += chunk
    assert answer.decode() == f"{len(upload)} {hashlib.sha256(upload).hexdigest()}"


def test_logs_of_a_container_that_never_started_say_why_as_the_kubelet_does(kubectl: Any, hello: str) -> None:
    kubectl(*CTX, "run", "typo", "--image=example.com/no-such-image:1")

    def pull_error() -> str | None:
        error = kubectl(*CTX, "logs", "typo", check=False).stderr.strip()
        return error if "pull" in error else None  # "waiting to start: ContainerCreating" comes first

    message = eventually(pull_error, 30, "an image pull error")
    assert message in ('Error from server (BadRequest): container "typo" in pod "typo" is waiting to start: '
                       "image can't be pulled",
                       'Error from server (BadRequest): container "typo" in pod "typo" is waiting to start: '
                       "trying and failing to pull image")


def test_python_client_port_forward_to_a_closed_port_reports_on_the_error_channel(api: client.ApiClient,
                                                                                  hello: str) -> None:
    forward = portforward(client.CoreV1Api(api).connect_get_namespaced_pod_portforward, hello, "streams",
                          ports="5999")
    connection = forward.socket(5999)
    connection.setblocking(True)
    ready, _, _ = select.select([connection], [], [], 10)
    assert ready and connection.recv(1) == b""  # closed, with nothing from the pod
    connection.close()
    error = eventually(lambda: forward.error(5999), 10, "the error channel's message")
    assert "failed to connect to localhost:5999 inside namespace" in error and "connection refused" in error
