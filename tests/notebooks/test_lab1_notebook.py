"""Lab 1 as a learner would break and re-run it (the plain run is nbval's, on notebooks/ itself).

- Without ``expose-services.yaml`` the east-west gateways do not route, so the lab's cross-cluster
  checkpoint must fail: the notebook teaches what it claims only while the mesh really works.
- Every cell is safe to run twice: the whole notebook runs, then runs again in the same kernel.
"""

from __future__ import annotations

import pytest
from nbclient.exceptions import CellExecutionError
from notebook_kit import LabNotebook

NOTEBOOK = "01-multi-primary.ipynb"
LAB = "multi-primary"

# Kernel start-up and the Kubernetes client inside the kernel warn in ways unrelated to the lab.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


def test_without_expose_services_the_cross_cluster_checkpoint_fails(lab_notebook: LabNotebook) -> None:
    with pytest.raises(CellExecutionError) as failure:
        lab_notebook.client(lab_notebook.read(without_tag="expose-services")).execute()
    message = str(failure.value)
    assert "CheckpointFailed" in message
    assert "from every cluster, v1 and v2 answer" in message


def test_every_cell_can_be_run_twice(lab_notebook: LabNotebook) -> None:
    printed = lab_notebook.run_twice()
    assert "✅ from every cluster, v1 and v2 answer" in printed
    assert lab_notebook.stopped  # the cleanup cell stopped the lab
