"""SPIFFE bundles encode and decode as the JWK Set the standard describes, one trust domain each."""

from __future__ import annotations

import base64
import json

import pytest

from labkit.errors import PkiError
from labkit.pki import CertificateAuthority, TrustBundle, new_root


def test_bundle_json_is_a_spiffe_jwk_set(root: CertificateAuthority) -> None:
    bundle = TrustBundle.from_pem("foo.com", root.cert_pem, sequence=3)
    document = json.loads(bundle.to_json())
    assert document["spiffe_sequence"] == 3
    assert document["spiffe_refresh_hint"] == 300
    (key,) = document["keys"]
    assert key["use"] == "x509-svid"
    assert key["kty"] == "EC" and key["crv"] == "P-256"
    assert "kid" not in key
    # x5c holds standard (not URL-safe) base64 DER of exactly the root certificate.
    der = base64.b64decode(key["x5c"][0], validate=True)
    assert TrustBundle.from_json("foo.com", bundle.to_json()).x509_authorities == (root.cert_pem,)
    assert der.startswith(b"\x30")


def test_rsa_roots_carry_modulus_and_exponent() -> None:
    rsa_root = new_root(key="rsa-2048")
    key = json.loads(TrustBundle.from_pem("bar.com", rsa_root.cert_pem).to_json())["keys"][0]
    assert key["kty"] == "RSA" and key["e"] == "AQAB"
    assert len(base64.urlsafe_b64decode(key["n"] + "==")) == 256


def test_decoding_keeps_jwt_keys_and_ignores_unknown_uses(root: CertificateAuthority) -> None:
    document = json.loads(TrustBundle.from_pem("foo.com", root.cert_pem).to_json())
    document["keys"] += [{"use": "jwt-svid", "kid": "k1", "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
                         {"use": "something-new", "kty": "oct"}]
    bundle = TrustBundle.from_json("foo.com", json.dumps(document))
    assert len(bundle.x509_authorities) == 1
    assert [k["kid"] for k in bundle.jwt_authorities] == ["k1"]
    assert len(json.loads(bundle.to_json())["keys"]) == 2


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("not json", "is not JSON"),
        ('{"spiffe_sequence": 1}', 'has no "keys" array'),
        ('{"keys": [{"use": "x509-svid", "x5c": []}]}', r"keys\[0\] \(x509-svid\) must hold exactly one certificate"),
        ('{"keys": [{"use": "x509-svid", "x5c": ["@@@"]}]}', "not standard base64 DER"),
        ('{"keys": [{"use": "jwt-svid"}]}', 'has no "kid"'),
    ],
)
def test_bad_bundles_name_the_key_and_the_problem(text: str, complaint: str) -> None:
    with pytest.raises(PkiError, match=complaint):
        TrustBundle.from_json("foo.com", text)


def test_round_trip_keeps_sequence_refresh_hint_and_every_key(root: CertificateAuthority) -> None:
    jwk = {"use": "jwt-svid", "kty": "EC", "kid": "abc", "crv": "P-256", "x": "AA", "y": "AA"}
    bundle = TrustBundle("foo.com", (root.cert_pem,), (jwk,), sequence=7, refresh_hint=45)
    again = TrustBundle.from_json("foo.com", bundle.to_json())
    assert again == bundle
    document = json.loads(bundle.to_json(indent=4))
    assert (document["spiffe_sequence"], document["spiffe_refresh_hint"]) == (7, 45)
    assert list(document) == ["keys", "spiffe_sequence", "spiffe_refresh_hint"]  # go-spiffe's order


def test_an_empty_key_set_revokes_every_authority() -> None:
    bundle = TrustBundle.from_json("foo.com", '{"keys": [], "spiffe_sequence": 9}')
    assert bundle.x509_authorities == () and bundle.sequence == 9


def test_merging_a_rotation_bumps_the_sequence_past_both(root: CertificateAuthority) -> None:
    new = new_root(key="ec-p256")
    old_bundle = TrustBundle.from_pem("foo.com", root.cert_pem, sequence=3)
    rotated = old_bundle.merged(TrustBundle.from_pem("foo.com", new.cert_pem, sequence=4))
    assert rotated.x509_authorities == (root.cert_pem, new.cert_pem)
    assert rotated.sequence == 5


def test_bundles_of_two_trust_domains_are_never_merged(root: CertificateAuthority) -> None:
    foo = TrustBundle.from_pem("foo.com", root.cert_pem)
    bar = TrustBundle.from_pem("bar.com", new_root(key="ec-p256").cert_pem)
    with pytest.raises(PkiError, match="refusing to merge the bar.com bundle into the foo.com bundle"):
        foo.merged(bar)
    with pytest.raises(PkiError, match="served a bundle for bar.com"):
        foo.replaced_by(bar)
