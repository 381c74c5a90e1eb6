"""The legacy discovery documents: ``/version``, ``/api``, ``/apis``, ``/apis/{g}`` and the resource lists.

kubectl first asks for aggregated discovery (``application/json;g=apidiscovery.k8s.io;v=v2…``) and falls
back silently when a server answers plain JSON, so these documents are all a client needs to map names
to URLs. They follow a v1.32 server byte for byte where clients look: ``kind``/``apiVersion`` quirks (the
core ``APIResourceList`` and ``APIVersions`` carry no ``apiVersion``), sorted resource names,
subresources as ``pods/exec`` entries with an empty ``singularName``, and a ``group``/``version`` only on
subresources whose kind lives elsewhere (``deployments/scale`` → ``autoscaling/v1 Scale``).

Each builder is a pure function of the :class:`~labkit.emulator.api.resources.Registry`; the HTTP layer
serialises the dicts.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from labkit.emulator.api.resources import Registry, ResourceType

KUBERNETES_VERSION = "v1.32.0"
# The commit and build metadata of the v1.32.0 release, so that ``kubectl version`` looks familiar.
_GIT_COMMIT = "70d3cc986aa8221cd1dfb1121852688902d3bf53"
_BUILD_DATE = "2024-12-11T17:59:15Z"
_GO_VERSION = "go1.23.3"


def version_info(*, git_version: str = KUBERNETES_VERSION, platform: str = "linux/amd64") -> dict[str, Any]:
    """The ``/version`` document (``kubectl version`` prints ``gitVersion``; clients check ``minor``).

    Args:
        git_version: the release the emulator claims to be, ``vMAJOR.MINOR.PATCH``.
        platform: ``os/arch`` of the server.
    """
    major, minor, _ = git_version.removeprefix("v").split(".", 2)
    return {
        "major": major,
        "minor": minor,
        "gitVersion": git_version,
        "gitCommit": _GIT_COMMIT,
        "gitTreeState": "clean",
        "buildDate": _BUILD_DATE,
        "goVersion": _GO_VERSION,
        "compiler": "gc",
        "platform": platform,
    }


def api_versions(server_address: str) -> dict[str, Any]:
    """The ``/api`` document: the core group's versions and where clients reach the server.

    Args:
        server_address: ``host:port`` clients should use, e.g. ``127.0.0.1:6443``.
    """
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group(registry: Registry, group: str) -> dict[str, Any] | None:
    """The ``/apis/{group}`` document (an ``APIGroup``), or None when the group is not served.

    Args:
        registry: the served types.
        group: a non-core group name such as ``apps``.
    """
    versions = registry.groups().get(group)
    if not group or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group, versions)}


def api_group_list(registry: Registry) -> dict[str, Any]:
    """The ``/apis`` document: every non-core group with its versions and preferred version.

    Args:
        registry: the served types.
    """
    groups = [_group_entry(group, versions) for group, versions in registry.groups().items() if group]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    """The ``/api/v1`` or ``/apis/{group}/{version}`` document, or None when nothing is served there.

    Args:
        registry: the served types.
        group: ``""`` for ``/api/v1``.
        version: the API version.
    """
    types = registry.resources(group, version)
    if not types:
        return None
    entries = [entry for rt in types for entry in resource_entries(rt, _storage_version(registry, rt))]
    entries.sort(key=lambda entry: entry["name"])
    gv = f"{group}/{version}" if group else version
    if group:
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": entries}
    # The core list really has no apiVersion; some clients compare documents, so mirror that.
    return {"kind": "APIResourceList", "groupVersion": gv, "resources": entries}


def resource_entries(rt: ResourceType, storage_version: str | None = None) -> list[dict[str, Any]]:
    """The ``APIResource`` entries of one type: the resource itself, then one per subresource.

    Args:
        rt: the type to describe.
        storage_version: the version objects of this resource are stored in; ``rt.version`` when None.
            Every served version of a CRD advertises the hash of the storage version.
    """
    main: dict[str, Any] = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        main["shortNames"] = list(rt.short_names)
    if rt.categories:
        main["categories"] = list(rt.categories)
    main["storageVersionHash"] = storage_version_hash(rt.group, storage_version or rt.version, rt.kind)
    entries = [main]
    for sub in rt.subresources:
        entry: dict[str, Any] = {"name": f"{rt.plural}/{sub.name}", "singularName": "",
                                 "namespaced": rt.namespaced}
        if sub.group or sub.version:
            entry["group"] = sub.group
            entry["version"] = sub.version
        entry["kind"] = sub.kind
        entry["verbs"] = list(sub.verbs)
        entries.append(entry)
    return entries


def storage_version_hash(group: str, version: str, kind: str) -> str:
    """The opaque ``storageVersionHash`` a real server publishes: it changes only with the storage GVK.

    Args:
        group: API group of the storage version.
        version: the storage version.
        kind: the kind.
    """
    digest = hashlib.sha256(f"{group}/{version}/{kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def _storage_version(registry: Registry, rt: ResourceType) -> str:
    if rt.storage or not rt.crd:
        return rt.version
    return next((other.version for other in registry if other.crd == rt.crd and other.storage), rt.version)


def _group_entry(group: str, versions: list[str]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{group}/{version}", "version": version} for version in versions]
    return {"name": group, "versions": listed, "preferredVersion": listed[0]}
