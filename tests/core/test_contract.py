"""The address plan both sides agree on."""

from __future__ import annotations

import ipaddress

import pytest

from labkit.core.contract import AddressPlan


def test_each_cluster_has_its_own_ranges_inside_the_emulators_block() -> None:
    plan = AddressPlan(block=42)
    block = ipaddress.IPv4Network("127.42.0.0/16")
    ranges = [plan.pod_network(1), plan.pod_network(2), plan.service_network(1), plan.service_network(2),
              plan.load_balancer_network()]
    assert all(r.subnet_of(block) for r in ranges)
    assert len({str(r) for r in ranges}) == len(ranges)
    assert plan.api_server_address(2) == "127.42.2.1"
    assert (plan.kubernetes_service_ip(1), plan.dns_service_ip(1)) == ("127.42.101.1", "127.42.101.10")


@pytest.mark.parametrize("block", [0, 255])
def test_a_block_outside_loopback_is_refused(block: int) -> None:
    with pytest.raises(ValueError, match="address block must be 1..254"):
        AddressPlan(block)
