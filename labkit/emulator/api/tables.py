"""Server-side ``Table`` rendering: the columns ``kubectl get`` shows.

kubectl does not know how to print a Pod. It asks the server for a ``meta.k8s.io/v1`` Table
(``Accept: application/json;as=Table;v=v1;g=meta.k8s.io,…``) and prints the cells it gets back; a server
that ignores the request gets only NAME and AGE printed, and the labs lose READY, STATUS, IPs and the
EXTERNAL-IP of the east-west gateway. So this module reproduces the printers a v1.32 API server runs
(``pkg/printers/internalversion``) for the kinds the labs touch, computing each cell from the object the
same way: a pod's STATUS is the first waiting or terminated reason, ``Init:0/1`` while init containers
run, ``Terminating`` once a deletion timestamp is set; a LoadBalancer Service without an ingress address
shows ``<pending>``; an Endpoints list is cut after three addresses with `` + N more...``.

Like the real server, every column is rendered, including the ``-o wide`` ones (``priority`` 1):
kubectl hides those itself. Ages are computed against an explicit ``now`` so tests are deterministic.
Custom resources get their CRD's ``additionalPrinterColumns``, evaluated with a small JSONPath subset,
``date`` columns rendered as ages; a CRD without columns gets the single AGE column apiextensions adds.
Built-ins without a printer of their own (Roles, CRDs …) get the generic NAME / CREATED AT table.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from labkit.emulator.api.resources import PrinterColumn, ResourceType
from labkit.emulator.apimachinery.status import StatusError, bad_request

TABLE_V1 = "meta.k8s.io/v1"
TABLE_V1BETA1 = "meta.k8s.io/v1beta1"
INCLUDE_NONE, INCLUDE_METADATA, INCLUDE_OBJECT = "None", "Metadata", "Object"

Obj = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Column:
    """One ``columnDefinitions`` entry of a Table.

    Args:
        name: the header as the server sends it (``Nominated Node``); kubectl upper-cases it.
        type: ``string``, ``integer``, ``number``, ``boolean`` or ``date``.
        description: what the column means.
        priority: 0 for the default view, 1 for ``-o wide`` only.
        format: ``name`` for the column that identifies the object, else empty.
    """

    name: str
    type: str = "string"
    description: str = ""
    priority: int = 0
    format: str = ""

    def to_wire(self) -> dict[str, Any]:
        """The JSON form; every key is always present, as Go's encoder writes them."""
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": self.description, "priority": self.priority}


# Cells of one row, computed from the object and the moment "now".
CellFunction = Callable[[Obj, dt.datetime], list[Any]]

_NAME = Column("Name", format="name", description="Name of the object, unique within its namespace.")
_AGE = Column("Age", description="Time since the object was created (creationTimestamp).")
_CONTAINERS = Column("Containers", priority=1, description="Names of each container in the template.")
_IMAGES = Column("Images", priority=1, description="Images referenced by each container in the template.")


# --------------------------------------------------------------------------------------------------
# Content negotiation


def table_version(accept: str) -> str | None:
    """The Table apiVersion to answer with, or None when the client does not want a Table.

    The best-ranked clause of ``accept`` the server can satisfy decides (q-values first, then order),
    as a real server negotiates. When that clause asks for a Table, the answer is ``meta.k8s.io/v1``
    if any Table clause offered v1, else ``meta.k8s.io/v1beta1``.

    Args:
        accept: the ``Accept`` header, e.g. ``application/json;as=Table;v=v1;g=meta.k8s.io,application/json``.
    """
    clauses = []
    for position, raw in enumerate(accept.split(",")):
        media, *raw_params = (part.strip() for part in raw.split(";"))
        params = {key.strip().lower(): value.strip() for key, _, value in (p.partition("=") for p in raw_params)}
        try:
            quality = float(params.pop("q", "1"))
        except ValueError:
            quality = 1.0
        if media and quality > 0:
            clauses.append((-quality, position, media.lower(), params))
    clauses.sort(key=lambda clause: clause[:2])
    offered = {params.get("v") for _, _, media, params in clauses if _is_table_clause(media, params)}
    for _, _, media, params in clauses:
        if _is_table_clause(media, params):
            return TABLE_V1 if "v1" in offered else TABLE_V1BETA1
        if "as" not in params and media in ("application/json", "application/*", "*/*"):
            return None
    return None


def wants_table(accept: str) -> bool:
    """Whether the ``Accept`` header asks for a Table (``kubectl get`` does; the Python client does not).

    Args:
        accept: the ``Accept`` header.
    """
    return table_version(accept) is not None


def _is_table_clause(media: str, params: Mapping[str, str]) -> bool:
    return (media == "application/json" and params.get("as") == "Table"
            and params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"))


# --------------------------------------------------------------------------------------------------
# Tables


def columns_for(rt: ResourceType) -> list[Column]:
    """The column definitions a real server sends for ``rt``.

    Args:
        rt: the resource type being listed.
    """
    return _printer_for(rt)[0]


def render_row(rt: ResourceType, obj: Obj, now: dt.datetime) -> list[Any]:
    """The cells of one object's row, every column included (wide ones too).

    Args:
        rt: the object's type.
        obj: the object as stored (JSON-shaped).
        now: the moment ages are measured against.
    """
    return _printer_for(rt)[1](obj, _aware(now))


def render_table(rt: ResourceType, objects: Obj | Iterable[Obj], *, now: dt.datetime,
                 include_object: str = INCLUDE_METADATA, api_version: str = TABLE_V1,
                 resource_version: str | None = None, continue_token: str | None = None,
                 include_headers: bool = True) -> dict[str, Any]:
    """A ``Table`` for one object (a GET) or several (a LIST).

    Args:
        rt: the type of the objects.
        objects: one object, or an iterable of objects in the order to show them.
        now: the moment ages are measured against.
        include_object: ``None``, ``Metadata`` (the default, PartialObjectMetadata) or ``Object``
            (the whole object), from the ``includeObject`` query parameter.
        api_version: ``meta.k8s.io/v1`` or ``meta.k8s.io/v1beta1`` (see :func:`table_version`).
        resource_version: the list's resourceVersion; for a single object its own is used when omitted.
        continue_token: the list's ``continue`` token, when paginating.
        include_headers: False to leave ``columnDefinitions`` empty (``noHeaders``, later watch events).

    Raises:
        StatusError: 400 when ``include_object`` is not one of the three values.
    """
    if include_object not in (INCLUDE_NONE, INCLUDE_METADATA, INCLUDE_OBJECT):
        raise bad_request(f'unrecognized includeObject value: "{include_object}"')
    now = _aware(now)
    single = isinstance(objects, Mapping)
    items: list[Obj] = [objects] if isinstance(objects, Mapping) else list(objects)
    columns, cells_of = _printer_for(rt)
    rows = []
    for obj in items:
        row: dict[str, Any] = {"cells": cells_of(obj, now)}
        conditions = _row_conditions(rt, obj)
        if conditions:
            row["conditions"] = conditions
        if include_object == INCLUDE_OBJECT:
            row["object"] = _with_type_meta(rt, obj)
        elif include_object == INCLUDE_METADATA:
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": api_version,
                             "metadata": dict(obj.get("metadata") or {})}
        rows.append(row)
    metadata: dict[str, Any] = {}
    if resource_version is None and single:
        resource_version = (items[0].get("metadata") or {}).get("resourceVersion")
    if resource_version:
        metadata["resourceVersion"] = str(resource_version)
    if continue_token:
        metadata["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": metadata,
        "columnDefinitions": [column.to_wire() for column in columns] if include_headers else [],
        "rows": rows,
    }


def table_watch_event(event_type: str, obj: Obj, rt: ResourceType, *, now: dt.datetime,
                      include_object: str = INCLUDE_METADATA, api_version: str = TABLE_V1,
                      include_headers: bool = True) -> dict[str, Any]:
    """One watch event in the form ``kubectl get -w`` expects: the object replaced by a one-row Table.

    ``ERROR`` events keep their Status object untouched. ``BOOKMARK`` events become an empty Table that
    carries only the resourceVersion, since a bookmark object has nothing to print.

    Args:
        event_type: ``ADDED``, ``MODIFIED``, ``DELETED``, ``BOOKMARK`` or ``ERROR``.
        obj: the event's object.
        rt: the watched type.
        now: the moment ages are measured against.
        include_object: as for :func:`render_table`.
        api_version: as for :func:`render_table`.
        include_headers: False after the first event, to save repeating the column definitions.
    """
    if event_type == "ERROR":
        return {"type": event_type, "object": dict(obj)}
    if event_type == "BOOKMARK":
        resource_version = (obj.get("metadata") or {}).get("resourceVersion", "")
        return {"type": event_type, "object": render_table(rt, [], now=now, include_object=include_object,
                                                           api_version=api_version,
                                                           resource_version=resource_version,
                                                           include_headers=False)}
    table = render_table(rt, obj, now=now, include_object=include_object, api_version=api_version,
                         include_headers=include_headers)
    return {"type": event_type, "object": table}


def _with_type_meta(rt: ResourceType, obj: Obj) -> dict[str, Any]:
    return {"apiVersion": rt.group_version, "kind": rt.kind, **obj}


def _row_conditions(rt: ResourceType, obj: Obj) -> list[dict[str, str]]:
    # Finished pods are flagged so that clients may hide them; only pods carry row conditions.
    if rt.group or rt.kind != "Pod":
        return []
    phase = (obj.get("status") or {}).get("phase")
    if phase == "Succeeded":
        return [{"type": "Completed", "status": "True", "reason": "Succeeded",
                 "message": "The pod has completed successfully."}]
    if phase == "Failed":
        return [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]
    return []


# --------------------------------------------------------------------------------------------------
# Time


def human_duration(delta: dt.timedelta) -> str:
    """kubectl's ``HumanDuration``: ``5s``, ``3m2s``, ``2d3h``, ``1y120d``, about 2–3 significant figures.

    Under 2 minutes seconds; under 10 minutes ``XmYs``; under 3 hours minutes; under 8 hours ``XhYm``;
    under 2 days hours; under 8 days ``XdYh``; under 2 years days; under 8 years ``XyYd``; then years.
    A zero second or minute part is dropped (``5m``, ``2h``). Clock skew of up to a second in the future
    reads ``0s``; more reads ``<invalid>``.

    Args:
        delta: the elapsed time.
    """
    # Go truncates toward zero when converting the duration to whole seconds.
    seconds = int(delta.total_seconds())
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24 % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def parse_time(value: Any) -> dt.datetime | None:
    """An RFC 3339 timestamp (``2024-05-01T10:00:00Z``, fractions allowed) as an aware datetime.

    Args:
        value: the wire value; None, empty or unparsable values give None.
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return _aware(parsed)


def age(timestamp: Any, now: dt.datetime) -> str:
    """What kubectl prints for a timestamp: its age, or ``<unknown>`` when it is missing.

    Args:
        timestamp: the RFC 3339 wire value.
        now: the moment to measure against.
    """
    when = parse_time(timestamp)
    return human_duration(_aware(now) - when) if when else "<unknown>"


def _aware(moment: dt.datetime) -> dt.datetime:
    # A naive datetime is taken as UTC, the zone of every Kubernetes timestamp.
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _created_at(obj: Obj) -> str:
    when = parse_time(_meta(obj).get("creationTimestamp"))
    if when is None:
        return "0001-01-01T00:00:00Z"
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------------
# Helpers shared by the printers


def _meta(obj: Obj) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _spec(obj: Obj) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def _status(obj: Obj) -> Mapping[str, Any]:
    return obj.get("status") or {}


def _name(obj: Obj) -> str:
    return str(_meta(obj).get("name", ""))


def _age(obj: Obj, now: dt.datetime) -> str:
    return age(_meta(obj).get("creationTimestamp"), now)


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return int(value)


def format_labels(labels: Mapping[str, Any] | None) -> str:
    """``k=v,k2=v2`` sorted by key, or ``<none>``, as kubectl prints a label map.

    Args:
        labels: a label map (a Service selector, a node selector).
    """
    if not labels:
        return "<none>"
    return ",".join(f"{key}={labels[key]}" for key in sorted(labels))


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """A LabelSelector in Kubernetes' string form: ``app=web,tier in (a,b),!legacy``; empty matches all.

    Requirements are sorted by key, ``In``/``NotIn`` values sorted, as ``labels.Selector.String`` does.

    Args:
        selector: ``{matchLabels, matchExpressions}``.
    """
    if not selector:
        return ""
    requirements: list[tuple[str, str]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        requirements.append((key, f"{key}={value}"))
    for expression in selector.get("matchExpressions") or ():
        key = str(expression.get("key", ""))
        operator = expression.get("operator")
        values = ",".join(sorted(str(v) for v in expression.get("values") or ()))
        if operator == "In":
            requirements.append((key, f"{key} in ({values})"))
        elif operator == "NotIn":
            requirements.append((key, f"{key} notin ({values})"))
        elif operator == "Exists":
            requirements.append((key, key))
        elif operator == "DoesNotExist":
            requirements.append((key, f"!{key}"))
    requirements.sort(key=lambda requirement: requirement[0])
    return ",".join(text for _, text in requirements)


def format_label_selector(selector: Mapping[str, Any] | None) -> str:
    """:func:`selector_string`, but ``<none>`` for an empty selector (the ReplicaSet/DaemonSet SELECTOR).

    Args:
        selector: ``{matchLabels, matchExpressions}``.
    """
    return selector_string(selector) or "<none>"


def _container_cells(template_spec: Mapping[str, Any]) -> list[str]:
    containers = template_spec.get("containers") or ()
    return [",".join(str(c.get("name", "")) for c in containers),
            ",".join(str(c.get("image", "")) for c in containers)]


def _template_spec(obj: Obj) -> Mapping[str, Any]:
    return (_spec(obj).get("template") or {}).get("spec") or {}


def _join_host_port(host: str, port: Any) -> str:
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def _with_more(shown: list[str], total: int, limit: int, empty: str) -> str:
    text = ",".join(shown)
    if total > limit:
        return f"{text} + {total - limit} more..."
    return text or empty


# --------------------------------------------------------------------------------------------------
# Pods


def pod_status(pod: Obj, now: dt.datetime) -> tuple[str, str, str]:
    """READY, STATUS and RESTARTS of a pod, exactly as ``kubectl get pods`` computes them.

    Args:
        pod: the Pod.
        now: the moment the age of the last restart is measured against.

    Returns:
        ``("1/2", "CrashLoopBackOff", "5 (30s ago)")``-style strings.
    """
    spec, status = _spec(pod), _status(pod)
    # A real server sets Pending at creation; an object the store has not defaulted reads the same.
    phase = str(status.get("phase") or "Pending")
    reason = str(status.get("reason") or phase)
    for condition in status.get("conditions") or ():
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    init_specs = {str(c.get("name")): c for c in spec.get("initContainers") or ()}
    restartable = {name for name, c in init_specs.items() if c.get("restartPolicy") == "Always"}
    total = len(spec.get("containers") or ()) + len(restartable)
    ready = restarts = sidecar_restarts = 0
    last_restart: dt.datetime | None = None
    last_sidecar_restart: dt.datetime | None = None

    initializing = False
    for index, container in enumerate(status.get("initContainerStatuses") or ()):
        state = container.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        is_sidecar = container.get("name") in restartable
        count = _int(container.get("restartCount"))
        finished = _last_termination(container)
        restarts += count
        last_restart = _later(last_restart, finished)
        if is_sidecar:
            sidecar_restarts += count
            last_sidecar_restart = _later(last_sidecar_restart, finished)
        if terminated is not None and _int(terminated.get("exitCode")) == 0:
            continue
        if is_sidecar and container.get("started") is True:
            ready += 1 if container.get("ready") else 0
            continue
        if terminated is not None:
            if terminated.get("reason"):
                reason = f"Init:{terminated['reason']}"
            elif _int(terminated.get("signal")):
                reason = f"Init:Signal:{_int(terminated.get('signal'))}"
            else:
                reason = f"Init:ExitCode:{_int(terminated.get('exitCode'))}"
        elif waiting is not None and waiting.get("reason") and waiting.get("reason") != "PodInitializing":
            reason = f"Init:{waiting['reason']}"
        else:
            reason = f"Init:{index}/{len(init_specs)}"
        initializing = True
        break

    initialized = any(c.get("type") == "Initialized" and c.get("status") == "True"
                      for c in status.get("conditions") or ())
    if not initializing or initialized:
        restarts, last_restart = sidecar_restarts, last_sidecar_restart
        has_running = False
        # Walking backwards leaves the first container's reason in place, as kubectl shows it.
        for container in reversed(status.get("containerStatuses") or ()):
            state = container.get("state") or {}
            waiting, terminated = state.get("waiting"), state.get("terminated")
            restarts += _int(container.get("restartCount"))
            last_restart = _later(last_restart, _last_termination(container))
            if waiting is not None and waiting.get("reason"):
                reason = str(waiting["reason"])
            elif terminated is not None and terminated.get("reason"):
                reason = str(terminated["reason"])
            elif terminated is not None:
                signal = _int(terminated.get("signal"))
                reason = f"Signal:{signal}" if signal else f"ExitCode:{_int(terminated.get('exitCode'))}"
            elif container.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in status.get("conditions") or ())
            reason = "Running" if pod_ready else "NotReady"

    if _meta(pod).get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"

    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration(_aware(now) - last_restart)} ago)"
    return f"{ready}/{total}", reason, restarts_text


def _last_termination(container: Obj) -> dt.datetime | None:
    terminated = (container.get("lastState") or {}).get("terminated")
    return parse_time(terminated.get("finishedAt")) if terminated else None


def _later(current: dt.datetime | None, candidate: dt.datetime | None) -> dt.datetime | None:
    if candidate is None:
        return current
    return candidate if current is None or candidate > current else current


def _pod_cells(pod: Obj, now: dt.datetime) -> list[Any]:
    ready, reason, restarts = pod_status(pod, now)
    spec, status = _spec(pod), _status(pod)
    pod_ips = status.get("podIPs") or ()
    pod_ip = (pod_ips[0].get("ip") if pod_ips else status.get("podIP")) or "<none>"
    gates = spec.get("readinessGates") or ()
    readiness = "<none>"
    if gates:
        conditions = status.get("conditions") or ()
        passed = 0
        for gate in gates:
            match = next((c for c in conditions if c.get("type") == gate.get("conditionType")), None)
            passed += 1 if match and match.get("status") == "True" else 0
        readiness = f"{passed}/{len(gates)}"
    return [_name(pod), ready, reason, restarts, _age(pod, now), pod_ip,
            spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>", readiness]


_POD_COLUMNS = [
    _NAME,
    Column("Ready", description="Ready containers out of all containers of the pod."),
    Column("Status", description="The reason the pod is in its current state, as kubectl summarises it."),
    Column("Restarts", description="Container restarts, with the time since the last one."),
    _AGE,
    Column("IP", priority=1, description="The pod's first IP address."),
    Column("Node", priority=1, description="The node the pod is bound to."),
    Column("Nominated Node", priority=1, description="The node the scheduler nominated for preemption."),
    Column("Readiness Gates", priority=1, description="Readiness gates that report True, out of all."),
]


# --------------------------------------------------------------------------------------------------
# Services, endpoints


def service_external_ip(service: Obj) -> str:
    """EXTERNAL-IP of a Service: ``<none>``, ``<pending>`` for a LoadBalancer without an address, or
    the load balancer's addresses (sorted, de-duplicated) followed by ``spec.externalIPs``.

    Args:
        service: the Service.
    """
    spec = _spec(service)
    external_ips = [str(ip) for ip in spec.get("externalIPs") or ()]
    service_type = spec.get("type") or "ClusterIP"
    if service_type in ("ClusterIP", "NodePort"):
        return ",".join(external_ips) or "<none>"
    if service_type == "LoadBalancer":
        ingress = ((_status(service).get("loadBalancer") or {}).get("ingress")) or ()
        addresses = sorted({str(i.get("ip") or i.get("hostname")) for i in ingress if i.get("ip") or i.get("hostname")})
        if external_ips:
            return ",".join(addresses + external_ips)
        return ",".join(addresses) or "<pending>"
    if service_type == "ExternalName":
        return str(spec.get("externalName", ""))
    return "<unknown>"


def service_ports(service: Obj) -> str:
    """PORT(S) of a Service: ``80/TCP``, ``15021:31234/TCP`` when a nodePort is set, comma-joined.

    Args:
        service: the Service.
    """
    pieces = []
    for port in _spec(service).get("ports") or ():
        protocol = port.get("protocol") or "TCP"
        node_port = _int(port.get("nodePort"))
        pieces.append(f"{port.get('port')}:{node_port}/{protocol}" if node_port > 0
                      else f"{port.get('port')}/{protocol}")
    return ",".join(pieces) or "<none>"


def _service_cells(service: Obj, now: dt.datetime) -> list[Any]:
    spec = _spec(service)
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    # The real server always defaults the type; an undefaulted object still reads as ClusterIP.
    return [_name(service), spec.get("type") or "ClusterIP", cluster_ips[0] if cluster_ips else "<none>",
            service_external_ip(service), service_ports(service), _age(service, now),
            format_labels(spec.get("selector"))]


_SERVICE_COLUMNS = [
    _NAME,
    Column("Type", description="How the service is exposed: ClusterIP, NodePort, LoadBalancer, ExternalName."),
    Column("Cluster-IP", description="The virtual IP inside the cluster."),
    Column("External-IP", description="Addresses reachable from outside the cluster."),
    Column("Port(s)", description="Service ports, with node ports where allocated."),
    _AGE,
    Column("Selector", priority=1, description="Labels of the pods the service routes to."),
]


def endpoints_summary(endpoints: Obj) -> str:
    """ENDPOINTS of an Endpoints object: ``ip:port`` pairs, the first three, then `` + N more...``.

    Args:
        endpoints: the Endpoints object.
    """
    subsets = endpoints.get("subsets") or ()
    if not subsets:
        return "<none>"
    shown: list[str] = []
    total = 0
    limit = 3
    for subset in subsets:
        addresses = [str(a.get("ip", "")) for a in subset.get("addresses") or ()]
        ports = subset.get("ports") or ()
        if not ports:
            # A headless service may have no ports: its addresses are listed alone.
            total += len(addresses)
            shown += addresses[: max(0, limit - len(shown))]
            continue
        for port in ports:
            total += len(addresses)
            room = max(0, limit - len(shown))
            shown += [_join_host_port(ip, port.get("port")) for ip in addresses[:room]]
    return _with_more(shown, total, limit, "")


def _endpoints_cells(endpoints: Obj, now: dt.datetime) -> list[Any]:
    return [_name(endpoints), endpoints_summary(endpoints), _age(endpoints, now)]


def _endpoint_slice_cells(endpoint_slice: Obj, now: dt.datetime) -> list[Any]:
    ports = []
    for port in endpoint_slice.get("ports") or ():
        number = port.get("port")
        ports.append(str(number) if number is not None else str(port.get("name") or "*"))
    addresses = [str(address) for endpoint in endpoint_slice.get("endpoints") or ()
                 for address in endpoint.get("addresses") or ()]
    return [_name(endpoint_slice), str(endpoint_slice.get("addressType", "")),
            _with_more(ports[:3], len(ports), 3, "<unset>"),
            _with_more(addresses[:3], len(addresses), 3, "<unset>"), _age(endpoint_slice, now)]


# --------------------------------------------------------------------------------------------------
# Workloads


def _deployment_cells(deployment: Obj, now: dt.datetime) -> list[Any]:
    spec, status = _spec(deployment), _status(deployment)
    desired = _int(spec.get("replicas"), 1)
    return [_name(deployment), f"{_int(status.get('readyReplicas'))}/{desired}",
            _int(status.get("updatedReplicas")), _int(status.get("availableReplicas")), _age(deployment, now),
            *_container_cells(_template_spec(deployment)), selector_string(spec.get("selector"))]


def _replica_set_cells(replica_set: Obj, now: dt.datetime) -> list[Any]:
    spec, status = _spec(replica_set), _status(replica_set)
    return [_name(replica_set), _int(spec.get("replicas"), 1), _int(status.get("replicas")),
            _int(status.get("readyReplicas")), _age(replica_set, now),
            *_container_cells(_template_spec(replica_set)), format_label_selector(spec.get("selector"))]


def _daemon_set_cells(daemon_set: Obj, now: dt.datetime) -> list[Any]:
    spec, status = _spec(daemon_set), _status(daemon_set)
    return [_name(daemon_set), _int(status.get("desiredNumberScheduled")),
            _int(status.get("currentNumberScheduled")), _int(status.get("numberReady")),
            _int(status.get("updatedNumberScheduled")), _int(status.get("numberAvailable")),
            format_labels(_template_spec(daemon_set).get("nodeSelector")), _age(daemon_set, now),
            *_container_cells(_template_spec(daemon_set)), format_label_selector(spec.get("selector"))]


def _stateful_set_cells(stateful_set: Obj, now: dt.datetime) -> list[Any]:
    desired = _int(_spec(stateful_set).get("replicas"), 1)
    return [_name(stateful_set), f"{_int(_status(stateful_set).get('readyReplicas'))}/{desired}",
            _age(stateful_set, now), *_container_cells(_template_spec(stateful_set))]


# --------------------------------------------------------------------------------------------------
# Cluster and configuration objects


def _namespace_cells(namespace: Obj, now: dt.datetime) -> list[Any]:
    phase = _status(namespace).get("phase")
    if not phase:
        # The store sets the phase; should it be missing, show what a real server would have set.
        phase = "Terminating" if _meta(namespace).get("deletionTimestamp") else "Active"
    return [_name(namespace), phase, _age(namespace, now)]


def _secret_cells(secret: Obj, now: dt.datetime) -> list[Any]:
    return [_name(secret), secret.get("type") or "Opaque", len(secret.get("data") or {}), _age(secret, now)]


def _config_map_cells(config_map: Obj, now: dt.datetime) -> list[Any]:
    count = len(config_map.get("data") or {}) + len(config_map.get("binaryData") or {})
    return [_name(config_map), count, _age(config_map, now)]


def _service_account_cells(account: Obj, now: dt.datetime) -> list[Any]:
    return [_name(account), len(account.get("secrets") or ()), _age(account, now)]


def node_status(node: Obj) -> str:
    """STATUS of a node: ``Ready``, ``NotReady`` or ``Unknown``, plus ``SchedulingDisabled`` if cordoned.

    Args:
        node: the Node.
    """
    ready = next((c for c in _status(node).get("conditions") or () if c.get("type") == "Ready"), None)
    parts = ["Unknown" if ready is None else "Ready" if ready.get("status") == "True" else "NotReady"]
    if _spec(node).get("unschedulable"):
        parts.append("SchedulingDisabled")
    return ",".join(parts)


def _node_cells(node: Obj, now: dt.datetime) -> list[Any]:
    roles = set()
    for key, value in (_meta(node).get("labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/") and key.removeprefix("node-role.kubernetes.io/"):
            roles.add(key.removeprefix("node-role.kubernetes.io/"))
        elif key == "kubernetes.io/role" and value:
            roles.add(str(value))
    status = _status(node)
    info = status.get("nodeInfo") or {}
    addresses = status.get("addresses") or ()

    def address(kind: str) -> str:
        return next((str(a.get("address")) for a in addresses if a.get("type") == kind), "<none>")

    return [_name(node), node_status(node), ",".join(sorted(roles)) or "<none>", _age(node, now),
            str(info.get("kubeletVersion", "")), address("InternalIP"), address("ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


def _event_cells(event: Obj, now: dt.datetime) -> list[Any]:
    # core/v1 and events.k8s.io/v1 name the same facts differently; read whichever is present.
    involved = event.get("involvedObject") or event.get("regarding") or {}
    source = event.get("source") or event.get("deprecatedSource") or {}
    series = event.get("series")
    first_time = event.get("firstTimestamp") or event.get("deprecatedFirstTimestamp")
    last_time = event.get("lastTimestamp") or event.get("deprecatedLastTimestamp")
    first = age(first_time, now) if first_time else age(event.get("eventTime"), now)
    last = age(last_time, now) if last_time else first
    count = _int(event.get("count") if "count" in event else event.get("deprecatedCount"))
    if series:
        last = age(series.get("lastObservedTime"), now)
        count = _int(series.get("count"))
    elif count == 0:
        count = 1
    kind = str(involved.get("kind", "")).lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    component = source.get("component") or event.get("reportingController") or ""
    instance = source.get("host") or event.get("reportingInstance") or ""
    message = str(event.get("message") or event.get("note") or "").strip()
    return [last, str(event.get("type", "")), str(event.get("reason", "")), target,
            str(involved.get("fieldPath", "")), f"{component}, {instance}" if instance else component,
            message, first, count, _name(event)]


_EVENT_COLUMNS = [
    Column("Last Seen", description="Time since the event was last observed."),
    Column("Type", description="Normal or Warning."),
    Column("Reason", description="Why the event happened, in CamelCase."),
    Column("Object", description="The object the event is about, as kind/name."),
    Column("Subobject", priority=1, description="The part of the object, e.g. a container path."),
    Column("Source", priority=1, description="The component (and host) that reported the event."),
    Column("Message", description="A human-readable description."),
    Column("First Seen", priority=1, description="Time since the event was first observed."),
    Column("Count", priority=1, description="How many times the event happened."),
    Column("Name", priority=1, format="name", description="Name of the event object."),
]


def _binding_cells(binding: Obj, now: dt.datetime) -> list[Any]:
    role_ref = binding.get("roleRef") or {}
    users: list[str] = []
    groups: list[str] = []
    accounts: list[str] = []
    for subject in binding.get("subjects") or ():
        if subject.get("kind") == "User":
            users.append(str(subject.get("name", "")))
        elif subject.get("kind") == "Group":
            groups.append(str(subject.get("name", "")))
        elif subject.get("kind") == "ServiceAccount":
            accounts.append(f"{subject.get('namespace', '')}/{subject.get('name', '')}")
    return [_name(binding), f"{role_ref.get('kind', '')}/{role_ref.get('name', '')}", _age(binding, now),
            ", ".join(users), ", ".join(groups), ", ".join(accounts)]


def _binding_columns(what: str) -> list[Column]:
    return [_NAME, Column("Role", description="The role granted (kind/name)."), _AGE,
            Column("Users", priority=1, description=f"Users in the {what}"),
            Column("Groups", priority=1, description=f"Groups in the {what}"),
            Column("ServiceAccounts", priority=1, description=f"ServiceAccounts in the {what}")]


def _lease_cells(lease: Obj, now: dt.datetime) -> list[Any]:
    return [_name(lease), str(_spec(lease).get("holderIdentity") or ""), _age(lease, now)]


def _webhook_cells(configuration: Obj, now: dt.datetime) -> list[Any]:
    return [_name(configuration), len(configuration.get("webhooks") or ()), _age(configuration, now)]


_WEBHOOK_COLUMNS = [_NAME, Column("Webhooks", "integer", "Number of webhooks in this configuration."), _AGE]

# (group, kind) → (columns, cells). Kinds absent here use the generic tables below.
_PRINTERS: dict[tuple[str, str], tuple[list[Column], CellFunction]] = {
    ("", "Pod"): (_POD_COLUMNS, _pod_cells),
    ("", "Service"): (_SERVICE_COLUMNS, _service_cells),
    ("", "Endpoints"): ([_NAME, Column("Endpoints", description="Ready addresses with their ports."), _AGE],
                        _endpoints_cells),
    ("", "Namespace"): ([_NAME, Column("Status", description="Active or Terminating."), _AGE], _namespace_cells),
    ("", "Secret"): ([_NAME, Column("Type", description="The secret's type."),
                      Column("Data", description="Number of data keys."), _AGE], _secret_cells),
    ("", "ConfigMap"): ([_NAME, Column("Data", description="Number of data and binaryData keys."), _AGE],
                        _config_map_cells),
    ("", "ServiceAccount"): ([_NAME, Column("Secrets", description="Number of referenced secrets."), _AGE],
                             _service_account_cells),
    ("", "Node"): ([_NAME, Column("Status", description="Ready, NotReady or Unknown, and cordoning."),
                    Column("Roles", description="Roles from node-role.kubernetes.io labels."), _AGE,
                    Column("Version", description="The kubelet's version."),
                    Column("Internal-IP", priority=1, description="The node's internal address."),
                    Column("External-IP", priority=1, description="The node's external address."),
                    Column("OS-Image", priority=1, description="The operating system image."),
                    Column("Kernel-Version", priority=1, description="The kernel version."),
                    Column("Container-Runtime", priority=1, description="The container runtime version.")],
                   _node_cells),
    ("", "Event"): (_EVENT_COLUMNS, _event_cells),
    ("events.k8s.io", "Event"): (_EVENT_COLUMNS, _event_cells),
    ("apps", "Deployment"): ([_NAME, Column("Ready", description="Ready replicas out of desired."),
                              Column("Up-to-date", description="Replicas running the latest template."),
                              Column("Available", description="Replicas available to serve."), _AGE,
                              _CONTAINERS, _IMAGES,
                              Column("Selector", priority=1, description="The deployment's pod selector.")],
                             _deployment_cells),
    ("apps", "ReplicaSet"): ([_NAME, Column("Desired", "integer", "Replicas asked for."),
                              Column("Current", "integer", "Replicas that exist."),
                              Column("Ready", "integer", "Replicas that are ready."), _AGE, _CONTAINERS, _IMAGES,
                              Column("Selector", priority=1, description="The replica set's pod selector.")],
                             _replica_set_cells),
    ("apps", "DaemonSet"): ([_NAME, Column("Desired", "integer", "Nodes that should run the pod."),
                             Column("Current", "integer", "Nodes running the pod."),
                             Column("Ready", "integer", "Nodes with the pod ready."),
                             Column("Up-to-date", "integer", "Nodes running the latest template."),
                             Column("Available", "integer", "Nodes with the pod available."),
                             Column("Node Selector", description="The pod template's node selector."), _AGE,
                             _CONTAINERS, _IMAGES,
                             Column("Selector", priority=1, description="The daemon set's pod selector.")],
                            _daemon_set_cells),
    ("apps", "StatefulSet"): ([_NAME, Column("Ready", description="Ready replicas out of desired."), _AGE,
                               _CONTAINERS, _IMAGES], _stateful_set_cells),
    ("discovery.k8s.io", "EndpointSlice"): ([_NAME, Column("AddressType", description="IPv4, IPv6 or FQDN."),
                                             Column("Ports", description="The slice's ports."),
                                             Column("Endpoints", description="The slice's addresses."), _AGE],
                                            _endpoint_slice_cells),
    ("rbac.authorization.k8s.io", "RoleBinding"): (_binding_columns("roleBinding"), _binding_cells),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): (_binding_columns("clusterRoleBinding"),
                                                         _binding_cells),
    ("coordination.k8s.io", "Lease"): ([_NAME, Column("Holder", description="The current holder's identity."),
                                        _AGE], _lease_cells),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"): (_WEBHOOK_COLUMNS, _webhook_cells),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"): (_WEBHOOK_COLUMNS, _webhook_cells),
}

# The generic table of built-ins without a printer (Roles, CRDs …): the creation time, not an age.
_CREATED_AT_COLUMNS = [_NAME, Column("Created At", "date", "When the object was created (RFC 3339).")]


def _created_at_cells(obj: Obj, now: dt.datetime) -> list[Any]:
    return [_name(obj), _created_at(obj)]


# What apiextensions shows for a custom resource whose CRD declares no columns.
_DEFAULT_CRD_COLUMNS = (PrinterColumn("Age", "date", ".metadata.creationTimestamp",
                                      "Time since the object was created (creationTimestamp)."),)


def _printer_for(rt: ResourceType) -> tuple[list[Column], CellFunction]:
    if rt.crd:
        return _custom_printer(rt.printer_columns or _DEFAULT_CRD_COLUMNS)
    return _PRINTERS.get((rt.group, rt.kind), (_CREATED_AT_COLUMNS, _created_at_cells))


# --------------------------------------------------------------------------------------------------
# Custom resources


def _custom_printer(printer_columns: tuple[PrinterColumn, ...]) -> tuple[list[Column], CellFunction]:
    columns = [_NAME] + [
        Column(pc.name, pc.type, pc.description or f"Custom resource definition column (in JSONPath format): "
               f"{pc.json_path}", pc.priority, pc.format)
        for pc in printer_columns
    ]
    paths = [_parse_or_none(pc.json_path) for pc in printer_columns]

    def cells(obj: Obj, now: dt.datetime) -> list[Any]:
        row: list[Any] = [_name(obj)]
        for pc, path in zip(printer_columns, paths, strict=True):
            found, value = evaluate_json_path(obj, path) if path is not None else (False, None)
            row.append(_custom_cell(pc.type, value, now) if found and value is not None else None)
        return row

    return columns, cells


def _parse_or_none(expression: str) -> tuple[Step, ...] | None:
    # The server accepts any path that starts with a dot; one this subset cannot follow prints empty.
    try:
        return parse_json_path(expression)
    except StatusError:
        return None


def _custom_cell(column_type: str, value: Any, now: dt.datetime) -> Any:
    # The typed conversions of apiextensions' table convertor: a value of the wrong type prints empty.
    if column_type == "string":
        return _text(value)
    if column_type == "integer":
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    if column_type == "number":
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    if column_type == "boolean":
        return value if isinstance(value, bool) else None
    if column_type == "date" and isinstance(value, str):
        if not value:
            return "<unknown>"
        when = parse_time(value)
        return human_duration(now - when) if when else "<invalid>"
    return None


def _text(value: Any) -> str:
    # How a JSONPath result prints: strings bare, numbers and booleans as Go prints them, JSON otherwise.
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Wildcard:
    """The ``[*]`` step: every item of a list (or every value of a map)."""


@dataclass(frozen=True, slots=True)
class Filter:
    """The ``[?(@.type=="Ready")]`` step: the list items whose ``path`` equals ``value``.

    Args:
        path: the steps inside the item (``("type",)``).
        value: the literal compared with, as JSON would decode it (a string, number or boolean).
    """

    path: tuple[str | int, ...]
    value: Any


Step = str | int | Wildcard | Filter

_PATH_STEP = re.compile(r"""\.([^.\[\]'"]+)|\[(-?\d+)\]|\['([^']*)'\]|\["([^"]*)"\]|\[(\*)\]"""
                        r"""|\[\?\(@((?:\.[^.\[\]'"=!<>()\s]+)+)\s*==\s*('[^']*'|"[^"]*"|[^)\s]+)\s*\)\]""")


def parse_json_path(expression: str) -> tuple[Step, ...]:
    """The steps of a printer column's JSONPath.

    The subset CRDs use in practice: ``.field``, ``[index]`` (negative counts from the end),
    ``['key']`` for keys with dots, ``[*]``, and equality filters such as
    ``.status.conditions[?(@.type=="Ready")].status``, optionally wrapped in ``{}``.

    Args:
        expression: the JSONPath.

    Raises:
        StatusError: 400 when the expression is outside the supported subset.
    """
    text = expression.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    steps: list[Step] = []
    position = 0
    while position < len(text):
        match = _PATH_STEP.match(text, position)
        if not match:
            raise bad_request(f'unsupported JSONPath "{expression}": only .field, [index], [\'key\'], [*] '
                              f'and [?(@.field==value)] steps')
        field, index, single, double, star, filter_path, literal = match.groups()
        if index is not None:
            steps.append(int(index))
        elif star is not None:
            steps.append(Wildcard())
        elif filter_path is not None:
            steps.append(Filter(tuple(filter_path[1:].split(".")), _literal(literal)))
        else:
            steps.append(next(part for part in (field, single, double) if part is not None))
        position = match.end()
    if not steps:
        raise bad_request(f'unsupported JSONPath "{expression}": it selects nothing')
    return tuple(steps)


def _literal(text: str) -> Any:
    if text[:1] in ("'", '"'):
        return text[1:-1]
    try:
        return json.loads(text)
    except ValueError:
        return text


def evaluate_json_path(obj: Any, steps: tuple[Step, ...]) -> tuple[bool, Any]:
    """Follow parsed JSONPath steps into ``obj`` and take the first result, as a printer column does.

    Args:
        obj: the object.
        steps: from :func:`parse_json_path`.

    Returns:
        ``(True, value)`` for the first match, ``(False, None)`` when nothing matches (a missing key is
        not an error: the cell is simply empty).
    """
    for value in _matches(obj, steps):
        return True, value
    return False, None


def _matches(current: Any, steps: tuple[Step, ...]) -> Iterator[Any]:
    if not steps:
        yield current
        return
    step, rest = steps[0], steps[1:]
    if isinstance(step, Wildcard):
        items = current.values() if isinstance(current, Mapping) else current if isinstance(current, list) else ()
        for item in items:
            yield from _matches(item, rest)
    elif isinstance(step, Filter):
        for item in current if isinstance(current, list) else ():
            found, value = evaluate_json_path(item, step.path)
            # JSON equality: 80 matches 80.0, but true does not match 1.
            if found and value == step.value and isinstance(value, bool) == isinstance(step.value, bool):
                yield from _matches(item, rest)
    elif isinstance(step, int):
        if isinstance(current, list) and -len(current) <= step < len(current):
            yield from _matches(current[step], rest)
    elif isinstance(current, Mapping) and step in current:
        yield from _matches(current[step], rest)
