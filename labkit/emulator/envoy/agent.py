"""``pilot-agent``: the program behind the ``istio/proxyv2`` image, running one Envoy for one pod.

Usage (the container args of an injected ``istio-proxy``; anything after the proxy type is Istio's and
ignored)::

    python -m labkit.emulator.envoy.agent proxy sidecar|router [Istio's flags …]
    python -m labkit.emulator.envoy.agent request GET <path>      # pilot-agent request GET clusters|stats|…

``proxy`` reads what the injector and the node put in the environment (``POD_NAME``, ``POD_NAMESPACE``,
``INSTANCE_IP``, ``SERVICE_ACCOUNT``, ``ISTIO_META_*``, ``LABKIT_XDS_ROOT``), writes the bootstrap into
the proxy's xDS directory, makes sure Envoy finds LDS/CDS files there (it refuses to start without
them, and must not wait for istiod's first push), and runs Envoy as its child. The agent stays small
and synchronous on purpose: it sits on the pod's start path, and all it does afterwards is pass
Envoy's output through and forward signals.

Filesystem xDS has no NACK channel: Envoy logs ``Filesystem config update rejected: <reason>`` and
counts ``update_rejected`` on the refusing subscription. The agent reads Envoy's log as it passes
through; on such a line it asks Envoy's admin which subscriptions' ``update_rejected`` rose, reads the
``version_info`` of the file each one refused, and records that in ``rejections.json``
(:func:`labkit.emulator.envoy.files.record_rejections`), where istiod finds the reason to name.

Envoy is started with ``PR_SET_PDEATHSIG``: if the agent dies, even by SIGKILL, Envoy goes too.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from labkit.emulator.envoy import files
from labkit.emulator.envoy.binary import find_envoy
from labkit.emulator.envoy.bootstrap import ADMIN_PORT, STATUS_PORT, bootstrap, node_id
from labkit.errors import AgentError, LabkitError

# Istio's own log format, so ``kubectl logs -c istio-proxy`` reads like a real proxy's.
LOG_FORMAT = "%Y-%m-%dT%T.%fZ\t%l\tenvoy %n %g:%#\t%v\tthread=%t"
_ENTRY = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z\t")
_THREAD = re.compile(r"\tthread=\d+\s*$")
REJECTED = "Filesystem config update rejected: "
FAILED = "Filesystem config update failure: "
SETTLE = 0.02  # a multi-line log entry (Envoy dumps protos into reasons) arrives in one burst
PR_SET_PDEATHSIG = 1

USAGE = ("usage: pilot-agent proxy sidecar|router [flags …]\n"
         "       pilot-agent request <METHOD> <path> [<body>]\n")


# ---- environment → bootstrap ------------------------------------------------------------------------------------

def node_metadata(env: Mapping[str, str]) -> dict[str, Any]:
    """Node metadata the way pilot-agent builds it: ``ISTIO_META_X=v`` → ``X: v``, ``ISTIO_METAJSON_X`` decoded."""
    metadata: dict[str, Any] = {}
    for key, value in sorted(env.items()):
        if key.startswith("ISTIO_METAJSON_"):
            with contextlib.suppress(ValueError):
                metadata[key.removeprefix("ISTIO_METAJSON_")] = json.loads(value)
        elif key.startswith("ISTIO_META_"):
            metadata[key.removeprefix("ISTIO_META_")] = value
    metadata.setdefault("NAME", env.get("POD_NAME", ""))
    metadata.setdefault("NAMESPACE", env.get("POD_NAMESPACE", ""))
    metadata.setdefault("INSTANCE_IPS", env.get("INSTANCE_IP", ""))
    metadata.setdefault("CLUSTER_ID", "Kubernetes")  # Istio's default when the install names no cluster
    if env.get("SERVICE_ACCOUNT"):
        metadata.setdefault("SERVICE_ACCOUNT", env["SERVICE_ACCOUNT"])
    return metadata


def _required(env: Mapping[str, str], name: str, why: str) -> str:
    value = env.get(name, "")
    if not value:
        raise AgentError(f"{name} is not set ({why}).")
    return value


PROXY_FILE = "proxy.json"


def prepare(proxy_type: str, env: Mapping[str, str]) -> tuple[Path, dict[str, Any]]:
    """Compute the xDS directory and the bootstrap, and lay out the directory for Envoy.

    Returns:
        ``(xds directory, bootstrap)``; the bootstrap is already written to ``bootstrap.json`` there.
    """
    if proxy_type not in ("sidecar", "router"):
        raise AgentError(f"unknown proxy type {proxy_type!r}: use sidecar or router.")
    pod = _required(env, "POD_NAME", "the injector sets it from metadata.name")
    namespace = _required(env, "POD_NAMESPACE", "the injector sets it from metadata.namespace")
    ip = _required(env, "INSTANCE_IP", "the injector sets it from status.podIP")
    root = _required(env, "LABKIT_XDS_ROOT", "labkit's node sets it to the xDS root istiod writes under")
    metadata = node_metadata(env)
    labels = metadata.get("LABELS") if isinstance(metadata.get("LABELS"), dict) else {}
    app = labels.get("app") or labels.get("app.kubernetes.io/name") or metadata.get("WORKLOAD_NAME") or pod
    uid = _required(env, "LABKIT_POD_UID", "labkit's node sets it to the pod's metadata.uid")
    directory = files.xds_dir(Path(root), uid)
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (directory / files.REJECTIONS).unlink()  # a new Envoy: the old one's refusals are history
    config = bootstrap(node_id=node_id(proxy_type, ip, pod, namespace), cluster=f"{app}.{namespace}",
                       metadata=metadata, admin_address=(ip, ADMIN_PORT), xds_dir=directory,
                       status_address=(ip, STATUS_PORT), access_log=False)
    files.write_atomic(directory / files.BOOTSTRAP, json.dumps(config, indent=1).encode())
    # What istiod cannot learn from the pod object: where the application behind this sidecar listens
    # (the node picks that address; inbound clusters must point at it).
    proxy = {"type": proxy_type, "ip": ip, "app_address": env.get("LABKIT_APP_ADDRESS", "")}
    files.write_atomic(directory / PROXY_FILE, json.dumps(proxy).encode())
    return directory, config


def envoy_argv(envoy: str, bootstrap_path: Path) -> list[str]:
    """Envoy's command line: one worker, no hot restart (several Envoys per machine), strict xDS parsing."""
    return [envoy, "-c", str(bootstrap_path), "--disable-hot-restart", "--concurrency", "1",
            "--reject-unknown-dynamic-fields", "--file-flush-interval-msec", "200",
            # Rejections are logged at warning by the ``config`` logger (and by eds/rds/sds/lds at warning).
            "--log-level", "warning", "--log-format", LOG_FORMAT]


# ---- rejections -------------------------------------------------------------------------------------------------

def _http_get(host: str, port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    import http.client  # noqa: PLC0415 - only on the first rejection: it would add ~9 ms to every start

    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class RejectionRecorder:
    """Turns Envoy's rejection log lines into ``rejections.json`` records.

    Args:
        directory: the proxy's xDS directory.
        admin: Envoy's admin address, to find which subscriptions refused.
    """

    def __init__(self, directory: Path, admin: tuple[str, int]):
        self.directory = directory
        self.admin = admin
        self._seen: dict[str, int] = {}

    def _risen(self) -> list[str]:
        try:
            status, body = _http_get(self.admin[0], self.admin[1], "/stats?filter=%5C.update_rejected%24")
        except OSError:
            return []
        if status != 200:
            return []
        risen = []
        for line in body.decode(errors="replace").splitlines():
            name, _, value = line.rpartition(": ")
            if not name.endswith(".update_rejected") or not value.strip().isdigit():
                continue
            count = int(value)
            if count > self._seen.get(name, 0):
                risen.append(name.removesuffix(".update_rejected"))
            self._seen[name] = count
        order = {kind: index for index, kind in enumerate(files.WRITE_ORDER)}
        return sorted(risen, key=lambda prefix: (order.get(files.subscription_kind(prefix), 9), prefix))

    def record(self, rejected: Sequence[str], failed: Sequence[str]) -> list[files.Rejection]:
        """Record a burst of rejection reasons and read failures (in log order); returns what was recorded."""
        now = time.time()
        records = []
        if rejected:
            prefixes = self._risen()
            for index, prefix in enumerate(prefixes):
                kind, name, path = files.subscription_file(self.directory, prefix)
                reason = rejected[min(index, len(rejected) - 1)]
                version = files.read_version(path) if path is not None else None
                records.append(files.Rejection(kind or "unknown", name, prefix, version, reason, now))
            if not prefixes:  # admin unreachable: keep the reason at least
                records += [files.Rejection("unknown", "", "", None, reason, now) for reason in rejected]
        for message in failed:
            location, _, reason = message.partition(", ")
            kind, name = _kind_of_path(self.directory, location.removeprefix("in "))
            records.append(files.Rejection(kind, name, "", None, reason or message, now))
        if records:
            files.record_rejections(self.directory, records)
        return records


def _kind_of_path(directory: Path, path: str) -> tuple[str, str]:
    candidate = Path(path)
    for kind in (files.LDS, files.CDS):
        if candidate == files.resource_file(directory, kind):
            return kind, ""
    for kind in files.PER_RESOURCE:
        if candidate.parent == directory / kind.lower():
            return kind, unquote(candidate.name.removesuffix(".json"))
    return "unknown", ""


def _message(entry: list[str]) -> str:
    """The ``%v`` part of a log entry (continuation lines included), without the thread suffix."""
    text = "\n".join(entry)
    parts = text.split("\t", 3)
    message = parts[3] if len(parts) == 4 else text
    return _THREAD.sub("", message).strip()


def pump(source: int, sink: int, recorder: RejectionRecorder | None) -> None:
    """Copy Envoy's stderr to ours as it comes, and record rejections it reports.

    Args:
        source: the read end of Envoy's stderr.
        sink: where the copy goes (the agent's stderr: the container log).
        recorder: where rejections go; ``None`` only copies.
    """
    buffer = b""
    entry: list[str] = []
    rejected: list[str] = []
    failed: list[str] = []

    def close_entry() -> None:
        if entry:
            message = _message(entry)
            for marker, batch in ((REJECTED, rejected), (FAILED, failed)):
                if message.startswith(marker):
                    # Protobuf pads its error messages with random runs of spaces (so nobody matches them
                    # verbatim) and Envoy dumps protos over several lines: one space between words reads better.
                    batch.append(" ".join(message.removeprefix(marker).split()))
            entry.clear()

    def flush_batch() -> None:
        close_entry()
        if (rejected or failed) and recorder is not None:
            try:
                recorder.record(rejected, failed)
            except OSError as exc:  # the directory went away with the pod: keep passing logs through
                os.write(sink, f"pilot-agent: cannot record a rejection: {exc}\n".encode())
        rejected.clear()
        failed.clear()

    while True:
        pending = bool(entry or rejected or failed)
        ready, _, _ = select.select([source], [], [], SETTLE if pending else None)
        if not ready:
            flush_batch()
            continue
        data = os.read(source, 65536)
        if not data:
            break
        with contextlib.suppress(OSError):
            os.write(sink, data)
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace")
            if _ENTRY.match(line):
                close_entry()
                entry.append(line)
            elif entry:
                entry.append(line)
    if buffer:
        entry.append(buffer.decode(errors="replace"))
    flush_batch()


# ---- running Envoy ----------------------------------------------------------------------------------------------

def _die_with_parent(parent: int) -> Any:
    libc: Any = None
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            libc = ctypes.CDLL(None, use_errno=True)

    def setup() -> None:
        if libc is not None:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the agent died between fork and prctl
            os._exit(1)
    return setup


def wait_for_configuration(directory: Path, stopping: threading.Event, *, report_every: float = 10.0) -> bool:
    """Wait until istiod has written this proxy's first LDS and CDS; False when asked to stop first.

    Like pilot-agent, which reports ready only once Envoy holds istiod's configuration: a sidecar that came up
    with an empty config would make its pod Ready while every call through it still fails.
    """
    needed = [files.resource_file(directory, kind) for kind in (files.LDS, files.CDS)]
    started = last_report = time.monotonic()
    while not all(path.exists() for path in needed):
        if stopping.wait(0.05):
            return False
        if time.monotonic() - last_report > report_every:
            last_report = time.monotonic()
            print(f"waiting for configuration from istiod in {directory} "
                  f"({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    return True


def run_proxy(proxy_type: str, env: Mapping[str, str]) -> int:
    """Run Envoy for this pod until it exits; returns the exit code for the container (signals as 128+N)."""
    directory, config = prepare(proxy_type, env)
    envoy = find_envoy(env)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda _signum, _frame: stopping.set())
    if not wait_for_configuration(directory, stopping):
        return 0
    process = subprocess.Popen(envoy_argv(str(envoy.path), directory / files.BOOTSTRAP),
                               stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, close_fds=True,
                               # No thread runs yet (the log reader starts below), so preexec_fn is safe here.
                               preexec_fn=_die_with_parent(os.getpid()))  # noqa: PLW1509

    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    admin = config["admin"]["address"]["socket_address"]
    recorder = RejectionRecorder(directory, (admin["address"], admin["port_value"]))
    assert process.stderr is not None
    reader = threading.Thread(target=pump, args=(process.stderr.fileno(), sys.stderr.fileno(), recorder),
                              name="envoy-log", daemon=True)
    reader.start()
    code = process.wait()
    reader.join(timeout=2.0)
    return 128 - code if code < 0 else code


def request(method: str, path: str, env: Mapping[str, str], body: str = "") -> int:
    """``pilot-agent request``: Envoy's admin answer to ``method path``, body printed exactly."""
    import http.client  # noqa: PLC0415 - see _http_get

    host = env.get("INSTANCE_IP") or env.get("POD_IP") or "127.0.0.1"
    connection = http.client.HTTPConnection(host, ADMIN_PORT, timeout=10)
    try:
        connection.request(method.upper(), "/" + path.lstrip("/"), body=body.encode() or None)
        response = connection.getresponse()
        data = response.read()
    except OSError as exc:
        sys.stderr.write(f"Error: failed retrieving: {method} http://{host}:{ADMIN_PORT}/{path.lstrip('/')}: {exc}\n")
        return 1
    finally:
        connection.close()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    if response.status >= 400:
        sys.stderr.write(f"Error: received unsuccessful status code {response.status}\n")
        return 1
    return 0


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if env is None else env
    try:
        if len(args) >= 2 and args[0] == "proxy":
            return run_proxy(args[1], environ)
        if len(args) >= 3 and args[0] == "request":
            return request(args[1], args[2], environ, args[3] if len(args) > 3 else "")
    except LabkitError as exc:  # AgentError among them
        sys.stderr.write(f"pilot-agent: {exc}\n")
        return 1
    sys.stderr.write(USAGE)
    return 2


if __name__ == "__main__":
    sys.exit(main())
