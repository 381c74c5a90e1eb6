"""``pilot-agent``: the program behind the ``istio/proxyv2`` image, running one Envoy for one pod.

Usage (the container args of an injected ``istio-proxy``; anything after the proxy type is Istio's and
ignored)::

    python -m labkit.emulator.envoy.agent proxy sidecar|router [Istio's flags …]
    python -m labkit.emulator.envoy.agent request GET <path>      # pilot-agent request GET clusters|stats|…

``proxy`` does what istio-agent does, from what the injector and the node put in the environment (``POD_NAME``,
``POD_NAMESPACE``, ``INSTANCE_IP``, ``SERVICE_ACCOUNT``, ``TRUST_DOMAIN``, ``PROXY_CONFIG``, ``ISTIO_META_*``) and
in the pod's folder, its working directory (Istio's absolute paths live under it): it writes Envoy's bootstrap to
``etc/istio/proxy/envoy-rev.json``, starts Envoy, then its own gRPC side (:mod:`.workload`): the workload
certificate by CSR to istiod's CA with the pod's ``istio-ca`` token, SDS to Envoy on
``var/run/secrets/workload-spiffe-uds/socket`` (unless someone else already serves it: SPIRE), and Envoy's ADS
stream forwarded to istiod from ``etc/istio/proxy/XDS``. istiod is found at ``discoveryAddress`` through the
pod's own DNS and verified with the mesh root from the ``istio-ca-root-cert`` ConfigMap mounted at
``var/run/secrets/istio``. With ``ISTIO_META_DNS_CAPTURE`` it also runs the DNS proxy (:mod:`.dnsproxy`) and
keeps its name table current from istiod (:mod:`.nds`).

Envoy is forked first, before any thread exists, with ``PR_SET_PDEATHSIG``: if the agent dies, even by SIGKILL,
Envoy goes too. Its log goes straight to the container's; NACKs travel back to istiod on the ADS stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from labkit.emulator.envoy import dnsproxy
from labkit.emulator.envoy.binary import find_envoy
from labkit.emulator.envoy.bootstrap import (
    ADMIN_PORT,
    APP_ADDRESS_METADATA,
    BOOTSTRAP,
    ROOT_CERT,
    SDS_SOCKET,
    STATUS_PORT,
    TOKEN_PATH,
    XDS_SOCKET,
    bootstrap,
    node_id,
)
from labkit.emulator.envoy.nametables import NameTable
from labkit.errors import AgentError, LabkitError

# Istio's own log format, so ``kubectl logs -c istio-proxy`` reads like a real proxy's.
LOG_FORMAT = "%Y-%m-%dT%T.%fZ\t%l\tenvoy %n %g:%#\t%v\tthread=%t"
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


def prepare(proxy_type: str, env: Mapping[str, str], root: Path) -> dict[str, Any]:
    """Compute Envoy's bootstrap and write it to ``etc/istio/proxy/envoy-rev.json`` in the pod's folder.

    Args:
        proxy_type: ``sidecar`` or ``router``.
        env: the agent's environment.
        root: the pod's folder.
    """
    if proxy_type not in ("sidecar", "router"):
        raise AgentError(f"unknown proxy type {proxy_type!r}: use sidecar or router.")
    pod = _required(env, "POD_NAME", "the injector sets it from metadata.name")
    namespace = _required(env, "POD_NAMESPACE", "the injector sets it from metadata.namespace")
    ip = _required(env, "INSTANCE_IP", "the injector sets it from status.podIP")
    metadata = node_metadata(env)
    if env.get("LABKIT_APP_ADDRESS"):
        # Where the application behind this sidecar listens (the node picks it: DESIGN decision 5); istiod points
        # the inbound clusters there.
        metadata[APP_ADDRESS_METADATA] = env["LABKIT_APP_ADDRESS"]
    labels = metadata.get("LABELS") if isinstance(metadata.get("LABELS"), dict) else {}
    app = labels.get("app") or labels.get("app.kubernetes.io/name") or metadata.get("WORKLOAD_NAME") or pod
    config = bootstrap(node_id=node_id(proxy_type, ip, pod, namespace), cluster=f"{app}.{namespace}",
                       metadata=metadata, admin_address=(ip, ADMIN_PORT), sockets=(XDS_SOCKET, SDS_SOCKET),
                       status_address=(ip, STATUS_PORT), access_log=False)
    path = root / BOOTSTRAP
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=1))
    return config


def drain_seconds(env: Mapping[str, str]) -> int | None:
    """``drainDuration`` of the proxy config (``PROXY_CONFIG``) in whole seconds; None when it sets none.

    Envoy closes the connections of a removed listener or filter chain once this has passed: that is how
    taking a route away from a gateway cuts the connections already through it (a remote proxy's stream
    to istiod among them). Istio's own default (45 s) is not applied when the proxy config names none: Envoy's
    (600 s) stays, so proxies that set nothing behave as they always did here.
    """
    try:
        config = json.loads(env.get("PROXY_CONFIG") or "{}")
    except ValueError:
        return None
    text = str(config.get("drainDuration") or "") if isinstance(config, dict) else ""
    seconds = go_duration(text, 0)
    return seconds or None


def envoy_argv(envoy: str, bootstrap_path: Path, drain: int | None = None) -> list[str]:
    """Envoy's command line: one worker, no hot restart (several Envoys per machine), strict xDS parsing, and
    the drain istio-agent asks for when the proxy config sets one (``--drain-time-s``, ``--drain-strategy
    immediate``)."""
    argv = [envoy, "-c", str(bootstrap_path), "--disable-hot-restart", "--concurrency", "1",
            "--reject-unknown-dynamic-fields", "--file-flush-interval-msec", "200",
            "--log-level", "warning", "--log-format", LOG_FORMAT]
    if drain is not None:
        argv += ["--drain-time-s", str(drain), "--drain-strategy", "immediate"]
    return argv


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


_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")


ISTIOD_NAME = "istiod.istio-system.svc"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def go_duration(text: str, default: int) -> int:
    """Seconds in a Go duration (``SECRET_TTL=24h0m0s``, ``2m``, ``90s``); ``default`` when unset or unreadable."""
    parts = _GO_DURATION.findall(text or "")
    if not parts or "".join(a + b for a, b in parts) != text.strip():
        return default
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return max(1, int(sum(float(amount) * scale[unit] for amount, unit in parts)))


class AgentThread:
    """The agent's gRPC side (:class:`~.workload.WorkloadAgent`) in an event loop of its own thread."""

    def __init__(self, agent: Any):
        self.agent = agent
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="pilot-agent", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._started.wait(10)

    def _main(self) -> None:
        async def run() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._started.set()
            await self.agent.run(self._stop)
        try:
            asyncio.run(run())
        except Exception as exc:  # the agent's side died: say why in the container log
            logging.getLogger("pilot-agent").error("agent stopped: %s", exc)
        finally:
            self._started.set()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=3)


def workload_agent(proxy_type: str, env: Mapping[str, str], config: Mapping[str, Any], root: Path,
                   dns: dnsproxy.DnsProxy | None) -> Any:
    """The agent's gRPC side as the environment describes it (gRPC is imported here, after Envoy's fork)."""
    from labkit.emulator.envoy import nds, workload  # noqa: PLC0415 - gRPC starts threads: only after the fork

    host, port = nds.discovery_address(env)
    server = env.get("LABKIT_DNS_SERVER", "")
    dns_host, _, dns_port = server.rpartition(":")
    search = tuple(env.get("LABKIT_DNS_SEARCH", "").split())
    root_cert = root / ROOT_CERT

    literal = _is_ip(host)

    def istiod() -> workload.Istiod:
        try:
            ip = host if literal or not (dns_host and dns_port.isdigit()) else \
                nds.resolve(host, (dns_host, int(dns_port)), search)
        except OSError as exc:
            raise AgentError(f"cannot find istiod: {exc}") from exc
        try:
            root_pem = root_cert.read_text()
        except OSError as exc:
            raise AgentError(f"no mesh root at {ROOT_CERT} (the istio-ca-root-cert ConfigMap): {exc}") from exc
        # Istio checks istiod's certificate against the host dialled, or istiod's own name when that is an IP.
        return workload.Istiod(f"{ip}:{port}", root_pem,
                               server_name=ISTIOD_NAME if literal else host.rstrip("."))

    credentials = workload.Credentials(root / TOKEN_PATH, env.get("ISTIO_META_CLUSTER_ID") or "Kubernetes")
    spiffe_id = (f"spiffe://{env.get('TRUST_DOMAIN') or 'cluster.local'}/ns/{env.get('POD_NAMESPACE', '')}"
                 f"/sa/{env.get('SERVICE_ACCOUNT') or 'default'}")
    return workload.WorkloadAgent(root, istiod, credentials, spiffe_id,
                                  lifetime=go_duration(env.get("SECRET_TTL", ""), workload.DEFAULT_LIFETIME),
                                  on_names=dns.update if dns is not None else None, sockets=(XDS_SOCKET, SDS_SOCKET))


def run_proxy(proxy_type: str, env: Mapping[str, str]) -> int:
    """Run Envoy and the agent for this pod until Envoy exits; returns the container's exit code."""
    root = Path(".")  # the pod's folder: short relative socket paths (a Unix socket path holds 107 bytes)
    config = prepare(proxy_type, env, root)
    envoy = find_envoy(env)
    argv = envoy_argv(str(envoy.path), BOOTSTRAP, drain_seconds(env))
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, close_fds=True,
                               # No thread runs yet, so preexec_fn is safe here.
                               preexec_fn=_die_with_parent(os.getpid()))  # noqa: PLW1509

    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s\t%(levelname)s\t%(name)s\t%(message)s")
    dns = agent = None
    try:
        dns = _start_dns_proxy(env, proxy_type)
        agent = AgentThread(workload_agent(proxy_type, env, config, root, dns))
        agent.start()
        code = process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if agent is not None:
            agent.stop()
        if dns is not None:
            dns.stop()
    return 128 - code if code < 0 else code


def _start_dns_proxy(env: Mapping[str, str], proxy_type: str) -> dnsproxy.DnsProxy | None:
    """The DNS proxy, when the proxy's metadata asks for it (``ISTIO_META_DNS_CAPTURE``) and it is a sidecar."""
    dns = dnsproxy.from_environment(env, proxy_type)
    if dns is None:
        return None
    try:
        dns.start()
    except OSError as exc:
        raise AgentError(f"cannot serve the pod's DNS on {dns.host}:{dns.port}: {exc}") from exc
    # Until istiod's table arrives over NDS, every name goes to the cluster DNS.
    dns.update(NameTable())
    return dns


def request(method: str, path: str, env: Mapping[str, str], body: str = "") -> int:
    """``pilot-agent request``: Envoy's admin answer to ``method path``, body printed exactly."""
    import http.client  # noqa: PLC0415 - only this command needs it

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
