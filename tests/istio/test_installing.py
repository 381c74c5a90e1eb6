"""What install renders for embedded clusters, from the labs' IstioOperator files (no cluster needed)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from labkit.errors import ManifestError
from labkit.istio import render_operator, settings_of, unsupported_fields
from labkit.istio.rendering import RenderedInstall

DATA = Path(__file__).parent / "data"
MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
ROOT_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _find(objects: tuple[dict, ...], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def _env(container: dict) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.fixture(scope="module")
def control_plane() -> RenderedInstall:
    return render_operator(DATA / "cluster1.yaml", ca_root_pem=ROOT_PEM)


def test_control_plane_renders_core_istiod_and_no_gateway(control_plane: RenderedInstall) -> None:
    kinds = [(o["kind"], o["metadata"]["name"]) for o in control_plane.core if o["kind"] != "CustomResourceDefinition"]
    assert kinds == [
        ("Namespace", "istio-system"), ("ConfigMap", "istio"), ("ConfigMap", "istio-sidecar-injector"),
        ("ServiceAccount", "istiod"), ("ClusterRole", "istiod-clusterrole-istio-system"),
        ("ClusterRoleBinding", "istiod-clusterrole-istio-system"), ("Role", "istiod-istio-system"),
        ("RoleBinding", "istiod-istio-system")]
    assert [(o["kind"], o["metadata"]["name"]) for o in control_plane.istiod] == [
        ("Deployment", "istiod"), ("Service", "istiod"), ("MutatingWebhookConfiguration", "istio-sidecar-injector"),
        ("ValidatingWebhookConfiguration", "istio-validator-istio-system"),
        ("ValidatingWebhookConfiguration", "istiod-default-validator")]
    assert control_plane.gateways == ()  # profile: minimal
    namespace = _find(control_plane.core, "Namespace", "istio-system")
    assert namespace["metadata"]["labels"] == {"topology.istio.io/network": "network1"}


def test_crds_cover_istio_config_with_open_schemas_and_columns(control_plane: RenderedInstall) -> None:
    crds = {o["metadata"]["name"]: o for o in control_plane.core if o["kind"] == "CustomResourceDefinition"}
    assert set(crds) == {
        "virtualservices.networking.istio.io", "destinationrules.networking.istio.io", "gateways.networking.istio.io",
        "serviceentries.networking.istio.io", "sidecars.networking.istio.io", "workloadentries.networking.istio.io",
        "workloadgroups.networking.istio.io", "envoyfilters.networking.istio.io",
        "peerauthentications.security.istio.io", "authorizationpolicies.security.istio.io",
        "requestauthentications.security.istio.io", "telemetries.telemetry.istio.io",
        "istiooperators.install.istio.io"}
    vs = crds["virtualservices.networking.istio.io"]["spec"]
    assert [v["name"] for v in vs["versions"]] == ["v1", "v1beta1", "v1alpha3"]
    assert [v["storage"] for v in vs["versions"]] == [True, False, False]
    assert vs["names"]["shortNames"] == ["vs"]
    version = vs["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Gateways", "Hosts", "Age"]
    assert version["schema"]["openAPIV3Schema"]["x-kubernetes-preserve-unknown-fields"] is True
    assert [v["name"] for v in crds["peerauthentications.security.istio.io"]["spec"]["versions"]] == ["v1", "v1beta1"]
    assert crds["istiooperators.install.istio.io"]["spec"]["versions"][0]["name"] == "v1alpha1"


def test_istiod_carries_the_cluster_identity(control_plane: RenderedInstall) -> None:
    deployment = _find(control_plane.istiod, "Deployment", "istiod")
    assert deployment["metadata"]["namespace"] == "istio-system"
    assert {"app": "istiod", "istio": "pilot"}.items() <= deployment["metadata"]["labels"].items()
    template = deployment["spec"]["template"]
    assert {"app": "istiod", "istio": "pilot"}.items() <= template["metadata"]["labels"].items()
    assert template["spec"]["serviceAccountName"] == "istiod"
    [container] = template["spec"]["containers"]
    assert container["name"] == "discovery"
    assert container["image"] == "docker.io/istio/pilot:1.30.0"
    assert container["args"] == ["discovery", "--monitoringAddr=:15014", "--log_output_level=default:info",
                                 "--domain", "cluster.local", "--keepaliveMaxServerConnectionAge", "30m"]
    env = _env(container)
    assert env["CLUSTER_ID"] == "cluster1"
    assert env["REVISION"] == "default"
    assert env["PILOT_SKIP_VALIDATE_TRUST_DOMAIN"] == "true"  # values.pilot.env
    assert env["POD_NAMESPACE"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
    assert [p["containerPort"] for p in container["ports"]] == [8080, 15010, 15012, 15014, 15017]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 8080}
    service = _find(control_plane.istiod, "Service", "istiod")
    assert service["spec"]["selector"] == {"app": "istiod", "istio": "pilot"}
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("grpc-xds", 15010, 15010), ("https-dns", 15012, 15012), ("https-webhook", 443, 15017),
        ("http-monitoring", 15014, 15014)]


def test_mesh_config_and_injector_values(control_plane: RenderedInstall) -> None:
    istio = _find(control_plane.core, "ConfigMap", "istio")
    mesh = yaml.safe_load(istio["data"]["mesh"])
    assert mesh["trustDomain"] == "cluster.local"
    assert mesh["trustDomainAliases"] == []
    assert mesh["accessLogFile"] == "/dev/stdout"
    assert mesh["rootNamespace"] == "istio-system"
    assert mesh["defaultConfig"]["proxyHttpPort"] == 15080
    assert mesh["defaultConfig"]["discoveryAddress"] == "istiod.istio-system.svc:15012"
    assert mesh["defaultConfig"]["proxyMetadata"] == {"ISTIO_META_DNS_CAPTURE": "true",
                                                      "ISTIO_META_DNS_AUTO_ALLOCATE": "true"}
    assert yaml.safe_load(istio["data"]["meshNetworks"]) == {"networks": {}}
    injector = _find(control_plane.core, "ConfigMap", "istio-sidecar-injector")
    values = json.loads(injector["data"]["values"])
    assert values["global"]["network"] == "network1"
    assert values["global"]["meshID"] == "mesh1"
    assert values["global"]["multiCluster"]["clusterName"] == "cluster1"
    assert values["global"]["proxy"]["image"] == "proxyv2"
    assert (values["global"]["hub"], values["global"]["tag"]) == ("docker.io/istio", "1.30.0")
    assert values["sidecarInjectorWebhook"]["enableNamespacesByDefault"] is False
    assert yaml.safe_load(injector["data"]["config"])["policy"] == "enabled"


def test_webhook_selects_namespaces_and_pods_as_istio_does(control_plane: RenderedInstall) -> None:
    webhook = _find(control_plane.istiod, "MutatingWebhookConfiguration", "istio-sidecar-injector")
    hooks = {h["name"]: h for h in webhook["webhooks"]}
    assert list(hooks) == ["rev.namespace.sidecar-injector.istio.io", "rev.object.sidecar-injector.istio.io",
                           "namespace.sidecar-injector.istio.io", "object.sidecar-injector.istio.io"]
    namespace_hook = hooks["namespace.sidecar-injector.istio.io"]
    assert namespace_hook["namespaceSelector"] == {"matchExpressions": [
        {"key": "istio-injection", "operator": "In", "values": ["enabled"]}]}
    assert namespace_hook["objectSelector"] == {"matchExpressions": [
        {"key": "sidecar.istio.io/inject", "operator": "NotIn", "values": ["false"]}]}
    assert {"key": "sidecar.istio.io/inject", "operator": "In", "values": ["true"]} in \
        hooks["object.sidecar-injector.istio.io"]["objectSelector"]["matchExpressions"]
    for hook in hooks.values():
        config = hook["clientConfig"]
        assert config["service"] == {"name": "istiod", "namespace": "istio-system",
                                     "path": "/inject/cluster/cluster1/net/network1", "port": 443}
        assert base64.b64decode(config["caBundle"]).decode() == ROOT_PEM
        assert hook["rules"][0]["resources"] == ["pods"] and hook["rules"][0]["operations"] == ["CREATE"]
        assert hook["sideEffects"] == "None" and hook["admissionReviewVersions"] == ["v1"]


def test_east_west_gateway_file() -> None:
    rendered = render_operator(DATA / "ew-gateway1.yaml")
    assert rendered.istiod == ()
    assert [o["kind"] for o in rendered.core] == ["Namespace"]  # profile: empty installs no CRDs
    deployment = _find(rendered.gateways, "Deployment", "istio-eastwestgateway")
    labels = {"istio": "eastwestgateway", "app": "istio-eastwestgateway", "topology.istio.io/network": "network1"}
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert labels.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    spec = deployment["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "istio-eastwestgateway-service-account"
    [container] = spec["containers"]
    assert container["name"] == "istio-proxy"
    assert container["image"] == "docker.io/istio/proxyv2:1.30.0"
    assert container["args"] == ["proxy", "router", "--domain", "$(POD_NAMESPACE).svc.cluster.local",
                                 "--proxyLogLevel=warning", "--log_output_level=default:info"]
    env = _env(container)
    assert env["ISTIO_META_REQUESTED_NETWORK_VIEW"] == "network1"
    assert env["ISTIO_META_NETWORK"] == "network1"
    assert env["ISTIO_META_CLUSTER_ID"] == "Kubernetes"  # the file names no cluster; istiod's default
    assert env["ISTIO_META_WORKLOAD_NAME"] == "istio-eastwestgateway"
    for name, path in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace"),
                       ("INSTANCE_IP", "status.podIP"), ("SERVICE_ACCOUNT", "spec.serviceAccountName")):
        assert env[name] == {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz/ready"
    assert container["readinessProbe"]["httpGet"]["port"] == 15021
    assert {15021, 15443, 15012, 15017, 15090} == {p["containerPort"] for p in container["ports"]}
    service = _find(rendered.gateways, "Service", "istio-eastwestgateway")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["selector"] == labels
    assert labels.items() <= service["metadata"]["labels"].items()
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("status-port", 15021, 15021), ("tls", 15443, 15443), ("tls-istiod", 15012, 15012),
        ("tls-webhook", 15017, 15017)]


def test_a_gateway_service_keeps_its_load_balancer_class() -> None:
    operator = {"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator",
                "spec": {"components": {"ingressGateways": [{"name": "istio-eastwestgateway", "enabled": True, "k8s": {
                    "service": {"loadBalancerClass": "service.k8s.aws/nlb"}}}]}}}
    service = _find(render_operator(operator).gateways, "Service", "istio-eastwestgateway")
    assert service["spec"]["loadBalancerClass"] == "service.k8s.aws/nlb"


def test_default_profile_brings_the_ingress_gateway() -> None:
    operator = {"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator",
                "spec": {"values": {"global": {"network": "network1"}},
                         "components": {"ingressGateways": [{"name": "istio-ingressgateway", "enabled": True, "k8s": {
                             "service": {"loadBalancerIP": "127.0.200.9"},
                             "serviceAnnotations": {"example.com/lb": "internal"}}}]}}}
    rendered = render_operator(operator)
    service = _find(rendered.gateways, "Service", "istio-ingressgateway")
    assert service["spec"]["selector"] == {"app": "istio-ingressgateway", "istio": "ingressgateway"}
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(15021, 15021), (80, 8080),
                                                                                 (443, 8443)]
    assert service["spec"]["loadBalancerIP"] == "127.0.200.9"
    assert service["metadata"]["annotations"] == {"example.com/lb": "internal"}
    # Only gateways labelled with a network are network gateways: the ingress gateway Service is not one.
    assert "topology.istio.io/network" not in service["metadata"]["labels"]
    assert len(rendered.istiod) == 5 and rendered.core  # istiod, its Service, injection and two validation webhooks


def test_remote_profile_points_istiod_at_the_primary() -> None:
    rendered = render_operator(DATA / "remote.yaml")
    assert not any(o["kind"] == "Deployment" for o in rendered.objects)
    service = _find(rendered.istiod, "Service", "istiod")
    assert "selector" not in service["spec"]
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(15012, 15012), (443, 15017)]
    endpoints = _find(rendered.istiod, "Endpoints", "istiod")
    assert endpoints["subsets"][0]["addresses"] == [{"ip": "10.132.0.102"}]
    assert [p["port"] for p in endpoints["subsets"][0]["ports"]] == [15012, 15017]
    webhook = _find(rendered.istiod, "MutatingWebhookConfiguration", "istio-sidecar-injector")
    config = webhook["webhooks"][0]["clientConfig"]
    assert config["service"]["path"] == "/inject/cluster/cluster2/net/network2"
    assert "caBundle" not in config  # the primary's istiod patches it in
    assert _find(rendered.core, "ServiceAccount", "istio-reader-service-account")
    assert settings_of(yaml.safe_load((DATA / "remote.yaml").read_text())).components == ("Base", "IstiodRemote")
    # The primary's istiod (externalIstiod) writes istio-ca-root-cert here and patches the webhook's caBundle.
    rules = _find(rendered.core, "ClusterRole", "istio-reader-clusterrole-istio-system")["rules"]
    assert {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "list", "watch", "update"]} \
        in rules
    assert any(r["resources"] == ["mutatingwebhookconfigurations"] and "update" in r["verbs"] for r in rules)


def test_every_unsupported_field_is_reported_in_one_error() -> None:
    with pytest.raises(ManifestError) as error:
        render_operator(DATA / "unsupported.yaml")
    assert error.value.problems == (
        "IstioOperator.spec.components.cni: not supported on embedded clusters; remove it or use a real cluster",
        "IstioOperator.spec.components.ingressGateways[0].k8s.hpaSpec: not supported on embedded clusters; "
        "remove it or use a real cluster",
        "IstioOperator.spec.values.global.meshId: not supported on embedded clusters (did you mean meshID?); "
        "remove it or use a real cluster",
        'IstioOperator.spec.revision: "canary" is not supported on embedded clusters (one control plane per '
        "cluster); remove it or use a real cluster",
        "IstioOperator.spec.components.egressGateways[0]: egress gateways are not supported on embedded clusters; "
        "remove it or use a real cluster",
    )
    assert str(error.value).startswith(f"{DATA / 'unsupported.yaml'}: 5 field(s) cannot be installed")


def test_disabled_components_are_not_problems() -> None:
    operator = {"kind": "IstioOperator", "spec": {"profile": "minimal", "components": {
        "cni": {"enabled": False, "k8s": {"anything": 1}}, "egressGateways": [{"name": "e", "enabled": False}]}}}
    assert unsupported_fields(operator) == []


def test_rendering_is_deterministic() -> None:
    assert render_operator(DATA / "cluster1.yaml") == render_operator(DATA / "cluster1.yaml")


def test_not_an_istio_operator_is_refused() -> None:
    with pytest.raises(ManifestError, match="expected exactly one IstioOperator"):
        render_operator(Path(__file__).resolve().parents[2] / "manifests" / "samples" / "helloworld.yaml")


def test_a_real_cluster_without_istioctl_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.errors import ToolNotFoundError
    from labkit.istio import installing

    monkeypatch.setattr(installing.kube, "is_embedded", lambda context, kubeconfig=None: False)
    monkeypatch.setattr(installing.shutil, "which", lambda name: None)
    with pytest.raises(ToolNotFoundError) as error:
        installing.install("prod-east", DATA / "unsupported.yaml")  # istioctl, not labkit, judges the fields there
    assert error.value.tool == "istioctl"
    assert "'prod-east' is a real cluster" in str(error.value) and "downloadIstio" in str(error.value)


def test_a_real_cluster_streams_istioctl(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    from labkit.istio import installing

    fake = tmp_path / "istioctl"
    fake.write_text("#!/bin/sh\necho \"args: $*\"\necho '✔ Istio core installed ⛵️'\necho '✔ Installation complete'\n")
    fake.chmod(0o755)
    monkeypatch.setattr(installing.kube, "is_embedded", lambda context, kubeconfig=None: False)
    monkeypatch.setattr(installing.shutil, "which", lambda name: str(fake))
    result = installing.install("prod-east", DATA / "cluster1.yaml")
    out = capsys.readouterr().out
    assert f"args: install -y --context prod-east -f {DATA / 'cluster1.yaml'}" in out
    assert not result.embedded and result.components == ("Istio core installed ⛵️", "Installation complete")


def test_validation_webhooks_are_registered_fail_open_until_istiod_closes_them(control_plane: RenderedInstall) -> None:
    default = _find(control_plane.istiod, "ValidatingWebhookConfiguration", "istiod-default-validator")
    (hook,) = default["webhooks"]
    assert hook["name"] == "validation.istio.io"
    assert hook["failurePolicy"] == "Ignore" and hook["sideEffects"] == "None"
    assert hook["clientConfig"]["service"] == {"name": "istiod", "namespace": "istio-system", "path": "/validate",
                                               "port": 443}
    assert hook["rules"][0]["apiGroups"] == ["security.istio.io", "networking.istio.io", "telemetry.istio.io",
                                             "extensions.istio.io"]
    assert hook["rules"][0]["operations"] == ["CREATE", "UPDATE"]
    revision = _find(control_plane.istiod, "ValidatingWebhookConfiguration", "istio-validator-istio-system")
    assert revision["webhooks"][0]["name"] == "rev.validation.istio.io"
    assert revision["webhooks"][0]["objectSelector"]["matchExpressions"] == [
        {"key": "istio.io/rev", "operator": "In", "values": ["default"]}]
    assert default["metadata"]["labels"]["istio.io/rev"] == "default"


def test_a_gateways_proxy_config_annotation_reaches_its_agent() -> None:
    """Istio's gateway template hands ``proxy.istio.io/config`` to the agent as PROXY_CONFIG (Lab 2 shortens the
    east-west gateway's drainDuration with it)."""
    operator = yaml.safe_load((MANIFESTS / "primary-remote" / "eastwest-gateway-cluster1.yaml").read_text())
    rendered = render_operator(operator)
    deployment = _find(rendered.gateways, "Deployment", "istio-eastwestgateway")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert json.loads(env["PROXY_CONFIG"]) == {"drainDuration": "5s"}
    assert "proxy.istio.io/config" in deployment["spec"]["template"]["metadata"]["annotations"]


def test_a_gateway_asking_for_the_spire_template_mounts_spires_socket() -> None:
    """Lab 5's ingress gateway (podAnnotations ``inject.istio.io/templates: gateway,spire``) gets the SPIFFE CSI
    volume at Istio's SDS socket path, as the ``spire`` template gives it to sidecars."""
    operator = yaml.safe_load((MANIFESTS / "spire-federation" / "cluster2.yaml").read_text())
    deployment = _find(render_operator(operator).gateways, "Deployment", "istio-ingressgateway")
    spec = deployment["spec"]["template"]["spec"]
    assert {"name": "workload-socket", "csi": {"driver": "csi.spiffe.io", "readOnly": True}} in spec["volumes"]
    assert {"name": "workload-socket", "mountPath": "/run/secrets/workload-spiffe-uds", "readOnly": True} in \
        spec["containers"][0]["volumeMounts"]
    assert deployment["metadata"]["namespace"] == "istio-ingress"
    plain = _find(render_operator(yaml.safe_load((MANIFESTS / "spire-federation" / "eastwest-gateway-cluster2.yaml")
                                                  .read_text())).gateways, "Deployment", "istio-eastwestgateway")
    assert all(v["name"] != "workload-socket" for v in plain["spec"]["template"]["spec"]["volumes"])
