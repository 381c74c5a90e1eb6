"""Plugged-in CA files checked where they enter: ``labkit.istio.plug_in_ca`` (a folder) and istiod (the ``cacerts``
Secret) refuse a key that does not match, a chain under another root, a chain of another CA and an expired
intermediate — naming the file and the fix.
"""

from __future__ import annotations

import base64
import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from labkit.emulator.mesh.ca import load_ca
from labkit.errors import KeyMismatchError, PkiError, VerificationError, VerificationReason
from labkit.istio import plug_in_ca
from labkit.pki import CACERTS_FILES, MeshCerts, make_mesh, new_root, read_cacerts
from labkit.pki.layouts import write_cacerts


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> MeshCerts:
    return make_mesh(tmp_path_factory.mktemp("certs"), ["cluster1", "cluster2"], key="ec-p256")


def _swap_key(folder: Path, mesh: MeshCerts) -> None:
    (folder / "ca-key.pem").write_text(mesh.clusters["cluster2"].key_pem)


def _foreign_chain(folder: Path, mesh: MeshCerts) -> None:
    write_cacerts(folder, new_root(key="ec-p256").issue_intermediate("cluster1", key="ec-p256"))
    (folder / "root-cert.pem").write_text(mesh.root.cert_pem)


def _other_chain(folder: Path, mesh: MeshCerts) -> None:
    (folder / "cert-chain.pem").write_text(mesh.clusters["cluster2"].cert_chain_pem)


def _expired(folder: Path, mesh: MeshCerts) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    write_cacerts(folder, mesh.root.issue_intermediate("cluster1", key="ec-p256", validity=dt.timedelta(days=1),
                                                       now=long_ago))


CORRUPTIONS: list[tuple[str, Callable[[Path, MeshCerts], None], type[PkiError], str, str]] = [
    ("key-mismatch", _swap_key, KeyMismatchError, "ca-key.pem does not match {dir}/ca-cert.pem",
     "Put back the ca-key.pem made with this ca-cert.pem"),
    ("foreign-chain", _foreign_chain, VerificationError, "cert-chain.pem: its issuer is named 'O=Istio, CN=Root CA' "
     "like the root", "Every cluster of a mesh needs certificates from one root"),
    ("other-ca-chain", _other_chain, PkiError, "cert-chain.pem does not start with {dir}/ca-cert.pem",
     "cat ca-cert.pem root-cert.pem > cert-chain.pem"),
    ("expired-intermediate", _expired, VerificationError, "ca-cert.pem: the intermediate CA expired on",
     "Issue a new intermediate"),
]


@pytest.mark.parametrize(("name", "corrupt", "error", "what", "fix"), CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_plug_in_ca_refuses_corrupt_cacerts_naming_the_file_and_the_fix(
        mesh: MeshCerts, tmp_path: Path, name: str, corrupt: Callable[[Path, MeshCerts], None],
        error: type[PkiError], what: str, fix: str) -> None:
    folder = tmp_path / name
    shutil.copytree(next(iter(mesh.written)).parent / "cluster1", folder)
    corrupt(folder, mesh)
    with pytest.raises(error) as refused:
        plug_in_ca("no-such-context", folder)  # refused before any request: the context is never used
    message = str(refused.value)
    assert f"{folder}/" + what.format(dir=folder) in message
    assert fix in message


def test_a_good_folder_reads(mesh: MeshCerts) -> None:
    folder = next(iter(mesh.written)).parent / "cluster1"
    assert read_cacerts(folder).root_pem == mesh.root.cert_pem


def _secret(folder: Path) -> dict:
    return {"metadata": {"name": "cacerts", "namespace": "istio-system"},
            "data": {name: base64.b64encode((folder / name).read_bytes()).decode() for name in CACERTS_FILES}}


def test_istiod_refuses_a_cacerts_secret_naming_the_secret_and_file(mesh: MeshCerts, tmp_path: Path) -> None:
    folder = tmp_path / "cluster1"
    shutil.copytree(next(iter(mesh.written)).parent / "cluster1", folder)
    assert load_ca(_secret(folder), None).source == "cacerts"
    _expired(folder, mesh)
    with pytest.raises(VerificationError) as refused:
        load_ca(_secret(folder), None)
    assert refused.value.reason == VerificationReason.EXPIRED
    assert str(refused.value).startswith("secret istio-system/cacerts ca-cert.pem: the intermediate CA expired on")
    _swap_key(folder, mesh)
    with pytest.raises(KeyMismatchError, match="^secret istio-system/cacerts ca-key.pem does not match secret "
                                               "istio-system/cacerts ca-cert.pem"):
        load_ca(_secret(folder), None)
