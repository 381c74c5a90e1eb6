"""Sidecar injection: the JSONPatch istiod's webhook returns for a pod.

The API server calls istiod's ``/inject`` webhook for pods in namespaces labelled
``istio-injection=enabled`` (or pods labelled ``sidecar.istio.io/inject: "true"``); istiod answers with a
patch that adds the ``istio-proxy`` container (image ``proxyv2``, ``proxy sidecar``) with the environment
the agent and Envoy need, and the labels and annotations Istio puts on injected pods
(``security.istio.io/tlsMode: istio``, ``sidecar.istio.io/status`` …). ``kubectl get pods`` then shows
2/2 containers, and ``kubectl describe`` the same sidecar a real cluster shows — without the
``istio-init`` container, since the embedded node has no iptables to program (DESIGN decision 5).

Instead, the patch declares what the node must do in place of iptables, in the annotation
``labkit.io/sidecar`` (the node knows no mesh; it reads only that): ``istio-proxy`` keeps the pod IP, the
apps move to an address of their own and use the sidecar's HTTP proxy listener (``proxyHttpPort``, 15080)
as ``http_proxy``, probes of the agent's ports (15020, 15021, 15090) go to the pod IP, and, with
``ISTIO_META_DNS_CAPTURE: "true"`` in the proxy's metadata (``meshConfig.defaultConfig.proxyMetadata`` or the pod's
``proxy.istio.io/config``), the pod's DNS goes to the agent's DNS proxy on ``<pod IP>:15053``.

A pod annotated ``inject.istio.io/templates: "sidecar,spire"`` also gets Istio's ``spire`` template: a
``csi.spiffe.io`` volume mounted on the proxy at ``/run/secrets/workload-spiffe-uds``, where SPIRE's agent serves
the pod its Workload API and SDS socket (see :mod:`labkit.emulator.spire.agent`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import yaml

from labkit.core.contract import PROXY_HTTP_PORT, SIDECAR_ANNOTATION
from labkit.core.wire import Obj
from labkit.emulator.envoy.dnsproxy import DNS_PROXY_PORT
from labkit.emulator.mesh.model import MeshConfig

DEFAULT_PROXY_IMAGE = "docker.io/istio/proxyv2:1.30.0"
STATUS_ANNOTATION = "sidecar.istio.io/status"
INJECT_ANNOTATION = "sidecar.istio.io/inject"
PROXY_CONFIG_ANNOTATION = "proxy.istio.io/config"
PROXY_CONTAINER = "istio-proxy"
# Istio's istio-token volume: what the agent presents to istiod (audience istio-ca, 12 h, refreshed by the kubelet).
TOKEN_VOLUME = "istio-token"
TOKEN_MOUNT = "/var/run/secrets/tokens"
TOKEN_AUDIENCE = "istio-ca"
TOKEN_SECONDS = 43200
# Istio's `spire` injection template (inject.istio.io/templates: "sidecar,spire"): the SPIFFE CSI driver mounts SPIRE
# agent's socket directory at Istio's SDS socket path, so the agent finds the socket served and leaves SDS to SPIRE.
TEMPLATES_ANNOTATION = "inject.istio.io/templates"
WORKLOAD_SOCKET_VOLUME = "workload-socket"
WORKLOAD_SOCKET_MOUNT = "/run/secrets/workload-spiffe-uds"
SPIFFE_CSI_DRIVER = "csi.spiffe.io"

# Istio's istiod-ca-cert volume: the mesh root istiod writes into every namespace, to verify istiod by.
ROOT_CERT_VOLUME = "istiod-ca-cert"
ROOT_CERT_MOUNT = "/var/run/secrets/istio"
ROOT_CERT_CONFIGMAP = "istio-ca-root-cert"


def proxy_volumes() -> list[Obj]:
    """The volumes Istio's templates give every proxy: its ``istio-ca`` token and the mesh root."""
    return [
        {"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": {
            "audience": TOKEN_AUDIENCE, "expirationSeconds": TOKEN_SECONDS, "path": TOKEN_VOLUME}}]}},
        {"name": ROOT_CERT_VOLUME, "configMap": {"name": ROOT_CERT_CONFIGMAP}},
    ]


def proxy_volume_mounts() -> list[Obj]:
    """Where the ``istio-proxy`` container mounts :func:`proxy_volumes`."""
    return [{"name": TOKEN_VOLUME, "mountPath": TOKEN_MOUNT}, {"name": ROOT_CERT_VOLUME, "mountPath": ROOT_CERT_MOUNT}]
# The agent's ports (status and app-probe rewrite, readiness, Prometheus): served on the pod IP, not the app's.
AGENT_PORTS = (15020, 15021, 15090)


def sidecar_declaration(proxy_metadata: Mapping[str, str] | None = None) -> str:
    """The ``labkit.io/sidecar`` annotation of an injected pod: what the node does in place of iptables.

    Args:
        proxy_metadata: the proxy's effective ``proxyMetadata``; with ``ISTIO_META_DNS_CAPTURE: "true"`` the
            pod's DNS goes to the agent's DNS proxy (``dnsPort``), where Istio's iptables rule would send it.
    """
    value: dict[str, Any] = {"container": PROXY_CONTAINER, "httpProxyPort": PROXY_HTTP_PORT,
                             "podIPPorts": list(AGENT_PORTS)}
    if str((proxy_metadata or {}).get("ISTIO_META_DNS_CAPTURE", "")).lower() == "true":
        value["dnsPort"] = DNS_PROXY_PORT
    return json.dumps(value, separators=(",", ":"))


def proxy_metadata(pod: Obj, mesh: MeshConfig) -> dict[str, str]:
    """The proxy's ``proxyMetadata``: ``meshConfig.defaultConfig``'s, overridden per pod by the annotation
    ``proxy.istio.io/config`` (a ProxyConfig in YAML or JSON), as Istio merges them.

    Args:
        pod: the pod being injected.
        mesh: the mesh config.
    """
    metadata = {k: str(v) for k, v in mesh.proxy_metadata.items()}
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(PROXY_CONFIG_ANNOTATION)
    if raw:
        try:
            config = yaml.safe_load(raw) or {}
        except yaml.YAMLError:
            config = {}  # Istio rejects the pod; here the mesh-wide settings apply
        if isinstance(config, dict):
            metadata.update({str(k): str(v) for k, v in (config.get("proxyMetadata") or {}).items()})
    return metadata


def wants_injection(pod: Obj) -> bool:
    """False when the pod opts out, is already injected, or uses the host network."""
    meta = pod.get("metadata") or {}
    annotations, labels = meta.get("annotations") or {}, meta.get("labels") or {}
    if str(annotations.get(INJECT_ANNOTATION, labels.get(INJECT_ANNOTATION, "true"))).lower() == "false":
        return False
    if STATUS_ANNOTATION in annotations:
        return False
    return not (pod.get("spec") or {}).get("hostNetwork")


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _field(name: str, path: str) -> Obj:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def sidecar_container(pod: Obj, *, cluster: str, network: str, mesh: MeshConfig, image: str) -> Obj:
    """The ``istio-proxy`` container for ``pod``."""
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    apps = [c.get("name", "") for c in spec.get("containers") or []]
    ports = [p for c in spec.get("containers") or [] for p in c.get("ports") or []]
    workload = _workload_name(meta)
    metadata = proxy_metadata(pod, mesh)
    env: list[Obj] = [
        {"name": "PILOT_CERT_PROVIDER", "value": "istiod"},
        {"name": "CA_ADDR", "value": "istiod.istio-system.svc:15012"},
        _field("POD_NAME", "metadata.name"),
        _field("POD_NAMESPACE", "metadata.namespace"),
        _field("INSTANCE_IP", "status.podIP"),
        _field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        _field("HOST_IP", "status.hostIP"),
        {"name": "ISTIO_CPU_LIMIT", "value": "0"},
        {"name": "PROXY_CONFIG", "value": json.dumps({"discoveryAddress": mesh.discovery_address,
                                                      "proxyHttpPort": PROXY_HTTP_PORT, "proxyMetadata": metadata},
                                                     separators=(",", ":"))},
        {"name": "ISTIO_META_POD_PORTS", "value": json.dumps(ports, separators=(",", ":"))},
        {"name": "ISTIO_META_APP_CONTAINERS", "value": ",".join(apps)},
        {"name": "ISTIO_META_CLUSTER_ID", "value": cluster},
        _field("ISTIO_META_NODE_NAME", "spec.nodeName"),
        {"name": "ISTIO_META_INTERCEPTION_MODE", "value": "NONE"},
        {"name": "ISTIO_META_WORKLOAD_NAME", "value": workload},
        {"name": "ISTIO_META_MESH_ID", "value": mesh.mesh_id or mesh.trust_domain},
        {"name": "TRUST_DOMAIN", "value": mesh.trust_domain},
    ]
    if network:
        env.append({"name": "ISTIO_META_NETWORK", "value": network})
    env += [{"name": key, "value": value} for key, value in sorted(metadata.items())]
    return {
        "name": PROXY_CONTAINER,
        "image": image,
        "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local", "--proxyLogLevel=warning",
                 "--proxyComponentLogLevel=misc:error", "--log_output_level=default:info"],
        "env": env,
        "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}, "initialDelaySeconds": 0,
                           "periodSeconds": 15, "timeoutSeconds": 3, "failureThreshold": 4},
        "startupProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}, "initialDelaySeconds": 0,
                         "periodSeconds": 1, "timeoutSeconds": 3, "failureThreshold": 600},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
        "volumeMounts": proxy_volume_mounts(),
        "imagePullPolicy": "IfNotPresent",
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }


def _workload_name(meta: Obj) -> str:
    """The workload a pod belongs to, as Istio names it: a ReplicaSet's Deployment, else the owner, else the pod."""
    owner = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
    if owner is None:
        return meta.get("name") or (meta.get("generateName") or "").rstrip("-")
    if owner.get("kind") == "ReplicaSet" and "-" in owner.get("name", ""):
        return owner["name"].rsplit("-", 1)[0]  # <deployment>-<pod-template-hash>
    return owner.get("name", "")


def sidecar_patch(pod: Obj, *, cluster: str, network: str, mesh: MeshConfig, values: Mapping[str, Any]) -> list[Obj]:
    """The JSONPatch (RFC 6902) that injects a sidecar into ``pod``; empty when it should not be injected."""
    if not wants_injection(pod):
        return []
    image = ((values.get("global") or {}).get("proxy") or {}).get("image") or DEFAULT_PROXY_IMAGE
    if "/" not in image:
        image = f"docker.io/istio/{image}:1.30.0"
    meta = pod.get("metadata") or {}
    labels = dict(meta.get("labels") or {})
    annotations = dict(meta.get("annotations") or {})
    apps = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []]
    new_labels = {
        "security.istio.io/tlsMode": "istio",
        "service.istio.io/canonical-name": labels.get("app.kubernetes.io/name", labels.get("app", meta.get(
            "generateName", "").rstrip("-"))),
        "service.istio.io/canonical-revision": labels.get("app.kubernetes.io/version", labels.get("version",
                                                                                                  "latest")),
    }
    if network:
        new_labels.setdefault("topology.istio.io/network", network)
    new_annotations = {
        STATUS_ANNOTATION: json.dumps({"initContainers": None, "containers": ["istio-proxy"],
                                       "volumes": [TOKEN_VOLUME, ROOT_CERT_VOLUME,
                                                   *([WORKLOAD_SOCKET_VOLUME] if "spire" in templates(pod) else [])],
                                       "imagePullSecrets": None, "revision": "default"}, separators=(",", ":")),
        "kubectl.kubernetes.io/default-container": apps[0] if apps else "istio-proxy",
        "istio.io/rev": "default",
        SIDECAR_ANNOTATION: sidecar_declaration(proxy_metadata(pod, mesh)),
    }
    ops: list[Obj] = []
    for member, current, additions in (("labels", labels, new_labels), ("annotations", annotations, new_annotations)):
        fresh = {k: v for k, v in additions.items() if k not in current}
        if not meta.get(member):
            ops.append({"op": "add", "path": f"/metadata/{member}", "value": {**current, **fresh}})
        else:
            ops += [{"op": "add", "path": f"/metadata/{member}/{_escape(k)}", "value": v} for k, v in fresh.items()]
    container = sidecar_container(pod, cluster=cluster, network=network, mesh=mesh, image=image)
    # What the agent presents to istiod and verifies it by (Istio's template): the istio-ca token and the root.
    volumes = proxy_volumes()
    if "spire" in templates(pod):
        container["volumeMounts"].append({"name": WORKLOAD_SOCKET_VOLUME, "mountPath": WORKLOAD_SOCKET_MOUNT,
                                          "readOnly": True})
        volumes.append({"name": WORKLOAD_SOCKET_VOLUME, "csi": {"driver": SPIFFE_CSI_DRIVER, "readOnly": True}})
    ops.append({"op": "add", "path": "/spec/containers/-", "value": container})
    if (pod.get("spec") or {}).get("volumes"):
        ops += [{"op": "add", "path": "/spec/volumes/-", "value": volume} for volume in volumes]
    else:
        ops.append({"op": "add", "path": "/spec/volumes", "value": volumes})
    return ops


def templates(pod: Obj) -> list[str]:
    """The injection templates a pod asks for (``inject.istio.io/templates``), Istio's default ``sidecar`` if none."""
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(TEMPLATES_ANNOTATION, "")
    return [name.strip() for name in value.split(",") if name.strip()] or ["sidecar"]
