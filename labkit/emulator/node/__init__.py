"""The emulated node (the kubelet's part): pods become local processes, and their status flows back.

* :mod:`.images`: which local program plays a container image (DESIGN decision 7), Istio's proxyv2 and
  pilot included (labkit's agent and istiod);
* :mod:`.programs`: those programs (helloworld, nginx, httpbin, sleep) and the pod's curl shim;
* :mod:`.runtime`: :class:`NodeRuntime`, the kubelet's loop: pods in, processes started and stopped, logs
  and exec served, status out;
* :mod:`.pods`: the node's records of pods and containers, and :class:`SidecarDeclaration`, all the node
  learns of a mesh (an annotation the injector writes);
* :mod:`.environment`: what a container sees — its env (the Downward API), command line and ``PATH`` shims;
* :mod:`.supervision`: restarts with back-off (CrashLoopBackOff); :mod:`.probing`: readiness;
  :mod:`.status`: the pod status a kubelet reports;
* :mod:`.resolving`: the seam to the cluster DNS for names pods look up;
* :mod:`.spawning`: process groups that die with the emulator; :mod:`.forking`: the node's zygote, which forks
  the labkit programs run with ``-m`` (proxy agent, istiod) from one warm interpreter;
* :mod:`.sandboxing`: the sandbox every pod process and exec enters on Linux (its hostname, its ``/tmp``, the
  service-account files and volumes at their paths, all kept in the pod's folder).

The node reads nothing from the store: a caller hands it pod objects and takes status back. It imports no
mesh code: Istio's images are programs to it (:mod:`.images`), and sidecar wiring is what the pod declares.
"""

from __future__ import annotations

from .images import Launch, Program, known_images, match_image, plan_launch, pull_error_message, repository
from .pods import SidecarDeclaration
from .resolving import DnsBridge, Resolver
from .runtime import ExecNotFoundError, NodeRuntime

__all__ = [
    "DnsBridge",
    "ExecNotFoundError",
    "Launch",
    "NodeRuntime",
    "Program",
    "Resolver",
    "SidecarDeclaration",
    "known_images",
    "match_image",
    "plan_launch",
    "pull_error_message",
    "repository",
]
