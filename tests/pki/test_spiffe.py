"""SPIFFE IDs are parsed strictly: a malformed ID must never silently select no trust bundle."""

from __future__ import annotations

import pytest

from labkit.errors import PkiError
from labkit.pki import SpiffeId


def test_istio_workload_id_round_trips() -> None:
    identity = SpiffeId.parse("spiffe://cluster.local/ns/sample/sa/sleep")
    assert identity == SpiffeId.for_workload("cluster.local", "sample", "sleep")
    assert (identity.trust_domain, identity.namespace, identity.service_account) == ("cluster.local", "sample", "sleep")
    assert str(identity) == "spiffe://cluster.local/ns/sample/sa/sleep"


def test_trust_domain_id_has_no_path() -> None:
    identity = SpiffeId.parse("spiffe://foo.com")
    assert identity.path == "" and identity.namespace is None
    assert str(identity) == "spiffe://foo.com"


@pytest.mark.parametrize(
    ("uri", "complaint"),
    [
        ("https://foo.com/ns/a", "must start with 'spiffe://'"),
        ("SPIFFE://foo.com/ns/a", "must start with 'spiffe://'"),
        ("spiffe://Foo.com/ns/a", "not a valid SPIFFE trust domain"),
        ("spiffe://foo.com:8443/ns/a", "no port"),
        ("spiffe://foo.com/ns//a", "not a valid SPIFFE ID path"),
        ("spiffe://foo.com/ns/../a", "not a valid SPIFFE ID path"),
        ("spiffe://foo.com/ns/a?x=1", "query"),
        ("spiffe:///ns/a", "not a valid SPIFFE trust domain"),
    ],
)
def test_malformed_ids_say_what_is_wrong(uri: str, complaint: str) -> None:
    with pytest.raises(PkiError, match=complaint.replace("?", r"\?")):
        SpiffeId.parse(uri)
