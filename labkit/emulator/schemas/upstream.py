"""Kubernetes' own OpenAPI definitions of the built-in kinds, read from the ``kubernetes-validate`` package.

A hand-typed schema drifts from the real API and teaches the wrong field names; the upstream definitions
are what ``kubectl explain`` prints on a real cluster and what its server validates against. The package
ships them per Kubernetes release as JSON Schema (draft 2020-12: nullable types as ``["string", "null"]``,
``$ref`` into ``#/$defs/…``, ``enum`` pinned on every ``apiVersion``/``kind``, int-or-string as ``oneOf``);
:func:`convert` turns each definition back into the OpenAPI v3 shape a v1.32 server publishes
(``"type": "string"``, ``allOf: [{$ref}]`` where a reference carries its own description, IntOrString as
``format: int-or-string`` with its ``oneOf`` alternatives) and keeps every ``x-kubernetes-*`` extension
kubectl reads (patch merge keys, list types, group/version/kind).

The file holds ~640 definitions (1.3 MB of JSON, ~26 MB as Python objects). Nothing is read until a
schema is first needed; then the file is parsed once, converted, and kept as one compact JSON blob per
API package (``io.k8s.api.core.v1`` …), and a package is decoded only when a group/version that needs it
is first served or validated. A lab that only writes core/v1 and apps/v1 objects holds those packages and
the meta types they refer to, not the whole API.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

Schema = dict[str, Any]

DEFINITIONS_PACKAGE = "kubernetes_validate"
_REF_PREFIX = "#/$defs/"
OPENAPI_REF_PREFIX = "#/components/schemas/"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_lock = threading.Lock()


def release(kubernetes_version: str) -> str:
    """The ``kubernetes-validate`` schema folder for a server version: ``v1.32.0`` → ``v1.32.0-local``.

    The package ships one folder per minor release (``vX.Y.0``); patch releases share their minor's API.

    Args:
        kubernetes_version: the version the emulator reports, ``vMAJOR.MINOR.PATCH``.
    """
    major, minor, _ = kubernetes_version.removeprefix("v").split(".", 2)
    return f"v{major}.{minor}.0-local"


def nearest_release(folder: str, available: Iterable[str]) -> str:
    """``folder`` if the package ships it, else the closest release it ships (older first, then newer).

    Newer ``kubernetes-validate`` releases drop the oldest Kubernetes versions; an API that is a minor
    version off is still far closer to the truth than no schema at all.

    Args:
        folder: the wanted folder (``v1.32.0-local``).
        available: the folder names the package ships.
    """
    def minor(name: str) -> int:
        return int(name.removeprefix("v").split(".")[1])

    local = sorted((name for name in available if name.endswith("-local") and name.count(".") == 2), key=minor)
    if folder in local or not local:
        return folder
    older = [name for name in local if minor(name) < minor(folder)]
    return older[-1] if older else local[0]


def package_of(name: str) -> str:
    """The API package of a definition: ``io.k8s.api.core.v1.Pod`` → ``io.k8s.api.core.v1``."""
    return name.rpartition(".")[0]


def ref_name(ref: str) -> str:
    """The definition a ``$ref`` points at, whichever document style it is written in."""
    return ref.rpartition("/")[2]


def convert(schema: Any, *, top: bool = True) -> Any:
    """One definition from the package's JSON Schema form into a v1.32 server's OpenAPI v3 form.

    Args:
        schema: a definition (or a part of one) as shipped.
        top: whether this is a definition itself (its ``apiVersion``/``kind`` enums are the package's
            addition, not Kubernetes': they are dropped there).
    """
    if isinstance(schema, list):
        return [convert(item, top=False) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: Schema = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            out["type"] = types[0] if len(types) == 1 else types
        elif key == "$ref":
            out["$ref"] = OPENAPI_REF_PREFIX + ref_name(value)
        elif key == "properties":
            out["properties"] = {name: convert(sub, top=False) for name, sub in value.items()}
            if top:
                for pinned in ("apiVersion", "kind"):
                    out["properties"].get(pinned, {}).pop("enum", None)
        elif key == "oneOf":
            continue  # int-or-string and quantity; given their wire type below
        else:
            out[key] = convert(value, top=False)
    if "$ref" in out and len(out) > 1:
        # A v1.32 server wraps a reference that carries its own description in allOf, and kubectl's
        # patch computation and explain templates both follow that form.
        out = {"allOf": [{"$ref": out.pop("$ref")}], **out}
    return out


def _scalar_union(name: str, schema: Schema) -> Schema:
    # The two union types of the API, published as a v1.32 server publishes them: no single type, the
    # alternatives under oneOf (kubectl explain then names them <IntOrString>, <Quantity>).
    described = {"description": schema["description"]} if "description" in schema else {}
    alternatives = [{"type": t} for option in schema["oneOf"] for t in _types(option)]
    if name == INT_OR_STRING:
        return {**described, "format": "int-or-string", "oneOf": alternatives}
    return {**described, "oneOf": alternatives}


def _types(option: Schema) -> list[str]:
    kinds = option.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    return [kind for kind in kinds if kind and kind != "null"]


@functools.cache
def _packages(folder: str) -> dict[str, bytes]:
    # Found, not imported: the package's own validator imports jsonschema and friends (a second of start-up)
    # and only its data files are wanted here.
    spec = importlib.util.find_spec(DEFINITIONS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{DEFINITIONS_PACKAGE} is not installed; reinstall labkit (pip install -e .)")
    shipped = Path(spec.submodule_search_locations[0]) / "kubernetes-json-schema"
    source = shipped / nearest_release(folder, [entry.name for entry in shipped.iterdir()]) / "_definitions.json"
    raw = json.loads(source.read_bytes())["$defs"]
    packages: dict[str, dict[str, Any]] = {}
    for name, schema in raw.items():
        converted = _scalar_union(name, schema) if "oneOf" in schema else convert(schema)
        packages.setdefault(package_of(name), {})[name] = converted
    return {package: json.dumps(definitions, separators=(",", ":")).encode()
            for package, definitions in packages.items()}


@functools.cache
def _package(folder: str, package: str) -> Mapping[str, Schema]:
    blob = _packages(folder).get(package)
    return json.loads(blob) if blob is not None else {}


class Definitions:
    """The upstream definitions of one Kubernetes release, decoded per API package on first use.

    Shared by every cluster of a process; treat the returned schemas as read-only.

    Args:
        kubernetes_version: the version the emulator reports (``v1.32.0``).
    """

    def __init__(self, kubernetes_version: str) -> None:
        self.folder = release(kubernetes_version)

    def get(self, name: str) -> Schema | None:
        """The definition called ``name`` (``io.k8s.api.core.v1.Service``), or None.

        Args:
            name: the definition's full name.
        """
        with _lock:  # the first call parses the file; two threads must not both do it
            return _package(self.folder, package_of(name)).get(name)

    def kind(self, group: str, version: str, kind: str) -> tuple[str, Schema] | None:
        """The definition whose ``x-kubernetes-group-version-kind`` names this kind, with its name.

        Args:
            group: API group, ``""`` for core.
            version: API version.
            kind: the kind.
        """
        for name in candidate_names(group, version, kind):
            schema = self.get(name)
            if schema is None:
                continue
            for gvk in schema.get("x-kubernetes-group-version-kind") or ():
                if (gvk.get("group", ""), gvk.get("version"), gvk.get("kind")) == (group, version, kind):
                    return name, schema
        return None

    def closure(self, roots: Iterable[str]) -> dict[str, Schema]:
        """Every definition reachable from ``roots`` by ``$ref``, roots included, by name.

        Args:
            roots: definition names.
        """
        found: dict[str, Schema] = {}
        pending = list(roots)
        while pending:
            name = pending.pop()
            if name in found:
                continue
            schema = self.get(name)
            if schema is None:
                continue
            found[name] = schema
            pending.extend(references(schema))
        return found


def references(schema: Any) -> set[str]:
    """The definition names a schema refers to, directly."""
    found: set[str] = set()
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key == "$ref" and isinstance(value, str):
                    found.add(ref_name(value))
                else:
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return found


def candidate_names(group: str, version: str, kind: str) -> list[str]:
    """Where Kubernetes names the definition of a built-in kind (``io.k8s.api.apps.v1.Deployment`` …).

    Args:
        group: API group, ``""`` for core.
        version: API version.
        kind: the kind.
    """
    if group == "apiextensions.k8s.io":
        return [f"io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{version}.{kind}"]
    if group == "apiregistration.k8s.io":
        return [f"io.k8s.kube-aggregator.pkg.apis.apiregistration.{version}.{kind}"]
    if group == "meta.k8s.io":
        return [f"io.k8s.apimachinery.pkg.apis.meta.{version}.{kind}"]
    package = group.split(".", maxsplit=1)[0] if group else "core"
    names = [f"io.k8s.api.{package}.{version}.{kind}"]
    if group.endswith(".k8s.io") and group.count(".") > 2:
        # rbac.authorization.k8s.io → rbac; admissionregistration.k8s.io → admissionregistration
        names.append(f"io.k8s.api.{group.removesuffix('.k8s.io').replace('.', '')}.{version}.{kind}")
    return names


@functools.cache
def definitions(kubernetes_version: str) -> Definitions:
    """The shared :class:`Definitions` of a release.

    Args:
        kubernetes_version: ``v1.32.0``.
    """
    return Definitions(kubernetes_version)
