"""How fast a pod's istio-proxy becomes ready, and what one Envoy costs in memory.

Run: .venv/bin/python bench/envoy_start.py

Prints the median (n=5) time from starting ``python -m labkit.emulator.envoy.agent proxy sidecar`` to its
``/healthz/ready`` answering 200 (interpreter and labkit import, bootstrap, Envoy start, initial LDS/CDS),
the same for Envoy alone started from the bootstrap the agent wrote (what the agent adds is the
difference), and the private memory of one idle Envoy from ``/proc/<pid>/smaps_rollup`` (Pss counts shared
pages divided among the processes that share them; Private_* is what one more proxy costs).
"""

from __future__ import annotations

import http.client
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from labkit.core.contract import AddressPlan
from labkit.emulator.envoy import find_envoy
from labkit.emulator.envoy.agent import envoy_argv

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


def _memory_of_one(root: str, ips: list[str]) -> dict[str, int]:
    agents = []
    try:
        for index, ip in enumerate(ips):
            env = {**os.environ, "POD_NAME": f"memory-{index}", "POD_NAMESPACE": "sample", "INSTANCE_IP": ip,
                   "ISTIO_META_CLUSTER_ID": "cluster1", "LABKIT_XDS_ROOT": root}
            agents.append(subprocess.Popen([sys.executable, "-m", "labkit.emulator.envoy.agent", "proxy", "sidecar"],
                                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for ip, agent in zip(ips, agents, strict=True):
            _wait_ready(ip, agent)
        time.sleep(1.0)  # let the first stats flush and lazy allocations settle
        return _memory_kb(_envoy_child(agents[-1].pid))
    finally:
        for agent in agents:
            _stop(agent)


def main() -> None:
    hosts = AddressPlan(block=random.randint(150, 249)).pod_network(1).hosts()
    next(hosts)
    agent_times, envoy_times = [], []
    memory: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as root:
        for run in range(RUNS):
            ip = str(next(hosts))
            env = {**os.environ, "POD_NAME": f"bench-{run}", "POD_NAMESPACE": "sample", "INSTANCE_IP": ip,
                   "ISTIO_META_CLUSTER_ID": "cluster1", "LABKIT_XDS_ROOT": root}
            agent = subprocess.Popen([sys.executable, "-m", "labkit.emulator.envoy.agent", "proxy", "sidecar"],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                agent_times.append(_wait_ready(ip, agent))
            finally:
                _stop(agent)
            bootstrap = Path(root) / "cluster1" / "sample" / f"bench-{run}" / "bootstrap.json"
            envoy = subprocess.Popen(envoy_argv(str(find_envoy().path), bootstrap),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                envoy_times.append(_wait_ready(ip, envoy))
            finally:
                _stop(envoy)
        memory = _memory_of_one(root, [str(next(hosts)) for _ in range(NEIGHBOURS)])
    print(f"agent start → /healthz/ready: median {statistics.median(agent_times) * 1000:.0f} ms "
          f"(min {min(agent_times) * 1000:.0f}, max {max(agent_times) * 1000:.0f}; n={RUNS})")
    print(f"Envoy alone  → /healthz/ready: median {statistics.median(envoy_times) * 1000:.0f} ms")
    private = memory.get("Private_Clean", 0) + memory.get("Private_Dirty", 0)
    rss, pss = memory.get("Rss", 0) / 1024, memory.get("Pss", 0) / 1024
    print(f"one idle Envoy of {NEIGHBOURS}: Rss {rss:.1f} MB, Pss {pss:.1f} MB, Private {private / 1024:.1f} MB")


if __name__ == "__main__":
    main()
