"""Endpoints and EndpointSlices: which pod addresses stand behind each Service.

Three real controllers in one, because they read the same inputs and must agree:

* the **endpoints controller** writes core/v1 ``Endpoints`` (same name as the Service) for Services
  with a selector: ready pods under ``addresses``, others under ``notReadyAddresses``, ports with the
  Service port's name and the targetPort resolved per pod (a named targetPort may map to different
  numbers on different pods, which is why pods are grouped into subsets by their resolved ports);
* the **EndpointSlice controller** writes ``discovery.k8s.io/v1`` slices ``<service>-<5 chars>`` for
  the same Services, with per-endpoint ``ready``/``serving``/``terminating`` conditions: Istio and
  kube-proxy read slices, not Endpoints;
* the **EndpointSlice mirroring controller** copies hand-written ``Endpoints`` of a Service *without*
  a selector into slices. Lab 3 depends on it: its headless Service points at the other cluster's
  load balancer through an Endpoints object typed in by hand, and the mesh only sees slices.

Deviations, chosen for the labs: one slice per distinct port set (no split at 100 endpoints); and
the controller deletes only the Endpoints objects it manages (label
``endpoints.kubernetes.io/managed-by``), so hand-written Endpoints outlive their Service instead of
being deleted with it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from labkit.core.selectors import selector_from_labels
from labkit.core.wire import Obj
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.store import Store, WatchEvent

from .framework import Controller, Key, is_deleting, namespace_terminating, new_controller_ref, pod_ready

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
SLICE_CONTROLLER = "endpointslice-controller.k8s.io"
MIRRORING_CONTROLLER = "endpointslicemirroring-controller.k8s.io"
ENDPOINTS_MANAGED_BY_LABEL = "endpoints.kubernetes.io/managed-by"
ENDPOINTS_CONTROLLER = "endpoint-controller"
SKIP_MIRROR_LABEL = "endpointslice.kubernetes.io/skip-mirror"
HEADLESS_LABEL = "service.kubernetes.io/headless"
_NOT_MIRRORED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",
                             "endpoints.kubernetes.io/last-change-trigger-time")

PortKey = tuple[tuple[str, int, str, str], ...]
"""Resolved ports of one endpoint: ``(name, port, protocol, appProtocol)`` in Service order."""


class EndpointsController(Controller):
    """Keeps Endpoints and EndpointSlices in step with Services and their pods.

    Args:
        store: the cluster's store.
    """

    name = "endpoints"

    def __init__(self, store: Store):
        super().__init__(store)

    def keys_for(self, event: WatchEvent) -> Iterable[Key]:
        resource = (event.group, event.resource)
        metadata = event.object["metadata"]
        namespace = metadata.get("namespace", "")
        if resource in (("", "services"), ("", "endpoints")):
            return [(namespace, metadata["name"])]
        if resource == ("discovery.k8s.io", "endpointslices"):
            service = (metadata.get("labels") or {}).get(SERVICE_NAME_LABEL)
            return [(namespace, service)] if service else []
        if resource != ("", "pods"):
            return []
        keys = set()
        pods = [pod for pod in (event.object, event.old_object) if pod is not None]
        for service in self.store.list("", "services", namespace=namespace).items:
            selector = (service.get("spec") or {}).get("selector")
            if selector and any(selector_from_labels(selector).matches_object(pod) for pod in pods):
                keys.add((namespace, service["metadata"]["name"]))
        return keys

    def initial_keys(self) -> Iterable[Key]:
        keys = {(s["metadata"].get("namespace", ""), s["metadata"]["name"])
                for s in self.store.list("", "services").items}
        keys.update((e["metadata"].get("namespace", ""), e["metadata"]["name"])
                    for e in self.store.list("", "endpoints").items)
        return sorted(keys)

    async def reconcile(self, key: Key) -> None:
        namespace, name = key  # type: ignore[misc]
        service = self.store.find("", "services", name, namespace)
        spec = (service or {}).get("spec") or {}
        if service is None or is_deleting(service) or spec.get("type") == "ExternalName":
            self._delete_managed_endpoints(namespace, name)
            self._sync_slices(namespace, name, SLICE_CONTROLLER, [], None, {})
            self._sync_slices(namespace, name, MIRRORING_CONTROLLER, [], None, {})
            return
        if spec.get("selector"):
            pods = self.store.list("", "pods", namespace=namespace,
                                   label_selector=selector_from_labels(spec["selector"])).items
            self._write_endpoints(service, pods)
            labels = _service_labels(service)
            labels.update({SERVICE_NAME_LABEL: name, MANAGED_BY_LABEL: SLICE_CONTROLLER})
            self._sync_slices(namespace, name, SLICE_CONTROLLER, _slice_groups(service, pods),
                              new_controller_ref(service), labels)
            self._sync_slices(namespace, name, MIRRORING_CONTROLLER, [], None, {})
            return
        # No selector: the Endpoints are the user's; mirror them.
        self._delete_managed_endpoints(namespace, name)
        self._sync_slices(namespace, name, SLICE_CONTROLLER, [], None, {})
        endpoints = self.store.find("", "endpoints", name, namespace)
        mirrored = endpoints is not None and not is_deleting(endpoints) and (
            (endpoints["metadata"].get("labels") or {}).get(SKIP_MIRROR_LABEL) != "true"
        )
        if not mirrored or endpoints is None:
            self._sync_slices(namespace, name, MIRRORING_CONTROLLER, [], None, {})
            return
        labels = {k: v for k, v in (endpoints["metadata"].get("labels") or {}).items()}
        labels.update({SERVICE_NAME_LABEL: name, MANAGED_BY_LABEL: MIRRORING_CONTROLLER})
        annotations = {k: v for k, v in (endpoints["metadata"].get("annotations") or {}).items()
                       if k not in _NOT_MIRRORED_ANNOTATIONS}
        self._sync_slices(namespace, name, MIRRORING_CONTROLLER, _mirrored_groups(endpoints),
                          new_controller_ref(endpoints), labels, annotations)

    # --- Endpoints ---------------------------------------------------------------------------------

    def _write_endpoints(self, service: Obj, pods: list[Obj]) -> None:
        metadata = service["metadata"]
        namespace, name = metadata.get("namespace", ""), metadata["name"]
        labels = _service_labels(service)
        labels.update({ENDPOINTS_MANAGED_BY_LABEL: ENDPOINTS_CONTROLLER, SKIP_MIRROR_LABEL: "true"})
        subsets = _subsets(service, pods)
        existing = self.store.find("", "endpoints", name, namespace)
        if existing is None:
            if namespace_terminating(self.store, namespace):
                return
            endpoints: Obj = {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": name, "namespace": namespace, "labels": labels},
            }
            if subsets:
                endpoints["subsets"] = subsets
            self.store.create("", "endpoints", endpoints)
            return
        if existing["metadata"].get("labels") == labels and existing.get("subsets", []) == subsets:
            return
        existing["metadata"]["labels"] = labels
        if subsets:
            existing["subsets"] = subsets
        else:
            existing.pop("subsets", None)
        self.store.update("", "endpoints", existing)

    def _delete_managed_endpoints(self, namespace: str, name: str) -> None:
        existing = self.store.find("", "endpoints", name, namespace)
        labels = ((existing or {}).get("metadata") or {}).get("labels") or {}
        if existing is not None and labels.get(ENDPOINTS_MANAGED_BY_LABEL) == ENDPOINTS_CONTROLLER:
            _delete(self.store, "", "endpoints", name, namespace)

    # --- EndpointSlices ----------------------------------------------------------------------------

    def _sync_slices(
        self,
        namespace: str,
        service: str,
        managed_by: str,
        groups: list[tuple[list[Obj], list[Obj]]],
        owner: Obj | None,
        labels: dict[str, str],
        annotations: dict[str, str] | None = None,
    ) -> None:
        """Make the slices of one manager for one Service exactly ``groups`` (``(ports, endpoints)``)."""
        existing = self.store.list(
            "discovery.k8s.io", "endpointslices", namespace=namespace,
            label_selector=f"{SERVICE_NAME_LABEL}={service},{MANAGED_BY_LABEL}={managed_by}",
        ).items
        if owner is None:
            for item in existing:
                _delete(self.store, "discovery.k8s.io", "endpointslices", item["metadata"]["name"], namespace)
            return
        if not groups:
            # An empty placeholder slice, as the real controller keeps for a Service with no endpoints.
            groups = [([], [])]
        unused = sorted(existing, key=lambda s: s["metadata"]["name"])
        pending: list[tuple[list[Obj], list[Obj]]] = []
        for ports, endpoints in groups:
            match = next((s for s in unused if (s.get("ports") or []) == ports), None)
            if match is None:
                pending.append((ports, endpoints))
                continue
            unused.remove(match)
            self._write_slice(match, ports, endpoints, owner, labels, annotations)
        for ports, endpoints in pending:
            if unused:
                self._write_slice(unused.pop(0), ports, endpoints, owner, labels, annotations)
            elif not namespace_terminating(self.store, namespace):
                metadata: Obj = {"generateName": f"{service}-", "namespace": namespace, "labels": labels,
                                 "ownerReferences": [owner]}
                if annotations:
                    metadata["annotations"] = annotations
                body: Obj = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": metadata,
                             "addressType": "IPv4", "endpoints": endpoints}
                if ports:
                    body["ports"] = ports
                self.store.create("discovery.k8s.io", "endpointslices", body)
        for item in unused:
            _delete(self.store, "discovery.k8s.io", "endpointslices", item["metadata"]["name"], namespace)

    def _write_slice(
        self,
        current: Obj,
        ports: list[Obj],
        endpoints: list[Obj],
        owner: Obj,
        labels: dict[str, str],
        annotations: dict[str, str] | None,
    ) -> None:
        wanted = copy.deepcopy(current)
        wanted["metadata"]["labels"] = labels
        wanted["metadata"]["ownerReferences"] = [owner]
        if annotations:
            wanted["metadata"]["annotations"] = annotations
        else:
            wanted["metadata"].pop("annotations", None)
        wanted["addressType"] = "IPv4"
        wanted["endpoints"] = endpoints
        if ports:
            wanted["ports"] = ports
        else:
            wanted.pop("ports", None)
        if wanted != current:
            self.store.update("discovery.k8s.io", "endpointslices", wanted)


# --- pure computation ------------------------------------------------------------------------------


def _service_labels(service: Obj) -> dict[str, str]:
    labels = dict(service["metadata"].get("labels") or {})
    if (service.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    return labels


def resolve_ports(service: Obj, pod: Obj) -> PortKey:
    """The Service's ports as they land on ``pod``: named targetPorts looked up in its containers.

    A port whose named targetPort the pod does not declare is left out for that pod, as Kubernetes
    does (``podutil.FindPort``).

    Args:
        service: the Service.
        pod: one selected pod.
    """
    resolved = []
    for port in (service.get("spec") or {}).get("ports") or []:
        protocol = port.get("protocol", "TCP")
        target = port.get("targetPort", port.get("port"))
        number = target if isinstance(target, int) else _named_port(pod, str(target), protocol)
        if number is None:
            continue
        resolved.append((str(port.get("name") or ""), number, protocol, str(port.get("appProtocol") or "")))
    return tuple(resolved)


def _named_port(pod: Obj, name: str, protocol: str) -> int | None:
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == name and port.get("protocol", "TCP") == protocol:
                return int(port["containerPort"])
    return None


def _eligible(pod: Obj) -> bool:
    status = pod.get("status") or {}
    return bool(status.get("podIP")) and status.get("phase") not in ("Succeeded", "Failed")


def _target_ref(pod: Obj) -> Obj:
    metadata = pod["metadata"]
    return {"kind": "Pod", "namespace": metadata.get("namespace", ""), "name": metadata["name"],
            "uid": metadata.get("uid", "")}


def _hostname(service: Obj, pod: Obj) -> str | None:
    spec = pod.get("spec") or {}
    if spec.get("hostname") and spec.get("subdomain") == service["metadata"]["name"]:
        return str(spec["hostname"])
    return None


def _subsets(service: Obj, pods: list[Obj]) -> list[Obj]:
    """``Endpoints.subsets``: pods grouped by resolved ports, ready and not-ready apart."""
    publish_not_ready = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    has_ports = bool((service.get("spec") or {}).get("ports"))
    groups: dict[PortKey, tuple[list[Obj], list[Obj]]] = {}
    for pod in pods:
        if not _eligible(pod) or (is_deleting(pod) and not publish_not_ready):
            continue
        ports = resolve_ports(service, pod)
        if has_ports and not ports:
            continue
        address: Obj = {"ip": pod["status"]["podIP"]}
        hostname = _hostname(service, pod)
        if hostname:
            address["hostname"] = hostname
        if (pod.get("spec") or {}).get("nodeName"):
            address["nodeName"] = pod["spec"]["nodeName"]
        address["targetRef"] = _target_ref(pod)
        ready, not_ready = groups.setdefault(ports, ([], []))
        (ready if publish_not_ready or pod_ready(pod) else not_ready).append(address)
    subsets = []
    for ports, (ready, not_ready) in groups.items():
        subset: Obj = {}
        if ready:
            subset["addresses"] = sorted(ready, key=_address_order)
        if not_ready:
            subset["notReadyAddresses"] = sorted(not_ready, key=_address_order)
        if ports:
            subset["ports"] = [_port(name, number, protocol, app, omit_empty_name=True)
                               for name, number, protocol, app in ports]
        subsets.append(subset)
    return sorted(subsets, key=lambda s: _address_order((s.get("addresses") or s.get("notReadyAddresses"))[0]))


def _slice_groups(service: Obj, pods: list[Obj]) -> list[tuple[list[Obj], list[Obj]]]:
    """``(ports, endpoints)`` per distinct port set, for the EndpointSlice controller."""
    spec = service.get("spec") or {}
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    has_ports = bool(spec.get("ports"))
    groups: dict[PortKey, list[Obj]] = {}
    for pod in pods:
        if not _eligible(pod):
            continue
        ports = resolve_ports(service, pod)
        if has_ports and not ports:
            continue
        serving = pod_ready(pod)
        terminating = is_deleting(pod)
        endpoint: Obj = {
            "addresses": [pod["status"]["podIP"]],
            # "ready" is never true for a terminating pod unless not-ready addresses are published.
            "conditions": {"ready": publish_not_ready or (serving and not terminating), "serving": serving,
                           "terminating": terminating},
        }
        hostname = _hostname(service, pod)
        if hostname:
            endpoint["hostname"] = hostname
        endpoint["targetRef"] = _target_ref(pod)
        if (pod.get("spec") or {}).get("nodeName"):
            endpoint["nodeName"] = pod["spec"]["nodeName"]
        groups.setdefault(ports, []).append(endpoint)
    return [
        ([_port(name, number, protocol, app) for name, number, protocol, app in ports],
         sorted(endpoints, key=lambda e: _ip_order(e["addresses"][0])))
        for ports, endpoints in sorted(groups.items())
    ]


def _mirrored_groups(endpoints: Obj) -> list[tuple[list[Obj], list[Obj]]]:
    """Slices mirrored from a hand-written Endpoints: one per distinct port set of its subsets."""
    groups: dict[PortKey, list[Obj]] = {}
    for subset in endpoints.get("subsets") or []:
        key: PortKey = tuple(
            (str(p.get("name") or ""), int(p.get("port", 0)), str(p.get("protocol") or "TCP"),
             str(p.get("appProtocol") or ""))
            for p in subset.get("ports") or []
        )
        bucket = groups.setdefault(key, [])
        for field, ready in (("addresses", True), ("notReadyAddresses", False)):
            for address in subset.get(field) or []:
                endpoint: Obj = {
                    "addresses": [address["ip"]],
                    "conditions": {"ready": ready, "serving": ready, "terminating": False},
                }
                for name in ("hostname", "targetRef", "nodeName"):
                    if address.get(name):
                        endpoint[name] = address[name]
                bucket.append(endpoint)
    return [
        ([_port(name, number, protocol, app) for name, number, protocol, app in ports], endpoints_)
        for ports, endpoints_ in groups.items()
    ]


def _port(name: str, number: int, protocol: str, app_protocol: str, *, omit_empty_name: bool = False) -> Obj:
    port: Obj = {} if omit_empty_name and not name else {"name": name}
    port.update({"port": number, "protocol": protocol})
    if app_protocol:
        port["appProtocol"] = app_protocol
    return port


def _ip_order(ip: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in ip.split("."))
    except ValueError:
        return (1 << 16,)


def _address_order(address: Obj) -> tuple[tuple[int, ...], str]:
    return _ip_order(address["ip"]), (address.get("targetRef") or {}).get("uid", "")


def _delete(store: Store, group: str, resource: str, name: str, namespace: str) -> None:
    try:
        store.delete(group, resource, name, namespace)
    except StatusError as exc:
        if exc.code != 404:
            raise
