"""Three embedded clusters, started once for the contract tests, driven by real clients.

The emulator is started the way users start it (``labkit.emulator.launching.up``, a process of its
own) in a private state directory and address block, so a trainer's running clusters are never
touched; at the end ``down`` must leave none of its processes behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.emulator import launching

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed on this machine")
CLUSTERS = ("cluster1", "cluster2", "cluster3")
# Small enough that a test can outrun it and see a watch expire (410) as it would after compaction.
WATCH_HISTORY = 300


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[launching.Emulator]:
    state = tmp_path_factory.mktemp("labkit-home")
    running = launching.up(CLUSTERS, state, watch_history=WATCH_HISTORY)
    try:
        yield running
    finally:
        launching.down(state)


@pytest.fixture(scope="session")
def kubeconfig(emulator: launching.Emulator) -> Path:
    return emulator.kubeconfig


class Kubectl:
    """kubectl against one emulator, with its own HOME so no user config or cache leaks in."""

    def __init__(self, kubeconfig: Path, home: Path):
        self.env = dict(os.environ, KUBECONFIG=str(kubeconfig), HOME=str(home))

    def __call__(self, *args: str, check: bool = True, input: str | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        result = subprocess.run([KUBECTL, *args], capture_output=True, text=True, env=self.env, input=input,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result


@pytest.fixture(scope="session")
def kubectl(kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed on this machine")
    return Kubectl(kubeconfig, tmp_path_factory.mktemp("kubectl-home"))
