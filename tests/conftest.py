"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest

from labkit.pki import CertificateAuthority, new_root


@pytest.fixture(scope="session")
def root() -> CertificateAuthority:
    """A mesh root with Istio's subject; EC keys keep the suite fast (RSA is covered by the CLI tests)."""
    return new_root(key="ec-p256")


@pytest.fixture(scope="session")
def cluster1_ca(root: CertificateAuthority) -> CertificateAuthority:
    return root.issue_intermediate("cluster1", key="ec-p256")


@pytest.fixture(scope="session")
def other_root() -> CertificateAuthority:
    """A second root with the very same subject as ``root``: the classic 'two meshes, two roots' mistake."""
    return new_root(key="ec-p256")
