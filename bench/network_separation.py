"""What separate networks cost: making them, and a connection through the node versus one on a shared loopback.

With separation on, a pod's call to a load balancer, a ClusterIP or an API server crosses its network's veth pair
to the node namespace (and the node's answer crosses back); without it, both ends share one loopback. This
measures, in one run and side by side:

* the time :func:`separation.separate` takes to make the node namespace and N networks (veths, routes, rules);
* connect + one 64-byte request/response round trip, and bulk throughput, from a pod's network to a listener of
  the node (the path of every Service call), next to the same between two sockets of one namespace (the path
  before separation, and still the path between pods of one network).

Each measurement runs in a child interpreter, since separating moves a process into namespaces for good.

Run: ``.venv/bin/python bench/network_separation.py [networks] [round trips]`` (defaults 3 and 5000).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from labkit.testing import address_plan

CHILD = textwrap.dedent('''
    import json, socket, sys, threading, time
    from labkit.core.contract import AddressPlan
    from labkit.emulator.network import separation as s

    block, networks, trips = (int(a) for a in sys.argv[1:4])
    plan = AddressPlan(block)
    names = [f"cluster{i}" for i in range(1, networks + 1)]
    started = time.perf_counter()
    made = s.separate(s.Layout.parse(plan, names))
    setup = time.perf_counter() - started
    if not made.enabled:
        print(json.dumps({"off": made.detail}))
        sys.exit(0)

    def serve(host, namespace=None):
        def work():
            if namespace is not None:
                s.enter(namespace)
            server = socket.socket()
            server.bind((host, 7000))
            server.listen()
            return server
        server = s._in_thread(work)

        def loop():
            while True:
                conn, _ = server.accept()
                threading.Thread(target=echo, args=(conn,), daemon=True).start()
        threading.Thread(target=loop, daemon=True).start()

    def echo(conn):
        with conn:
            while data := conn.recv(1 << 16):
                if data[:1] != b"B":
                    conn.sendall(data)

    def measure(target, namespace):
        def work():
            if namespace is not None:
                s.enter(namespace)
            message = b"x" * 64
            begun = time.perf_counter()
            for _ in range(trips // 10):
                with socket.create_connection(target) as conn:
                    conn.sendall(message)
                    conn.recv(64)
            connect = (time.perf_counter() - begun) / (trips // 10)
            with socket.create_connection(target) as conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                begun = time.perf_counter()
                for _ in range(trips):
                    conn.sendall(message)
                    conn.recv(64)
                trip = (time.perf_counter() - begun) / trips
                block = b"B" * (1 << 16)
                begun = time.perf_counter()
                for _ in range(4096):  # 256 MiB
                    conn.sendall(block)
                bulk = 256 / (time.perf_counter() - begun)
            return {"connect+1 round trip (us)": round(connect * 1e6, 1), "round trip (us)": round(trip * 1e6, 1),
                    "bulk (MiB/s)": round(bulk)}
        return s._in_thread(work)

    node_address = f"127.{block}.200.9"                  # a load balancer: served by the node
    pod_address = f"127.{block}.1.9"                     # a pod of network 1
    serve(node_address)
    serve(pod_address, made.namespace(1))
    print(json.dumps({
        "setup (ms)": round(setup * 1000, 1),
        "pod -> node (veth)": measure((node_address, 7000), made.namespace(1)),
        "pod -> pod, one network (loopback)": measure((pod_address, 7000), made.namespace(1)),
    }))
''')


def main() -> None:
    networks = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    trips = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    plan = address_plan()
    done = subprocess.run([sys.executable, "-c", CHILD, str(plan.block), str(networks), str(trips)],
                          capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    if "off" in figures:
        raise SystemExit(f"network separation is off here: {figures['off']}")
    print(f"separate(): node namespace + {networks} networks in {figures['setup (ms)']} ms")
    print(f"{'path':<36} {'connect+1 RT (us)':>18} {'round trip (us)':>16} {'bulk (MiB/s)':>13}")
    for path in ("pod -> node (veth)", "pod -> pod, one network (loopback)"):
        row = figures[path]
        print(f"{path:<36} {row['connect+1 round trip (us)']:>18} {row['round trip (us)']:>16} "
              f"{row['bulk (MiB/s)']:>13}")


if __name__ == "__main__":
    main()
