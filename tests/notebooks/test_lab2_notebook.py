"""Lab 2 as a learner would break and re-run it (the plain run is nbval's, on notebooks/ itself).

- Without ``expose-istiod.yaml`` the remote cluster cannot reach the primary's istiod: the lab must stop at the
  checkpoint that says so, quoting Kubernetes' ``failed calling webhook``, not hang waiting for remote pods.
- Every cell is safe to run twice: the whole notebook runs, then runs again in the same kernel.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from labkit.emulator import launching

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "02-primary-remote.ipynb"

# Kernel start-up and the Kubernetes client inside the kernel warn in ways unrelated to the lab.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


@pytest.fixture
def lab_home(tmp_path: Path) -> Iterator[Path]:
    """A private LABKIT_HOME for the notebook's kernel; whatever the run leaves is stopped afterwards."""
    saved = os.environ.get("LABKIT_HOME")
    os.environ["LABKIT_HOME"] = str(tmp_path)
    try:
        yield tmp_path
    finally:
        launching.down(tmp_path / "labs" / "primary-remote")
        if saved is None:
            os.environ.pop("LABKIT_HOME", None)
        else:
            os.environ["LABKIT_HOME"] = saved


def client_for(notebook: nbformat.NotebookNode) -> NotebookClient:
    return NotebookClient(notebook, kernel_name="python3", timeout=600,
                          resources={"metadata": {"path": str(NOTEBOOK.parent)}})


def test_without_expose_istiod_the_remote_checkpoint_fails_and_says_why(lab_home: Path) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells = [c for c in notebook.cells if "expose-istiod" not in c.metadata.get("tags", [])]
    with pytest.raises(CellExecutionError) as failure:
        client_for(notebook).execute()
    message = str(failure.value)
    assert "CheckpointFailed" in message
    assert "cluster2's API server reaches the primary's sidecar injector" in message
    assert "failed calling webhook" in message


def test_every_cell_can_be_run_twice(lab_home: Path) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    cleanup = [i for i, c in enumerate(notebook.cells) if "lab.cleanup()" in c.source]
    assert cleanup == [len(notebook.cells) - 1], "the lab must end with its cleanup cell"
    client = client_for(notebook)
    with client.setup_kernel():
        for _ in range(2):
            for index, cell in enumerate(notebook.cells[:-1]):
                if cell.cell_type == "code":
                    client.execute_cell(cell, index)
        client.execute_cell(notebook.cells[-1], len(notebook.cells) - 1)
    printed = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
    assert "✅ with expose-istiod back, both remote profile pods run and every remote proxy is SYNCED again" in printed
    assert launching.status(lab_home / "labs" / "primary-remote") is None  # the cleanup cell stopped the lab
