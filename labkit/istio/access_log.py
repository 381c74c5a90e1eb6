"""Reading a proxy's access log: why a request failed, in Envoy's own words.

Istio's default access log line carries the response code, the response flags (``UF`` upstream
connection failure, ``URX`` retries exhausted, ``NR`` no route …) and — the clue when roots or trust
domains do not match — ``%UPSTREAM_TRANSPORT_FAILURE_REASON%``, e.g.
``TLS_error:|268435581:SSL_routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED``. The client only sees
``503 upstream connect error …``; :func:`proxy_access_log` shows the reason, on real and embedded
clusters alike (it reads the ``istio-proxy`` container's log).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from labkit import kube

_LINE = re.compile(r'^\[(?P<start>[^\]]+)\] "(?P<request>[^"]*)" (?P<rest>.*)$')


@dataclass(frozen=True)
class AccessLogEntry:
    """One request as the proxy logged it."""

    start: str
    method: str
    path: str
    code: int
    flags: str
    details: str
    transport_failure: str
    authority: str
    upstream_host: str
    upstream_cluster: str

    @property
    def failed(self) -> bool:
        return self.code == 0 or self.code >= 500 or self.flags not in ("-", "")


def parse_access_log(text: str) -> list[AccessLogEntry]:
    """Entries of Istio's default access-log format; other lines (Envoy's own messages) are skipped."""
    entries = []
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        try:
            fields = shlex.split(match.group("rest"))
        except ValueError:
            continue
        if len(fields) < 15:
            continue
        method, _, path = match.group("request").partition(" ")
        entries.append(AccessLogEntry(
            start=match.group("start"), method=method, path=path.rsplit(" ", 1)[0],
            code=int(fields[0]) if fields[0].isdigit() else 0, flags=fields[1], details=fields[2],
            # 5-11: bytes received/sent, duration, upstream time, x-forwarded-for, user agent, request id
            transport_failure="" if fields[4] == "-" else fields[4], authority=fields[12],
            upstream_host="" if fields[13] == "-" else fields[13], upstream_cluster=fields[14]))
    return entries


def proxy_access_log(context: kube.ContextRef, workload: str, *, tail: int = 200) -> list[AccessLogEntry]:
    """The recent requests of a workload's sidecar, e.g. ``proxy_access_log("cluster1", "deploy/sleep.sample")``.

    Args:
        context: the kubeconfig context (a name, or a :class:`~labkit.kube.Context` with its kubeconfig).
        workload: ``deploy/<name>.<namespace>`` or ``<pod>.<namespace>`` (istioctl's form).
        tail: how many log lines to read.
    """
    target, _, namespace = workload.rpartition(".")
    text = kube.logs(context, namespace, target, container="istio-proxy", tail=tail)
    return parse_access_log(text)
