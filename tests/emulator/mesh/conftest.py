"""The mesh tests' helpers live in ``envoy_check`` (test modules import them by name)."""

from __future__ import annotations

import sys
from pathlib import Path

# --import-mode=importlib puts no test folder on sys.path; this one's helpers are imported as ``envoy_check``.
sys.path.insert(0, str(Path(__file__).parent))
