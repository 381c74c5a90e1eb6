"""Certificates on disk, in the layouts Istio reads.

- A **mesh folder** (``certs/``): ``root-cert.pem`` and ``root-key.pem``, then one folder per cluster.
- A **cacerts folder** (``certs/cluster1/``): ``ca-cert.pem``, ``ca-key.pem``, ``root-cert.pem`` and
  ``cert-chain.pem`` (intermediate then root) — exactly the files of ``kubectl create secret generic
  cacerts -n istio-system --from-file=…``.
- A **workload folder**: ``cert-chain.pem`` (leaf, intermediate, root), ``key.pem``, ``root-cert.pem``,
  as an Istio agent writes them for ``OUTPUT_CERTS``.

Private keys are written 0600, and every file is written atomically (temporary file, then rename), so
an interrupted run never leaves half a key behind. Making a mesh is idempotent: an existing root and
existing cluster folders under it are kept, so adding a fourth cluster later keeps the first three.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from labkit.errors import PkiError
from labkit.pki.authorities import CertificateAuthority, Credential, KeySpec, new_root
from labkit.pki.pem import (
    check_key_matches,
    load_certificate,
    load_private_key,
    read_source,
)
from labkit.pki.plugging import CACERTS_FILES, check_cacerts
from labkit.pki.verifying import verify_certificate

WORKLOAD_FILES = ("cert-chain.pem", "key.pem", "root-cert.pem")
ROOT_FILES = ("root-cert.pem", "root-key.pem")
_PRIVATE = {"ca-key.pem", "key.pem", "root-key.pem"}


def write_file(path: Path, text: str) -> Path:
    """Write ``text`` atomically; key files (by name) get mode 0600 before any byte is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o600 if path.name in _PRIVATE else 0o644
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_root(folder: Path, root: CertificateAuthority) -> list[Path]:
    """Write ``root-cert.pem`` and ``root-key.pem``."""
    return [write_file(folder / "root-cert.pem", root.cert_pem), write_file(folder / "root-key.pem", root.key_pem)]


def read_root(folder: Path) -> CertificateAuthority:
    """Read a root written by :func:`write_root`, checking that the key belongs to it."""
    cert = read_source(folder / "root-cert.pem").decode()
    key = read_source(folder / "root-key.pem").decode()
    return CertificateAuthority.load(cert, key, source=str(folder / "root-cert.pem"))


def write_cacerts(folder: Path, ca: CertificateAuthority) -> list[Path]:
    """Write an intermediate CA in Istio's ``cacerts`` layout."""
    return [
        write_file(folder / "ca-cert.pem", ca.cert_pem),
        write_file(folder / "ca-key.pem", ca.key_pem),
        write_file(folder / "root-cert.pem", ca.root_pem),
        write_file(folder / "cert-chain.pem", ca.cert_chain_pem),
    ]


def read_cacerts(folder: Path) -> CertificateAuthority:
    """Read a ``cacerts`` folder, checking that its files form a CA istiod can sign with
    (:func:`~labkit.pki.plugging.check_cacerts`); errors name the file and the fix.
    """
    missing = [name for name in CACERTS_FILES if not (folder / name).is_file()]
    if missing:
        raise PkiError(f"{folder}: missing {', '.join(missing)}; a cacerts folder holds {', '.join(CACERTS_FILES)} "
                       f"(make one with labkit certs mesh).")
    text = {name: read_source(folder / name).decode() for name in CACERTS_FILES}
    return check_cacerts(text, {name: str(folder / name) for name in CACERTS_FILES})


def write_workload(folder: Path, credential: Credential) -> list[Path]:
    """Write a workload's ``cert-chain.pem``, ``key.pem`` and ``root-cert.pem``."""
    return [
        write_file(folder / "cert-chain.pem", credential.cert_chain_pem),
        write_file(folder / "key.pem", credential.key_pem),
        write_file(folder / "root-cert.pem", credential.root_pem),
    ]


@dataclass(frozen=True)
class MeshCerts:
    """What :func:`make_mesh` produced: the root, a CA per cluster, and which files it wrote or kept."""

    root: CertificateAuthority
    clusters: dict[str, CertificateAuthority]
    written: tuple[Path, ...]
    kept: tuple[Path, ...]


def make_mesh(out: Path, clusters: Sequence[str], *, key: KeySpec = "rsa-4096") -> MeshCerts:
    """Make (or complete) a mesh folder: one root, one ``cacerts`` folder per cluster.

    Args:
        out: the mesh folder, e.g. ``certs/``.
        clusters: cluster names; each gets ``out/<cluster>/``.
        key: the key kind for a new root and new intermediates.

    Raises:
        PkiError: an existing cluster folder was made under another root (remove it to remake it).
    """
    written: list[Path] = []
    kept: list[Path] = []
    if all((out / name).exists() for name in ROOT_FILES):
        root = read_root(out)
        kept += [out / name for name in ROOT_FILES]
    else:
        root = new_root(key=key)
        written += write_root(out, root)
    authorities = {}
    for cluster in clusters:
        folder = out / cluster
        if any((folder / name).exists() for name in CACERTS_FILES):
            ca = read_cacerts(folder)
            if ca.root_pem.strip() != root.cert_pem.strip():
                raise PkiError(f"{folder} was made under another root than {out / 'root-cert.pem'}; "
                               f"delete {folder} to make it again under this root.")
            kept += [folder / name for name in CACERTS_FILES]
        else:
            ca = root.issue_intermediate(cluster, key=key)
            written += write_cacerts(folder, ca)
        authorities[cluster] = ca
    return MeshCerts(root, authorities, tuple(written), tuple(kept))


@dataclass(frozen=True)
class FileCheck:
    """One line of ``labkit certs verify``: a file, whether it passed, and what was found."""

    name: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{self.name}: OK{f' ({self.detail})' if self.detail else ''}" if self.ok \
            else f"{self.name}: FAILED: {self.detail}"


def check_folder(folder: Path, root: Path | None = None) -> list[FileCheck]:
    """Check every certificate and key of a mesh, cacerts or workload folder.

    Certificates are verified against ``root`` when given (e.g. the mesh's ``certs/root-cert.pem``),
    otherwise against the folder's own ``root-cert.pem``. Keys are checked against their certificates.
    """
    anchor_path = root or folder / "root-cert.pem"
    anchor = read_source(anchor_path).decode()
    checks: list[FileCheck] = []
    pairs = {"ca-key.pem": "ca-cert.pem", "key.pem": "cert-chain.pem", "root-key.pem": "root-cert.pem"}
    names = [n for n in ("root-cert.pem", "root-key.pem", "ca-cert.pem", "ca-key.pem", "cert-chain.pem", "key.pem")
             if (folder / n).is_file()]
    if not names:
        raise PkiError(f"{folder}: no certificate files here (expected {', '.join(CACERTS_FILES)} "
                       f"or {', '.join(WORKLOAD_FILES)}).")
    for name in names:
        path = folder / name
        try:
            if name in pairs:
                cert_name = pairs[name]
                cert = load_certificate(read_source(folder / cert_name), cert_name)
                check_key_matches(cert, load_private_key(read_source(path), name), cert_name, name)
                checks.append(FileCheck(name, True, f"matches {cert_name}"))
                continue
            text = read_source(path).decode()
            untrusted = read_source(folder / "ca-cert.pem").decode() if (folder / "ca-cert.pem").is_file() else ""
            chain = verify_certificate(text, anchor, untrusted=untrusted, source=name)
            leaf = chain.path[0]
            detail = leaf.spiffe_ids[0] if leaf.spiffe_ids else leaf.subject
            checks.append(FileCheck(name, True, detail))
        except PkiError as exc:
            checks.append(FileCheck(name, False, str(exc).removeprefix(f"{name}: ")))
    return checks

