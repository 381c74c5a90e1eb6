"""Lab 5 as a learner would break and re-run it, and as a trainer rehearses it (the plain run is nbval's, on
notebooks/ itself).

- Without the first bundle exchange by hand, neither SPIRE server can authenticate the other's ``https_spiffe``
  endpoint, so no bundle ever arrives: the federation checkpoint must fail, not pass on some leftover trust.
- Every cell is safe to run twice, and ``labkit run`` writes the notebook's charts: the trainer's command runs a
  copy whose cells come twice in a row (one kernel) before the cleanup cell.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from nbclient.exceptions import CellExecutionError
from notebook_kit import LabNotebook

NOTEBOOK = "05-spire-federation.ipynb"
LAB = "spire-federation"
FEDERATED = "each SPIRE server holds the other trust domain's bundle (foo.com ↔ bar.com)"

# Kernel start-up and the Kubernetes client inside the kernel warn in ways unrelated to the lab.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


def test_without_the_first_bundle_exchange_the_federation_checkpoint_fails(lab_notebook: LabNotebook) -> None:
    with pytest.raises(CellExecutionError) as failure:
        lab_notebook.client(lab_notebook.read(without_tag="bundle-exchange")).execute()
    message = str(failure.value)
    assert "CheckpointFailed" in message
    assert FEDERATED in message


def test_every_cell_runs_twice_and_labkit_run_writes_the_charts(lab_notebook: LabNotebook, tmp_path: Path) -> None:
    printed, out = lab_notebook.labkit_run_twice(tmp_path)
    for lesson in (FEDERATED, "north-south: cluster1's sleep reaches helloworld v2 through cluster2's ingress gateway",
                   "without bar.com's bundle, calls from foo.com to bar.com fail verifying the server (TLS error)",
                   "with bar.com's bundle restored, cluster1 reaches v2 again",
                   "without bar.com in cluster1's trustDomainAliases, calls to v2 fail although both bundles are "
                   "trusted",
                   "with the alias back, cluster1 reaches v2 again"):
        assert printed.count(f"✅ {lesson}") == 2, lesson
    charts = sorted(out.glob("05-spire-federation-cell*.png"))
    assert len(charts) == 2  # the stage chart, once per pass
    assert all(chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for chart in charts)
    assert lab_notebook.stopped  # the cleanup cell stopped the lab
