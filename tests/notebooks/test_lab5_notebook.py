"""Lab 5 as a learner would break and re-run it, and as a trainer rehearses it (the plain run is nbval's, on
notebooks/ itself).

- Without the first bundle exchange by hand, neither SPIRE server can authenticate the other's ``https_spiffe``
  endpoint, so no bundle ever arrives: the federation checkpoint must fail, not pass on some leftover trust.
- Every cell is safe to run twice, and ``labkit run`` writes the notebook's charts: the trainer's command runs a
  copy whose cells come twice in a row (one kernel) before the cleanup cell.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import uuid
from pathlib import Path

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError
from notebook_kit import LabNotebook

NOTEBOOK = "05-spire-federation.ipynb"
LAB = "spire-federation"
LABKIT = str(Path(sys.executable).with_name("labkit"))
FEDERATED = "each SPIRE server holds the other trust domain's bundle (foo.com ↔ bar.com)"

# Kernel start-up and the Kubernetes client inside the kernel warn in ways unrelated to the lab.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


def _copy(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The same cell once more, under an id of its own (nbformat refuses duplicate ids)."""
    again = copy.deepcopy(cell)
    again["id"] = uuid.uuid4().hex[:8]
    return again


def test_without_the_first_bundle_exchange_the_federation_checkpoint_fails(lab_notebook: LabNotebook) -> None:
    with pytest.raises(CellExecutionError) as failure:
        lab_notebook.client(lab_notebook.read(without_tag="bundle-exchange")).execute()
    message = str(failure.value)
    assert "CheckpointFailed" in message
    assert FEDERATED in message


def test_every_cell_runs_twice_and_labkit_run_writes_the_charts(lab_notebook: LabNotebook, tmp_path: Path) -> None:
    notebook = lab_notebook.read()
    cleanup = [i for i, c in enumerate(notebook.cells) if "lab.cleanup()" in c.source]
    assert cleanup == [len(notebook.cells) - 1], "the lab must end with its cleanup cell"
    steps = notebook.cells[:-1]
    notebook.cells = [*steps, *(_copy(c) for c in steps), notebook.cells[-1]]
    twice = tmp_path / "run" / NOTEBOOK
    twice.parent.mkdir()
    nbformat.write(notebook, twice)
    out = tmp_path / "run" / "out"
    done = subprocess.run([LABKIT, "run", str(twice), "--out", str(out)], capture_output=True, text=True,
                          timeout=1200, cwd=lab_notebook.path.parent, env=dict(os.environ, MPLBACKEND="Agg"),
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    executed = nbformat.read(out / NOTEBOOK, as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    for lesson in (FEDERATED, "north-south: cluster1's sleep reaches helloworld v2 through cluster2's ingress gateway",
                   "without bar.com's bundle, calls from foo.com to bar.com fail verifying the server (TLS error)",
                   "with bar.com's bundle restored, cluster1 reaches v2 again",
                   "without bar.com in cluster1's trustDomainAliases, calls to v2 fail although both bundles are trusted",
                   "with the alias back, cluster1 reaches v2 again"):
        assert printed.count(f"✅ {lesson}") == 2, lesson
    charts = sorted(out.glob("05-spire-federation-cell*.png"))
    assert len(charts) == 2  # the stage chart, once per pass
    assert all(chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for chart in charts)
    assert lab_notebook.stopped  # the cleanup cell stopped the lab
