"""Defaulting of built-in kinds, as a real API server applies it on create and update.

Clients read defaulted fields back and rely on them: ``kubectl rollout status`` compares
``spec.replicas``, ``kubectl get svc`` shows ``TYPE ClusterIP``, a Service's ``targetPort`` is what
the endpoints controller resolves, and a Deployment's pod-template-hash is computed over the
*defaulted* template (so an RS created by a controller and an RS applied by hand agree). The API
layer calls :func:`default_object` on every create and update of a built-in kind, before it stores
the object; the functions are pure and idempotent (defaulting a defaulted object changes nothing).

What is left to other parts: ``clusterIP``/``nodePort`` allocation (:mod:`.services`), the
ServiceAccount admission plugin's token volume, and ``status`` fields (written through ``/status``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from labkit.core.secret_data import fold_string_data
from labkit.core.wire import Obj

DEFAULT_SCHEDULER = "default-scheduler"
JOB_NAME_LABELS = ("job-name", "batch.kubernetes.io/job-name")
"""The labels naming a Job on its pods: the legacy one first, as the Job strategy writes both."""
CONTROLLER_UID_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")
"""The labels carrying a Job's uid on its pods; its generated selector matches the second."""


def default_object(obj: Obj) -> Obj:
    """A defaulted copy of ``obj`` (built-in kinds; others are returned as a copy unchanged).

    Args:
        obj: an object with ``apiVersion`` and ``kind``, as received by the API layer.
    """
    api_version = str(obj.get("apiVersion") or "")
    group = api_version.rpartition("/")[0]
    defaulter = _DEFAULTERS.get((group, str(obj.get("kind") or "")))
    result = copy.deepcopy(obj)
    if defaulter is not None:
        defaulter(result)
    return result


# --- workloads -----------------------------------------------------------------------------------


def default_deployment(obj: Obj) -> Obj:
    """Default an apps/v1 Deployment in place (and return it)."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    default_pod_template(spec.setdefault("template", {}))
    return obj


def default_replicaset(obj: Obj) -> Obj:
    """Default an apps/v1 ReplicaSet in place (and return it)."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    default_pod_template(spec.setdefault("template", {}))
    return obj


def default_stateful_set(obj: Obj) -> Obj:
    """Default an apps/v1 StatefulSet in place (and return it)."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strategy = spec.setdefault("updateStrategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {}).setdefault("partition", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
    default_pod_template(spec.setdefault("template", {}))
    return obj


def default_daemon_set(obj: Obj) -> Obj:
    """Default an apps/v1 DaemonSet in place (and return it)."""
    spec = obj.setdefault("spec", {})
    strategy = spec.setdefault("updateStrategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", 1)
        rolling.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    default_pod_template(spec.setdefault("template", {}))
    return obj


def default_job(obj: Obj) -> Obj:
    """Default a batch/v1 Job in place (and return it), and give it its generated selector.

    ``completions`` and ``parallelism`` both default to 1 when neither is set (a work queue sets only
    ``parallelism``). Unless ``manualSelector`` is true the Job selects its pods by its own uid, which the API server
    has assigned before admission: the template gets the ``job-name`` and ``controller-uid`` labels (both spellings),
    the selector matches ``batch.kubernetes.io/controller-uid`` (``generateSelector`` of the Job strategy).
    """
    spec = obj.setdefault("spec", {})
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    template = default_pod_template(spec.setdefault("template", {}))
    metadata = obj.get("metadata") or {}
    uid, name = metadata.get("uid"), metadata.get("name")
    if spec.get("manualSelector") is not True and uid and name:
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        for key in JOB_NAME_LABELS:
            labels.setdefault(key, name)
        for key in CONTROLLER_UID_LABELS:
            labels.setdefault(key, uid)
        selector = spec.get("selector") or {}
        selector.setdefault("matchLabels", {}).setdefault(CONTROLLER_UID_LABELS[1], uid)
        spec["selector"] = selector
    return obj


def default_cron_job(obj: Obj) -> Obj:
    """Default a batch/v1 CronJob in place (and return it)."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    job_spec = spec.setdefault("jobTemplate", {}).setdefault("spec", {})
    # A Job template is defaulted like a Job, but it has no uid yet: its selector is generated per Job.
    default_job({"spec": job_spec})
    return obj


def default_pod_template(template: Obj) -> Obj:
    """Default a PodTemplateSpec in place (and return it)."""
    default_pod_spec(template.setdefault("spec", {}))
    return template


def default_pod(obj: Obj) -> Obj:
    """Default a core/v1 Pod in place (and return it)."""
    default_pod_spec(obj.setdefault("spec", {}))
    return obj


def default_pod_spec(spec: Obj) -> Obj:
    """Default a PodSpec in place (and return it)."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", DEFAULT_SCHEDULER)
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    # The ServiceAccount admission plugin fills both spellings; `serviceAccount` is the deprecated one.
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = account
    spec["serviceAccount"] = account
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(key) or []:
            _default_container(container)
    for volume in spec.get("volumes") or []:
        _default_volume(volume)
    return spec


def image_pull_policy(image: str) -> str:
    """``Always`` for ``:latest`` or an untagged image, else ``IfNotPresent`` (digests count as tags).

    Args:
        image: a container image reference.
    """
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    return "Always" if not tag or tag == "latest" else "IfNotPresent"


def _default_container(container: Obj) -> None:
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("imagePullPolicy", image_pull_policy(str(container.get("image") or "")))
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for env in container.get("env") or []:
        field_ref = (env.get("valueFrom") or {}).get("fieldRef")
        if field_ref is not None:
            field_ref.setdefault("apiVersion", "v1")
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(probe_name)
        if probe is None:
            continue
        probe.setdefault("timeoutSeconds", 1)
        probe.setdefault("periodSeconds", 10)
        probe.setdefault("successThreshold", 1)
        probe.setdefault("failureThreshold", 3)
        if "httpGet" in probe:
            probe["httpGet"].setdefault("scheme", "HTTP")


def _default_volume(volume: Obj) -> None:
    for source in ("secret", "configMap", "projected", "downwardAPI"):
        if source in volume:
            volume[source].setdefault("defaultMode", 420)
    if "emptyDir" in volume and volume["emptyDir"] is None:
        volume["emptyDir"] = {}


# --- services and configuration ------------------------------------------------------------------


def default_service(obj: Obj) -> Obj:
    """Default a core/v1 Service in place (and return it); ``clusterIP`` is allocated elsewhere."""
    spec = obj.setdefault("spec", {})
    service_type = spec.setdefault("type", "ClusterIP")
    if service_type == "ExternalName":
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
        return obj
    spec.setdefault("sessionAffinity", "None")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    spec.setdefault("internalTrafficPolicy", "Cluster")
    if service_type in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if service_type == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    return obj


def default_secret(obj: Obj) -> Obj:
    """Default a core/v1 Secret in place (and return it): type ``Opaque``, ``stringData`` into ``data``.

    ``stringData`` is write-only on a real server: it is merged into ``data`` (winning over the same
    key there) and never stored.
    """
    obj.setdefault("type", "Opaque")
    return fold_string_data(obj)


def default_namespace(obj: Obj) -> Obj:
    """Default a core/v1 Namespace in place (and return it).

    ``spec.finalizers: [kubernetes]`` makes deletion wait for the namespace controller; the
    ``kubernetes.io/metadata.name`` label lets NetworkPolicies select namespaces by name.
    """
    spec = obj.setdefault("spec", {})
    spec.setdefault("finalizers", ["kubernetes"])
    metadata = obj.setdefault("metadata", {})
    name = metadata.get("name")
    if name:
        metadata.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    return obj


_DEFAULTERS: dict[tuple[str, str], Callable[[Obj], Obj]] = {
    ("apps", "Deployment"): default_deployment,
    ("apps", "ReplicaSet"): default_replicaset,
    ("apps", "StatefulSet"): default_stateful_set,
    ("apps", "DaemonSet"): default_daemon_set,
    ("batch", "Job"): default_job,
    ("batch", "CronJob"): default_cron_job,
    ("", "Pod"): default_pod,
    ("", "Service"): default_service,
    ("", "Secret"): default_secret,
    ("", "Namespace"): default_namespace,
}
