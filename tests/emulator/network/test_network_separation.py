"""Separate networks: which addresses a pod of each network reaches, measured with real sockets.

:func:`separation.separate` moves the calling process into namespaces of its own for good, so each scenario runs in
a child interpreter and prints what it measured; the assertions here read that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from labkit.core.contract import AddressPlan
from labkit.emulator.network import separation
from labkit.testing import address_plan

SCENARIO = textwrap.dedent('''
    import json, socket, sys, threading
    from labkit.core.contract import AddressPlan
    from labkit.emulator.network import separation as s

    block = int(sys.argv[1])
    plan = AddressPlan(block)
    # cluster1 alone on "west"; cluster2 and cluster3 share "east".
    networks = s.separate(s.Layout.parse(plan, ["cluster1", "cluster2", "cluster3"], "cluster2=east,cluster3=east"))
    if not networks.enabled:
        print(json.dumps({"off": networks.detail}))
        sys.exit(0)

    def listen(host, port, namespace=None):
        def work():
            if namespace is not None:
                s.enter(namespace)
            server = socket.socket()
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind((host, port))
            server.listen()
            return server
        server = s._in_thread(work)
        threading.Thread(target=lambda: [server.accept()[0].close() for _ in range(100)], daemon=True).start()

    def dial(target, namespace=None, source=None):
        def work():
            if namespace is not None:
                s.enter(namespace)
            client = socket.socket()
            client.settimeout(1.0)
            if source:
                client.bind((source, 0))
            try:
                client.connect(target)
                return "connected"
            except TimeoutError:
                return "timeout"
            except OSError as exc:
                return exc.strerror
            finally:
                client.close()
        return s._in_thread(work)

    pod1, pod2, pod3 = (f"127.{block}.{k}.5" for k in (1, 2, 3))
    listen(pod1, 5000, networks.namespace(1))
    listen(pod2, 5000, networks.namespace(2))
    listen(f"127.{block}.200.1", 15443)      # a load balancer, served by the node
    listen(f"127.{block}.101.7", 80)         # a ClusterIP of cluster1
    listen(plan.api_server_address(2), 6443)
    host_twin = networks.host.listener(f"127.{block}.200.1", 15443)
    results = {
        "same network, one cluster": dial((pod1, 5000), networks.namespace(1), f"127.{block}.1.6"),
        "same network, two clusters": dial((pod2, 5000), networks.namespace(3)),
        "other network's pod": dial((pod1, 5000), networks.namespace(2)),
        "other network's ClusterIP": dial((f"127.{block}.101.7", 80), networks.namespace(2)),
        "own ClusterIP": dial((f"127.{block}.101.7", 80), networks.namespace(1)),
        "load balancer from west": dial((f"127.{block}.200.1", 15443), networks.namespace(1)),
        "load balancer from east": dial((f"127.{block}.200.1", 15443), networks.namespace(2)),
        "other network's API server": dial((plan.api_server_address(2), 6443), networks.namespace(1)),
        "own network's API server": dial((plan.api_server_address(2), 6443), networks.namespace(3)),
        "node to west pod": dial((pod1, 5000)),
        "node to east pod": dial((pod2, 5000)),
        "twin": host_twin.getsockname()[0],
    }
    # From the machine's own namespace (the host process's socket): the load balancer's twin answers.
    client = networks.host.connector()
    client.setblocking(True)
    client.settimeout(1.0)
    client.connect((f"127.{block}.200.1", 15443))
    results["machine to load balancer"] = "connected"
    print(json.dumps(results))
''')


@pytest.fixture(scope="module")
def measured() -> dict[str, str]:
    plan = address_plan()
    done = subprocess.run([sys.executable, "-c", SCENARIO, str(plan.block)], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ), check=False)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])
    if "off" in results:
        pytest.skip(f"network separation is off here: {results['off']}")
    return results


def test_pods_of_one_network_reach_each_other_directly(measured: dict[str, str]) -> None:
    assert measured["same network, one cluster"] == "connected"
    assert measured["same network, two clusters"] == "connected"


def test_another_networks_pods_and_cluster_ips_time_out(measured: dict[str, str]) -> None:
    # The real symptom: nothing answers, not even a refusal.
    assert measured["other network's pod"] == "timeout"
    assert measured["other network's ClusterIP"] == "timeout"
    assert measured["own ClusterIP"] == "connected"


def test_load_balancers_and_api_servers_answer_every_network(measured: dict[str, str]) -> None:
    assert measured["load balancer from west"] == measured["load balancer from east"] == "connected"
    assert measured["other network's API server"] == measured["own network's API server"] == "connected"


def test_the_node_reaches_every_pod_and_the_machine_reaches_load_balancers(measured: dict[str, str]) -> None:
    assert measured["node to west pod"] == measured["node to east pod"] == "connected"
    assert measured["machine to load balancer"] == "connected"


def test_a_layout_names_shared_networks_and_refuses_unknown_clusters() -> None:
    plan = AddressPlan(42)
    layout = separation.Layout.parse(plan, ["a", "b", "c"], "b=east, c=east")
    assert layout.networks == ("a", "east", "east")
    assert layout.names == ["a", "east"]
    assert layout.members("east") == [2, 3]
    with pytest.raises(ValueError, match="'d=east' is not <cluster>=<network>"):
        separation.Layout.parse(plan, ["a", "b"], "d=east")


def test_switched_off_it_says_why_and_changes_nothing() -> None:
    layout = separation.Layout.parse(AddressPlan(42), ["a"])
    networks = separation.separate(layout, {separation.ENABLE_VARIABLE: "0"})
    assert not networks.enabled and networks.namespace(1) == -1
    assert networks.detail.startswith("LABKIT_NETWORKS=0: pods of every network reach")
