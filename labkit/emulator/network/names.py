"""Cluster name resolution: what CoreDNS's ``kubernetes`` plugin answers, as a pure model.

The DNS server (:mod:`labkit.emulator.network.dns`), the pods' resolver view (``nslookup`` inside a pod) and the
mesh's DNS proxy all need the same answers, so the rules live here, apart from any socket: they are fed Service,
Endpoints and Pod dicts by the emulator's controllers and answer questions about names.

The rules follow the Kubernetes DNS specification (``kubernetes/dns/docs/specification.md``):

* ``<svc>.<ns>.svc.<domain>`` → the ClusterIP; for a headless Service (``clusterIP: None``) the ready endpoint
  addresses (also the not-ready ones with ``publishNotReadyAddresses``); for an ``ExternalName`` Service a CNAME.
* ``<hostname>.<svc>.<ns>.svc.<domain>`` → one endpoint of a headless Service (StatefulSet pods), and
  ``<a-b-c-d>.<svc>.<ns>.svc.<domain>`` for endpoints without a hostname.
* ``_<port>._<proto>.<svc>.<ns>.svc.<domain>`` SRV → the named port (per endpoint for headless Services).
* ``<a-b-c-d>.<ns>.pod.<domain>`` → ``a.b.c.d`` when a pod of that namespace has that IP (CoreDNS ``pods verified``;
  ``pods insecure`` would answer for any IP, which hides mistakes a lab wants to show).

:meth:`ClusterNames.resolve` adds what a pod's ``/etc/resolv.conf`` adds (search path and ``ndots:5``), so callers can
show what ``curl helloworld:5000`` would reach from a given namespace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from labkit.emulator.network.addresses import is_ipv4

NDOTS = 5


@dataclass(frozen=True)
class Srv:
    """One SRV record: where the named port of a Service (or one of its endpoints) listens.

    Args:
        target: an absolute name (trailing dot) that resolves in the cluster.
        port: the port number.
        priority: always 0, as CoreDNS answers.
        weight: CoreDNS shares 100 between the records of one answer.
    """

    target: str
    port: int
    priority: int = 0
    weight: int = 100


@dataclass(frozen=True)
class Answer:
    """What the cluster knows about one absolute name.

    A name that exists but has no record of the asked kind is an ``Answer`` with empty fields (DNS NODATA); a name
    that does not exist at all is ``None`` from :meth:`ClusterNames.lookup` (DNS NXDOMAIN).

    Args:
        name: the absolute, lower-cased name asked (trailing dot).
        addresses: IPv4 addresses (A records).
        cname: the canonical name of an ``ExternalName`` Service (absolute, trailing dot).
        srv: SRV records.
    """

    name: str
    addresses: tuple[str, ...] = ()
    cname: str | None = None
    srv: tuple[Srv, ...] = ()


@dataclass(frozen=True)
class _Port:
    name: str
    protocol: str
    port: int


@dataclass(frozen=True)
class _Service:
    cluster_ips: tuple[str, ...]
    headless: bool
    external_name: str | None
    ports: tuple[_Port, ...]
    publish_not_ready: bool


@dataclass(frozen=True)
class _Endpoint:
    ip: str
    hostname: str | None
    ready: bool


@dataclass
class _Endpoints:
    addresses: tuple[_Endpoint, ...] = ()
    ports: tuple[_Port, ...] = ()


@dataclass
class ClusterNames:
    """The names of one cluster, kept current by ``update_*``/``remove_*`` calls (idempotent, any order).

    Args:
        domain: the cluster domain (``cluster.local`` as on kubeadm/kind clusters).
    """

    domain: str = "cluster.local"
    _services: dict[tuple[str, str], _Service] = field(default_factory=dict, repr=False)
    _endpoints: dict[tuple[str, str], _Endpoints] = field(default_factory=dict, repr=False)
    _pods: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.domain = self.domain.strip(".").lower()
        self._suffix = f".{self.domain}."

    # -- feeding -------------------------------------------------------------------------------------------------

    def update_service(self, svc: dict[str, Any]) -> None:
        """Add or replace a core/v1 Service."""
        meta, spec = svc.get("metadata", {}), svc.get("spec") or {}
        key = (meta.get("namespace") or "default", meta["name"])
        external_name = None
        if spec.get("type") == "ExternalName" and spec.get("externalName"):
            external_name = _absolute(spec["externalName"])
        ips = [ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")]) if ip and is_ipv4(ip)]
        self._services[key] = _Service(
            cluster_ips=tuple(ips),
            headless=spec.get("clusterIP") == "None",
            external_name=external_name,
            ports=tuple(_Port(p.get("name") or "", p.get("protocol") or "TCP", int(p["port"]))
                        for p in spec.get("ports") or () if "port" in p),
            publish_not_ready=bool(spec.get("publishNotReadyAddresses")),
        )

    def remove_service(self, namespace: str, name: str) -> None:
        """Forget a Service (its Endpoints stay until removed: the two are separate objects in Kubernetes too)."""
        self._services.pop((namespace, name), None)

    def update_endpoints(self, ep: dict[str, Any]) -> None:
        """Add or replace a core/v1 Endpoints object (only headless Services answer with it).

        Kubernetes lists every subset's addresses with every port of that subset; the names here only need the
        addresses and the named ports, so subsets are flattened.
        """
        meta = ep.get("metadata", {})
        addresses: dict[str, _Endpoint] = {}
        ports: dict[str, _Port] = {}
        for subset in ep.get("subsets") or ():
            for ready, field_name in ((True, "addresses"), (False, "notReadyAddresses")):
                for address in subset.get(field_name) or ():
                    ip = address.get("ip")
                    if ip and is_ipv4(ip) and (ready or ip not in addresses):
                        addresses[ip] = _Endpoint(ip, (address.get("hostname") or "").lower() or None, ready)
            for port in subset.get("ports") or ():
                if "port" in port:
                    name = port.get("name") or ""
                    ports[name] = _Port(name, port.get("protocol") or "TCP", int(port["port"]))
        self._endpoints[(meta.get("namespace") or "default", meta["name"])] = _Endpoints(
            tuple(addresses.values()), tuple(ports.values()))

    def remove_endpoints(self, namespace: str, name: str) -> None:
        """Forget an Endpoints object."""
        self._endpoints.pop((namespace, name), None)

    def update_pod(self, pod: dict[str, Any]) -> None:
        """Add or replace a Pod; only its namespace and ``status.podIP`` matter (for ``a-b-c-d.<ns>.pod`` names)."""
        meta = pod.get("metadata", {})
        key = (meta.get("namespace") or "default", meta["name"])
        ip = (pod.get("status") or {}).get("podIP")
        if ip and is_ipv4(ip):
            self._pods[key] = ip
        else:
            self._pods.pop(key, None)

    def remove_pod(self, namespace: str, name: str) -> None:
        """Forget a Pod."""
        self._pods.pop((namespace, name), None)

    # -- answering -----------------------------------------------------------------------------------------------

    def in_domain(self, name: str) -> bool:
        """Whether an absolute ``name`` belongs to the cluster domain (so the cluster, not upstream, answers it)."""
        name = _absolute(name)
        return name == f"{self.domain}." or name.endswith(self._suffix)

    def lookup(self, name: str) -> Answer | None:
        """Answer an absolute name (a trailing dot is optional here); ``None`` means NXDOMAIN.

        Names outside the cluster domain are ``None`` too: whoever serves DNS decides whether to forward them.
        """
        name = _absolute(name)
        if not self.in_domain(name):
            return None
        labels = name[: -len(self._suffix)].split(".") if name != f"{self.domain}." else []
        # Empty non-terminals (cluster.local, svc.cluster.local, <ns>.svc.cluster.local) exist without records, as
        # CoreDNS answers NOERROR for them.
        if not labels or labels in (["svc"], ["pod"]):
            return Answer(name)
        if labels[-1] == "svc":
            return self._lookup_service(name, labels[:-1])
        if labels[-1] == "pod" and len(labels) == 3:
            return self._lookup_pod(name, labels[1], labels[0])
        if labels[-1] == "pod" and len(labels) == 2 and labels[0] in self._namespaces():
            return Answer(name)
        return None

    def resolve(self, name: str, namespace: str | None = None) -> list[str]:
        """What a pod in ``namespace`` gets for ``name``, in the order ``dig +short`` prints it.

        Applies the pod's search path (``<ns>.svc.<domain> svc.<domain> <domain>``) and ``ndots:5``: a name with fewer
        than five dots is tried with each search suffix first, then as given; a name with a trailing dot only as
        given. The first candidate with records wins, as in glibc.

        Args:
            name: a short (``helloworld``), partial (``helloworld.sample``) or absolute name.
            namespace: the asking pod's namespace; ``None`` leaves ``<ns>.svc.<domain>`` out of the search path.

        Returns:
            IPv4 addresses; for an ``ExternalName`` Service the CNAME chain comes first, each name absolute with a
            trailing dot (``["db.example.com."]`` when the target is outside the cluster, which only upstream DNS
            could resolve further). Empty when nothing in the cluster answers.
        """
        for candidate in self.candidates(name, namespace):
            chain = self._follow(candidate)
            if chain:
                return chain
        return []

    def candidates(self, name: str, namespace: str | None = None) -> list[str]:
        """The absolute names a pod's resolver tries for ``name``, in order (search path and ``ndots:5``)."""
        name = name.lower()
        if name.endswith("."):
            return [name]
        searched = [f"{name}.{suffix}." for suffix in self.search_path(namespace)]
        return [f"{name}.", *searched] if name.count(".") >= NDOTS else [*searched, f"{name}."]

    def search_path(self, namespace: str | None = None) -> list[str]:
        """The ``search`` line of a pod's ``/etc/resolv.conf``."""
        path = [f"svc.{self.domain}", self.domain]
        return [f"{namespace.lower()}.svc.{self.domain}", *path] if namespace else path

    # -- internals -----------------------------------------------------------------------------------------------

    def _follow(self, name: str) -> list[str]:
        chain: list[str] = []
        seen: set[str] = set()
        # A bounded walk: ExternalName Services may point at each other, and a cycle must end somewhere.
        while name not in seen and len(seen) < 8:
            seen.add(name)
            answer = self.lookup(name)
            if answer is None:
                return chain
            if answer.cname:
                chain.append(answer.cname)
                name = answer.cname
                continue
            return [*chain, *answer.addresses]
        return chain

    def _lookup_service(self, name: str, labels: list[str]) -> Answer | None:
        if len(labels) == 1:
            return Answer(name) if labels[0] in self._namespaces() else None
        namespace, service_name = labels[-1], labels[-2]
        service = self._services.get((namespace, service_name))
        if service is None:
            return None
        rest = labels[:-2]
        if not rest:
            if service.external_name:
                return Answer(name, cname=service.external_name)
            if service.headless:
                return Answer(name, addresses=tuple(e.ip for e in self._published(namespace, service_name, service)))
            return Answer(name, addresses=service.cluster_ips)
        if len(rest) == 1 and service.headless:
            wanted = rest[0]
            hits = tuple(e.ip for e in self._published(namespace, service_name, service)
                         if wanted in (e.hostname, _dashed(e.ip)))
            return Answer(name, addresses=hits) if hits else None
        if len(rest) == 2 and rest[0].startswith("_") and rest[1].startswith("_"):
            return self._lookup_srv(name, rest[0][1:], rest[1][1:].upper(), namespace, service_name, service)
        return None

    def _lookup_srv(self, name: str, port_name: str, protocol: str, namespace: str, service_name: str,
                    service: _Service) -> Answer | None:
        base = f"{service_name}.{namespace}.svc.{self.domain}."
        if service.headless:
            endpoints = self._endpoints.get((namespace, service_name))
            port = next((p for p in endpoints.ports if p.name == port_name and p.protocol == protocol), None) \
                if endpoints else None
            if port is None:
                return None
            published = self._published(namespace, service_name, service)
            weight = 100 // max(len(published), 1)
            return Answer(name, srv=tuple(Srv(f"{e.hostname or _dashed(e.ip)}.{base}", port.port, weight=weight)
                                          for e in published))
        port = next((p for p in service.ports if p.name == port_name and p.protocol == protocol), None)
        if port is None or service.external_name:
            return None
        return Answer(name, srv=(Srv(base, port.port),))

    def _lookup_pod(self, name: str, namespace: str, dashed: str) -> Answer | None:
        ip = dashed.replace("-", ".")
        if is_ipv4(ip) and any(ns == namespace and pod_ip == ip for (ns, _), pod_ip in self._pods.items()):
            return Answer(name, addresses=(ip,))
        return None

    def _published(self, namespace: str, name: str, service: _Service) -> tuple[_Endpoint, ...]:
        endpoints = self._endpoints.get((namespace, name))
        if endpoints is None:
            return ()
        return tuple(e for e in endpoints.addresses if e.ready or service.publish_not_ready)

    def _namespaces(self) -> set[str]:
        return {ns for ns, _ in self._services} | {ns for ns, _ in self._pods}


def _absolute(name: str) -> str:
    name = name.lower()
    return name if name.endswith(".") else f"{name}."


def _dashed(ip: str) -> str:
    return ip.replace(".", "-")

