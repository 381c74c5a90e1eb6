"""labkit: multi-cluster Istio labs on real or embedded clusters.

The public surface is small: this facade (``Lab``, whose ``lab["cluster1"]`` is a cluster handle; ``up``,
``down``, ``status`` for the embedded clusters; ``diagnose``, the expert's checklist for a failing call),
:mod:`labkit.errors`, :mod:`labkit.labs` (one module per lab),
:mod:`labkit.testing` (what tests share), and each subpackage's ``__all__``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labkit.diagnosing import diagnose
    from labkit.emulator.launching import down, status, up
    from labkit.lab import Lab

__all__ = ["Lab", "__version__", "diagnose", "down", "status", "up"]


def __getattr__(name: str) -> Any:
    # Lazy on purpose: every program of a pod (the Envoy agents, istiod, the apps) imports this package, and none
    # needs pandas, the Kubernetes client (both behind Lab), the launcher (~30 ms) or package metadata (~40 ms).
    if name in ("up", "down", "status"):
        from labkit.emulator import launching  # noqa: PLC0415

        return getattr(launching, name)
    if name == "Lab":
        from labkit.lab import Lab  # noqa: PLC0415

        return Lab
    if name == "diagnose":
        from labkit.diagnosing import diagnose  # noqa: PLC0415

        return diagnose
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

        try:
            return version("labkit")
        except PackageNotFoundError:  # a source tree that was never installed
            return "0.0.0"
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")
