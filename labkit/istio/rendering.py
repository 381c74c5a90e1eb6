"""What ``istioctl install`` would apply, rendered for an embedded cluster: pure functions, plain dicts.

The names, labels, ports and env follow Istio's charts (``base``, ``istio-discovery``, ``gateway``), so
``kubectl get`` on an embedded cluster shows what it shows on a real one and the emulated istiod and
gateways find what they look for: the ``istio`` mesh ConfigMap, the ``istio-sidecar-injector`` values,
the ``topology.istio.io/network`` labels, ``CLUSTER_ID`` and ``ISTIO_META_NETWORK``; and the API server
calls istiod's injection and validation webhooks as on a real cluster. Images are the
ones the embedded node knows (``<hub>/pilot:<tag>``, ``<hub>/proxyv2:<tag>``).

What is left out is what has no effect without a container runtime (init containers, security contexts,
HPAs, PDBs); gateways keep the two volumes their agent uses (the ``istio-ca`` token and the mesh root); the
CRDs carry no schema (``x-kubernetes-preserve-unknown-fields``): validation of Istio resources is istiod's
``validation.istio.io`` webhook's job here, which refuses what the structural schemas of Istio's CRDs and its
own rules would.

Everything is rendered the same way every time (no timestamps, no random names), so a second install
is a no-op apply.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import yaml

from labkit.core.contract import PROXY_HTTP_PORT
from labkit.core.wire import Obj
from labkit.errors import ManifestError
from labkit.istio.operator import GatewaySpec, InstallSettings

REVISION = "default"

# group, kind, plural, singular, short names, versions (first is the storage version), namespaced, extra columns.
_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
_NETWORKING = ("v1", "v1beta1", "v1alpha3")
_SECURITY = ("v1", "v1beta1")
CRDS: tuple[tuple[str, str, str, str, tuple[str, ...], tuple[str, ...], bool, tuple[Obj, ...]], ...] = (
    ("networking.istio.io", "VirtualService", "virtualservices", "virtualservice", ("vs",), _NETWORKING, True, (
        {"name": "Gateways", "type": "string", "jsonPath": ".spec.gateways",
         "description": "The names of gateways and sidecars that should apply these routes"},
        {"name": "Hosts", "type": "string", "jsonPath": ".spec.hosts",
         "description": "The destination hosts to which traffic is being sent"})),
    ("networking.istio.io", "DestinationRule", "destinationrules", "destinationrule", ("dr",), _NETWORKING, True, (
        {"name": "Host", "type": "string", "jsonPath": ".spec.host",
         "description": "The name of a service from the service registry"},)),
    ("networking.istio.io", "Gateway", "gateways", "gateway", ("gw",), _NETWORKING, True, ()),
    ("networking.istio.io", "ServiceEntry", "serviceentries", "serviceentry", ("se",), _NETWORKING, True, (
        {"name": "Hosts", "type": "string", "jsonPath": ".spec.hosts",
         "description": "The hosts associated with the ServiceEntry"},
        {"name": "Location", "type": "string", "jsonPath": ".spec.location",
         "description": "Whether the service is external to the mesh or part of the mesh (MESH_EXTERNAL or "
                        "MESH_INTERNAL)"},
        {"name": "Resolution", "type": "string", "jsonPath": ".spec.resolution",
         "description": "Service resolution mode for the hosts (NONE, STATIC, or DNS)"})),
    ("networking.istio.io", "Sidecar", "sidecars", "sidecar", (), _NETWORKING, True, ()),
    ("networking.istio.io", "WorkloadEntry", "workloadentries", "workloadentry", ("we",), _NETWORKING, True, (
        {"name": "Address", "type": "string", "jsonPath": ".spec.address",
         "description": "Address associated with the network endpoint."},)),
    ("networking.istio.io", "WorkloadGroup", "workloadgroups", "workloadgroup", ("wg",), _NETWORKING, True, ()),
    ("networking.istio.io", "EnvoyFilter", "envoyfilters", "envoyfilter", (), ("v1alpha3",), True, ()),
    ("security.istio.io", "PeerAuthentication", "peerauthentications", "peerauthentication", ("pa",), _SECURITY,
     True, ({"name": "Mode", "type": "string", "jsonPath": ".spec.mtls.mode",
             "description": "Defines the mTLS mode used for peer authentication."},)),
    ("security.istio.io", "AuthorizationPolicy", "authorizationpolicies", "authorizationpolicy", ("ap",), _SECURITY,
     True, ({"name": "Action", "type": "string", "jsonPath": ".spec.action",
             "description": "The operation to take."},)),
    ("security.istio.io", "RequestAuthentication", "requestauthentications", "requestauthentication", ("ra",),
     _SECURITY, True, ()),
    ("telemetry.istio.io", "Telemetry", "telemetries", "telemetry", ("telemetry",), ("v1", "v1alpha1"), True, ()),
    ("install.istio.io", "IstioOperator", "istiooperators", "istiooperator", ("iop", "io"), ("v1alpha1",), True, (
        {"name": "Revision", "type": "string", "jsonPath": ".spec.revision",
         "description": "Istio control plane revision"},
        {"name": "Status", "type": "string", "jsonPath": ".status.status", "description": "IOP current state"})),
)

# The reader role of ``istioctl create-remote-secret`` (istio.md "Remote secrets"): it can read every Secret of the
# cluster it is created in, the credential-sharing drawback seed 001 names.
READER_ACCOUNT = "istio-reader-service-account"
_READ = ["get", "list", "watch"]
ISTIO_CONFIG_GROUPS = ["config.istio.io", "security.istio.io", "networking.istio.io", "authentication.istio.io",
                       "rbac.istio.io", "telemetry.istio.io", "extensions.istio.io"]
READER_RULES: tuple[Obj, ...] = (
    {"apiGroups": ISTIO_CONFIG_GROUPS, "resources": ["*"], "verbs": _READ},
    {"apiGroups": [""], "resources": ["endpoints", "pods", "services", "nodes", "replicationcontrollers", "namespaces",
                                      "secrets", "configmaps"], "verbs": _READ},
    {"apiGroups": ["networking.istio.io"], "resources": ["workloadentries"], "verbs": _READ},
    {"apiGroups": ["networking.x-k8s.io", "gateway.networking.k8s.io"], "resources": ["gateways"], "verbs": _READ},
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": _READ},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": _READ},
    {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": _READ},
    {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
    {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
)

# What the remote profile adds to the reader role: the primary's istiod (``externalIstiod``) writes the
# ``istio-ca-root-cert`` ConfigMaps of the remote's namespaces and patches its webhooks' caBundle.
EXTERNAL_ISTIOD_READER_RULES: tuple[Obj, ...] = (
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "list", "watch", "update"]},
    {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations"],
     "verbs": ["get", "list", "watch", "update", "patch"]},
    {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"],
     "verbs": ["get", "list", "watch", "update"]},
)

_ISTIOD_RULES: tuple[Obj, ...] = (
    # Read everything istiod reads: Istio config, workloads and their endpoints, and Secrets (credentialName,
    # remote secrets, cacerts).
    {"apiGroups": ISTIO_CONFIG_GROUPS, "resources": ["*"], "verbs": _READ},
    {"apiGroups": ["networking.istio.io", "security.istio.io", "telemetry.istio.io"],
     "resources": ["*/status"], "verbs": ["get", "update", "patch"]},
    {"apiGroups": ["networking.istio.io"], "resources": ["workloadentries", "workloadentries/status"],
     "verbs": ["get", "watch", "list", "update", "patch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["pods", "nodes", "services", "endpoints", "namespaces", "secrets", "configmaps",
                                      "serviceaccounts", "replicationcontrollers"], "verbs": _READ},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": _READ},
    {"apiGroups": ["apps"], "resources": ["replicasets", "deployments"], "verbs": _READ},
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": _READ},
    {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["*"], "verbs": _READ},
    {"apiGroups": ["admissionregistration.k8s.io"],
     "resources": ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"],
     "verbs": ["get", "list", "watch", "update", "patch"]},
    {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
    {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
    {"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"], "verbs": _READ},
)
_ISTIOD_NAMESPACE_RULES: tuple[Obj, ...] = (
    # A dry-run create of a known-bad Gateway proves the validating webhook refuses it before istiod makes it
    # fail-closed (nothing is stored).
    {"apiGroups": ["networking.istio.io"], "resources": ["gateways"], "verbs": ["create"]},
    # Its own namespace: the CA secret, the root-cert ConfigMaps it writes everywhere, leader-election leases.
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "list", "watch", "update", "patch",
                                                               "delete"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "get", "watch", "list", "update", "delete"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "update", "patch", "create"]},
)
_ROOT_CERT_RULES: tuple[Obj, ...] = (
    # istiod writes the istio-ca-root-cert ConfigMap into every namespace.
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "update", "patch", "get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
)


@dataclass(frozen=True)
class RenderedInstall:
    """The objects of one install, in the groups istioctl reports them in.

    Args:
        core: CRDs, namespace, accounts, RBAC, ConfigMaps, the CA secret (``✔ Istio core installed``).
        istiod: istiod's Deployment and Service, or the remote ``istiod`` Service and Endpoints, and the
            injector webhook (``✔ Istiod installed``).
        gateways: gateway accounts, Deployments and Services (``✔ Ingress gateways installed``).
    """

    core: tuple[Obj, ...]
    istiod: tuple[Obj, ...]
    gateways: tuple[Obj, ...]

    @property
    def objects(self) -> tuple[Obj, ...]:
        """Everything, in apply order."""
        return self.core + self.istiod + self.gateways


def render(settings: InstallSettings, *, ca_root_pem: str = "", namespace: Obj | None = None,
           ca_secret: Obj | None = None, failure_policies: Mapping[str, str | None] | None = None) -> RenderedInstall:
    """Render an install.

    Args:
        settings: the resolved IstioOperator.
        ca_root_pem: the mesh root, for the injector webhook's ``caBundle`` (empty: left unset).
        namespace: the control-plane Namespace to apply (None when it exists and needs no label).
        ca_secret: the ``istio-ca-secret`` to create (None when ``cacerts`` or an existing one is used).
        failure_policies: the live ``failurePolicy`` of validating webhook configurations that exist already, by
            name: kept as istiod set them, so installing again does not reopen validation.
    """
    core: list[Obj] = []
    if settings.base:
        core += crds()
    if namespace is not None:
        core.append(namespace)
    if ca_secret is not None:
        core.append(ca_secret)
    istiod: list[Obj] = []
    if settings.pilot or settings.remote:
        core += _mesh_config_maps(settings)
    if settings.pilot:
        core += _istiod_rbac(settings)
        istiod += [_istiod_deployment(settings), _istiod_service(settings)]
    if settings.remote:
        core += reader_objects(settings.namespace, external_istiod=True)
        if settings.remote_pilot_address:
            istiod += _remote_istiod(settings)
    if settings.pilot or settings.remote:
        istiod.append(injector_webhook(settings, ca_root_pem))
    if settings.pilot:
        istiod += validating_webhooks(settings, ca_root_pem, failure_policies=failure_policies)
    gateways: list[Obj] = []
    for gateway in settings.gateways:
        gateways += _gateway(settings, gateway)
    return RenderedInstall(tuple(core), tuple(istiod), tuple(gateways))


def namespace_object(name: str, network: str) -> Obj:
    """The control-plane Namespace, labelled with its network when there is one."""
    metadata: Obj = {"name": name}
    if network:
        metadata["labels"] = {"topology.istio.io/network": network}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


def ca_secret_object(namespace: str, root_cert_pem: str, root_key_pem: str) -> Obj:
    """``istio-ca-secret``: istiod's self-signed CA when no ``cacerts`` is plugged in (keys as Istio writes them)."""
    data = {"ca-cert.pem": root_cert_pem, "ca-key.pem": root_key_pem, "cert-chain.pem": "", "key.pem": "",
            "root-cert.pem": root_cert_pem}
    return {"apiVersion": "v1", "kind": "Secret", "type": "istio.io/ca-root",
            "metadata": {"name": "istio-ca-secret", "namespace": namespace, "labels": {"istio.io/ca-root": "true"}},
            "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}}


def crds() -> list[Obj]:
    """Istio's CustomResourceDefinitions, with open schemas and kubectl columns."""
    return [_crd(*entry) for entry in CRDS]


def _crd(group: str, kind: str, plural: str, singular: str, short: Iterable[str], versions: Iterable[str],
         namespaced: bool, columns: Iterable[Obj]) -> Obj:
    names: Obj = {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": singular,
                  "categories": ["istio-io", f"{group.partition('.')[0]}-istio-io"]}
    if short:
        names["shortNames"] = list(short)
    printer = [*columns, _AGE]
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}", "labels": {"app": "istio-pilot", "chart": "istio",
                                                             "heritage": "Tiller", "release": "istio"}},
        "spec": {
            "group": group, "names": names, "scope": "Namespaced" if namespaced else "Cluster",
            "versions": [{"name": version, "served": True, "storage": i == 0, "subresources": {"status": {}},
                          "additionalPrinterColumns": printer,
                          "schema": {"openAPIV3Schema": {"type": "object",
                                                         "x-kubernetes-preserve-unknown-fields": True}}}
                         for i, version in enumerate(versions)],
        },
    }


def reader_objects(namespace: str, *, external_istiod: bool = False) -> list[Obj]:
    """The ``istio-reader-service-account`` and its cluster-wide read role (what a remote secret's token can do).

    Args:
        namespace: the Istio namespace.
        external_istiod: add what an istiod in another cluster needs to write here (the remote profile).
    """
    role = f"istio-reader-clusterrole-{namespace}"
    labels = {"app": "istio-reader", "release": "istio"}
    rules = [*READER_RULES, *(EXTERNAL_ISTIOD_READER_RULES if external_istiod else ())]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": READER_ACCOUNT, "namespace": namespace, "labels": labels}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": role, "labels": labels}, "rules": [dict(rule) for rule in rules]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": role, "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
         "subjects": [{"kind": "ServiceAccount", "name": READER_ACCOUNT, "namespace": namespace}]},
    ]


def mesh_config(settings: InstallSettings) -> Obj:
    """The mesh config istiod reads from the ``istio`` ConfigMap: Istio's defaults, then ``spec.meshConfig``."""
    discovery = f"istiod.{settings.namespace}.svc:15012"
    mesh: Obj = {
        "defaultConfig": {"discoveryAddress": discovery, "proxyHttpPort": PROXY_HTTP_PORT,
                          "tracing": {}, "proxyMetadata": {}},
        "enablePrometheusMerge": True,
        "rootNamespace": settings.namespace,
        "trustDomain": "cluster.local",
        "trustDomainAliases": [],
    }
    user = dict(settings.mesh_config)
    default_config = {**mesh["defaultConfig"], **(user.pop("defaultConfig", None) or {})}
    if settings.mesh_id:
        default_config.setdefault("meshId", settings.mesh_id)
    mesh.update(user)
    mesh["defaultConfig"] = default_config
    return mesh


def injector_values(settings: InstallSettings) -> Obj:
    """The ``values`` JSON of ``istio-sidecar-injector``: what injection templates read (``.Values.global.network``)."""
    user = settings.values
    user_global = dict(user.get("global") or {})
    proxy = {"image": "proxyv2", "clusterDomain": "cluster.local", "statusPort": 15020, "logLevel": "warning",
             "componentLogLevel": "misc:error", "privileged": False, "readinessInitialDelaySeconds": 1,
             "readinessPeriodSeconds": 2, "readinessFailureThreshold": 4, "holdApplicationUntilProxyStarts": False,
             **(user_global.pop("proxy", None) or {})}
    multi_cluster = {"enabled": True, **(user_global.pop("multiCluster", None) or {}),
                     "clusterName": settings.cluster_name}
    glob = {"hub": settings.hub, "tag": settings.tag, "imagePullPolicy": "", "istioNamespace": settings.namespace,
            "meshID": settings.mesh_id, "network": settings.network, "multiCluster": multi_cluster,
            "proxy": proxy, "proxy_init": {"image": "proxyv2"}, "caAddress": "", "pilotCertProvider": "istiod",
            "jwtPolicy": "third-party-jwt", "externalIstiod": settings.external_istiod,
            "remotePilotAddress": settings.remote_pilot_address, "configCluster": False,
            "logging": {"level": "default:info"}, "sds": {"token": {"aud": "istio-ca"}}}
    for key, value in user_global.items():
        glob.setdefault(key, value)
    injector = {"enableNamespacesByDefault": False, "rewriteAppHTTPProbe": True, "injectedAnnotations": {},
                "defaultTemplates": [], "templates": {}, **(user.get("sidecarInjectorWebhook") or {})}
    return {"global": glob, "revision": "", "sidecarInjectorWebhook": injector,
            "istio_cni": {"enabled": False, "chained": True},
            "pilot": {"cni": {"enabled": False}}}


def injector_config() -> Obj:
    """The ``config`` of ``istio-sidecar-injector`` (policy and templates; the embedded injector brings its own)."""
    return {"policy": "enabled", "alwaysInjectSelector": [], "neverInjectSelector": [], "injectedAnnotations": {},
            "defaultTemplates": ["sidecar"], "templates": {"sidecar": "", "gateway": ""}}


def _mesh_config_maps(settings: InstallSettings) -> list[Obj]:
    labels = {"app": "istiod", "istio.io/rev": REVISION, "release": "istio"}
    networks = settings.mesh_networks or {"networks": {}}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "istio", "namespace": settings.namespace, "labels": labels},
         "data": {"mesh": _yaml(mesh_config(settings)), "meshNetworks": _yaml(networks)}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "istio-sidecar-injector", "namespace": settings.namespace, "labels": labels},
         "data": {"values": json.dumps(injector_values(settings), indent=2, sort_keys=True),
                  "config": _yaml(injector_config())}},
    ]


def _istiod_rbac(settings: InstallSettings) -> list[Obj]:
    ns = settings.namespace
    labels = {"app": "istiod", "release": "istio"}
    role = f"istiod-clusterrole-{ns}"
    root_cert_role = f"istiod-{ns}"
    subject = [{"kind": "ServiceAccount", "name": "istiod", "namespace": ns}]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "istiod", "namespace": ns,
                                                                    "labels": labels}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": role, "labels": labels},
         "rules": [dict(rule) for rule in (*_ISTIOD_RULES, *_ROOT_CERT_RULES)]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": role, "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
         "subjects": subject},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": root_cert_role, "namespace": ns, "labels": labels},
         "rules": [dict(rule) for rule in _ISTIOD_NAMESPACE_RULES]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": root_cert_role, "namespace": ns, "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": root_cert_role},
         "subjects": subject},
    ]


ISTIOD_LABELS = {"app": "istiod", "istio": "pilot"}
ISTIOD_PORTS = (
    {"name": "grpc-xds", "port": 15010, "protocol": "TCP", "targetPort": 15010},
    {"name": "https-dns", "port": 15012, "protocol": "TCP", "targetPort": 15012},
    {"name": "https-webhook", "port": 443, "protocol": "TCP", "targetPort": 15017},
    {"name": "http-monitoring", "port": 15014, "protocol": "TCP", "targetPort": 15014},
)


def _istiod_deployment(settings: InstallSettings) -> Obj:
    env: list[Obj] = [
        {"name": "REVISION", "value": REVISION},
        {"name": "PILOT_CERT_PROVIDER", "value": "istiod"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
        {"name": "SERVICE_ACCOUNT",
         "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.serviceAccountName"}}},
        {"name": "PILOT_TRACE_SAMPLING", "value": "1"},
        {"name": "PILOT_ENABLE_ANALYSIS", "value": "false"},
        {"name": "CLUSTER_ID", "value": settings.cluster_name},
        {"name": "PILOT_ENABLE_WORKLOAD_ENTRY_AUTOREGISTRATION", "value": "true"},
        {"name": "PILOT_ENABLE_WORKLOAD_ENTRY_HEALTHCHECKS", "value": "true"},
    ]
    if settings.external_istiod:
        env.append({"name": "EXTERNAL_ISTIOD", "value": "true"})
    env = _merge_env(env, [{"name": name, "value": value} for name, value in settings.pilot_env])
    pod_labels = {**ISTIOD_LABELS, "istio.io/rev": REVISION, "install.operator.istio.io/owning-resource": "unknown",
                  "sidecar.istio.io/inject": "false", "operator.istio.io/component": "Pilot"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "istiod", "namespace": settings.namespace,
                     "labels": {**ISTIOD_LABELS, "istio.io/rev": REVISION, "operator.istio.io/component": "Pilot",
                                "release": "istio"}},
        "spec": {
            "replicas": settings.pilot_replicas,
            "selector": {"matchLabels": {"istio": "pilot"}},
            "template": {
                "metadata": {"labels": pod_labels,
                             "annotations": {"prometheus.io/port": "15014", "prometheus.io/scrape": "true",
                                             "sidecar.istio.io/inject": "false"}},
                "spec": {
                    "serviceAccountName": "istiod",
                    "containers": [{
                        "name": "discovery",
                        "image": settings.image("pilot"),
                        "args": ["discovery", "--monitoringAddr=:15014", "--log_output_level=default:info",
                                 "--domain", "cluster.local", "--keepaliveMaxServerConnectionAge", "30m"],
                        "env": env,
                        "ports": [{"containerPort": 8080, "name": "http-debug", "protocol": "TCP"},
                                  {"containerPort": 15010, "name": "grpc-xds", "protocol": "TCP"},
                                  {"containerPort": 15012, "name": "tls-xds", "protocol": "TCP"},
                                  {"containerPort": 15014, "name": "http-monitoring", "protocol": "TCP"},
                                  {"containerPort": 15017, "name": "https-webhooks", "protocol": "TCP"}],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080},
                                           "initialDelaySeconds": 1, "periodSeconds": 3, "timeoutSeconds": 5},
                    }],
                },
            },
        },
    }


def _istiod_service(settings: InstallSettings) -> Obj:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "istiod", "namespace": settings.namespace,
                     "labels": {**ISTIOD_LABELS, "istio.io/rev": REVISION, "release": "istio"}},
        "spec": {"type": "ClusterIP", "selector": dict(ISTIOD_LABELS), "ports": [dict(p) for p in ISTIOD_PORTS]},
    }


def _remote_istiod(settings: InstallSettings) -> list[Obj]:
    # A Service without selector and hand-written Endpoints: the remote cluster's sidecars and API server
    # reach "istiod" at the primary's east-west gateway, which passes 15012/15017 through to the real one.
    ports = [{"name": "tcp-istiod", "port": 15012, "protocol": "TCP", "targetPort": 15012},
             {"name": "tcp-webhook", "port": 443, "protocol": "TCP", "targetPort": 15017}]
    labels = {"app": "istiod", "istio.io/rev": REVISION, "release": "istio"}
    return [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "istiod", "namespace": settings.namespace, "labels": labels},
         "spec": {"type": "ClusterIP", "ports": ports}},
        {"apiVersion": "v1", "kind": "Endpoints",
         "metadata": {"name": "istiod", "namespace": settings.namespace, "labels": labels},
         "subsets": [{"addresses": [{"ip": settings.remote_pilot_address}],
                      "ports": [{"name": "tcp-istiod", "port": 15012, "protocol": "TCP"},
                                {"name": "tcp-webhook", "port": 15017, "protocol": "TCP"}]}]},
    ]


def injector_webhook(settings: InstallSettings, ca_root_pem: str = "") -> Obj:
    """The ``istio-sidecar-injector`` MutatingWebhookConfiguration, with Istio's four selectors.

    A namespace labelled ``istio-injection=enabled`` (or ``istio.io/rev=default``) injects every pod not
    labelled ``sidecar.istio.io/inject=false``; elsewhere only pods labelled ``sidecar.istio.io/inject=true``.
    """
    client_config: Obj = {"service": {"name": "istiod", "namespace": settings.namespace,
                                      "path": settings.injection_path, "port": 443}}
    url = (settings.values.get("istiodRemote") or {}).get("injectionURL")
    if url:
        client_config = {"url": url}
    if ca_root_pem:
        client_config["caBundle"] = base64.b64encode(ca_root_pem.encode()).decode()

    def hook(name: str, namespace_selector: list[Obj], object_selector: list[Obj]) -> Obj:
        return {"name": name, "clientConfig": dict(client_config),
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                           "resources": ["pods"], "scope": "*"}],
                "failurePolicy": "Fail", "sideEffects": "None", "reinvocationPolicy": "Never",
                "admissionReviewVersions": ["v1"], "matchPolicy": "Equivalent", "timeoutSeconds": 10,
                "namespaceSelector": {"matchExpressions": namespace_selector},
                "objectSelector": {"matchExpressions": object_selector}}

    not_false = {"key": "sidecar.istio.io/inject", "operator": "NotIn", "values": ["false"]}
    rev_default = {"key": "istio.io/rev", "operator": "In", "values": [REVISION]}
    no_rev = {"key": "istio.io/rev", "operator": "DoesNotExist"}
    no_injection = {"key": "istio-injection", "operator": "DoesNotExist"}
    return {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "istio-sidecar-injector",
                     "labels": {"app": "sidecar-injector", "istio.io/rev": REVISION, "release": "istio"}},
        "webhooks": [
            hook("rev.namespace.sidecar-injector.istio.io", [rev_default, no_injection], [not_false]),
            hook("rev.object.sidecar-injector.istio.io", [no_rev, no_injection], [not_false, rev_default]),
            hook("namespace.sidecar-injector.istio.io",
                 [{"key": "istio-injection", "operator": "In", "values": ["enabled"]}], [not_false]),
            hook("object.sidecar-injector.istio.io", [no_injection, no_rev],
                 [{"key": "sidecar.istio.io/inject", "operator": "In", "values": ["true"]}, no_rev]),
        ],
    }


VALIDATION_GROUPS = ["security.istio.io", "networking.istio.io", "telemetry.istio.io", "extensions.istio.io"]


def validating_webhook_names(settings: InstallSettings) -> tuple[str, str]:
    """The names of istiod's ValidatingWebhookConfigurations (revision-specific, then the default one)."""
    return f"istio-validator-{settings.namespace}", "istiod-default-validator"


def validating_webhooks(settings: InstallSettings, ca_root_pem: str = "", *,
                        failure_policies: Mapping[str, str | None] | None = None) -> list[Obj]:
    """Istio's ``validation.istio.io`` webhooks, as the charts render them for the default revision.

    ``istio-validator-<namespace>`` (``rev.validation.istio.io``) checks objects labelled ``istio.io/rev:
    default``; ``istiod-default-validator`` (``validation.istio.io``, the name kubectl's refusals quote) checks
    every Istio object. Both start with ``failurePolicy: Ignore``, so config applied while istiod is not up yet
    is not locked out; istiod switches them to ``Fail`` once its endpoint refuses a known-bad object.

    Args:
        settings: the resolved IstioOperator.
        ca_root_pem: the mesh root, for ``caBundle`` (empty: istiod fills it in).
        failure_policies: configuration name → its live ``failurePolicy``, kept on a second install; None leaves
            the field out (istiod owns it once it has switched it to ``Fail``).
    """
    revision_name, default_name = validating_webhook_names(settings)
    client_config: Obj = {"service": {"name": "istiod", "namespace": settings.namespace, "path": "/validate",
                                      "port": 443}}
    if ca_root_pem:
        client_config["caBundle"] = base64.b64encode(ca_root_pem.encode()).decode()
    labels = {"app": "istiod", "istio": "istiod", "istio.io/rev": REVISION, "release": "istio",
              "app.kubernetes.io/name": "istiod"}

    def hook(configuration: str, name: str, object_selector: Obj | None) -> Obj:
        webhook: Obj = {"name": name, "clientConfig": copy.deepcopy(client_config),
                        "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": list(VALIDATION_GROUPS),
                                   "apiVersions": ["*"], "resources": ["*"]}],
                        "failurePolicy": (failure_policies or {}).get(configuration, "Ignore"),
                        "sideEffects": "None", "admissionReviewVersions": ["v1"]}
        if webhook["failurePolicy"] is None:
            del webhook["failurePolicy"]
        if object_selector is not None:
            webhook["objectSelector"] = object_selector
        return webhook

    return [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": revision_name, "labels": dict(labels)},
         "webhooks": [hook(revision_name, "rev.validation.istio.io", {"matchExpressions": [
             {"key": "istio.io/rev", "operator": "In", "values": [REVISION]}]})]},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": default_name, "labels": dict(labels)},
         "webhooks": [hook(default_name, "validation.istio.io", None)]},
    ]


def _gateway(settings: InstallSettings, gateway: GatewaySpec) -> list[Obj]:
    name, ns = gateway.name, gateway.namespace
    labels = dict(gateway.labels)
    object_labels = {**labels, "istio.io/rev": REVISION, "install.operator.istio.io/owning-resource": "unknown",
                     "operator.istio.io/component": "IngressGateways", "release": "istio"}
    pod_labels = {**labels, "sidecar.istio.io/inject": "false", "service.istio.io/canonical-name": name,
                  "service.istio.io/canonical-revision": "latest", "istio.io/rev": REVISION,
                  "operator.istio.io/component": "IngressGateways"}
    if settings.network:
        pod_labels.setdefault("topology.istio.io/network", settings.network)
    account = f"{name}-service-account"
    field = [("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace"), ("INSTANCE_IP", "status.podIP"),
             ("HOST_IP", "status.hostIP"), ("SERVICE_ACCOUNT", "spec.serviceAccountName"),
             ("NODE_NAME", "spec.nodeName"), ("ISTIO_META_NODE_NAME", "spec.nodeName")]
    env: list[Obj] = [{"name": key, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}
                      for key, path in field]
    env += [
        {"name": "JWT_POLICY", "value": "third-party-jwt"},
        {"name": "PILOT_CERT_PROVIDER", "value": "istiod"},
        {"name": "CA_ADDR", "value": f"istiod.{settings.namespace}.svc:15012"},
        {"name": "ISTIO_META_WORKLOAD_NAME", "value": name},
        {"name": "ISTIO_META_OWNER", "value": f"kubernetes://apis/apps/v1/namespaces/{ns}/deployments/{name}"},
        {"name": "ISTIO_META_MESH_ID", "value": settings.mesh_id or settings.trust_domain},
        {"name": "TRUST_DOMAIN", "value": settings.trust_domain},
        {"name": "ISTIO_META_UNPRIVILEGED_POD", "value": "true"},
        {"name": "ISTIO_META_CLUSTER_ID", "value": settings.cluster_name},
    ]
    if settings.network:
        env.append({"name": "ISTIO_META_NETWORK", "value": settings.network})
    proxy_config = _proxy_config_annotation(gateway)
    if proxy_config:
        # Istio's gateway injection template hands the pod's proxy.istio.io/config to the agent as PROXY_CONFIG.
        env.append({"name": "PROXY_CONFIG", "value": json.dumps(proxy_config, sort_keys=True)})
    env = _merge_env(env, list(gateway.env))
    container_ports = [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}]
    seen = {15090}
    for port in gateway.ports:
        target = port.get("targetPort", port["port"])
        if isinstance(target, int) and target not in seen:
            seen.add(target)
            container_ports.append({"containerPort": target, "protocol": port.get("protocol", "TCP")})
    service_spec: Obj = {"type": gateway.service_type, "selector": labels,
                         "ports": [dict(p) for p in gateway.ports]}
    if gateway.load_balancer_ip:
        service_spec["loadBalancerIP"] = gateway.load_balancer_ip
    if gateway.external_ips:
        service_spec["externalIPs"] = list(gateway.external_ips)
    if gateway.load_balancer_class:
        service_spec["loadBalancerClass"] = gateway.load_balancer_class
    service_metadata: Obj = {"name": name, "namespace": ns, "labels": object_labels}
    if gateway.annotations:
        service_metadata["annotations"] = dict(gateway.annotations)
    template_metadata: Obj = {"labels": pod_labels,
                              "annotations": {"prometheus.io/path": "/stats/prometheus", "prometheus.io/port": "15020",
                                              "prometheus.io/scrape": "true", "sidecar.istio.io/inject": "false",
                                              **gateway.pod_annotations}}
    sds = f"{name}-sds"
    mounts: list[Obj] = [{"name": "istio-token", "mountPath": "/var/run/secrets/tokens", "readOnly": True},
                         {"name": "istiod-ca-cert", "mountPath": "/var/run/secrets/istio"}]
    volumes: list[Obj] = [{"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {
                              "audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}}]}},
                          {"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}}]
    if SPIRE_TEMPLATE in _templates(gateway):
        # Istio's `spire` template on a gateway (podAnnotations inject.istio.io/templates: "gateway,spire"): SPIRE's
        # CSI volume at Istio's SDS socket path, so the gateway's identity comes from SPIRE like its sidecars'.
        mounts.append({"name": "workload-socket", "mountPath": "/run/secrets/workload-spiffe-uds", "readOnly": True})
        volumes.append({"name": "workload-socket", "csi": {"driver": "csi.spiffe.io", "readOnly": True}})
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": account, "namespace": ns, "labels": object_labels}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": sds, "namespace": ns, "labels": object_labels},
         "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "watch", "list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": sds, "namespace": ns, "labels": object_labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sds},
         "subjects": [{"kind": "ServiceAccount", "name": account}]},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": name, "namespace": ns, "labels": object_labels},
         "spec": {
             "replicas": gateway.replicas,
             "selector": {"matchLabels": labels},
             "template": {"metadata": template_metadata, "spec": {
                 "serviceAccountName": account,
                 "containers": [{
                     "name": "istio-proxy",
                     "image": settings.image("proxyv2"),
                     "args": ["proxy", "router", "--domain", "$(POD_NAMESPACE).svc.cluster.local",
                              "--proxyLogLevel=warning", "--log_output_level=default:info"],
                     "env": env,
                     "ports": container_ports,
                     "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"},
                                        "initialDelaySeconds": 1, "periodSeconds": 2, "timeoutSeconds": 1,
                                        "successThreshold": 1, "failureThreshold": 30},
                     "volumeMounts": mounts,
                 }],
                 "volumes": volumes,
             }},
         }},
        {"apiVersion": "v1", "kind": "Service", "metadata": service_metadata, "spec": service_spec},
    ]


PROXY_CONFIG_ANNOTATION = "proxy.istio.io/config"
TEMPLATES_ANNOTATION = "inject.istio.io/templates"
SPIRE_TEMPLATE = "spire"


def _templates(gateway: GatewaySpec) -> list[str]:
    """The injection templates a gateway's pods ask for (``inject.istio.io/templates``)."""
    return [t.strip() for t in gateway.pod_annotations.get(TEMPLATES_ANNOTATION, "").split(",") if t.strip()]


def _proxy_config_annotation(gateway: GatewaySpec) -> Obj:
    """The ProxyConfig a gateway's ``proxy.istio.io/config`` pod annotation sets (YAML or JSON), else empty."""
    text = gateway.pod_annotations.get(PROXY_CONFIG_ANNOTATION)
    if not text:
        return {}
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError(f"gateway {gateway.namespace}/{gateway.name}: podAnnotations {PROXY_CONFIG_ANNOTATION} "
                            f"is not YAML: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ManifestError(f"gateway {gateway.namespace}/{gateway.name}: podAnnotations {PROXY_CONFIG_ANNOTATION} "
                            f"must be a ProxyConfig object, e.g. 'drainDuration: 5s'")
    return parsed


def _merge_env(base: list[Obj], extra: list[Obj]) -> list[Obj]:
    # User env wins over the chart's, keeping the chart's order (as Helm's merge of k8s.env does).
    by_name = {entry["name"]: entry for entry in extra}
    merged = [by_name.pop(entry["name"], entry) for entry in base]
    return merged + [entry for entry in extra if entry["name"] in by_name]


def _yaml(value: Obj) -> str:
    return yaml.safe_dump(value, sort_keys=True, default_flow_style=False)
