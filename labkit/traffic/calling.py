"""Call loops: N requests from a client pod, as one exec running one curl with N URLs, back as a DataFrame.

A lab's teaching points are distributions (how calls from cluster1 spread over v1 and v2, over local pods
and remote gateways), so a loop must be cheap: one exec costs a WebSocket and a process start, a request
over a kept-alive connection well under a millisecond. DESIGN.md therefore makes a loop of N calls one
exec of one curl given the URL N times, never N execs.

curl keeps going after a failed transfer (a refused connection, an unknown name) unless told
``--fail-early``, and writes its ``--write-out`` after every transfer, failed or not, so each request
leaves exactly one frame on stdout; ``--globoff`` keeps a malformed URL from aborting the whole command
line before the first transfer (curl then reports it as that transfer's error, exit code 3). The frame
carries what a row needs and the body sits before it::

    Hello version: v1, instance: helloworld-v1-776f57d5f6-s7zfc
    <<<labkit 0 200 0.001234 0 >>>

Without ``-f``, HTTP errors are bodies: a 503 from Envoy says why (``no healthy upstream``,
``upstream connect error or disconnect/reset before headers. reset reason: …``) and that text is what
a learner should read, so it becomes the row's ``error``. Failures are rows, never exceptions: only an
exec that cannot run at all (no pod, no curl) raises.

The parser is a pure function of curl's output so it is tested on real curl output captured from local
servers, without any cluster.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from labkit import kube
from labkit.errors import KubeApiError

COLUMNS = ("seq", "source", "url", "status", "version", "instance", "latency_ms", "error", "body")
# urlnum (0-based index in curl's URL list), HTTP code (000 without a response), seconds, curl's exit code for
# that transfer and its error message: all exist since curl 7.75 (exitcode, errormsg, urlnum).
WRITE_OUT = r"\n<<<labkit %{urlnum} %{http_code} %{time_total} %{exitcode} %{errormsg}>>>\n"
_FRAME = re.compile(r"\n?<<<labkit (\d+) (\d{3}) ([0-9.]+) (\d+) ?([^\n]*?)>>>\n?")
_HELLO = re.compile(r"Hello version: ([^,\s]+), instance: (\S+)")
_CURL_ERROR = re.compile(r"^curl: \((\d+)\) (.*)$", re.MULTILINE)
# A body short enough to be a reason (Envoy's 503 texts are one line); longer ones are pages, named by status.
_REASON_MAX = 1000
# Keeps the exec's URL (the argv travels in its query string) far below API servers' 1 MiB request line.
_MAX_ARGV_CHARS = 256 * 1024


@dataclass(frozen=True)
class Source:
    """Where a loop runs: a namespace and a kubectl exec target in it.

    Args:
        namespace: the client pod's namespace.
        target: ``deploy/NAME`` (any of kubectl's workload forms) or a pod name.
    """

    namespace: str
    target: str

    @classmethod
    def parse(cls, source: str) -> Source:
        """``"sample/deploy/sleep"`` → ``Source("sample", "deploy/sleep")``; ``"sample/sleep-abc"`` names a pod.

        Raises:
            ValueError: no namespace, or nothing after it.
        """
        namespace, _, target = source.partition("/")
        if not namespace or not target or target.endswith("/"):
            raise ValueError(f"cannot call from {source!r}: write <namespace>/deploy/<name> or <namespace>/<pod>, "
                             f"e.g. 'sample/deploy/sleep'")
        return cls(namespace, target)


def curl_argv(urls: Sequence[str], *, request_timeout: float | None = 10.0, keepalive: bool = False) -> list[str]:
    """The one curl command line that makes every request of ``urls``, in order, each framed on stdout.

    Args:
        urls: one URL per request (repeat a URL to call it several times).
        request_timeout: seconds allowed per request (``--max-time``), so one stuck upstream costs one row,
            not the whole loop; None for curl's default (none).
        keepalive: reuse connections between requests; by default each request opens its own.
    """
    argv = ["curl", "--silent", "--show-error", "--globoff", "--write-out", WRITE_OUT]
    if not keepalive:
        # kube-proxy (and the embedded service proxy) balance connections, not requests: over one kept-alive
        # connection every call would reach the same pod. A connection per request spreads them as the labs'
        # `for i in …; do kubectl exec … curl; done` did; a sidecar balances per request either way.
        argv += ["--header", "Connection: close"]
    if request_timeout is not None:
        argv += ["--max-time", f"{request_timeout:g}"]
    # `--` keeps a URL that starts with '-' from being read as an option.
    return [*argv, "--", *urls]


def call(
    context: kube.ContextRef,
    source: str,
    url: str | Sequence[str],
    n: int = 100,
    *,
    cluster: str | None = None,
    container: str | None = None,
    timeout: float = 120,
    request_timeout: float | None = 10.0,
    keepalive: bool = False,
) -> pd.DataFrame:
    """Make ``n`` requests from a pod and return one row per request (see :data:`COLUMNS`).

    All ``n`` requests are one exec of one curl, so a loop of 1,000 costs one exec plus the requests
    themselves, never 1,000 execs.

    Args:
        context: the kubeconfig context of the client pod's cluster.
        source: ``"<namespace>/deploy/<name>"`` or ``"<namespace>/<pod>"``, e.g. ``"sample/deploy/sleep"``.
        url: the URL to call ``n`` times, or a list of URLs cycled until ``n`` requests are made.
        n: how many requests.
        cluster: the name for the ``source`` column (e.g. ``cluster1``); the context by default.
        container: the container to run curl in; the pod's first container by default.
        timeout: seconds for the whole loop.
        request_timeout: seconds per request (curl's ``--max-time``); None for no limit.
        keepalive: reuse connections between requests. Off by default, so that without a sidecar the
            cluster's service proxy (which balances connections) spreads the calls over the pods.

    Returns:
        A DataFrame with columns ``seq, source, url, status, version, instance, latency_ms, error, body``;
        failed requests are rows with ``status`` 0 (no HTTP response) or an HTTP error and an ``error``.

    Raises:
        ValueError: ``n`` below 0, no URL, a malformed ``source``, or a loop too long for one command line.
        KubeApiError: the pod does not exist, exec is refused, or curl could not be started at all.
        WaitTimeoutError: the loop did not finish within ``timeout``.
    """
    where = Source.parse(source)
    urls = _cycle(url, n)
    name = cluster or str(context)
    if not urls:
        return parse_curl_output("", source=name, urls=[])
    argv = curl_argv(urls, request_timeout=request_timeout, keepalive=keepalive)
    size = sum(len(arg) + 1 for arg in argv)
    if size > _MAX_ARGV_CHARS:
        raise ValueError(f"{n} requests make a {size // 1024} KiB curl command line, more than one exec carries "
                         f"({_MAX_ARGV_CHARS // 1024} KiB): call in smaller batches (n=…) and pd.concat the frames")
    result = kube.exec_(context, where.namespace, where.target, argv, container=container, timeout=timeout)
    if "<<<labkit " not in result.stdout and result.exit_code != 0 and not _CURL_ERROR.search(result.stderr):
        # No frame and no curl error line: curl never ran (not installed, not executable, killed).
        detail = result.stderr.strip() or result.stdout.strip() or "no output"
        raise KubeApiError(0, "ExecFailed", f"curl could not run in pod {where.namespace}/{result.pod} on {context} "
                                            f"(exit code {result.exit_code}: {detail[-300:]}); the client pod needs "
                                            f"curl, as the sleep sample (curlimages/curl) has")
    return parse_curl_output(result.stdout, source=name, urls=urls, stderr=result.stderr)


def parse_curl_output(text: str, *, source: str, urls: Sequence[str], stderr: str = "") -> pd.DataFrame:
    """Rows from the stdout of :func:`curl_argv`'s command: one per URL, in order, whatever happened.

    A transfer with no frame (curl killed, or a curl that stopped before it) still gets a row: status 0 and,
    as its error, the last ``curl: (N) …`` line of ``stderr`` or ``no response: curl stopped before this
    request``.

    Args:
        text: curl's standard output.
        source: the value of the ``source`` column (the cluster the client pod runs in).
        urls: the URLs curl was given, in order.
        stderr: curl's standard error, to explain requests that left no frame.
    """
    frames: dict[int, tuple[int, float, int, str, str]] = {}
    start = 0
    for match in _FRAME.finditer(text):
        body = text[start:match.start()]
        start = match.end()
        urlnum, code, seconds, exit_code, message = match.groups()
        frames.setdefault(int(urlnum), (int(code), float(seconds), int(exit_code), message.strip(), body.strip()))
    stopped = _CURL_ERROR.findall(stderr)
    missing = (f"curl: ({stopped[-1][0]}) {stopped[-1][1]}" if stopped
               else "no response: curl stopped before this request")
    rows = []
    for seq, url in enumerate(urls):
        frame = frames.get(seq)
        if frame is None:
            rows.append((seq, source, url, 0, None, None, math.nan, missing, ""))
            continue
        status, seconds, exit_code, message, body = frame
        hello = _HELLO.search(body)
        rows.append((seq, source, url, status,
                     hello.group(1) if hello else None, hello.group(2) if hello else None,
                     seconds * 1000.0, _error(status, exit_code, message, body), body))
    return _frame(rows)


def _frame(rows: list[tuple]) -> pd.DataFrame:
    # Explicit dtypes: an empty loop keeps them, and version/instance stay object columns holding None
    # (pandas would otherwise infer a string dtype and turn None into NaN).
    values = list(zip(*rows, strict=True)) if rows else [()] * len(COLUMNS)
    dtypes = ("int64", "object", "object", "int64", "object", "object", "float64", "object", "object")
    return pd.DataFrame({name: pd.Series(list(column), dtype=dtype)
                         for name, column, dtype in zip(COLUMNS, values, dtypes, strict=True)})


def _error(status: int, exit_code: int, message: str, body: str) -> str:
    if exit_code != 0:
        # curl's own words, as `curl: (7) Failed to connect …` prints them on stderr.
        return message or f"curl exit code {exit_code}"
    if status == 0:
        return message or "no HTTP response"
    if status < 400:
        return ""
    reason = body.strip()
    if reason and "\n" not in reason and len(reason) <= _REASON_MAX:
        return reason
    return f"HTTP {status}"


def _cycle(url: str | Sequence[str], n: int) -> list[str]:
    if n < 0:
        raise ValueError(f"n must be 0 or more, got {n}")
    urls = [url] if isinstance(url, str) else list(url)
    if not urls:
        raise ValueError("call needs at least one URL")
    return list(itertools.islice(itertools.cycle(urls), n))
