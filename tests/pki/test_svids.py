"""SPIRE's certificates carry the fields Lab 5 reads off them (reference/spire.md, "SVID contents")."""

from __future__ import annotations

import hashlib

import pytest

from labkit.pki import Credential, describe, new_request, verify_certificate
from labkit.pki.svids import issue_server_ca, new_upstream_root, sign_svid, unique_id

SLEEP = "spiffe://foo.com/ns/sleep/sa/sleep"


@pytest.fixture(scope="module")
def chain() -> tuple[str, str, str]:
    upstream = new_upstream_root()
    ca = issue_server_ca(upstream, "foo.com")
    _, csr = new_request("spiffe://whatever/the/csr/asks")
    leaf = sign_svid(ca, csr, SLEEP, dns_names=("sleep-5d8f-abcde",))
    return upstream.cert_pem, ca.cert_pem, leaf


def test_the_leaf_is_issued_by_spiffe_and_names_the_pod(chain: tuple[str, str, str]) -> None:
    _, _, leaf = chain
    info = describe(leaf)[0]
    expected_uid = hashlib.sha256(SLEEP.encode()).hexdigest()[:32]
    assert info.issuer == "C=US, O=SPIFFE"
    assert info.subject == f"C=US, O=SPIRE, CN=sleep-5d8f-abcde, x500UniqueIdentifier={expected_uid}"
    assert unique_id(SLEEP) == expected_uid
    assert info.spiffe_ids == (SLEEP,)  # whatever the CSR asked for, the entry's ID is issued
    assert info.dns_names == ("sleep-5d8f-abcde",)
    assert set(info.key_usage) >= {"digitalSignature", "keyEncipherment", "keyAgreement"}
    assert not info.is_ca


def test_the_server_ca_is_signed_by_cert_manager_and_names_the_trust_domain(chain: tuple[str, str, str]) -> None:
    upstream, ca, _ = chain
    info = describe(ca)[0]
    assert info.subject == "C=US, O=SPIFFE"
    assert info.issuer == "O=cert-manager, CN=certmanager-ca"
    assert info.spiffe_ids == ("spiffe://foo.com",)
    assert describe(upstream)[0].self_signed


def test_the_chain_verifies_up_to_the_upstream_root(chain: tuple[str, str, str]) -> None:
    upstream, ca, leaf = chain
    verify_certificate(leaf, upstream, untrusted=ca, expected_spiffe_id=SLEEP)


def test_credential_keeps_the_chain_order() -> None:
    upstream = new_upstream_root()
    ca = issue_server_ca(upstream, "bar.com")
    key, csr = new_request("spiffe://bar.com/x")
    credential = Credential(sign_svid(ca, csr, "spiffe://bar.com/x"), key, ca.cert_pem)
    assert [c.issuer for c in describe(credential.cert_chain_pem)] == ["C=US, O=SPIFFE",
                                                                       "O=cert-manager, CN=certmanager-ca"]
