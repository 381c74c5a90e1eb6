"""``openssl verify`` as the articles run it: the machine's openssl and labkit's own check say the same words."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from labkit.pki import CertificateAuthority, openssl_verify, write_cacerts

FAILED = ("O = Istio, CN = Intermediate CA, L = cluster1\n"
          "error 20 at 0 depth lookup: unable to get local issuer certificate\n"
          "error ca-cert.pem: verification failed")
TOOLS = [pytest.param(False, id="labkit"),
         pytest.param(True, id="openssl", marks=pytest.mark.skipif(shutil.which("openssl") is None,
                                                                   reason="no openssl on this machine"))]


@pytest.fixture
def folder(tmp_path: Path, cluster1_ca: CertificateAuthority, other_root: CertificateAuthority) -> Path:
    write_cacerts(tmp_path / "cluster1", cluster1_ca)
    (tmp_path / "wrong-chain.pem").write_text(cluster1_ca.cert_pem + other_root.cert_pem)
    return tmp_path


@pytest.mark.parametrize("use_openssl", TOOLS)
def test_the_articles_two_commands_say_ok(folder: Path, use_openssl: bool) -> None:
    cert = folder / "cluster1" / "ca-cert.pem"
    for anchors in ("cert-chain.pem", "root-cert.pem"):
        verdict = openssl_verify(folder / "cluster1" / anchors, cert, use_openssl=use_openssl)
        assert (verdict.ok, verdict.text) == (True, "ca-cert.pem: OK")


@pytest.mark.parametrize("use_openssl", TOOLS)
def test_a_chain_ending_in_another_root_fails_with_openssls_lines(folder: Path, use_openssl: bool) -> None:
    verdict = openssl_verify(folder / "wrong-chain.pem", folder / "cluster1" / "ca-cert.pem", use_openssl=use_openssl)
    assert (verdict.ok, verdict.text) == (False, FAILED)
    assert use_openssl or verdict.tool == "labkit"
