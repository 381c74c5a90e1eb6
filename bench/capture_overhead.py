"""What a capture at the load balancer costs the traffic crossing it (Lab 3), measured side by side.

Run: .venv/bin/python bench/capture_overhead.py [N]

Sets up Lab 3's path on two embedded clusters (sleep → sidecar → mTLS → cluster2's load balancer relay →
ingress gateway :8443 → nginx) and times N sequential calls inside the sleep pod, alternately with and
without a PacketCapture tapping the relay (three rounds each), then prints requests/s and the ratio.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

from labkit import Lab
from labkit.pki import make_mesh

URL = "http://newlb.secure.svc.cluster.local:443/"
LB = "istio-system/svc/cluster-load-balancer"


def setup(lab: Lab) -> None:
    make_mesh(lab.dir / "certs", lab.clusters, key="ec-p256")
    for cluster in lab.clusters:
        lab[cluster].plug_in_ca(lab.dir / "certs" / cluster)
        lab[cluster].install("istio.yaml", quiet=True)
        lab[cluster].namespace("secure", labels={"istio-injection": "enabled"})
        lab[cluster].apply("peer-authentication.yaml")
    address = lab.static_address()
    lab.cluster2.apply("load-balancer.yaml", values={"LB_IP": address})
    for manifest in ("gateway.yaml", "nginx.yaml", "virtualservice.yaml"):
        lab.cluster2.apply(manifest)
    lab.cluster1.apply("headless-service.yaml", values={"LB_IP": address})
    lab.cluster1.apply("destinationrule-mutual.yaml")
    lab.cluster1.apply("sleep.yaml", namespace="secure")
    lab.cluster2.wait("secure", ["deploy/nginx"])
    lab.cluster1.wait("secure", ["deploy/sleep"])
    assert lab.cluster1.call_until("secure/deploy/sleep", URL, lambda c: (c["status"] == 200).all(), n=3)


def timed(lab: Lab, n: int) -> float:
    """Seconds for n sequential keep-alive calls from one curl, timed in the pod."""
    script = (f"s=$(date +%s%N); curl -sS {' '.join([URL] * n)} > /dev/null; e=$(date +%s%N); "
              f"echo $(( (e - s) / 1000 ))")
    return int(lab.cluster1.exec("secure/deploy/sleep", ["sh", "-c", script], container="sleep").split()[0]) / 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as home:
        lab = Lab("nlb-headless", clusters=["cluster1", "cluster2"], state_dir=Path(home) / "lab")
        try:
            setup(lab)
            timed(lab, 50)  # warm the path
            plain, tapped, captured = [], [], 0
            for _ in range(3):
                plain.append(timed(lab, n))
                capture = lab.cluster2.capture(LB, seconds=8, during=lambda: tapped.append(timed(lab, n)))
                captured += sum(len(stream.data) for stream in capture.streams)
                time.sleep(0.2)
        finally:
            lab.cleanup()
    without, with_tap = n / statistics.median(plain), n / statistics.median(tapped)
    print(f"{n} sequential calls across the load balancer, median of 3 rounds each:")
    print(f"  without a capture: {without:6.0f} req/s")
    print(f"  with a capture:    {with_tap:6.0f} req/s  ({captured / 3 / 1024:.0f} KiB recorded per round)")
    print(f"ratio with / without: {with_tap / without:.2f}")


if __name__ == "__main__":
    main()
