"""The DNS proxy's name table as values, and its NDS wire form: what istiod sends and the agent answers from.

Istio's ``NameTable`` (``pkg/dns/proto/nds.proto``, type ``type.googleapis.com/istio.networking.nds.v1.NameTable``)
is ``map<string, NameInfo{ips, registry, shortname, namespace, alt_hosts}>``. istiod builds it
(:func:`labkit.emulator.mesh.xds.nametable.build_name_table`); the agent's DNS proxy
(:mod:`labkit.emulator.envoy.dnsproxy`) answers from it. Both sides meet here, below the mesh, because the agent
must not import istiod's builders. The wire form is the proto's JSON mapping as a dict, for the transport to
encode as a protobuf ``Any``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

NAME_TABLE_TYPE = "type.googleapis.com/istio.networking.nds.v1.NameTable"
KUBERNETES = "Kubernetes"
EXTERNAL = "External"  # Istio's registry name for ServiceEntries


@dataclass(frozen=True)
class NameInfo:
    """One row of the name table (Istio's ``NameTable.NameInfo``).

    Args:
        ips: the addresses the agent answers with.
        registry: ``Kubernetes`` or ``External`` (ServiceEntries).
        shortname: the Kubernetes Service's name (``""`` for ServiceEntries): the agent answers ``shortname``,
            ``shortname.namespace`` and ``shortname.namespace.svc`` too.
        namespace: the Kubernetes Service's namespace (``""`` for ServiceEntries).
    """

    ips: tuple[str, ...]
    registry: str = KUBERNETES
    shortname: str = ""
    namespace: str = ""

    @property
    def is_kubernetes(self) -> bool:
        return self.registry == KUBERNETES


@dataclass(frozen=True)
class NameTable:
    """Host (FQDN, no trailing dot) → :class:`NameInfo`, as one proxy's agent gets it."""

    table: Mapping[str, NameInfo] = field(default_factory=dict)

    def addresses(self, host: str) -> tuple[str, ...]:
        """The addresses of ``host`` (an FQDN), ``()`` when the table has no such row."""
        info = self.table.get(host.rstrip(".").lower())
        return info.ips if info else ()


def to_wire(table: NameTable) -> dict[str, Any]:
    """The proto3 JSON form of the table (``NameTable``; ``NameInfo`` fields in their JSON names), with ``@type``.

    Args:
        table: the table.
    """
    rows: dict[str, Any] = {}
    for host, info in table.table.items():
        row: dict[str, Any] = {"ips": list(info.ips), "registry": info.registry}
        if info.shortname:
            row["shortname"] = info.shortname
        if info.namespace:
            row["namespace"] = info.namespace
        rows[host] = row
    return {"@type": NAME_TABLE_TYPE, "table": rows}


def from_wire(message: Mapping[str, Any]) -> NameTable:
    """The table back from its wire dict (``altHosts``/``alt_hosts``, deprecated in Istio, are ignored).

    Args:
        message: what :func:`to_wire` makes, or the JSON of a ``NameTable`` from any istiod.
    """
    rows = message.get("table") or {}
    return NameTable({
        str(host).rstrip(".").lower(): NameInfo(tuple(str(ip) for ip in row.get("ips") or ()),
                                                str(row.get("registry") or ""), str(row.get("shortname") or ""),
                                                str(row.get("namespace") or ""))
        for host, row in sorted(rows.items())})
