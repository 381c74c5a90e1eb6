"""What Kubernetes' own schemas cost the emulator: memory, and the first requests that load them.

Run: .venv/bin/python bench/schemas_cost.py

Starts one embedded cluster and prints the emulator's RSS when idle, then the latency of the first and of a
repeated request of each kind that reads schemas — a create with field validation (kubectl's Strict), the
``/openapi/v3`` index, and the ``api/v1`` and ``apis/apps/v1`` documents kubectl downloads — and the RSS after
them. The definitions are read on first use and kept per API package, so the first write pays the parse once
and later requests only the lookups. Run it on an older checkout (PYTHONPATH=<tree>) to compare.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from kubernetes import client, config

from labkit.emulator import launching


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        emulator = launching.up(["bench"], Path(home))
        try:
            api = config.new_client_from_config(str(emulator.kubeconfig), context="bench")
            v1 = client.CoreV1Api(api)
            v1.list_namespace()  # a warm connection, so the timings below are the server's work
            idle_kib = rss_kib(emulator.pid)

            host = api.configuration.host
            headers = {"Authorization": api.configuration.get_api_key_with_prefix("BearerToken"),
                       "Content-Type": "application/json", "Accept": "application/json"}

            def get(path: str) -> None:
                api.call_api("GET", f"{host}{path}", header_params=headers).read()

            def create(name: str) -> None:
                body = {"metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}}
                response = api.call_api("POST", f"{host}/api/v1/namespaces/default/services?fieldValidation=Strict",
                                        header_params=headers, body=body)
                assert response.status == 201, response.read()

            rows = [
                ("create a Service, fieldValidation=Strict", timed(lambda: create("first")),
                 timed(lambda: create("second"))),
                ("GET /openapi/v3", timed(lambda: get("/openapi/v3")), timed(lambda: get("/openapi/v3"))),
                ("GET /openapi/v3/api/v1", timed(lambda: get("/openapi/v3/api/v1")),
                 timed(lambda: get("/openapi/v3/api/v1"))),
                ("GET /openapi/v3/apis/apps/v1", timed(lambda: get("/openapi/v3/apis/apps/v1")),
                 timed(lambda: get("/openapi/v3/apis/apps/v1"))),
            ]
            after_kib = rss_kib(emulator.pid)
            api.close()
        finally:
            launching.down(Path(home))
    print(f"emulator RSS, one cluster: {idle_kib / 1024:.0f} MiB idle, {after_kib / 1024:.0f} MiB after the "
          f"requests below (+{(after_kib - idle_kib) / 1024:.0f} MiB)")
    print(f"{'request':<44} {'first':>9} {'again':>9}")
    for what, first, again in rows:
        print(f"{what:<44} {first:>6.0f} ms {again:>6.0f} ms")


if __name__ == "__main__":
    main()
