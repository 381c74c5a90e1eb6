"""The injection webhook's path names the cluster and network of the injected proxy (a remote install's
``istiodRemote.injectionPath``), so the primary's istiod injects remote sidecars that say where they run."""

from __future__ import annotations

import pytest

from labkit.emulator.mesh.istiod import injection_target


@pytest.mark.parametrize(("tail", "expected"), [
    ("cluster/cluster2/net/network2", ("cluster2", "network2")),
    ("net/network2", ("", "network2")),
    ("cluster/cluster-aks/net/network2/", ("cluster-aks", "network2")),
    ("", ("", "")),
])
def test_injection_path_names_cluster_and_network(tail: str, expected: tuple[str, str]) -> None:
    assert injection_target(tail) == expected
