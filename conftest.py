"""Test-session setup shared by the tests and the notebooks (nbval kernels inherit this environment)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from labkit.emulator import launching


def pytest_configure(config: pytest.Config) -> None:
    # Labs started by the test suite live in a private folder: a trainer's running labs under ~/.labkit are
    # never reused or stopped by `make test`. Kernels started by nbval inherit the variable.
    os.environ["LABKIT_HOME"] = tempfile.mkdtemp(prefix="labkit-test-home-")


def pytest_unconfigure(config: pytest.Config) -> None:
    # A notebook that fails half-way leaves its lab running (on purpose: a learner can look at it); the test
    # session still stops everything it started.
    home = Path(os.environ.get("LABKIT_HOME", ""))
    if not home.name.startswith("labkit-test-home-"):
        return
    for state in (home / "labs").glob("*"):
        launching.down(state)
    shutil.rmtree(home, ignore_errors=True)
