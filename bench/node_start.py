"""How fast the emulated node brings a pod up, and what one pod process costs.

Run: .venv/bin/python bench/node_start.py

Prints the median time from ``NodeRuntime.sync_pod`` to the pod's ``Ready`` status for a helloworld pod
(n=10; process start, listening, the readiness check, the status callback), the bare start of the
program process (spawn to accepting connections), and the resident memory of one program process —
the figures behind running programs with ``python -S`` and plain sockets instead of asyncio.
"""

from __future__ import annotations

import asyncio
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from labkit.core.contract import AddressPlan
from labkit.emulator.network.addresses import IpPool
from labkit.emulator.node import NodeRuntime
from labkit.emulator.node.runtime import PROGRAMS_DIR

RUNS = 10


def _memory_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in {"VmRSS", "RssAnon"}:
            fields[key] = int(value.split()[0])
    return fields


async def sync_to_ready(state_dir: Path) -> tuple[list[float], dict[str, int]]:
    ready: dict[str, asyncio.Event] = {}

    def on_status(namespace: str, name: str, status: dict[str, Any]) -> None:
        if any(c["type"] == "Ready" and c["status"] == "True" for c in status["conditions"]):
            ready[name].set()

    pool = IpPool(AddressPlan(block=random.randint(150, 250)).pod_network(1))
    node = NodeRuntime("bench", "node1", state_dir, pool, on_status)
    timings = []
    memory: dict[str, int] = {}
    try:
        for index in range(RUNS):
            name = f"helloworld-v1-{index}"
            ready[name] = asyncio.Event()
            pod = {"metadata": {"name": name, "namespace": "sample", "uid": f"uid-{index}"},
                   "spec": {"containers": [{"name": "helloworld", "ports": [{"containerPort": 5000}],
                                            "image": "registry.istio.io/release/examples-helloworld-v1:1.0"}]}}
            started = time.perf_counter()
            await node.sync_pod(pod)
            await ready[name].wait()
            timings.append(time.perf_counter() - started)
            memory = _memory_kb(node.pids("sample", name)["helloworld"])
    finally:
        await node.shutdown()
    return timings, memory


def bare_start() -> list[float]:
    timings = []
    for _ in range(RUNS):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-E", "-s", "-S", str(PROGRAMS_DIR / "helloworld.py"),
                                    "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL)
        try:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port)).close()
                    break
                except OSError:
                    time.sleep(0.001)
            timings.append(time.perf_counter() - started)
        finally:
            process.terminate()
            process.wait()
    return timings


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        timings, memory = asyncio.run(sync_to_ready(Path(folder)))
    print(f"helloworld pod, sync_pod → Ready: median {statistics.median(timings) * 1000:.1f} ms "
          f"(min {min(timings) * 1000:.1f}, max {max(timings) * 1000:.1f}, n={RUNS})")
    bare = bare_start()
    print(f"helloworld program, spawn → accepting: median {statistics.median(bare) * 1000:.1f} ms (n={RUNS})")
    print(f"helloworld program memory: RSS {memory.get('VmRSS', 0) / 1024:.1f} MB "
          f"(private/anonymous {memory.get('RssAnon', 0) / 1024:.1f} MB)")


if __name__ == "__main__":
    main()
