"""Admission, validation stage: refuse what a real API server refuses, naming the field.

A learner who forgets a container image or whose Deployment selector does not match its template
should read the same ``… is invalid: spec.template.metadata.labels: Invalid value …`` a real cluster
prints, at ``kubectl apply`` time, not discover later that nothing runs. Only the checks the labs can
trip over are here; everything else is accepted as a real server would accept it.

:func:`validate_name` runs first of all, while the request is decoded (a bad name is refused before the
namespace is even looked up); :func:`validate` runs after defaulting and the mutating webhooks.
"""

from __future__ import annotations

from croniter import croniter

from labkit.core.names import name_errors, name_rule
from labkit.core.selectors import label_selector_from_dict
from labkit.core.wire import Obj
from labkit.emulator.api.resources import ResourceType
from labkit.emulator.apimachinery import status

_PROTOCOLS = ("TCP", "UDP", "SCTP")
_SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")


def validate_name(rt: ResourceType, obj: Obj) -> None:
    """Raise a 422 ``Invalid`` for a ``metadata.name`` the resource's naming rule refuses, or return.

    Args:
        rt: the resource type (Services and Namespaces need DNS labels, the rest RFC 1123 subdomains).
        obj: the object, as checked against the URL.
    """
    name = obj["metadata"].get("name") or ""
    if not name:
        return  # generateName or missing: the store reports it
    errors = name_errors(name, name_rule(rt.group, rt.plural))
    if errors:
        raise status.invalid(rt.kind, name, [("metadata.name", f'Invalid value: "{name}": {error}')
                                             for error in errors], rt.group)


def validate(group: str, kind: str, obj: Obj) -> None:
    """Raise a 422 ``Invalid`` naming every bad field of a built-in object, or return."""
    causes: list[tuple[str, str]] = []
    spec = obj.get("spec") or {}
    if (group, kind) == ("", "Pod"):
        causes += _pod_spec(spec, "spec")
    elif (group, kind) in (("apps", "Deployment"), ("apps", "ReplicaSet"), ("apps", "DaemonSet")):
        causes += _workload(spec)
    elif (group, kind) == ("apps", "StatefulSet"):
        # Its containers mount its volumeClaimTemplates too, which its pods get: a real server leaves the
        # template's mounts to the pods' own validation.
        causes += _workload(spec, mounts=False)
    elif (group, kind) == ("batch", "Job"):
        causes += _job(spec)
    elif (group, kind) == ("batch", "CronJob"):
        causes += _cron_job(spec)
    elif (group, kind) == ("", "Service"):
        causes += _service(spec)
    if causes:
        raise status.invalid(kind, (obj.get("metadata") or {}).get("name", ""), causes, group)


def _pod_spec(spec: Obj, path: str, *, mounts: bool = True) -> list[tuple[str, str]]:
    causes = []
    containers = spec.get("containers") or []
    if not containers:
        causes.append((f"{path}.containers", "Required value"))
    seen: set[str] = set()
    for i, container in enumerate(containers):
        where = f"{path}.containers[{i}]"
        name = container.get("name")
        if not name:
            causes.append((f"{where}.name", "Required value"))
        elif name in seen:
            causes.append((f"{where}.name", f'Duplicate value: "{name}"'))
        seen.add(name or "")
        if not container.get("image"):
            causes.append((f"{where}.image", "Required value"))
        for j, port in enumerate(container.get("ports") or []):
            number = port.get("containerPort")
            if not isinstance(number, int) or not 1 <= number <= 65535:
                causes.append((f"{where}.ports[{j}].containerPort",
                               f"Invalid value: {number!r}: must be between 1 and 65535, inclusive"))
    volumes = {volume.get("name") for volume in spec.get("volumes") or [] if isinstance(volume, dict)}
    for field in ("initContainers", "containers") if mounts else ():
        for i, container in enumerate(spec.get(field) or []):
            if isinstance(container, dict) and isinstance(container.get("volumeMounts") or [], list):
                causes += _volume_mounts(container.get("volumeMounts") or [], volumes,
                                         f"{path}.{field}[{i}].volumeMounts")
    return causes


def _volume_mounts(mounts: list[Obj], volumes: set[str | None], path: str) -> list[tuple[str, str]]:
    """A container's ``volumeMounts``: each names a volume of the pod, at a path of its own, and a ``subPath``
    stays inside its volume. (A real server names the ``subPath`` field without the mount's index.)"""
    causes = []
    seen: set[str] = set()
    for i, mount in enumerate(mounts):
        if not isinstance(mount, dict):
            continue  # the field types are checked when the body is decoded
        where = f"{path}[{i}]"
        name, mount_path = str(mount.get("name") or ""), str(mount.get("mountPath") or "")
        if not name:
            causes.append((f"{where}.name", "Required value"))
        if name not in volumes:
            causes.append((f"{where}.name", f'Not found: "{name}"'))
        if not mount_path:
            causes.append((f"{where}.mountPath", "Required value"))
        if mount_path in seen:
            causes.append((f"{where}.mountPath", f'Invalid value: "{mount_path}": must be unique'))
        seen.add(mount_path)
        sub_path, expression = str(mount.get("subPath") or ""), str(mount.get("subPathExpr") or "")
        if sub_path:
            causes += _descending(sub_path, f"{path}.subPath")
        if expression:
            if sub_path:
                causes.append((f"{where}.subPathExpr",
                               f'Invalid value: "{expression}": subPathExpr and subPath are mutually exclusive'))
            causes += _descending(expression, f"{path}.subPathExpr")
    return causes


def _descending(value: str, path: str) -> list[tuple[str, str]]:
    causes = []
    if value.startswith("/"):
        causes.append((path, f'Invalid value: "{value}": must be a relative path'))
    if ".." in value.split("/"):
        causes.append((path, f"Invalid value: \"{value}\": must not contain '..'"))
    return causes


def _workload(spec: Obj, *, mounts: bool = True) -> list[tuple[str, str]]:
    causes = []
    selector = spec.get("selector")
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not selector:
        causes.append(("spec.selector", "Required value"))
    elif not label_selector_from_dict(selector).matches(labels):
        shown = ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "(none)"
        causes.append(("spec.template.metadata.labels",
                       f"Invalid value: map[{shown}]: `selector` does not match template `labels`"))
    replicas = spec.get("replicas")
    if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
        causes.append(("spec.replicas", f"Invalid value: {replicas!r}: must be greater than or equal to 0"))
    causes += _pod_spec(template.get("spec") or {}, "spec.template.spec", mounts=mounts)
    return causes


def _job(spec: Obj) -> list[tuple[str, str]]:
    causes = _workload({key: value for key, value in spec.items() if key != "replicas"})
    policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
    if policy not in ("OnFailure", "Never"):
        causes.append(("spec.template.spec.restartPolicy",
                       f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"'))
    if spec.get("completionMode") == "Indexed" and spec.get("completions") is None:
        causes.append(("spec.completions", "Required value: when completion mode is Indexed"))
    for field in ("parallelism", "completions", "backoffLimit"):
        value = spec.get(field)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            causes.append((f"spec.{field}", f"Invalid value: {value!r}: must be greater than or equal to 0"))
    return causes


def _cron_job(spec: Obj) -> list[tuple[str, str]]:
    causes = []
    schedule = spec.get("schedule")
    if not schedule:
        causes.append(("spec.schedule", "Required value"))
    elif "TZ=" in str(schedule):
        causes.append(("spec.schedule", f'Invalid value: "{schedule}": cannot use TZ or CRON_TZ in schedule, use '
                                        f'timeZone field instead'))
    elif not croniter.is_valid(str(schedule)):
        causes.append(("spec.schedule", f'Invalid value: "{schedule}": unparseable cron schedule'))
    job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    policy = ((job_spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
    if policy not in ("OnFailure", "Never"):
        causes.append(("spec.jobTemplate.spec.template.spec.restartPolicy",
                       f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"'))
    template_spec = (job_spec.get("template") or {}).get("spec") or {}
    causes += [(f"spec.jobTemplate.{field}", message) for field, message in _pod_spec(template_spec,
                                                                                       "spec.template.spec")]
    return causes


def _service(spec: Obj) -> list[tuple[str, str]]:
    causes = []
    kind = spec.get("type", "ClusterIP")
    if kind not in _SERVICE_TYPES:
        causes.append(("spec.type", f'Unsupported value: "{kind}": supported values: "ClusterIP", '
                                    f'"ExternalName", "LoadBalancer", "NodePort"'))
    ports = spec.get("ports") or []
    if not ports and kind != "ExternalName" and spec.get("clusterIP") != "None":
        causes.append(("spec.ports", "Required value"))
    names = [p.get("name") for p in ports]
    for i, port in enumerate(ports):
        number = port.get("port")
        if not isinstance(number, int) or not 1 <= number <= 65535:
            causes.append((f"spec.ports[{i}].port", f"Invalid value: {number!r}: must be between 1 and 65535, "
                                                    f"inclusive"))
        target = port.get("targetPort")
        if isinstance(target, int) and not isinstance(target, bool) and not 1 <= target <= 65535:
            causes.append((f"spec.ports[{i}].targetPort", f"Invalid value: {target}: must be between 1 and 65535, "
                                                          f"inclusive"))
        if len(ports) > 1 and not port.get("name"):
            causes.append((f"spec.ports[{i}].name", "Required value"))
        elif port.get("name") and names.count(port.get("name")) > 1:
            causes.append((f"spec.ports[{i}].name", f'Duplicate value: "{port.get("name")}"'))
        protocol = port.get("protocol", "TCP")
        if protocol not in _PROTOCOLS:
            causes.append((f"spec.ports[{i}].protocol", f'Unsupported value: "{protocol}": supported values: '
                                                        f'"SCTP", "TCP", "UDP"'))
    return causes
