"""The three PATCH flavours of the Kubernetes API, as pure functions.

Each function takes the live object and the patch document and returns a new object; inputs are
never mutated, so the API layer can compare before and after (for no-op detection) and retry
without defensive copies. JSON Patch is the ``jsonpatch`` library's; merge and strategic merge patch are
written here, because no maintained library follows Kubernetes' strategic rules. Errors are the
``StatusError`` a real API server sends, because kubectl prints their messages verbatim: a malformed
patch document is a 400, a JSON patch that does not apply to this object (missing path, failed ``test``)
is a 422 naming the JSON pointer.

Strategic merge patch follows ``k8s.io/apimachinery/pkg/util/strategicpatch``, including its
ordering rule for merged lists: items named by the patch keep the patch's (or
``$setElementOrder``'s) order and are interleaved with server-only items by their live positions.
A consequence worth knowing: a patch that adds a container without ``$setElementOrder`` puts the
new container first, exactly as a real server does.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from typing import Any

import jsonpatch
import jsonpointer

from labkit.emulator.apimachinery.status import bad_request, invalid, unsupported_media_type

from .schemas import BUILTIN_KINDS, Field, KindKey

STRATEGIC_MERGE_UNSUPPORTED = (
    "the body of the request was in an unknown format - accepted media types include: "
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
)
"""The 415 message a real server gives for a strategic merge patch of a custom resource."""

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_DELETE_FROM = "$deleteFromPrimitiveList/"
_ORDER = "$setElementOrder/"


# --- JSON merge patch (RFC 7386) ----------------------------------------------------------------


def merge_patch(obj: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch (``application/merge-patch+json``).

    ``null`` deletes a key, objects merge recursively, anything else (lists included) replaces.

    Args:
        obj: the live object (not modified).
        patch: the merge patch document (not modified).

    Returns:
        The patched object, sharing no structure with either input.
    """
    return _merge_into(copy.deepcopy(obj), patch)


def _merge_into(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge_into(target.get(key), value)
    return target


# --- JSON patch (RFC 6902) ----------------------------------------------------------------------


def json_patch(obj: Any, ops: Any) -> Any:
    """Apply an RFC 6902 JSON patch (``application/json-patch+json``) with the ``jsonpatch`` library.

    The operations are applied by the library, one at a time on a private copy; what labkit adds is the
    wording of a real API server (``evanphx/json-patch`` inside kube-apiserver), because kubectl prints it:
    a malformed document is refused up front, and a failure of the library is explained as Kubernetes does
    (``doc is missing path: /spec/missing``, ``array index 5 out of bounds``). ``test`` compares as JSON
    does (``true`` is not ``1``), which Python's ``==``, and so the library, does not.

    Args:
        obj: the live object (not modified).
        ops: the list of operations (``add``, ``remove``, ``replace``, ``move``, ``copy``, ``test``).

    Returns:
        The patched object; on any failure nothing is applied.

    Raises:
        StatusError: 400 for a malformed patch document (not a list, unknown ``op``, missing
            ``value``/``from``, a pointer not starting with ``/``); 422 naming the JSON pointer when
            the patch does not apply (missing path, index out of bounds, failed ``test``).
    """
    _check_document(ops)
    doc = copy.deepcopy(obj)
    for op in ops:
        if op["op"] == "test":
            _test(obj, doc, op)
            continue
        if op["op"] == "move" and op["path"].startswith(op["from"] + "/"):
            raise _unapplied(obj, op["path"], f"cannot move {op['from']} into its own child {op['path']}")
        try:
            doc = jsonpatch.JsonPatch([op]).apply(doc, in_place=True)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            raise _explain(obj, doc, op) from exc
    return doc


def _check_document(ops: Any) -> None:
    if not isinstance(ops, list):
        raise bad_request("json patch: the patch must be a JSON array of operations")
    for position, op in enumerate(ops):
        if not isinstance(op, dict) or not isinstance(op.get("op"), str):
            raise bad_request(f'json patch: operation {position} has no "op"')
        if op["op"] not in _REQUIRED:
            raise bad_request(f'json patch: operation {position}: unknown op "{op["op"]}"')
        if not isinstance(op.get("path"), str):
            raise bad_request(f'json patch: operation {position} ({op["op"]}) has no "path"')
        for member in _REQUIRED[op["op"]]:
            if member not in op:
                raise bad_request(
                    f'json patch: operation {position} ({op["op"]} {op["path"]}) has no "{member}"'
                )
        _tokens(op["path"])
        if "from" in op and op["op"] in ("move", "copy"):
            if not isinstance(op["from"], str):
                raise bad_request(f'json patch: operation {position} ({op["op"]}): "from" must be a string')
            _tokens(op["from"])


_REQUIRED = {
    "add": ("value",),
    "remove": (),
    "replace": ("value",),
    "move": ("from",),
    "copy": ("from",),
    "test": ("value",),
}


def _unapplied(obj: Any, pointer: str, message: str) -> Exception:
    """The 422 of a patch that does not apply, naming the object and the JSON pointer."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    kind = str(obj.get("kind") or "Object") if isinstance(obj, dict) else "Object"
    return invalid(kind, str((meta or {}).get("name") or ""), [(pointer or "/", message)])


def _test(obj: Any, doc: Any, op: Mapping[str, Any]) -> None:
    pointer = op["path"]
    try:
        actual = jsonpointer.resolve_pointer(doc, pointer)
    except jsonpointer.JsonPointerException:
        raise _explain(obj, doc, op) from None
    if not json_equal(actual, op["value"]):
        raise _unapplied(obj, pointer, f"test failed: expected {_compact(op['value'])}, found {_compact(actual)}")


def _explain(obj: Any, doc: Any, op: Mapping[str, Any]) -> Exception:
    """Why ``op`` does not apply to ``doc``, in the words of a real API server.

    The library says *that* a pointer failed; Kubernetes says which prefix is missing or which index is
    out of bounds, so the pointers of the operation are walked once more to find it.
    """
    name = op["op"]
    if name in ("move", "copy"):
        reason = _walk(doc, op["from"], must_exist=True)
        if reason:
            return _unapplied(obj, op["path"], reason)
    pointer = op["path"]
    if name == "remove" and pointer == "":
        return _unapplied(obj, pointer, "cannot remove the whole document")
    reason = _walk(doc, pointer, must_exist=name in ("remove", "replace", "test"), appending=name != "remove")
    return _unapplied(obj, pointer, reason or f"cannot {name} {pointer}")


def _walk(doc: Any, pointer: str, *, must_exist: bool, appending: bool = False) -> str:
    """The first reason ``pointer`` cannot be reached in ``doc``, or ``""`` when it can."""
    tokens = _tokens(pointer)
    node = doc
    for depth, token in enumerate(tokens):
        last = depth == len(tokens) - 1
        here = _pointer(tokens[: depth + 1])
        if isinstance(node, dict):
            if token not in node:
                if last and not must_exist:
                    return ""
                return f"doc is missing path: {here}"
            node = node[token]
        elif isinstance(node, list):
            if last and appending and token == "-":
                return ""
            if not (token == "0" or (token.isdigit() and token.isascii() and not token.startswith("0"))):
                return f"invalid array index {token!r}"
            highest = len(node) if last and appending and not must_exist else len(node) - 1
            if int(token) > highest:
                return f"array index {int(token)} out of bounds"
            if last:
                return ""
            node = node[int(token)]
        else:
            return f"doc is missing path: {here}"
    return ""


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise bad_request(f'json patch: invalid JSON pointer "{pointer}": it must start with "/"')
    tokens = pointer[1:].split("/")
    for token in tokens:
        rest = token.replace("~0", "").replace("~1", "")
        if "~" in rest:
            raise bad_request(f'json patch: invalid JSON pointer "{pointer}": "~" must be escaped as "~0"')
    # ~1 first: "~01" is the escaped form of "~1", not of "/".
    return [token.replace("~1", "/").replace("~0", "~") for token in tokens]


def _pointer(tokens: list[str]) -> str:
    return "".join("/" + token.replace("~", "~0").replace("/", "~1") for token in tokens)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON defines it: ``true`` is not ``1``, but ``1`` equals ``1.0``.

    Args:
        a: a JSON value.
        b: a JSON value.
    """
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


# --- strategic merge patch ----------------------------------------------------------------------


def strategic_merge_patch(obj: Mapping[str, Any], patch: Any, kind_key: KindKey) -> dict[str, Any]:
    """Apply a Kubernetes strategic merge patch (``application/strategic-merge-patch+json``).

    Lists with a merge key (containers, env, ports, volumes …) merge item by item, ``finalizers``
    merge as a set, every other list is replaced. Directives: ``$patch: replace|delete|merge`` in
    maps and list items, ``$deleteFromPrimitiveList/<field>``, ``$setElementOrder/<field>`` and
    ``$retainKeys``. Directives never end up in the result.

    Args:
        obj: the live object (not modified).
        patch: the patch document (not modified).
        kind_key: ``(group, Kind)`` of the object, e.g. ``("apps", "Deployment")``.

    Raises:
        StatusError: 415 for kinds that are not built in (custom resources), with the message a
            real server gives; 400 for a malformed patch (bad directive, list item without its
            merge key, ``$retainKeys`` not covering the patched fields).
    """
    info = BUILTIN_KINDS.get(kind_key)
    if info is None:
        raise unsupported_media_type(STRATEGIC_MERGE_UNSUPPORTED)
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch: the patch must be a JSON object")
    return _merge_map(copy.deepcopy(dict(obj)), copy.deepcopy(patch), info.schema)


def _merge_map(original: dict[str, Any], patch: dict[str, Any], schema: Field) -> dict[str, Any]:
    """Merge ``patch`` into ``original``; both are private copies and may be consumed."""
    directive = patch.get(_DIRECTIVE)
    if directive is not None:
        rest = {k: v for k, v in patch.items() if k != _DIRECTIVE}
        if directive == "replace":
            return _merge_map({}, rest, schema)
        if directive == "delete":
            return {}
        if directive != "merge":
            raise bad_request(
                f'strategic merge patch: unknown patch type "{directive}" in map: {_compact(patch)}'
            )
        patch = rest

    retain = patch.get(_RETAIN_KEYS)
    if retain is not None:
        if not isinstance(retain, list) or not all(isinstance(k, str) for k in retain):
            raise bad_request("strategic merge patch: $retainKeys must be a list of field names")
        outside = sorted(k for k in patch if not k.startswith("$") and k not in retain)
        if outside:
            raise bad_request(
                f"strategic merge patch: $retainKeys {retain} does not contain the patched fields {outside}"
            )
        for key in [k for k in original if k not in retain]:
            del original[key]

    for key, values in patch.items():
        if key.startswith(_DELETE_FROM):
            name = key[len(_DELETE_FROM) :]
            if not isinstance(values, list):
                raise bad_request(f"strategic merge patch: {key} must be a list")
            if isinstance(original.get(name), list):
                doomed = {_identity(v) for v in values}
                original[name] = [v for v in original[name] if _identity(v) not in doomed]

    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            original.pop(key, None)
            continue
        order = patch.get(_ORDER + key)
        original[key] = _merge_value(original.get(key), value, schema.child(key), order, key)

    for key, order in patch.items():
        # An order without a patched list only reorders what is there.
        if key.startswith(_ORDER):
            name = key[len(_ORDER) :]
            child = schema.child(name)
            if (
                name not in patch
                and isinstance(original.get(name), list)
                and (child.merge_key or child.set_list)
            ):
                original[name] = _merge_value(original[name], [], child, order, name)
    return original


def _merge_value(original: Any, value: Any, schema: Field, order: Any, name: str) -> Any:
    if isinstance(value, dict):
        return _merge_map(original if isinstance(original, dict) else {}, value, schema)
    if isinstance(value, list):
        base = original if isinstance(original, list) else []
        if order is not None and not isinstance(order, list):
            raise bad_request(f"strategic merge patch: {_ORDER}{name} must be a list")
        if schema.merge_key:
            return _merge_keyed_list(base, value, schema, order, name)
        if schema.set_list:
            return _merge_set_list(base, value, order, name)
    return value


def _merge_keyed_list(
    original: list[Any], patch: list[Any], schema: Field, order: list[Any] | None, name: str
) -> list[Any]:
    key = schema.merge_key
    replace = False
    plain: list[dict[str, Any]] = []
    for item in patch:
        if not isinstance(item, dict):
            raise bad_request(
                f"strategic merge patch: {name}: expected a list of objects merged by "
                f'"{key}", found {_compact(item)}'
            )
        directive = item.get(_DIRECTIVE)
        if directive is None:
            plain.append(item)
        elif directive == "delete":
            if key not in item:
                raise bad_request(f"map: {_compact(item)} does not contain declared merge key: {key}")
            original = [o for o in original if not (isinstance(o, dict) and _same(o.get(key), item[key]))]
        elif directive == "replace":
            replace = True
        else:
            raise bad_request(f'strategic merge patch: unknown patch type "{directive}" in list {name}')
    if replace:
        return [_merge_map({}, item, schema) for item in plain]

    server_order = [_identity(o.get(key)) for o in original if isinstance(o, dict)]
    merged = list(original)
    for item in plain:
        if key not in item:
            raise bad_request(f"map: {_compact(item)} does not contain declared merge key: {key}")
        position = next(
            (i for i, o in enumerate(merged) if isinstance(o, dict) and _same(o.get(key), item[key])), None
        )
        if position is None:
            merged.append(_merge_map({}, item, schema))
        else:
            merged[position] = _merge_map(merged[position], item, schema)

    if order is not None:
        for entry in order:
            if not isinstance(entry, dict) or key not in entry:
                raise bad_request(
                    f'strategic merge patch: {_ORDER}{name}: every entry needs the merge key "{key}"'
                )
        patch_order = [_identity(entry[key]) for entry in order]
    else:
        patch_order = [_identity(item[key]) for item in plain]
    return _normalize_order(
        merged,
        patch_order,
        server_order,
        lambda item: _identity(item.get(key)) if isinstance(item, dict) else "",
    )


def _merge_set_list(original: list[Any], patch: list[Any], order: list[Any] | None, name: str) -> list[Any]:
    for item in patch:
        if isinstance(item, (dict, list)):
            raise bad_request(f"strategic merge patch: {name} is a list of scalars, found {_compact(item)}")
    merged = list({_identity(v): v for v in [*original, *patch]}.values())
    patch_order = [_identity(v) for v in (order if order is not None else patch)]
    return _normalize_order(merged, patch_order, [_identity(v) for v in original], _identity)


def _normalize_order(
    merged: list[Any], patch_order: list[str], server_order: list[str], identity: Callable[[Any], str]
) -> list[Any]:
    """Order a merged list as ``normalizeElementOrder`` does in Kubernetes.

    Items named by the patch follow the patch order; server-only items follow the live order; the
    two runs are interleaved by live positions where both items have one, else the patch item wins.
    """
    in_patch = {ident: i for i, ident in reversed(list(enumerate(patch_order)))}
    in_server = {ident: i for i, ident in reversed(list(enumerate(server_order)))}
    patched = sorted((m for m in merged if identity(m) in in_patch), key=lambda m: in_patch[identity(m)])
    server_only = sorted(
        (m for m in merged if identity(m) not in in_patch),
        key=lambda m: in_server.get(identity(m), len(in_server)),
    )
    result: list[Any] = []
    i = j = 0
    while i < len(server_only) or j < len(patched):
        if j >= len(patched):
            result.append(server_only[i])
            i += 1
        elif i >= len(server_only):
            result.append(patched[j])
            j += 1
        else:
            left = in_server.get(identity(server_only[i]))
            right = in_server.get(identity(patched[j]))
            if left is not None and right is not None and left < right:
                result.append(server_only[i])
                i += 1
            else:
                result.append(patched[j])
                j += 1
    return result


def _identity(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _same(a: Any, b: Any) -> bool:
    return _identity(a) == _identity(b)
