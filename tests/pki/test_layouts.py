"""Mesh folders on disk: Istio's file names, private keys kept private, idempotent re-runs."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from labkit.errors import KeyMismatchError, PkiError
from labkit.pki import CACERTS_FILES, check_folder, make_mesh, read_cacerts


@pytest.fixture
def mesh_dir(tmp_path: Path) -> Path:
    make_mesh(tmp_path, ["cluster1", "cluster2"], key="ec-p256")
    return tmp_path


def test_mesh_layout_and_permissions(mesh_dir: Path) -> None:
    assert sorted(p.name for p in (mesh_dir / "cluster1").iterdir()) == sorted(CACERTS_FILES)
    for key in [mesh_dir / "root-key.pem", mesh_dir / "cluster1" / "ca-key.pem"]:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE((mesh_dir / "cluster1" / "ca-cert.pem").stat().st_mode) == 0o644
    assert (mesh_dir / "cluster1" / "root-cert.pem").read_text() == (mesh_dir / "root-cert.pem").read_text()


def test_rerun_keeps_the_root_and_adds_a_cluster(mesh_dir: Path) -> None:
    before = (mesh_dir / "cluster1" / "ca-cert.pem").read_text()
    again = make_mesh(mesh_dir, ["cluster1", "cluster2", "cluster3"], key="ec-p256")
    assert (mesh_dir / "cluster1" / "ca-cert.pem").read_text() == before
    assert mesh_dir / "cluster1" / "ca-cert.pem" in again.kept
    assert {p.parent.name for p in again.written} == {"cluster3"}
    assert read_cacerts(mesh_dir / "cluster3").root_pem == (mesh_dir / "root-cert.pem").read_text()


def test_cluster_folder_from_another_root_is_refused(mesh_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    other = tmp_path_factory.mktemp("other")
    make_mesh(other, ["cluster1"], key="ec-p256")
    for name in CACERTS_FILES:
        (mesh_dir / "cluster1" / name).write_bytes((other / "cluster1" / name).read_bytes())
    with pytest.raises(PkiError, match="made under another root.*delete"):
        make_mesh(mesh_dir, ["cluster1"], key="ec-p256")


def test_check_folder_reports_each_file(mesh_dir: Path) -> None:
    lines = [str(c) for c in check_folder(mesh_dir / "cluster1")]
    assert lines == [
        "root-cert.pem: OK (O=Istio, CN=Root CA)",
        "ca-cert.pem: OK (O=Istio, CN=Intermediate CA, L=cluster1)",
        "ca-key.pem: OK (matches ca-cert.pem)",
        "cert-chain.pem: OK (O=Istio, CN=Intermediate CA, L=cluster1)",
    ]


def test_check_folder_flags_a_swapped_key(mesh_dir: Path) -> None:
    (mesh_dir / "cluster1" / "ca-key.pem").write_bytes((mesh_dir / "cluster2" / "ca-key.pem").read_bytes())
    checks = {c.name: c for c in check_folder(mesh_dir / "cluster1")}
    assert not checks["ca-key.pem"].ok
    assert "does not match ca-cert.pem" in checks["ca-key.pem"].detail
    assert checks["ca-cert.pem"].ok
    with pytest.raises(KeyMismatchError):
        read_cacerts(mesh_dir / "cluster1")


def test_missing_cacerts_file_is_named(mesh_dir: Path) -> None:
    (mesh_dir / "cluster2" / "cert-chain.pem").unlink()
    with pytest.raises(PkiError, match="missing cert-chain.pem"):
        read_cacerts(mesh_dir / "cluster2")
