"""Lab 5's readings: who answered, what nslookup resolved, the SVID's identity fields, the TLS failure reason."""

from __future__ import annotations

import pandas as pd

from labkit.istio import parse_access_log
from labkit.labs import spire_federation as lab5
from labkit.pki import new_request
from labkit.pki.svids import issue_server_ca, new_upstream_root, sign_svid
from labkit.traffic.calling import COLUMNS

SLEEP_ID = "spiffe://foo.com/ns/sleep/sa/sleep"


def calls(*rows: tuple[int, str | None, str]) -> pd.DataFrame:
    """A calls table as Cluster.call returns it: (status, version, error) per request."""
    return pd.DataFrame([{"seq": i, "source": "cluster1", "url": "http://helloworld.helloworld:5000/hello",
                          "status": status, "version": version, "instance": None, "latency_ms": 1.0, "error": error,
                          "body": ""} for i, (status, version, error) in enumerate(rows)], columns=list(COLUMNS))


def test_versions_and_only_count_answered_calls() -> None:
    both = calls((200, "v1", ""), (200, "v2", ""))
    assert lab5.versions(both) == {"v1", "v2"} and not lab5.only(both, "v2") and lab5.only(both, "v1", "v2")
    failing = calls((200, "v2", ""), (503, None, "upstream connect error"))
    assert lab5.versions(failing) == {"v2"} and not lab5.only(failing, "v2")
    assert not lab5.only(calls(), "v2")
    assert lab5.outcome(failing) == "1 × v2\n1 × 503 upstream connect error"
    assert lab5.outcome(calls()) == "no calls"


def test_resolved_reads_the_answer_not_the_server() -> None:
    answer = ("Server:\t\t127.1.101.10\nAddress:\t127.1.101.10#53\n\n"
              "helloworld.helloworld.svc.cluster.local.sleep.svc.cluster.local\tcanonical name = "
              "helloworld.helloworld.svc.cluster.local.\nName:\thelloworld.helloworld.svc.cluster.local\n"
              "Address: 127.1.102.7\n\n")
    assert lab5.resolved(answer) == ["127.1.102.7"]
    assert lab5.resolved("** server can't find nowhere: NXDOMAIN") == []


def test_identity_of_a_spire_svid_chain() -> None:
    upstream = new_upstream_root()
    server_ca = issue_server_ca(upstream, "foo.com")
    _, csr = new_request(SLEEP_ID)
    leaf = sign_svid(server_ca, csr, SLEEP_ID, dns_names=["sleep-7f9c"])
    found = lab5.identity(leaf + server_ca.cert_pem)
    assert found.spiffe_ids == (SLEEP_ID,) and found.dns_names == ("sleep-7f9c",)
    assert found.issuer == "C=US, O=SPIFFE" and found.subject.startswith("C=US, O=SPIRE, CN=sleep-7f9c, ")
    assert found.chain[1] == "C=US, O=SPIFFE"


def test_tls_failures_are_the_distinct_reasons_of_failed_requests() -> None:
    reason = "TLS_error:|268435581:SSL_routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:TLS_error_end"
    line = ('[2026-12-05T05:19:15.987Z] "GET /hello HTTP/1.1" 503 UF,URX via_upstream - "{reason}" 0 95 1 - "-" '
            '"curl/7.88.1" "id" "helloworld.helloworld:5000" "{host}" outbound|5000||helloworld 127.0.0.1:1 '
            '127.0.0.2:15080 127.0.0.1:2 - default')
    text = "\n".join([line.format(reason=reason, host="127.1.200.5:15443")] * 2
                     + [line.format(reason="-", host="127.1.200.5:15443").replace(" 503 UF,URX ", " 200 - ")])
    assert lab5.tls_failures(parse_access_log(text)) == [reason]


def test_every_lab_cluster_has_its_trust_domain() -> None:
    assert [lab5.trust_domain(c) for c in ("cluster1", "cluster2")] == ["foo.com", "bar.com"]
