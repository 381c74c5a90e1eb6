"""``labkit.diagnose(lab, source, url)``: the expert's checklist for one failing call, and a verdict.

When a cross-cluster call fails, an Istio expert asks the same questions in the same order, each with one
command, on real and embedded clusters alike:

1. does the name resolve in the caller's pod (``kubectl exec … -- nslookup``)? A service that exists only in
   another cluster has no DNS record here unless the Service exists here too or Istio's DNS proxy answers;
2. which endpoints does the caller's sidecar hold (``istioctl proxy-config endpoints``), and what are they: a
   pod of its own network, another network's east-west gateway on ``:15443`` — or another network's *pod IP*,
   which the sidecar cannot reach (the network label is missing or wrong);
3. does the caller's istiod read every cluster (``istioctl remote-clusters``: ``synced``, or ``timeout`` when a
   remote secret names a server it cannot reach), and is the proxy in step with it (``istioctl proxy-status``)?
4. does every east-west gateway have an external address (``EXTERNAL-IP <pending>`` otherwise)? Is istiod
   running, and do the Events say that pods are refused (``FailedCreate … failed calling webhook``)? Calls may
   still work then — proxies keep their last configuration — while no new pod can start;
5. what did the caller's sidecar log for the call (response flags such as ``UF``, ``URX``, ``NR``; the TLS reason
   ``CERTIFICATE_VERIFY_FAILED`` when the two sides trust different roots, ``Connection_reset_by_peer`` when the
   gateway it dialled closed the connection), and what did that gateway log (``NR filter_chain_not_found``: no
   server of its Gateway covers the SNI the sidecar sent)?
6. what do the caller's DestinationRules for the service say: ``tls.mode: DISABLE`` (plaintext cannot cross an
   east-west gateway, so istiod drops the other networks' endpoints), or locality load balancing without the
   ``outlierDetection`` Istio needs to apply it?

The work is split the way the expert splits it: :func:`gather` runs the commands and keeps what they said as an
:class:`Evidence` value; :func:`decide` is pure, turning evidence into a :class:`Diagnosis` that names the most
likely cause and quotes the lines that point at it. Tests feed :func:`decide` evidence recorded from broken
meshes, without any cluster.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from labkit import istio, kube, traffic
from labkit.errors import LabkitError, WaitTimeoutError
from labkit.labs import multi_primary

if TYPE_CHECKING:
    from labkit.cluster import Cluster
    from labkit.lab import Lab

__all__ = ["Diagnosis", "Endpoint", "Evidence", "LoggedCall", "decide", "diagnose", "gather"]

# The causes a diagnosis can name, one per failure of istio.md's "What users get wrong" that evidence can show.
NO_FAULT = "no fault found"
NOT_RESOLVABLE = "name not resolvable (remote-only service without the DNS proxy)"
TWO_ROOTS = "the clusters trust different roots"
NETWORK_LABEL = "missing network label (sidecar dials another network's pod IPs)"
REMOTE_UNREACHABLE = "remote secret with an unreachable API server"
PROXY_NOT_SYNCED = "the proxy is not in step with istiod"
ISTIOD_DOWN = "no istiod runs in the caller's cluster"
GATEWAY_PENDING = "an east-west gateway has no external address"
GATEWAY_NOT_EXPOSING = "the east-west gateway does not expose the service (expose-services missing or wrong hosts)"
NO_ENDPOINTS = "the sidecar has no endpoint for the service"
PLAINTEXT = "a plaintext (DISABLE) DestinationRule across networks: the other networks' endpoints are dropped"
LOCALITY_OFF = "locality load balancing is off: the DestinationRule has no outlierDetection"
INJECTION_WEBHOOK = "the sidecar-injection webhook cannot be called: new pods are refused"
UPSTREAM_FAILURE = "calls fail upstream"

_TLS_VERIFY = re.compile(r"CERTIFICATE_VERIFY_FAILED|TLSV1_ALERT_UNKNOWN_CA|unknown_ca|verify_cert_failed", re.I)
_RESET = re.compile(r"Connection_reset_by_peer|connection_termination|reset by peer", re.I)
_TIMEOUT = re.compile(r"timeout|timed_out|timed out", re.I)


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of the caller's sidecar for the called service, and what it is.

    Args:
        address: ``ip:port`` as Envoy lists it.
        status: Envoy's health status (``HEALTHY`` …).
        kind: ``local`` (a pod of the caller's network), ``gateway`` (a network's east-west gateway),
            ``remote-pod`` (a pod of another network, dialled directly) or ``unknown``.
        where: the cluster (and network) it belongs to, when known.
    """

    address: str
    status: str = "HEALTHY"
    kind: str = "unknown"
    where: str = ""

    def line(self) -> str:
        """``127.0.200.4:15443  HEALTHY  gateway of network2``, one line."""
        what = {"local": "pod of its own network", "gateway": "east-west gateway",
                "remote-pod": "pod IP of another network", "unknown": "unknown address"}[self.kind]
        return f"{self.address}  {self.status}  {what}{f' ({self.where})' if self.where else ''}"


@dataclass(frozen=True)
class LoggedCall:
    """One request of the caller's sidecar access log for the called host.

    Args:
        code: the response code (0 when none was sent).
        flags: Envoy's response flags (``-``, ``UF``, ``URX,UF`` …).
        details: the response code details.
        transport_failure: the upstream transport failure reason (the TLS error), empty when none.
        upstream_host: the endpoint the request went to, empty when none.
    """

    code: int
    flags: str = "-"
    details: str = ""
    transport_failure: str = ""
    upstream_host: str = ""

    def line(self) -> str:
        # Envoy repeats the TLS reason inside the details of a reset; say it once.
        reason = f" {self.transport_failure}" if self.transport_failure and \
            self.transport_failure not in self.details else ""
        host = f" → {self.upstream_host}" if self.upstream_host else ""
        return f"{self.code} {self.flags} {self.details}{reason}{host}"


@dataclass(frozen=True)
class Evidence:
    """What the checklist's commands said about one call (every field recorded as text or plain values).

    Args:
        cluster: the calling cluster.
        source: the calling workload (``sample/deploy/sleep``).
        url: the URL called.
        resolved: whether the host resolved in the caller's pod (``nslookup``).
        lookup: what ``nslookup`` printed.
        statuses: the status of each call of a small batch (0: curl got no HTTP answer).
        errors: curl's distinct error lines of that batch.
        answered_by: the distinct instances (pod names) that answered 200.
        endpoints: the caller's sidecar endpoints for the service.
        remote_clusters: cluster name → sync status, as the caller's istiod reports them.
        proxy_synced: whether ``proxy-status`` shows the caller's proxy SYNCED (None: not listed).
        pending_gateways: ``cluster namespace/name`` of each network gateway Service with no external address.
        clusters: every cluster of the lab (to tell which are missing from the answers).
        log: the access log's last entries for the host, oldest first.
        gateway_log: the ``NR`` lines of the east-west gateways the failed calls went to.
        istiod_running: whether the caller's cluster has a running istiod.
        plaintext_rules: the caller's cluster's DestinationRules that disable TLS for the service's port.
        elsewhere: ``cluster network`` of every other network running pods of the service.
        locality_rules: the caller's cluster's DestinationRules for the service that set locality load balancing
            without outlierDetection (which Istio then ignores).
        warnings: recent Warning Events of the service's namespace, in any cluster (``cluster: line``).
    """

    cluster: str
    source: str
    url: str
    resolved: bool = True
    lookup: str = ""
    statuses: tuple[int, ...] = ()
    errors: tuple[str, ...] = ()
    answered_by: tuple[str, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    remote_clusters: tuple[tuple[str, str], ...] = ()
    proxy_synced: bool | None = True
    pending_gateways: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    log: tuple[LoggedCall, ...] = ()
    gateway_log: tuple[str, ...] = ()
    istiod_running: bool = True
    warnings: tuple[str, ...] = ()
    plaintext_rules: tuple[str, ...] = ()
    elsewhere: tuple[str, ...] = ()
    locality_rules: tuple[str, ...] = ()

    @property
    def failed(self) -> int:
        """How many calls of the batch did not answer 200."""
        return sum(1 for status in self.statuses if status != 200)


@dataclass(frozen=True)
class Diagnosis:
    """The verdict: the most likely cause, the lines of evidence that point at it, and what to do.

    Printed (or shown as a cell's result) it reads as an expert's note: one verdict line, the evidence, the fix.

    Args:
        cause: one of this module's causes (``NO_FAULT``, ``TWO_ROOTS`` …).
        evidence: the lines that support it.
        fix: what to do about it (empty when nothing is wrong).
        facts: everything the checklist gathered.
    """

    cause: str
    evidence: tuple[str, ...] = ()
    fix: str = ""
    facts: Evidence | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong."""
        return self.cause == NO_FAULT

    def __str__(self) -> str:
        head = ("✓ " if self.ok else "✗ ") + f"verdict: {self.cause}"
        lines = [head, *(f"  - {line}" for line in self.evidence)]
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)

    def _repr_pretty_(self, printer: object, cycle: bool) -> None:
        printer.text(str(self))  # type: ignore[attr-defined]


def decide(evidence: Evidence) -> Diagnosis:
    """The most likely cause of what ``evidence`` shows, in the order an expert rules causes out.

    A name that does not resolve stops the call before the mesh sees it, so it comes first; then what the
    sidecar's own log says about the TLS handshake; then endpoints that cannot be right (another network's pod
    IPs, behind a pending gateway or an unlabelled network), or missing for a reason written in the config (a
    plaintext DestinationRule); then a gateway that resets the connection; then the control plane (refused pods,
    istiod, remote clusters, proxy sync) and the gateways' addresses; and, when every call succeeds, a
    DestinationRule that does not do what it says (locality without outlierDetection).

    Args:
        evidence: what :func:`gather` (or a recording) found.
    """
    e = evidence
    host = urlsplit(e.url).hostname or e.url
    calls = f"{e.failed} of {len(e.statuses)} calls failed" if e.statuses else "no calls made"
    codes = ", ".join(f"{code} ×{e.statuses.count(code)}" for code in sorted(set(e.statuses)))
    answered = f"answered by: {', '.join(e.answered_by)}" if e.answered_by else f"status codes: {codes or 'none'}"

    if not e.resolved or any("resolve host" in error for error in e.errors):
        lines = [f"curl in {e.cluster}: {error}" for error in e.errors if "resolve host" in error]
        lines += [f"nslookup {host} in {e.cluster}: " + (_last_line(e.lookup) or "no answer")]
        if e.endpoints:
            lines.append(f"yet the sidecar holds {len(e.endpoints)} endpoint(s): "
                         + "; ".join(endpoint.line() for endpoint in e.endpoints))
        return Diagnosis(NOT_RESOLVABLE, tuple(lines),
                         f"create the Service in {e.cluster} too (no pods needed), or turn on Istio's DNS proxy "
                         "(ISTIO_META_DNS_CAPTURE and ISTIO_META_DNS_AUTO_ALLOCATE)", e)

    refused = [entry for entry in e.log if _TLS_VERIFY.search(entry.transport_failure or entry.details)]
    if refused:
        return Diagnosis(TWO_ROOTS, (calls, f"access log: {refused[-1].line()}", answered),
                         "plug the same root into every cluster's cacerts (one root, an intermediate each), then "
                         "restart the workloads so they get certificates chaining to it", e)

    strays = [endpoint for endpoint in e.endpoints if endpoint.kind == "remote-pod"]
    # istiod sends another network's pod IPs for two reasons: the network is not labelled (it looks like the
    # caller's own), or it is labelled but its gateway has no address, so there is nothing to replace them with.
    pending_in = {gateway.split(" ")[0] for gateway in e.pending_gateways}
    unreachable = [endpoint for endpoint in strays if endpoint.where.split(" ")[0] in pending_in]
    if unreachable:
        lines = [*(_pending_line(gateway) for gateway in e.pending_gateways),
                 *(f"endpoint {endpoint.line()}" for endpoint in unreachable), calls, answered]
        return Diagnosis(GATEWAY_PENDING, tuple(lines),
                         "give the gateway's Service a load balancer (MetalLB, a cloud LB, a loadBalancerClass whose "
                         "controller runs) so it gets an external address", e)
    if strays:
        lines = [f"endpoint {endpoint.line()}" for endpoint in strays]
        timeouts = [entry for entry in e.log if "UF" in entry.flags or _TIMEOUT.search(entry.details)]
        if timeouts:
            lines.append(f"access log: {timeouts[-1].line()}")
        lines += [calls, *(f"curl: {error}" for error in e.errors)]
        where = sorted({endpoint.where for endpoint in strays if endpoint.where})
        return Diagnosis(NETWORK_LABEL, tuple(lines),
                         f"label istio-system with topology.istio.io/network in {', '.join(where) or 'every cluster'}"
                         " (and set global.network to match), so sidecars reach its pods through its east-west "
                         "gateway", e)

    gateways = {endpoint.address: endpoint for endpoint in e.endpoints if endpoint.kind == "gateway"}
    if e.plaintext_rules and e.elsewhere and not gateways:
        lines = [*e.plaintext_rules, f"pods on other networks: {', '.join(e.elsewhere)}",
                 "sidecar endpoints: " + ("; ".join(endpoint.line() for endpoint in e.endpoints) or "none"),
                 calls, answered, *(f"curl: {error}" for error in e.errors)]
        return Diagnosis(PLAINTEXT, tuple(lines),
                         "keep ISTIO_MUTUAL (or no tls setting: auto mTLS) for services reached across networks; "
                         "an east-west gateway routes only mTLS, on its SNI", e)

    reset = [entry for entry in e.log if entry.upstream_host in gateways
             and _RESET.search(entry.transport_failure or entry.details)]
    if reset:
        gateway = gateways[reset[-1].upstream_host]
        lines = [calls, f"access log: {reset[-1].line()}", *(f"gateway log: {line}" for line in e.gateway_log[-2:]),
                 answered]
        return Diagnosis(GATEWAY_NOT_EXPOSING, tuple(lines),
                         f"apply expose-services in {gateway.where.split(' ')[0] or 'the remote cluster'}: a Gateway "
                         "on 15443, tls mode AUTO_PASSTHROUGH, with hosts covering the service (\"*.local\")", e)

    refusals = [line for line in e.warnings if "failed calling webhook" in line]
    if refusals:
        lines = [f"events: {line}" for line in refusals[-2:]]
        if not e.istiod_running:
            lines.append(f"no running istiod in {e.cluster}/istio-system")
        lines += [calls, answered]
        return Diagnosis(INJECTION_WEBHOOK, tuple(lines),
                         "make the webhook's service answer: istiod running with ready endpoints (kubectl -n "
                         "istio-system get pods,endpoints istiod), and a caBundle that matches its certificate", e)

    if not e.istiod_running:
        return Diagnosis(ISTIOD_DOWN, (f"no running istiod in {e.cluster}/istio-system", calls, answered),
                         f"start istiod in {e.cluster} again: proxies run on their last configuration until then", e)

    stuck = [(name, status) for name, status in e.remote_clusters if status != "synced"]
    if stuck:
        lines = [f"remote-clusters in {e.cluster}: {name} {status}" for name, status in stuck]
        missing = sorted(set(e.clusters) - {e.cluster} - {w.split(" ")[0] for w in
                                                          (endpoint.where for endpoint in e.endpoints) if w})
        lines += [f"sidecar endpoints: {len(e.endpoints)} ({', '.join(p.kind for p in e.endpoints) or 'none'})",
                  calls, answered]
        if missing:
            lines.append(f"no endpoint of {', '.join(missing)}")
        return Diagnosis(REMOTE_UNREACHABLE, tuple(lines),
                         f"recreate the remote secret of {', '.join(n for n, _ in stuck)} with a server address "
                         f"{e.cluster}'s istiod can reach (istioctl create-remote-secret --server …) and apply it", e)

    if e.proxy_synced is False:
        return Diagnosis(PROXY_NOT_SYNCED, (f"proxy-status: {e.source} in {e.cluster} not SYNCED", calls),
                         "look at istiod's log and the proxy's NACK reason (proxy-status shows it)", e)

    if e.pending_gateways:
        return Diagnosis(GATEWAY_PENDING,
                         (*(_pending_line(gateway) for gateway in e.pending_gateways), calls, answered),
                         "give the gateway's Service a load balancer (MetalLB, a cloud LB) or an address", e)

    if not e.endpoints and e.failed:
        return Diagnosis(NO_ENDPOINTS, (calls, *(f"curl: {error}" for error in e.errors)),
                         "check the Service's selector and that its pods are ready", e)

    if e.failed:
        lines = [calls, *(f"curl: {error}" for error in e.errors)]
        if e.log:
            lines.append(f"access log: {e.log[-1].line()}")
        return Diagnosis(UPSTREAM_FAILURE, tuple(lines), "read the access log's response flags and the upstream's log",
                         e)

    if e.locality_rules:
        return Diagnosis(LOCALITY_OFF, (*e.locality_rules, calls, answered),
                         "add outlierDetection (e.g. consecutive5xxErrors, interval, baseEjectionTime) to the "
                         "DestinationRule: Istio applies locality priorities and failover only then", e)

    return Diagnosis(NO_FAULT, (calls, answered,
                                "sidecar endpoints: " + "; ".join(endpoint.line() for endpoint in e.endpoints)), "", e)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


# --- gathering ----------------------------------------------------------------------------------------------------

def diagnose(lab: Lab, source: str, url: str, *, n: int = 10, quiet: bool = False) -> Diagnosis:
    """Run the expert's checklist for calls from ``source`` to ``url`` and name the most likely cause.

    Prints the verdict and its evidence (unless ``quiet``) and returns it: ``diagnosis.cause`` is one of this
    module's causes, ``diagnosis.ok`` tells whether nothing is wrong.

    Args:
        lab: the lab.
        source: ``<cluster>/<namespace>/deploy/<name>`` (``cluster1/sample/deploy/sleep``).
        url: the URL the source calls.
        n: how many calls to make for the evidence.
        quiet: print nothing.
    """
    diagnosis = decide(gather(lab, source, url, n=n))
    if not quiet:
        print(diagnosis)
    return diagnosis


def gather(lab: Lab, source: str, url: str, *, n: int = 10) -> Evidence:
    """What the checklist's commands say (see the module docstring); :func:`decide` reads it.

    Args:
        lab: the lab.
        source: ``<cluster>/<namespace>/deploy/<name>``.
        url: the URL called.
        n: how many calls to make.

    Raises:
        LabkitError: ``source`` does not start with a cluster of the lab.
    """
    name, _, workload = source.partition("/")
    if name not in lab.clusters or not workload:
        raise LabkitError(f"diagnose from {source!r}: write <cluster>/<namespace>/deploy/<name>, e.g. "
                          f"'{lab.clusters[0]}/sample/deploy/sleep' (the lab's clusters: {', '.join(lab.clusters)})")
    cluster = lab[name]
    where = traffic.Source.parse(workload)
    proxy = f"{where.target}.{where.namespace}"  # istioctl's form: deploy/sleep.sample
    parts = urlsplit(url)
    host = parts.hostname or ""
    service, _, rest = host.partition(".")
    namespace = rest.split(".", 1)[0] if rest else where.namespace
    port = parts.port or (443 if parts.scheme == "https" else 80)
    fqdn = f"{service}.{namespace}.svc.cluster.local"

    lookup = cluster.exec(workload, ["nslookup", host])
    resolved = bool(traffic.nslookup_addresses(lookup))

    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
    calls = cluster.call(workload, url, n=n)
    statuses = tuple(int(status) for status in calls["status"])
    errors = tuple(sorted({str(error) for error in calls["error"].dropna() if str(error)}))
    answered = tuple(sorted({str(i) for i, s in zip(calls["instance"], calls["status"], strict=True)
                             if s == 200 and isinstance(i, str)}))

    mesh = multi_primary.survey(lab, service=service, namespace=namespace)
    table = cluster.endpoints(proxy, envoy_cluster=f"outbound|{port}||{fqdn}")
    endpoints = tuple(_classify(row, name, mesh, port) for row in table.rows)

    # Both questions are asked of istiod itself; with none running, that is the answer.
    try:
        remotes = tuple((row.name, row.status) for row in cluster.remote_clusters(quiet=True))
        statuses_of = {row.name: row for row in cluster.proxy_status(quiet=True)}
        running = True
    except LabkitError:
        remotes, statuses_of, running = (), {}, False
    status = statuses_of.get(f"{kube.resolve_pod(cluster.context, where.namespace, where.target)}.{where.namespace}")
    synced = status.synced if status else None
    pending = tuple(dict.fromkeys(f"{gateway.cluster} {gateway.namespace}/{gateway.name}" for gateway in mesh.pending))

    log = _logged(cluster, proxy, host, since) if (not resolved or any(s != 200 for s in statuses)) else ()
    dialled = {entry.upstream_host for entry in log}
    gateway_log = tuple(line for gateway in mesh.gateways if gateway.address in dialled
                        for line in lab[gateway.cluster].logs(f"{gateway.namespace}/deploy/{gateway.name}",
                                                              grep="filter_chain_not_found", tail=50).splitlines()
                        if f"_.{fqdn}" in line)
    warnings = tuple(f"{c.name}: {event.line()}" for c in lab
                     for event in kube.recent_warnings(c.context, namespace) if _still_true(c, event, namespace))
    mine = mesh.networks.get(name, "")
    elsewhere = tuple(sorted({f"{i.cluster} {i.network}" for i in mesh.instances if i.network and i.network != mine}))
    rules = cluster.list("networking.istio.io/v1", "DestinationRule")
    plaintext = _plaintext_rules(rules, fqdn, port)
    locality = _locality_rules(rules, fqdn)
    return Evidence(name, workload, url, resolved, lookup, statuses, errors, answered, endpoints, remotes, synced,
                    pending, tuple(lab.clusters), log, gateway_log, running, warnings, plaintext, elsewhere,
                    locality)


def _pending_line(gateway: str) -> str:
    """``cluster2: service istio-system/istio-eastwestgateway EXTERNAL-IP <pending>`` for ``cluster namespace/name``."""
    cluster, _, service = gateway.partition(" ")
    return f"{cluster}: service {service or '?'} EXTERNAL-IP <pending>"


def _classify(row: istio.EndpointRow, cluster: str, mesh: multi_primary.Mesh, port: int) -> Endpoint:
    mine = mesh.networks.get(cluster, "")
    gateways = {g.address: g for g in mesh.gateways}
    if row.endpoint in gateways:
        gateway = gateways[row.endpoint]
        return Endpoint(row.endpoint, row.status, "gateway", f"{gateway.cluster} {gateway.network}")
    # Pod IPs are unique only within a network: look among the caller's own cluster's pods first.
    for instance in sorted(mesh.instances, key=lambda i: i.cluster != cluster):
        if row.endpoint.rpartition(":")[0] == instance.ip:
            return Endpoint(row.endpoint, row.status, "local" if instance.network == mine else "remote-pod",
                            f"{instance.cluster} {instance.network or 'no network'}")
    return Endpoint(row.endpoint, row.status, "unknown")


def _rules_for(rules: Sequence[Mapping[str, Any]], fqdn: str) -> list[tuple[str, str, Mapping[str, Any]]]:
    """``(namespace/name, host, trafficPolicy)`` of the DestinationRules among ``rules`` whose host covers ``fqdn``."""
    found = []
    for rule in rules:
        metadata, spec = rule.get("metadata") or {}, rule.get("spec") or {}
        host = str(spec.get("host") or "")
        namespace = str(metadata.get("namespace") or "")
        full = host if "." in host.rstrip("*") or host == "*" else f"{host}.{namespace}.svc.cluster.local"
        if full == fqdn or (full.startswith("*") and fqdn.endswith(full[1:])):
            found.append((f"{namespace}/{metadata.get('name', '')}", host, spec.get("trafficPolicy") or {}))
    return found


def _locality_rules(rules: Sequence[Mapping[str, Any]], fqdn: str) -> tuple[str, ...]:
    """The DestinationRules for ``fqdn`` that set locality load balancing but no outlierDetection, one line each."""
    found = []
    for name, _, policy in _rules_for(rules, fqdn):
        setting = (policy.get("loadBalancer") or {}).get("localityLbSetting") or {}
        if setting and setting.get("enabled", True) and not policy.get("outlierDetection"):
            found.append(f"DestinationRule {name}: localityLbSetting without outlierDetection")
    return tuple(found)


def _plaintext_rules(rules: Sequence[Mapping[str, Any]], fqdn: str, port: int) -> tuple[str, ...]:
    """The DestinationRules among ``rules`` that set ``tls.mode: DISABLE`` for ``fqdn``'s ``port``, one line each."""
    found = []
    for name, host, policy in _rules_for(rules, fqdn):
        mode = (policy.get("tls") or {}).get("mode")
        for level in policy.get("portLevelSettings") or []:
            if (level.get("port") or {}).get("number") == port and "tls" in level:
                mode = (level.get("tls") or {}).get("mode")
        if mode == "DISABLE":
            found.append(f"DestinationRule {name}: tls.mode DISABLE for {host}")
    return tuple(found)


def _still_true(cluster: Cluster, event: kube.Event, namespace: str) -> bool:
    """Whether a Warning still holds: a ReplicaSet's ``FailedCreate`` only while it has fewer pods than it wants
    (an Event outlives its cause, and a fixed mesh should not be blamed for it)."""
    if event.kind != "ReplicaSet" or event.reason != "FailedCreate":
        return True
    replica_set = cluster.object("apps/v1", "ReplicaSet", event.name, namespace) or {}
    wanted = (replica_set.get("spec") or {}).get("replicas", 0) or 0
    return int((replica_set.get("status") or {}).get("replicas", 0) or 0) < int(wanted)


def _logged(cluster: Cluster, proxy: str, host: str, since: str) -> tuple[LoggedCall, ...]:
    """The sidecar's entries for ``host`` since ``since`` (Envoy flushes its access log in batches: wait a little)."""

    def entries() -> list[istio.AccessLogEntry]:
        return [entry for entry in cluster.access_log(proxy)
                if entry.authority.split(":")[0] == host and entry.start >= since]

    try:
        found = kube.poll(entries, timeout=5.0, what=f"access log entries of {proxy}", interval=0.25,
                          max_interval=0.5)
    except WaitTimeoutError:
        found = []
    return tuple(LoggedCall(e.code, e.flags, e.details, e.transport_failure, e.upstream_host) for e in found[-3:])
