"""Many injected pods at once: 3 clusters × 40 sidecars (by default), all of them SYNCED with their istiod.

Run: .venv/bin/python bench/mesh_scale.py [PODS_PER_CLUSTER] [CLUSTERS]

Brings up a multi-primary mesh (an istiod and an east-west gateway per cluster, remote secrets between them),
scales ``sleep`` to PODS_PER_CLUSTER injected replicas in every cluster at once, and prints: the time until every
pod is Ready, the time until every proxy of every cluster is SYNCED in ``istioctl proxy-status`` terms (CDS, LDS,
EDS and RDS acknowledged on each proxy's ADS stream), the rows that are not, and the memory of the whole lab
(PSS, and per proxy: agent + Envoy, private).
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

from labkit import Lab, istio, kube

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab_ready import descendants, memory_kib


def private_kib(pid: int) -> int:
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total


def proxy_memory(root_pid: int) -> tuple[int, float]:
    """How many agents run under ``root_pid``, and the mean private KiB of one agent plus its Envoy."""
    totals = []
    for pid in descendants(root_pid):
        try:
            # A child of a node's zygote has its command line as one title (setproctitle): split on spaces too.
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").split()
        except OSError:
            continue
        if b"labkit.emulator.envoy.agent" not in argv or b"proxy" not in argv:
            continue
        try:
            envoys = [child for child in descendants(pid) if child != pid]
            totals.append(private_kib(pid) + sum(private_kib(child) for child in envoys))
        except OSError:
            continue
    return len(totals), (sum(totals) / len(totals) if totals else 0.0)


def main() -> None:
    per_cluster = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    clusters = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as home:
        lab = Lab("multi-primary", clusters=[f"cluster{i}" for i in range(1, clusters + 1)],
                  state_dir=Path(home) / "lab")
        try:
            istio.install_multi_primary(lab.clusters, lab.dir / "certs")
            for cluster in lab.clusters:
                lab[cluster].namespace("sample", labels={"istio-injection": "enabled"})
            started = time.perf_counter()
            for cluster in lab.clusters:
                documents = [d.body for d in kube.load_documents(Path(__file__).resolve().parents[1] / "manifests"
                                                                 / "samples" / "sleep.yaml")]
                for body in documents:
                    if body["kind"] == "Deployment":
                        body["spec"]["replicas"] = per_cluster
                lab[cluster].apply(documents, namespace="sample", quiet=True)
            for cluster in lab.clusters:
                kube.wait_ready(cluster, "sample", ["deploy/sleep"], timeout=900)
            ready = time.perf_counter() - started
            expected = {cluster: per_cluster + 2 for cluster in lab.clusters}  # sleep pods + 2 gateways
            missing: dict[str, list[str]] = {}
            deadline = time.monotonic() + 300
            while True:
                missing = {}
                for cluster in lab.clusters:
                    rows = istio.proxy_status(cluster, quiet=True)
                    synced = [row for row in rows if row.synced]
                    if len(synced) < expected[cluster]:
                        missing[cluster] = [f"{row.name} {row.types}" for row in rows if not row.synced] or \
                            [f"{len(rows)} of {expected[cluster]} proxies connected"]
                if not missing or time.monotonic() > deadline:
                    break
                time.sleep(1)
            all_synced = time.perf_counter() - started
            processes, pss, _ = memory_kib(lab.emulator.pid)
            agents, per_proxy = proxy_memory(lab.emulator.pid)
        finally:
            lab.cleanup()
    total = per_cluster * clusters
    print(f"{clusters} clusters × {per_cluster} injected pods ({total} sidecars, plus {2 * clusters} gateways)")
    print(f"every pod Ready: {ready:.1f} s after the Deployments were applied")
    if missing:
        print(f"NOT all SYNCED after {all_synced:.1f} s: " + "; ".join(f"{c}: {rows[:3]}" for c, rows in
                                                                     missing.items()))
    else:
        print(f"every proxy of every cluster SYNCED: {all_synced:.1f} s after the Deployments were applied")
    print(f"memory of the lab ({processes} processes): PSS {pss / 1024:.0f} MiB; one proxy (agent + Envoy, "
          f"private, mean of {agents}): {per_proxy / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
