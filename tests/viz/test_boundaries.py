"""labkit.viz renders data it is given: it must not reach for clusters (kube, istio, the emulator, kubernetes)."""

from __future__ import annotations

import ast
from pathlib import Path

import labkit.viz

FORBIDDEN = ("kubernetes", "labkit.kube", "labkit.istio", "labkit.emulator", "labkit.traffic")


def test_viz_imports_no_cluster_access() -> None:
    for path in Path(labkit.viz.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(FORBIDDEN), f"{path.name} imports {name}"


def test_public_api() -> None:
    assert set(labkit.viz.__all__) >= {"distribution_chart", "latency_histogram", "topology_chart",
                                       "credentials_chart", "LiveDistribution", "Cluster", "Workload", "Edge",
                                       "Topology", "Grant"}
    assert all(hasattr(labkit.viz, name) for name in labkit.viz.__all__)
