"""Lab 2 from cold: time until the primary's sleep gets its first answer from the remote cluster's profile.

Run: .venv/bin/python bench/lab2_ready.py

Drives the Lab facade as the notebook does (two embedded clusters, the primary-remote install through
:func:`labkit.istio.primary_remote.install_primary_remote`, the demo app in both clusters) and prints the time
from nothing to cluster1's ``sleep`` being answered by cluster2's ``profile`` (whose sidecar was injected,
certified and configured by cluster1's istiod through cluster1's east-west gateway), split into its phases,
and the memory of the emulator and everything it started.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd
from lab_ready import memory_kib

from labkit import Lab
from labkit.istio.primary_remote import install_primary_remote
from labkit.labs import primary_remote

URL = "http://profile.multicluster:8080/profile/4"


def main() -> None:
    warnings.simplefilter("ignore")
    phases: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as home:
        started = time.perf_counter()
        lab = Lab("primary-remote", clusters=["cluster1", "cluster2"], state_dir=Path(home) / "lab")
        try:
            phases.append(("clusters up", time.perf_counter() - started))
            install_primary_remote("cluster1", "cluster2", lab.dir / "certs")
            phases.append(("primary, gateways, remote, remote secret", time.perf_counter() - started))
            for cluster in lab:
                cluster.namespace("multicluster", labels={"istio-injection": "enabled"})
            lab.cluster1.apply("demo-app.yaml", namespace="multicluster", quiet=True)
            lab.cluster1.apply("sleep.yaml", namespace="multicluster", quiet=True)
            lab.cluster2.apply("demo-app.yaml", namespace="multicluster", selector="app=profile", quiet=True)
            lab.cluster1.wait("multicluster", ["deploy/sleep"])
            lab.cluster2.wait("multicluster", ["deploy/profile"])
            phases.append(("demo app ready", time.perf_counter() - started))
            remote = {p.name for p in lab.cluster2.pods("multicluster", "app=profile")}

            def reached(calls: pd.DataFrame) -> bool:
                found = primary_remote.with_instances(calls)
                return bool(remote & set(found["instance"].dropna()))

            assert lab.cluster1.call_until("multicluster/deploy/sleep", URL, reached, n=10, timeout=120), \
                "cluster1 never reached cluster2's profile"
            phases.append(("first answer from the remote profile", time.perf_counter() - started))
            processes, pss, rss = memory_kib(lab.emulator.pid)
        finally:
            lab.cleanup()
    for name, seconds in phases:
        print(f"{seconds:6.1f} s  {name}")
    print(f"memory of the emulator and its {processes} processes: PSS {pss / 1024:.0f} MiB (RSS {rss / 1024:.0f} MiB)")


if __name__ == "__main__":
    main()
