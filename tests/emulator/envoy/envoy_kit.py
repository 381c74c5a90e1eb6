"""Helpers for the envoy tests: real agents and Envoys on loopback, tiny backends, HTTP with deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import http.server
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

from labkit.emulator.envoy.files import XdsWriter, xds_dir
from labkit.emulator.mesh.model import ProxyConfig
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


@dataclass
class Agent:
    """A running ``pilot-agent proxy sidecar`` and where to reach its Envoy."""

    process: subprocess.Popen[bytes]
    ip: str
    directory: Path
    log: Path
    env: dict[str, str]

    @property
    def admin(self) -> tuple[str, int]:
        return (self.ip, 15000)

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


def agent_env(root: Path, ip: str, pod: str = "helloworld-v1-abc") -> dict[str, str]:
    return {**os.environ, "POD_NAME": pod, "POD_NAMESPACE": "sample", "INSTANCE_IP": ip,
            "SERVICE_ACCOUNT": "default", "ISTIO_META_CLUSTER_ID": "cluster1", "ISTIO_META_NETWORK": "network1",
            "ISTIO_METAJSON_LABELS": '{"app": "helloworld", "version": "v1"}', "LABKIT_XDS_ROOT": str(root),
            "LABKIT_POD_UID": f"uid-{pod}"}


@contextlib.contextmanager
def running_agent(root: Path, ip: str, log: Path, *, configured: bool = True,
                  extra_env: dict[str, str] | None = None) -> Iterator[Agent]:
    """An agent for one pod; with ``configured`` the test plays istiod's first push (an empty configuration)."""
    env = {**agent_env(root, ip), **(extra_env or {})}
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "labkit.emulator.envoy.agent", "proxy", "sidecar",
                                    "--domain", "sample.svc.cluster.local", "--proxyLogLevel=warning"],
                                   env=env, stdout=sink, stderr=sink)
    agent = Agent(process, ip, xds_dir(root, env["LABKIT_POD_UID"]), log, env)
    try:
        if configured:
            first_push(agent)
        yield agent
    finally:
        agent.stop()


def first_push(agent: Agent) -> None:
    """What istiod does once the agent has laid out its directory: publish the proxy's configuration."""
    poll((agent.directory / "bootstrap.json").exists, "the agent's bootstrap")
    XdsWriter(agent.directory).publish(ProxyConfig((), (), (), ()))


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
