"""The SPIRE tests' manifests live in ``spire_kit`` (test modules import it by name)."""

from __future__ import annotations

import sys
from pathlib import Path

# --import-mode=importlib puts no test folder on sys.path; this one's helpers are imported as ``spire_kit``.
sys.path.insert(0, str(Path(__file__).parent))
