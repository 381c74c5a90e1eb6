"""Quantities and the Downward API's resourceFieldRef, as the kubelet computes them for a container's env."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import pytest

from labkit.emulator.node.environment import quantity, resource_value
from labkit.emulator.node.pods import PodRecord


@pytest.mark.parametrize(("text", "value"), [("100m", Fraction(1, 10)), ("2", 2), ("128Mi", 128 * 2**20),
                                             ("1G", 10**9), ("1e3", 1000), ("0.5", Fraction(1, 2)), (3, 3)])
def test_quantities_read_as_kubernetes_reads_them(text: str, value: Fraction) -> None:
    assert quantity(text) == value


def test_a_quantity_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="quantities must match"):
        quantity("lots")


def _pod(resources: dict) -> PodRecord:
    return PodRecord({"metadata": {"name": "p", "namespace": "n"},
                      "spec": {"containers": [{"name": "main", "image": "busybox", "resources": resources},
                                              {"name": "side", "image": "busybox"}]}}, "uid", "127.0.0.2",
                     Path("/nonexistent"), True)


def test_resource_field_refs_divide_and_round_up_and_default_to_the_node() -> None:
    pod = _pod({"limits": {"cpu": "250m", "memory": "64Mi"}, "requests": {"memory": "32Mi"}})
    assert resource_value(pod, {"resource": "limits.cpu"}, "main") == "1"
    assert resource_value(pod, {"resource": "limits.cpu", "divisor": "1m"}, "main") == "250"
    assert resource_value(pod, {"resource": "limits.memory", "divisor": "1Mi"}, "main") == "64"
    assert resource_value(pod, {"resource": "requests.memory", "divisor": "1Mi"}, "main") == "32"
    assert resource_value(pod, {"resource": "requests.cpu", "divisor": "1m"}, "main") == "250"  # from the limit
    assert resource_value(pod, {"resource": "limits.cpu", "containerName": "side"}, "main") == str(os.cpu_count())
    assert resource_value(pod, {"resource": "requests.cpu"}, "side") == "0"
