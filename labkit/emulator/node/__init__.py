"""The emulated node (the kubelet's part): pods become local processes, and their status flows back.

* :mod:`.images`: which local program plays a container image (DESIGN decision 7), Istio's proxyv2 and
  pilot included (labkit's agent and istiod);
* :mod:`.programs`: those programs (helloworld, nginx, httpbin, sleep) and the pod's curl shim;
* :mod:`.runtime`: :class:`NodeRuntime`, which starts, supervises, probes, logs and execs;
* :mod:`.resolving`: the seam to the cluster DNS for names pods look up;
* :mod:`.spawning`, :mod:`.probing`: process groups that die with the emulator, readiness checks.

The node reads nothing from the store: a caller hands it pod objects and takes status back.
"""

from __future__ import annotations

from .images import Launch, Program, known_images, match_image, plan_launch, pull_error_message, repository
from .resolving import DnsBridge, Resolver
from .runtime import APP_ADDRESS_ANNOTATION, ExecNotFoundError, NodeRuntime

__all__ = [
    "APP_ADDRESS_ANNOTATION",
    "DnsBridge",
    "ExecNotFoundError",
    "Launch",
    "NodeRuntime",
    "Program",
    "Resolver",
    "known_images",
    "match_image",
    "plan_launch",
    "pull_error_message",
    "repository",
]
