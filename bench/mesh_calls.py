"""Cross-cluster calls through the mesh versus straight to the backend, measured side by side.

Run: .venv/bin/python bench/mesh_calls.py [N]

Two embedded clusters on two networks (multi-primary): sleep in cluster1, helloworld only in cluster2.
From the sleep pod, curl makes N sequential keep-alive requests (default 1,000; in five rounds that take turns
with the other paths, so a burst of load from elsewhere hits every path alike) along each path:

- mesh:   curl → sleep's sidecar (HTTP proxy) → mTLS → cluster2's east-west gateway (load balancer relay,
          Envoy AUTO_PASSTHROUGH) → helloworld's sidecar → helloworld;
- direct: curl → helloworld's own address (no Envoy, no TLS).

- floor:  the same three Envoys' work with nothing of the mesh: three fresh Envoys configured by hand with a static
          config (sidecar HTTP proxy → mTLS with SNI → gateway TLS passthrough → backend sidecar terminating mTLS →
          the same helloworld process), certificates from a CA of their own (same key type, same ALPN), the same
          access log per request (Istio's format, to a file, as the mesh's go to the container logs), no control
          plane. The client reaches the gateway through a LoadBalancer Service of its own, relayed by the same
          service proxy that carries the mesh's hop to the east-west gateway's external address: the load balancer
          is part of the physical path (a cloud's is too), not something the mesh adds. The physical floor of the
          path: ``mesh / floor`` says what the mesh adds on top. The same client Envoy also has a second listener
          that dials the gateway's own address, so the load balancer's share shows as ``floor, no LB``.

It prints requests/s of each, the ratios, plus the time to bring the mesh up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from labkit import istio, kube
from labkit.emulator import launching
from labkit.emulator.envoy.binary import find_envoy
from labkit.emulator.mesh.xds.common import access_log
from labkit.pki import new_root
from labkit.testing import address_plan

SAMPLES = Path(__file__).resolve().parents[1] / "manifests" / "samples"
ROUNDS = 5


HELLO_SNI = "outbound_.5000_._.helloworld.sample.svc.cluster.local"
TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
INSPECTOR = "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
ALPN = ["istio-peer-exchange", "istio"]


def _address(ip: str, port: int) -> dict:
    return {"socket_address": {"address": ip, "port_value": port}}


def _static_cluster(name: str, ip: str, port: int, **extra: object) -> dict:
    return {"name": name, "type": "STATIC", "connect_timeout": "1s", **extra,
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": _address(ip, port)}}]}]}}


def _http_listener(name: str, ip: str, port: int, cluster: str, log: str, **extra: object) -> dict:
    return {"name": name, "address": _address(ip, port), "filter_chains": [{**extra, "filters": [{
        "name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": HCM, "stat_prefix": name, "access_log": access_log(log), "route_config": {"virtual_hosts": [{
                "name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"},
                                                             "route": {"cluster": cluster, "timeout": "0s"}}]}]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}}]}]}


def _tls_context(credential: object, root_pem: str, peer: str) -> dict:
    return {"tls_certificates": [{"certificate_chain": {"inline_string": credential.cert_chain_pem},  # type: ignore[attr-defined]
                                  "private_key": {"inline_string": credential.key_pem}}],  # type: ignore[attr-defined]
            "validation_context": {"trusted_ca": {"inline_string": root_pem}, "match_typed_subject_alt_names": [
                {"san_type": "URI", "matcher": {"exact": peer}}]},
            "alpn_protocols": ALPN}


def floor_addresses() -> tuple[str, str, str]:
    """The floor's client, gateway and backend addresses, in a loopback block of their own (a new one per call)."""
    hosts = address_plan().pod_network(1).hosts()
    next(hosts)
    client, gateway, backend = (str(next(hosts)) for _ in range(3))
    return client, gateway, backend


def floor_load_balancer(gateway: str) -> str:
    """A LoadBalancer Service in cluster2 whose only endpoint is the floor's gateway; returns its external IP."""
    kube.apply("cluster2", [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "floor"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "floor-gateway", "namespace": "floor"},
         "spec": {"type": "LoadBalancer", "ports": [{"name": "tls", "port": 15443}]}},
        {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "floor-gateway", "namespace": "floor"},
         "subsets": [{"addresses": [{"ip": gateway}], "ports": [{"name": "tls", "port": 15443}]}]},
    ])
    def address() -> str:
        service = kube.get_object("cluster2", "v1", "Service", "floor-gateway", "floor") or {}
        ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        return str(ingress[0]["ip"]) if ingress else ""

    return kube.poll(address, timeout=30, what="an external address for the floor's load balancer")


def floor_envoys(addresses: tuple[str, str, str], app_ip: str, load_balancer: str,
                 folder: Path) -> tuple[str, str, list[subprocess.Popen[bytes]]]:
    """Three Envoys configured by hand as the mesh path is.

    Returns the client sidecar's proxy URLs (through the load balancer, straight to the gateway) and the Envoys.
    """
    client, gateway, backend = addresses
    root = new_root()
    ca = root.issue_intermediate("floor", key="ec-p256")
    sleep_id, hello_id = "spiffe://cluster.local/ns/sample/sa/sleep", "spiffe://cluster.local/ns/sample/sa/default"
    sleep, hello = ca.issue_workload(sleep_id), ca.issue_workload(hello_id)
    upstream_tls = {"name": "tls", "typed_config": {"@type": TLS + "UpstreamTlsContext", "sni": HELLO_SNI,
                                                    "common_tls_context": _tls_context(sleep, root.root_pem, hello_id)}}
    configs = {
        "client": {"listeners": [_http_listener("proxy", client, 15080, "helloworld", str(folder / "client.log")),
                                 _http_listener("no-lb", client, 15081, "no-lb", str(folder / "client.log"))],
                   "clusters": [_static_cluster("helloworld", load_balancer, 15443, transport_socket=upstream_tls),
                                _static_cluster("no-lb", gateway, 15443, transport_socket=upstream_tls)]},
        "gateway": {"listeners": [{"name": "passthrough", "address": _address(gateway, 15443),
                                   "listener_filters": [{"name": "tls_inspector",
                                                         "typed_config": {"@type": INSPECTOR}}],
                                   "filter_chains": [{"filter_chain_match": {"server_names": [HELLO_SNI]},
                                                      "filters": [{"name": "tcp", "typed_config": {
                                                          "@type": TCP_PROXY, "stat_prefix": "passthrough",
                                                          "access_log": access_log(str(folder / "gateway.log")),
                                                          "cluster": "backend"}}]}]}],
                    "clusters": [_static_cluster("backend", backend, 5000)]},
        "backend": {"listeners": [_http_listener("inbound", backend, 5000, "app", str(folder / "backend.log"),
                                                 transport_socket={
                        "name": "tls", "typed_config": {"@type": TLS + "DownstreamTlsContext",
                                                        "require_client_certificate": True,
                                                        "common_tls_context": _tls_context(hello, root.root_pem,
                                                                                           sleep_id)}})],
                    "clusters": [_static_cluster("app", app_ip, 5000)]},
    }
    processes = []
    for number, (name, resources) in enumerate(configs.items()):
        path = folder / f"floor-{name}.json"
        admin = {"address": _address({"client": client, "gateway": gateway, "backend": backend}[name], 15000)}
        path.write_text(json.dumps({"admin": admin, "static_resources": resources}))
        processes.append(subprocess.Popen([str(find_envoy().path), "-c", str(path), "--concurrency", "1",
                                           "--disable-hot-restart", "--log-level", "error",
                                           "--base-id", str(900 + number)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return f"http://{client}:15080", f"http://{client}:15081", processes


def timed_calls(url: str, n: int, *, proxy: bool | str) -> tuple[float, int]:
    """Seconds for ``n`` sequential requests from one curl in cluster1's sleep pod, and how many got 200.

    ``proxy``: through the pod's sidecar (``True``), straight (``False``), or through this HTTP proxy URL.
    """
    urls = " ".join([url] * n)
    flags = f"-x {proxy}" if isinstance(proxy, str) else "" if proxy else "--noproxy '*'"
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
            addresses = floor_addresses()
            load_balancer = floor_load_balancer(addresses[1])
            floor_proxy, no_lb_proxy, floor = floor_envoys(addresses, app, load_balancer, state)
            try:
                deadline = time.monotonic() + 30
                while timed_calls(mesh_url, 1, proxy=floor_proxy)[1] != 1:  # the floor's Envoys are up
                    assert time.monotonic() < deadline, "the floor's three Envoys never answered"
                    time.sleep(0.2)
                timed_calls(mesh_url, 50, proxy=floor_proxy)
                # Interleaved rounds: a burst of load from elsewhere on the machine hits all three paths alike.
                paths = {"mesh": (mesh_url, True), "floor": (mesh_url, floor_proxy),
                         "no LB": (mesh_url, no_lb_proxy), "direct": (direct_url, False)}
                seconds, ok = dict.fromkeys(paths, 0.0), dict.fromkeys(paths, 0)
                for _ in range(ROUNDS):
                    for name, (url, proxy) in paths.items():
                        spent, answered = timed_calls(url, n // ROUNDS, proxy=proxy)
                        seconds[name] += spent
                        ok[name] += answered
                n = n // ROUNDS * ROUNDS
                mesh_seconds, floor_seconds, direct_seconds = seconds["mesh"], seconds["floor"], seconds["direct"]
                mesh_ok, floor_ok, direct_ok = ok["mesh"], ok["floor"], ok["direct"]
                no_lb_seconds, no_lb_ok = seconds["no LB"], ok["no LB"]
            finally:
                for process in floor:
                    process.terminate()
                    process.wait(5)
        finally:
            launching.down(state)
    mesh_rps, floor_rps, direct_rps = n / mesh_seconds, n / floor_seconds, n / direct_seconds
    print(f"two-cluster mesh ready (up, install, workloads, first cross-cluster answer): {ready:.1f} s")
    print(f"{n} sequential cross-cluster calls through the mesh: {mesh_rps:7.0f} req/s ({mesh_ok} × 200)")
    print(f"{n} sequential calls, same path, static Envoys (floor): {floor_rps:7.0f} req/s ({floor_ok} × 200)")
    print(f"{n} sequential calls, static Envoys, no LB relay:   {n / no_lb_seconds:7.0f} req/s ({no_lb_ok} × 200)")
    print(f"{n} sequential calls straight to the backend:       {direct_rps:7.0f} req/s ({direct_ok} × 200)")
    print(f"ratio mesh / floor: {mesh_rps / floor_rps:.2f}   (the mesh should add nothing the floor lacks: ≥ 0.9)")
    print(f"ratio mesh / direct: {mesh_rps / direct_rps:.2f}")


if __name__ == "__main__":
    main()
