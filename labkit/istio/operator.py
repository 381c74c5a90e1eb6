"""Reading an IstioOperator the way the labs write them, and refusing what embedded clusters cannot do.

On a real cluster ``istioctl install -f`` reads the file; on an embedded one labkit renders what istioctl
would apply (see :mod:`labkit.istio.rendering`). That rendering covers the fields the labs use: the
control plane's mesh values (``meshID``, ``multiCluster.clusterName``, ``network``), ``meshConfig``,
istiod's env, the ingress and east-west gateways, the ``remote`` profile. Anything else would be
silently dropped by a renderer that does not know it, and a learner would debug a mesh that does not
match their file; so every field outside that set is reported by its path, all of them at once, with
a hint when it looks like a typo of a supported one.

A component switched off (``cni: {enabled: false}``) is not a problem whatever it contains: it
installs nothing on a real cluster either.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from labkit.core.wire import Obj
from labkit.errors import ManifestError

DEFAULT_HUB = "docker.io/istio"
DEFAULT_TAG = "1.30.0"
ISTIO_NAMESPACE = "istio-system"
DEFAULT_CLUSTER = "Kubernetes"  # istiod's CLUSTER_ID when clusterName is not set
PROFILES = ("default", "minimal", "empty", "remote")
INGRESS_LABELS = {"app": "istio-ingressgateway", "istio": "ingressgateway"}
INGRESS_PORTS = (
    {"name": "status-port", "port": 15021, "targetPort": 15021, "protocol": "TCP"},
    {"name": "http2", "port": 80, "targetPort": 8080, "protocol": "TCP"},
    {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"},
)

# What the embedded renderer understands. ``True``: a scalar it uses; ``ANY``: a subtree passed on as
# is (meshConfig goes to istiod verbatim); a dict: these keys only; a one-element list: a list of those.
ANY = "any"
_K8S_GATEWAY = {
    "env": ANY,
    "service": {"type": True, "ports": ANY, "loadBalancerIP": True, "loadBalancerClass": True, "externalIPs": ANY,
                "externalTrafficPolicy": True},
    "serviceAnnotations": ANY,
    "podAnnotations": ANY,
    "replicaCount": True,
    "resources": ANY,
}
_GATEWAY = {"name": True, "namespace": True, "enabled": True, "label": ANY, "k8s": _K8S_GATEWAY}
SCHEMA: Obj = {
    "profile": True,
    "hub": True,
    "tag": True,
    "namespace": True,
    "revision": True,
    "meshConfig": ANY,
    "components": {
        "base": {"enabled": True},
        "pilot": {"enabled": True, "k8s": {"env": ANY, "replicaCount": True, "resources": ANY,
                                           "podAnnotations": ANY}},
        "ingressGateways": [_GATEWAY],
        "egressGateways": [{"name": True, "enabled": True}],
        "istiodRemote": {"enabled": True},
    },
    "values": {
        "global": {
            "meshID": True, "network": True, "multiCluster": {"clusterName": True, "enabled": True},
            "externalIstiod": True, "remotePilotAddress": True, "istioNamespace": True, "hub": True, "tag": True,
            "imagePullPolicy": True, "logging": ANY, "proxy": ANY, "meshNetworks": ANY, "configCluster": True,
        },
        "pilot": {"env": ANY, "replicaCount": True, "autoscaleEnabled": True, "resources": ANY,
                  "enabled": True},
        "istiodRemote": {"injectionPath": True, "injectionURL": True, "enabled": True},
        "sidecarInjectorWebhook": ANY,
        "gateways": {"istio-ingressgateway": {"injectionTemplate": True}},
        "base": {"enableIstioConfigCRDs": True},
    },
}


@dataclass(frozen=True)
class GatewaySpec:
    """One ingress-type gateway to render (the ingress gateway, the east-west gateway …).

    Args:
        name: Deployment and Service name, e.g. ``istio-eastwestgateway``.
        namespace: where it runs.
        labels: the ``label`` map (also the Service and Deployment selector).
        env: extra container env (``k8s.env``), as Kubernetes env entries.
        ports: Service ports.
        service_type: ``LoadBalancer`` unless overridden.
        load_balancer_ip: the requested static address, if any.
        external_ips: ``spec.externalIPs`` of the Service.
        load_balancer_class: ``spec.loadBalancerClass``: which load-balancer controller must serve it (none: the
            cluster's default one).
        annotations: Service annotations.
        pod_annotations: pod template annotations.
        replicas: replica count.
    """

    name: str
    namespace: str
    labels: Mapping[str, str]
    env: tuple[Obj, ...] = ()
    ports: tuple[Obj, ...] = INGRESS_PORTS
    service_type: str = "LoadBalancer"
    load_balancer_ip: str = ""
    external_ips: tuple[str, ...] = ()
    load_balancer_class: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    replicas: int = 1


@dataclass(frozen=True)
class InstallSettings:
    """What an IstioOperator asks for, resolved against its profile.

    Args:
        name: the IstioOperator's name.
        profile: ``default``, ``minimal``, ``empty`` or ``remote``.
        hub: image registry, e.g. ``docker.io/istio``.
        tag: image tag.
        namespace: the control-plane namespace.
        mesh_id: ``values.global.meshID``.
        cluster_name: ``values.global.multiCluster.clusterName`` (istiod's CLUSTER_ID).
        network: ``values.global.network``.
        mesh_config: ``spec.meshConfig`` as written.
        mesh_networks: ``values.global.meshNetworks``.
        values: ``spec.values`` as written.
        base: whether the CRDs are installed.
        pilot: whether istiod is installed.
        remote: whether this is a remote (``istiodRemote``) install.
        external_istiod: ``values.global.externalIstiod``.
        remote_pilot_address: ``values.global.remotePilotAddress``.
        injection_path: the injector webhook path.
        pilot_env: istiod env (``values.pilot.env`` then ``components.pilot.k8s.env``).
        pilot_replicas: istiod replicas.
        gateways: the gateways to render.
    """

    name: str
    profile: str
    hub: str
    tag: str
    namespace: str
    mesh_id: str
    cluster_name: str
    network: str
    mesh_config: Obj
    mesh_networks: Obj
    values: Obj
    base: bool
    pilot: bool
    remote: bool
    external_istiod: bool
    remote_pilot_address: str
    injection_path: str
    pilot_env: tuple[tuple[str, str], ...]
    pilot_replicas: int
    gateways: tuple[GatewaySpec, ...]

    @property
    def trust_domain(self) -> str:
        """``meshConfig.trustDomain`` (``cluster.local`` by default)."""
        return str(self.mesh_config.get("trustDomain") or "cluster.local")

    @property
    def components(self) -> tuple[str, ...]:
        """The istioctl component names this install renders, in install order."""
        names = []
        if self.base:
            names.append("Base")
        if self.pilot:
            names.append("Pilot")
        if self.remote:
            names.append("IstiodRemote")
        if self.gateways:
            names.append("IngressGateways")
        return tuple(names)

    def image(self, name: str) -> str:
        """``<hub>/<name>:<tag>``."""
        return f"{self.hub}/{name}:{self.tag}"


def unsupported_fields(operator: Obj) -> list[str]:
    """Every field of an IstioOperator the embedded renderer does not implement, as one line each.

    Args:
        operator: the IstioOperator object.
    """
    spec = operator.get("spec") or {}
    problems: list[str] = []
    _walk(spec, SCHEMA, "IstioOperator.spec", problems)
    profile = spec.get("profile", "default")
    if profile not in PROFILES:
        problems.append(f'IstioOperator.spec.profile: "{profile}" is not supported on embedded clusters; use one of '
                        f"{', '.join(PROFILES)}, or use a real cluster")
    revision = spec.get("revision") or ""
    if revision not in ("", "default"):
        problems.append(f'IstioOperator.spec.revision: "{revision}" is not supported on embedded clusters (one '
                        f"control plane per cluster); remove it or use a real cluster")
    for i, gateway in enumerate((spec.get("components") or {}).get("egressGateways") or []):
        if isinstance(gateway, dict) and gateway.get("enabled"):
            problems.append(f"IstioOperator.spec.components.egressGateways[{i}]: egress gateways are not supported "
                            f"on embedded clusters; remove it or use a real cluster")
    return problems


def _walk(value: Any, schema: Any, path: str, problems: list[str]) -> None:
    if schema is True or schema == ANY:
        return
    if isinstance(schema, list):
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list")
            return
        for i, item in enumerate(value):
            _walk(item, schema[0], f"{path}[{i}]", problems)
        return
    if not isinstance(value, dict):
        problems.append(f"{path}: expected an object")
        return
    if value.get("enabled") is False:
        return
    for key, child in value.items():
        if key in schema:
            _walk(child, schema[key], f"{path}.{key}", problems)
            continue
        if isinstance(child, dict) and child.get("enabled") is False:
            continue
        close = difflib.get_close_matches(key, list(schema), n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else ""
        problems.append(f"{path}.{key}: not supported on embedded clusters{hint}; remove it or use a real cluster")


def check_operator(operator: Obj, origin: str = "IstioOperator") -> None:
    """Raise :class:`~labkit.errors.ManifestError` listing every problem of an IstioOperator for embedded clusters.

    Args:
        operator: the IstioOperator object.
        origin: where it came from, for the message.
    """
    api_version = str(operator.get("apiVersion", ""))
    if operator.get("kind") != "IstioOperator" or not api_version.startswith("install.istio.io/"):
        raise ManifestError(f"{origin}: expected kind IstioOperator (apiVersion install.istio.io/v1alpha1), got "
                            f"{operator.get('kind')!r} ({operator.get('apiVersion')!r})")
    problems = unsupported_fields(operator)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ManifestError(f"{origin}: {len(problems)} field(s) cannot be installed on an embedded cluster:\n{lines}",
                            problems)


def settings_of(operator: Obj) -> InstallSettings:
    """Resolve an IstioOperator (already checked) against its profile.

    Args:
        operator: the IstioOperator object.
    """
    spec = operator.get("spec") or {}
    values = spec.get("values") or {}
    glob = values.get("global") or {}
    components = spec.get("components") or {}
    profile = spec.get("profile") or "default"
    namespace = spec.get("namespace") or glob.get("istioNamespace") or ISTIO_NAMESPACE
    hub = spec.get("hub") or glob.get("hub") or DEFAULT_HUB
    tag = str(spec.get("tag") or glob.get("tag") or DEFAULT_TAG)
    network = str(glob.get("network") or "")
    cluster_name = str((glob.get("multiCluster") or {}).get("clusterName") or DEFAULT_CLUSTER)
    remote = profile == "remote" or _enabled(components.get("istiodRemote"), False)
    base = _enabled(components.get("base"), profile != "empty")
    pilot = _enabled(components.get("pilot"), profile in ("default", "minimal"))
    pilot_k8s = (components.get("pilot") or {}).get("k8s") or {}
    env = [(str(k), str(v)) for k, v in ((values.get("pilot") or {}).get("env") or {}).items()]
    env += [(str(e["name"]), str(e.get("value", ""))) for e in pilot_k8s.get("env") or []]
    replicas = int(pilot_k8s.get("replicaCount") or (values.get("pilot") or {}).get("replicaCount") or 1)
    injection_path = (values.get("istiodRemote") or {}).get("injectionPath") or \
        f"/inject/cluster/{cluster_name}/net/{network}"
    return InstallSettings(
        name=str((operator.get("metadata") or {}).get("name") or "installed-state"),
        profile=profile, hub=hub, tag=tag, namespace=namespace, mesh_id=str(glob.get("meshID") or ""),
        cluster_name=cluster_name, network=network, mesh_config=dict(spec.get("meshConfig") or {}),
        mesh_networks=dict(glob.get("meshNetworks") or {}), values=dict(values), base=base, pilot=pilot,
        remote=remote, external_istiod=bool(glob.get("externalIstiod")),
        remote_pilot_address=str(glob.get("remotePilotAddress") or ""), injection_path=injection_path,
        pilot_env=tuple(env), pilot_replicas=replicas,
        gateways=_gateways(components, profile, namespace, network))


def _enabled(component: Any, default: bool) -> bool:
    if isinstance(component, dict) and "enabled" in component:
        return bool(component["enabled"])
    return default


def _gateways(components: Obj, profile: str, namespace: str, network: str) -> tuple[GatewaySpec, ...]:
    listed = [g for g in components.get("ingressGateways") or [] if isinstance(g, dict)]
    if profile == "default" and not any(g.get("name", "istio-ingressgateway") == "istio-ingressgateway"
                                        for g in listed):
        listed.insert(0, {"name": "istio-ingressgateway", "enabled": True})
    gateways = []
    for entry in listed:
        if not entry.get("enabled", profile == "default" and entry.get("name") == "istio-ingressgateway"):
            continue
        name = entry.get("name") or "istio-ingressgateway"
        k8s = entry.get("k8s") or {}
        service = k8s.get("service") or {}
        labels = {**INGRESS_LABELS, **{str(k): str(v) for k, v in (entry.get("label") or {}).items()}}
        ports = tuple({"protocol": "TCP", **p, "targetPort": p.get("targetPort", p["port"])}
                      for p in service.get("ports") or INGRESS_PORTS)
        gateways.append(GatewaySpec(
            name=name, namespace=entry.get("namespace") or namespace, labels=labels,
            env=tuple(k8s.get("env") or ()), ports=ports, service_type=service.get("type") or "LoadBalancer",
            load_balancer_ip=str(service.get("loadBalancerIP") or ""),
            external_ips=tuple(service.get("externalIPs") or ()),
            load_balancer_class=str(service.get("loadBalancerClass") or ""),
            annotations=dict(k8s.get("serviceAnnotations") or {}),
            pod_annotations=dict(k8s.get("podAnnotations") or {}), replicas=int(k8s.get("replicaCount") or 1)))
    return tuple(gateways)
