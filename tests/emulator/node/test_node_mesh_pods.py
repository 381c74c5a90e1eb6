"""Sidecar pods and what the kubelet mounts: app addresses, env, service-account tokens, the curl shim, probes.

The real agent (``labkit.emulator.envoy.agent``) is not started here: the ``istio-proxy`` containers
below override the command with ``sleep infinity`` and keep Istio's ``args``; their pods carry the
declaration the injector writes (``labkit.io/sidecar``), which is all the node reads, while fake servers in
the test stand where Envoy would listen (pod IP:15080, :15021).
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from labkit.core.contract import SIDECAR_ANNOTATION
from labkit.emulator.mesh.injection import sidecar_declaration
from labkit.emulator.network.addresses import IpPool
from labkit.emulator.node import NodeRuntime
from labkit.testing import address_plan

HELLO_V1 = "registry.istio.io/release/examples-helloworld-v1:1.0"
PROXY_IMAGE = "docker.io/istio/proxyv2:1.30.0"
DEADLINE = 8.0
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6c2FtcGxlOmRlZmF1bHQifQ.c2lnbmF0dXJl"
Obj = dict[str, Any]
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def istio_proxy(**extra: Any) -> Obj:
    return {"name": "istio-proxy", "image": PROXY_IMAGE, "command": ["sleep", "infinity"],
            "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local"], **extra}


def a_pod(name: str, *containers: Obj, namespace: str = "sample", **spec: Any) -> Obj:
    metadata: Obj = {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())}
    if any(c["name"] == "istio-proxy" and c.get("args", [None, None])[1] == "sidecar" for c in containers):
        metadata["annotations"] = {SIDECAR_ANNOTATION: sidecar_declaration()}  # as the injector leaves the pod
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": {"containers": list(containers), "serviceAccountName": "default", "nodeName": "node1", **spec}}


def hello(**extra: Any) -> Obj:
    return {"name": "helloworld", "image": HELLO_V1, "ports": [{"containerPort": 5000}], **extra}


def sleeper(name: str = "curl", **extra: Any) -> Obj:
    return {"name": name, "image": "curlimages/curl", "command": ["sleep", "infinity"], **extra}


class Names:
    """The cluster DNS as the node's resolver seam."""

    def __init__(self, records: dict[str, str]):
        self.records = records

    def resolve(self, name: str, namespace: str) -> list[str]:
        return [self.records[name]] if name in self.records else []


class Node:
    def __init__(self, state_dir: Path, **options: Any):
        plan = address_plan()
        self.pool = IpPool(plan.pod_network(1), reserved=frozenset({plan.api_server_address(1)}), what="pod IP")
        self.statuses: dict[tuple[str, str], Obj] = {}
        self.runtime = NodeRuntime("cluster1", "node1", state_dir, self.pool, self._record, host_ip="127.0.0.1",
                                   restart_backoff=0.2, probe_period_scale=0.02, **options)

    def _record(self, namespace: str, name: str, status: Obj) -> None:
        self.statuses[(namespace, name)] = status

    async def until(self, name: str, predicate: Callable[[Obj], bool], what: str) -> Obj:
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            status = self.statuses.get(("sample", name))
            if status is not None and predicate(status):
                return status
            await asyncio.sleep(0.01)
        raise AssertionError(f"{name}: {what} not reached; last status {self.statuses.get(('sample', name))}")

    async def ready(self, name: str) -> Obj:
        return await self.until(name, is_ready, "Ready")

    async def running(self, name: str) -> Obj:
        return await self.until(name, lambda s: all("running" in c["state"] for c in s["containerStatuses"]),
                                "all containers running")

    async def exec(self, name: str, container: str | None, argv: list[str]) -> tuple[int, str, str]:
        process = await self.runtime.exec("sample", name, container, argv)
        stdout, stderr = await process.communicate()
        assert process.returncode is not None
        return process.returncode, stdout.decode(), stderr.decode()

    async def env(self, name: str, container: str) -> dict[str, str]:
        code, out, _ = await self.exec(name, container, ["env"])
        assert code == 0
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def is_ready(status: Obj) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status["conditions"])


def run(state_dir: Path, body: Callable[[Node], Awaitable[None]], **options: Any) -> None:
    async def main() -> None:
        node = Node(state_dir, **options)
        try:
            await body(node)
        finally:
            await node.runtime.shutdown()
    asyncio.run(main())


class FakeHttp:
    """A one-line HTTP server standing where Envoy would listen; it records request lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = (await reader.readline()).decode().strip()
        while (await reader.readline()).strip():
            pass
        self.lines.append(line)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
        await writer.drain()
        writer.close()

    async def start(self, host: str, port: int) -> FakeHttp:
        self.server = await asyncio.start_server(self._serve, host, port)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


# --- addresses ---------------------------------------------------------------------------------------------------


def test_a_sidecar_pod_gets_a_second_address_for_its_app_released_with_the_pod(tmp_path: Path) -> None:
    async def body(node: Node) -> None:
        manifest = a_pod("hello", hello(), istio_proxy())
        await node.runtime.sync_pod(manifest)
        status = await node.ready("hello")  # the app accepts connections (on its own address)
        env = await node.env("hello", "istio-proxy")
        pod_ip, app = status["podIP"], env["LABKIT_APP_ADDRESS"]
        assert app != pod_ip and node.pool.in_use(app) and node.pool.in_use(pod_ip)
        assert status["podIPs"] == [{"ip": pod_ip}]  # the pod's address stays the pod IP
        # The app listens on its own address, leaving <pod IP>:5000 to Envoy.
        _, writer = await asyncio.open_connection(app, 5000)
        writer.close()
        with pytest.raises(OSError):
            await asyncio.open_connection(pod_ip, 5000)

        await node.runtime.remove_pod("sample", "hello", manifest["metadata"]["uid"])
        assert not node.pool.in_use(app) and not node.pool.in_use(pod_ip)

        plain = a_pod("plain", hello())
        await node.runtime.sync_pod(plain)
        await node.running("plain")
        assert "LABKIT_APP_ADDRESS" not in await node.env("plain", "helloworld")

    run(tmp_path, body)


def test_an_app_address_named_by_the_mesh_wins_over_allocation(tmp_path: Path) -> None:
    async def body(node: Node) -> None:
        chosen = node.pool.allocate()
        manifest = a_pod("hello", hello(), istio_proxy())
        node.runtime.set_app_address(manifest["metadata"]["uid"], chosen)
        await node.runtime.sync_pod(manifest)
        await node.running("hello")
        assert (await node.env("hello", "istio-proxy"))["LABKIT_APP_ADDRESS"] == chosen
        await node.runtime.remove_pod("sample", "hello", manifest["metadata"]["uid"])
        assert node.pool.in_use(chosen)  # not the node's to give back

    run(tmp_path, body)


# --- env -----------------------------------------------------------------------------------------------------------


def test_app_containers_reach_the_mesh_through_the_sidecar_proxy_and_the_agent_does_not(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")

    async def body(node: Node) -> None:
        await node.runtime.sync_pod(a_pod("client", sleeper(), istio_proxy()))
        status = await node.running("client")
        app_env, proxy_env = await node.env("client", "curl"), await node.env("client", "istio-proxy")
        pod_ip, app = status["podIP"], proxy_env["LABKIT_APP_ADDRESS"]
        for env in (app_env, proxy_env):
            assert env["LABKIT_KUBERNETES_CA_FILE"] == str(ca_file)
            assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.9" and env["KUBERNETES_SERVICE_PORT"] == "443"
            assert env["POD_IP"] == pod_ip
        assert app_env["http_proxy"] == app_env["HTTP_PROXY"] == f"http://{pod_ip}:15080"
        assert app_env["no_proxy"] == app_env["NO_PROXY"] == f"localhost,127.0.0.1,{pod_ip},{app}"
        assert "LABKIT_APP_ADDRESS" not in app_env
        assert not {"http_proxy", "HTTP_PROXY", "no_proxy"} & set(proxy_env)
        # Istio-style pilot-agent on the pod's PATH runs the agent module with the pod's env.
        shim = Path(shutil.which("pilot-agent", path=proxy_env["PATH"]) or "")
        assert shim.parent.name == "bin" and "-m labkit.emulator.envoy.agent \"$@\"" in shim.read_text()

        await node.runtime.sync_pod(a_pod("bare", sleeper()))
        await node.running("bare")
        bare = await node.env("bare", "curl")
        assert "http_proxy" not in bare

    run(tmp_path, body, ca_file=ca_file, kubernetes_service=("127.0.0.9", 443))


def test_configmap_and_secret_volumes_appear_at_their_mount_path_once_the_objects_exist(tmp_path: Path) -> None:
    """Istio's agent reads the mesh root from the istio-ca-root-cert ConfigMap mounted in its pod: like a kubelet,
    the node holds the pod until the object exists (a FailedMount event says which), then writes every key."""
    objects: dict[tuple[str, str, str], dict[str, str]] = {}
    events: list[tuple[str, str]] = []

    def record(_ref: Obj, _type: str, reason: str, message: str, **_: Any) -> None:
        events.append((reason, message))

    async def body(node: Node) -> None:
        pod = a_pod("reader", sleeper(volumeMounts=[{"name": "root", "mountPath": "/var/run/secrets/istio"},
                                                    {"name": "creds", "mountPath": "/etc/creds"}]),
                    volumes=[{"name": "root", "configMap": {"name": "istio-ca-root-cert"}},
                             {"name": "creds", "secret": {"secretName": "creds", "items": [
                                 {"key": "password", "path": "pw"}]}},
                             {"name": "absent", "configMap": {"name": "nowhere", "optional": True}}])
        await node.runtime.sync_pod(pod)
        await asyncio.sleep(0.3)
        assert ("FailedMount", 'MountVolume.SetUp failed for volume "root" : configmap "istio-ca-root-cert" not '
                "found") in events
        assert node.statuses[("sample", "reader")]["phase"] == "Pending"
        objects[("sample", "ConfigMap", "istio-ca-root-cert")] = {"root-cert.pem": "ROOT"}
        objects[("sample", "Secret", "creds")] = {"password": "s3cret", "user": "me"}
        node.runtime.volume_sources_changed()
        await node.running("reader")
        assert (await node.exec("reader", "curl", ["cat", "var/run/secrets/istio/root-cert.pem"]))[1] == "ROOT"
        assert (await node.exec("reader", "curl", ["cat", "etc/creds/pw"]))[1] == "s3cret"
        assert (await node.exec("reader", "curl", ["ls", "etc/creds"]))[1].split() == ["pw"]

    run(tmp_path, body, read_data=lambda namespace, kind, name: objects.get((namespace, kind, name)),
        record_event=record)


def test_a_csi_volume_holds_the_pod_until_its_driver_has_filled_it(tmp_path: Path) -> None:
    """Istio's agent looks for SPIRE's socket once, when it starts: like a kubelet, which starts no container before
    the SPIFFE CSI driver has mounted its volume, the node holds the pod (FailedMount, in the kubelet's words) until
    SPIRE's agent has put the socket in the volume's folder."""
    events: list[tuple[str, str]] = []

    def record(_ref: Obj, _type: str, reason: str, message: str, **_: Any) -> None:
        events.append((reason, message))

    async def body(node: Node) -> None:
        pod = a_pod("spiffe", sleeper(volumeMounts=[{"name": "workload-socket",
                                                     "mountPath": "/run/secrets/workload-spiffe-uds"}]),
                    volumes=[{"name": "workload-socket", "csi": {"driver": "csi.spiffe.io", "readOnly": True}}])
        await node.runtime.sync_pod(pod)
        await asyncio.sleep(0.3)
        assert ("FailedMount", 'MountVolume.SetUp failed for volume "workload-socket" : kubernetes.io/csi: '
                "mounter.SetUpAt failed to get CSI client: driver name csi.spiffe.io not found in the list of "
                "registered CSI drivers") in events
        assert node.statuses[("sample", "spiffe")]["phase"] == "Pending"
        (folder,) = tmp_path.rglob(f"sample_spiffe_{pod['metadata']['uid']}")
        (folder / "run/secrets/workload-spiffe-uds").mkdir(parents=True, exist_ok=True)
        (folder / "run/secrets/workload-spiffe-uds/socket").write_text("")  # what the driver serves
        await node.running("spiffe")

    run(tmp_path, body, record_event=record)


def test_the_node_wires_only_what_the_pod_declares(tmp_path: Path) -> None:
    async def body(node: Node) -> None:
        undeclared = a_pod("undeclared", sleeper(), istio_proxy())
        del undeclared["metadata"]["annotations"]  # Istio's container, but no injector's declaration
        await node.runtime.sync_pod(undeclared)
        await node.running("undeclared")
        app_env, proxy_env = await node.env("undeclared", "curl"), await node.env("undeclared", "istio-proxy")
        assert "http_proxy" not in app_env and "LABKIT_APP_ADDRESS" not in proxy_env

    run(tmp_path, body)


def test_gateways_are_not_sidecars(tmp_path: Path) -> None:
    async def body(node: Node) -> None:
        gateway = istio_proxy(args=["proxy", "router", "--domain", "istio-system.svc.cluster.local"])
        await node.runtime.sync_pod(a_pod("gateway", gateway))
        await node.running("gateway")
        env = await node.env("gateway", "istio-proxy")
        assert "LABKIT_APP_ADDRESS" not in env and "http_proxy" not in env
        assert shutil.which("pilot-agent", path=env["PATH"])

    run(tmp_path, body)


# --- service-account tokens ---------------------------------------------------------------------------------------


def test_every_pod_gets_its_projected_token_unless_it_opts_out(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text("cluster CA\n")
    issued: list[tuple[str, str]] = []

    def issue(namespace: str, account: str, audiences: tuple[str, ...] = (), seconds: int | None = None) -> str:
        issued.append((namespace, account))
        return JWT

    async def body(node: Node) -> None:
        await node.runtime.sync_pod(a_pod("reader", sleeper(), serviceAccountName="istio-reader"))
        await node.runtime.sync_pod(a_pod("opted-out", sleeper(), automountServiceAccountToken=False))
        await node.running("reader")
        await node.running("opted-out")
        env = await node.env("reader", "curl")
        folder = Path(env["LABKIT_SERVICEACCOUNT_DIR"])
        assert folder.name == "serviceaccount" and folder.parent.name.startswith("sample_reader_")
        assert (folder / "token").read_text() == JWT
        assert len(JWT.split(".")) == 3
        assert (folder / "token").stat().st_mode & 0o077 == 0
        assert (folder / "namespace").read_text() == "sample"
        assert (folder / "ca.crt").read_text() == "cluster CA\n"
        assert issued == [("sample", "istio-reader")]
        assert "LABKIT_SERVICEACCOUNT_DIR" not in await node.env("opted-out", "curl")

    run(tmp_path, body, ca_file=ca_file, issue_token=issue)


def test_a_projected_service_account_token_volume_is_written_where_containers_mount_it(tmp_path: Path) -> None:
    """The generic Kubernetes projected volume (Istio's ``istio-token``): a TokenRequest for its audience and
    lifetime, at ``mountPath/path`` inside the pod's folder, readable only by the pod."""
    issued: list[tuple[str, str, tuple[str, ...], int | None]] = []

    def issue(namespace: str, account: str, audiences: tuple[str, ...] = (), seconds: int | None = None) -> str:
        issued.append((namespace, account, audiences, seconds))
        return f"{JWT}-{','.join(audiences) or 'api'}"

    volume = {"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {
        "audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}}]}}

    async def body(node: Node) -> None:
        await node.runtime.sync_pod(a_pod("meshed", sleeper(volumeMounts=[
            {"name": "istio-token", "mountPath": "/var/run/secrets/tokens"}]), volumes=[volume]))
        await node.running("meshed")
        folder = Path((await node.env("meshed", "curl"))["LABKIT_SERVICEACCOUNT_DIR"]).parent
        token = folder / "var/run/secrets/tokens/istio-token"
        assert token.read_text() == f"{JWT}-istio-ca"
        assert token.stat().st_mode & 0o077 == 0
        assert ("sample", "default", ("istio-ca",), 43200) in issued

    run(tmp_path, body, issue_token=issue)


def test_containers_wait_for_a_token_the_cluster_cannot_issue_yet(tmp_path: Path) -> None:
    accounts: set[str] = set()

    def issue(namespace: str, account: str, audiences: tuple[str, ...] = (), seconds: int | None = None) -> str:
        if account not in accounts:
            raise LookupError(f'serviceaccounts "{account}" not found')
        return JWT

    async def body(node: Node) -> None:
        await node.runtime.sync_pod(a_pod("early", sleeper(), serviceAccountName="late"))
        status = await node.until("early", lambda s: "containerStatuses" in s, "a status")
        assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
        accounts.add("late")  # the ServiceAccount controller catches up
        await node.running("early")
        token_dir = Path((await node.env("early", "curl"))["LABKIT_SERVICEACCOUNT_DIR"])
        assert (token_dir / "token").read_text() == JWT

    run(tmp_path, body, issue_token=issue)


# --- the curl shim -------------------------------------------------------------------------------------------------


@needs_curl
def test_curl_in_a_sidecar_pod_goes_through_the_sidecar_and_unknown_names_still_fail_in_curl(tmp_path: Path) -> None:
    names = Names({})
    proxy = FakeHttp()

    async def body(node: Node) -> None:
        await node.runtime.sync_pod(a_pod("client", sleeper(), istio_proxy()))
        pod_ip = (await node.running("client"))["podIP"]
        names.records["helloworld.sample.svc.cluster.local"] = "10.96.0.20"
        await proxy.start(pod_ip, 15080)
        try:
            code, out, err = await node.exec("client", "curl", ["curl", "-sS", "http://helloworld.sample:5000/hello"])
            assert (code, out, err) == (0, "ok\n", "")
            assert proxy.lines == ["GET http://helloworld.sample:5000/hello HTTP/1.1"]

            code, out, err = await node.exec("client", "curl", [
                "curl", "-sS", "http://nope.sample:5000/", "http://helloworld:5000/hello"])
            assert err == "curl: (6) Could not resolve host: nope.sample\n"
            assert out == "ok\n"
            assert proxy.lines[1:] == ["GET http://helloworld:5000/hello HTTP/1.1"]
        finally:
            await proxy.stop()

    run(tmp_path, body, resolver=names)


# --- probes --------------------------------------------------------------------------------------------------------


def test_the_proxy_and_rewritten_probes_go_to_the_pod_ip_and_app_probes_to_the_app(tmp_path: Path) -> None:
    agent = FakeHttp()

    async def body(node: Node) -> None:
        ready = {"httpGet": {"path": "/healthz/ready", "port": 15021}, "periodSeconds": 1}
        rewritten = {"httpGet": {"path": "/app-health/curl/readyz", "port": 15020}, "periodSeconds": 1}
        app_probe = {"httpGet": {"path": "/health", "port": 5000}, "periodSeconds": 1}
        manifest = a_pod("probed", hello(readinessProbe=app_probe), sleeper(readinessProbe=rewritten),
                         istio_proxy(readinessProbe=ready))
        await node.runtime.sync_pod(manifest)
        pod_ip = (await node.running("probed"))["podIP"]
        await agent.start(pod_ip, 15021)
        rewrites = await FakeHttp().start(pod_ip, 15020)
        try:
            status = await node.ready("probed")
        finally:
            await agent.stop()
            await rewrites.stop()
        assert all(c["ready"] for c in status["containerStatuses"])
        assert "GET /healthz/ready HTTP/1.1" in agent.lines
        assert "GET /app-health/curl/readyz HTTP/1.1" in rewrites.lines

    run(tmp_path, body)
