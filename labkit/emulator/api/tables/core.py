"""Printers of the core group (``v1``): pods, Services, Endpoints, namespaces, nodes, events and configuration.

Each computes its cells as ``pkg/printers/internalversion`` does for a v1.32 server: a pod's STATUS is the
first waiting or terminated reason, ``Init:0/1`` while init containers run, ``Terminating`` once a deletion
timestamp is set; a LoadBalancer Service without an ingress address shows ``<pending>``; an Endpoints list is
cut after three addresses with `` + N more...``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .cells import (
    AGE,
    NAME,
    Column,
    Obj,
    Printer,
    age,
    age_of,
    as_int,
    aware,
    format_labels,
    human_duration,
    join_host_port,
    metadata_of,
    name_of,
    parse_time,
    spec_of,
    status_of,
    with_more,
)


def pod_status(pod: Obj, now: dt.datetime) -> tuple[str, str, str]:
    """READY, STATUS and RESTARTS of a pod, exactly as ``kubectl get pods`` computes them.

    Args:
        pod: the Pod.
        now: the moment the age of the last restart is measured against.

    Returns:
        ``("1/2", "CrashLoopBackOff", "5 (30s ago)")``-style strings.
    """
    spec, status = spec_of(pod), status_of(pod)
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
        count = as_int(container.get("restartCount"))
        finished = _last_termination(container)
        restarts += count
        last_restart = _later(last_restart, finished)
        if is_sidecar:
            sidecar_restarts += count
            last_sidecar_restart = _later(last_sidecar_restart, finished)
        if terminated is not None and as_int(terminated.get("exitCode")) == 0:
            continue
        if is_sidecar and container.get("started") is True:
            ready += 1 if container.get("ready") else 0
            continue
        if terminated is not None:
            if terminated.get("reason"):
                reason = f"Init:{terminated['reason']}"
            elif as_int(terminated.get("signal")):
                reason = f"Init:Signal:{as_int(terminated.get('signal'))}"
            else:
                reason = f"Init:ExitCode:{as_int(terminated.get('exitCode'))}"
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
            restarts += as_int(container.get("restartCount"))
            last_restart = _later(last_restart, _last_termination(container))
            if waiting is not None and waiting.get("reason"):
                reason = str(waiting["reason"])
            elif terminated is not None and terminated.get("reason"):
                reason = str(terminated["reason"])
            elif terminated is not None:
                signal = as_int(terminated.get("signal"))
                reason = f"Signal:{signal}" if signal else f"ExitCode:{as_int(terminated.get('exitCode'))}"
            elif container.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in status.get("conditions") or ())
            reason = "Running" if pod_ready else "NotReady"

    if metadata_of(pod).get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"

    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration(aware(now) - last_restart)} ago)"
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
    spec, status = spec_of(pod), status_of(pod)
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
    return [name_of(pod), ready, reason, restarts, age_of(pod, now), pod_ip,
            spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>", readiness]


_POD_COLUMNS = [
    NAME,
    Column("Ready", description="Ready containers out of all containers of the pod."),
    Column("Status", description="The reason the pod is in its current state, as kubectl summarises it."),
    Column("Restarts", description="Container restarts, with the time since the last one."),
    AGE,
    Column("IP", priority=1, description="The pod's first IP address."),
    Column("Node", priority=1, description="The node the pod is bound to."),
    Column("Nominated Node", priority=1, description="The node the scheduler nominated for preemption."),
    Column("Readiness Gates", priority=1, description="Readiness gates that report True, out of all."),
]


def service_external_ip(service: Obj) -> str:
    """EXTERNAL-IP of a Service: ``<none>``, ``<pending>`` for a LoadBalancer without an address, or
    the load balancer's addresses (sorted, de-duplicated) followed by ``spec.externalIPs``.

    Args:
        service: the Service.
    """
    spec = spec_of(service)
    external_ips = [str(ip) for ip in spec.get("externalIPs") or ()]
    service_type = spec.get("type") or "ClusterIP"
    if service_type in ("ClusterIP", "NodePort"):
        return ",".join(external_ips) or "<none>"
    if service_type == "LoadBalancer":
        ingress = ((status_of(service).get("loadBalancer") or {}).get("ingress")) or ()
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
    for port in spec_of(service).get("ports") or ():
        protocol = port.get("protocol") or "TCP"
        node_port = as_int(port.get("nodePort"))
        pieces.append(f"{port.get('port')}:{node_port}/{protocol}" if node_port > 0
                      else f"{port.get('port')}/{protocol}")
    return ",".join(pieces) or "<none>"


def _service_cells(service: Obj, now: dt.datetime) -> list[Any]:
    spec = spec_of(service)
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    # The real server always defaults the type; an undefaulted object still reads as ClusterIP.
    return [name_of(service), spec.get("type") or "ClusterIP", cluster_ips[0] if cluster_ips else "<none>",
            service_external_ip(service), service_ports(service), age_of(service, now),
            format_labels(spec.get("selector"))]


_SERVICE_COLUMNS = [
    NAME,
    Column("Type", description="How the service is exposed: ClusterIP, NodePort, LoadBalancer, ExternalName."),
    Column("Cluster-IP", description="The virtual IP inside the cluster."),
    Column("External-IP", description="Addresses reachable from outside the cluster."),
    Column("Port(s)", description="Service ports, with node ports where allocated."),
    AGE,
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
            shown += [join_host_port(ip, port.get("port")) for ip in addresses[:room]]
    return with_more(shown, total, limit, "")


def _endpoints_cells(endpoints: Obj, now: dt.datetime) -> list[Any]:
    return [name_of(endpoints), endpoints_summary(endpoints), age_of(endpoints, now)]


def _namespace_cells(namespace: Obj, now: dt.datetime) -> list[Any]:
    phase = status_of(namespace).get("phase")
    if not phase:
        # The store sets the phase; should it be missing, show what a real server would have set.
        phase = "Terminating" if metadata_of(namespace).get("deletionTimestamp") else "Active"
    return [name_of(namespace), phase, age_of(namespace, now)]


def _secret_cells(secret: Obj, now: dt.datetime) -> list[Any]:
    return [name_of(secret), secret.get("type") or "Opaque", len(secret.get("data") or {}), age_of(secret, now)]


def _config_map_cells(config_map: Obj, now: dt.datetime) -> list[Any]:
    count = len(config_map.get("data") or {}) + len(config_map.get("binaryData") or {})
    return [name_of(config_map), count, age_of(config_map, now)]


def _service_account_cells(account: Obj, now: dt.datetime) -> list[Any]:
    return [name_of(account), len(account.get("secrets") or ()), age_of(account, now)]


def node_status(node: Obj) -> str:
    """STATUS of a node: ``Ready``, ``NotReady`` or ``Unknown``, plus ``SchedulingDisabled`` if cordoned.

    Args:
        node: the Node.
    """
    ready = next((c for c in status_of(node).get("conditions") or () if c.get("type") == "Ready"), None)
    parts = ["Unknown" if ready is None else "Ready" if ready.get("status") == "True" else "NotReady"]
    if spec_of(node).get("unschedulable"):
        parts.append("SchedulingDisabled")
    return ",".join(parts)


def _node_cells(node: Obj, now: dt.datetime) -> list[Any]:
    roles = set()
    for key, value in (metadata_of(node).get("labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/") and key.removeprefix("node-role.kubernetes.io/"):
            roles.add(key.removeprefix("node-role.kubernetes.io/"))
        elif key == "kubernetes.io/role" and value:
            roles.add(str(value))
    status = status_of(node)
    info = status.get("nodeInfo") or {}
    addresses = status.get("addresses") or ()

    def address(kind: str) -> str:
        return next((str(a.get("address")) for a in addresses if a.get("type") == kind), "<none>")

    return [name_of(node), node_status(node), ",".join(sorted(roles)) or "<none>", age_of(node, now),
            str(info.get("kubeletVersion", "")), address("InternalIP"), address("ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


def event_cells(event: Obj, now: dt.datetime) -> list[Any]:
    # core/v1 and events.k8s.io/v1 name the same facts differently; read whichever is present.
    involved = event.get("involvedObject") or event.get("regarding") or {}
    source = event.get("source") or event.get("deprecatedSource") or {}
    series = event.get("series")
    first_time = event.get("firstTimestamp") or event.get("deprecatedFirstTimestamp")
    last_time = event.get("lastTimestamp") or event.get("deprecatedLastTimestamp")
    first = age(first_time, now) if first_time else age(event.get("eventTime"), now)
    last = age(last_time, now) if last_time else first
    count = as_int(event.get("count") if "count" in event else event.get("deprecatedCount"))
    if series:
        last = age(series.get("lastObservedTime"), now)
        count = as_int(series.get("count"))
    elif count == 0:
        count = 1
    kind = str(involved.get("kind", "")).lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    component = source.get("component") or event.get("reportingController") or event.get("reportingComponent") or ""
    instance = source.get("host") or event.get("reportingInstance") or ""
    message = str(event.get("message") or event.get("note") or "").strip()
    return [last, str(event.get("type", "")), str(event.get("reason", "")), target,
            str(involved.get("fieldPath", "")), f"{component}, {instance}" if instance else component,
            message, first, count, name_of(event)]


EVENT_COLUMNS = [
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


PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "Pod"): (_POD_COLUMNS, _pod_cells),
    ("", "Service"): (_SERVICE_COLUMNS, _service_cells),
    ("", "Endpoints"): ([NAME, Column("Endpoints", description="Ready addresses with their ports."), AGE],
                        _endpoints_cells),
    ("", "Namespace"): ([NAME, Column("Status", description="Active or Terminating."), AGE], _namespace_cells),
    ("", "Secret"): ([NAME, Column("Type", description="The secret's type."),
                      Column("Data", description="Number of data keys."), AGE], _secret_cells),
    ("", "ConfigMap"): ([NAME, Column("Data", description="Number of data and binaryData keys."), AGE],
                        _config_map_cells),
    ("", "ServiceAccount"): ([NAME, Column("Secrets", description="Number of referenced secrets."), AGE],
                             _service_account_cells),
    ("", "Node"): ([NAME, Column("Status", description="Ready, NotReady or Unknown, and cordoning."),
                    Column("Roles", description="Roles from node-role.kubernetes.io labels."), AGE,
                    Column("Version", description="The kubelet's version."),
                    Column("Internal-IP", priority=1, description="The node's internal address."),
                    Column("External-IP", priority=1, description="The node's external address."),
                    Column("OS-Image", priority=1, description="The operating system image."),
                    Column("Kernel-Version", priority=1, description="The kernel version."),
                    Column("Container-Runtime", priority=1, description="The container runtime version.")],
                   _node_cells),
    ("", "Event"): (EVENT_COLUMNS, event_cells),
}
