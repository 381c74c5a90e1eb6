"""Lab 6 run as a trainer rehearses it (the plain run is nbval's, on notebooks/ itself): every exercise breaks and
fixes the mesh, so the cells run twice in a row in one kernel must pass every checkpoint twice, and ``labkit run``
writes the notebook's charts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from notebook_kit import LabNotebook

NOTEBOOK = "06-troubleshooting.ipynb"
LAB = "troubleshooting"
LESSONS = (
    "healthy: cluster1's calls reach v1 and v2, httpbin answers, and diagnose finds no fault",
    "the canary with typos is refused at apply time, naming both fields, and nothing of it is applied",
    "the corrected canary applies and both versions answer; diagnose found no fault in the calls",
    "with hosts that cover nothing, the gateway refuses the SNI (NR filter_chain_not_found): httpbin 503, "
    "helloworld only v1",
    "with expose-services covering *.local, both answer again; diagnose named the gateway",
    "with two roots, httpbin fails 503 with CERTIFICATE_VERIFY_FAILED and helloworld answers only v1",
    "with one root again, both answer; diagnose named the two roots",
    "without a network label, cluster1's sidecar dials cluster2's pod IP and the call times out",
    "with the network named again, httpbin answers through the gateway; diagnose named the label",
    "with an unreachable server in the remote secret, remote-clusters says timeout and only v1 answers",
    "with a reachable server, cluster2 is synced and v2 answers again; diagnose named the remote secret",
    "without httpbin's Service in cluster1, curl cannot resolve httpbin.sample",
    "with the Service back, httpbin resolves and answers; diagnose named the name resolution",
    "with a plaintext DestinationRule, the other network's endpoints are dropped: only v1 answers, httpbin has no "
    "healthy upstream",
    "with mTLS back, both answer again; diagnose named the plaintext DestinationRule",
    "without istiod, calls still work but the new pod is refused (FailedCreate … failed calling webhook)",
    "with istiod back, the second pod is created and ready; diagnose named the webhook",
    "locality load balancing without outlierDetection is ignored: cluster1's calls still reach both regions",
    "with outlierDetection, calls stay local and fail over when v1 is gone; diagnose named it",
    "with its EXTERNAL-IP <pending>, cluster2's gateway leaves cluster1 dialling pod IPs: the call times out",
    "with an address again, httpbin answers through the gateway; diagnose named the pending gateway",
)

# Kernel start-up and the Kubernetes client inside the kernel warn in ways unrelated to the lab.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


def test_every_exercise_breaks_and_heals_twice_and_labkit_run_writes_the_charts(lab_notebook: LabNotebook,
                                                                                tmp_path: Path) -> None:
    printed, out = lab_notebook.labkit_run_twice(tmp_path)
    for lesson in LESSONS:
        assert printed.count(f"✅ {lesson}") == 2, lesson
    charts = sorted(out.glob("06-troubleshooting-cell*.png"))
    assert len(charts) == 4  # the healthy mesh's and the unreachable remote secret's, once per pass
    assert all(chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for chart in charts)
    assert lab_notebook.stopped  # the cleanup cell stopped the lab


def test_every_answer_and_fix_is_hidden_until_revealed(lab_notebook: LabNotebook) -> None:
    notebook = lab_notebook.read()
    answers = [c for c in notebook.cells if c.cell_type == "markdown" and "<b>Answer</b>" in c.source]
    fixes = [c for c in notebook.cells if c.cell_type == "code" and "troubleshooting.fix_" in c.source]
    assert len(answers) == len(fixes) == 10
    for cell in answers + fixes:
        assert cell.metadata.get("jupyter", {}).get("source_hidden") is True, cell.source[:60]
    assert all(c.source.startswith("<details>") for c in answers)
