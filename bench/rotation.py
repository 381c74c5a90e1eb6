"""Workload-certificate rotation under traffic: a 2-minute certificate is renewed before it expires, no call fails.

Run: .venv/bin/python bench/rotation.py [LIFETIME_SECONDS] [DURATION_SECONDS]

Starts a stand-in istiod (labkit's gRPC server and CA, the tests' ``StandInIstiod``) and one real
``pilot-agent proxy sidecar`` with ``SECRET_TTL`` = LIFETIME (default 120 s) whose Envoy serves an mTLS listener
with the SDS ``default`` and ``ROOTCA`` secrets, then makes mTLS calls — a new TLS handshake each, so each
checks the certificate Envoy holds at that moment — for DURATION (default 1.4 × LIFETIME). Prints each
certificate Envoy presented (serial, not-after, when it was first seen), the calls and the failures.
"""

from __future__ import annotations

import http.client
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from labkit.testing import address_plan

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "emulator" / "envoy"))
from envoy_kit import StandInIstiod, agent_env, pod_folder

from labkit.emulator.mesh.model import ProxyConfig
from labkit.emulator.mesh.xds import common, names
from labkit.pki import describe

TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"


def _listener(ip: str) -> dict[str, Any]:
    """An mTLS listener on ``ip:15443`` answering 200, with the workload's SDS secrets (as an inbound one has)."""
    context = {"require_client_certificate": True, "common_tls_context": {
        "tls_certificate_sds_secret_configs": [common.sds_secret(names.SDS_DEFAULT)],
        "validation_context_sds_secret_config": common.sds_secret(names.SDS_ROOT)}}
    router = {"name": "envoy.filters.http.router",
              "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                    "HttpConnectionManager",
           "stat_prefix": "mtls", "http_filters": [router],
           "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
               {"match": {"prefix": "/"}, "direct_response": {"status": 200}}]}]}}
    return {"@type": common.LISTENER, "name": "mtls",
            "address": {"socket_address": {"address": ip, "port_value": 15443}},
            "filter_chains": [{"transport_socket": {"name": "envoy.transport_sockets.tls",
                                                    "typed_config": {"@type": TLS, **context}},
                               "filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": hcm}]}]}


def _call(context: ssl.SSLContext, ip: str) -> tuple[bool, str]:
    """One call on a fresh connection; whether it succeeded, and the certificate Envoy presented."""
    connection = http.client.HTTPSConnection(ip, 15443, context=context, timeout=2)
    try:
        connection.request("GET", "/")
        ok = connection.getresponse().status == 200
        peer = connection.sock.getpeercert(binary_form=True) if connection.sock else None
        if not peer:
            return ok, ""
        leaf = describe(ssl.DER_cert_to_PEM_cert(peer))[0]
        return ok, f"{leaf.serial[:16]}… valid until {leaf.not_after:%H:%M:%S}"
    except OSError:
        return False, ""
    finally:
        connection.close()


def main() -> None:
    lifetime = int(sys.argv[1]) if len(sys.argv) > 1 else 120
    duration = float(sys.argv[2]) if len(sys.argv) > 2 else lifetime * 1.4
    hosts = address_plan().pod_network(1).hosts()
    next(hosts)
    istiod_ip, ip = str(next(hosts)), str(next(hosts))
    with tempfile.TemporaryDirectory() as folder, StandInIstiod(istiod_ip) as istiod:
        pod = pod_folder(Path(folder) / "pod", istiod)
        env = {**agent_env(istiod, ip), "SECRET_TTL": f"{lifetime}s"}
        node_id = f"sidecar~{ip}~helloworld-v1-abc.sample~sample.svc.cluster.local"
        istiod.publish(node_id, ProxyConfig(listeners=(_listener(ip),), clusters=(), routes=(), endpoints=()))
        agent = subprocess.Popen([sys.executable, "-m", "labkit.emulator.envoy.agent", "proxy", "sidecar"],
                                 env=env, cwd=pod, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = istiod.ca.issue_workload("spiffe://cluster.local/ns/sample/sa/client")
        (Path(folder) / "client.pem").write_text(client.cert_chain_pem)
        (Path(folder) / "client.key").write_text(client.key_pem)
        context = ssl.create_default_context(cadata=istiod.ca.cert_pem)
        context.check_hostname = False  # workload certificates carry a SPIFFE URI, no DNS name
        context.load_cert_chain(Path(folder) / "client.pem", Path(folder) / "client.key")
        try:
            started = time.monotonic()
            while not _call(context, ip)[0]:
                if time.monotonic() - started > 20:
                    raise SystemExit("the mTLS listener did not answer within 20 s")
                time.sleep(0.05)
            seen: dict[str, float] = {}
            calls = failures = 0
            begin = time.monotonic()
            while time.monotonic() - begin < duration:
                ok, serial = _call(context, ip)
                calls += 1
                failures += not ok
                if serial and serial not in seen:
                    seen[serial] = time.monotonic() - begin
                time.sleep(0.05)
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(10)
    print(f"certificate lifetime {lifetime} s, traffic for {duration:.0f} s: {calls} mTLS calls "
          f"(a new handshake each), {failures} failed")
    for serial, at in seen.items():
        print(f"  certificate {serial}, first presented at {at:6.1f} s")
    print(f"{len(seen)} certificates presented; renewals every ~{lifetime / 2:.0f} s expected (half-life)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
