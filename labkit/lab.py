"""``Lab``: what a notebook cell touches. Every step of a lab is one short, re-runnable call.

A lab runs on real clusters when ``LABKIT_CONTEXTS`` (or ``contexts=``) names kubeconfig contexts, one per
lab cluster in order; otherwise on embedded clusters started for that lab (``labkit up`` with the lab's
cluster names, in a state folder of its own, reused if already running — so re-running the first cell is
safe). The kubeconfig is exported into the kernel's ``KUBECONFIG``, so ``!kubectl --context cluster1 …``
works in a cell as it does in a terminal.

Each cluster is a handle bound to its context (``lab["cluster1"]`` or ``lab.cluster1``, a
:class:`~labkit.cluster.Cluster`): cells apply, wait, call and install through it and never pass a context.
``Lab`` itself keeps only what spans the lab: its clusters, preflight, manifests, checkpoints, the credentials
across clusters and cleanup. What one lab alone needs (Lab 1's shares, Lab 3's picture of the wire) lives in
:mod:`labkit.labs`. Checkpoints (:meth:`Lab.checkpoint`) print one fixed
line when the lab's teaching point holds and raise :class:`~labkit.errors.CheckpointFailed` otherwise, so
CI running the notebook fails exactly when the lesson stops being true.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from labkit import kube
from labkit.cluster import ISTIO_NAMESPACE, LAB_LABEL, Cluster
from labkit.emulator import launching
from labkit.errors import CheckpointFailed, LabkitError

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests"


@dataclass(frozen=True)
class ClusterCheck:
    """One row of :meth:`Lab.preflight`."""

    cluster: str
    context: str
    reachable: bool
    kubernetes: str
    istio: str
    ready_pods: str
    network: str = "real"  # embedded clusters: whether their pods are on a network of their own, or why not


class Lab:
    """One lab's clusters and manifests.

    ``lab["cluster1"]`` (or ``lab.cluster1``) is the :class:`~labkit.cluster.Cluster` handle of a cluster;
    iterating over the lab gives every handle in order.

    Args:
        name: the lab's name; its manifests live in ``manifests/<name>/``.
        clusters: the lab's cluster names (``cluster1`` …).
        contexts: real kubeconfig contexts to use instead of embedded clusters (one per cluster, in order);
            defaults to ``LABKIT_CONTEXTS`` (comma-separated).
        state_dir: where embedded clusters keep their state (default ``$LABKIT_HOME/labs/<name>``).
        networks: embedded clusters only: the physical network of clusters that share one (``{"a": "east",
            "b": "east"}``); by default each cluster is a network of its own, as clusters in separate VPCs are.
    """

    def __init__(self, name: str, clusters: Sequence[str] = ("cluster1", "cluster2", "cluster3"), *,
                 contexts: Sequence[str] | None = None, state_dir: Path | None = None,
                 networks: Mapping[str, str] | None = None):
        self.name = name
        self.clusters = [kube.ClusterName(c) for c in clusters]
        self.manifests = MANIFESTS / name
        self.dir = Path(state_dir or launching.default_state_dir() / "labs" / name)
        # What each cluster had applied through its handle, so that cleanup on real clusters removes it.
        self._applied: dict[str, list[kube.AppliedObject]] = {c: [] for c in self.clusters}
        named = list(contexts) if contexts is not None else \
            [c for c in os.environ.get("LABKIT_CONTEXTS", "").split(",") if c.strip()]
        if named:
            if len(named) != len(self.clusters):
                raise LabkitError(f"lab {name} needs {len(self.clusters)} contexts ({', '.join(self.clusters)}), "
                                  f"got {len(named)}: {', '.join(named)}. Set LABKIT_CONTEXTS to one per cluster.")
            self.embedded = False
            self.emulator: launching.Emulator | None = None
            self.dir.mkdir(parents=True, exist_ok=True)
            kubeconfig = None
            print(f"Lab {name} on real clusters: "
                  + ", ".join(f"{c} → {x}" for c, x in zip(self.clusters, named, strict=True)))
        else:
            self.embedded = True
            named = list(self.clusters)
            started = time.perf_counter()
            self.emulator = launching.up(self.clusters, self.dir, networks=",".join(
                f"{cluster}={network}" for cluster, network in (networks or {}).items()))
            kubeconfig = self.emulator.kubeconfig
            os.environ["KUBECONFIG"] = str(kubeconfig)  # so that `!kubectl --context cluster1 …` works in a cell
            print(f"Lab {name} on embedded clusters {', '.join(self.clusters)} "
                  f"(ready in {time.perf_counter() - started:.1f} s)")
            print(f"export KUBECONFIG={kubeconfig}")
        self.handles = {cluster: Cluster(cluster, kube.Context(kube.ContextName(context), kubeconfig), lab=name,
                                         path=self.path, applied=self._record)
                        for cluster, context in zip(self.clusters, named, strict=True)}

    def __getitem__(self, cluster: str) -> Cluster:
        """The handle of a lab cluster: ``lab["cluster1"].apply(…)``."""
        try:
            return self.handles[cluster]
        except KeyError:
            raise LabkitError(f"lab {self.name} has no cluster {cluster!r}; its clusters are "
                              f"{', '.join(self.clusters)}") from None

    def __getattr__(self, cluster: str) -> Cluster:
        # ``lab.cluster1``: only for cluster names, so a typo in a method name still reads as one.
        handles = self.__dict__.get("handles") or {}
        if cluster in handles:
            return handles[cluster]
        raise AttributeError(f"{type(self).__name__!r} has no attribute {cluster!r}"
                             + (f"; its clusters are {', '.join(handles)}" if handles else ""))

    def __iter__(self) -> Iterator[Cluster]:
        return iter(self.handles.values())

    def __len__(self) -> int:
        return len(self.handles)

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *(c for c in self.handles if c.isidentifier())]

    def context(self, cluster: str) -> kube.Context:
        """The kubeconfig context (and kubeconfig) of a lab cluster."""
        return self[cluster].context

    def path(self, name: str | Path) -> Path:
        """A manifest of this lab (``manifests/<lab>/<name>``), else a shared sample (``manifests/samples``)."""
        for candidate in (Path(name), self.manifests / name, MANIFESTS / "samples" / name):
            if candidate.is_file():
                return candidate
        raise LabkitError(f"no manifest {name!r} in {self.manifests} or {MANIFESTS / 'samples'}")

    def _record(self, cluster: Cluster, applied: kube.AppliedObjects) -> None:
        self._applied[cluster.name] += applied

    # --- looking ------------------------------------------------------------------------------------------------

    def preflight(self) -> pd.DataFrame:
        """A table of every cluster: reachable, Kubernetes and Istio versions, ready pods. Raises with a remedy.

        On a fresh cluster the Istio column says ``not installed yet`` and the pods column ``no pods yet``:
        what a lab expects before its install step.
        """
        rows = [self._check(cluster) for cluster in self.clusters]
        if self.emulator is not None:
            # The running emulator's, which may have been started before this Lab (labkit up).
            running = launching.status(self.emulator.state_dir) or self.emulator
            network = "separate" if running.separate_networks else f"shared ({running.networks_detail})"
            rows = [dataclasses.replace(row, network=network) for row in rows]
        frame = pd.DataFrame([r.__dict__ for r in rows]).set_index("cluster")
        unreachable = [r for r in rows if not r.reachable]
        if unreachable:
            remedy = ("start them with `labkit up` (or re-run the first cell)" if self.embedded else
                      "check `kubectl --context <ctx> get nodes` and LABKIT_CONTEXTS")
            raise LabkitError(f"not reachable: {', '.join(r.cluster for r in unreachable)}; {remedy}.\n{frame}")
        return frame

    def _check(self, cluster: str) -> ClusterCheck:
        context = self.context(cluster)
        try:
            version = kube.server_version(context)
        except LabkitError:
            return ClusterCheck(cluster, context.name, False, "-", "-", "-")
        pods = kube.list_objects(context, "v1", "Pod", None)
        ready = sum(1 for p in pods if any(c.get("type") == "Ready" and c.get("status") == "True"
                                           for c in (p.get("status") or {}).get("conditions") or []))
        istiod = kube.get_object(context, "apps/v1", "Deployment", "istiod", "istio-system")
        image = ((istiod or {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers") or
                 [{}])[0].get("image", "")
        # Before the lab installs Istio this is expected, and should read so (not as a dash or 0/0, a failure).
        return ClusterCheck(cluster, context.name, True, version,
                            image.rsplit(":", 1)[-1] if image else "not installed yet",
                            f"{ready}/{len(pods)}" if pods else "no pods yet")

    def show(self, name: str | Path) -> Any:
        """A manifest, syntax-highlighted (in Jupyter) or printed."""
        path = self.path(name)
        text = path.read_text()
        try:
            from IPython.display import Markdown  # noqa: PLC0415 - only inside notebooks
        except ImportError:
            print(text)
            return None
        return Markdown(f"`{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}`\n```yaml\n{text}```")

    def static_address(self, last: int = 250) -> str:
        """An external address to ask a LoadBalancer for (the seed's static EIP): embedded clusters only.

        Real clusters need an address their load balancer controller can hand out; set it in the manifest.
        """
        if not self.embedded:
            raise LabkitError("on real clusters, reserve a static load-balancer address with your provider and "
                              "put it in the manifest (the seed used an AWS EIP allocation)")
        return str(self.emulator.addresses.load_balancer_network().network_address + last)

    def credentials(self) -> list[Any]:
        """Who holds a token for whose API (remote secrets found in each istio-system), and what it may read."""
        from labkit import viz  # noqa: PLC0415

        grants = []
        for holder in self.clusters:
            for secret in kube.list_objects(self.context(holder), "v1", "Secret", "istio-system",
                                            selector="istio/multiCluster=true"):
                for target in (secret.get("data") or {}):
                    role = kube.get_object(self.context(target), "rbac.authorization.k8s.io/v1", "ClusterRole",
                                           "istio-reader-clusterrole-istio-system") if target in self.handles \
                        else None
                    rules = [r for r in (role or {}).get("rules") or [] if "get" in r.get("verbs", [])]
                    # A learner's summary: the core resources by name, Istio's config groups as one entry.
                    core = sorted({r for rule in rules if "" in rule.get("apiGroups", [])
                                   for r in rule.get("resources") or []})
                    istio_config = any(g.endswith("istio.io") for rule in rules for g in rule.get("apiGroups", []))
                    resources = core + (["Istio config"] if istio_config else [])
                    grants.append(viz.Grant(holder, target, tuple(resources), "secrets" in resources))
        return grants

    # --- checking -----------------------------------------------------------------------------------------------

    def checkpoint(self, lesson: str, holds: bool, *, evidence: Any = None) -> None:
        """Assert a teaching point: print ``✅ <lesson>`` if it holds, raise :class:`CheckpointFailed` if not.

        Args:
            lesson: what the learner should now see to be true (printed verbatim: keep it fixed).
            holds: whether it is true, computed from what the lab measured.
            evidence: what was measured, shown when it does not hold.
        """
        if not holds:
            raise CheckpointFailed(f"❌ {lesson}: not true here.\nEvidence:\n{evidence}")
        print(f"✅ {lesson}")

    def cleanup(self) -> None:
        """Stop the embedded clusters (all state goes); on real clusters, delete what the lab made.

        On real clusters that is every namespace the lab created (labelled ``labkit.io/lab=<name>``), and the
        objects it applied elsewhere (``istio-system`` …) in this kernel; Istio itself stays installed.
        """
        if self.embedded:
            launching.down(self.dir)
            print(f"embedded clusters of lab {self.name} stopped")
            return
        for handle in self:
            namespaces = {(n.get("metadata") or {}).get("name", "")
                          for n in kube.list_objects(handle.context, "v1", "Namespace",
                                                     selector=f"{LAB_LABEL}={self.name}")}
            for item in reversed(self._applied[handle.name]):
                if item.namespace in namespaces or (item.kind == "Namespace" and item.name in namespaces):
                    continue  # goes with its namespace
                if item.kind == "Namespace" and item.name == ISTIO_NAMESPACE:
                    continue
                kube.delete_object(handle.context, item.api_version, item.kind, item.name, item.namespace)
            for namespace in sorted(namespaces - {ISTIO_NAMESPACE}):
                kube.delete_object(handle.context, "v1", "Namespace", namespace)
            self._applied[handle.name].clear()
        print("lab namespaces and objects deleted; Istio stays installed "
              "(remove it with `istioctl uninstall --purge`).")
