"""How fast labkit makes certificates: a mesh's CAs, and workload certificates per key kind.

Run: .venv/bin/python bench/pki_issue.py

Prints the time to make a 3-cluster mesh (Istio's RSA 4096 root and intermediates) and the rate of
workload certificates with ECDSA P-256 versus RSA 2048 keys, measured side by side in one run — the
figure behind labkit's choice of ECDSA for workload keys (one per pod and renewal).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from labkit.pki import make_mesh, verify_certificate


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        mesh = make_mesh(Path(folder), ["cluster1", "cluster2", "cluster3"])
        mesh_seconds = time.perf_counter() - started
    ca = mesh.clusters["cluster1"]
    print(f"mesh of 3 clusters (RSA 4096 root + 3 intermediates): {mesh_seconds:.2f} s")

    rates = {}
    for key, count in (("ec-p256", 200), ("rsa-2048", 20)):
        timings = []
        for i in range(count):
            started = time.perf_counter()
            ca.issue_workload(f"spiffe://cluster.local/ns/bench/sa/sa{i}", key=key)  # type: ignore[arg-type]
            timings.append(time.perf_counter() - started)
        rates[key] = 1 / statistics.median(timings)
        print(f"workload certificate, {key:8}: median {statistics.median(timings) * 1000:6.2f} ms "
              f"({rates[key]:7.0f}/s, n={count})")
    print(f"ratio ec-p256 / rsa-2048 issuance rate: {rates['ec-p256'] / rates['rsa-2048']:.1f}x")

    credential = ca.issue_workload("spiffe://cluster.local/ns/bench/sa/verify")
    started = time.perf_counter()
    for _ in range(50):
        verify_certificate(credential.cert_chain_pem, mesh.root.cert_pem)
    print(f"verify a workload chain (walk + RFC 5280 validation): {(time.perf_counter() - started) / 50 * 1000:.2f} ms")


if __name__ == "__main__":
    main()
