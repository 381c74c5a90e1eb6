"""One API client per kubeconfig context, and the translation of its errors into labkit's.

Notebook cells call labkit many times against the same few clusters, so clients are cached per
(context, kubeconfig file): TLS contexts and connection pools are built once. The DynamicClient caches
discovery in a file, by default one per *host* in the system temp dir, shared by every process: an
emulator restarted on the same address with other CRDs would then be described by yesterday's file
(kube-api.md). Each labkit process therefore gets a private cache directory, removed at exit.

Whether a context is an embedded cluster is read off its nodes (``containerRuntimeVersion`` starts
with ``labkit://``), through the API like everything else: labkit.kube never imports the emulator.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, NoReturn

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.dynamic import DynamicClient

from labkit.errors import KubeApiError, LabkitError
from labkit.kube.contexts import ContextRef, kubeconfig_paths, list_contexts, resolve

ApiClient = client.ApiClient
EMBEDDED_RUNTIME_PREFIX = "labkit://"
_HANDSHAKE_SEPARATOR = " -+-+- "

_lock = threading.Lock()
_clients: dict[tuple[str, str], client.ApiClient] = {}
_dynamic: dict[tuple[str, str], DynamicClient] = {}
_embedded: dict[tuple[str, str], bool] = {}


@functools.cache
def _cache_dir() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="labkit-discovery-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _key(context: ContextRef, kubeconfig: Path | str | None) -> tuple[str, str]:
    context, kubeconfig = resolve(context, kubeconfig)
    if kubeconfig and os.pathsep in str(kubeconfig):  # KUBECONFIG may list several files
        return context, str(kubeconfig)
    files = str(Path(kubeconfig).resolve()) if kubeconfig else os.pathsep.join(str(p) for p in kubeconfig_paths())
    return context, files


def client_for(context: ContextRef, kubeconfig: Path | str | None = None) -> client.ApiClient:
    """The API client for a kubeconfig context (cached per context and kubeconfig file).

    Args:
        context: the kubeconfig context, e.g. ``cluster1``.
        kubeconfig: the kubeconfig file; by default ``KUBECONFIG`` or ``~/.kube/config``.

    Raises:
        LabkitError: the context is not in the kubeconfig (the message lists the ones that are).
    """
    context, kubeconfig = resolve(context, kubeconfig)
    # Resolved on every call: the official client reads KUBECONFIG only once, when it is imported, and a
    # notebook exports it later (after `labkit.up()`).
    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or None
    key = _key(context, kubeconfig)
    with _lock:
        found = _clients.get(key)
        if found is not None:
            return found
        try:
            api = config.new_client_from_config(config_file=str(kubeconfig) if kubeconfig else None, context=context)
        except (ConfigException, OSError) as exc:
            raise LabkitError(_context_message(context, kubeconfig, exc)) from exc
        _clients[key] = api
        return api


def dynamic_for(context: ContextRef, kubeconfig: Path | str | None = None) -> DynamicClient:
    """A DynamicClient for ``context`` whose discovery cache is private to this process.

    Args:
        context: the kubeconfig context.
        kubeconfig: the kubeconfig file; by default ``KUBECONFIG`` or ``~/.kube/config``.
    """
    context, kubeconfig = resolve(context, kubeconfig)
    key = _key(context, kubeconfig)
    api = client_for(context, kubeconfig)
    with _lock:
        found = _dynamic.get(key)
        if found is not None:
            return found
    digest = hashlib.sha256("\0".join(key).encode()).hexdigest()[:16]
    try:
        dyn = DynamicClient(api, cache_file=str(_cache_dir() / f"{digest}.json"))
    except ApiException as exc:
        raise_api_error(exc, f"discovering the API of context {context!r}")
    except urllib3.exceptions.HTTPError as exc:
        # The first request to a context: where a stopped emulator or a wrong server URL shows up.
        raise KubeApiError(0, "Unreachable", f"cannot reach the API server of context {context!r} at "
                                             f"{api.configuration.host} ({type(exc).__name__}); for embedded "
                                             f"clusters check `labkit status` and start them with `labkit up`") from exc
    with _lock:
        return _dynamic.setdefault(key, dyn)


def is_embedded(context: ContextRef, kubeconfig: Path | str | None = None) -> bool:
    """Whether ``context`` is one of labkit's embedded clusters (its nodes run ``labkit://`` processes).

    Args:
        context: the kubeconfig context.
        kubeconfig: the kubeconfig file; by default ``KUBECONFIG`` or ``~/.kube/config``.
    """
    context, kubeconfig = resolve(context, kubeconfig)
    key = _key(context, kubeconfig)
    if key in _embedded:
        return _embedded[key]
    dyn = dynamic_for(context, kubeconfig)
    # Raw JSON, not the typed models: those insist on node fields (bootID, machineID …) a process node has not.
    try:
        nodes = dyn.get(dyn.resources.get(api_version="v1", kind="Node")).to_dict().get("items") or []
    except ApiException as exc:
        raise_api_error(exc, f"listing the nodes of context {context!r}")
    embedded = any(str(((node.get("status") or {}).get("nodeInfo") or {}).get("containerRuntimeVersion", ""))
                   .startswith(EMBEDDED_RUNTIME_PREFIX) for node in nodes)
    _embedded[key] = embedded
    return embedded


def forget_clients() -> None:
    """Drop every cached client, e.g. after ``labkit down``/``up`` replaced the clusters behind the contexts."""
    with _lock:
        for api in _clients.values():
            api.close()
        _clients.clear()
        _dynamic.clear()
        _embedded.clear()


def status_of(exc: ApiException) -> dict[str, Any]:
    """The Kubernetes Status an ApiException carries (empty when the body is not one)."""
    text = exc.body
    if not text and exc.reason and _HANDSHAKE_SEPARATOR in str(exc.reason):
        # A refused exec upgrade: the websocket client folds status, headers and body into ``reason``.
        text = str(exc.reason).rsplit(_HANDSHAKE_SEPARATOR, 1)[1]
    try:
        body = json.loads(text or "{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def api_error(exc: ApiException, doing: str = "") -> KubeApiError:
    """``exc`` as a :class:`~labkit.errors.KubeApiError` whose message says what labkit was doing.

    Args:
        exc: the client's exception.
        doing: what was being attempted, e.g. ``applying service sample/helloworld``.
    """
    status = status_of(exc)
    code = int(status.get("code") or exc.status or 0)
    reason = str(status.get("reason") or exc.reason or "")
    message = str(status.get("message") or exc.reason or "request failed")
    return KubeApiError(code, reason, f"{doing}: {message}" if doing else message, status)


def raise_api_error(exc: ApiException, doing: str = "") -> NoReturn:
    """Raise :func:`api_error` of ``exc`` from ``exc``."""
    raise api_error(exc, doing) from exc


def _context_message(context: ContextRef, kubeconfig: Path | str | None, exc: Exception) -> str:
    where = str(kubeconfig) if kubeconfig else os.pathsep.join(str(p) for p in kubeconfig_paths())
    known = [c.name for c in list_contexts(kubeconfig)]
    listing = ", ".join(known) if known else "none"
    return (f"cannot use kubeconfig context {context!r} from {where} ({exc}); contexts there: {listing}. "
            f"Start the embedded clusters with `labkit up` or pass the kubeconfig that has it.")


def server_version(context: ContextRef, kubeconfig: Path | str | None = None) -> str:
    """The API server's ``gitVersion`` (``v1.32.0``).

    Raises:
        LabkitError: the server cannot be reached.
    """
    try:
        return client.VersionApi(client_for(context, kubeconfig)).get_code().git_version
    except (ApiException, OSError, urllib3.exceptions.HTTPError) as exc:
        raise LabkitError(f"context {context}: the API server does not answer ({exc})") from exc
