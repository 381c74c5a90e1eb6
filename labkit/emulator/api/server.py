"""The HTTP face of one embedded cluster: the Kubernetes REST API over aiohttp.

Everything a request needs is decided here in a fixed order, as a real API server does it:
authenticate → route (discovery, OpenAPI, or ``/api[s]/…`` resources) → authorize (RBAC) → decode the
body (JSON, YAML for apply, protobuf from kubectl) → the admission chain (:mod:`.admission`: defaulting,
mutating webhooks, validation, allocation, validating webhooks) → one store write → encode (JSON or a
server-side Table, :mod:`.tables`). Webhooks are HTTPS calls, which is why the write paths are coroutines.
Failures anywhere are :class:`StatusError` and leave as a ``Status`` body with the right code, so
clients branch on ``reason`` as they would on a real cluster.

The server owns no cluster behaviour: what happens to an object before it is stored is the
:class:`~.admission.AdmissionChain`'s, exec and logs are the node's (:mod:`.streams`), so this module stays
the protocol and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import yaml
from aiohttp import web

from labkit.core import kubetime
from labkit.core.wire import Obj
from labkit.emulator import schemas
from labkit.emulator.api import discovery, openapi, protobuf, tables
from labkit.emulator.api.access import REVIEWS, impersonate, review
from labkit.emulator.api.admission import AdmissionChain, validate_name
from labkit.emulator.api.auth import Authenticator, Authorizer, Request, User
from labkit.emulator.api.resources import Registry, ResourceType
from labkit.emulator.apimachinery import apply, json_patch, merge_patch, record_update, status, strategic_merge_patch
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.controllers.pods import deletion_grace_period
from labkit.emulator.events import EventsView
from labkit.emulator.store import Store, WatchEvent, WatchFilter
from labkit.errors import InvalidSelectorError

_log = logging.getLogger(__name__)

JSON = "application/json"
_MAX_BODY = 16 * 1024 * 1024
# Request-scoped keys: the body's duplicate keys and the Warning headers of the response.
_DUPLICATES = web.RequestKey("labkit.duplicates", list)
_WARNINGS = web.RequestKey("labkit.warnings", list)


class PodIO(Protocol):
    """Exec, attach, logs and port-forward, served by the node runtime."""

    async def exec(self, namespace: str, name: str, container: str, argv: list[str], *,
                   stdin: bool, tty: bool, size: tuple[int, int] | None) -> Any: ...

    def logs(self, namespace: str, name: str, container: str, *, tail: int | None,
             previous: bool, timestamps: bool, since: float | None) -> bytes: ...

    def follow_logs(self, namespace: str, name: str, container: str, *, tail: int | None, timestamps: bool,
                    since: float | None) -> AsyncIterator[bytes]: ...

    async def attach(self, namespace: str, name: str, container: str) -> Any: ...

    async def connect(self, namespace: str, name: str,
                      port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]: ...


@dataclass(frozen=True)
class Target:
    """What a resource URL points at."""

    rt: ResourceType
    namespace: str | None  # None: all namespaces (list/watch) or a cluster-scoped resource
    name: str
    subresource: str

    @property
    def group(self) -> str:
        return self.rt.group

    @property
    def plural(self) -> str:
        return self.rt.plural


def _json_response(body: Obj, code: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body, separators=(",", ":")), status=code, content_type=JSON)


class ApiServer:
    """The REST API of one cluster.

    Args:
        cluster: the cluster's name (for logs).
        store: its objects.
        registry: the resource types it serves (built-ins and CRDs).
        authenticator: bearer-token checks.
        admission: the admission chain every write passes through.
        server_address: ``host:port`` advertised in ``/api``.
    """

    def __init__(self, *, cluster: str, store: Store, registry: Registry, authenticator: Authenticator,
                 admission: AdmissionChain, server_address: str):
        self.cluster = cluster
        self.store = EventsView(store)  # events.k8s.io/v1 is another face of the core/v1 Events
        self.registry = registry
        self.authenticator = authenticator
        self.authorizer = Authorizer(store)
        self.admission = admission
        self.definitions = schemas.definitions(discovery.KUBERNETES_VERSION)  # read on first use
        self.server_address = server_address
        self._stream_handlers: dict[str, Callable[[web.Request, Target, User], Awaitable[web.StreamResponse]]] = {}

    def add_stream_handler(self, subresource: str,
                           handler: Callable[[web.Request, Target, User], Awaitable[web.StreamResponse]]) -> None:
        """Serve a streaming subresource (``exec``, ``log``) of pods with ``handler``."""
        self._stream_handlers[subresource] = handler

    def app(self) -> web.Application:
        """The aiohttp application."""
        application = web.Application(client_max_size=_MAX_BODY)
        application.router.add_route("*", "/{tail:.*}", self._handle)
        return application

    # --- entry ---------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            if request.path in ("/healthz", "/readyz", "/livez"):
                return web.Response(text="ok")
            user = impersonate(self.authenticator.authenticate(request.headers.get("Authorization")),
                               request.headers, self.authorizer)
            response = await self._route(request, user)
            for warning in request.get(_WARNINGS, ()):
                # RFC 7234 warn-code 299, as the API server sends them; kubectl prints "Warning: <text>".
                response.headers.add("Warning", '299 - "' + warning.replace('"', '\\"') + '"')
            return response
        except InvalidSelectorError as exc:
            error = status.bad_request(str(exc))
            return _json_response(error.to_status(), error.code)
        except StatusError as exc:
            if exc.code >= 500:
                _log.error("%s %s %s: %s", self.cluster, request.method, request.path_qs, exc.message)
            return _json_response(exc.to_status(), exc.code)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:
            _log.exception("%s %s %s failed", self.cluster, request.method, request.path_qs)
            error = status.internal(f"{type(exc).__name__}: {exc}")
            return _json_response(error.to_status(), 500)

    async def _route(self, request: web.Request, user: User) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        parts = path.strip("/").split("/")
        if path == "/version":
            return _json_response(discovery.version_info())
        if path.startswith("/openapi"):
            return self._openapi(path, request)
        if parts[0] == "api" and len(parts) <= 2:
            self.authorizer.authorize(user, Request("get", path=path))
            body = discovery.api_versions(self.server_address) if len(parts) == 1 else \
                discovery.api_resource_list(self.registry, "", parts[1])
            return self._found(body, path)
        if parts[0] == "apis" and len(parts) <= 3:
            self.authorizer.authorize(user, Request("get", path=path))
            if len(parts) == 1:
                return _json_response(discovery.api_group_list(self.registry))
            body = discovery.api_group(self.registry, parts[1]) if len(parts) == 2 else \
                discovery.api_resource_list(self.registry, parts[1], parts[2])
            return self._found(body, path)
        if parts[0] not in ("api", "apis"):
            raise StatusError(404, "NotFound", f"the server could not find the requested resource ({path})")
        target = self._target(parts)
        return await self._resource(request, user, target)

    def _found(self, body: Obj | None, path: str) -> web.Response:
        if body is None:
            raise StatusError(404, "NotFound", f"the server could not find the requested resource ({path})")
        return _json_response(body)

    def _openapi(self, path: str, request: web.Request) -> web.Response:
        if path == "/openapi/v3":
            return _json_response(openapi.openapi_index(self.registry))
        document = openapi.document_for_path(self.registry, request.path_qs) if path.startswith("/openapi/v3/") \
            else None
        return self._found(document, path)

    def _target(self, parts: list[str]) -> Target:
        if parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        else:
            group, version, rest = parts[1], parts[2], parts[3:]
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces" and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3 and rest[2] == "proxy":
            rest = rest[:3]  # the rest of the path is the proxied one, the handler's to take from the request
        if not rest or len(rest) > 3:
            raise StatusError(404, "NotFound", f"the server could not find the requested resource "
                                               f"(/{'/'.join(parts)})")
        rt = self.registry.get(group, version, rest[0])
        if rt is None:
            raise StatusError(404, "NotFound", f"the server could not find the requested resource "
                                               f"(/{'/'.join(parts)})")
        if namespace is not None and not rt.namespaced:
            raise StatusError(404, "NotFound", f"the server could not find the requested resource "
                                               f"(/{'/'.join(parts)})")
        name = rest[1] if len(rest) > 1 else ""
        subresource = rest[2] if len(rest) > 2 else ""
        if subresource and rt.subresource(subresource) is None:
            raise StatusError(404, "NotFound", f"the server could not find the requested resource "
                                               f"({rt.plural}/{subresource})")
        return Target(rt, namespace, name, subresource)

    # --- resources ----------------------------------------------------------------------------------

    async def _resource(self, request: web.Request, user: User, target: Target) -> web.StreamResponse:
        method, query = request.method, request.query
        watching = query.get("watch") in ("true", "1")
        if method == "GET":
            verb = "watch" if watching else ("get" if target.name else "list")
        elif method == "POST":
            verb = "create"
        elif method == "PUT":
            verb = "update"
        elif method == "PATCH":
            verb = "patch"
        elif method == "DELETE":
            verb = "delete" if target.name else "deletecollection"
        else:
            raise status.method_not_allowed(f"{method} is not supported")
        if target.subresource in ("exec", "attach", "portforward"):
            verb = "create"  # kubectl upgrades a GET, RBAC checks pods/exec create as a real server does
        self.authorizer.authorize(user, Request(verb, target.group, target.plural, target.subresource,
                                                target.namespace or "", target.name))
        if target.subresource in self._stream_handlers:
            return await self._stream_handlers[target.subresource](request, target, user)
        dry_run = "All" in query.getall("dryRun", [])

        if verb == "watch":
            return await self._watch(request, target)
        if verb == "list":
            return self._list(request, target)
        if verb == "get":
            return self._get(request, target)
        if verb == "create":
            if (target.group, target.plural) in REVIEWS:
                return _json_response(review(target.group, target.plural, await self._body(request), user,
                                             self.authorizer, self.authenticator), 201)
            if target.subresource == "token":
                return self._token_request(target, await self._body(request))
            return await self._create(request, target, await self._body(request), user, dry_run)
        if verb == "update":
            return await self._update(request, target, await self._body(request), user, dry_run)
        if verb == "patch":
            return await self._patch(request, target, await request.read(), user, dry_run)
        if verb == "delete":
            return self._delete(target, await self._delete_options(request), dry_run)
        return self._delete_collection(request, target, dry_run)

    async def _body(self, request: web.Request) -> Obj:
        raw = await request.read()
        content_type = request.headers.get("Content-Type", JSON).split(";")[0].strip()
        if content_type == protobuf.CONTENT_TYPE:
            return protobuf.decode_object(raw)
        try:
            if "yaml" in content_type:
                body, _ = schemas.decoding.loads_yaml(raw)
            else:
                body, request[_DUPLICATES] = schemas.decoding.loads_json(raw or b"{}")
        except (ValueError, yaml.YAMLError) as exc:
            raise status.bad_request(f"the request body is not valid {content_type}: {exc}") from exc
        if not isinstance(body, dict):
            raise status.bad_request("the request body must be a JSON object")
        return body

    async def _delete_options(self, request: web.Request) -> Obj:
        raw = await request.read()
        options: Obj = {}
        if raw.strip():
            try:
                options = json.loads(raw)
            except ValueError as exc:
                raise status.bad_request(f"DeleteOptions is not valid JSON: {exc}") from exc
        if "propagationPolicy" in request.query:
            options["propagationPolicy"] = request.query["propagationPolicy"]
        if "gracePeriodSeconds" in request.query:
            try:
                options["gracePeriodSeconds"] = int(request.query["gracePeriodSeconds"])
            except ValueError as exc:
                raise status.bad_request(f"gracePeriodSeconds must be an integer: {exc}") from exc
        return options

    def _key(self, target: Target, name: str | None = None) -> tuple[str, str, str, str]:
        return (target.group, target.plural, name if name is not None else target.name, target.namespace or "")

    def _load(self, target: Target) -> Obj:
        group, plural, name, namespace = self._key(target)
        return self.store.get(group, plural, name, namespace)

    def _encode(self, request: web.Request, target: Target, obj: Obj, code: int = 200) -> web.Response:
        if target.rt.crd:
            obj = schemas.served_as(target.rt.group_version, obj)
        version = tables.table_version(request.headers.get("Accept", ""))
        if version and not target.subresource:
            table = tables.render_table(target.rt, obj, now=dt.datetime.now(dt.UTC), api_version=version,
                                        include_object=request.query.get("includeObject", "Metadata"))
            return _json_response(table, code)
        return _json_response(obj, code)

    def _get(self, request: web.Request, target: Target) -> web.Response:
        obj = self._load(target)
        if target.subresource == "scale":
            return _json_response(_scale_of(target.rt, obj))
        return self._encode(request, target, obj)

    def _list(self, request: web.Request, target: Target) -> web.Response:
        result = self.store.list(target.group, target.plural, namespace=target.namespace,
                                 label_selector=request.query.get("labelSelector", ""),
                                 field_selector=request.query.get("fieldSelector", ""))
        if target.rt.crd:
            result = replace(result, items=[schemas.served_as(target.rt.group_version, item) for item in result.items])
        version = tables.table_version(request.headers.get("Accept", ""))
        if version:
            table = tables.render_table(target.rt, result.items, now=dt.datetime.now(dt.UTC), api_version=version,
                                        include_object=request.query.get("includeObject", "Metadata"),
                                        resource_version=result.resource_version)
            return _json_response(table)
        return _json_response({"kind": target.rt.list_kind, "apiVersion": target.rt.group_version,
                               "metadata": {"resourceVersion": result.resource_version},
                               "items": result.items})

    async def _watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        flt = WatchFilter.parse(target.group, target.plural, target.namespace,
                                request.query.get("labelSelector", ""), request.query.get("fieldSelector", ""))
        if target.name:
            flt = WatchFilter.parse(target.group, target.plural, target.namespace,
                                    request.query.get("labelSelector", ""), f"metadata.name={target.name}")
        timeout = float(request.query.get("timeoutSeconds") or 1800)
        bookmarks = request.query.get("allowWatchBookmarks") in ("true", "1")
        table = tables.table_version(request.headers.get("Accept", ""))
        include_object = request.query.get("includeObject", "Metadata")
        response = web.StreamResponse(headers={"Content-Type": JSON})
        response.enable_chunked_encoding()
        queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
        try:
            unsubscribe = self.store.watch(flt, request.query.get("resourceVersion"), queue.put_nowait)
        except StatusError as exc:
            await response.prepare(request)
            await response.write(_line({"type": "ERROR", "object": exc.to_status()}))
            return response
        await response.prepare(request)
        deadline = asyncio.get_running_loop().time() + timeout
        headers_sent = False
        try:
            while True:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=min(remaining, 30.0))
                    if target.rt.crd:
                        event = replace(event, object=schemas.served_as(target.rt.group_version, event.object))
                except TimeoutError:
                    if bookmarks:
                        mark = {"kind": target.rt.kind, "apiVersion": target.rt.group_version,
                                "metadata": {"resourceVersion": self.store.resource_version}}
                        await response.write(_line({"type": "BOOKMARK", "object": mark}))
                    continue
                if table:
                    payload = tables.table_watch_event(event.type, event.object, target.rt,
                                                       now=dt.datetime.now(dt.UTC), include_object=include_object,
                                                       api_version=table, include_headers=not headers_sent)
                    headers_sent = True
                else:
                    payload = {"type": event.type, "object": event.object}
                await response.write(_line(payload))
        except (ConnectionResetError, RuntimeError):
            pass  # the client went away
        finally:
            unsubscribe()
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await response.write_eof()
        return response

    # --- writes -------------------------------------------------------------------------------------

    def _prepare(self, target: Target, obj: Obj, name: str | None) -> Obj:
        """Check type, name and namespace of a submitted object against the URL."""
        rt = target.rt
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if api_version and api_version != rt.group_version:
            raise status.bad_request(f"the API version in the data ({api_version}) does not match the expected "
                                     f"API version ({rt.group_version})")
        if kind and kind != rt.kind:
            raise status.bad_request(f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})")
        obj = copy.deepcopy(obj)
        obj["apiVersion"], obj["kind"] = rt.group_version, rt.kind
        metadata = obj.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise status.bad_request("metadata must be an object")
        if name is not None and metadata.get("name") not in (None, "", name):
            raise status.bad_request(f"the name of the object ({metadata.get('name')}) does not match the name on "
                                     f"the URL ({name})")
        if name:
            metadata["name"] = name
        if rt.namespaced:
            namespace = target.namespace or metadata.get("namespace") or "default"
            if target.namespace and metadata.get("namespace") not in (None, "", target.namespace):
                raise status.bad_request("the namespace of the provided object does not match the namespace sent "
                                         "on the request")
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        validate_name(rt, obj)
        return obj

    def _strictly(self, request: web.Request, target: Target, obj: Obj, operation: str, patch: Any = None) -> Obj:
        """Field validation of a write to the main resource (see :mod:`labkit.emulator.schemas`).

        Returns the object without the fields a real server would drop; queues the response's warnings.
        """
        if target.subresource:
            return obj
        rt = target.rt
        try:
            how = schemas.directive(request.query.get("fieldValidation"))
        except ValueError as exc:
            raise status.bad_request(str(exc)) from exc
        checked, warnings = schemas.check_body(
            self.definitions, group=rt.group, version=rt.version, kind=rt.kind, crd_schema=rt.schema,
            custom=bool(rt.crd), obj=obj, duplicates=request.get(_DUPLICATES, []), how=how, operation=operation,
            patch=patch)
        if warnings:
            request.setdefault(_WARNINGS, []).extend(warnings)
        return checked

    def _manager(self, request: web.Request, default: str) -> str:
        manager = request.query.get("fieldManager")
        if manager:
            return manager
        agent = request.headers.get("User-Agent", "")
        return agent.split("/")[0] if agent else default

    async def _create(self, request: web.Request, target: Target, body: Obj, user: User,
                      dry_run: bool) -> web.Response:
        if target.name and not target.subresource:
            raise status.method_not_allowed("POST is not allowed on a named resource; use PUT or PATCH")
        obj = self._prepare(target, self._strictly(request, target, body, "create"), None)
        self.admission.check_namespace(target.rt, obj)
        created = await self._store_new(target, obj, self._manager(request, "unknown"), user, dry_run)
        return self._encode(request, target, created, 201)

    async def _admit(self, target: Target, obj: Obj, old: Obj | None, user: User, dry_run: bool) -> Obj:
        return await self.admission.admit(target.rt, obj, old, user, dry_run=dry_run, subresource=target.subresource)

    async def create_as(self, user: User, group: str, version: str, plural: str, obj: Obj, manager: str) -> Obj:
        """Create an object on behalf of an in-process client (a controller), through full admission.

        Controllers of a real cluster write through the API server; doing the same here makes sidecar
        injection and validation apply to the pods a ReplicaSet creates.
        """
        rt = self.registry.get(group, version, plural)
        if rt is None:
            raise status.not_found(plural, (obj.get("metadata") or {}).get("name", ""), group)
        namespace = (obj.get("metadata") or {}).get("namespace") if rt.namespaced else None
        target = Target(rt, namespace, "", "")
        prepared = self._prepare(target, obj, None)
        self.admission.check_namespace(target.rt, prepared)
        return await self._store_new(target, prepared, manager, user, False)

    async def _store_new(self, target: Target, obj: Obj, manager: str, user: User, dry_run: bool) -> Obj:
        uid = self._assign_uid(obj)
        obj = await self._admit(target, obj, None, user, dry_run)
        obj = record_update(None, obj, manager, kubetime.now(), status_subresource=self._has_status(target))
        if dry_run:
            return obj
        created = self.store.create(target.group, target.plural, obj, uid=uid)
        self._after_write(target, created)
        return created

    def _assign_uid(self, obj: Obj) -> str:
        """Fill ``metadata.uid`` of a new object before admission, as a real server does (a Job's selector names it)."""
        uid = self.store.new_uid()
        obj.setdefault("metadata", {})["uid"] = uid
        return uid

    async def _update(self, request: web.Request, target: Target, body: Obj, user: User,
                      dry_run: bool) -> web.Response:
        if target.subresource == "scale":
            live = self._load(target)
            replicas = (body.get("spec") or {}).get("replicas")
            new = copy.deepcopy(live)
            new.setdefault("spec", {})["replicas"] = replicas
            return _json_response(_scale_of(target.rt, await self._write(request, target, live, new, user, dry_run)))
        obj = self._prepare(target, self._strictly(request, target, body, "update"), target.name)
        live = self._load(target)
        written = await self._write(request, target, live, obj, user, dry_run)
        return self._encode(request, target, written)

    async def _write(self, request: web.Request, target: Target, live: Obj, new: Obj, user: User,
                     dry_run: bool) -> Obj:
        subresource = "status" if target.subresource in ("status", "finalize") else ""
        if not subresource:
            new = await self._admit(target, new, live, user, dry_run)
        new = record_update(live, new, self._manager(request, "unknown"), kubetime.now(), subresource=subresource,
                            status_subresource=self._has_status(target))
        if dry_run:
            return new
        if target.subresource == "finalize":
            written = self.store.replace_with(target.group, target.plural, new)
        else:
            written = self.store.replace_with(target.group, target.plural, new, subresource=subresource)
        self._after_write(target, written)
        return written

    async def _patch(self, request: web.Request, target: Target, raw: bytes, user: User,
                     dry_run: bool) -> web.Response:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        rt = target.rt
        if content_type == "application/apply-patch+yaml":
            return await self._apply(request, target, raw, user, dry_run)
        try:
            patch, request[_DUPLICATES] = schemas.decoding.loads_json(raw or b"{}")
        except ValueError as exc:
            raise status.bad_request(f"the patch is not valid JSON: {exc}") from exc
        live = self._load(target)
        base = _scale_of(rt, live) if target.subresource == "scale" else live
        if content_type == "application/merge-patch+json":
            patched = merge_patch(base, patch)
        elif content_type == "application/json-patch+json":
            patched = json_patch(base, patch)
        elif content_type == "application/strategic-merge-patch+json":
            if not rt.strategic:
                raise status.unsupported_media_type(
                    "the body of the request was in an unknown format - accepted media types include: "
                    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")
            patched = strategic_merge_patch(base, patch, (rt.group, rt.kind))
        else:
            raise status.unsupported_media_type(f"unsupported patch type {content_type!r}")
        if target.subresource == "scale":
            new = copy.deepcopy(live)
            new.setdefault("spec", {})["replicas"] = (patched.get("spec") or {}).get("replicas")
            return _json_response(_scale_of(rt, await self._write(request, target, live, new, user, dry_run)))
        new = self._prepare(target, self._strictly(request, target, patched, "patch", patch), target.name)
        return self._encode(request, target, await self._write(request, target, live, new, user, dry_run))

    async def _apply(self, request: web.Request, target: Target, raw: bytes, user: User,
                     dry_run: bool) -> web.Response:
        try:
            applied, request[_DUPLICATES] = schemas.decoding.loads_yaml(raw)
        except yaml.YAMLError as exc:
            raise status.bad_request(f"the applied configuration is not valid YAML: {exc}") from exc
        if not isinstance(applied, dict):
            raise status.bad_request("the applied configuration must be an object")
        manager = request.query.get("fieldManager")
        if not manager:
            raise status.bad_request("PATCH, application/apply-patch+yaml requires fieldManager to be set")
        force = request.query.get("force") in ("true", "1")
        applied = self._prepare(target, self._strictly(request, target, applied, "apply"), target.name)
        group, plural, name, namespace = self._key(target)
        live = self.store.find(group, plural, name, namespace)
        merged = apply(live, applied, manager, kind_key=(target.group, target.rt.kind), force=force, now=kubetime.now(),
                       status_subresource=self._has_status(target))
        if live is None:
            self.admission.check_namespace(target.rt, merged)
            uid = self._assign_uid(merged)
            merged = await self._admit(target, merged, None, user, dry_run)
            if dry_run:
                return self._encode(request, target, merged, 201)
            created = self.store.create(group, plural, merged, uid=uid)
            self._after_write(target, created)
            return self._encode(request, target, created, 201)
        merged = await self._admit(target, merged, live, user, dry_run)
        if dry_run:
            return self._encode(request, target, merged)
        written = self.store.replace_with(group, plural, merged)
        self._after_write(target, written)
        return self._encode(request, target, written)

    def _delete(self, target: Target, options: Obj, dry_run: bool) -> web.Response:
        live = self._load(target)
        if dry_run:
            return _json_response(live)
        propagation = options.get("propagationPolicy") or ("Orphan" if options.get("orphanDependents") else
                                                            "Background")
        preconditions = options.get("preconditions") or {}
        prepared = self.admission.deleting(live, propagation)
        if prepared is not None:
            live = self.store.replace_with(target.group, target.plural, prepared)
        # A running pod goes Terminating for its grace period; its node removes it once its processes are gone.
        grace = (deletion_grace_period(live, options.get("gracePeriodSeconds"))
                 if (target.group, target.plural) == ("", "pods") else 0)
        deleted = self.store.delete(target.group, target.plural, target.name, target.namespace or "",
                                    uid=preconditions.get("uid"), resource_version=preconditions.get("resourceVersion"),
                                    grace_period=grace)
        self._after_delete(target, deleted)
        return _json_response(deleted)

    def _delete_collection(self, request: web.Request, target: Target, dry_run: bool) -> web.Response:
        result = self.store.list(target.group, target.plural, namespace=target.namespace,
                                 label_selector=request.query.get("labelSelector", ""),
                                 field_selector=request.query.get("fieldSelector", ""))
        if not dry_run:
            for item in result.items:
                meta = item["metadata"]
                one = Target(target.rt, meta.get("namespace") or None, meta["name"], "")
                with contextlib.suppress(StatusError):
                    self._delete(one, {}, dry_run)
        return _json_response({"kind": target.rt.list_kind, "apiVersion": target.rt.group_version,
                               "metadata": {"resourceVersion": self.store.resource_version},
                               "items": result.items})

    def _token_request(self, target: Target, body: Obj) -> web.Response:
        account = self._load(target)
        seconds = int((body.get("spec") or {}).get("expirationSeconds") or 3600)
        if seconds < 600:
            raise status.invalid("TokenRequest", target.name, [(
                "spec.expirationSeconds", f"Invalid value: {seconds}: may not specify a duration less than 10 minutes",
            )], "authentication.k8s.io")
        audiences = (body.get("spec") or {}).get("audiences") or []
        token, expires = self.authenticator.issue_bound_token(target.namespace or "", target.name,
                                                              account["metadata"]["uid"], seconds, audiences)
        stamp = kubetime.format_time(expires)
        return _json_response({
            "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": target.name, "namespace": target.namespace},
            "spec": {"audiences": audiences, "expirationSeconds": seconds},
            "status": {"token": token, "expirationTimestamp": stamp},
        }, 201)

    def _has_status(self, target: Target) -> bool:
        return self.store.has_status_subresource(target.group, target.plural)

    def _after_write(self, target: Target, obj: Obj) -> None:
        if (target.group, target.plural) == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._register_crd(obj)

    def _after_delete(self, target: Target, obj: Obj) -> None:
        if (target.group, target.plural) == ("apiextensions.k8s.io", "customresourcedefinitions") and \
                self.store.find(target.group, target.plural, target.name) is None:
            for rt in self.registry.remove_crd(obj):
                for item in self.store.list(rt.group, rt.plural).items:
                    meta = item["metadata"]
                    with contextlib.suppress(StatusError):
                        self.store.delete(rt.group, rt.plural, meta["name"], meta.get("namespace", ""))

    def register_crd(self, crd: Obj) -> Obj:
        """Install a CustomResourceDefinition the cluster starts with (as an add-on would), served at once."""
        created = self.store.create("apiextensions.k8s.io", "customresourcedefinitions", crd)
        self._register_crd(created)
        return created

    def _register_crd(self, crd: Obj) -> None:
        types = self.registry.add_crd(crd)
        for rt in types:
            self.store.set_status_subresource(rt.group, rt.plural, rt.subresource("status") is not None)
        names = crd["spec"]["names"]
        established = {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                       "message": "the initial names have been accepted", "lastTransitionTime": kubetime.now()}
        accepted = dict(established, type="NamesAccepted", reason="NoConflicts", message="no conflicts found")
        new_status = {"conditions": [accepted, established], "acceptedNames": names,
                      "storedVersions": [v["name"] for v in crd["spec"]["versions"] if v.get("storage")]}
        if crd.get("status") != new_status:
            updated = copy.deepcopy(crd)
            updated["status"] = new_status
            updated["metadata"].pop("resourceVersion", None)
            self.store.update_status("apiextensions.k8s.io", "customresourcedefinitions", updated)


def _line(payload: Obj) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode() + b"\n"


def _scale_of(rt: ResourceType, obj: Obj) -> Obj:
    """The ``autoscaling/v1`` Scale view of a Deployment or ReplicaSet."""
    meta = obj["metadata"]
    selector = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                     if k in meta},
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
        "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                   "selector": ",".join(f"{k}={v}" for k, v in sorted(selector.items()))},
    }
