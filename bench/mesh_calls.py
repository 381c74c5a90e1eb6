"""Cross-cluster calls through the mesh versus straight to the backend, measured side by side.

Run: .venv/bin/python bench/mesh_calls.py [N]

Two embedded clusters on two networks (multi-primary): sleep in cluster1, helloworld only in cluster2.
From the sleep pod, one curl makes N sequential keep-alive requests (default 1,000) along two paths:

- mesh:   curl → sleep's sidecar (HTTP proxy) → mTLS → cluster2's east-west gateway (load balancer relay,
          Envoy AUTO_PASSTHROUGH) → helloworld's sidecar → helloworld;
- direct: curl → helloworld's own address (no Envoy, no TLS).

It prints requests/s of both and their ratio, plus the time to bring the mesh up.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

from labkit import istio, kube
from labkit.emulator import launching

SAMPLES = Path(__file__).resolve().parents[1] / "manifests" / "samples"


def timed_calls(url: str, n: int, *, proxy: bool) -> tuple[float, int]:
    """Seconds for ``n`` sequential requests from one curl in cluster1's sleep pod, and how many got 200."""
    urls = " ".join([url] * n)
    flags = "" if proxy else "--noproxy '*'"
    script = (f"s=$(date +%s%N); curl -s {flags} -o /dev/null -w '%{{http_code}}\\n' {urls} > /tmp/codes.$$; "
              f"e=$(date +%s%N); echo $(( (e - s) / 1000 )); grep -c '^200$' /tmp/codes.$$; rm -f /tmp/codes.$$")
    result = kube.exec_("cluster1", "sample", "deploy/sleep", ["sh", "-c", script], container="sleep", timeout=300)
    micros, ok = result.stdout.split()
    return int(micros) / 1e6, int(ok)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    warnings.simplefilter("ignore", ResourceWarning)
    with tempfile.TemporaryDirectory() as home:
        state = Path(home)
        started = time.perf_counter()
        emulator = launching.up(["cluster1", "cluster2"], state)
        os.environ["KUBECONFIG"] = str(emulator.kubeconfig)
        try:
            istio.install_multi_primary(["cluster1", "cluster2"], state / "certs")
            for cluster in ("cluster1", "cluster2"):
                kube.apply(cluster, [{"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": "sample", "labels": {"istio-injection": "enabled"}}}])
                kube.apply(cluster, SAMPLES / "helloworld.yaml", namespace="sample", selector="service=helloworld")
            kube.apply("cluster2", SAMPLES / "helloworld.yaml", namespace="sample", selector="version=v1")
            kube.apply("cluster1", SAMPLES / "sleep.yaml", namespace="sample")
            kube.wait_ready("cluster1", "sample", ["deploy/sleep"], timeout=120)
            kube.wait_ready("cluster2", "sample", ["deploy/helloworld-v1"], timeout=120)
            mesh_url = "http://helloworld.sample:5000/hello"
            deadline = time.monotonic() + 60
            while timed_calls(mesh_url, 1, proxy=True)[1] != 1:  # wait until the remote endpoint is pushed
                assert time.monotonic() < deadline, "cluster1 never reached cluster2's helloworld"
                time.sleep(0.5)
            ready = time.perf_counter() - started
            env = kube.exec_("cluster2", "sample", "deploy/helloworld-v1", ["env"], container="istio-proxy").stdout
            app = next(line.split("=", 1)[1] for line in env.splitlines() if line.startswith("LABKIT_APP_ADDRESS="))
            direct_url = f"http://{app}:5000/hello"
            timed_calls(mesh_url, 50, proxy=True)  # warm both paths (connections, TLS sessions)
            timed_calls(direct_url, 50, proxy=False)
            mesh_seconds, mesh_ok = timed_calls(mesh_url, n, proxy=True)
            direct_seconds, direct_ok = timed_calls(direct_url, n, proxy=False)
        finally:
            launching.down(state)
    mesh_rps, direct_rps = n / mesh_seconds, n / direct_seconds
    print(f"two-cluster mesh ready (up, install, workloads, first cross-cluster answer): {ready:.1f} s")
    print(f"{n} sequential cross-cluster calls through the mesh: {mesh_rps:7.0f} req/s ({mesh_ok} × 200)")
    print(f"{n} sequential calls straight to the backend:       {direct_rps:7.0f} req/s ({direct_ok} × 200)")
    print(f"ratio mesh / direct: {mesh_rps / direct_rps:.2f}")


if __name__ == "__main__":
    main()
