"""Lab 2 as a learner would break and re-run it (the plain run is nbval's, on notebooks/ itself).

- Without ``expose-istiod.yaml`` the remote cluster cannot reach the primary's istiod: the lab must stop at the
  checkpoint that says so, quoting Kubernetes' ``failed calling webhook``, not hang waiting for remote pods.
- Every cell is safe to run twice: the whole notebook runs, then runs again in the same kernel.
"""

from __future__ import annotations

import pytest
from nbclient.exceptions import CellExecutionError
from notebook_kit import LabNotebook

NOTEBOOK = "02-primary-remote.ipynb"
LAB = "primary-remote"

# Kernel start-up and the Kubernetes client inside the kernel warn in ways unrelated to the lab.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


def test_without_expose_istiod_the_remote_checkpoint_fails_and_says_why(lab_notebook: LabNotebook) -> None:
    with pytest.raises(CellExecutionError) as failure:
        lab_notebook.client(lab_notebook.read(without_tag="expose-istiod")).execute()
    message = str(failure.value)
    assert "CheckpointFailed" in message
    assert "cluster2's API server reaches the primary's sidecar injector" in message
    assert "failed calling webhook" in message


def test_every_cell_can_be_run_twice(lab_notebook: LabNotebook) -> None:
    printed = lab_notebook.run_twice()
    assert "✅ with expose-istiod back, both remote profile pods run and every remote proxy is SYNCED again" in printed
    assert lab_notebook.stopped  # the cleanup cell stopped the lab
