"""NodeRuntime with real processes on real loopback addresses: start, status, restarts, probes, logs, exec."""

from __future__ import annotations

import asyncio
import http.client
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dnslib import QTYPE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from labkit.core.contract import APP_ADDRESS_ANNOTATION
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.network.addresses import IpPool
from labkit.emulator.node import NodeRuntime
from labkit.testing import address_plan

HELLO_V1 = "registry.istio.io/release/examples-helloworld-v1:1.0"
DEADLINE = 8.0


def _pool() -> IpPool:
    plan = address_plan()
    return IpPool(plan.pod_network(1), reserved=frozenset({plan.api_server_address(1)}), what="pod IP")


def pod(name: str, image: str = HELLO_V1, namespace: str = "sample", **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": spec.pop("container_name", "main"), "image": image}
    for key in ("command", "args", "env", "ports", "readinessProbe"):
        if key in spec:
            container[key] = spec.pop(key)
    annotations = spec.pop("annotations", {})
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()), "annotations": annotations},
        "spec": {"containers": [container], "serviceAccountName": "default", "nodeName": "node1", **spec},
    }


class Node:
    """A runtime under test, the statuses it reported, and ways to wait for them."""

    def __init__(self, state_dir: Path, **options: Any):
        self.statuses: dict[tuple[str, str], dict[str, Any]] = {}
        self.history: list[dict[str, Any]] = []
        self.pool = _pool()
        self.runtime = NodeRuntime("cluster1", "node1", state_dir, self.pool, self._record,
                                   host_ip="127.0.0.1", restart_backoff=0.2, probe_period_scale=0.02, **options)

    def _record(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.statuses[(namespace, name)] = status
        self.history.append(status)

    async def until(self, namespace: str, name: str, predicate: Callable[[dict[str, Any]], bool],
                    what: str) -> dict[str, Any]:
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            status = self.statuses.get((namespace, name))
            if status is not None and predicate(status):
                return status
            await asyncio.sleep(0.01)
        last = self.statuses.get((namespace, name))
        raise AssertionError(f"{namespace}/{name}: {what} not reached; last status {last}")

    async def ready(self, namespace: str, name: str) -> dict[str, Any]:
        return await self.until(namespace, name, is_ready, "Ready")


def is_ready(status: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status["conditions"])


def container_status(status: dict[str, Any]) -> dict[str, Any]:
    return status["containerStatuses"][0]


def run(state_dir: Path, body: Callable[[Node], Awaitable[None]], **options: Any) -> None:
    async def main() -> None:
        node = Node(state_dir, **options)
        try:
            await body(node)
        finally:
            await node.runtime.shutdown()
    asyncio.run(main())


def http_get(ip: str, port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(ip, port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0); it is gone for our purposes once it no longer runs.
    return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")


def test_helloworld_runs_on_its_pod_ip_restarts_after_sigkill_and_is_gone_after_removal(tmp_path: Path) -> None:
    async def body(node: Node) -> None:
        manifest = pod("helloworld-v1-7d9c", ports=[{"containerPort": 5000, "name": "http"}])
        await node.runtime.sync_pod(manifest)
        await node.runtime.sync_pod(manifest)  # idempotent
        status = await node.ready("sample", "helloworld-v1-7d9c")
        ip = status["podIP"]
        assert ip.startswith(f"127.{node.pool.network.network_address.packed[1]}.1.")
        assert status["podIPs"] == [{"ip": ip}]
        assert status["hostIP"] == "127.0.0.1"
        assert status["phase"] == "Running"
        assert [c["type"] for c in status["conditions"]] == [
            "PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
        first = container_status(status)
        assert first["ready"] and first["started"] and first["restartCount"] == 0
        assert "running" in first["state"] and first["containerID"].startswith("containerd://")
        assert node.history[0]["phase"] == "Pending"
        assert container_status(node.history[0])["state"] == {"waiting": {"reason": "ContainerCreating"}}

        assert await asyncio.to_thread(http_get, ip, 5000, "/hello") == (
            200, b"Hello version: v1, instance: helloworld-v1-7d9c\n")
        assert b'"GET /hello HTTP/1.1" 200' in node.runtime.logs("sample", "helloworld-v1-7d9c")
        assert node.runtime.logs("sample", "helloworld-v1-7d9c", tail=1).count(b"\n") == 1

        pid = node.runtime.pids("sample", "helloworld-v1-7d9c")["main"]
        os.kill(pid, signal.SIGKILL)
        status = await node.until("sample", "helloworld-v1-7d9c",
                                  lambda s: container_status(s)["restartCount"] == 1 and is_ready(s), "restart")
        restarted = container_status(status)
        assert restarted["lastState"]["terminated"]["exitCode"] == 137
        assert restarted["lastState"]["terminated"]["reason"] == "Error"
        assert await asyncio.to_thread(http_get, ip, 5000, "/hello") == (
            200, b"Hello version: v1, instance: helloworld-v1-7d9c\n")
        assert b"GET /hello" in node.runtime.logs("sample", "helloworld-v1-7d9c", previous=True)

        new_pid = node.runtime.pids("sample", "helloworld-v1-7d9c")["main"]
        await node.runtime.remove_pod("sample", "helloworld-v1-7d9c", manifest["metadata"]["uid"])
        assert gone(new_pid)
        assert not node.pool.in_use(ip)
        with pytest.raises(StatusError, match="not found"):
            node.runtime.logs("sample", "helloworld-v1-7d9c")

    run(tmp_path, body)


def test_follow_logs_yields_request_lines_as_they_come(tmp_path: Path) -> None:
    async def body(node: Node) -> None:
        await node.runtime.sync_pod(pod("nginx-0", image="nginx:alpine", namespace="web"))
        ip = (await node.ready("web", "nginx-0"))["podIP"]
        stream = node.runtime.follow_logs("web", "nginx-0")
        try:
            assert b"Listening" in await anext(stream)
            status, body_bytes = await asyncio.to_thread(http_get, ip, 80, "/")
            assert status == 200 and b"Welcome to nginx!" in body_bytes
            assert b'"GET / HTTP/1.1" 200 615' in await asyncio.wait_for(anext(stream), DEADLINE)
        finally:
            await stream.aclose()

    run(tmp_path, body)


def test_an_unknown_image_stays_pending_with_err_image_pull_then_back_off(tmp_path: Path) -> None:
    async def body(node: Node) -> None:
        await node.runtime.sync_pod(pod("mystery", image="foo/bar:1"))
        status = await node.until("sample", "mystery",
                                  lambda s: container_status(s)["state"]["waiting"]["reason"] == "ErrImagePull",
                                  "ErrImagePull")
        message = container_status(status)["state"]["waiting"]["message"]
        assert message.startswith('Failed to pull image "foo/bar:1": labkit\'s embedded node runs images as local '
                                  "programs and knows: registry.istio.io/release/examples-helloworld-v1")
        assert "curlimages/curl" in message and "nginx" in message
        status = await node.until(
            "sample", "mystery",
            lambda s: container_status(s)["state"]["waiting"]["reason"] == "ImagePullBackOff", "ImagePullBackOff")
        assert status["phase"] == "Pending"
        assert not is_ready(status)
        assert container_status(status)["state"]["waiting"]["message"].startswith(
            'Back-off pulling image "foo/bar:1"')

    run(tmp_path, body)


def test_readiness_follows_the_probe(tmp_path: Path) -> None:
    async def body(node: Node) -> None:
        flag = tmp_path / "ready-flag"
        exec_probe = {"exec": {"command": ["test", "-e", str(flag)]}, "periodSeconds": 1, "failureThreshold": 1}
        http_probe = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 1}
        bad_probe = {"httpGet": {"path": "/missing", "port": 5000}, "periodSeconds": 1}
        ports = [{"containerPort": 5000, "name": "http"}]
        await node.runtime.sync_pod(pod("by-exec", readinessProbe=exec_probe, ports=ports))
        await node.runtime.sync_pod(pod("by-http", readinessProbe=http_probe, ports=ports))
        await node.runtime.sync_pod(pod("never", readinessProbe=bad_probe, ports=ports))

        await node.ready("sample", "by-http")
        await node.until("sample", "by-exec", lambda s: s["phase"] == "Running", "Running")
        assert not is_ready(node.statuses[("sample", "by-exec")])
        flag.touch()
        await node.ready("sample", "by-exec")
        flag.unlink()
        status = await node.until("sample", "by-exec", lambda s: not is_ready(s), "not Ready again")
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "ContainersNotReady"
        assert ready["message"] == "containers with unready status: [main]"

        never = node.statuses[("sample", "never")]
        assert never["phase"] == "Running" and not is_ready(never)
        assert container_status(never)["started"] and not container_status(never)["ready"]

    run(tmp_path, body)


def test_crashing_containers_back_off_or_fail_as_the_restart_policy_says(tmp_path: Path) -> None:
    async def body(node: Node) -> None:
        # The curl image's entrypoint is the machine's curl: a refused connection exits 7.
        args = ["-sS", "--max-time", "2", "http://127.0.0.1:1/"]
        await node.runtime.sync_pod(pod("crashy", image="curlimages/curl", args=args))
        await node.runtime.sync_pod(pod("once", image="curlimages/curl", args=args, restartPolicy="Never"))
        status = await node.until(
            "sample", "crashy",
            lambda s: container_status(s)["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff",
            "CrashLoopBackOff")
        crashed = container_status(status)
        assert crashed["restartCount"] >= 1
        assert crashed["lastState"]["terminated"]["exitCode"] == 7
        assert "restarting failed container=main pod=crashy_sample(" in crashed["state"]["waiting"]["message"]
        assert status["phase"] == "Running"
        assert b"curl: (7)" in node.runtime.logs("sample", "crashy", previous=True)

        status = await node.until("sample", "once", lambda s: s["phase"] == "Failed", "Failed")
        assert container_status(status)["state"]["terminated"]["exitCode"] == 7
        assert container_status(status)["restartCount"] == 0

    run(tmp_path, body)


class _FakeDns(BaseResolver):
    def __init__(self, records: dict[str, str]):
        self.records = records
        self.sources: list[str] = []

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        self.sources.append(handler.client_address[0])
        reply = request.reply()
        name = str(request.q.qname).rstrip(".")
        if name in self.records:
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(self.records[name]), ttl=5))
        else:
            reply.header.rcode = 3  # NXDOMAIN
        return reply


@pytest.fixture
def fake_dns() -> Iterator[tuple[_FakeDns, tuple[str, int]]]:
    resolver = _FakeDns({})
    server = DNSServer(resolver, address="127.0.0.1", port=0, logger=DNSLogger(logf=lambda _: None))
    server.start_thread()
    try:
        yield resolver, server.server.server_address[:2]
    finally:
        server.stop()
        server.server.server_close()
        server.thread.join(timeout=5)


async def _exec(node: Node, namespace: str, name: str, argv: list[str]) -> tuple[int, str, str]:
    process = await node.runtime.exec(namespace, name, None, argv)
    stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


@needs_curl
def test_exec_runs_curl_as_the_pod_resolving_service_names_through_the_cluster_dns(
        tmp_path: Path, fake_dns: tuple[_FakeDns, tuple[str, int]]) -> None:
    resolver, address = fake_dns

    async def body(node: Node) -> None:
        await node.runtime.sync_pod(pod("helloworld-v1-abc", ports=[{"containerPort": 5000}]))
        hello_ip = (await node.ready("sample", "helloworld-v1-abc"))["podIP"]
        resolver.records["helloworld.sample.svc.cluster.local"] = hello_ip
        env = [{"name": "MY_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
               {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
               {"name": "GREETING", "value": "hi from $(MY_NAMESPACE)"}]
        await node.runtime.sync_pod(pod("curl-5b8", image="curlimages/curl", command=["/bin/sleep", "infinity"],
                                        env=env))
        client_ip = (await node.ready("sample", "curl-5b8"))["podIP"]

        code, out, _ = await _exec(node, "sample", "curl-5b8", ["sh", "-c", 'echo "$HOSTNAME $MY_NAMESPACE $MY_IP '
                                                                         '$POD_IP $GREETING"'])
        assert (code, out) == (0, f"curl-5b8 sample {client_ip} {client_ip} hi from sample\n")

        for host in ("helloworld", "helloworld.sample", "helloworld.sample.svc.cluster.local"):
            code, out, err = await _exec(node, "sample", "curl-5b8", ["curl", "-sS", f"http://{host}:5000/hello"])
            assert (code, out, err) == (0, "Hello version: v1, instance: helloworld-v1-abc\n", "")
        assert client_ip in resolver.sources  # queries come from the pod, as a real pod's would

        code, out, err = await _exec(node, "sample", "curl-5b8", ["curl", "-sS", "http://foo.sample:5000/hello"])
        assert (code, out, err) == (6, "", "curl: (6) Could not resolve host: foo.sample\n")

        # Many URLs in one curl (how labkit's call loops work): each resolves, the unknown one fails on its own.
        code, out, err = await _exec(node, "sample", "curl-5b8", [
            "curl", "-sS", "-w", "%{http_code}\n", "http://helloworld:5000/hello", "http://nope:5000/",
            "http://helloworld.sample:5000/health"])
        assert out.count("Hello version: v1") == 1 and "Helloworld is healthy" in out
        assert err == "curl: (6) Could not resolve host: nope\n"

        with pytest.raises(StatusError, match="not found"):
            await node.runtime.exec("sample", "no-such-pod", None, ["curl", "http://helloworld:5000"])

    run(tmp_path, body, dns_server=address)


class _Names:
    def __init__(self) -> None:
        self.records: dict[str, str] = {}
        self.asked: list[tuple[str, str]] = []

    def resolve(self, name: str, namespace: str) -> list[str]:
        self.asked.append((name, namespace))
        return [self.records[name]] if name in self.records else []


@needs_curl
def test_a_resolver_object_is_served_to_the_shim_over_loopback_dns(tmp_path: Path) -> None:
    names = _Names()

    async def body(node: Node) -> None:
        await node.runtime.sync_pod(pod("web-1", image="nginx", namespace="web"))
        names.records["web.web.svc.cluster.local"] = (await node.ready("web", "web-1"))["podIP"]
        await node.runtime.sync_pod(pod("client", image="curlimages/curl", namespace="web",
                                        command=["sleep", "3650d"]))
        await node.ready("web", "client")
        code, out, _ = await _exec(node, "web", "client", ["curl", "-s", "web/"])
        assert code == 0 and "Welcome to nginx!" in out
        assert ("web.web.svc.cluster.local", "web") in names.asked

    run(tmp_path, body, resolver=names)


def test_exec_of_a_missing_program_fails_like_kubernetes_and_names_the_fix(tmp_path: Path) -> None:
    async def body(node: Node) -> None:
        await node.runtime.sync_pod(pod("idle", image="curlimages/curl", command=["sleep", "infinity"]))
        await node.ready("sample", "idle")
        from labkit.errors import ToolNotFoundError
        with pytest.raises(ToolNotFoundError, match=r'exec: "no-such-tool-xyz": executable file not found in \$PATH'):
            await node.runtime.exec("sample", "idle", None, ["no-such-tool-xyz"])

    run(tmp_path, body)


def test_the_app_address_seam_moves_the_app_off_the_pod_ip(tmp_path: Path) -> None:
    async def body(node: Node) -> None:
        app_ip = node.pool.allocate()
        manifest = pod("hello-sidecar", annotations={APP_ADDRESS_ANNOTATION: app_ip},
                       ports=[{"containerPort": 5000}])
        await node.runtime.sync_pod(manifest)
        status = await node.ready("sample", "hello-sidecar")
        assert status["podIP"] != app_ip
        assert (await asyncio.to_thread(http_get, app_ip, 5000, "/health"))[1] == b"Helloworld is healthy"
        with pytest.raises(OSError):
            await asyncio.to_thread(http_get, status["podIP"], 5000, "/health")

    run(tmp_path, body)


def test_port_forward_dials_the_pods_localhost_the_app_when_a_sidecar_holds_the_pod_ip(tmp_path: Path) -> None:
    async def body(node: Node) -> None:
        app_ip = node.pool.allocate()
        await node.runtime.sync_pod(pod("hello-sidecar", annotations={APP_ADDRESS_ANNOTATION: app_ip},
                                        ports=[{"containerPort": 5000}]))
        await node.ready("sample", "hello-sidecar")
        reader, writer = await node.runtime.connect("sample", "hello-sidecar", 5000)
        writer.write(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.endswith(b"Helloworld is healthy")
        with pytest.raises(ConnectionRefusedError, match=f"dial tcp4 {app_ip}:5999: connect: connection refused"):
            await node.runtime.connect("sample", "hello-sidecar", 5999)
        with pytest.raises(StatusError):
            await node.runtime.connect("sample", "nobody", 5000)

    run(tmp_path, body)


def test_shutdown_leaves_no_process(tmp_path: Path) -> None:
    pids: list[int] = []

    async def body(node: Node) -> None:
        await node.runtime.sync_pod(pod("a", ports=[{"containerPort": 5000}]))
        await node.runtime.sync_pod(pod("b", image="curlimages/curl", command=["sleep", "infinity"]))
        await node.ready("sample", "a")
        await node.ready("sample", "b")
        pids.extend(node.runtime.pids("sample", "a").values())
        pids.extend(node.runtime.pids("sample", "b").values())

    run(tmp_path, body)
    assert len(pids) == 2
    assert all(gone(pid) for pid in pids)
    assert not list((tmp_path / "pods").iterdir())


def test_pod_processes_die_with_the_emulator_even_when_it_is_sigkilled(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import asyncio, sys
        from pathlib import Path
        from labkit.core.contract import AddressPlan
        from labkit.emulator.network.addresses import IpPool
        from labkit.emulator.node import NodeRuntime

        async def main():
            pool = IpPool(AddressPlan(block={address_plan().block}).pod_network(2))
            node = NodeRuntime("c", "n", Path({str(tmp_path)!r}), pool, lambda *a: None)
            await node.sync_pod({{"metadata": {{"name": "p", "namespace": "d", "uid": "u"}},
                                 "spec": {{"containers": [{{"name": "c", "image": "curlimages/curl",
                                                           "command": ["sleep", "infinity"]}}]}}}})
            while not node.pids("d", "p"):
                await asyncio.sleep(0.01)
            print(node.pids("d", "p")["c"], flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
    """)
    emulator = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert emulator.stdout is not None
        child = int(emulator.stdout.readline())
        assert not gone(child)
        emulator.kill()
        emulator.wait()
        end = time.monotonic() + DEADLINE
        while not gone(child) and time.monotonic() < end:
            time.sleep(0.01)
        assert gone(child)
    finally:
        if emulator.poll() is None:
            emulator.kill()
            emulator.wait()
        if emulator.stdout is not None:
            emulator.stdout.close()


def test_a_busybox_command_runs_in_the_shell_and_pre_stop_comes_before_sigterm(tmp_path: Path) -> None:
    said = tmp_path / "said"

    async def body(node: Node) -> None:
        manifest = pod("talker", image="busybox", command=[
            "sh", "-c", f"echo started; trap 'echo term >> {said}; exit 0' TERM; while :; do sleep 0.05; done"])
        manifest["spec"]["containers"][0]["lifecycle"] = {
            "preStop": {"exec": {"command": ["sh", "-c", f"echo bye >> {said}"]}}}
        await node.runtime.sync_pod(manifest)
        await node.until("sample", "talker", lambda s: s["phase"] == "Running", "Running")
        end = time.monotonic() + DEADLINE
        while node.runtime.logs("sample", "talker") != b"started\n" and time.monotonic() < end:
            await asyncio.sleep(0.02)
        assert node.runtime.logs("sample", "talker") == b"started\n"
        await node.runtime.remove_pod("sample", "talker", manifest["metadata"]["uid"], grace=1)
        assert said.read_text() == "bye\nterm\n"

    run(tmp_path, body)


def test_a_finished_shell_command_completes_the_pod(tmp_path: Path) -> None:
    async def body(node: Node) -> None:
        await node.runtime.sync_pod(pod("once", image="alpine:3.20", command=["sh", "-c", "echo $((6 * 7))"],
                                        restartPolicy="Never"))
        status = await node.until("sample", "once", lambda s: s["phase"] == "Succeeded", "Succeeded")
        assert container_status(status)["state"]["terminated"]["reason"] == "Completed"
        assert node.runtime.logs("sample", "once") == b"42\n"

    run(tmp_path, body)


def test_a_failing_pre_stop_hook_is_reported_and_does_not_hold_the_pod(tmp_path: Path) -> None:
    events: list[tuple[str, str, str]] = []

    def record(involved: Any, type: str, reason: str, message: str, **_: Any) -> None:
        events.append((type, reason, message))

    async def body(node: Node) -> None:
        manifest = pod("grumpy", image="busybox", command=["sleep", "infinity"])
        manifest["spec"]["containers"][0]["lifecycle"] = {"preStop": {"exec": {"command": ["sh", "-c", "exit 1"]}}}
        await node.runtime.sync_pod(manifest)
        await node.until("sample", "grumpy", lambda s: s["phase"] == "Running", "Running")
        await node.runtime.remove_pod("sample", "grumpy", manifest["metadata"]["uid"], grace=1)
        assert ("Warning", "FailedPreStopHook", "PreStopHook failed") in events

    run(tmp_path, body, record_event=record)
