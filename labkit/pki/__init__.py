"""labkit's PKI: the certificates of a mesh, made and checked here.

The only module of labkit that imports ``cryptography``; everything it hands out is PEM text or
plain values, so the layers above (and the emulator) never need it.

- :mod:`~labkit.pki.authorities`: roots, per-cluster intermediates, workload certificates (Istio profiles)
- :mod:`~labkit.pki.spiffe`: SPIFFE IDs
- :mod:`~labkit.pki.bundles`: SPIFFE trust bundles (JWK Set JSON), kept one per trust domain
- :mod:`~labkit.pki.svids`: SPIRE's certificates (cert-manager upstream root, server CA, X509-SVIDs, JWT key)
- :mod:`~labkit.pki.federating`: the ``https_spiffe`` profile: TLS authenticated by a domain's own bundle
- :mod:`~labkit.pki.verifying`: chain verification that says why it fails
- :mod:`~labkit.pki.describing`: the fields a learner reads off a certificate
- :mod:`~labkit.pki.layouts`: Istio's ``cacerts`` and workload file layouts, a whole mesh folder
- :mod:`~labkit.pki.plugging`: whether ``cacerts`` files form a CA istiod can sign with
- :mod:`~labkit.pki.openssl`: ``openssl verify``, with the machine's openssl or labkit's own check
"""

from labkit.pki.authorities import (
    CertificateAuthority,
    Credential,
    KeySpec,
    generate_key,
    load_request,
    new_request,
    new_root,
    request_identities,
)
from labkit.pki.bundles import TrustBundle
from labkit.pki.describing import CertificateInfo, describe
from labkit.pki.layouts import (
    CACERTS_FILES,
    WORKLOAD_FILES,
    FileCheck,
    MeshCerts,
    check_folder,
    make_mesh,
    read_cacerts,
    read_root,
    write_cacerts,
    write_root,
    write_workload,
)
from labkit.pki.openssl import OpensslVerdict, openssl_verify
from labkit.pki.plugging import check_cacerts
from labkit.pki.spiffe import SpiffeId
from labkit.pki.verifying import VerifiedChain, verify_certificate

__all__ = [
    "CACERTS_FILES",
    "WORKLOAD_FILES",
    "CertificateAuthority",
    "CertificateInfo",
    "Credential",
    "FileCheck",
    "KeySpec",
    "MeshCerts",
    "OpensslVerdict",
    "SpiffeId",
    "TrustBundle",
    "VerifiedChain",
    "check_cacerts",
    "check_folder",
    "describe",
    "generate_key",
    "load_request",
    "make_mesh",
    "new_request",
    "new_root",
    "openssl_verify",
    "read_cacerts",
    "read_root",
    "request_identities",
    "verify_certificate",
    "write_cacerts",
    "write_root",
    "write_workload",
]
