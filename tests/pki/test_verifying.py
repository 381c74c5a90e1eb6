"""Verification accepts good chains and names the precise reason a bad one fails."""

from __future__ import annotations

import datetime as dt

import pytest

from labkit.errors import VerificationError, VerificationReason
from labkit.pki import CertificateAuthority, TrustBundle, new_root, verify_certificate

SLEEP = "spiffe://cluster.local/ns/sample/sa/sleep"


def test_workload_chain_verifies_to_the_mesh_root(
    root: CertificateAuthority, cluster1_ca: CertificateAuthority
) -> None:
    credential = cluster1_ca.issue_workload(SLEEP)
    chain = verify_certificate(credential.cert_chain_pem, root.cert_pem, expected_spiffe_id=SLEEP)
    subjects = [c.subject for c in chain.path]
    assert subjects == ["(empty)", "O=Istio, CN=Intermediate CA, L=cluster1", "O=Istio, CN=Root CA"]
    assert chain.spiffe_id == SLEEP and chain.trust_domain == "cluster.local"


def test_leaf_with_separate_intermediate_like_openssl_untrusted(
    root: CertificateAuthority, cluster1_ca: CertificateAuthority
) -> None:
    credential = cluster1_ca.issue_workload(SLEEP)
    verify_certificate(credential.cert_pem, root.cert_pem, untrusted=cluster1_ca.cert_pem)
    with pytest.raises(VerificationError, match="issuer not found.*-untrusted") as caught:
        verify_certificate(credential.cert_pem, root.cert_pem)
    assert caught.value.reason is VerificationReason.UNKNOWN_ISSUER


def test_same_named_root_with_another_key_is_a_different_root(
    other_root: CertificateAuthority, cluster1_ca: CertificateAuthority
) -> None:
    credential = cluster1_ca.issue_workload(SLEEP)
    with pytest.raises(VerificationError, match="different root") as caught:
        verify_certificate(credential.cert_chain_pem, other_root.cert_pem, source="cert-chain.pem")
    assert caught.value.reason is VerificationReason.DIFFERENT_ROOT
    assert str(caught.value).startswith("cert-chain.pem:")


def test_chain_ending_in_an_unrelated_root_is_a_different_root(cluster1_ca: CertificateAuthority) -> None:
    unrelated = new_root(organization="Example", common_name="Other Root", key="ec-p256")
    with pytest.raises(VerificationError, match="chains up to the root 'O=Istio, CN=Root CA'.*different root"):
        verify_certificate(cluster1_ca.cert_chain_pem, unrelated.cert_pem)


def test_expired_certificate() -> None:
    issued = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    root = new_root(key="ec-p256", now=issued)
    ca = root.issue_intermediate("cluster1", key="ec-p256", now=issued)
    credential = ca.issue_workload(SLEEP, now=issued)
    verify_certificate(credential.cert_chain_pem, root.cert_pem, at=issued + dt.timedelta(hours=23))
    with pytest.raises(VerificationError, match="expired on 2026-01-02") as caught:
        verify_certificate(credential.cert_chain_pem, root.cert_pem, at=issued + dt.timedelta(hours=25))
    assert caught.value.reason is VerificationReason.EXPIRED


def test_expired_intermediate_is_named(root: CertificateAuthority) -> None:
    issued = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    old_ca = root.issue_intermediate("cluster9", key="ec-p256", validity=dt.timedelta(days=30), now=issued)
    # The leaf is still within its 24 hours; its issuer's 30 days are over.
    credential = old_ca.issue_workload(SLEEP, now=issued + dt.timedelta(days=30, hours=-1))
    with pytest.raises(VerificationError, match="its issuer 'O=Istio, CN=Intermediate CA, L=cluster9' expired"):
        verify_certificate(credential.cert_chain_pem, root.cert_pem, at=issued + dt.timedelta(days=30, hours=12))


def test_not_yet_valid(root: CertificateAuthority, cluster1_ca: CertificateAuthority) -> None:
    credential = cluster1_ca.issue_workload(SLEEP, now=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    with pytest.raises(VerificationError, match="not yet valid") as caught:
        verify_certificate(credential.cert_chain_pem, root.cert_pem)
    assert caught.value.reason is VerificationReason.NOT_YET_VALID


def test_wrong_san(root: CertificateAuthority, cluster1_ca: CertificateAuthority) -> None:
    credential = cluster1_ca.issue_workload(SLEEP)
    expected = "spiffe://cluster.local/ns/sample/sa/helloworld"
    with pytest.raises(VerificationError, match=f"wrong SAN: it identifies {SLEEP}, expected {expected}") as caught:
        verify_certificate(credential.cert_chain_pem, root.cert_pem, expected_spiffe_id=expected)
    assert caught.value.reason is VerificationReason.WRONG_SAN


def test_a_leaf_cannot_sign(root: CertificateAuthority, cluster1_ca: CertificateAuthority) -> None:
    leaf = cluster1_ca.issue_workload(SLEEP)
    # Forge a "chain" where a workload certificate pretends to be the issuer of another one.
    fake_ca = CertificateAuthority(leaf.cert_pem, leaf.key_pem, cluster1_ca.cert_chain_pem)
    victim = fake_ca.issue_workload("spiffe://cluster.local/ns/sample/sa/victim")
    with pytest.raises(VerificationError, match="is not a CA") as caught:
        verify_certificate(victim.cert_chain_pem, root.cert_pem)
    assert caught.value.reason is VerificationReason.NOT_A_CA


@pytest.fixture(scope="module")
def domains() -> dict[str, CertificateAuthority]:
    """Two SPIFFE trust domains, each with its own root."""
    return {name: new_root(organization=name, common_name=f"{name} root", key="ec-p256", uri=f"spiffe://{name}")
            for name in ("foo.com", "bar.com")}


class TestTrustDomains:
    """Bundles are chosen by the leaf's trust domain, as Envoy's SPIFFE validator chooses them."""

    def test_each_domain_verifies_against_its_own_bundle(self, domains: dict[str, CertificateAuthority]) -> None:
        bundles = [TrustBundle.from_pem(name, ca.cert_pem) for name, ca in domains.items()]
        for name, ca in domains.items():
            credential = ca.issue_workload(f"spiffe://{name}/ns/sleep/sa/sleep")
            assert verify_certificate(credential.cert_chain_pem, bundles).trust_domain == name

    def test_missing_bundle_for_the_peer_domain(self, domains: dict[str, CertificateAuthority]) -> None:
        credential = domains["bar.com"].issue_workload("spiffe://bar.com/ns/sleep/sa/sleep")
        only_foo = [TrustBundle.from_pem("foo.com", domains["foo.com"].cert_pem)]
        with pytest.raises(VerificationError, match="no trust bundle for its trust domain bar.com") as caught:
            verify_certificate(credential.cert_chain_pem, only_foo)
        assert caught.value.reason is VerificationReason.NO_TRUST_BUNDLE

    def test_bar_com_ca_cannot_mint_foo_com_identities(self, domains: dict[str, CertificateAuthority]) -> None:
        forged = domains["bar.com"].issue_workload("spiffe://foo.com/ns/sleep/sa/sleep")
        bundles = [TrustBundle.from_pem(name, ca.cert_pem) for name, ca in domains.items()]
        # Checked against foo.com's bundle only, a bar.com-signed chain goes nowhere.
        with pytest.raises(VerificationError, match="the foo.com bundle") as caught:
            verify_certificate(forged.cert_chain_pem, bundles)
        assert caught.value.reason is VerificationReason.DIFFERENT_ROOT
