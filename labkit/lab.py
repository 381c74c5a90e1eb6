"""``Lab``: what a notebook cell touches. Every step of a lab is one short, re-runnable call.

A lab runs on real clusters when ``LABKIT_CONTEXTS`` (or ``contexts=``) names kubeconfig contexts, one per
lab cluster in order; otherwise on embedded clusters started for that lab (``labkit up`` with the lab's
cluster names, in a state folder of its own, reused if already running — so re-running the first cell is
safe). The kubeconfig is exported into the kernel's ``KUBECONFIG``, so ``!kubectl --context cluster1 …``
works in a cell as it does in a terminal.

Cells stay short because every method prints what a learner should see (kubectl-like lines, istioctl-like
tables) and returns a value to look at or to chart. Checkpoints (:meth:`Lab.checkpoint`) print one fixed
line when the lab's teaching point holds and raise :class:`~labkit.errors.CheckpointFailed` otherwise, so
CI running the notebook fails exactly when the lesson stops being true.
"""

from __future__ import annotations

import os
import string
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from labkit import istio, kube, traffic
from labkit.emulator import launching
from labkit.errors import CheckpointFailed, LabkitError, WaitTimeoutError

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


class Lab:
    """One lab's clusters and manifests.

    Args:
        name: the lab's name; its manifests live in ``manifests/<name>/``.
        clusters: the lab's cluster names (``cluster1`` …).
        contexts: real kubeconfig contexts to use instead of embedded clusters (one per cluster, in order);
            defaults to ``LABKIT_CONTEXTS`` (comma-separated).
        state_dir: where embedded clusters keep their state (default ``$LABKIT_HOME/labs/<name>``).
    """

    def __init__(self, name: str, clusters: Sequence[str] = ("cluster1", "cluster2", "cluster3"), *,
                 contexts: Sequence[str] | None = None, state_dir: Path | None = None):
        self.name = name
        self.clusters = list(clusters)
        self.manifests = MANIFESTS / name
        named = list(contexts) if contexts is not None else \
            [c for c in os.environ.get("LABKIT_CONTEXTS", "").split(",") if c.strip()]
        if named:
            if len(named) != len(self.clusters):
                raise LabkitError(f"lab {name} needs {len(self.clusters)} contexts ({', '.join(self.clusters)}), "
                                  f"got {len(named)}: {', '.join(named)}. Set LABKIT_CONTEXTS to one per cluster.")
            self.embedded = False
            self.contexts = dict(zip(self.clusters, named, strict=True))
            self.dir = Path(state_dir or launching.default_state_dir() / "labs" / name)
            self.dir.mkdir(parents=True, exist_ok=True)
            print(f"Lab {name} on real clusters: " + ", ".join(f"{c} → {x}" for c, x in self.contexts.items()))
            return
        self.embedded = True
        self.contexts = {cluster: cluster for cluster in self.clusters}
        self.dir = Path(state_dir or launching.default_state_dir() / "labs" / name)
        started = time.perf_counter()
        self.emulator = launching.up(self.clusters, self.dir)
        os.environ["KUBECONFIG"] = str(self.emulator.kubeconfig)
        print(f"Lab {name} on embedded clusters {', '.join(self.clusters)} "
              f"(ready in {time.perf_counter() - started:.1f} s)")
        print(f"export KUBECONFIG={self.emulator.kubeconfig}")

    def context(self, cluster: str) -> str:
        """The kubeconfig context of a lab cluster."""
        try:
            return self.contexts[cluster]
        except KeyError:
            raise LabkitError(f"lab {self.name} has no cluster {cluster!r}; its clusters are "
                              f"{', '.join(self.clusters)}") from None

    def path(self, name: str | Path) -> Path:
        """A manifest of this lab (``manifests/<lab>/<name>``), else a shared sample (``manifests/samples``)."""
        for candidate in (Path(name), self.manifests / name, MANIFESTS / "samples" / name):
            if candidate.is_file():
                return candidate
        raise LabkitError(f"no manifest {name!r} in {self.manifests} or {MANIFESTS / 'samples'}")

    # --- looking ------------------------------------------------------------------------------------------------

    def preflight(self) -> pd.DataFrame:
        """A table of every cluster: reachable, Kubernetes and Istio versions, ready pods. Raises with a remedy."""
        rows = [self._check(cluster) for cluster in self.clusters]
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
            return ClusterCheck(cluster, context, False, "-", "-", "-")
        pods = kube.list_objects(context, "v1", "Pod", None)
        ready = sum(1 for p in pods if any(c.get("type") == "Ready" and c.get("status") == "True"
                                           for c in (p.get("status") or {}).get("conditions") or []))
        istiod = kube.get_object(context, "apps/v1", "Deployment", "istiod", "istio-system")
        image = ((istiod or {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers") or
                 [{}])[0].get("image", "")
        return ClusterCheck(cluster, context, True, version, image.rsplit(":", 1)[-1] if image else "-",
                            f"{ready}/{len(pods)}")

    def get(self, cluster: str, resource: str, namespace: str | None = None, *, selector: str | None = None,
            wide: bool = False) -> None:
        """Print what ``kubectl get`` prints (``namespace="*"`` for all namespaces)."""
        print(kube.table(self.context(cluster), resource, namespace, selector=selector, wide=wide))

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

    # --- doing --------------------------------------------------------------------------------------------------

    def apply(self, cluster: str, manifest: str | Path | Sequence[Mapping[str, Any]], *,
              namespace: str | None = None, selector: str | None = None,
              values: Mapping[str, str] | None = None) -> kube.AppliedObjects:
        """Server-side apply a manifest (a file name of this lab, YAML text or objects); prints what changed.

        Args:
            cluster: the lab cluster.
            manifest: a file of this lab (or a shared sample), YAML text, or objects.
            namespace: the namespace for documents that name none.
            selector: apply only documents whose labels match (``kubectl apply -l``).
            values: ``${NAME}`` placeholders to fill in a file's text (an address known only at run time).
        """
        documents: Any = manifest
        if isinstance(manifest, str | Path) and "\n" not in str(manifest):
            documents = self.path(manifest)
            if values:
                documents = string.Template(documents.read_text()).substitute(values)
        applied = kube.apply(self.context(cluster), documents, namespace=namespace, selector=selector)
        print(applied)
        return applied

    def namespace(self, cluster: str, name: str, *, labels: Mapping[str, str] | None = None) -> None:
        """Create (or update) a namespace with labels, e.g. ``istio-injection=enabled``."""
        self.apply(cluster, [{"apiVersion": "v1", "kind": "Namespace",
                              "metadata": {"name": name, "labels": dict(labels or {})}}])

    def delete(self, cluster: str, manifest: str | Path) -> None:
        """Delete what a manifest of this lab describes (``kubectl delete -f``)."""
        print(kube.delete(self.context(cluster), self.path(manifest)))

    def install(self, cluster: str, manifest: str | Path) -> istio.InstallResult:
        """Install Istio from an IstioOperator of this lab (istioctl on real clusters)."""
        print(f"{cluster}:")
        return istio.install(self.context(cluster), self.path(manifest))

    def wait(self, cluster: str, namespace: str, targets: Sequence[str] | str, *, timeout: float = 180.0) -> None:
        """Wait for Deployments (``deploy/x``) to be rolled out and ready, with a progress bar.

        Raises:
            WaitTimeoutError: not all ready within ``timeout``; the message lists what is not, and why.
        """
        names = [targets] if isinstance(targets, str) else list(targets)
        context = self.context(cluster)
        started = time.perf_counter()
        deadline = time.monotonic() + timeout
        ready: set[str] = set()
        bar = _Progress(f"{cluster}: waiting for {', '.join(names)}")
        while True:
            reasons = {name: kube.not_ready(context, namespace, name) for name in names if name not in ready}
            ready |= {name for name, why in reasons.items() if not why}
            bar.update(len(ready), len(names), time.perf_counter() - started)
            if len(ready) == len(names):
                break
            if time.monotonic() > deadline:
                bar.close()
                lines = [line for why in reasons.values() for line in why]
                raise WaitTimeoutError(f"not ready after {timeout:.0f} s in {cluster}/{namespace}:\n"
                                       + "\n".join(f"  - {line}" for line in lines)
                                       + f"\nLook closer with: lab.get({cluster!r}, 'pods', {namespace!r})", lines)
            time.sleep(0.25)
        bar.close(f"✓ {cluster}: {', '.join(names)} ready ({time.perf_counter() - started:.1f} s)")

    def exec(self, cluster: str, source: str, command: Sequence[str], *, container: str | None = None) -> str:
        """Run a command in a pod (``"sample/deploy/sleep"``) and return its output (stdout then stderr)."""
        namespace, _, target = source.partition("/")
        result = kube.exec_(self.context(cluster), namespace, target, list(command), container=container)
        return result.stdout + result.stderr

    def call(self, cluster: str, source: str, url: str, *, n: int = 100) -> pd.DataFrame:
        """``n`` requests from ``source`` (``"sample/deploy/sleep"``) in one exec: one row per request."""
        return traffic.call(self.context(cluster), source, url, n, cluster=cluster)

    def call_until(self, cluster: str, source: str, url: str, done: Any, *, n: int = 30,
                   timeout: float = 60.0) -> bool:
        """Call in batches of ``n`` until ``done(calls)`` is true (config takes a moment to reach the proxies)."""
        deadline = time.monotonic() + timeout
        while True:
            if done(self.call(cluster, source, url, n=n)):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)

    def pods(self, cluster: str, namespace: str, selector: str | None = None) -> list[kube.Pod]:
        """The pods of a namespace (optionally selected by labels)."""
        return kube.pods(self.context(cluster), namespace, selector)

    def gateway_address(self, cluster: str, name: str = "istio-eastwestgateway") -> str:
        """The external address of a gateway's LoadBalancer Service (empty while ``<pending>``)."""
        service = kube.get_object(self.context(cluster), "v1", "Service", name, "istio-system") or {}
        ingress = (service.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
        return (ingress[0].get("ip") or ingress[0].get("hostname") or "") if ingress else ""

    def static_address(self, last: int = 250) -> str:
        """An external address to ask a LoadBalancer for (the seed's static EIP): embedded clusters only.

        Real clusters need an address their load balancer controller can hand out; set it in the manifest.
        """
        if not self.embedded:
            raise LabkitError("on real clusters, reserve a static load-balancer address with your provider and "
                              "put it in the manifest (the seed used an AWS EIP allocation)")
        return str(self.emulator.addresses.load_balancer_network().network_address + last)

    def capture(self, cluster: str, target: str, *, seconds: float = 3.0,
                during: Callable[[], Any] | None = None) -> traffic.Capture:
        """What crosses a Service's load balancer (``"istio-system/svc/cluster-load-balancer"``) while
        ``during()`` runs, shown as ngrep shows it."""
        return traffic.capture(self.context(cluster), target, seconds=seconds, during=during)

    def endpoints(self, cluster: str, workload: str, *, envoy_cluster: str | None = None) -> istio.EndpointTable:
        """``istioctl proxy-config endpoints <workload> [--cluster …]``."""
        return istio.proxy_endpoints(self.context(cluster), workload, cluster=envoy_cluster)

    def remote_clusters(self, cluster: str, *, expect: Sequence[str] = (), timeout: float = 60.0) -> list[Any]:
        """``istioctl remote-clusters``, after waiting until every cluster in ``expect`` is ``synced``."""
        deadline = time.monotonic() + timeout
        while True:
            rows = istio.remote_clusters(self.context(cluster), quiet=True)
            synced = {row.name for row in rows if row.status == "synced"}
            if set(expect) <= synced or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        istio.remote_clusters(self.context(cluster))
        return rows

    def expected_shares(self, cluster: str, *, workload: str = "deploy/sleep.sample", service: str = "helloworld",
                        namespace: str = "sample", port: int = 5000, by: str = "instance") -> dict[str, float]:
        """What share of ``cluster``'s calls each instance (or version) should get, from its sidecar's endpoint
        weights: a local pod stands for itself, a remote gateway for every instance of its cluster."""
        leads_to: dict[str, list[str]] = {}
        for name in self.clusters:
            context = self.context(name)
            keys = []
            for pod in kube.pods(context, namespace, f"app={service}"):
                key = pod.name if by == "instance" else pod.labels.get("version", pod.name)
                leads_to[f"{pod.ip}:{port}"] = [key]
                keys.append(key)
            gateway = self.gateway_address(name)
            if gateway:
                leads_to[f"{gateway}:15443"] = keys
        table = istio.proxy_endpoints(self.context(cluster), workload,
                                      cluster=f"outbound|{port}||{service}.{namespace}.svc.cluster.local")
        return traffic.expected_shares(table, leads_to)

    def topology(self, calls: pd.DataFrame, source: str, *, service: str = "helloworld",
                 namespace: str = "sample") -> Any:
        """The path of ``source``'s calls: its client, the local pods, the remote gateways and pods behind them,
        each edge labelled with the measured share (all hops mutual TLS)."""
        from labkit import viz  # noqa: PLC0415 - matplotlib only when a picture is asked for

        clusters, pods, gateways = [], {}, {}
        for name in self.clusters:
            context = self.context(name)
            system = kube.get_object(context, "v1", "Namespace", "istio-system") or {}
            network = (system.get("metadata", {}).get("labels") or {}).get("topology.istio.io/network", "")
            clusters.append(viz.Cluster(name, network))
            for pod in kube.pods(context, namespace, f"app={service}"):
                pods[pod.name] = viz.Workload(name, namespace, pod.name, pod.labels.get("version", ""), "pod")
            if name != source:
                gateways[name] = viz.Workload(name, "istio-system", "istio-eastwestgateway", kind="gateway")
        client = viz.Workload(source, namespace, "sleep", kind="client")
        mine = calls[calls["source"] == source]
        shares = mine["instance"].value_counts(normalize=True) if len(mine) else pd.Series(dtype=float)
        edges = []
        for instance, share in shares.items():
            pod = pods.get(str(instance))
            if pod is None:
                continue
            if pod.cluster == source:
                edges.append(viz.Edge(client, pod, float(share), mtls=True))
            else:
                gateway = gateways[pod.cluster]
                edges.append(viz.Edge(client, gateway, float(share), mtls=True, label=":15443"))
                edges.append(viz.Edge(gateway, pod, float(share), mtls=True))
        return viz.Topology(clusters, [client, *pods.values(), *gateways.values()], edges)

    def credentials(self) -> list[Any]:
        """Who holds a token for whose API (remote secrets found in each istio-system), and what it may read."""
        from labkit import viz  # noqa: PLC0415

        grants = []
        for holder in self.clusters:
            for secret in kube.list_objects(self.context(holder), "v1", "Secret", "istio-system",
                                            selector="istio/multiCluster=true"):
                for target in (secret.get("data") or {}):
                    role = kube.get_object(self.context(target), "rbac.authorization.k8s.io/v1", "ClusterRole",
                                           "istio-reader-clusterrole-istio-system") if target in self.contexts \
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
        """Stop the embedded clusters (all state goes); on real clusters, delete the lab's workload namespaces."""
        if self.embedded:
            launching.down(self.dir)
            print(f"embedded clusters of lab {self.name} stopped")
            return
        for cluster in self.clusters:
            for namespace in ("sample",):
                kube.delete_object(self.context(cluster), "v1", "Namespace", namespace)
        print("lab namespaces deleted; Istio stays installed (remove it with `istioctl uninstall --purge`).")


class _Progress:
    """One line that updates in place: a display handle in Jupyter, a carriage return in a terminal."""

    def __init__(self, label: str):
        self.label = label
        try:
            from IPython import get_ipython  # noqa: PLC0415 - only inside notebooks
            from IPython.display import display  # noqa: PLC0415
        except ImportError:
            get_ipython = None
        self._handle = display("", display_id=True) if get_ipython is not None and get_ipython() else None
        self._last = ""

    def update(self, done: int, total: int, seconds: float) -> None:
        filled = round(20 * done / total) if total else 20
        line = f"{self.label}  [{'█' * filled}{'░' * (20 - filled)}] {done}/{total}  {seconds:.0f} s"
        if line == self._last:
            return
        self._last = line
        if self._handle is not None:
            self._handle.update({"text/plain": line}, raw=True)
        else:
            print("\r" + line, end="", flush=True)

    def close(self, final: str = "") -> None:
        if self._handle is not None:
            self._handle.update({"text/plain": final or self._last}, raw=True)
        else:
            print("\r" + (final or self._last))
