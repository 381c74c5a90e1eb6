"""The on-disk xDS contract between istiod (the writer) and a proxy's agent and Envoy (the readers).

Every proxy has a directory ``<root>/<cluster>/<namespace>/<pod>/`` (:func:`xds_dir`) holding
DiscoveryResponses (``{"version_info": …, "resources": […]}``) that Envoy watches:

* ``lds.json`` and ``cds.json``: every listener / every cluster (state of the world);
* ``eds/<name>.json``, ``rds/<name>.json``, ``sds/<name>.json``: **one file per resource**. Envoy
  1.40's filesystem subscriptions for EDS, RDS and SDS reject a file holding several resources
  (``Unexpected EDS resource length: 2``), because each cluster, route config or secret subscribes
  on its own. Names are percent-encoded into file names (:func:`resource_file`);
* ``bootstrap.json`` (the agent's) and ``rejections.json`` (what Envoy refused, recorded by the agent
  from Envoy's log so istiod can say why; :func:`read_rejections`).

Builders stay free of paths: they point config sources at ``{xds_dir}/eds.json``, ``{xds_dir}/rds.json``
or ``{xds_dir}/sds.json`` (:func:`config_source`), and :class:`XdsWriter` rewrites each such reference to
the file of the resource it names (a cluster's EDS service name, an HTTP connection manager's
``route_config_name``, an SDS secret config's ``name``). Any other string containing ``{xds_dir}`` gets
the directory substituted. This is done on the resource dicts, not on serialized JSON, so paths with
quotes or backslashes cannot break the document.

Envoy only notices a file that is renamed into place, so every write goes to a temporary file in the
same directory followed by ``os.replace``. Files are written only when their resources change, in the
order SDS → EDS → CDS → RDS → LDS, so a reference never reaches Envoy before its target. Each file's
``version_info`` is ``<config version>/<digest of its resources>``: Envoy ignores it (content decides),
but it shows it back per subscription (``version_text``), and a version unique to the content is what
lets :func:`labkit.emulator.envoy.admin.confirm` tell which write Envoy applied.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from labkit.errors import XdsInconsistentError

if TYPE_CHECKING:  # the mesh layer sits above this one: its model is only a type here
    from labkit.emulator.mesh.model import ProxyConfig

PLACEHOLDER = "{xds_dir}"
BOOTSTRAP = "bootstrap.json"
REJECTIONS = "rejections.json"

LDS, CDS, RDS, EDS, SDS = "LDS", "CDS", "RDS", "EDS", "SDS"
WRITE_ORDER = (SDS, EDS, CDS, RDS, LDS)
PER_RESOURCE = (EDS, RDS, SDS)

TYPE_URLS = {
    LDS: "type.googleapis.com/envoy.config.listener.v3.Listener",
    CDS: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    RDS: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
    EDS: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    SDS: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
}
KIND_NAMES = {LDS: "listener", CDS: "cluster", RDS: "route config", EDS: "endpoints of cluster", SDS: "secret"}

# Subscription stat prefixes of the state-of-the-world types (the others are per resource).
LDS_STATS = "listener_manager.lds"
CDS_STATS = "cluster_manager.cds"

_EMPTY = {"version_info": "", "resources": []}


def xds_dir(root: Path, pod_uid: str) -> Path:
    """The xDS directory of one proxy: ``root/<pod uid>``.

    Keyed by the pod's uid, which the node (for the agent) and istiod (from the pod object) both know:
    not by the cluster ID a proxy reports, which Istio's configuration may leave at ``Kubernetes``, and which
    a primary's istiod must not need to guess for a remote cluster's proxies.
    """
    return Path(root) / pod_uid


def resource_file(directory: Path, kind: str, name: str = "") -> Path:
    """Where the resources of ``kind`` (and, for EDS/RDS/SDS, the one named ``name``) live.

    Names are percent-encoded (``kubernetes://default`` → ``kubernetes%3A%2F%2Fdefault.json``); ``|``,
    common in Istio's cluster names, stays readable.
    """
    directory = Path(directory)
    if kind in PER_RESOURCE:
        return directory / kind.lower() / f"{quote(name, safe='|')}.json"
    return directory / f"{kind.lower()}.json"


def config_source(kind: str) -> dict[str, Any]:
    """A config source for builders: ``kind``'s file under ``{xds_dir}``; the writer makes it per resource."""
    return {"path_config_source": {"path": f"{PLACEHOLDER}/{kind.lower()}.json"}, "resource_api_version": "V3"}


def stat_name(name: str) -> str:
    """A resource name as Envoy spells it in stat names (``kubernetes://default`` → ``kubernetes_default``)."""
    return name.replace("://", "_").replace(":", "_")


def cluster_stats(cluster: Mapping[str, Any]) -> str:
    """The stat prefix of a cluster, under which its EDS subscription counts (``cluster.<name>``)."""
    return f"cluster.{stat_name(cluster.get('alt_stat_name') or cluster.get('name', ''))}"


@dataclass(frozen=True)
class WrittenFile:
    """One file :meth:`XdsWriter.publish` wrote.

    Args:
        kind: ``LDS``, ``CDS``, ``RDS``, ``EDS`` or ``SDS``.
        name: the resource's name for EDS/RDS/SDS, ``""`` for LDS/CDS.
        path: the file.
        version: its ``version_info``, unique to its content.
        resources: the names of the resources in it, in order (Envoy's parse errors point at an index).
        subscriptions: the Envoy subscriptions that must apply it, as stat prefixes; each entry lists
            alternatives of which exactly one exists (a route config shared by several HTTP connection
            managers is one subscription, counted under the first one's ``stat_prefix``). Empty when
            nothing references the resource (Envoy will not read it).
        changed: the resources that are new or differ from the previous write of this file (LDS/CDS hold
            many): when Envoy's reason names none, the culprit is among them.
    """

    kind: str
    name: str
    path: Path
    version: str
    resources: tuple[str, ...]
    subscriptions: tuple[tuple[str, ...], ...]
    changed: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """``CDS``, or ``EDS outbound|5000||helloworld…`` for per-resource files."""
        return f"{self.kind} {self.name}" if self.name else self.kind


@dataclass(frozen=True)
class Published:
    """What one :meth:`XdsWriter.publish` did.

    Args:
        directory: the proxy's xDS directory.
        version: the config version it published.
        written: the files written (changed content), in write order.
        removed: per-resource files deleted because their resource is gone.
        written_at: ``time.time()`` before the first write.
    """

    directory: Path
    version: str
    written: tuple[WrittenFile, ...]
    removed: tuple[Path, ...] = ()
    written_at: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed)


@dataclass(frozen=True)
class Rejection:
    """An update Envoy refused, as the agent read it from Envoy's log.

    Args:
        kind: the xDS type.
        resource: the resource's name for EDS/RDS/SDS, ``""`` for LDS/CDS.
        subscription: the stat prefix of the subscription that refused it (``""`` if unknown).
        version: the ``version_info`` of the file Envoy refused, when it could be read.
        reason: Envoy's words.
        at: when the agent saw it (``time.time()``).
    """

    kind: str
    resource: str
    subscription: str
    version: str | None
    reason: str
    at: float

    def to_json(self) -> dict[str, Any]:
        return {"type": self.kind, "resource": self.resource, "subscription": self.subscription,
                "version": self.version, "reason": self.reason, "at": self.at}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rejection:
        return cls(str(data.get("type", "")), str(data.get("resource", "")), str(data.get("subscription", "")),
                   data.get("version"), str(data.get("reason", "")), float(data.get("at", 0.0)))


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (what Envoy's watcher sees)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read_version(path: Path) -> str | None:
    """The ``version_info`` of an xDS file, or ``None`` if it is missing or unreadable."""
    try:
        return str(json.loads(path.read_bytes()).get("version_info", ""))
    except (OSError, ValueError, AttributeError):
        return None


# ---- rejections (written by the agent, read by istiod) ----------------------------------------------------------

def read_rejections(directory: Path) -> dict[str, Any]:
    """``rejections.json``: ``{"latest": {type: Rejection}, "subscriptions": {stat prefix: Rejection}}``."""
    try:
        data = json.loads((Path(directory) / REJECTIONS).read_bytes())
    except (OSError, ValueError):
        return {"latest": {}, "subscriptions": {}}
    return {
        "latest": {k: Rejection.from_json(v) for k, v in (data.get("latest") or {}).items()},
        "subscriptions": {k: Rejection.from_json(v) for k, v in (data.get("subscriptions") or {}).items()},
    }


def record_rejections(directory: Path, rejections: Iterable[Rejection]) -> None:
    """Add rejections to ``rejections.json`` (the latest per type, and per subscription). Only the agent writes it."""
    current = read_rejections(directory)
    for rejection in rejections:
        current["latest"][rejection.kind] = rejection
        if rejection.subscription:
            current["subscriptions"][rejection.subscription] = rejection
    document = {part: {key: value.to_json() for key, value in current[part].items()}
                for part in ("latest", "subscriptions")}
    write_atomic(Path(directory) / REJECTIONS, json.dumps(document, indent=1, sort_keys=True).encode())


def subscription_kind(prefix: str) -> str:
    """The xDS type behind a subscription's stat prefix (``""`` for one labkit does not write)."""
    if prefix == LDS_STATS:
        return LDS
    if prefix == CDS_STATS:
        return CDS
    if prefix.startswith("sds."):
        return SDS
    if prefix.startswith("http.") and ".rds." in prefix:
        return RDS
    if prefix.startswith("cluster."):
        return EDS
    return ""


def subscription_file(directory: Path, prefix: str) -> tuple[str, str, Path | None]:
    """``(type, resource name, file)`` read by the subscription counted under ``prefix`` (best effort)."""
    directory = Path(directory)
    kind = subscription_kind(prefix)
    if kind in (LDS, CDS):
        return kind, "", resource_file(directory, kind)
    if kind == EDS:
        wanted = prefix.removeprefix("cluster.")
        try:
            clusters = json.loads(resource_file(directory, CDS).read_bytes()).get("resources") or []
        except (OSError, ValueError):
            clusters = []
        for cluster in clusters:
            if cluster_stats(cluster) == prefix and "eds_cluster_config" in cluster:
                name = cluster["eds_cluster_config"].get("service_name") or cluster.get("name", "")
                return kind, name, resource_file(directory, EDS, name)
        return kind, wanted, resource_file(directory, EDS, wanted)
    if kind in (RDS, SDS):
        for path in sorted((directory / kind.lower()).glob("*.json")):
            name = unquote(path.name.removesuffix(".json"))
            if (kind == RDS and prefix.endswith(f".rds.{stat_name(name)}")) or prefix == f"sds.{stat_name(name)}":
                return kind, name, path
        tail = prefix.rsplit(".rds.", 1)[-1] if kind == RDS else prefix.removeprefix("sds.")
        return kind, tail, None
    return kind, "", None


# ---- the writer -------------------------------------------------------------------------------------------------

def _dumps(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _digest(resources: list[Any]) -> str:
    return hashlib.sha256(_dumps(resources)).hexdigest()


class _References:
    """What the listeners and clusters point at, collected while their config sources are resolved."""

    def __init__(self) -> None:
        self.eds: dict[str, list[str]] = {}  # EDS service name → stat prefixes of the clusters reading it
        self.rds: dict[str, list[str]] = {}  # route config name → candidate stat prefixes
        self.sds: set[str] = set()


class _Resolver:
    """Rewrites ``{xds_dir}`` config sources to per-resource files and records what refers to what."""

    def __init__(self, directory: Path, refs: _References):
        self.directory = directory
        self.refs = refs

    def _source(self, source: Any, kind: str, name: str) -> Any:
        if not isinstance(source, Mapping):
            return self.walk(source)
        path = (source.get("path_config_source") or {}).get("path")
        if not isinstance(path, str) or not path.startswith(PLACEHOLDER):
            return self.walk(source)
        rewritten = dict(self.walk(source))
        rewritten["path_config_source"] = {**rewritten["path_config_source"],
                                           "path": str(resource_file(self.directory, kind, name))}
        return rewritten

    def walk(self, node: Any) -> Any:
        if isinstance(node, str):
            return node.replace(PLACEHOLDER, str(self.directory)) if PLACEHOLDER in node else node
        if isinstance(node, list | tuple):
            return [self.walk(item) for item in node]
        if not isinstance(node, Mapping):
            return node
        result = {key: value for key, value in node.items()}
        eds = node.get("eds_cluster_config")
        if isinstance(eds, Mapping) and "name" in node:
            service = eds.get("service_name") or node["name"]
            self.refs.eds.setdefault(service, []).append(cluster_stats(node))
            result["eds_cluster_config"] = {**eds, "eds_config": self._source(eds.get("eds_config"), EDS, service)}
        rds = node.get("rds")
        if isinstance(rds, Mapping) and "route_config_name" in rds:
            route = rds["route_config_name"]
            self.refs.rds.setdefault(route, []).append(
                f"http.{stat_name(str(node.get('stat_prefix', '')))}.rds.{stat_name(route)}")
            result["rds"] = {**rds, "config_source": self._source(rds.get("config_source"), RDS, route)}
        if "sds_config" in node and isinstance(node.get("name"), str):
            self.refs.sds.add(node["name"])
            result["sds_config"] = self._source(node["sds_config"], SDS, node["name"])
        for key, value in node.items():
            if key not in ("eds_cluster_config", "rds", "sds_config") or result[key] is value:
                result[key] = self.walk(value)
        return result


def _names(kind: str, resources: Iterable[Mapping[str, Any]]) -> list[str]:
    key = "cluster_name" if kind == EDS else "name"
    names = []
    for resource in resources:
        name = resource.get(key)
        if not isinstance(name, str) or not name:
            raise XdsInconsistentError(f"A {TYPE_URLS[kind].rsplit('.', 1)[-1]} without a {key} cannot be "
                                       f"published: {json.dumps(resource)[:200]}. Give every resource a name.")
        names.append(name)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise XdsInconsistentError(f"{kind}: {', '.join(duplicates)} appear more than once; each name must be "
                                   f"unique within its type.")
    return names


class XdsWriter:
    """Publishes one proxy's :class:`~labkit.emulator.mesh.model.ProxyConfig` as filesystem xDS.

    Not thread-safe: one writer per proxy directory, used by one task at a time. A new writer (istiod
    restarted) learns what is on disk first, so it rewrites only what really changed.

    Args:
        directory: the proxy's xDS directory (:func:`xds_dir`); created if missing.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._digests: dict[Path, str] = {}
        self._members: dict[Path, dict[str, str]] = {}  # LDS/CDS: resource name → digest, for ``changed``
        for path in [resource_file(self.directory, LDS), resource_file(self.directory, CDS),
                     *(p for kind in PER_RESOURCE for p in (self.directory / kind.lower()).glob("*.json"))]:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                self._digests[path] = _digest(list(json.loads(path.read_bytes()).get("resources") or []))

    def publish(self, config: ProxyConfig) -> Published:
        """Write what changed in ``config``, in dependency order; delete files of resources that are gone.

        EDS clusters whose ClusterLoadAssignment is missing from ``config`` get one with ``endpoints: []``
        (no endpoints, 503), never a file with ``resources: []``, which Envoy would ignore.

        Raises:
            XdsInconsistentError: a resource without a name, a duplicate name, or a listener/cluster naming a
                route config or secret that ``config`` does not contain.
        """
        refs = _References()
        resolver = _Resolver(self.directory, refs)
        listeners = [resolver.walk(r) for r in config.listeners]
        clusters = [resolver.walk(r) for r in config.clusters]
        routes = [resolver.walk(r) for r in config.routes]
        endpoints = [resolver.walk(r) for r in config.endpoints]
        secrets = [resolver.walk(r) for r in config.secrets]
        by_kind = {LDS: listeners, CDS: clusters, RDS: routes, EDS: endpoints, SDS: secrets}
        names = {kind: _names(kind, resources) for kind, resources in by_kind.items()}
        for kind, wanted in ((RDS, refs.rds), (SDS, refs.sds)):
            missing = sorted(set(wanted) - set(names[kind]))
            if missing:
                raise XdsInconsistentError(
                    f"The config of {self._proxy()} refers to {KIND_NAMES[kind]}s it does not contain: "
                    f"{', '.join(missing)}. Envoy would wait for them forever; build them or drop the references.")
        for service in sorted(set(refs.eds) - set(names[EDS])):
            endpoints.append({"@type": TYPE_URLS[EDS], "cluster_name": service, "endpoints": []})
            names[EDS].append(service)

        plan: list[tuple[str, str, Path, list[Any], tuple[tuple[str, ...], ...]]] = []
        for kind in WRITE_ORDER:
            resources = by_kind[kind]
            if kind == LDS:
                plan.append((kind, "", resource_file(self.directory, kind), resources, ((LDS_STATS,),)))
            elif kind == CDS:
                plan.append((kind, "", resource_file(self.directory, kind), resources, ((CDS_STATS,),)))
            else:
                for name, resource in zip(names[kind], resources, strict=True):
                    if kind == EDS:
                        subscriptions = tuple((prefix,) for prefix in refs.eds.get(name, ()))
                    elif kind == RDS:
                        subscriptions = (tuple(refs.rds[name]),) if name in refs.rds else ()
                    else:
                        subscriptions = ((f"sds.{stat_name(name)}",),) if name in refs.sds else ()
                    plan.append((kind, name, resource_file(self.directory, kind, name), [resource], subscriptions))

        written_at = time.time()
        written = []
        for kind, name, path, resources, subscriptions in plan:
            digest = _digest(resources)
            if self._digests.get(path) == digest and path.exists():
                continue
            version = f"{config.version}/{digest[:12]}"
            write_atomic(path, _dumps({"version_info": version, "resources": resources}))
            self._digests[path] = digest
            resource_names = tuple(names[kind]) if kind in (LDS, CDS) else (name,)
            members = {n: _digest([r]) for n, r in zip(resource_names, resources, strict=True)}
            previous = self._members.get(path, {})
            changed = tuple(n for n in resource_names if previous.get(n) != members[n])
            self._members[path] = members
            written.append(WrittenFile(kind, name, path, version, resource_names, subscriptions, changed))

        kept = {path for _, _, path, _, _ in plan}
        removed = []
        for kind in PER_RESOURCE:
            for path in sorted((self.directory / kind.lower()).glob("*.json")):
                if path not in kept:
                    # Envoy only reacts to renames into place: deleting the file of a resource it dropped is silent.
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                    self._digests.pop(path, None)
                    removed.append(path)
        return Published(self.directory, config.version, tuple(written), tuple(removed), written_at)

    def _proxy(self) -> str:
        return "/".join(self.directory.parts[-3:])
