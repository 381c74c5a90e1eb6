"""Admission webhooks: the API server calls out over HTTPS before it stores an object.

Sidecar injection is a mutating webhook: istiod never touches a pod, the API server asks istiod's
``/inject`` endpoint and applies the JSONPatch it answers. Istio's config validation is a validating
webhook. Both fail in ways the labs teach (primary-remote: ``failed calling webhook
"…sidecar-injector.istio.io"`` when the caBundle is missing or istiod has no endpoints), so this module
makes real calls and fails with the words a real API server uses, rather than injecting in-process:

* matching follows ``admissionregistration.k8s.io/v1``: ``rules`` (operations, groups, versions,
  resources with ``*`` and ``res/sub`` forms, scope), ``namespaceSelector`` (the namespace's labels; a
  Namespace is matched on its own) and ``objectSelector`` (new or old object);
* webhooks run one after the other, configurations in name order and webhooks in list order, each
  seeing what the previous ones patched; mutating ones before validating ones;
* every call is an ``admission.k8s.io/v1`` ``AdmissionReview`` POSTed over HTTPS that must verify
  against the webhook's ``caBundle`` (the system trust store when it has none), within
  ``timeoutSeconds``; ``failurePolicy: Ignore`` lets a failed *call* pass, never a denial.

A ``service`` reference is resolved to a ready endpoint through the Service's Endpoints, the way
``kube-apiserver --enable-aggregator-routing`` does, rather than through the ClusterIP and the service
proxy: the API server lives in the emulator process, and the Endpoints give the real failure modes
(``service "istiod" not found``, ``no endpoints available for service "istiod"``) with no extra hop, and
cover selector-less Services whose Endpoints point elsewhere (a remote cluster's ``istiod`` Service whose
endpoint is the primary's east-west gateway on 15017). TLS is verified against
``<service>.<namespace>.svc``, the name a real API server verifies.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import json
import logging
import os
import random
import socket
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from labkit.core.selectors import label_selector_from_dict
from labkit.core.wire import Obj
from labkit.emulator.api.auth import User
from labkit.emulator.api.resources import ResourceType
from labkit.emulator.apimachinery import json_patch, status
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.store import Store

_log = logging.getLogger(__name__)

GROUP = "admissionregistration.k8s.io"
REVIEW_API_VERSION = "admission.k8s.io/v1"
DEFAULT_TIMEOUT = 10
DEFAULT_SERVICE_PORT = 443
# A webhook's own configuration never goes through webhooks, or one broken webhook could lock itself in.
_EXEMPT_GROUPS = frozenset({GROUP})
_NO_SIDE_EFFECTS = frozenset({"None", "NoneOnDryRun"})
_OPTIONS_KIND = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions"}
_UNKNOWN_AUTHORITY = frozenset({2, 19, 20, 21})  # X509_V_ERR_* for a chain that does not reach a trusted root
_HOSTNAME_MISMATCH = 62
_EXPIRED = frozenset({9, 10})


@dataclass(frozen=True)
class Attributes:
    """What is being admitted.

    Args:
        rt: the resource type of the request.
        operation: ``CREATE`` or ``UPDATE``.
        obj: the object as it would be stored.
        old: the stored object on update, ``None`` on create.
        user: who asked.
        dry_run: whether the request is a dry run (``dryRun=All``).
        subresource: the subresource written, ``""`` for the object itself.
    """

    rt: ResourceType
    operation: str
    obj: Obj
    old: Obj | None
    user: User
    dry_run: bool
    subresource: str = ""


class _CallError(Exception):
    """A failed call (``ErrCallingWebhook``): subject to ``failurePolicy``."""


class Webhooks:
    """The admission webhooks of one cluster, read from its store on every request.

    Args:
        store: the cluster's store (webhook configurations, namespaces, Services, Endpoints).
    """

    def __init__(self, store: Store):
        self.store = store
        # How to make the socket for a webhook's address (aiohttp's ``socket_factory``); the default one when None.
        self.socket_factory: Callable[[tuple[Any, ...]], socket.socket] | None = None

    async def mutate(self, attributes: Attributes) -> Obj:
        """Run the matching mutating webhooks in order; returns the object with their patches applied.

        Raises:
            StatusError: a denial (400 or the webhook's code), a failed call under ``failurePolicy: Fail``
                (500 ``Internal error occurred: failed calling webhook …``), a patch that does not apply.
        """
        obj = attributes.obj
        for webhook in self._matching("mutatingwebhookconfigurations", attributes):
            current = Attributes(attributes.rt, attributes.operation, obj, attributes.old, attributes.user,
                                 attributes.dry_run, attributes.subresource)
            response = await self._admit(webhook, current)
            if response is None:
                continue
            patched = _apply_patch(webhook["name"], obj, response)
            if patched is not None:
                obj = patched
        return obj

    async def validate(self, attributes: Attributes) -> None:
        """Run the matching validating webhooks in order.

        Raises:
            StatusError: as for :meth:`mutate`.
        """
        for webhook in self._matching("validatingwebhookconfigurations", attributes):
            response = await self._admit(webhook, attributes)
            if response is not None and response.get("patch"):
                _fail_call(webhook, "received invalid webhook response: validating webhooks may not return "
                                    "patches")

    # --- matching ------------------------------------------------------------------------------------------------

    def _matching(self, plural: str, attributes: Attributes) -> list[Obj]:
        rt = attributes.rt
        if rt.group in _EXEMPT_GROUPS:
            return []
        configurations = sorted(self.store.list(GROUP, plural).items, key=lambda c: c["metadata"]["name"])
        if not configurations:
            return []
        matched = []
        for configuration in configurations:
            for webhook in configuration.get("webhooks") or []:
                if self._matches(webhook, attributes):
                    matched.append(webhook)
        return matched

    def _matches(self, webhook: Obj, attributes: Attributes) -> bool:
        if not any(_rule_matches(rule, attributes) for rule in webhook.get("rules") or []):
            return False
        object_selector = label_selector_from_dict(webhook.get("objectSelector") or {})
        candidates = [attributes.obj] + ([attributes.old] if attributes.old is not None else [])
        if not any(object_selector.matches(_labels(candidate)) for candidate in candidates):
            return False
        namespace_labels = self._namespace_labels(attributes)
        if namespace_labels is None:
            return True  # cluster-scoped objects other than Namespaces are never skipped by namespaceSelector
        return label_selector_from_dict(webhook.get("namespaceSelector") or {}).matches(namespace_labels)

    def _namespace_labels(self, attributes: Attributes) -> dict[str, str] | None:
        rt, obj = attributes.rt, attributes.obj
        if (rt.group, rt.plural) == ("", "namespaces") and not attributes.subresource:
            name = (obj.get("metadata") or {}).get("name", "")
            return {"kubernetes.io/metadata.name": name, **_labels(obj)}
        if not rt.namespaced:
            return None
        namespace = (obj.get("metadata") or {}).get("namespace") or ""
        found = self.store.find("", "namespaces", namespace)
        # Every real namespace carries its own name as a label; selectors on it must work for old ones too.
        return {"kubernetes.io/metadata.name": namespace, **_labels(found or {})}

    # --- calling -------------------------------------------------------------------------------------------------

    async def _admit(self, webhook: Obj, attributes: Attributes) -> Obj | None:
        """Call one webhook; its ``response`` when it allowed the request, ``None`` when a failure is ignored."""
        name = webhook["name"]
        if attributes.dry_run and webhook.get("sideEffects", "None") not in _NO_SIDE_EFFECTS:
            raise status.bad_request(f'admission webhook "{name}" does not support dry run')
        request_uid = str(uuid.uuid4())
        review = {"apiVersion": REVIEW_API_VERSION, "kind": "AdmissionReview",
                  "request": _request(request_uid, attributes)}
        try:
            response = await self._call(webhook, review)
            if response.get("uid") != request_uid:
                raise _CallError(f'received invalid webhook response: expected response.uid="{request_uid}", '
                                 f'got "{response.get("uid", "")}"')
        except _CallError as exc:
            if webhook.get("failurePolicy", "Fail") == "Ignore":
                _log.warning('failed calling webhook "%s" (failurePolicy Ignore): %s', name, exc)
                return None
            _fail_call(webhook, str(exc))
        if not response.get("allowed"):
            raise _denied(name, response.get("status") or {})
        return response

    async def _call(self, webhook: Obj, review: Obj) -> Obj:
        client = webhook.get("clientConfig") or {}
        timeout = min(max(int(webhook.get("timeoutSeconds") or DEFAULT_TIMEOUT), 1), 30)
        query = {"timeout": f"{timeout}s"}  # the timeout travels as a query parameter, and shows in errors
        service = None if client.get("url") else client.get("service")
        server_name: str | None = None  # for a Service: the name TLS verifies and Host carries
        if client.get("url"):
            target = URL(client["url"]).update_query(query)
            shown = str(target)
        elif service:
            port = int(service.get("port") or DEFAULT_SERVICE_PORT)
            path = service.get("path") or "/"
            server_name = f"{service.get('name', '')}.{service.get('namespace', '')}.svc"
            # Go prints the port even when it is https' default; yarl would drop it.
            shown = f"https://{server_name}:{port}{path}?timeout={timeout}s"
        else:
            raise _CallError("failed to call webhook: clientConfig names neither a url nor a service")
        where = f'Post "{shown}"'
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        try:
            context = _tls_context(client.get("caBundle"))
            if service:
                address, target_port = self._resolve(service)
                target = URL.build(scheme="https", host=address, port=target_port, path=path, query=query)
                headers["Host"] = f"{server_name}:{port}"
            connector = aiohttp.TCPConnector(socket_factory=self.socket_factory) if self.socket_factory else None
            async with asyncio.timeout(timeout), aiohttp.ClientSession(connector=connector) as session, session.post(
                    target, data=json.dumps(review, separators=(",", ":")), headers=headers, ssl=context,
                    server_hostname=server_name) as reply:
                body = await reply.read()
                if reply.status != 200:
                    raise _CallError(f"failed to call webhook: {_http_error(reply.status, body)}")
        except _CallError:
            raise
        except TimeoutError as exc:
            raise _CallError(f"failed to call webhook: {where}: context deadline exceeded") from exc
        except aiohttp.ClientConnectorCertificateError as exc:
            raise _CallError(f"failed to call webhook: {where}: {_x509_error(exc.certificate_error, shown)}") \
                from exc
        except aiohttp.ClientSSLError as exc:
            raise _CallError(f"failed to call webhook: {where}: tls: {_ssl_reason(exc)}") from exc
        except aiohttp.ClientConnectorError as exc:
            code = exc.os_error.errno
            reason = os.strerror(code).lower() if code else str(exc.os_error)
            raise _CallError(f"failed to call webhook: {where}: dial tcp {exc.host}:{exc.port}: connect: "
                             f"{reason}") from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise _CallError(f"failed to call webhook: {where}: {exc}") from exc
        except StatusError as exc:  # the Service did not resolve to an endpoint
            raise _CallError(f"failed to call webhook: {where}: {exc.message}") from exc
        try:
            parsed = json.loads(body)
        except ValueError as exc:
            raise _CallError(f"received invalid webhook response: {exc}") from exc
        response = parsed.get("response") if isinstance(parsed, dict) else None
        if not isinstance(response, dict):
            raise _CallError("received invalid webhook response: webhook response was absent")
        return response

    def _resolve(self, service: Obj) -> tuple[str, int]:
        """A ready endpoint of a Service port: the Service's ``port`` → its Endpoints' port of the same name."""
        namespace, name = service.get("namespace", ""), service.get("name", "")
        port = int(service.get("port") or DEFAULT_SERVICE_PORT)
        svc = self.store.find("", "services", name, namespace)
        if svc is None:
            raise StatusError(404, "NotFound", f'service "{name}" not found')
        spec = svc.get("spec") or {}
        if spec.get("type") == "ExternalName":
            return spec.get("externalName", ""), port
        declared = [p for p in spec.get("ports") or [] if p.get("port") == port]
        if not declared:
            raise status.bad_request(f'no service port {port} found for service "{name}"')
        port_name = declared[0].get("name") or ""
        endpoints = self.store.find("", "endpoints", name, namespace) or {}
        for subset in endpoints.get("subsets") or []:
            addresses = subset.get("addresses") or []
            ports = [p for p in subset.get("ports") or [] if (p.get("name") or "") == port_name]
            if addresses and ports:
                return random.choice(addresses)["ip"], int(ports[0]["port"])
        raise StatusError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')


# --- the review ------------------------------------------------------------------------------------------------------


def _labels(obj: Obj) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def _rule_matches(rule: Obj, attributes: Attributes) -> bool:
    rt = attributes.rt
    operations = rule.get("operations") or []
    if "*" not in operations and attributes.operation not in operations:
        return False
    if not _listed(rule.get("apiGroups"), rt.group) or not _listed(rule.get("apiVersions"), rt.version):
        return False
    scope = rule.get("scope") or "*"
    if (scope == "Cluster" and rt.namespaced) or (scope == "Namespaced" and not rt.namespaced):
        return False
    for resource in rule.get("resources") or []:
        main, _, sub = resource.partition("/")
        if main not in ("*", rt.plural):
            continue
        if sub in ("*", attributes.subresource):
            return True
    return False


def _listed(values: list[str] | None, value: str) -> bool:
    return "*" in (values or ()) or value in (values or ())


def _request(uid: str, attributes: Attributes) -> Obj:
    rt = attributes.rt
    meta = attributes.obj.get("metadata") or {}
    kind = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    resource = {"group": rt.group, "version": rt.version, "resource": rt.plural}
    user: Obj = {"username": attributes.user.name, "groups": list(attributes.user.groups)}
    request: Obj = {
        "uid": uid,
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
        "name": meta.get("name", ""),
        "operation": attributes.operation,
        "userInfo": user,
        "object": copy.deepcopy(attributes.obj),
        "oldObject": copy.deepcopy(attributes.old),
        "dryRun": attributes.dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": _OPTIONS_KIND.get(attributes.operation, "")},
    }
    if attributes.subresource:
        request["subResource"] = attributes.subresource
    if rt.namespaced:
        request["namespace"] = meta.get("namespace", "")
    return request


def _apply_patch(name: str, obj: Obj, response: Obj) -> Obj | None:
    """The object with the response's JSONPatch applied, or ``None`` when it has none."""
    patch = response.get("patch")
    if not patch:
        return None
    if response.get("patchType", "JSONPatch") != "JSONPatch":
        raise status.internal(f'Internal error occurred: failed calling webhook "{name}": received invalid webhook '
                              f'response: patchType "{response.get("patchType")}" is not supported')
    try:
        operations = json.loads(base64.b64decode(patch, validate=True))
    except (ValueError, binascii.Error) as exc:
        raise status.internal(f"Internal error occurred: the patch of admission webhook \"{name}\" is not "
                              f"base64-encoded JSON: {exc}") from exc
    try:
        patched = json_patch(obj, operations)
    except StatusError as exc:
        raise status.internal(f"Internal error occurred: {exc.message}") from exc
    if not isinstance(patched, dict):
        raise status.internal(f'Internal error occurred: admission webhook "{name}" patched the object into a '
                              f"{type(patched).__name__}")
    return patched


def _denied(name: str, result: Obj) -> StatusError:
    """``webhookerrors.ToStatusErr``: the webhook's Status, its message prefixed with who denied."""
    denied_by = f'admission webhook "{name}" denied the request'
    code = result.get("code") if isinstance(result.get("code"), int) else 0
    code = max(code, 400)  # a rejection never leaves with a success code
    if result.get("message"):
        message = f"{denied_by}: {result['message']}"
    elif result.get("reason"):
        message = f"{denied_by}: {result['reason']}"
    else:
        message = f"{denied_by} without explanation"
    return StatusError(code, str(result.get("reason") or ""), message, result.get("details") or None)


def _fail_call(webhook: Obj, reason: str) -> None:
    """Raise what a real API server returns for a failed call under ``failurePolicy: Fail``."""
    message = f'failed calling webhook "{webhook["name"]}": {reason}'
    raise StatusError(500, "InternalError", f"Internal error occurred: {message}", {"causes": [{"message": message}]})


# --- TLS and Go's error words ---------------------------------------------------------------------------------------


def _tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    if not ca_bundle:
        return ssl.create_default_context()  # no caBundle: the API server's own trust store
    try:
        pem = base64.b64decode(ca_bundle, validate=True).decode()
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"caBundle is not base64: {exc}") from exc
    try:
        return ssl.create_default_context(cadata=pem)
    except ssl.SSLError as exc:
        raise ValueError("tls: failed to load the caBundle: no valid PEM certificates") from exc


def _x509_error(error: Exception, url: URL) -> str:
    code = getattr(error, "verify_code", None)
    if code in _UNKNOWN_AUTHORITY:
        return "tls: failed to verify certificate: x509: certificate signed by unknown authority"
    if code == _HOSTNAME_MISMATCH:
        return f"tls: failed to verify certificate: x509: certificate is not valid for {url.host}"
    if code in _EXPIRED:
        return "tls: failed to verify certificate: x509: certificate has expired or is not yet valid"
    return f"tls: failed to verify certificate: x509: {getattr(error, 'verify_message', None) or error}"


def _ssl_reason(exc: aiohttp.ClientSSLError) -> str:
    os_error = exc.os_error
    reason = getattr(os_error, "reason", None)
    return str(reason).lower().replace("_", " ") if reason else str(os_error)


def _http_error(code: int, body: bytes) -> str:
    if code == 404:
        return "the server could not find the requested resource"
    text = ""
    with contextlib.suppress(UnicodeDecodeError):
        text = body.decode().strip()[:200]
    if text:
        return f'an error on the server ("{text}") has prevented the request from succeeding'
    return f"the server responded with the status code {code} but did not return more information"
