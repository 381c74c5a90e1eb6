"""One lab cluster as a notebook sees it: ``cluster1 = lab["cluster1"]`` (or ``lab.cluster1``), then
``cluster1.apply(…)``, ``cluster1.wait(…)``, ``cluster1.call(…)``, ``cluster1.install(…)``.

A cell should read like the kubectl or istioctl line it stands for, and those name their cluster once
(``--context``). So each cluster of a lab is a handle bound to its :class:`~labkit.kube.Context` (context name
*and* kubeconfig): every operation below passes that value down to :mod:`labkit.kube`, :mod:`labkit.istio`
and :mod:`labkit.traffic`, and no cell ever hands a context or a kubeconfig to a function by hand.

Operations print what a learner should see (kubectl's lines, istioctl's tables) and return a value to look
at or to chart. What spans clusters (preflight, credentials, checkpoints, cleanup) stays on the
:class:`~labkit.lab.Lab`; what only one lab needs (its shares, its pictures) lives in :mod:`labkit.labs`.
"""

from __future__ import annotations

import contextlib
import re
import string
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from labkit import istio, kube, traffic
from labkit.errors import WaitTimeoutError

LAB_LABEL = "labkit.io/lab"
"""Namespaces a lab creates carry its name here, so its cleanup finds them again after a kernel restart."""
ISTIO_NAMESPACE = "istio-system"
NETWORK_LABEL = "topology.istio.io/network"

Manifest = str | Path | Sequence[Mapping[str, Any]]
LINE_WIDTH = 100
"""What a printed line may take: a notebook's text output shows about 100 columns before wrapping."""


def fit_table(text: str, width: int = LINE_WIDTH) -> str:
    """A kubectl-style table (columns three spaces apart) cut to ``width`` columns, saying what it cut.

    The first column (the names) is never cut; the widest other column is shortened first, its cells ending in
    ``…``, until the table fits or no column can shrink below its header.

    Args:
        text: the table, header first.
        width: the widest line wanted.
    """
    lines = text.splitlines()
    if not lines or max(len(line) for line in lines) <= width:
        return text
    starts = [0] + [match.end() for match in re.finditer(r"\s{2,}", lines[0].rstrip())]
    rows = [[line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)] for line in lines]
    sizes = [max(len(row[i]) for row in rows) for i in range(len(starts))]
    cut: set[int] = set()
    while sum(sizes) + 3 * (len(sizes) - 1) > width:
        index = max(range(1, len(sizes)), key=lambda i: sizes[i] - len(rows[0][i]), default=0)
        if index == 0 or sizes[index] <= max(len(rows[0][index]), 4):
            break
        sizes[index] = max(len(rows[0][index]), 4, sizes[index] - (sum(sizes) + 3 * (len(sizes) - 1) - width))
        cut.add(index)

    def cell(value: str, size: int) -> str:
        return value if len(value) <= size else value[:size - 1] + "…"

    out = ["   ".join(cell(v, n).ljust(n) for v, n in zip(row, sizes, strict=True)).rstrip() for row in rows]
    names = ", ".join(rows[0][i] for i in sorted(cut))
    return "\n".join(out) + (f"\n({names} cut to fit {width} columns)" if cut else "")


class Applied(kube.AppliedObjects):
    """What :meth:`Cluster.apply` touched. It was printed already (one line), so a cell ending with it shows
    nothing more; ``print(applied)`` still gives kubectl's lines, one per object."""

    def _ipython_display_(self) -> None:
        return None


def summary_line(cluster: str, applied: Sequence[kube.AppliedObject], *, width: int = LINE_WIDTH) -> str:
    """One line for an apply, prefixed with its cluster, fitting ``width`` columns or saying how many it leaves out.

    ``cluster1: service/helloworld created``; for several objects, grouped by what happened:
    ``cluster1: created serviceaccount/sleep, service/sleep, deployment.apps/sleep``.

    Args:
        cluster: the cluster's name.
        applied: what one apply (or delete) touched.
        width: the longest line wanted.
    """
    if not applied:
        return f"{cluster}: nothing to apply"
    if len(applied) == 1:
        return f"{cluster}: {applied[0]}"
    by_action: dict[str, list[str]] = {}
    for item in applied:
        by_action.setdefault(item.action + (" (server dry run)" if item.dry_run else ""), []).append(
            f"{item.resource}/{item.name}")
    groups = list(by_action.items())
    shown = [list(names) for _, names in groups]
    total = len(applied)

    def render() -> str:
        parts = []
        for (action, _), names in zip(groups, shown, strict=True):
            if names:
                parts.append(f"{action} {', '.join(names)}")
        left = total - sum(len(names) for names in shown)
        more = f" … and {left} more" if left else ""
        counts = " + ".join(f"{len(names)} {action}" for action, names in groups)
        return f"{cluster}: {'; '.join(parts)}{more}" if not left else \
            f"{cluster} ({counts}): {'; '.join(parts)}{more}"

    line = render()
    while len(line) > width and any(len(names) > 1 for names in shown):
        longest = max(shown, key=len)
        longest.pop()
        line = render()
    return line



class Cluster:
    """A lab cluster, bound to its kubeconfig context.

    Made by :class:`~labkit.lab.Lab` (``lab["cluster1"]``), not by hand.

    Args:
        name: the lab's name for the cluster (``cluster1``).
        context: the context (and kubeconfig) reaching it.
        lab: the lab's name, written on the namespaces it creates.
        path: finds a manifest of the lab by file name.
        applied: called with every manifest applied, so the lab can delete it at cleanup.
    """

    def __init__(self, name: kube.ClusterName, context: kube.Context, *, lab: str = "",
                 path: Callable[[str | Path], Path] = Path,
                 applied: Callable[[Cluster, kube.AppliedObjects], None] | None = None):
        self.name = name
        self.context = context
        self.lab = lab
        self._path = path
        self._applied = applied

    def __repr__(self) -> str:
        return f"<cluster {self.name} (context {self.context.name})>"

    def __str__(self) -> str:
        return self.name

    # --- Kubernetes ---------------------------------------------------------------------------------------------

    def apply(self, manifest: Manifest, *, namespace: str | None = None, selector: str | None = None,
              values: Mapping[str, str] | None = None, quiet: bool = False) -> Applied:
        """Server-side apply a manifest (a file name of this lab, YAML text or objects); prints what changed.

        What changed is printed as one line prefixed with the cluster (:func:`summary_line`); the returned
        objects show nothing more in a notebook (``print()`` them for kubectl's line per object).

        Args:
            manifest: a file of this lab (or a shared sample), YAML text, or objects.
            namespace: the namespace for documents that name none.
            selector: apply only documents whose labels match (``kubectl apply -l``).
            values: ``${NAME}`` placeholders to fill in a file's text (an address known only at run time).
            quiet: print nothing.
        """
        documents: Any = manifest
        if isinstance(manifest, str | Path) and "\n" not in str(manifest):
            documents = self._path(manifest)
            if values:
                documents = string.Template(documents.read_text()).substitute(values)
        applied = Applied(kube.apply(self.context, documents, namespace=namespace, selector=selector))
        if self._applied is not None:
            self._applied(self, applied)
        if not quiet:
            print(summary_line(self.name, applied))
        return applied

    def delete(self, manifest: str | Path, *, selector: str | None = None) -> Applied:
        """Delete what a manifest of this lab describes (``kubectl delete -f [-l selector]``); prints what went,
        in one line."""
        deleted = Applied(kube.delete(self.context, self._path(manifest), selector=selector))
        print(summary_line(self.name, deleted) if deleted else f"{self.name}: nothing to delete")
        return deleted

    def scale(self, target: str, replicas: int) -> None:
        """``kubectl scale -n <ns> deploy/<name> --replicas N`` for ``"helloworld/deploy/helloworld-v1"``."""
        where = traffic.Source.parse(target)
        kube.scale(self.context, where.namespace, where.target, replicas)
        print(f"{self.name}: {where.target.replace('deploy/', 'deployment.apps/')} scaled")

    def restart(self, namespace: str, selector: str, *, timeout: float = 120.0) -> list[str]:
        """Replace a workload's pods (``kubectl delete pod -l …``; its controller makes new ones) and wait until
        the new ones are ready: they start from what the mesh holds now (certificates, trust, network), which
        running pods keep for their existing connections. The new pods' names.

        Args:
            namespace: their namespace.
            selector: their labels (``app=sleep``).
            timeout: seconds to wait for the new pods.
        """
        old = {pod.name for pod in self.pods(namespace, selector)}
        for name in old:
            kube.delete_object(self.context, "v1", "Pod", name, namespace)

        def replaced() -> list[str] | None:
            pods = self.pods(namespace, selector)
            fresh = [p.name for p in pods if p.name not in old and p.ready]
            return fresh if fresh and len(pods) == len(fresh) else None

        return kube.poll(replaced, timeout=timeout, what=f"new pods {selector} in {self.name}/{namespace}")

    def namespace(self, name: str, *, labels: Mapping[str, str] | None = None) -> None:
        """Create (or update) a namespace with labels, e.g. ``istio-injection=enabled``."""
        marked = {**(labels or {}), **({LAB_LABEL: self.lab} if self.lab else {})}
        self.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": marked}}])

    def get(self, resource: str, namespace: str | None = None, *, selector: str | None = None,
            wide: bool = False) -> None:
        """Print what ``kubectl get`` prints (``namespace="*"`` for all namespaces), cut to fit a notebook.

        A table wider than :data:`LINE_WIDTH` would wrap in the notebook and become unreadable; its widest
        columns are shortened with ``…`` and a last line says which (see :func:`fit_table`).
        """
        print(fit_table(kube.table(self.context, resource, namespace, selector=selector, wide=wide)))

    def object(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """One object as the server sends it, or None when it does not exist."""
        return kube.get_object(self.context, api_version, kind, name, namespace)

    def list(self, api_version: str, kind: str, namespace: str | None = None, *,
             selector: str | None = None) -> list[dict[str, Any]]:
        """Objects of a kind as the server sends them (every namespace when ``namespace`` is None)."""
        return kube.list_objects(self.context, api_version, kind, namespace, selector=selector)

    def pods(self, namespace: str, selector: str | None = None) -> list[kube.Pod]:
        """The pods of a namespace (optionally selected by labels)."""
        return kube.pods(self.context, namespace, selector)

    def wait(self, namespace: str, targets: Sequence[str] | str, *, timeout: float = 180.0) -> None:
        """Wait for workloads (``deploy/x``) to be rolled out and ready, with a progress bar.

        Raises:
            WaitTimeoutError: not all ready within ``timeout``; the message lists what is not, and why.
        """
        names = [targets] if isinstance(targets, str) else list(targets)
        started = time.perf_counter()
        with tqdm(total=len(names), desc=f"{self.name}: waiting for {', '.join(names)}", unit="workload",
                  bar_format="{desc}  {bar:20} {n_fmt}/{total_fmt}  {elapsed}", leave=False) as bar:
            def progress(ready: int, total: int) -> None:
                bar.update(ready - bar.n)
                if ready == total:
                    bar.refresh()  # tqdm skips redraws within its min interval; the full bar must show

            try:
                kube.wait_ready(self.context, namespace, names, timeout=timeout, progress=progress)
            except WaitTimeoutError as exc:
                # The cluster's own explanation too (``FailedCreate … failed calling webhook``), as kube.wait_ready
                # gives it.
                warnings = [e.line() for e in kube.warnings_about(self.context, namespace,
                                                                  [n.rpartition("/")[2] for n in names])]
                lines = "\n".join(f"  - {line}" for line in [*exc.not_ready, *warnings])
                raise WaitTimeoutError(f"not ready after {timeout:.0f} s in {self.name}/{namespace}:\n{lines}\n"
                                       f"Look closer with: lab[{self.name!r}].get('pods', {namespace!r})",
                                       exc.not_ready) from None
        print(f"✓ {self.name}: {', '.join(names)} ready ({time.perf_counter() - started:.1f} s)")

    def exec(self, source: str, command: Sequence[str], *, container: str | None = None,
             stdin: str | None = None) -> str:
        """Run a command in a pod (``"sample/deploy/sleep"``) and return its output (stdout then stderr).

        Args:
            source: ``namespace/pod`` or ``namespace/deploy/name``.
            command: the argv.
            container: the container; the pod's default one otherwise.
            stdin: text for the command's standard input (``kubectl exec -i … <<< "$text"``).
        """
        where = traffic.Source.parse(source)
        result = kube.exec_(self.context, where.namespace, where.target, list(command), container=container,
                            stdin=stdin)
        return result.stdout + result.stderr

    def logs(self, target: str, *, container: str | None = None, tail: int | None = 200,
             grep: str | None = None, wait: float = 0.0) -> str:
        """A container's log, as ``kubectl logs -n <ns> deploy/x | grep …`` prints it.

        Args:
            target: ``namespace/pod`` or ``namespace/deploy/name`` (``"istio-system/deploy/istio-ingressgateway"``).
            container: the container; the pod's first by default.
            tail: only the last lines.
            grep: keep only lines containing this text.
            wait: seconds to keep looking until a line matches (Envoy writes its access log file in batches, so a
                line for a call just made may not be there yet); empty if none appears by then.
        """
        where = traffic.Source.parse(target)

        def matching() -> str:
            text = kube.logs(self.context, where.namespace, where.target, container=container, tail=tail)
            return "\n".join(line for line in text.splitlines() if grep is None or grep in line)

        if wait <= 0:
            return matching()
        try:
            return kube.poll(matching, timeout=wait, what=f"a log line of {target}", interval=0.25, max_interval=1.0)
        except WaitTimeoutError:
            return ""

    def gateway_address(self, name: str = "istio-eastwestgateway", namespace: str = ISTIO_NAMESPACE) -> str:
        """The external address of a gateway's LoadBalancer Service (empty while ``<pending>``)."""
        service = kube.get_object(self.context, "v1", "Service", name, namespace) or {}
        ingress = (service.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
        return (ingress[0].get("ip") or ingress[0].get("hostname") or "") if ingress else ""

    @property
    def network(self) -> str:
        """The Istio network of the cluster (the label on ``istio-system``); empty when it has none."""
        system = kube.get_object(self.context, "v1", "Namespace", ISTIO_NAMESPACE) or {}
        return ((system.get("metadata") or {}).get("labels") or {}).get(NETWORK_LABEL, "")

    # --- traffic ------------------------------------------------------------------------------------------------

    def call(self, source: str, url: str, *, n: int = 100) -> pd.DataFrame:
        """``n`` requests from ``source`` (``"sample/deploy/sleep"``) in one exec: one row per request."""
        return traffic.call(self.context, source, url, n, cluster=self.name)

    def call_until(self, source: str, url: str, done: Callable[[pd.DataFrame], bool], *, n: int = 30,
                   timeout: float = 60.0) -> bool:
        """Call in batches of ``n`` until ``done(calls)`` is true (config takes a moment to reach the proxies);
        whether it became true within ``timeout``."""
        try:
            kube.poll(lambda: done(self.call(source, url, n=n)), timeout=timeout, what=f"calls from {source}",
                      interval=0.5, max_interval=0.5)
        except WaitTimeoutError:
            return False
        return True

    def capture(self, target: str, *, seconds: float = 3.0,
                during: Callable[[], Any] | None = None) -> traffic.Capture:
        """What crosses a Service's load balancer (``"istio-system/svc/cluster-load-balancer"``) while
        ``during()`` runs, shown as ngrep shows it."""
        return traffic.capture(self.context, target, seconds=seconds, during=during)

    # --- Istio --------------------------------------------------------------------------------------------------

    def install(self, manifest: str | Path, *, values: Mapping[str, str] | None = None,
                quiet: bool = False) -> istio.InstallResult:
        """Install Istio from an IstioOperator of this lab (istioctl on real clusters).

        Args:
            manifest: an IstioOperator file of this lab.
            values: ``${NAME}`` placeholders to fill in its text (the primary's gateway address for a remote).
            quiet: print nothing.
        """
        if not quiet:
            print(f"{self.name}:")
        path = self._path(manifest)
        source: Path | str = string.Template(path.read_text()).substitute(values) if values else path
        return istio.install(self.context, source, quiet=quiet)

    def plug_in_ca(self, folder: Path, *, network: str | None = None) -> None:
        """Create ``istio-system`` (labelled with ``network``) and its ``cacerts`` Secret from a cacerts folder."""
        istio.plug_in_ca(self.context, folder, network)

    def create_remote_secret(self, name: str | None = None) -> dict[str, Any]:
        """``istioctl create-remote-secret --name <name>``: the Secret that lets other istiods read this cluster.

        Args:
            name: the cluster's name in the mesh; this cluster's lab name by default.
        """
        return istio.create_remote_secret(self.context, name or self.name)

    def apply_remote_secret(self, secret: Mapping[str, Any]) -> kube.AppliedObjects:
        """Apply another cluster's remote secret here: this cluster's istiod starts reading that cluster."""
        return istio.apply_remote_secret(dict(secret), self.context)

    def delete_remote_secret(self, cluster: str) -> None:
        """Remove the remote secret for ``cluster``: this cluster's istiod stops reading it."""
        istio.delete_remote_secret(self.context, cluster)

    def remote_clusters(self, *, expect: Sequence[str] = (), timeout: float = 60.0,
                        quiet: bool = False) -> list[istio.RemoteCluster]:
        """``istioctl remote-clusters``, after waiting until every cluster in ``expect`` is ``synced``.

        Args:
            expect: clusters to wait for (a remote secret takes a moment to be read).
            timeout: seconds to wait for them; the table is printed either way.
            quiet: return the rows without printing them.
        """
        def synced() -> bool:
            rows = istio.remote_clusters(self.context, quiet=True)
            return set(expect) <= {row.name for row in rows if row.status == "synced"}

        if expect:
            # On a timeout the table shows which are not synced: that is the lesson when it happens.
            with contextlib.suppress(WaitTimeoutError):
                kube.poll(synced, timeout=timeout, what=f"{', '.join(expect)} synced", interval=0.25,
                          max_interval=0.5)
        return istio.remote_clusters(self.context, quiet=quiet)

    def proxy_status(self, *, quiet: bool = False) -> list[istio.ProxyStatus]:
        """``istioctl proxy-status``: each proxy's CDS/LDS/EDS/RDS/ECDS state as its istiod sees it (printed too)."""
        return istio.proxy_status(self.context, quiet=quiet)

    def endpoints(self, workload: str, *, envoy_cluster: str | None = None, rows: int | None = None,
                  timeout: float = 30.0) -> istio.EndpointTable:
        """``istioctl proxy-config endpoints <workload> [--cluster …]`` (``deploy/sleep.sample``).

        Args:
            workload: the proxy, ``deploy/sleep.sample`` or ``<pod>.<namespace>``.
            envoy_cluster: only this Envoy cluster (``outbound|5000||helloworld.sample.svc.cluster.local``).
            rows: wait until the table has this many rows (configuration takes a moment to reach a proxy: istiod
                discovers, pushes, Envoy applies); ``None`` shows what the proxy holds now.
            timeout: seconds to wait for ``rows``.

        Raises:
            WaitTimeoutError: ``rows`` not reached in time; the message shows the last table.
        """
        if rows is None:
            return istio.proxy_endpoints(self.context, workload, cluster=envoy_cluster)

        def listed() -> istio.EndpointTable | None:
            table = istio.proxy_endpoints(self.context, workload, cluster=envoy_cluster)
            attempts.append(table)
            return table if len(table.rows) == rows else None

        attempts: list[istio.EndpointTable] = []
        return kube.poll(listed, timeout=timeout, what=f"{rows} endpoints in {workload}'s proxy on {self.name}",
                         explain=lambda _: str(attempts[-1]).splitlines() if attempts else [])

    def access_log(self, workload: str, *, tail: int = 200) -> list[istio.AccessLogEntry]:
        """The recent requests of a workload's sidecar (``deploy/sleep.sample``), as Envoy logged them."""
        return istio.proxy_access_log(self.context, workload, tail=tail)
