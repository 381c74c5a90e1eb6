"""One bad Istio object never stops a push: enum values the builders do not know are errors naming the object
(never a silent fallback), and istiod's generator leaves out exactly the object that cannot be translated,
logging it by kind, namespace and name, while the rest of the mesh still builds.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from labkit.emulator.mesh.generating import ConfigGenerator
from labkit.emulator.mesh.model import ConfigObject, MeshConfig, MeshSnapshot, Proxy, Service, ServicePort
from labkit.emulator.mesh.validating import Screen, review
from labkit.emulator.mesh.xds import ProxyCredential, build_clusters, build_listeners, generate
from labkit.emulator.mesh.xds.common import XdsError
from labkit.pki import new_root

HELLO = "helloworld.sample.svc.cluster.local"
HELLOWORLD = Service(HELLO, "sample", "helloworld", (ServicePort("http", 5000, "HTTP"),),
                     addresses={"cluster1": "127.1.128.5"})
SLEEP = Proxy(id="sidecar~127.1.0.11~sleep.sample~sample.svc.cluster.local", type="sidecar", name="sleep",
              namespace="sample", ip="127.1.0.11", app_address="127.1.64.11", labels={"app": "sleep"},
              cluster="cluster1", container_ports=(8080,))


def snapshot(*configs: ConfigObject) -> MeshSnapshot:
    return MeshSnapshot(MeshConfig(), (HELLOWORLD,), configs=configs)


def dr(name: str, tls_mode: str) -> ConfigObject:
    return ConfigObject("DestinationRule", "sample", name, {"host": "helloworld",
                                                            "trafficPolicy": {"tls": {"mode": tls_mode}}})


@pytest.fixture(scope="module")
def credential() -> ProxyCredential:
    ca = new_root(key="ec-p256")
    issued = ca.issue_workload("spiffe://cluster.local/ns/sample/sa/sleep")
    return ProxyCredential(issued.cert_chain_pem, issued.key_pem, {"cluster.local": ca.cert_pem})


@pytest.mark.parametrize(("config", "builder", "expected"), [
    (dr("typo", "ISTIO_MUTUALL"), build_clusters,
     "DestinationRule sample/typo: trafficPolicy.tls.mode: unsupported value 'ISTIO_MUTUALL'; use one of DISABLE, "
     "SIMPLE, MUTUAL, ISTIO_MUTUAL"),
    (dr("lower", "istio_mutual"), build_clusters,
     "DestinationRule sample/lower: trafficPolicy.tls.mode: unsupported value 'istio_mutual'"),
    (ConfigObject("DestinationRule", "sample", "lb", {"host": "helloworld",
                                                      "trafficPolicy": {"loadBalancer": {"simple": "FASTEST"}}}),
     build_clusters, "DestinationRule sample/lb: trafficPolicy.loadBalancer.simple: unsupported value 'FASTEST'"),
    (ConfigObject("PeerAuthentication", "sample", "default", {"mtls": {"mode": "STRICTT"}}), build_listeners,
     "PeerAuthentication sample/default: mtls.mode: unsupported value 'STRICTT'; use one of UNSET, DISABLE, "
     "PERMISSIVE, STRICT"),
])
def test_an_unknown_enum_value_is_an_error_naming_the_object_never_a_fallback(
        config: ConfigObject, builder: Any, expected: str) -> None:
    with pytest.raises(XdsError) as error:
        builder(SLEEP, snapshot(config))
    assert str(error.value).startswith(expected)


def test_the_untranslatable_object_is_left_out_and_named(credential: ProxyCredential,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    good = dr("good", "ISTIO_MUTUAL")
    bad = ConfigObject("PeerAuthentication", "sample", "default", {"mtls": {"mode": "STRICTT"}})
    mesh = snapshot(good, bad)
    generator = ConfigGenerator()
    with caplog.at_level(logging.ERROR, logger="istiod.push"):
        kept = generator.isolate(SLEEP, mesh, credential, XdsError("first failure"))
    assert kept.configs == (good,)
    assert "PeerAuthentication sample/default cannot be translated and is left out of the push" in caplog.text
    assert list(generator.untranslatable_configs()) == ["PeerAuthentication/sample/default"]
    config = generate(SLEEP, kept, credential=credential)  # the rest still builds, the good rule applied
    cluster = next(c for c in config.clusters if c["name"] == f"outbound|5000||{HELLO}")
    assert cluster["transport_socket"]["typed_config"]["sni"] == f"outbound_.5000_._.{HELLO}"
    # Left out of later pushes while unchanged; back in once fixed.
    assert generator.screen(mesh).configs == (good,)
    fixed = ConfigObject("PeerAuthentication", "sample", "default", {"mtls": {"mode": "STRICT"}})
    assert generator.screen(snapshot(good, fixed)).configs == (good, fixed)
    assert generator.untranslatable_configs() == {}


def test_istiod_screens_out_invalid_objects_and_logs_each_once(caplog: pytest.LogCaptureFixture) -> None:
    bad = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
           "metadata": {"name": "typo", "namespace": "sample"},
           "spec": {"hosts": ["helloworld"], "http": [{"route": [{"destination": {"host": "helloworld"},
                                                                  "weight": "fifty"}]}]}}
    good = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "ok", "namespace": "sample"},
            "spec": {"hosts": ["helloworld"], "http": [{"route": [{"destination": {"host": "helloworld"}}]}]}}
    screen = Screen()
    with caplog.at_level(logging.ERROR, logger="istiod.validation"):
        assert screen.admit([bad, good]) == [good]
        assert screen.admit([bad, good]) == [good]
    assert caplog.text.count("VirtualService sample/typo is invalid and left out of the push") == 1
    assert 'spec.http[0].route[0].weight: Invalid value: "fifty"' in caplog.text


def test_the_webhook_answers_an_admission_review() -> None:
    obj = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
           "metadata": {"name": "helloworld", "namespace": "sample"},
           "spec": {"host": "helloworld", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUALL"}}}}
    request = {"uid": "42", "operation": "CREATE", "namespace": "sample", "object": obj}
    answer = review({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
    assert answer["response"]["uid"] == "42" and answer["response"]["allowed"] is False
    assert answer["response"]["status"]["message"].startswith(
        'error decoding configuration: DestinationRule sample/helloworld: spec.trafficPolicy.tls.mode: '
        'Unsupported value: "ISTIO_MUTUALL"')
    deleting = review({"request": {**request, "operation": "DELETE"}})
    assert deleting["response"] == {"uid": "42", "allowed": True}


def test_a_failure_no_object_explains_is_not_searched_again_until_the_configs_change(
        credential: ProxyCredential) -> None:
    broken = MeshSnapshot(MeshConfig(outbound_traffic_policy="ALLOW_ALL"), (HELLOWORLD,),  # type: ignore[arg-type]
                          configs=(dr("good", "ISTIO_MUTUAL"),))
    with pytest.raises(XdsError, match="meshConfig.outboundTrafficPolicy.mode: unsupported value 'ALLOW_ALL'"):
        generate(SLEEP, broken, credential=credential)
    builds: list[int] = []

    def counted(proxy: Proxy, mesh: MeshSnapshot, issued: ProxyCredential | None) -> Any:
        builds.append(1)
        return generate(proxy, mesh, credential=issued)

    generator = ConfigGenerator(counted)
    assert generator.generate(SLEEP, broken, credential) is None
    searched = len(builds)
    assert searched >= 2 and generator.untranslatable == {}
    assert "ALLOW_ALL" in generator.errors[SLEEP.id]
    assert generator.generate(SLEEP, broken, credential) is None
    assert len(builds) == searched + 2  # the build and its retry, no second search
