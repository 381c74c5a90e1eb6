"""How fast a pod's istio-proxy becomes ready, and what one proxy (agent + Envoy) costs in memory.

Run: .venv/bin/python bench/envoy_start.py

A stand-in istiod (labkit's gRPC server with a fixed, empty configuration, the tests' ``StandInIstiod``) serves
15012. Prints the median (n=5) time from starting ``python -m labkit.emulator.envoy.agent proxy sidecar`` to its
``/healthz/ready`` answering 200 (interpreter and labkit import, bootstrap, Envoy start, the agent's sockets, the
workload certificate by CSR, istiod's first CDS/LDS over ADS), and the memory of one idle proxy of several
from ``/proc/<pid>/smaps_rollup``, agent and Envoy apart (Pss counts shared pages divided among the processes
that share them; Private_* is what one more proxy costs).
"""

from __future__ import annotations

import http.client
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from labkit.testing import address_plan

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "emulator" / "envoy"))
from envoy_kit import StandInIstiod, agent_env, pod_folder

from labkit.emulator.mesh.model import ProxyConfig

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


def _wait_ready(ip: str, process: subprocess.Popen[bytes]) -> float:
    started = time.perf_counter()
    while not _ready(ip):
        if process.poll() is not None:
            raise SystemExit(f"exited with {process.returncode}")
        if time.perf_counter() - started > 10:
            raise SystemExit("not ready after 10 s")
        time.sleep(0.001)
    return time.perf_counter() - started


def _stop(process: subprocess.Popen[bytes]) -> None:
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
    def __init__(self, istiod: StandInIstiod, root: Path, ip: str, pod: str):
        folder = pod_folder(root / pod, istiod)
        env = agent_env(istiod, ip, pod)
        self.node_id = f"sidecar~{ip}~{pod}.sample~sample.svc.cluster.local"
        self.process = subprocess.Popen([sys.executable, "-m", "labkit.emulator.envoy.agent", "proxy", "sidecar"],
                                        env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _memory_of_one(istiod: StandInIstiod, root: Path, ips: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    agents = []
    try:
        for index, ip in enumerate(ips):
            agent = _Agent(istiod, root, ip, f"memory-{index}")
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
        for run in range(RUNS):
            ip = str(next(hosts))
            agent = _Agent(istiod, root, ip, f"bench-{run}")
            istiod.publish(agent.node_id, EMPTY)
            try:
                agent_times.append(_wait_ready(ip, agent.process))
            finally:
                _stop(agent.process)
        agent_memory, envoy_memory = _memory_of_one(istiod, root, [str(next(hosts)) for _ in range(NEIGHBOURS)])
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
