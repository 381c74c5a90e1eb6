"""The OpenAPI v3 documents ``kubectl apply`` and ``kubectl create`` download before they write.

They are small on purpose: kubectl reads three things from them, and the emulator validates and patches
on the server anyway. What kubectl 1.32 reads (``k8s.io/cli-runtime`` ``query_param_verifier_v3.go``,
``k8s.io/kubectl`` ``cmd/apply/patcher.go``, ``k8s.io/client-go`` ``openapi3/root.go``):

1. The index ``/openapi/v3`` — ``{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=…"}}}``.
   A group/version is looked up under ``api/v1`` or ``apis/{group}/{version}``; the URL is fetched as is.
2. Server-side field validation. Before sending ``fieldValidation=Strict`` instead of validating on the
   client (which would need the OpenAPI v2 document this server does not have), kubectl scans the
   group/version document for a PATCH operation whose ``x-kubernetes-group-version-kind`` (a single
   object on the operation) is the kind being written, and for a parameter named ``fieldValidation``
   among *that operation's* ``parameters``. For a kind whose group/version is missing from the index it
   lists CRDs and, if one matches, asks the same question of Namespace in ``api/v1``.
3. The patch type of client-side ``kubectl apply``. kubectl finds the PATCH operation of the kind the
   same way and checks whether its ``requestBody.content`` has ``application/strategic-merge-patch+json``.
   If not (a custom resource), it falls through to its compiled-in types, does not find the kind and
   sends ``application/merge-patch+json``; that is why CRD operations here omit that content type. If
   it does, kubectl then looks for a ``components.schemas`` entry whose ``x-kubernetes-group-version-kind``
   (a list) names the kind, and computes the patch from that schema's ``properties`` and
   ``x-kubernetes-patch-merge-key`` extensions. A schema without properties would make that computation
   fail (``unable to find api field "metadata"``), which is why built-in schemas are Kubernetes' own
   definitions (:mod:`labkit.emulator.schemas.upstream`), complete with merge keys, patch strategies and
   list types, with every definition they refer to.
4. ``kubectl explain``: the GVK of the resource's operations, then the component schema whose
   ``x-kubernetes-group-version-kind`` lists it, then ``properties`` down the field path, following
   ``$ref`` and single-element ``allOf``. Custom resources are described by their CRD version's
   ``openAPIV3Schema`` with ``apiVersion``, ``kind`` and ``metadata`` added, as the apiextensions server
   publishes them.

Documents are pure functions of the registry and the upstream definitions, built on first request and
cached per group/version; the index carries a hash of each document so that clients' caches notice when a
CRD changes a group.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
from typing import Any

from labkit.emulator.api.discovery import KUBERNETES_VERSION
from labkit.emulator.api.resources import Registry, ResourceType
from labkit.emulator.schemas.upstream import Definitions, definitions

OPENAPI_PREFIX = "/openapi/v3"
_META = "io.k8s.apimachinery.pkg.apis.meta.v1"
_PATCH_SCHEMA = f"{_META}.Patch"
_DELETE_OPTIONS = f"{_META}.DeleteOptions"
_STATUS_SCHEMA = f"{_META}.Status"
_SCALE_SCHEMA = "io.k8s.api.autoscaling.v1.Scale"
_OBJECT_META = f"{_META}.ObjectMeta"
_LIST_META = f"{_META}.ListMeta"
_BUILTIN_PATCH_TYPES = ("application/apply-patch+yaml", "application/json-patch+json",
                        "application/merge-patch+json", "application/strategic-merge-patch+json")
_CRD_PATCH_TYPES = ("application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json")


def gv_path(group: str, version: str) -> str:
    """The index key of a group/version: ``api/v1`` or ``apis/{group}/{version}``.

    Args:
        group: API group, ``""`` for core.
        version: API version.
    """
    return f"apis/{group}/{version}" if group else f"api/{version}"


def openapi_index(registry: Registry) -> dict[str, Any]:
    """The ``/openapi/v3`` document: one entry per served group/version.

    Args:
        registry: the served types.
    """
    paths = {}
    for group, versions in registry.groups().items():
        for version in versions:
            cached = _cached(registry, group, version)
            if cached is not None:
                key = gv_path(group, version)
                paths[key] = {"serverRelativeURL": f"{OPENAPI_PREFIX}/{key}?hash={cached[1]}"}
    return {"paths": paths}


def document_for_path(registry: Registry, path: str) -> dict[str, Any] | None:
    """The document served at ``/openapi/v3/{path}``, or None (a 404) when no such group/version exists.

    Args:
        registry: the served types.
        path: ``api/v1``, ``apis/apps/v1``, or the full ``/openapi/v3/…?hash=…`` URL path.
    """
    path = path.split("?", 1)[0].removeprefix(OPENAPI_PREFIX).strip("/")
    parts = path.split("/")
    if len(parts) == 2 and parts[0] == "api":
        return openapi_document(registry, "", parts[1])
    if len(parts) == 3 and parts[0] == "apis":
        return openapi_document(registry, parts[1], parts[2])
    return None


def document_hash(document: dict[str, Any]) -> str:
    """The ``hash`` query value of a document's URL: upper-case hex SHA-512, as a real server computes it.

    Args:
        document: an OpenAPI document.
    """
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha512(canonical).hexdigest().upper()


def openapi_document(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    """The OpenAPI v3 document of one group/version, or None when nothing is served there.

    Args:
        registry: the served types.
        group: API group, ``""`` for core.
        version: API version.
    """
    cached = _cached(registry, group, version)
    return cached[0] if cached is not None else None


def _cached(registry: Registry, group: str, version: str) -> tuple[dict[str, Any], str] | None:
    types = tuple(registry.resources(group, version))
    if not types:
        return None
    # Types compare without their CRD schema; its JSON joins the key so that a changed schema is a new document.
    crd_schemas = tuple(json.dumps(rt.schema, sort_keys=True) if rt.schema is not None else "" for rt in types)
    return _build(group, version, types, crd_schemas)


@functools.lru_cache(maxsize=64)
def _build(group: str, version: str, types: tuple[ResourceType, ...],
           crd_schemas: tuple[str, ...]) -> tuple[dict[str, Any], str]:
    document = _document(definitions(KUBERNETES_VERSION), types)
    return document, document_hash(document)


def _document(defs: Definitions, types: tuple[ResourceType, ...]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {
        _PATCH_SCHEMA: {"type": "object", "description": "A patch document; its format is the Content-Type's."},
        _DELETE_OPTIONS: {"type": "object", "description": "Options of a delete request.",
                          "x-kubernetes-preserve-unknown-fields": True},
        _STATUS_SCHEMA: {"type": "object", "description": "The result of an operation that returns no object.",
                         "x-kubernetes-preserve-unknown-fields": True},
    }
    # Kubernetes' own where it has them (it has all three); the stand-ins above only if it does not.
    schemas.update(defs.closure([_PATCH_SCHEMA, _DELETE_OPTIONS, _STATUS_SCHEMA]))
    for rt in types:
        paths.update(_resource_paths(rt))
        schemas.update(_resource_schemas(defs, rt))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def schema_name(rt: ResourceType, kind: str | None = None) -> str:
    """The ``components.schemas`` name of a kind, spelled as a real server spells it.

    ``io.k8s.api.core.v1.Pod``, ``io.k8s.api.apps.v1.Deployment``,
    ``io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition`` and, for custom
    resources, the reversed group: ``io.istio.networking.v1.VirtualService``.

    Args:
        rt: the type.
        kind: another kind of the same group/version (``DeploymentList``); ``rt.kind`` when None.
    """
    kind = kind or rt.kind
    if rt.crd:
        return ".".join([*reversed(rt.group.split(".")), rt.version, kind])
    if rt.group == "apiextensions.k8s.io":
        return f"io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{rt.version}.{kind}"
    package = rt.group.split(".")[0] if rt.group else "core"
    return f"io.k8s.api.{package}.{rt.version}.{kind}"


def _operation_prefix(rt: ResourceType) -> str:
    # patchCoreV1NamespacedPod, patchRbacAuthorizationV1…, patchNetworkingIstioIoV1…
    group = rt.group.removesuffix(".k8s.io") if not rt.crd else rt.group
    words = re.split(r"[.\-]", group) if group else ["core"]
    return "".join(word[:1].upper() + word[1:] for word in words) + rt.version[:1].upper() + rt.version[1:]


def _resource_paths(rt: ResourceType) -> dict[str, Any]:
    gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    ref = _ref(schema_name(rt))
    list_ref = _ref(schema_name(rt, rt.list_kind))
    scope = "Namespaced" if rt.namespaced else ""
    ident = f"{_operation_prefix(rt)}{scope}{rt.kind}"
    tag = _operation_prefix(rt)
    base = f"{rt.api_prefix}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{rt.api_prefix}/{rt.plural}"
    namespace = [_path_param("namespace", "object name and auth scope, such as for teams and projects")]
    collection_params = [*(namespace if rt.namespaced else []), _PRETTY]
    item_params = [_path_param("name", f"name of the {rt.kind}"), *collection_params]
    patch_types = _BUILTIN_PATCH_TYPES if rt.strategic else _CRD_PATCH_TYPES

    collection: dict[str, Any] = {}
    if rt.has_verb("list"):
        collection["get"] = _operation(tag, f"list{ident}", f"list or watch objects of kind {rt.kind}",
                                       "list", gvk, _LIST_PARAMS, list_ref)
    if rt.has_verb("create"):
        collection["post"] = _operation(tag, f"create{ident}", f"create a {rt.kind}", "post", gvk,
                                        _WRITE_PARAMS, ref, body=_body(ref))
    if rt.has_verb("deletecollection"):
        collection["delete"] = _operation(tag, f"deletecollection{ident}", f"delete collection of {rt.kind}",
                                          "deletecollection", gvk, _DELETE_PARAMS + _LIST_PARAMS,
                                          _ref(_STATUS_SCHEMA), body=_body(_ref(_DELETE_OPTIONS), required=False))
    paths: dict[str, Any] = {}
    if collection:
        paths[base] = {"parameters": collection_params, **collection}
    if rt.namespaced and rt.has_verb("list"):
        paths[f"{rt.api_prefix}/{rt.plural}"] = {
            "parameters": [_PRETTY],
            "get": _operation(tag, f"list{_operation_prefix(rt)}{rt.kind}ForAllNamespaces",
                              f"list or watch objects of kind {rt.kind} in every namespace", "list", gvk,
                              _LIST_PARAMS, list_ref),
        }

    item: dict[str, Any] = {}
    if rt.has_verb("get"):
        item["get"] = _operation(tag, f"read{ident}", f"read the specified {rt.kind}", "get", gvk, [], ref)
    if rt.has_verb("update"):
        item["put"] = _operation(tag, f"replace{ident}", f"replace the specified {rt.kind}", "put", gvk,
                                 _WRITE_PARAMS, ref, body=_body(ref))
    if rt.has_verb("patch"):
        item["patch"] = _operation(tag, f"patch{ident}", f"partially update the specified {rt.kind}", "patch",
                                   gvk, _PATCH_PARAMS, ref, body=_patch_body(patch_types))
    if rt.has_verb("delete"):
        item["delete"] = _operation(tag, f"delete{ident}", f"delete a {rt.kind}", "delete", gvk, _DELETE_PARAMS,
                                    _ref(_STATUS_SCHEMA), body=_body(_ref(_DELETE_OPTIONS), required=False))
    if item:
        paths[f"{base}/{{name}}"] = {"parameters": item_params, **item}

    for sub in rt.subresources:
        if sub.name not in ("status", "scale"):
            continue
        if sub.name == "scale":
            sub_gvk = {"group": sub.group, "version": sub.version, "kind": sub.kind}
            sub_ref, suffix = _ref(_SCALE_SCHEMA), "Scale"
        else:
            sub_gvk, sub_ref, suffix = gvk, ref, "Status"
        paths[f"{base}/{{name}}/{sub.name}"] = {
            "parameters": item_params,
            "get": _operation(tag, f"read{ident}{suffix}", f"read {sub.name} of the specified {rt.kind}",
                              "get", sub_gvk, [], sub_ref),
            "put": _operation(tag, f"replace{ident}{suffix}", f"replace {sub.name} of the specified {rt.kind}",
                              "put", sub_gvk, _WRITE_PARAMS, sub_ref, body=_body(sub_ref)),
            "patch": _operation(tag, f"patch{ident}{suffix}",
                                f"partially update {sub.name} of the specified {rt.kind}", "patch", sub_gvk,
                                _PATCH_PARAMS, sub_ref, body=_patch_body(patch_types)),
        }
    return paths


def _resource_schemas(defs: Definitions, rt: ResourceType) -> dict[str, Any]:
    if rt.crd:
        return _custom_schemas(defs, rt)
    schemas: dict[str, Any] = {}
    for kind in (rt.kind, rt.list_kind):
        found = defs.kind(rt.group, rt.version, kind)
        if found is not None:
            schemas.update(defs.closure([found[0]]))
        else:  # not in this release's definitions: open, and without a GVK kubectl would patch from
            schemas[schema_name(rt, kind)] = {
                "type": "object", "description": f"{kind} ({rt.group_version}); fields are validated by the server.",
                "x-kubernetes-preserve-unknown-fields": True}
    if any(sub.name == "scale" for sub in rt.subresources):
        schemas.update(defs.closure([_SCALE_SCHEMA]) or {_SCALE_SCHEMA: {
            "type": "object", "description": "Scale of a scalable resource.",
            "x-kubernetes-preserve-unknown-fields": True}})
    return schemas


def _custom_schemas(defs: Definitions, rt: ResourceType) -> dict[str, Any]:
    # As the apiextensions server publishes a CRD version: its schema (open when it gave none) with the
    # object's apiVersion, kind and metadata added, and a list kind around it.
    schema: dict[str, Any] = copy.deepcopy(dict(rt.schema)) if rt.schema else {
        "type": "object", "x-kubernetes-preserve-unknown-fields": True}
    schema.setdefault("type", "object")
    schema["properties"] = {**_TYPE_META, "metadata": {
        "description": "Standard object's metadata.", "allOf": [_ref(_OBJECT_META)]},
        **(schema.get("properties") or {})}
    schema["x-kubernetes-group-version-kind"] = [{"group": rt.group, "version": rt.version, "kind": rt.kind}]
    listing = {
        "description": f"{rt.list_kind} is a list of {rt.kind}",
        "type": "object",
        "required": ["items"],
        "properties": {**_TYPE_META,
                       "items": {"description": f"List of {rt.plural}.", "type": "array",
                                 "items": _ref(schema_name(rt))},
                       "metadata": {"description": "Standard list metadata.", "allOf": [_ref(_LIST_META)]}},
        "x-kubernetes-group-version-kind": [{"group": rt.group, "version": rt.version, "kind": rt.list_kind}],
    }
    schemas = {schema_name(rt): schema, schema_name(rt, rt.list_kind): listing}
    schemas.update(defs.closure([_OBJECT_META, _LIST_META]))
    return schemas


_TYPE_META = {
    "apiVersion": {"description": "APIVersion defines the versioned schema of this representation of an object.",
                   "type": "string"},
    "kind": {"description": "Kind is a string value representing the REST resource this object represents.",
             "type": "string"},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _operation(tag: str, operation_id: str, description: str, action: str, gvk: dict[str, str],
               parameters: list[dict[str, Any]], response: dict[str, str],
               body: dict[str, Any] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "tags": [tag],
        "description": description,
        "operationId": operation_id,
    }
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    operation["responses"] = {
        "200": {"description": "OK", "content": {"application/json": {"schema": response}}},
        "401": {"description": "Unauthorized"},
    }
    operation["x-kubernetes-action"] = action
    operation["x-kubernetes-group-version-kind"] = gvk
    return operation


def _body(schema: dict[str, str], required: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"content": {"*/*": {"schema": schema}}}
    if required:
        body["required"] = True
    return body


def _patch_body(content_types: tuple[str, ...]) -> dict[str, Any]:
    return {"content": {ct: {"schema": _ref(_PATCH_SCHEMA)} for ct in content_types}, "required": True}


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "description": description, "required": True,
            "schema": {"type": "string", "uniqueItems": True}}


def _query(name: str, description: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": {"type": kind, "uniqueItems": True}}


_PRETTY = _query("pretty", "If 'true', the output is indented.")
_DRY_RUN = _query("dryRun", "When 'All', the request is checked but nothing is persisted.")
_FIELD_MANAGER = _query("fieldManager", "The name of the actor making the change, recorded in managedFields.")
# The parameter kubectl looks for before it leaves validation to the server.
_FIELD_VALIDATION = _query("fieldValidation", "How to treat unknown or duplicate fields in the body: "
                           "Ignore drops them, Warn drops them with a warning, Strict rejects the request.")
_WRITE_PARAMS = [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION]
_PATCH_PARAMS = [*_WRITE_PARAMS, _query("force", "Take ownership of conflicting fields in server-side apply.",
                                        "boolean")]
_DELETE_PARAMS = [
    _DRY_RUN,
    _query("gracePeriodSeconds", "Seconds before the object is deleted; 0 deletes immediately.", "integer"),
    _query("propagationPolicy", "Whether and how dependents are garbage collected: Orphan, Background, "
           "Foreground."),
]
_LIST_PARAMS = [
    _query("allowWatchBookmarks", "Ask for BOOKMARK events in a watch.", "boolean"),
    _query("continue", "The token of the next page of a paginated list."),
    _query("fieldSelector", "Select objects by fields, e.g. metadata.name=x."),
    _query("labelSelector", "Select objects by labels."),
    _query("limit", "The maximum number of objects in one page.", "integer"),
    _query("resourceVersion", "Where a list or watch starts."),
    _query("timeoutSeconds", "Close a watch after this many seconds.", "integer"),
    _query("watch", "Stream changes instead of listing.", "boolean"),
]
