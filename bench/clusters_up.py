"""How fast embedded clusters start, and what they cost.

Run: .venv/bin/python bench/clusters_up.py

Prints, for three clusters: the time from ``labkit up`` to every API server answering, the time until
helloworld and sleep are Ready in one cluster and ``kubectl exec … curl`` (here: the official client's
exec) gets its first answer, the emulator's memory (RSS of the emulator and of all pod processes), and
the time ``labkit down`` takes to leave nothing running.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from kubernetes import client, config, utils
from kubernetes.stream import stream

from labkit.emulator import launching

SAMPLES = Path(__file__).resolve().parents[1] / "manifests" / "samples"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(pid) == (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        state = Path(home)
        started = time.perf_counter()
        emulator = launching.up(["cluster1", "cluster2", "cluster3"], state)
        up_seconds = time.perf_counter() - started
        api = config.new_client_from_config(str(emulator.kubeconfig), context="cluster1")
        v1 = client.CoreV1Api(api)
        v1.create_namespace({"metadata": {"name": "sample"}})
        utils.create_from_yaml(api, str(SAMPLES / "helloworld.yaml"), namespace="sample")
        utils.create_from_yaml(api, str(SAMPLES / "sleep.yaml"), namespace="sample")
        answer = ""
        while not answer.startswith("Hello version"):
            pods = v1.list_namespaced_pod("sample", label_selector="app=sleep").items
            if pods and pods[0].status.phase == "Running":
                answer = stream(v1.connect_get_namespaced_pod_exec, pods[0].metadata.name, "sample",
                                command=["curl", "-sS", "helloworld:5000/hello"], stderr=True, stdout=True,
                                stdin=False, tty=False)
            else:
                time.sleep(0.02)
        first_answer = time.perf_counter() - started
        pods = children(emulator.pid)
        emulator_kib = rss_kib(emulator.pid)
        pods_kib = sum(rss_kib(pid) for pid in pods)
        api.close()
        stopping = time.perf_counter()
        launching.down(state)
        down_seconds = time.perf_counter() - stopping
    print(f"labkit up, 3 clusters, all API servers answering: {up_seconds:.2f} s")
    print(f"…to the first helloworld answer through exec + curl: {first_answer:.2f} s")
    print(f"memory: emulator {emulator_kib / 1024:.0f} MiB RSS, {len(pods)} pod processes "
          f"{pods_kib / 1024:.0f} MiB RSS ({pods_kib / 1024 / max(len(pods), 1):.0f} MiB each)")
    print(f"labkit down: {down_seconds:.2f} s")


if __name__ == "__main__":
    main()
