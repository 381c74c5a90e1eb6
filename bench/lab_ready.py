"""Lab 1 from cold: time to the first cross-cluster answer, memory, and lab.call's throughput.

Run: .venv/bin/python bench/lab_ready.py [N]

Drives the Lab facade as the notebook does (three embedded clusters, the multi-primary install,
helloworld v1/v1/v2 and sleep) and prints:

- the time from nothing to cluster1 receiving its first answer from cluster3's v2 (across networks), with the
  moment each phase ended;
- the memory of the emulator and everything it started (processes, Envoys), as PSS — Envoys share one
  binary, which RSS would count once per process — and as RSS for reference;
- requests/s of ``lab.call`` (one exec, one curl with N URLs, parsed into a DataFrame) versus the raw
  mesh path (the same curl in the same pod, timed inside the pod), measured side by side, and their ratio.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

from labkit import Lab, istio

URL = "http://helloworld.sample:5000/hello"


def memory_kib(root_pid: int) -> tuple[int, int, int]:
    """(processes, PSS KiB, RSS KiB) of ``root_pid`` and all its descendants."""
    seen = descendants(root_pid)
    pss = rss = 0
    for pid in seen:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss += int(line.split()[1])
        except OSError:
            continue
    return len(seen), pss, rss


def descendants(root_pid: int) -> list[int]:
    """``root_pid`` and every process under it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    todo, seen = [root_pid], []
    while todo:
        pid = todo.pop()
        seen.append(pid)
        todo += children.get(pid, [])
    return seen


def cpu_by_program(root_pid: int) -> dict[str, float]:
    """CPU seconds (user + system) spent so far by ``root_pid`` and its descendants, by program."""
    ticks = os.sysconf("SC_CLK_TCK")
    spent: dict[str, float] = {}
    for pid in descendants(root_pid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            # A child of a node's zygote has its command line as one title (setproctitle): split on spaces too.
            words = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
        except OSError:
            continue
        module = next((w for w in words if w.startswith("labkit.")), "")
        program = "emulator (API servers, controllers, nodes)" if pid == root_pid else \
            module or (Path(words[0]).name if words else "?")
        spent[program] = spent.get(program, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return spent


def raw_seconds(lab: Lab, n: int) -> float:
    """The same N calls as lab.call, timed inside the pod: the mesh path without exec or parsing."""
    script = (f"s=$(date +%s%N); curl -sS {' '.join([URL] * n)} > /dev/null; e=$(date +%s%N); "
              f"echo $(( (e - s) / 1000 ))")
    return int(lab.cluster1.exec("sample/deploy/sleep", ["sh", "-c", script], container="sleep").split()[0]) / 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as home:
        started = time.perf_counter()
        phases: list[tuple[str, float]] = []

        def phase(name: str) -> None:
            phases.append((name, time.perf_counter() - started))

        lab = Lab("multi-primary", state_dir=Path(home) / "lab")
        try:
            phase("clusters up")
            istio.install_multi_primary(lab.clusters, lab.dir / "certs")
            phase("Istio installed (istiods, east-west gateways ready)")
            versions = {"cluster1": ["v1"], "cluster2": ["v1"], "cluster3": ["v2"]}
            for cluster in lab.clusters:
                lab[cluster].namespace("sample", labels={"istio-injection": "enabled"})
                lab[cluster].apply("helloworld.yaml", namespace="sample", selector="service=helloworld")
                for version in versions[cluster]:
                    lab[cluster].apply("helloworld.yaml", namespace="sample", selector=f"version={version}")
                lab[cluster].apply("sleep.yaml", namespace="sample")
            phase("workloads applied")
            lab.cluster1.wait("sample", ["deploy/sleep"])
            phase("cluster1's sleep ready")
            reached = lab.cluster1.call_until("sample/deploy/sleep", URL,
                                     lambda calls: "v2" in set(calls["version"].dropna()), n=10, timeout=120)
            first_answer = time.perf_counter() - started
            phase("first answer from cluster3's v2")
            assert reached, "cluster1 never reached cluster3's v2"
            processes, pss, rss = memory_kib(lab.emulator.pid)
            cpu = cpu_by_program(lab.emulator.pid)
            lab.cluster1.call("sample/deploy/sleep", URL, n=50)  # warm the paths
            raw = raw_seconds(lab, n)
            begun = time.perf_counter()
            calls = lab.cluster1.call("sample/deploy/sleep", URL, n=n)
            via_lab = time.perf_counter() - begun
            ok = int((calls["status"] == 200).sum())
        finally:
            lab.cleanup()
    for name, at in phases:
        print(f"  {at:5.1f} s  {name}")
    print(f"cold start to the first cross-cluster answer (3 clusters, Istio, workloads): {first_answer:.1f} s")
    print("CPU seconds until then, by program: " + ", ".join(
        f"{program} {seconds:.1f}" for program, seconds in sorted(cpu.items(), key=lambda item: -item[1])))
    print(f"memory of the emulator and its {processes} processes: PSS {pss / 1024:.0f} MiB (RSS {rss / 1024:.0f} MiB)")
    print(f"lab.call, {n} calls from cluster1 (one exec, parsed): {n / via_lab:6.0f} req/s ({ok} × 200)")
    print(f"raw mesh path, same {n} calls timed in the pod:     {n / raw:6.0f} req/s")
    print(f"ratio lab.call / raw mesh path: {raw / via_lab:.2f}")


if __name__ == "__main__":
    main()
