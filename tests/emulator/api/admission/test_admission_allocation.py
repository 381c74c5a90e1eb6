"""Admission, allocation stage: ClusterIPs and node ports inside the create and update requests."""

from __future__ import annotations

import ipaddress

import pytest

from labkit.emulator.api.admission import ServiceAllocator, default_object
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.network.addresses import IpPool


def svc(name: str, **spec) -> dict:
    return default_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
                           "spec": {"ports": [{"name": "http", "port": 80}], **spec}})


@pytest.fixture
def allocator() -> ServiceAllocator:
    network = ipaddress.IPv4Network("127.9.101.0/24")
    return ServiceAllocator(IpPool(network, reserved=frozenset({"127.9.101.1"}), what="ClusterIP"))


def test_cluster_ip_is_allocated_and_released(allocator) -> None:
    first = allocator.allocate(svc("a"))
    assert first["spec"]["clusterIP"] == "127.9.101.2"
    assert first["spec"]["clusterIPs"] == ["127.9.101.2"]
    assert "nodePort" not in first["spec"]["ports"][0]
    assert allocator.allocate(svc("b"))["spec"]["clusterIP"] == "127.9.101.3"
    allocator.release(first)
    assert allocator.allocate(svc("c"))["spec"]["clusterIP"] == "127.9.101.2"


def test_requested_cluster_ip_is_honoured_and_conflicts_are_refused(allocator) -> None:
    assert allocator.allocate(svc("dns", clusterIP="127.9.101.10"))["spec"]["clusterIP"] == "127.9.101.10"
    with pytest.raises(StatusError) as taken:
        allocator.allocate(svc("other", clusterIP="127.9.101.10"))
    assert taken.value.code == 422
    assert "failed to allocate IP 127.9.101.10: provided IP is already allocated" in taken.value.message
    with pytest.raises(StatusError, match="not in the valid range"):
        allocator.allocate(svc("far", clusterIP="10.0.0.1"))


def test_headless_and_external_name_get_no_address(allocator) -> None:
    headless = allocator.allocate(svc("h", clusterIP="None"))
    assert headless["spec"]["clusterIPs"] == ["None"]
    external = allocator.allocate(svc("e", type="ExternalName", externalName="example.com"))
    assert "clusterIP" not in external["spec"]


def test_update_keeps_the_cluster_ip_and_refuses_to_change_it(allocator) -> None:
    old = allocator.allocate(svc("a"))
    update = svc("a")  # a PUT without clusterIP keeps the allocated one
    assert allocator.allocate(update, old)["spec"]["clusterIP"] == old["spec"]["clusterIP"]
    with pytest.raises(StatusError, match="may not change once set"):
        allocator.allocate(svc("a", clusterIP="127.9.101.50"), old)


def test_node_ports_are_allocated_kept_and_conflicts_refused(allocator) -> None:
    node_port = allocator.allocate(svc("np", type="NodePort"))
    port = node_port["spec"]["ports"][0]["nodePort"]
    assert 30000 <= port <= 32767
    again = allocator.allocate(svc("np", type="NodePort"), node_port)
    assert again["spec"]["ports"][0]["nodePort"] == port
    wanted = svc("fixed", type="NodePort", ports=[{"port": 80, "nodePort": port}])
    with pytest.raises(StatusError, match="provided port is already allocated"):
        allocator.allocate(wanted)
    # A refused request leaves nothing allocated behind it.
    assert allocator.allocate(svc("next"))["spec"]["clusterIP"] == "127.9.101.3"
