"""How fast a pod's istio-proxy becomes ready, and what one proxy (agent + Envoy) costs in memory.

Run: .venv/bin/python bench/envoy_start.py          (agents forked from a zygote, as the node starts them)
     LABKIT_ZYGOTE=0 .venv/bin/python bench/envoy_start.py   (each agent a fresh interpreter)

A stand-in istiod (labkit's gRPC server with a fixed, empty configuration, the tests' ``StandInIstiod``) serves
15012. Prints the median (n=5) time from starting ``python -m labkit.emulator.envoy.agent proxy sidecar`` to its
``/healthz/ready`` answering 200 (interpreter and labkit import, bootstrap, Envoy start, the agent's sockets, the
workload certificate by CSR, istiod's first CDS/LDS over ADS), and the memory of one idle proxy of several
from ``/proc/<pid>/smaps_rollup``, agent and Envoy apart (Pss counts shared pages divided among the processes
that share them; Private_* is what one more proxy costs).
"""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from labkit.testing import address_plan

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "emulator" / "envoy"))
from envoy_kit import StandInIstiod, agent_env, pod_folder

from labkit.emulator.mesh.model import ProxyConfig
from labkit.emulator.node import forking

EMPTY = ProxyConfig((), (), (), ())  # what istiod sends a proxy in a mesh with nothing in it

RUNS = 5
NEIGHBOURS = 3


def _ready(ip: str) -> bool:
    connection = http.client.HTTPConnection(ip, 15021, timeout=0.5)
    try:
        connection.request("GET", "/healthz/ready")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _wait_ready(ip: str, process: Any) -> float:
    started = time.perf_counter()
    while not _ready(ip):
        if process.poll() is not None:
            raise SystemExit(f"exited with {process.returncode}")
        if time.perf_counter() - started > 10:
            raise SystemExit("not ready after 10 s")
        time.sleep(0.001)
    return time.perf_counter() - started


class _Forked:
    """A zygote's child behind the bits of ``Popen`` this bench uses."""

    def __init__(self, starter: _Starter, process: forking.ForkedProcess):
        self.starter = starter
        self.child = process
        self.pid = process.pid

    @property
    def returncode(self) -> int | None:
        return self.child.returncode

    def poll(self) -> int | None:
        return self.child.returncode

    def send_signal(self, signum: int) -> None:
        self.child.send_signal(signum)

    def kill(self) -> None:
        self.child.kill()

    def wait(self, timeout: float | None = None) -> int:
        future = asyncio.run_coroutine_threadsafe(self.child.wait(), self.starter.loop)
        try:
            return future.result(timeout)
        except TimeoutError as exc:
            raise subprocess.TimeoutExpired("agent", timeout or 0) from exc


class _Starter:
    """Starts agents as the node does: forked from a zygote, or afresh with ``LABKIT_ZYGOTE=0``.

    The zygote's event loop runs in a thread of its own, which lives as long as the bench (the death signal of the
    zygote is tied to the thread that started it).
    """

    def __init__(self, folder: Path):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.zygote = forking.Zygote(sys.executable, folder / "zygote.log") if forking.enabled() else None
        self.warm_up = 0.0
        if self.zygote is not None:  # the node starts its zygote with its first pod: timed apart
            started = time.perf_counter()
            try:  # the first answer comes once the zygote has imported everything
                first = self.start([sys.executable, "-s", "-m", "labkit.emulator.node.programs.sleep"],
                                   dict(os.environ), folder)
            except forking.ZygoteUnavailable as exc:
                raise SystemExit(f"no zygote: {exc}") from exc
            self.warm_up = time.perf_counter() - started
            _stop(first)

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def start(self, argv: list[str], env: dict[str, str], cwd: Path) -> Any:
        if self.zygote is None:
            return subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(os.devnull, "r+b") as null:
            return _Forked(self, self._run(self.zygote.spawn(argv, env=env, cwd=cwd, stdin=null.fileno(),
                                                              stdout=null.fileno(), stderr=null.fileno())))

    def close(self) -> None:
        if self.zygote is not None:
            self._run(self.zygote.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def _stop(process: Any) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _memory_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        if key in {"Rss", "Pss", "Private_Clean", "Private_Dirty"}:
            fields[key] = int(value.split()[0])
    return fields


def _envoy_child(pid: int) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                return int(entry.name)
    raise SystemExit("no Envoy under the agent")


class _Agent:
    def __init__(self, starter: _Starter, istiod: StandInIstiod, root: Path, ip: str, pod: str):
        folder = pod_folder(root / pod, istiod)
        env = agent_env(istiod, ip, pod)
        self.node_id = f"sidecar~{ip}~{pod}.sample~sample.svc.cluster.local"
        # As the node runs it (-s: the labkit program's command line, which the zygote forks).
        self.process = starter.start([sys.executable, "-s", "-m", "labkit.emulator.envoy.agent", "proxy", "sidecar"],
                                     dict(env), folder)


def _memory_of_one(starter: _Starter, istiod: StandInIstiod, root: Path,
                   ips: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    agents = []
    try:
        for index, ip in enumerate(ips):
            agent = _Agent(starter, istiod, root, ip, f"memory-{index}")
            agents.append(agent)
            istiod.publish(agent.node_id, EMPTY)
        for ip, agent in zip(ips, agents, strict=True):
            _wait_ready(ip, agent.process)
        time.sleep(1.0)  # let the first stats flush and lazy allocations settle
        last = agents[-1].process.pid
        return _memory_kb(last), _memory_kb(_envoy_child(last))
    finally:
        for agent in agents:
            _stop(agent.process)


def _private(memory: dict[str, int]) -> float:
    return (memory.get("Private_Clean", 0) + memory.get("Private_Dirty", 0)) / 1024


def main() -> None:
    hosts = address_plan().pod_network(1).hosts()
    next(hosts)
    agent_times = []
    with tempfile.TemporaryDirectory() as folder, StandInIstiod(str(next(hosts))) as istiod:
        root = Path(folder)
        starter = _Starter(root)
        for run in range(RUNS):
            ip = str(next(hosts))
            agent = _Agent(starter, istiod, root, ip, f"bench-{run}")
            istiod.publish(agent.node_id, EMPTY)
            try:
                agent_times.append(_wait_ready(ip, agent.process))
            finally:
                _stop(agent.process)
        agent_memory, envoy_memory = _memory_of_one(starter, istiod, root,
                                                    [str(next(hosts)) for _ in range(NEIGHBOURS)])
        zygote_pid = starter.zygote.pid if starter.zygote is not None else None
        zygote_memory = _memory_kb(zygote_pid) if zygote_pid is not None else {}
        starter.close()
    if zygote_pid is None:
        print("agents start as fresh interpreters (LABKIT_ZYGOTE=0)")
    else:
        print(f"agents forked from a zygote: its start (imports) {starter.warm_up * 1000:.0f} ms, once per node; "
              f"the zygote: Rss {zygote_memory.get('Rss', 0) / 1024:.1f} MB, "
              f"Pss {zygote_memory.get('Pss', 0) / 1024:.1f} MB, Private {_private(zygote_memory):.1f} MB")
    print(f"agent start → /healthz/ready (certificate by CSR, CDS/LDS over ADS): median "
          f"{statistics.median(agent_times) * 1000:.0f} ms (min {min(agent_times) * 1000:.0f}, "
          f"max {max(agent_times) * 1000:.0f}; n={RUNS})")
    for what, memory in (("agent", agent_memory), ("Envoy", envoy_memory)):
        print(f"one idle {what} of {NEIGHBOURS}: Rss {memory.get('Rss', 0) / 1024:.1f} MB, "
              f"Pss {memory.get('Pss', 0) / 1024:.1f} MB, Private {_private(memory):.1f} MB")
    print(f"one proxy (agent + Envoy): Private {_private(agent_memory) + _private(envoy_memory):.1f} MB, "
          f"Pss {(agent_memory.get('Pss', 0) + envoy_memory.get('Pss', 0)) / 1024:.1f} MB")


if __name__ == "__main__":
    main()
