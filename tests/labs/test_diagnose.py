"""``labkit.diagnose``'s verdicts, from evidence recorded on broken meshes: one case per Lab 6 exercise, and the
healthy mesh, where it must find no fault.

The evidence below is what :func:`labkit.diagnosing.gather` found on Lab 6's embedded clusters (cluster1 calling
from ``sample/deploy/sleep``; helloworld v1 in cluster1, v2 and httpbin in cluster2), addresses and pod names as
recorded. The missing-network-label case has the shape the same mistake gives on separate networks (the sidecar
lists cluster2's pod IP instead of its gateway; curl says ``… reset reason: connection timeout`` and the access log
``503 URX,UF`` with ``connection_timeout``, as tests/mesh/test_multicluster.py records it).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import labkit
from labkit import diagnosing
from labkit.diagnosing import Endpoint, Evidence, LoggedCall, decide
from labkit.errors import LabkitError
from labkit.istio import EndpointRow
from labkit.labs.multi_primary import Gateway, Instance, Mesh

HELLO = "http://helloworld.sample:5000/hello"
HTTPBIN = "http://httpbin.sample:8000/headers"
LOOKUP = "Server:\t\t127.69.101.10\nAddress:\t127.69.101.10#53\n\nName:\t{host}.sample.svc.cluster.local\n" \
         "Address: 127.69.101.5\n\n"
LOCAL = Endpoint("127.69.1.5:5000", "HEALTHY", "local", "cluster1 network1")
GATEWAY = Endpoint("127.69.200.4:15443", "HEALTHY", "gateway", "cluster2 network2")
SYNCED = (("cluster1", "synced"), ("cluster2", "synced"))
V1 = "helloworld-v1-667986485-vb9wx"
V2 = "helloworld-v2-774d8ccc97-9sx4c"
TLS = ("TLS_error:|268435581:SSL_routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:verify_cert_failed:"
       "_X509_verify_cert:_certificate_verification_error_at_depth_1:_unable_to_get_local_issuer_certificate:"
       "TLS_error_end")


def evidence(url: str = HELLO, **changes: object) -> Evidence:
    """The healthy mesh as recorded, with the fields a broken one changes."""
    host = "helloworld" if url == HELLO else "httpbin"
    healthy = {"resolved": True, "lookup": LOOKUP.format(host=host), "statuses": (200,) * 10, "errors": (),
               "answered_by": (V1, V2) if url == HELLO else (),
               "endpoints": (LOCAL, GATEWAY) if url == HELLO else (GATEWAY,), "remote_clusters": SYNCED,
               "proxy_synced": True, "pending_gateways": (), "clusters": ("cluster1", "cluster2"), "log": ()}
    return Evidence("cluster1", "sample/deploy/sleep", url, **{**healthy, **changes})  # type: ignore[arg-type]


def test_the_healthy_mesh_has_no_fault() -> None:
    for url in (HELLO, HTTPBIN):
        diagnosis = decide(evidence(url))
        assert diagnosis.ok
        assert diagnosis.cause == diagnosing.NO_FAULT
        assert str(diagnosis).startswith("✓ verdict: no fault found")


def test_an_invalid_virtual_service_never_reaches_the_mesh_so_calls_show_no_fault() -> None:
    # Exercise 1: the API refused the canary at apply time; the calls right after are those of the healthy mesh.
    assert decide(evidence(HELLO)).ok


def test_a_remote_secret_with_an_unreachable_server() -> None:
    recorded = evidence(HELLO, answered_by=(V1,), endpoints=(LOCAL,),
                        remote_clusters=(("cluster1", "synced"), ("cluster2", "timeout")))
    diagnosis = decide(recorded)
    assert diagnosis.cause == diagnosing.REMOTE_UNREACHABLE
    assert "remote-clusters in cluster1: cluster2 timeout" in diagnosis.evidence
    assert "no endpoint of cluster2" in diagnosis.evidence
    assert "create-remote-secret --server" in diagnosis.fix


def test_a_remote_only_service_without_the_dns_proxy() -> None:
    recorded = evidence(HTTPBIN, resolved=False, statuses=(0,) * 10,
                        lookup="Server:\t\t127.69.101.10\nAddress:\t127.69.101.10#53\n\n"
                               "** server can't find httpbin.sample: NXDOMAIN\n\n",
                        errors=("Could not resolve host: httpbin.sample",))
    diagnosis = decide(recorded)
    assert diagnosis.cause == diagnosing.NOT_RESOLVABLE
    assert "curl in cluster1: Could not resolve host: httpbin.sample" in diagnosis.evidence
    assert "nslookup httpbin.sample in cluster1: ** server can't find httpbin.sample: NXDOMAIN" in diagnosis.evidence
    assert any("yet the sidecar holds 1 endpoint(s)" in line for line in diagnosis.evidence)


def test_expose_services_with_hosts_that_do_not_cover_the_service() -> None:
    reset = "TLS_error:|33554536:system_library:OPENSSL_internal:Connection_reset_by_peer:TLS_error_end"
    refused = LoggedCall(503, "URX,UF", f"upstream_reset_before_response_started{{remote_connection_failure|{reset}}}",
                         reset, "127.69.200.4:15443")
    nr = ('[2026-12-05T08:10:26.202Z] "- - -" 0 NR filter_chain_not_found - "-" 0 0 0 - "-" "-" "-" "-" "-" - - '
          '127.69.2.4:15443 127.0.0.1:50106 outbound_.8000_._.httpbin.sample.svc.cluster.local -')
    recorded = evidence(HTTPBIN, statuses=(503,) * 10, log=(refused,) * 3, gateway_log=(nr,),
                        errors=("upstream connect error or disconnect/reset before headers. retried and the latest "
                                "reset reason: remote connection failure",))
    diagnosis = decide(recorded)
    assert diagnosis.cause == diagnosing.GATEWAY_NOT_EXPOSING
    assert f"gateway log: {nr}" in diagnosis.evidence
    assert any("Connection_reset_by_peer" in line for line in diagnosis.evidence)
    assert "expose-services in cluster2" in diagnosis.fix


def test_a_reset_by_a_local_pod_is_not_blamed_on_a_gateway() -> None:
    reset = "TLS_error:|33554536:system_library:OPENSSL_internal:Connection_reset_by_peer:TLS_error_end"
    recorded = evidence(HELLO, statuses=(503,) * 10, log=(LoggedCall(503, "UF", reset, reset, LOCAL.address),))
    assert decide(recorded).cause == diagnosing.UPSTREAM_FAILURE


def test_two_roots() -> None:
    refused = LoggedCall(503, "URX,UF", f"upstream_reset_before_response_started{{remote_connection_failure|{TLS}}}",
                         TLS, "127.69.200.4:15443")
    recorded = evidence(HTTPBIN, statuses=(503,) * 10, log=(refused,) * 3,
                        errors=("upstream connect error or disconnect/reset before headers. retried and the latest "
                                "reset reason: remote connection failure",))
    diagnosis = decide(recorded)
    assert diagnosis.cause == diagnosing.TWO_ROOTS
    assert "10 of 10 calls failed" in diagnosis.evidence
    log_line = next(line for line in diagnosis.evidence if line.startswith("access log:"))
    assert "CERTIFICATE_VERIFY_FAILED" in log_line
    assert log_line.count("CERTIFICATE_VERIFY_FAILED") == 1  # the reason once, not again after the details


def test_a_missing_network_label() -> None:
    stray = Endpoint("127.69.2.5:5000", "HEALTHY", "remote-pod", "cluster2 no network")
    timed_out = LoggedCall(503, "URX,UF", "upstream_reset_before_response_started{connection_timeout}", "",
                           "127.69.2.5:5000")
    recorded = evidence(HELLO, statuses=(200, 503) * 5, answered_by=(V1,), endpoints=(LOCAL, stray),
                        log=(timed_out,),
                        errors=("upstream connect error or disconnect/reset before headers. retried and the latest "
                                "reset reason: connection timeout",))
    diagnosis = decide(recorded)
    assert diagnosis.cause == diagnosing.NETWORK_LABEL
    assert "endpoint 127.69.2.5:5000  HEALTHY  pod IP of another network (cluster2 no network)" in diagnosis.evidence
    assert any(line.startswith("access log: 503 URX,UF") for line in diagnosis.evidence)
    assert "cluster2" in diagnosis.fix


def test_the_injection_webhook_out_of_reach() -> None:
    refused = ('cluster1: Warning FailedCreate replicaset/helloworld-v1-667986485 (x13): Error creating: Internal '
               'error occurred: failed calling webhook "namespace.sidecar-injector.istio.io": failed to call '
               'webhook: Post "https://istiod.istio-system.svc:443/inject/cluster/cluster1/net/network1?timeout=10s": '
               'no endpoints available for service "istiod"')
    # Calls still work: the proxies keep their last configuration; only new pods are refused.
    diagnosis = decide(evidence(HELLO, istiod_running=False, remote_clusters=(), proxy_synced=None,
                                warnings=(refused,)))
    assert diagnosis.cause == diagnosing.INJECTION_WEBHOOK
    assert f"events: {refused}" in diagnosis.evidence
    assert "no running istiod in cluster1/istio-system" in diagnosis.evidence


def test_istiod_down_without_refused_pods() -> None:
    diagnosis = decide(evidence(HELLO, istiod_running=False, remote_clusters=(), proxy_synced=None))
    assert diagnosis.cause == diagnosing.ISTIOD_DOWN


def test_warnings_that_are_not_about_the_webhook_are_no_fault_of_the_mesh() -> None:
    assert decide(evidence(HELLO, warnings=("cluster2: Warning BackOff pod/x: Back-off restarting",))).ok


PLAINTEXT_RULE = "DestinationRule sample/sample-plaintext: tls.mode DISABLE for *.sample.svc.cluster.local"


def test_a_plaintext_destination_rule_across_networks() -> None:
    only_local = decide(evidence(HELLO, endpoints=(LOCAL,), answered_by=(V1,), plaintext_rules=(PLAINTEXT_RULE,),
                                 elsewhere=("cluster2 network2",)))
    assert only_local.cause == diagnosing.PLAINTEXT
    assert PLAINTEXT_RULE in only_local.evidence
    assert "pods on other networks: cluster2 network2" in only_local.evidence
    nothing = decide(evidence(HTTPBIN, endpoints=(), statuses=(503,) * 10, errors=("no healthy upstream",),
                              plaintext_rules=(PLAINTEXT_RULE,), elsewhere=("cluster2 network2",)))
    assert nothing.cause == diagnosing.PLAINTEXT
    assert "curl: no healthy upstream" in nothing.evidence


def test_a_plaintext_destination_rule_within_one_network_is_no_fault() -> None:
    assert decide(evidence(HELLO, endpoints=(LOCAL,), answered_by=(V1,), plaintext_rules=(PLAINTEXT_RULE,))).ok


def test_plaintext_rules_are_matched_by_host_and_port() -> None:
    def rule(name: str, host: str, policy: dict[str, object]) -> dict[str, object]:
        return {"metadata": {"name": name, "namespace": "sample"}, "spec": {"host": host, "trafficPolicy": policy}}

    disable = {"tls": {"mode": "DISABLE"}}

    def on_port(number: int) -> dict[str, object]:
        return {"portLevelSettings": [{"port": {"number": number}, "tls": {"mode": "DISABLE"}}]}

    rules = [rule("wild", "*.sample.svc.cluster.local", disable), rule("short", "helloworld", disable),
             rule("other", "httpbin", disable), rule("mutual", "helloworld", {"tls": {"mode": "ISTIO_MUTUAL"}}),
             rule("port", "helloworld", on_port(5000)), rule("elsewhere", "helloworld", on_port(9))]
    found = diagnosing._plaintext_rules(rules, "helloworld.sample.svc.cluster.local", 5000)
    assert [line.split(":")[0] for line in found] == ["DestinationRule sample/wild", "DestinationRule sample/short",
                                                      "DestinationRule sample/port"]


def test_locality_load_balancing_without_outlier_detection() -> None:
    rule = "DestinationRule sample/helloworld-locality: localityLbSetting without outlierDetection"
    diagnosis = decide(evidence(HELLO, locality_rules=(rule,)))  # both regions answer: no preference for the local
    assert diagnosis.cause == diagnosing.LOCALITY_OFF
    assert rule in diagnosis.evidence
    assert f"answered by: {V1}, {V2}" in diagnosis.evidence
    assert "outlierDetection" in diagnosis.fix


def test_locality_rules_need_a_locality_setting_and_no_outlier_detection() -> None:
    def rule(name: str, policy: dict[str, object]) -> dict[str, object]:
        return {"metadata": {"name": name, "namespace": "sample"},
                "spec": {"host": "helloworld", "trafficPolicy": policy}}

    locality = {"localityLbSetting": {"enabled": True, "failover": [{"from": "cluster1", "to": "cluster2"}]}}
    rules = [rule("bare", {"loadBalancer": locality}),
             rule("outlier", {"loadBalancer": locality, "outlierDetection": {"consecutive5xxErrors": 3}}),
             rule("off", {"loadBalancer": {"localityLbSetting": {"enabled": False}}}),
             rule("simple", {"loadBalancer": {"simple": "ROUND_ROBIN"}})]
    found = diagnosing._locality_rules(rules, "helloworld.sample.svc.cluster.local")
    assert found == ("DestinationRule sample/bare: localityLbSetting without outlierDetection",)


PENDING = "cluster2 istio-system/cross-network-gateway"


def test_a_gateway_without_an_address() -> None:
    # Named by its Service, whatever it is called: this one is not "istio-eastwestgateway".
    diagnosis = decide(evidence(HELLO, pending_gateways=(PENDING,), answered_by=(V1,), endpoints=(LOCAL,)))
    assert diagnosis.cause == diagnosing.GATEWAY_PENDING
    assert "cluster2: service istio-system/cross-network-gateway EXTERNAL-IP <pending>" in diagnosis.evidence


def test_another_networks_pod_ips_behind_a_pending_gateway_blame_the_gateway_not_the_label() -> None:
    # Recorded with cluster2's east-west gateway Service of a loadBalancerClass no controller serves: istiod has no
    # address for network2's gateway and sends its pod IPs instead (as Istio does for a network without gateways).
    stray = Endpoint("127.219.2.5:5000", "HEALTHY", "remote-pod", "cluster2 network2")
    diagnosis = decide(evidence(HELLO, endpoints=(LOCAL, stray), pending_gateways=(PENDING,)))
    assert diagnosis.cause == diagnosing.GATEWAY_PENDING
    assert "cluster2: service istio-system/cross-network-gateway EXTERNAL-IP <pending>" in diagnosis.evidence
    assert f"endpoint {stray.line()}" in diagnosis.evidence


def test_a_proxy_out_of_step_with_istiod() -> None:
    assert decide(evidence(HELLO, proxy_synced=False)).cause == diagnosing.PROXY_NOT_SYNCED


def test_endpoints_are_told_apart_by_network_not_by_cluster() -> None:
    # cluster2's istio-system lost its network label: its pod is on network "", which cluster1's sidecar (network1)
    # treats as its own and dials directly.
    mesh = Mesh({"cluster1": "network1", "cluster2": ""},
                (Instance("cluster1", "network1", V1, "127.69.1.5"), Instance("cluster2", "", V2, "127.69.2.5")),
                (Gateway("cluster2", "network2", "istio-eastwestgateway", "istio-system", "127.69.200.4:15443"),))
    found = [diagnosing._classify(EndpointRow(address, "HEALTHY", "OK", "outbound|5000||h"), "cluster1", mesh, 5000)
             for address in ("127.69.1.5:5000", "127.69.2.5:5000", "127.69.200.4:15443", "10.0.0.1:5000")]
    assert [e.kind for e in found] == ["local", "remote-pod", "gateway", "unknown"]
    assert found[1].where == "cluster2 no network"


def test_diagnose_is_part_of_the_facade() -> None:
    assert labkit.diagnose is diagnosing.diagnose
    assert "diagnose" in labkit.__all__


@pytest.mark.parametrize("source", ["sample/deploy/sleep", "cluster9/sample/deploy/sleep", "cluster1"])
def test_a_source_without_a_cluster_of_the_lab_is_refused_naming_the_form(source: str) -> None:
    lab = SimpleNamespace(clusters=["cluster1", "cluster2"])
    with pytest.raises(LabkitError, match="<cluster>/<namespace>/deploy/<name>"):
        diagnosing.gather(lab, source, HELLO)  # type: ignore[arg-type]
