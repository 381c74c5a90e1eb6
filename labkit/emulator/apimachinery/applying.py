"""Server-side apply and the ``managedFields`` bookkeeping behind it.

``kubectl apply --server-side`` and ``DynamicClient.server_side_apply`` send the whole manifest
every time; the server must work out what changed. It does so by remembering, per field manager,
which fields that manager set (``metadata.managedFields``, in the ``FieldsV1`` encoding real
clients parse and print). From those sets follow the behaviours users notice:

* a field dropped from a manifest disappears from the object, unless another manager also owns it;
* re-applying an unchanged manifest returns the live object untouched (same ``managedFields``,
  same times), so the store does not bump ``resourceVersion`` and watchers do not churn;
* changing a field another manager owns is a 409 naming the field and the manager, unless forced.

This is a compact model of ``sigs.k8s.io/structured-merge-diff``: field sets are Python sets of
paths, associative lists are identified by the keys in :mod:`.schemas` (for custom resources maps
merge and lists are atomic), and list order follows the same interleaving rule as the real merge.
Ordinary writes (create, update, patch) go through :func:`record_update`, which gives the writer
an ``Update`` entry for the fields it changed and takes them away from everybody else, as the
real server does.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from labkit.emulator.apimachinery.status import StatusError, bad_request

from .schemas import BUILTIN_KINDS, Field, KindKey, kind_key_of, schema_for

Element = tuple[str, str]
"""One step of a field path: ``("f", name)``, ``("k", '{"name":"x"}')`` or ``("v", '"x"')``."""

Path = tuple[Element, ...]

BEFORE_FIRST_APPLY = "before-first-apply"
"""The manager a real server invents for the fields of an object that had no ``managedFields``."""

# Identity and server bookkeeping: never owned by any manager.
_SERVER_METADATA = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
        "selfLink",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    }
)
_MISSING: Any = object()


@dataclass
class _Manager:
    manager: str
    operation: str
    api_version: str
    time: str | None
    subresource: str
    fields: set[Path] = field(default_factory=set)

    @property
    def identity(self) -> tuple[str, str, str]:
        return self.manager, self.operation, self.subresource

    def describe(self) -> str:
        """How a real server names a manager in conflict messages."""
        text = json.dumps(self.manager)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text


@dataclass(frozen=True)
class _Comparison:
    added: frozenset[Path]
    removed: frozenset[Path]
    modified: frozenset[Path]


# --- public API ---------------------------------------------------------------------------------


def apply(
    live: Mapping[str, Any] | None,
    applied: Mapping[str, Any],
    manager: str,
    *,
    kind_key: KindKey,
    force: bool,
    now: str,
    status_subresource: bool | None = None,
) -> dict[str, Any]:
    """Server-side apply ``applied`` on behalf of ``manager``.

    Args:
        live: the stored object, or ``None`` to create it.
        applied: the manifest as sent by the client (``application/apply-patch+yaml`` body).
        manager: the field manager (``?fieldManager=``, ``kubectl`` by default on the client side).
        kind_key: ``(group, Kind)``; built-in kinds merge lists by their keys, others atomically.
        force: take over fields owned by other managers instead of failing (``--force-conflicts``).
        now: the RFC 3339 time recorded for this manager when something changes.
        status_subresource: whether ``status`` belongs to ``/status`` (and so to nobody applying the
            main resource); ``None`` looks the kind up among built-ins (custom kinds: no).

    Returns:
        The new object with updated ``managedFields``; equal to ``live`` (same times, same
        resourceVersion) when nothing changes, so the caller can skip the write.

    Raises:
        StatusError: 409 Conflict listing fields other managers own with other values (``force``
            off); 400 for a manifest that is not an object, lacks ``apiVersion``/``kind``, or has a
            list item without its key.
    """
    if not isinstance(applied, Mapping):
        raise bad_request("apply: the applied configuration must be an object")
    for member in ("apiVersion", "kind"):
        if not applied.get(member):
            raise bad_request(f"apply: {member} must be set")
    schema = schema_for(kind_key)
    scope = _scope(kind_key, status_subresource, "")
    config = _clean(applied, scope)
    api_version = str(applied["apiVersion"])
    new_set = _paths(config, schema, scope, _describe_object(applied), strict=True)

    if live is None:
        created = copy.deepcopy(config)
        managers = [_Manager(manager, "Apply", api_version, now, "", new_set)] if new_set else []
        _set_managed(created, managers)
        return created

    managers = _managers_of(live)
    if not (live.get("metadata") or {}).get("managedFields"):
        owned = _paths(live, schema, scope, _describe_object(live))
        managers = [_Manager(BEFORE_FIRST_APPLY, "Update", str(live.get("apiVersion", "")), now, "", owned)]
    me = next((m for m in managers if m.identity == (manager, "Apply", "")), None)
    last_set = me.fields if me else set()
    others = [m for m in managers if m is not me]
    kept_by_others = set().union(*(m.fields for m in others)) if others else set()

    current = _without_managed(live)
    merged = _merge(current, config, schema)
    _prune(merged, last_set - new_set - kept_by_others, new_set | kept_by_others, schema)

    comparison = _compare(current, merged, schema, scope)
    changed = comparison.added | comparison.modified
    conflicts = [(other, sorted(other.fields & changed, key=path_string)) for other in others]
    conflicts = [(other, paths) for other, paths in conflicts if paths]
    if conflicts and not force:
        raise _conflict_error(conflicts)

    before = {m.identity: set(m.fields) for m in managers}
    for other in others:
        other.fields -= changed | comparison.removed
    if me is None:
        me = _Manager(manager, "Apply", api_version, now, "")
        managers.append(me)
    me.fields = set(new_set)
    managers = [m for m in managers if m.fields]
    after = {m.identity: m.fields for m in managers}

    if merged == current and before == after:
        return copy.deepcopy(dict(live))
    me.time, me.api_version = now, api_version
    _set_managed(merged, managers)
    return merged


def record_update(
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any],
    manager: str,
    now: str,
    *,
    subresource: str = "",
    status_subresource: bool | None = None,
) -> dict[str, Any]:
    """Track an ordinary write (create, update, any patch) in ``managedFields``.

    The writer's ``Update`` entry gains the fields it added or changed; other managers lose them
    (an update never conflicts); removed fields leave every set. ``managedFields`` sent by the
    client are ignored: ownership is the server's to compute.

    Args:
        before: the stored object, or ``None`` for a create.
        after: the object about to be stored.
        manager: the field manager (``?fieldManager=`` or derived from the user agent, e.g.
            ``kubectl-edit``).
        now: the RFC 3339 time recorded when something changes.
        subresource: ``"status"`` for writes through ``/status``.
        status_subresource: as for :func:`apply`; ``None`` looks the kind up among built-ins.

    Returns:
        ``after`` with ``metadata.managedFields`` updated (``before``'s entries verbatim when the
        write changes nothing).
    """
    kind_key = kind_key_of(after)
    schema = schema_for(kind_key)
    scope = _scope(kind_key, status_subresource, subresource)
    result = copy.deepcopy(dict(after))
    old = _without_managed(before) if before is not None else {}
    new = _without_managed(result)
    managers = _managers_of(before) if before is not None else []
    if before is not None and old == new:
        # Verbatim, not re-encoded: the store must see an unchanged object and skip the write.
        previous = (before.get("metadata") or {}).get("managedFields")
        metadata = result.setdefault("metadata", {})
        if previous is None:
            metadata.pop("managedFields", None)
        else:
            metadata["managedFields"] = copy.deepcopy(previous)
        return result

    comparison = _compare(old, new, schema, scope)
    changed = comparison.added | comparison.modified
    identity = (manager, "Update", subresource)
    me = next((m for m in managers if m.identity == identity), None)
    for other in managers:
        if other is not me:
            other.fields -= changed | comparison.removed
    if me is None:
        me = _Manager(manager, "Update", "", None, subresource)
        managers.append(me)
    me.fields = (me.fields - comparison.removed) | changed
    me.time, me.api_version = now, str(after.get("apiVersion", ""))
    _set_managed(result, [m for m in managers if m.fields])
    return result


def managed_fields(obj: Mapping[str, Any]) -> dict[tuple[str, str, str], set[str]]:
    """The fields each manager owns, as readable paths (``.spec.replicas``): for tests and debugging.

    Args:
        obj: an object with ``metadata.managedFields``.

    Returns:
        ``{(manager, operation, subresource): {".spec.replicas", …}}``.
    """
    return {m.identity: {path_string(p) for p in m.fields} for m in _managers_of(obj)}


def path_string(path: Path) -> str:
    """A field path as real conflict messages print it: ``.spec.containers[name="web"].image``.

    Args:
        path: the path.
    """
    parts = []
    for tag, text in path:
        if tag == "f":
            parts.append("." + text)
        elif tag == "k":
            key = json.loads(text)
            parts.append("[" + ",".join(f"{name}={json.dumps(key[name])}" for name in sorted(key)) + "]")
        elif tag == "v":
            parts.append(f"[={text}]")
        else:
            parts.append(f"[{text}]")
    return "".join(parts)


def fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    """Encode a field set as ``FieldsV1`` (``f:`` fields, ``k:`` keyed items, ``v:`` set values, ``.``).

    Args:
        paths: the owned paths.
    """
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for tag, text in path:
            node = node.setdefault(f"{tag}:{text}", {})
        node["."] = {}

    def tidy(node: dict[str, Any]) -> dict[str, Any]:
        # A member without children is written as {}, a member with children carries ".".
        children = {key: tidy(child) for key, child in sorted(node.items()) if key != "."}
        if "." in node and children:
            return {".": {}, **children}
        return children

    return tidy(root)


def parse_fields_v1(tree: Mapping[str, Any]) -> set[Path]:
    """Decode ``FieldsV1`` into a set of paths (the inverse of :func:`fields_v1`).

    Args:
        tree: the ``fieldsV1`` object of a ``managedFields`` entry.
    """
    out: set[Path] = set()

    def walk(node: Mapping[str, Any], prefix: Path) -> None:
        for key, child in node.items():
            if key == ".":
                out.add(prefix)
                continue
            tag, _, text = key.partition(":")
            if tag in ("k", "v"):
                try:
                    text = _canonical(json.loads(text))
                except ValueError:
                    raise bad_request(f"managedFields: invalid field set element {key!r}") from None
            path = (*prefix, (tag, text))
            if child:
                walk(child, path)
            else:
                out.add(path)

    walk(tree, ())
    return out


# --- field sets ---------------------------------------------------------------------------------


def _scope(kind_key: KindKey, status_subresource: bool | None, subresource: str) -> str:
    """Which part of an object a write owns: ``all``, ``main`` (no status) or ``status``."""
    if subresource == "status":
        return "status"
    if status_subresource is None:
        info = BUILTIN_KINDS.get(kind_key)
        status_subresource = bool(info and info.status_subresource)
    return "main" if status_subresource else "all"


def _tracked(key: str, scope: str) -> bool:
    if key in ("apiVersion", "kind"):
        return False
    if scope == "status":
        return key == "status"
    return not (scope == "main" and key == "status")


def _paths(
    obj: Mapping[str, Any], schema: Field, scope: str, what: str, *, strict: bool = False
) -> set[Path]:
    """The field set of an object: leaves, members of keyed lists and values of set lists."""
    out: set[Path] = set()
    for key, value in obj.items():
        if not _tracked(key, scope) or value is None:
            continue
        tracked = value
        if key == "metadata" and isinstance(value, Mapping):
            tracked = {k: v for k, v in value.items() if k not in _SERVER_METADATA}
            if not tracked:
                continue
        _walk(tracked, schema.child(key), (("f", key),), out, what, strict)
    return out


def _walk(value: Any, schema: Field, path: Path, out: set[Path], what: str, strict: bool) -> None:
    if isinstance(value, Mapping):
        if not value:
            out.add(path)
        for key, child in value.items():
            if child is not None:
                _walk(child, schema.child(key), (*path, ("f", key)), out, what, strict)
    elif isinstance(value, list) and schema.keys:
        seen: set[str] = set()
        for position, item in enumerate(value):
            key = _item_key(item, schema)
            if key is None:
                if not strict:
                    continue
                missing = next(k for k in schema.keys if not isinstance(item, Mapping) or item.get(k) is None)
                raise bad_request(
                    f"failed to create typed patch object ({what}): {path_string(path)}: element "
                    f"{position}: associative list with keys has an element that omits key field "
                    f'"{missing}" (and doesn\'t have default value)'
                )
            if key in seen and strict:
                raise bad_request(
                    f"failed to create typed patch object ({what}): {path_string(path)}: "
                    f"duplicate entries for key {path_string((('k', key),))}"
                )
            seen.add(key)
            item_path = (*path, ("k", key))
            out.add(item_path)
            for name, child in item.items():
                if child is not None:
                    _walk(child, schema.child(name), (*item_path, ("f", name)), out, what, strict)
    elif isinstance(value, list) and schema.set_list:
        for item in value:
            out.add((*path, ("v", _canonical(item))))
    else:
        out.add(path)


def _item_key(item: Any, schema: Field) -> str | None:
    if not isinstance(item, Mapping):
        return None
    key = {}
    for name in schema.keys:
        value = item.get(name, schema.key_defaults.get(name))
        if value is None:
            return None
        key[name] = value
    return _canonical(key)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _lookup(obj: Any, path: Path, schema: Field) -> Any:
    node, node_schema = obj, schema
    for tag, text in path:
        if tag == "f":
            if not isinstance(node, Mapping) or text not in node:
                return _MISSING
            node, node_schema = node[text], node_schema.child(text)
        elif tag == "k":
            if not isinstance(node, list):
                return _MISSING
            node = next((item for item in node if _item_key(item, node_schema) == text), _MISSING)
            if node is _MISSING:
                return _MISSING
        elif tag == "v":
            if not isinstance(node, list):
                return _MISSING
            node = next((item for item in node if _canonical(item) == text), _MISSING)
            if node is _MISSING:
                return _MISSING
        else:
            return _MISSING
    return node


def _compare(old: Mapping[str, Any], new: Mapping[str, Any], schema: Field, scope: str) -> _Comparison:
    old_set = _paths(old, schema, scope, "")
    new_set = _paths(new, schema, scope, "")
    modified = {
        path
        for path in old_set & new_set
        if path[-1][0] == "f" and _lookup(old, path, schema) != _lookup(new, path, schema)
    }
    return _Comparison(frozenset(new_set - old_set), frozenset(old_set - new_set), frozenset(modified))


# --- merging and pruning ------------------------------------------------------------------------


def _clean(applied: Mapping[str, Any], scope: str) -> dict[str, Any]:
    """The applied configuration without nulls and without fields the server owns."""

    def strip(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: strip(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    config = strip(applied)
    metadata = config.get("metadata")
    if isinstance(metadata, dict):
        for key in _SERVER_METADATA - {"name", "namespace"}:
            metadata.pop(key, None)
    if scope == "main":
        config.pop("status", None)
    return config


def _merge(live: Any, config: Any, schema: Field) -> Any:
    if isinstance(live, dict) and isinstance(config, Mapping):
        result = dict(live)
        for key, value in config.items():
            result[key] = _merge(live.get(key, _MISSING), value, schema.child(key))
        return result
    if isinstance(live, list) and isinstance(config, list):
        if schema.keys:
            return _merge_list(
                live, config, lambda item: _item_key(item, schema), lambda old, new: _merge(old, new, schema)
            )
        if schema.set_list:
            return _merge_list(live, config, _canonical, lambda old, new: copy.deepcopy(new))
    return copy.deepcopy(config)


def _merge_list(
    lhs: list[Any], rhs: list[Any], key_of: Callable[[Any], str | None], merge_item: Callable[[Any, Any], Any]
) -> list[Any]:
    """Merge associative lists in the order structured-merge-diff produces.

    Items the config shares with the live list follow the config's order; live-only items stay
    where they were relative to them; new items come in config order.
    """
    lhs_keys: list[Any] = [key_of(item) or ("unkeyed", i) for i, item in enumerate(lhs)]
    rhs_keys: list[Any] = [key_of(item) for item in rhs]
    lhs_by = dict(zip(reversed(lhs_keys), reversed(lhs), strict=True))
    rhs_by = dict(zip(rhs_keys, rhs, strict=True))
    shared = [key for key in rhs_keys if key in lhs_by]
    shared_at = 0
    merged_rhs: set[Any] = set()
    out: list[Any] = []

    def next_shared() -> Any:
        return shared[shared_at] if shared_at < len(shared) else None

    li = ri = 0
    while li < len(lhs) or ri < len(rhs):
        if li < len(lhs) and ri < len(rhs):
            key = lhs_keys[li]
            if key == rhs_keys[ri]:
                merged_rhs.add(key)
                out.append(merge_item(lhs_by[key], rhs_by[key]))
                li, ri = li + 1, ri + 1
                shared_at += 1
                continue
            if key in rhs_by and next_shared() is not None and next_shared() != key:
                li += 1
                continue
        if li < len(lhs):
            key = lhs_keys[li]
            if key not in rhs_by:
                out.append(lhs[li])
                li += 1
                continue
            if key in merged_rhs:
                li += 1
                continue
        if ri < len(rhs):
            key = rhs_keys[ri]
            merged_rhs.add(key)
            out.append(merge_item(lhs_by.get(key, _MISSING), rhs_by[key]))
            ri += 1
            if next_shared() == key:
                shared_at += 1
    return out


def _prune(obj: dict[str, Any], doomed: set[Path], protected: set[Path], schema: Field) -> None:
    """Remove fields nobody owns any more; keep containers that still hold owned fields."""
    holds_owned = {path[:i] for path in protected for i in range(1, len(path))}
    for path in sorted(doomed, key=len, reverse=True):
        if path in holds_owned:
            continue  # another manager owns something inside: remove only what is doomed within it
        if (
            len(path) > 1
            and path[-1][0] == "f"
            and path[-2][0] == "k"
            and path[-1][1] in json.loads(path[-2][1])
        ):
            continue  # a key field goes with its item, never before it
        _remove(obj, path, schema)
        for depth in range(len(path) - 1, 0, -1):
            ancestor = path[:depth]
            node = _lookup(obj, ancestor, schema)
            if node in ({}, []) and ancestor not in protected and ancestor not in holds_owned:
                _remove(obj, ancestor, schema)
            else:
                break


def _remove(obj: dict[str, Any], path: Path, schema: Field) -> None:
    parent_schema = schema
    for tag, text in path[:-1]:
        if tag == "f":
            parent_schema = parent_schema.child(text)
    parent = _lookup(obj, path[:-1], schema) if len(path) > 1 else obj
    tag, text = path[-1]
    if tag == "f" and isinstance(parent, dict):
        parent.pop(text, None)
    elif tag in ("k", "v") and isinstance(parent, list):
        match = (
            (lambda item: _item_key(item, parent_schema) == text)
            if tag == "k"
            else (lambda item: _canonical(item) == text)
        )
        parent[:] = [item for item in parent if not match(item)]


# --- managedFields ------------------------------------------------------------------------------


def _managers_of(obj: Mapping[str, Any]) -> list[_Manager]:
    entries = (obj.get("metadata") or {}).get("managedFields") or []
    managers = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        managers.append(
            _Manager(
                manager=str(entry.get("manager", "")),
                operation=str(entry.get("operation", "Update")),
                api_version=str(entry.get("apiVersion", "")),
                time=entry.get("time"),
                subresource=str(entry.get("subresource", "")),
                fields=parse_fields_v1(entry.get("fieldsV1") or {}),
            )
        )
    return managers


def _set_managed(obj: dict[str, Any], managers: list[_Manager]) -> None:
    entries = []
    for m in managers:
        entry: dict[str, Any] = {"manager": m.manager, "operation": m.operation, "apiVersion": m.api_version}
        if m.time is not None:
            entry["time"] = m.time
        entry["fieldsType"] = "FieldsV1"
        entry["fieldsV1"] = fields_v1(m.fields)
        if m.subresource:
            entry["subresource"] = m.subresource
        entries.append(entry)
    # The order a real server writes: Apply before Update, then by time, manager, version, subresource.
    entries.sort(
        key=lambda e: (
            e["operation"],
            e.get("time") or "",
            e["manager"],
            e["apiVersion"],
            e.get("subresource", ""),
        )
    )
    metadata = obj.setdefault("metadata", {})
    if entries:
        metadata["managedFields"] = entries
    else:
        metadata.pop("managedFields", None)


def _without_managed(obj: Mapping[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(dict(obj))
    metadata = result.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("managedFields", None)
    return result


def _describe_object(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    name = "/".join(str(p) for p in (metadata.get("namespace"), metadata.get("name")) if p)
    return f"{name}; {obj.get('apiVersion', '')}, Kind={obj.get('kind', '')}"


def _conflict_error(conflicts: list[tuple[_Manager, list[Path]]]) -> StatusError:
    conflicts = sorted(conflicts, key=lambda c: c[0].manager)
    causes = [
        {
            "type": "FieldManagerConflict",
            "message": f"conflict with {manager.describe()}",
            "field": path_string(path),
        }
        for manager, paths in conflicts
        for path in paths
    ]
    if len(causes) == 1:
        manager, paths = conflicts[0]
        detail = f"conflict with {manager.describe()}: {path_string(paths[0])}"
    else:
        lines = []
        for manager, paths in conflicts:
            lines.append(f"conflicts with {manager.describe()}:")
            lines.extend(f"- {path_string(path)}" for path in paths)
        detail = "\n".join(lines)
    plural = "" if len(causes) == 1 else "s"
    # The real server sends this Status without name or kind: only the causes.
    return StatusError(
        409, "Conflict", f"Apply failed with {len(causes)} conflict{plural}: {detail}", {"causes": causes}
    )
