"""Request bodies decoded the way a Kubernetes API server decodes them: duplicate keys noticed, not lost.

Python's ``json`` keeps the last of two equal keys without a word, so ``{"replicas": 1, "replicas": 3}``
would silently become ``3``. A real server's strict decoder reports every duplicate by its full path
(``duplicate field "spec.replicas"``) and, under ``fieldValidation=Strict``, refuses the request. The
decoder here records the duplicates while building the same dicts ``json.loads`` would, and the YAML
loader does the same for server-side apply bodies.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import yaml


class _Tracked(dict):  # type: ignore[type-arg]
    """A decoded JSON object that remembers which of its keys appeared more than once."""

    __slots__ = ("duplicates",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__()
        self.duplicates: list[str] = []
        for key, value in pairs:
            if key in self and key not in self.duplicates:
                self.duplicates.append(key)
            self[key] = value


def loads_json(raw: bytes | str) -> tuple[Any, list[str]]:
    """Decode JSON, returning plain dicts/lists and the paths of duplicated keys (``spec.replicas``).

    Args:
        raw: the body.

    Raises:
        ValueError: the body is not JSON.
    """
    tracked = json.loads(raw, object_pairs_hook=_Tracked)
    duplicates: list[str] = []
    return _plain(tracked, "", duplicates), duplicates


def _plain(value: Any, path: str, duplicates: list[str]) -> Any:
    if isinstance(value, _Tracked):
        duplicates.extend(f"{path}.{key}" if path else key for key in value.duplicates)
        return {key: _plain(item, f"{path}.{key}" if path else key, duplicates) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item, f"{path}[{index}]", duplicates) for index, item in enumerate(value)]
    return value


# libyaml's safe loader (PyYAML's wheels carry it) where present: for YAML read often and produced by programs
# (mesh config, kubeconfigs), where PyYAML's pure-Python parser showed in istiod's profile.
FAST_YAML: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateKey
    return result


class _DuplicateCheckingLoader(yaml.SafeLoader):
    """SafeLoader that records ``key "x" already set in map`` lines as go-yaml's strict mode words them."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self.duplicate_lines: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            if isinstance(key, str) and key in seen:
                self.duplicate_lines.append(f'line {key_node.start_mark.line + 1}: key "{key}" already set in map')
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def loads_yaml(raw: bytes | str) -> tuple[Any, list[str]]:
    """Decode one YAML document, returning it and go-yaml's strict-mode lines for its duplicate keys.

    Args:
        raw: the body.

    Raises:
        yaml.YAMLError: the body is not YAML.
    """
    if raw.lstrip()[:1] in (b"{", "{"):
        # What clients send as apply-patch+yaml is mostly JSON (the Python client's and kubectl's are): decoded
        # as JSON it costs a fraction of PyYAML's pure-Python parse. Duplicate keys, or anything JSON refuses,
        # take the YAML path below, which words the error or the duplicate as the API server does.
        with contextlib.suppress(ValueError, _DuplicateKey):
            return json.loads(raw, object_pairs_hook=_unique_keys), []
    loader = _DuplicateCheckingLoader(raw)
    try:
        document = loader.get_single_data()  # type: ignore[no-untyped-call]
    finally:
        loader.dispose()  # type: ignore[no-untyped-call]
    return document, loader.duplicate_lines
