"""The notebook tests' fixture: a lab's notebook with a private LABKIT_HOME, its lab stopped afterwards.

A test module names its notebook and its lab (``NOTEBOOK``, ``LAB``) and asks for ``lab_notebook``
(a :class:`notebook_kit.LabNotebook`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.emulator import launching

# --import-mode=importlib puts no test folder on sys.path; this one's helpers are imported as ``notebook_kit``.
sys.path.insert(0, str(Path(__file__).parent))
from notebook_kit import NOTEBOOKS, LabNotebook


@pytest.fixture
def lab_notebook(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LabNotebook]:
    """The test module's ``NOTEBOOK`` (a file name in ``notebooks/``) for its ``LAB``, with a private LABKIT_HOME."""
    notebook = LabNotebook(NOTEBOOKS / request.module.NOTEBOOK, request.module.LAB, tmp_path)
    saved = os.environ.get("LABKIT_HOME")
    os.environ["LABKIT_HOME"] = str(tmp_path)
    try:
        yield notebook
    finally:
        launching.down(tmp_path / "labs" / notebook.lab)
        if saved is None:
            os.environ.pop("LABKIT_HOME", None)
        else:
            os.environ["LABKIT_HOME"] = saved
