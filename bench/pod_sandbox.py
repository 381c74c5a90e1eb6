"""What the pod sandbox costs: pod start, exec and memory per pod, without it and with it, side by side.

Run: .venv/bin/python bench/pod_sandbox.py

Starts the same pods on one node with ``sandbox=False`` (as ``LABKIT_SANDBOX=0``) and with the sandbox on, in two
interleaved rounds of one run: helloworld pods with the service-account files and a ConfigMap volume at
``/etc/app-config`` (a mount point the machine lacks, so ``/etc`` gets a tmpfs with its entries bound back: the
dearer case), and busybox pods with an emptyDir at ``/data`` (a top-level folder: a new root). Prints, per mode,
the median time from ``sync_pod`` to ``Ready``, the median exec of ``hostname`` (``NodeRuntime.exec`` to exit),
the proportional and private memory (PSS, private dirty) of a pod's process, and the mounts its view holds.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from labkit.emulator.network.addresses import IpPool
from labkit.emulator.node import NodeRuntime, sandboxing
from labkit.testing import address_plan

RUNS = 10
HELLO = "registry.istio.io/release/examples-helloworld-v1:1.0"


def _smaps_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        fields[key] = int(value.split()[0])
    return fields


def _pod(name: str, index: int, kind: str) -> dict[str, Any]:
    if kind == "helloworld":
        container = {"name": "main", "image": HELLO, "ports": [{"containerPort": 5000}],
                     "volumeMounts": [{"name": "config", "mountPath": "/etc/app-config"}]}
        volumes = [{"name": "config", "configMap": {"name": "app-config"}}]
    else:
        container = {"name": "main", "image": "busybox:1.36", "command": ["sleep", "infinity"],
                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
        volumes = [{"name": "data", "emptyDir": {}}]
    return {"metadata": {"name": name, "namespace": "sample", "uid": f"uid-{kind}-{index}"},
            "spec": {"containers": [container], "volumes": volumes, "serviceAccountName": "default"}}


async def measure(state_dir: Path, sandbox: bool) -> dict[str, Any]:
    events: dict[str, asyncio.Event] = {}

    def on_status(namespace: str, name: str, status: dict[str, Any]) -> None:
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status["conditions"])
        if ready and name in events:
            events[name].set()

    ca = state_dir / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    node = NodeRuntime("bench", "node1", state_dir, IpPool(address_plan().pod_network(1)), on_status, ca_file=ca,
                       issue_token=lambda *_: "token", read_data=lambda *_: {"greeting": "hello"}, sandbox=sandbox)
    figures: dict[str, Any] = {"start": {}, "exec": [], "pss": [], "private": [], "mounts": {}}
    try:
        for kind in ("helloworld", "busybox"):
            timings = []
            for index in range(RUNS):
                name = f"{kind}-{index}"
                events[name] = asyncio.Event()
                started = time.perf_counter()
                await node.sync_pod(_pod(name, index, kind))
                await events[name].wait()
                timings.append(time.perf_counter() - started)
                pid = node.pids("sample", name)["main"]
                memory = _smaps_kb(pid)
                figures["pss"].append(memory["Pss"])
                figures["private"].append(memory["Private_Dirty"])
                mounts = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
                figures["mounts"].setdefault(kind, []).append(len(mounts))
            figures["start"][kind] = timings
        for _ in range(RUNS):
            started = time.perf_counter()
            process = await node.exec("sample", "busybox-0", None, ["hostname"])
            await process.communicate()
            figures["exec"].append(time.perf_counter() - started)
    finally:
        await node.shutdown()
    return figures


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.1f} ms"


def main() -> None:
    reason = sandboxing.probe()
    if reason:
        sys.exit(f"this machine cannot make pod sandboxes: {reason}")
    results: dict[bool, dict[str, Any]] = {}
    for sandbox in (False, True, False, True):  # interleaved, so a warmer second half favours neither mode
        with tempfile.TemporaryDirectory() as folder:
            figures = asyncio.run(measure(Path(folder), sandbox))
        merged = results.setdefault(sandbox, {"start": {}, "exec": [], "pss": [], "private": [], "mounts": {}})
        for key in ("exec", "pss", "private"):
            merged[key] += figures[key]
        for key in ("start", "mounts"):
            for kind, values in figures[key].items():
                merged[key].setdefault(kind, []).extend(values)
    print(f"n={2 * RUNS} pods of each kind per mode, started on one node in two interleaved rounds; medians")
    print(f"{'':42} {'LABKIT_SANDBOX=0':>18} {'sandbox on':>18}")
    rows = [("helloworld pod, sync_pod → Ready", lambda r: _ms(r["start"]["helloworld"])),
            ("busybox pod (emptyDir /data) → Ready", lambda r: _ms(r["start"]["busybox"])),
            ("exec hostname, start → exit", lambda r: _ms(r["exec"])),
            ("pod process PSS", lambda r: f"{statistics.median(r['pss']) / 1024:7.2f} MB"),
            ("pod process private dirty", lambda r: f"{statistics.median(r['private']) / 1024:7.2f} MB"),
            ("mounts in a helloworld pod's view", lambda r: f"{statistics.median(r['mounts']['helloworld']):7.0f}   "),
            ("mounts in a busybox pod's view", lambda r: f"{statistics.median(r['mounts']['busybox']):7.0f}   ")]
    for label, value in rows:
        print(f"{label:42} {value(results[False]):>18} {value(results[True]):>18}")
    print(f"hostname in a sandboxed exec: {'pod name' if sandboxing.available() else 'machine'}")


if __name__ == "__main__":
    main()
