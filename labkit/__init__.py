"""labkit: multi-cluster Istio labs on real or embedded clusters.

The public surface is small: this facade (``up``, ``down``, ``status`` for the embedded clusters),
:mod:`labkit.errors`, and each subpackage's ``__all__``.
"""

from importlib.metadata import PackageNotFoundError, version

from labkit.emulator.launching import down, status, up

try:
    __version__ = version("labkit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__", "down", "status", "up"]
