"""The DNS proxy's name table (NDS): which names a proxy's agent answers itself, and with which addresses.

Istio's istiod sends every proxy a ``NameTable`` (``type.googleapis.com/istio.networking.nds.v1.NameTable``,
built by ``BuildNameTable`` in ``pkg/dns/server/name_table.go``); with ``ISTIO_META_DNS_CAPTURE: "true"`` the
agent answers the pod's DNS from it (:mod:`labkit.emulator.envoy.dnsproxy`). :func:`build_name_table` follows
Istio's rules for the services the proxy sees (``exportTo`` and its Sidecar's egress hosts):

- a Kubernetes service → its ClusterIP in the proxy's cluster; a service with no ClusterIP there (it lives only
  in other clusters) → another cluster's ClusterIP (``GetAllAddressesForProxy`` falls back to the default
  address). That is what lets a pod resolve a remote-only service (istio.md, failure 1);
- a Kubernetes entry is keyed by its FQDN only and carries ``shortname`` and ``namespace``: the agent derives
  ``name``, ``name.ns`` and ``name.ns.svc`` itself (``generateAltHosts``), so the table stays one row a service;
- a headless service → the healthy pod IPs of its endpoints on the proxy's network, in any cluster
  (``ENABLE_MULTICLUSTER_HEADLESS`` is on by default); none → no entry, the cluster DNS answers;
- a ServiceEntry → its ``addresses``; without any, and when the proxy captures DNS, an address auto-allocated
  from ``240.240.0.0/16`` (``PILOT_ENABLE_IP_AUTOALLOCATE``, on by default since Istio 1.25). Resolution
  ``NONE`` and wildcard hosts get none, and the label ``networking.istio.io/enable-autoallocate-ip: "false"``
  opts out, as Istio's allocator does;
- a ServiceEntry host that is also a Kubernetes service defers to the Kubernetes entry; two ServiceEntries for
  one host merge their addresses.

Istio's allocator is a controller that hands out ``240.240.0.1``, ``.2`` … in creation order and records them
in the ServiceEntry's ``status.addresses``. The snapshot carries no status and no creation order, so
:func:`auto_allocated_address` derives the address from a hash of ``namespace/host`` instead: the same host
keeps its address across istiod restarts and across other entries coming and going, which is what clients
(and Envoy's listeners on that VIP) depend on. Collisions are resolved by probing to the next free address in
sorted order, so they are deterministic too.

The table's values and its wire form (:func:`to_wire` / :func:`from_wire`, the proto's JSON mapping as a dict for
the transport to encode) live in :mod:`labkit.emulator.envoy.nametables`, where the agent's DNS proxy reads them
too; they are re-exported here. Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable
from typing import Any

from labkit.emulator.envoy.nametables import (
    EXTERNAL,
    KUBERNETES,
    NAME_TABLE_TYPE,
    NameInfo,
    NameTable,
    from_wire,
    to_wire,
)
from labkit.emulator.mesh.model import ConfigObject, MeshSnapshot, Proxy, Service, ServicePort
from labkit.emulator.mesh.xds import policies

AUTO_ALLOCATE_PREFIX = ipaddress.IPv4Network("240.240.0.0/16")
AUTO_ALLOCATE_LABEL = "networking.istio.io/enable-autoallocate-ip"
UNSPECIFIED = "0.0.0.0"


def dns_capture(proxy: Proxy) -> bool:
    """Whether the proxy's agent answers DNS (``ISTIO_META_DNS_CAPTURE: "true"``)."""
    return str(proxy.metadata.get("DNS_CAPTURE", "")).lower() == "true"


def auto_allocated_address(namespace: str, host: str, taken: set[str] | None = None) -> str:
    """The address a ServiceEntry host without ``addresses`` gets from ``240.240.0.0/16``.

    Args:
        namespace: the ServiceEntry's namespace.
        host: the host.
        taken: addresses already handed out (probing skips them); the chosen one is added.
    """
    size = AUTO_ALLOCATE_PREFIX.num_addresses - 2  # neither the network nor the broadcast address
    digest = 0x811C9DC5  # FNV-1a, 32 bits: small, stable across Python runs (unlike hash())
    for byte in f"{namespace}/{host}".encode():
        digest = ((digest ^ byte) * 0x01000193) & 0xFFFFFFFF
    offset = digest % size
    taken = taken if taken is not None else set()
    for probe in range(size):
        address = str(AUTO_ALLOCATE_PREFIX.network_address + 1 + (offset + probe) % size)
        if address not in taken:
            taken.add(address)
            return address
    raise ValueError(f"{AUTO_ALLOCATE_PREFIX} is exhausted")


def service_entry_services(snapshot: MeshSnapshot, *, auto_allocate: bool) -> list[Service]:
    """Each ServiceEntry host as a :class:`Service` with its addresses under ``""`` (auto-allocated if asked)."""
    entries = sorted(snapshot.configs_of("ServiceEntry"), key=lambda c: (c.namespace, c.name))
    taken: set[str] = set()
    wanted: list[tuple[ConfigObject, str]] = []
    out: list[Service] = []
    for config in entries:
        spec = config.spec
        for host in spec.get("hosts") or ():
            addresses = [a for a in spec.get("addresses") or () if _is_ip(a)]
            if addresses:
                taken.update(addresses)
            elif auto_allocate and _allocatable(config, host):
                wanted.append((config, host))
                continue
            out.append(_entry_service(config, host, addresses))
    for config, host in sorted(wanted, key=lambda item: (item[0].namespace, item[1], item[0].name)):
        out.append(_entry_service(config, host, [auto_allocated_address(config.namespace, host, taken)]))
    return out


def _allocatable(config: ConfigObject, host: str) -> bool:
    if str(config.spec.get("resolution", "NONE")).upper() == "NONE":
        return False
    if str(config.labels.get(AUTO_ALLOCATE_LABEL, "")).lower() == "false":
        return False
    return not host.startswith("*") or str(config.spec.get("resolution", "")).upper() == "DYNAMIC_DNS"


def _entry_service(config: ConfigObject, host: str, addresses: list[str]) -> Service:
    ports = tuple(ServicePort(str(p.get("name", "")), int(p["number"])) for p in config.spec.get("ports") or ()
                  if "number" in p)
    # Service.addresses keys VIPs by cluster; a ServiceEntry's are global: "" for the first, "#1", "#2" … after.
    keyed = {("" if index == 0 else f"#{index}"): address for index, address in enumerate(addresses)}
    return Service(host, config.namespace, "", ports, addresses=keyed,
                   exported_to=tuple(config.spec.get("exportTo") or ("*",)),
                   mesh_external=config.spec.get("location") == "MESH_EXTERNAL",
                   resolution="DNS" if config.spec.get("resolution") == "DNS" else "STATIC")


def build_name_table(proxy: Proxy, snapshot: MeshSnapshot) -> NameTable:
    """The name table istiod sends ``proxy`` (Istio's ``BuildNameTable``).

    Args:
        proxy: the proxy whose agent answers from it; its cluster picks the ClusterIPs.
        snapshot: the mesh.
    """
    entries = service_entry_services(snapshot, auto_allocate=dns_capture(proxy))
    # ServiceEntry hosts come from the entries themselves (with their auto-allocated addresses), not from the
    # services discovery made of them.
    kubernetes_services = tuple(s for s in snapshot.services if s.name)
    seen = dataclasses.replace(snapshot, services=(*kubernetes_services, *entries))
    table: dict[str, NameInfo] = {}
    for service in policies.visible_services(proxy, seen):
        kubernetes = bool(service.name)
        host = service.hostname.lower()
        ips = _addresses_for(proxy, service)
        if not ips and service.resolution == "PASSTHROUGH" and kubernetes and service.ports:
            ips = _headless_addresses(proxy, service.endpoints)
        if not ips:
            continue  # the cluster DNS (or the upstream) answers
        if kubernetes:
            # A Kubernetes service wins over a ServiceEntry decorating the same host.
            table[host] = NameInfo(tuple(ips), KUBERNETES, service.name, service.namespace)
        elif host in table and not table[host].is_kubernetes:
            merged = tuple(dict.fromkeys((*table[host].ips, *ips)))
            table[host] = dataclasses.replace(table[host], ips=merged)
        elif host not in table:
            table[host] = NameInfo(tuple(ips), EXTERNAL)
    return NameTable(dict(sorted(table.items())))


def _addresses_for(proxy: Proxy, service: Service) -> list[str]:
    """Istio's ``GetAllAddressesForProxy``: the proxy's cluster's VIP, else the default (another cluster's)."""
    valid = {key: a for key, a in service.addresses.items() if _is_ip(a) and a != UNSPECIFIED}
    if proxy.cluster in valid and proxy.cluster:
        return [valid[proxy.cluster]]
    global_ = [a for key, a in sorted(valid.items()) if key == "" or key.startswith("#")]
    if global_:
        return global_
    # Istio's DefaultAddress of a multicluster service is one cluster's ClusterIP: take the first by name.
    return [valid[key] for key in sorted(valid)][:1]


def _headless_addresses(proxy: Proxy, endpoints: Iterable[Any]) -> list[str]:
    found: list[str] = []
    for endpoint in endpoints:
        if not endpoint.healthy or not _is_ip(endpoint.address):
            continue
        if proxy.network and endpoint.network and endpoint.network != proxy.network:
            continue  # Istio's DNS answer only holds same-network pods: others are not routable directly
        found.append(endpoint.address)
    return list(dict.fromkeys(found))


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


__all__ = ["NAME_TABLE_TYPE", "NameInfo", "NameTable", "auto_allocated_address",
           "build_name_table", "dns_capture", "from_wire", "to_wire"]
