"""A small asynchronous Kubernetes client for istiod: list, watch, get, create — over real HTTPS.

istiod reads its own cluster with its service account's token and every remote cluster with the
kubeconfig of a remote secret, exactly as the real one does; so its access is real: a revoked token or
a wrong server address shows up as a failing informer and a ``timeout`` in ``remote-clusters``. (The
emulator may not import the official client, and istiod needs only these few verbs.)

An :class:`Informer` keeps a cache of one resource type by list-then-watch, resuming from the last
resourceVersion and re-listing after a 410, and calls back on every change.

Failures are the error tree's :class:`~labkit.errors.KubeApiError` carrying the server's ``Status``
(:class:`labkit.core.wire.Status`), as on the client side; ``code`` 0 means no server answered (unreachable,
timed out, or a kubeconfig naming none).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml

from labkit.core.wire import Obj, Status
from labkit.emulator.schemas.decoding import FAST_YAML
from labkit.errors import KubeApiError

_log = logging.getLogger(__name__)


def _refused(code: int, text: str) -> KubeApiError:
    """The server's answer to a failed request: its Status when it sent one, else its text."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    status: Status = body if isinstance(body, dict) else {}
    return KubeApiError(code, str(status.get("reason", "")), str(status.get("message", text)), dict(status))


def _unanswered(message: str) -> KubeApiError:
    """No server answered (code 0): unreachable, timed out, or no usable kubeconfig."""
    return KubeApiError(0, "", message)


@dataclass(frozen=True)
class Credentials:
    """Where an API server is and how to authenticate to it."""

    server: str
    token: str
    ca_pem: str

    @classmethod
    def in_cluster(cls, directory: Path, host: str, port: str | int) -> Credentials:
        """A pod's own credentials: its service-account token directory and ``KUBERNETES_SERVICE_*``."""
        return cls(f"https://{host}:{port}", (directory / "token").read_text().strip(),
                   (directory / "ca.crt").read_text())

    @classmethod
    def from_kubeconfig(cls, text: str) -> Credentials:
        """The current context of a kubeconfig (what a remote secret holds): server, CA data, bearer token."""
        config = yaml.load(text, Loader=FAST_YAML)
        if not isinstance(config, dict):
            raise _unanswered("the kubeconfig is not a YAML mapping")
        contexts = {c["name"]: c["context"] for c in config.get("contexts") or []}
        current = config.get("current-context") or next(iter(contexts), None)
        context = contexts.get(current or "")
        if context is None:
            raise _unanswered(f"the kubeconfig has no context {current!r}")
        clusters = {c["name"]: c["cluster"] for c in config.get("clusters") or []}
        users = {u["name"]: u["user"] for u in config.get("users") or []}
        cluster, user = clusters.get(context.get("cluster")), users.get(context.get("user"))
        if not cluster or not user:
            raise _unanswered("the kubeconfig's context names a cluster or user it does not define")
        ca = cluster.get("certificate-authority-data")
        return cls(cluster.get("server", ""), user.get("token", ""),
                   base64.b64decode(ca).decode() if ca else "")


class KubeClient:
    """Requests to one API server."""

    def __init__(self, credentials: Credentials, *, timeout: float = 10.0):
        self.credentials = credentials
        # ssl wants a file or cadata; cadata avoids temp files and works with PEM text. The machine's trust store is
        # loaded (a tenth of a second) only when the credentials bring no CA of their own.
        self._ssl = ssl.create_default_context(cadata=credentials.ca_pem) if credentials.ca_pem \
            else ssl.create_default_context()
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                base_url=self.credentials.server,
                headers={"Authorization": f"Bearer {self.credentials.token}", "Accept": "application/json"},
                # No pool limit: every watch holds a connection for minutes, and istiod runs a dozen of them;
                # a capped pool would leave later informers waiting forever for a free connection.
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=0))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, *, body: Obj | None = None, params: dict[str, str] | None = None,
                      content_type: str = "application/json") -> Obj:
        """One request; raises :class:`~labkit.errors.KubeApiError` with the Status message on failure."""
        try:
            async with self._http().request(
                    method, path, params=params, data=json.dumps(body) if body is not None else None,
                    headers={"Content-Type": content_type} if body is not None else None,
                    timeout=aiohttp.ClientTimeout(total=self._timeout)) as response:
                text = await response.text()
                if response.status >= 400:
                    raise _refused(response.status, text)
                return json.loads(text) if text else {}
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _unanswered(f"{type(exc).__name__}: {exc}") from exc

    async def get(self, path: str) -> Obj | None:
        """An object, or ``None`` when absent."""
        try:
            return await self.request("GET", path)
        except KubeApiError as exc:
            if exc.code == 404:
                return None
            raise

    async def watch(self, path: str, resource_version: str) -> AsyncIterator[Obj]:
        """Watch events after ``resource_version`` until the server closes the stream."""
        params = {"watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                  "timeoutSeconds": "300"}
        try:
            async with self._http().get(path, params=params, timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self._timeout)) as response:
                if response.status >= 400:
                    raise _refused(response.status, await response.text())
                async for line in response.content:
                    if line.strip():
                        yield json.loads(line)
        except (aiohttp.ClientError, OSError) as exc:
            raise _unanswered(f"{type(exc).__name__}: {exc}") from exc


class Informer:
    """A watched cache of one resource type.

    Args:
        client: the API server to read.
        path: the collection path, e.g. ``/api/v1/services`` or ``/apis/networking.istio.io/v1/gateways``.
        on_change: called (synchronously) after every change of the cache.
        name: for logs.
    """

    def __init__(self, client: KubeClient, path: str, on_change: Callable[[], None], name: str = ""):
        self.client = client
        self.path = path
        self.on_change = on_change
        self.name = name or path
        self.items: dict[tuple[str, str], Obj] = {}
        self.synced = asyncio.Event()
        self.error: str | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"informer {self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def values(self) -> list[Obj]:
        return list(self.items.values())

    async def _run(self) -> None:
        delay = 0.2
        while True:
            try:
                listed = await self.client.request("GET", self.path)
                self.items = {_key(o): o for o in listed.get("items") or []}
                version = listed.get("metadata", {}).get("resourceVersion", "0")
                self.error = None
                self.synced.set()
                self.on_change()
                delay = 0.2
                while True:
                    async for event in self.client.watch(self.path, version):
                        kind, obj = event.get("type"), event.get("object") or {}
                        if kind == "ERROR":
                            raise KubeApiError(int(obj.get("code", 0)), str(obj.get("reason", "")),
                                               str(obj.get("message", "watch error")), obj)
                        version = obj.get("metadata", {}).get("resourceVersion", version)
                        if kind == "BOOKMARK":
                            continue
                        if kind == "DELETED":
                            self.items.pop(_key(obj), None)
                        else:
                            self.items[_key(obj)] = obj
                        self.on_change()
            except asyncio.CancelledError:
                raise
            except KubeApiError as exc:
                self.error = exc.message
                if exc.code != 410:
                    _log.debug("%s: %s; retrying in %.1f s", self.name, exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            except Exception as exc:  # a bug must not stop the informer for good
                self.error = f"{type(exc).__name__}: {exc}"
                _log.exception("%s failed", self.name)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace", ""), meta.get("name", ""))

