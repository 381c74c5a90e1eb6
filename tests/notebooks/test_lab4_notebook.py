"""Lab 4 as a learner would break and re-run it (the plain run is nbval's, on notebooks/ itself).

- Without cluster2's half of the federation (its ServiceEntry for ``svc-2.bar.global`` and the ``*.global``
  gateway) the name resolves in cluster1 but cluster2's gateway has nothing to route it to, so the lab's
  cross-cluster checkpoint must fail: the notebook teaches what it claims only while the federation really works.
- Every cell is safe to run twice: the whole notebook runs, then runs again in the same kernel.
"""

from __future__ import annotations

import pytest
from nbclient.exceptions import CellExecutionError
from notebook_kit import LabNotebook

NOTEBOOK = "04-replicated-control-planes.ipynb"
LAB = "replicated-control-planes"
REACHED = "svc-1 in cluster1 reaches svc-2.bar.global, and svc-2 sees svc-1's SPIFFE identity from cluster1"

# Kernel start-up and the Kubernetes client inside the kernel warn in ways unrelated to the lab.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


def test_without_cluster2s_entry_the_cross_cluster_checkpoint_fails(lab_notebook: LabNotebook) -> None:
    notebook = lab_notebook.read(without_tag="cluster2-entry")
    # The lab waits up to 120 s for svc-2 to answer (real clusters take their time to converge); here it never
    # can, and embedded clusters converge in about a second: 20 s of calls show that as well as 120 s would.
    wait = next(cell for cell in notebook.cells if "reached = cluster1.call_until(" in cell.source)
    assert "timeout=120" in wait.source
    wait.source = wait.source.replace("timeout=120", "timeout=20")
    with pytest.raises(CellExecutionError) as failure:
        lab_notebook.client(notebook).execute()
    message = str(failure.value)
    assert "CheckpointFailed" in message
    assert REACHED in message
    assert "upstream connect error" in message  # the evidence: cluster2's gateway reset the connection


def test_every_cell_can_be_run_twice(lab_notebook: LabNotebook) -> None:
    printed = lab_notebook.run_twice()
    assert f"✅ {REACHED}" in printed
    assert "✅ svc-3 is not reachable from cluster1 until its own ServiceEntries are added" in printed
    assert lab_notebook.stopped  # the cleanup cell stopped the lab
