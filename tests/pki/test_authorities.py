"""The certificates labkit makes carry the fields Istio's tooling and istiod put in them."""

from __future__ import annotations

import datetime as dt

import pytest

from labkit.errors import KeyMismatchError, PemError, PkiError
from labkit.pki import CertificateAuthority, SpiffeId, describe, new_root


def test_root_has_istio_subject_and_is_a_ten_year_ca(root: CertificateAuthority) -> None:
    (info,) = describe(root.cert_pem)
    assert info.subject == "O=Istio, CN=Root CA"
    assert info.self_signed and info.is_ca and info.path_length is None
    assert "keyCertSign" in info.key_usage
    assert (info.not_after - info.not_before).days >= 3650


def test_intermediate_follows_istio_tools_certs(root: CertificateAuthority, cluster1_ca: CertificateAuthority) -> None:
    info = describe(cluster1_ca.cert_pem)[0]
    assert info.subject == "O=Istio, CN=Intermediate CA, L=cluster1"
    assert info.issuer == "O=Istio, CN=Root CA"
    assert info.is_ca and info.path_length == 0
    assert info.dns_names == ("istiod.istio-system.svc",)
    # cert-chain.pem is the intermediate followed by the root, and root-cert.pem is the mesh root.
    assert [c.subject for c in describe(cluster1_ca.cert_chain_pem)] == [info.subject, "O=Istio, CN=Root CA"]
    assert cluster1_ca.root_pem == root.cert_pem


def test_workload_certificate_is_short_lived_spiffe_identity(cluster1_ca: CertificateAuthority) -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    credential = cluster1_ca.issue_workload("spiffe://cluster.local/ns/sample/sa/sleep", now=now)
    leaf = describe(credential.cert_pem)[0]
    assert leaf.subject == "(empty)"
    assert leaf.uris == ("spiffe://cluster.local/ns/sample/sa/sleep",)
    assert leaf.extended_key_usage == ("serverAuth", "clientAuth")
    assert not leaf.is_ca
    assert leaf.not_after - now == dt.timedelta(hours=24)
    assert credential.spiffe_id == SpiffeId("cluster.local", "/ns/sample/sa/sleep")
    # Envoy's certificate_chain: leaf, intermediate, root.
    assert len(describe(credential.cert_chain_pem)) == 3


def test_spire_style_subject_and_dns_names(cluster1_ca: CertificateAuthority) -> None:
    credential = cluster1_ca.issue_workload(
        "spiffe://foo.com/ns/sleep/sa/sleep", subject=[("C", "US"), ("O", "SPIRE"), ("CN", "sleep-1")],
        dns_names=["sleep-1"],
    )
    leaf = describe(credential.cert_pem)[0]
    assert leaf.subject == "C=US, O=SPIRE, CN=sleep-1"
    assert leaf.dns_names == ("sleep-1",)


def test_loading_a_ca_checks_the_key_pair(root: CertificateAuthority, other_root: CertificateAuthority) -> None:
    with pytest.raises(KeyMismatchError, match="does not match"):
        CertificateAuthority.load(root.cert_pem, other_root.key_pem, source="ca-cert.pem")


def test_a_workload_certificate_cannot_act_as_a_ca(cluster1_ca: CertificateAuthority) -> None:
    credential = cluster1_ca.issue_workload("spiffe://cluster.local/ns/a/sa/b")
    with pytest.raises(PkiError, match="not a CA certificate"):
        CertificateAuthority.load(credential.cert_pem, credential.key_pem)


@pytest.mark.parametrize(
    ("pem", "expected"),
    [
        ("", "there is no PEM block"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "holds a PRIVATE KEY instead"),
        ("-----BEGIN CERTIFICATE-----\nMIIBkTCB+wIJAK\n-----END CERTIFICATE-----\n", "corrupt or truncated"),
    ],
)
def test_corrupt_pem_names_the_file_and_the_fix(pem: str, expected: str) -> None:
    with pytest.raises(PemError, match=expected) as caught:
        describe(pem, source="ca-cert.pem")
    assert str(caught.value).startswith("ca-cert.pem:")
    assert "labkit certs mesh" in str(caught.value)


def test_truncated_certificate_is_a_pem_error(root: CertificateAuthority) -> None:
    lines = root.cert_pem.splitlines()
    truncated = "\n".join(lines[:5] + lines[-1:]) + "\n"
    with pytest.raises(PemError, match="root-cert.pem: the certificate is corrupt or truncated"):
        describe(truncated, source="root-cert.pem")


def test_unknown_key_kind_is_refused() -> None:
    with pytest.raises(PkiError, match="unknown key kind 'dsa'"):
        new_root(key="dsa")  # type: ignore[arg-type]


def test_server_certificate_for_an_api_server(cluster1_ca: CertificateAuthority) -> None:
    credential = cluster1_ca.issue_server("kube-apiserver", dns_names=["kubernetes", "localhost"],
                                          ip_addresses=["127.1.1.1"])
    leaf = describe(credential.cert_pem)[0]
    assert leaf.subject == "CN=kube-apiserver"
    assert leaf.dns_names == ("kubernetes", "localhost") and leaf.ip_addresses == ("127.1.1.1",)
    assert leaf.extended_key_usage == ("serverAuth",) and leaf.uris == ()
    with pytest.raises(PkiError, match="needs at least one DNS name or IP address SAN"):
        cluster1_ca.issue_server("nothing")


def test_a_csr_is_signed_for_the_callers_identity_with_its_own_key():
    from labkit.pki import describe, new_request, new_root, request_identities

    _, csr_pem = new_request("spiffe://cluster.local/ns/sample/sa/sleep")
    assert request_identities(csr_pem) == ["spiffe://cluster.local/ns/sample/sa/sleep"]
    leaf = describe(new_root().sign_request(csr_pem, "spiffe://cluster.local/ns/sample/sa/sleep"))[0]
    assert leaf.uris == ("spiffe://cluster.local/ns/sample/sa/sleep",) and not leaf.is_ca
