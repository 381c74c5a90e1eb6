"""Helpers for the envoy tests: real agents and Envoys on loopback, a stand-in istiod over real gRPC, tiny backends,
HTTP with deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import http.client
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from labkit.emulator.mesh.model import ProxyConfig
from labkit.emulator.mesh.serving import AuthenticationError, Caller, Connection, Control, XdsServer
from labkit.emulator.mesh.serving import _rejection as rejection
from labkit.emulator.mesh.xds.ads import ads_resources
from labkit.pki import new_root, request_identities
from labkit.testing import address_plan

DEADLINE = 5.0
T = TypeVar("T")


def run(awaitable: Awaitable[T]) -> T:
    return asyncio.run(awaitable)  # type: ignore[arg-type]


def pod_ips(count: int) -> list[str]:
    hosts = address_plan().pod_network(1).hosts()
    next(hosts)  # .1 is the API server's in a real plan
    return [str(next(hosts)) for _ in range(count)]


def get(host: str, port: int, path: str = "/", headers: dict[str, str] | None = None,
        timeout: float = 2.0) -> tuple[int, str]:
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def poll(check: Callable[[], T | None], what: str, deadline: float = DEADLINE) -> T:
    """Call ``check`` until it returns something truthy; fail with ``what`` after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while True:
        with contextlib.suppress(OSError):
            result = check()
            if result:
                return result
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


TOKEN = "the-pods-istio-ca-token"


class StandInIstiod:
    """labkit's istiod gRPC server (:class:`~labkit.emulator.mesh.serving.XdsServer`) with answers set by the test,
    on 15012 (TLS) and 15010 of ``ip``, in a thread of its own: what the agent under test dials."""

    def __init__(self, ip: str):
        self.ip = ip
        self.ca = new_root()
        self.serving = self.ca.issue_server("istiod", dns_names=["istiod.istio-system.svc"], ip_addresses=[ip])
        self.configs: dict[str, ProxyConfig] = {}
        self.version = 0
        self.server = XdsServer(Control(self._authenticate, self._resources, self._sign), lambda: str(self.version))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> StandInIstiod:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(
            self.server.start(self.ip, tls=(self.serving.cert_chain_pem, self.serving.key_pem)), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def shutdown() -> None:
            await self.server.stop()
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _authenticate(self, token: str, cluster: str) -> Caller:
        if token != TOKEN:
            raise AuthenticationError("the token is not authenticated")
        return Caller(cluster or "cluster1", "sample", "default")

    def _sign(self, csr: str, caller: Caller, ttl: int) -> list[str]:
        identity = f"spiffe://cluster.local/ns/{caller.namespace}/sa/{caller.service_account}"
        if request_identities(csr) != [identity]:
            raise AuthenticationError("the CSR asks for another identity")
        return [self.ca.sign_request(csr, identity, validity=dt.timedelta(seconds=ttl or 3600)), self.ca.cert_pem]

    def _resources(self, node_id: str, metadata: Any, types: frozenset[str]) -> Any:
        config = self.configs.get(node_id)
        return ads_resources(config) if config is not None else None

    def publish(self, node_id: str, config: ProxyConfig) -> None:
        """Serve ``config`` to ``node_id`` from now on and push it."""
        self.version += 1
        self.configs[node_id] = config
        self._loop.call_soon_threadsafe(self.server.push)

    def connection(self, node_id: str) -> Connection | None:
        return self.server.connections.get(node_id)

    def push(self, node_id: str, config: ProxyConfig, deadline: float = DEADLINE) -> None:
        """Publish ``config`` and wait for Envoy's verdict on the stream: every type it was sent ACKed (and still
        so 100 ms later: EDS and RDS are asked for after CDS and LDS), or the first NACK raised. A push that
        changes nothing sends nothing: settled after 300 ms."""
        self.publish(node_id, config)
        pushed = str(self.version)
        started = time.monotonic()
        end = started + deadline
        settled_since: float | None = None
        while time.monotonic() < end:
            connection = self.connection(node_id)
            states = list(connection.types.items()) if connection is not None else []
            for url, state in states:
                if state.rejected and state.sent_version.split("/")[0] == pushed:
                    raise rejection(connection, url, state.error)
            sent = [state for _, state in states if state.sent_nonce]
            current = any(state.sent_version.split("/")[0] == pushed for state in sent)
            if (current or time.monotonic() - started > 0.3) and sent and \
                    all(state.acked_nonce == state.sent_nonce for state in sent):
                settled_since = settled_since or time.monotonic()
                if time.monotonic() - settled_since > 0.1:
                    return
            else:
                settled_since = None
            time.sleep(0.01)
        pytest.fail(f"{node_id} did not ACK push {pushed} in {deadline} s")


@dataclass
class Agent:
    """A running ``pilot-agent proxy sidecar`` and where to reach its Envoy."""

    process: subprocess.Popen[bytes]
    ip: str
    directory: Path
    log: Path
    env: dict[str, str]
    istiod: StandInIstiod

    @property
    def admin(self) -> tuple[str, int]:
        return (self.ip, 15000)

    @property
    def node_id(self) -> str:
        return f"sidecar~{self.ip}~{self.env['POD_NAME']}.sample~sample.svc.cluster.local"

    def envoy_pid(self) -> int:
        return poll(lambda: next(iter(children(self.process.pid)), None), "Envoy to be started")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def agent_env(istiod: StandInIstiod, ip: str, pod: str = "helloworld-v1-abc") -> dict[str, str]:
    return {**os.environ, "POD_NAME": pod, "POD_NAMESPACE": "sample", "INSTANCE_IP": ip,
            "SERVICE_ACCOUNT": "default", "ISTIO_META_CLUSTER_ID": "cluster1", "ISTIO_META_NETWORK": "network1",
            "ISTIO_METAJSON_LABELS": '{"app": "helloworld", "version": "v1"}', "TRUST_DOMAIN": "cluster.local",
            "PROXY_CONFIG": json.dumps({"discoveryAddress": f"{istiod.ip}:15012"})}


def pod_folder(directory: Path, istiod: StandInIstiod) -> Path:
    """A pod's folder as the node lays it out for an injected proxy: its istio-ca token and the mesh root."""
    (directory / "var/run/secrets/tokens").mkdir(parents=True, exist_ok=True)
    (directory / "var/run/secrets/tokens/istio-token").write_text(TOKEN)
    (directory / "var/run/secrets/istio").mkdir(parents=True, exist_ok=True)
    (directory / "var/run/secrets/istio/root-cert.pem").write_text(istiod.ca.cert_pem)
    return directory


@contextlib.contextmanager
def running_agent(directory: Path, ip: str, log: Path, *, istiod: StandInIstiod, configured: bool = True,
                  extra_env: dict[str, str] | None = None) -> Iterator[Agent]:
    """An agent for one pod whose folder is ``directory``; with ``configured`` istiod serves it an empty
    configuration (what a real istiod sends a proxy in a mesh with nothing in it)."""
    env = {**agent_env(istiod, ip), **(extra_env or {})}
    pod_folder(directory, istiod)
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "labkit.emulator.envoy.agent", "proxy", "sidecar",
                                    "--domain", "sample.svc.cluster.local", "--proxyLogLevel=warning"],
                                   env=env, stdout=sink, stderr=sink, cwd=directory)
    agent = Agent(process, ip, directory, log, env, istiod)
    try:
        if configured:
            first_push(agent)
        yield agent
    finally:
        agent.stop()


def first_push(agent: Agent) -> None:
    """istiod's first push to this proxy: an empty configuration."""
    agent.istiod.publish(agent.node_id, ProxyConfig((), (), (), ()))


def wait_ready(agent: Agent) -> None:
    def ready() -> bool:
        if agent.process.poll() is not None:
            pytest.fail(f"the agent exited with {agent.process.returncode}: {agent.log.read_text()}")
        return get(agent.ip, 15021, "/healthz/ready", timeout=0.5)[0] == 200
    poll(ready, "/healthz/ready")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        body = f"{self.server.name} {self.path}\n".encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def backend(ip: str, port: int, name: str) -> Iterator[tuple[str, int]]:
    """A tiny HTTP server answering ``<name> <path>``."""
    server = http.server.ThreadingHTTPServer((ip, port), _Handler)
    server.daemon_threads = True
    server.name = name  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ip, port
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
